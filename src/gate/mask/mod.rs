//! Response masking (issue 18): the route's mask rules applied to the origin's JSON answer
//! before it reaches an agent. Pure; the Worker (`src/edge/mask.rs`) pipes the body through.
//!
//! - [`stream`]: the streaming transformer (strict tokenizer, fixed limits);
//! - this module: when a route's mask applies to a request ([`applies`]), the response checks
//!   (status, media type, encoding: [`check_response`]) and the headers of a masked response
//!   ([`masked_headers`]).

pub mod stream;
// The reference slices its location behind `is_empty`/`split_first` checks.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::indexing_slicing)]
pub mod reference;

pub use stream::{Counts, HashKey, Limits, MaskError, Transformer};

use crate::gate::phase::record::Principal;
use crate::policy::Mask;
use crate::Error;

/// The response header that tells the caller its answer was masked: the number of values
/// masked, followed by `+` when the body streamed on past the commit buffer (more may follow;
/// the decision log's `mask_end` line has the final count).
pub const MASKED_HEADER: &str = "attestgate-masked";

/// Output the Worker holds back before it commits the response headers: a body whose masked
/// form fits is answered only once it transformed cleanly (an error is then the gateway's own
/// 502); a longer one streams, and an error after the headers went out aborts the body.
pub const COMMIT_BYTES: usize = 256 * 1024;

/// An answer of a known length up to this, as sent (no content coding), is read whole by the
/// runtime and masked in one call (cheaper than chunk by chunk: docs/performance.md); longer
/// or unknown ones stream in reads of this size. Either way the transformer gets at most this
/// much input at once, and what it writes for it is bounded by the rules (at most 129 bytes per
/// input byte: a 256-byte `redact` replacement of a one-digit element), not by the body.
pub const WHOLE_BYTES: usize = 64 * 1024;

/// Why a route's mask applies to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskWhy {
    /// A verified credential carries an `act` claim.
    Agent,
    /// A credential of one of `agent_providers` verified.
    AgentProvider,
    /// No credential of the `unattested` providers verified.
    Unattested,
    /// `always = true`.
    Always,
}

impl MaskWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            MaskWhy::Agent => "agent",
            MaskWhy::AgentProvider => "agent_provider",
            MaskWhy::Unattested => "unattested",
            MaskWhy::Always => "always",
        }
    }
}

/// Whether `mask` applies to a request verified as `principal`, and why.
pub fn applies(mask: &Mask, principal: &Principal<'_>) -> Option<MaskWhy> {
    let tokens: Vec<(&str, &serde_json::Map<String, serde_json::Value>)> = principal
        .tokens
        .iter()
        .map(|(p, c)| (p.name.as_str(), c.map()))
        .collect();
    applies_to(mask, &tokens)
}

/// [`applies`] for verified tokens given as (provider, claims): the first condition that
/// holds, in the order `always`, `agent` (a token has a non-null `act` claim),
/// `agent_providers`, `unattested` (no token of those providers).
pub fn applies_to(
    mask: &Mask,
    tokens: &[(&str, &serde_json::Map<String, serde_json::Value>)],
) -> Option<MaskWhy> {
    let w = &mask.when;
    let names = || tokens.iter().map(|(p, _)| *p);
    if w.always {
        return Some(MaskWhy::Always);
    }
    if w.agent
        && tokens
            .iter()
            .any(|(_, c)| c.get("act").is_some_and(|a| !a.is_null()))
    {
        return Some(MaskWhy::Agent);
    }
    if names().any(|n| w.agent_providers.iter().any(|p| p == n)) {
        return Some(MaskWhy::AgentProvider);
    }
    if !w.unattested.is_empty() && !names().any(|n| w.unattested.iter().any(|p| p == n)) {
        return Some(MaskWhy::Unattested);
    }
    None
}

/// How the origin's body reaches the transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body to mask: a HEAD request, 1xx, 204, 304.
    None,
    /// As it comes. (workerd already decodes `gzip` and `br` for a fetched response: measured,
    /// docs/verification.md.)
    Plain,
    /// Through the runtime's `DecompressionStream("deflate")`.
    Inflate,
}

