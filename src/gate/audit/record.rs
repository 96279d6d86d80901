//! The decision record: one per decision (allow and deny), the leaf of the decision log.
//!
//! Canonical JSON (RFC 8785, [`super::jcs`]) of an object with the AIMS minimum fields:
//!
//! | member | what |
//! |---|---|
//! | `v` | record format, `1` |
//! | `kind` | `decision` |
//! | `request_id`, `time_ms` | the decision id (the log line's `request_id`) and the request's start, ms since the epoch |
//! | `policy` | base64url SHA-256 of the embedded policy ([`policy_hash`]) |
//! | `resource` | `route` (id or endpoint label), `method`, `path` |
//! | `request` | the request binding: `method`, `url` (scheme, host and path, never the query), `query_sha256` and `body_sha256` when there is one / it is known |
//! | `decision` | `verdict` (`allow`, `public`, `deny`, `challenge`), `status` (the gateway's own answer), `reason` (the precise reason code), `error` (the wire code), `provider` (whose credential failed) |
//! | `subject` | the delegated subject (`sub` of the first credential that has one) |
//! | `agent` | `id` (the current actor: the outermost `act.sub`, else the first credential's `client_id`) and `act` (the full chain, outermost first) |
//! | `issuers` | each credential's `iss` |
//! | `tokens` | per credential presented: `provider`, `sha256` (base64url SHA-256 of the credential, never the credential), `verified`, `jti` |
//! | `posture` | `attestations` (the providers whose credentials verified) and `device` (`did`) |
//! | `operator` | `iss` and `sub` of the authenticated operator, for operator API requests |
//! | `remediation` | what the refusal asked the client to do (`dpop_nonce`, `attestation_challenge`), when it did |
//! | `truncated` | `true` when a value was cut to its bound |
//!
//! Bounded whatever the claims say: every claim-derived string at most [`MAX_CLAIM`] bytes,
//! request strings (path, URL) at most [`MAX_URL`] bytes, cut at a character boundary and
//! marked with `…` (and `truncated: true`); lists at most [`MAX_LIST`] entries. Control
//! characters are escaped by the canonical form; strings are UTF-8 (the token reader refuses
//! anything else). Only strings, integers below 2^53, booleans, arrays and objects appear, so a
//! record parses and re-canonicalises to the same bytes with any JSON reader.
//!
//! The record is written straight into its canonical text: every member name is ASCII and
//! known here, so the members are written in their canonical (sorted) order, and strings get
//! the escapes of [`super::jcs::string`]. No intermediate JSON value is built: this runs for
//! every decision of an audited route (issue 17's CPU target). The tests re-canonicalise
//! records with [`super::jcs`] (an independent path) and expect the same bytes.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::FreshNonce;
use crate::gate::phase::record::Decision;
use crate::jose::b64;

/// Longest claim-derived string (subject, agent, issuer, jti, device), in bytes.
pub const MAX_CLAIM: usize = 256;
/// Longest request string (path, URL), in bytes.
pub const MAX_URL: usize = 2048;
/// Most entries in a list (act chain, tokens, issuers).
pub const MAX_LIST: usize = 16;

/// What the record needs besides the decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// [`policy_hash`] of the policy in force.
    pub policy_hash: &'a str,
    /// The request URL without its query (the DPoP `htu`).
    pub url: &'a str,
    pub query: Option<&'a str>,
    /// SHA-256 of the body, when the gateway read it.
    pub body_sha256: Option<[u8; 32]>,
}

/// base64url SHA-256 of the policy's embedded compiled form (`attestgate::EMBEDDED_POLICY`,
/// which `attestgate audit policy-hash DIR` recomputes from a policy folder): the one definition
/// of the policy hash, which [`crate::gate::Gate::policy_sha256`] computes once per isolate for
/// receipts and records alike.
pub fn policy_hash(embedded: &[u8]) -> String {
    b64::encode(&Sha256::digest(embedded))
}

/// The record's canonical text, written member by member in canonical order.
struct Writer {
    out: String,
    truncated: bool,
}