/// The checks on the origin's response on a route whose mask applies: a JSON media type
/// (`application/json`, `*/*+json`; a charset, if any, UTF-8) and an encoding the gateway can
/// read; anything else is the gateway's 502 ([`Error::OriginUnmaskable`]).
pub fn check_response(
    method: &str,
    status: u16,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<BodyPlan, Error> {
    if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        return Ok(BodyPlan::None);
    }
    let plan = match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity" | "gzip" | "x-gzip" | "br") => BodyPlan::Plain,
        Some("deflate") => BodyPlan::Inflate,
        Some(_) => return Err(Error::OriginUnmaskable),
    };
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let json = essence == "application/json"
        || essence
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && s.ends_with("+json") && s.len() > 5);
    let charset_ok = parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim() == "charset" => {
            matches!(v.trim().trim_matches('"'), "utf-8" | "utf8")
        }
        _ => true,
    });
    if json && charset_ok {
        Ok(plan)
    } else {
        Err(Error::OriginUnmaskable)
    }
}

/// Origin headers a masked response loses, newline-separated: they describe the origin's
/// bytes, not the masked ones (length, encoding, validators, digests, ranges).
pub const MASKED_DELETES: &str = "content-length\ncontent-encoding\netag\ncontent-md5\ndigest\ncontent-digest\nrepr-digest\naccept-ranges\ncontent-range";

/// `Cache-Control` of a masked response: `private` first, the origin's directives kept except
/// those that let a shared cache store it (`public`, `s-maxage`, `proxy-revalidate`, an
/// earlier `private`).
pub fn masked_cache_control(origin: Option<&str>) -> String {
    let mut out = String::from("private");
    for d in origin.unwrap_or("").split(',') {
        let d = d.trim();
        let name = d
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if d.is_empty()
            || matches!(
                name.as_str(),
                "public" | "private" | "s-maxage" | "proxy-revalidate"
            )
        {
            continue;
        }
        out.push_str(", ");
        out.push_str(d);
    }
    out
}

/// `Vary` on any response of a masking route: the origin's, plus the credential headers that
/// decide whether the answer is masked (a cache must never give one caller's answer to
/// another).
pub fn vary(origin: Option<&str>, credential_headers: &str) -> String {
    match origin.map(str::trim) {
        Some("*") => "*".to_owned(),
        Some(o) if !o.is_empty() => format!("{o}, {credential_headers}"),
        _ => credential_headers.to_owned(),
    }
}

/// The value of [`MASKED_HEADER`].
pub fn masked_count(total: u64, complete: bool) -> String {
    if complete {
        total.to_string()
    } else {
        format!("{total}+")
    }
}

/// Issue 18: what the mask did, for the decision record and its log line: counts and rule
/// paths, never a value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MaskRecord {
    /// Why it applied.
    pub why: &'static str,
    /// Values masked, in total.
    pub masked: u64,
    /// Each rule path that masked something, with its count.
    pub paths: Vec<(String, u32)>,
    /// The whole body was transformed before the decision was recorded (else the body
    /// streamed on, and a `mask_end` log line has the final counts).
    pub complete: bool,
}

impl MaskRecord {
    pub fn new(why: MaskWhy, mask: &Mask, counts: &Counts, complete: bool) -> Self {
        MaskRecord {
            why: why.as_str(),
            masked: counts.total(),
            paths: mask
                .rules
                .iter()
                .zip(&counts.0)
                .filter(|(_, &n)| n > 0)
                .map(|(r, &n)| (r.path.clone(), n))
                .collect(),
            complete,
        }
    }
}

/// The key of the `hash` action from the Worker secret the mask names (base64, at least 32
/// bytes): `Ok(None)` when no rule hashes; a missing or unusable secret is
/// [`Error::SecretUnavailable`] (503), decided before anything is forwarded.
pub fn hash_key(
    mask: &Mask,
    secrets: &impl crate::gate::seams::Secrets,
) -> Result<Option<HashKey>, Error> {
    let Some(name) = &mask.secret else {
        return Ok(None);
    };
    let text = secrets.secret(name).ok_or(Error::SecretUnavailable)?;
    let bytes =
        crate::gate::nonce::decode_any_base64(text.trim()).ok_or(Error::SecretUnavailable)?;
    HashKey::new(&bytes)
        .map(Some)
        .ok_or(Error::SecretUnavailable)
}