impl Writer {
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// `"name":` (after a `,` unless it opens its object).
    fn name(&mut self, first: bool, name: &str) {
        if !first {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    /// `s` as a JSON string, cut to `max` bytes (at a character boundary, marked with `…`).
    fn cut(&mut self, s: &str, max: usize) {
        if s.len() <= max {
            super::jcs::string(&mut self.out, s);
            return;
        }
        self.truncated = true;
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut cut = String::with_capacity(end + 3);
        cut.push_str(s.get(..end).unwrap_or_default());
        cut.push('…');
        super::jcs::string(&mut self.out, &cut);
    }

    fn claim(&mut self, s: &str) {
        self.cut(s, MAX_CLAIM);
    }

    /// A string the gateway itself made (a code, a hash): never cut.
    fn text(&mut self, s: &str) {
        super::jcs::string(&mut self.out, s);
    }

    fn int(&mut self, n: i64) {
        use core::fmt::Write;
        let _ = write!(self.out, "{n}");
    }

    fn hash(&mut self, digest: &[u8]) {
        self.out.push('"');
        self.out.push_str(&b64::encode(digest));
        self.out.push('"');
    }

    /// At most [`MAX_LIST`] claims.
    fn list<'s>(&mut self, items: impl Iterator<Item = &'s str>) {
        self.out.push('[');
        for (i, item) in items.enumerate() {
            if i == MAX_LIST {
                self.truncated = true;
                break;
            }
            if i > 0 {
                self.out.push(',');
            }
            self.claim(item);
        }
        self.out.push(']');
    }
}

/// The record's canonical bytes: what the log's leaf hashes.
///
/// Members in canonical order (RFC 8785 §3.2.3: by name; all names are ASCII, so byte order):
/// `agent`, `decision`, `issuers`, `kind`, `operator`, `policy`, `posture`, `remediation`,
/// `request`, `request_id`, `resource`, `subject`, `time_ms`, `tokens`, `truncated`, `v`; and
/// within each object likewise. `truncated` is written after every bounded value.
pub fn canonical(d: &Decision<'_>, cx: &Context<'_>) -> String {
    let mut w = Writer {
        out: String::with_capacity(768),
        truncated: false,
    };
    let p = &d.principal;
    w.raw("{");
    let mut first = true;

    let act = p.agents();
    let agent_id = act.first().map(String::as_str).or_else(|| {
        p.tokens
            .iter()
            .find_map(|(_, c)| c.get("client_id").and_then(Value::as_str))
    });
    if agent_id.is_some() || !act.is_empty() {
        w.name(first, "agent");
        first = false;
        w.raw("{");
        w.name(true, "act");
        w.list(act.iter().map(String::as_str));
        if let Some(id) = agent_id {
            w.name(false, "id");
            w.claim(id);
        }
        w.raw("}");
    }

    w.name(first, "decision");
    w.raw("{");
    let error = d.error();
    let wire = error.map(|e| e.wire(""));
    let mut inner = true;
    if let Some(wire) = &wire {
        w.name(inner, "error");
        inner = false;
        w.text(wire.code);
    }
    if let Some(provider) = d.provider {
        w.name(inner, "provider");
        inner = false;
        w.claim(provider);
    }
    if let Some(e) = error {
        w.name(inner, "reason");
        inner = false;
        w.text(e.reason());
    }
    if let Some(status) = d.status {
        w.name(inner, "status");
        inner = false;
        w.int(i64::from(status));
    }
    w.name(inner, "verdict");
    w.text(d.verdict().as_str());
    w.raw("}");

    let issuers = p.issuers();
    if !issuers.is_empty() {
        w.name(false, "issuers");
        w.list(issuers.into_iter());
    }
    w.name(false, "kind");
    w.raw("\"decision\"");
    if let Some(op) = &d.operator {
        w.name(false, "operator");
        w.raw("{");
        w.name(true, "iss");
        w.claim(&op.iss);
        w.name(false, "sub");
        w.claim(&op.sub);
        w.raw("}");
    }
    w.name(false, "policy");
    w.text(cx.policy_hash);
    if !p.tokens.is_empty() {
        w.name(false, "posture");
        w.raw("{");
        w.name(true, "attestations");
        w.list(p.providers());
        if let Some(device) = p.device() {
            w.name(false, "device");
            w.claim(device);
        }
        w.raw("}");
    }
    let remediation = wire.and_then(|w| match w.fresh_nonce {
        FreshNonce::No => None,
        FreshNonce::Dpop => Some("dpop_nonce"),
        FreshNonce::Attestation => Some("attestation_challenge"),
    });
    if let Some(r) = remediation {
        w.name(false, "remediation");
        w.raw("[");
        w.text(r);
        w.raw("]");
    }

    w.name(false, "request");
    w.raw("{");
    let mut inner = true;
    if let Some(h) = &cx.body_sha256 {
        w.name(inner, "body_sha256");
        inner = false;
        w.hash(h);
    }
    w.name(inner, "method");
    w.claim(d.method);
    if let Some(q) = cx.query {
        w.name(false, "query_sha256");
        w.hash(&Sha256::digest(q.as_bytes()));
    }
    w.name(false, "url");
    w.cut(cx.url, MAX_URL);
    w.raw("}");

    w.name(false, "request_id");
    w.claim(d.request_id);
    w.name(false, "resource");
    w.raw("{");
    w.name(true, "method");
    w.claim(d.method);
    w.name(false, "path");
    w.cut(d.path, MAX_URL);
    if let Some(route) = d.route {
        w.name(false, "route");
        w.claim(route);
    }
    w.raw("}");
    if let Some(subject) = p.subject() {
        w.name(false, "subject");
        w.claim(subject);
    }
    w.name(false, "time_ms");
    w.int(d.timings.started_ms.clamp(0.0, 9.0e15).trunc() as i64);

    if !p.presented.is_empty() {
        w.name(false, "tokens");
        w.raw("[");
        for (i, (provider, digest)) in p.presented.iter().enumerate() {
            if i == MAX_LIST {
                w.truncated = true;
                break;
            }
            if i > 0 {
                w.raw(",");
            }
            let verified = p.tokens.iter().find(|(rt, _)| rt.name == *provider);
            w.raw("{");
            let mut inner = true;
            if let Some(jti) = verified.and_then(|(_, c)| c.jti()) {
                w.name(inner, "jti");
                inner = false;
                w.claim(jti);
            }
            w.name(inner, "provider");
            w.claim(provider);
            w.name(false, "sha256");
            w.hash(digest);
            w.name(false, "verified");
            w.raw(if verified.is_some() { "true" } else { "false" });
            w.raw("}");
        }
        w.raw("]");
    }
    if w.truncated {
        w.name(false, "truncated");
        w.raw("true");
    }
    w.name(false, "v");
    w.raw("1}");
    w.out
}
