//! The request receipt (issue 14 item 4), planned in the core, signed by the executor.
//!
//! On a route with `receipt = true`, every forwarded request carries `Attestgate-Receipt`: a
//! compact JWS (`typ` `attestgate-receipt+jwt`, the gateway's signing key,
//! [`crate::gate::signing`]) of exactly these claims:
//!
//! | claim | value |
//! |---|---|
//! | `iss` | `[gateway] issuer`, else the origin the request was sent to |
//! | `aud` | the upstream: its `url` (`upstream = "NAME"`), else the route's origin (without a trailing `/`) |
//! | `iat`, `exp` | now, now + `receipt_ttl_secs` (at most 300) |
//! | `jti` | the decision's `request_id` (one receipt per request) |
//! | `sub` | the verified subject (absent on a public route) |
//! | `act` | the delegation chain (RFC 8693: `{"sub", "iss"?, "act": {...}}`, outermost first) |
//! | `attestation` | `{"providers": [...], "issuers": [...], "device_id"?}`: who verified what |
//! | `route` | the route id |
//! | `policy_sha256` | SHA-256 (base64url) of the compiled policy embedded in this build |
//! | `scope` | the verified tokens' granted scopes (`scope`/`scp`), space-separated |
//! | `cnf` | `{"jkt": ...}`: the DPoP key thumbprint the token is bound to, if any |
//! | `htm` | the method, exactly as forwarded |
//! | `htu` | the URL exactly as forwarded (the origin's URL, path and query) |
//! | `content_digest` | RFC 9530 `sha-256=:...:` of the exact body bytes forwarded |
//! | `intent_sha256` | the SHA-256 of the token's declared intent, normalised (issue 15), if it declares one |
//! | `log_index` | on an `audit = "sync"` route: the index of the decision's record in the decision log (issue 17), so the origin can ask for its inclusion proof |
//!
//! The gateway also sends the `Content-Digest` header it signed. An inbound `Attestgate-Receipt`
//! (any case, `_` for `-`) is deleted on every route; on a receipt route so is every other
//! spelling of `Content-Digest` (the exact name is replaced). A receipt route reads its body
//! under the cap (`max_body_bytes`; 413 above it), so the digest covers exactly what is sent.
//! Without a usable signing key the request is refused with 503 before anything single-use is
//! spent, and nothing reaches the origin.

use crate::gate::digest;
use crate::gate::log::{json_object, json_str, json_strs};
use crate::gate::phase::record::Principal;
use crate::gate::Gate;
use crate::policy::{ReceiptRule, Route};

/// The receipt's request header.
pub const RECEIPT_HEADER: &str = "attestgate-receipt";
/// The RFC 9530 digest header the gateway sends with a receipt.
pub const CONTENT_DIGEST_HEADER: &str = "content-digest";
/// The receipt's JWS `typ`.
pub const RECEIPT_TYP: &str = "attestgate-receipt+jwt";

/// A receipt to sign: the claims (the text of a JSON object, members sorted by name), and the
/// digest also sent as `Content-Digest`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptPlan {
    pub claims: String,
    pub content_digest: String,
}

/// What the receipt of one forwarded request says.
pub struct Facts<'a> {
    pub gate: &'a Gate,
    pub route: &'a Route,
    pub rule: ReceiptRule,
    pub principal: &'a Principal<'a>,
    /// The origin (scheme and authority) the request was sent to: the default `iss`.
    pub request_origin: &'a str,
    pub method: &'a str,
    /// The URL forwarded to.
    pub target: &'a str,
    /// The body forwarded (empty: none).
    pub body: &'a [u8],
    pub request_id: &'a str,
    pub now: i64,
    /// Issue 15: the hash of the declared intent (`Decision::intent.hash`), if any.
    pub intent_sha256: Option<&'a str>,
}

/// The receipt for `facts`. The JSON is written by hand (`gate::log`'s writers, as the
/// gateway's other JSON texts): the same text `serde_json` makes of the same members, with less
/// code in the Worker.
pub fn plan(facts: &Facts<'_>) -> ReceiptPlan {
    let p = facts.principal;
    let content_digest = digest::content_digest(facts.body);
    let ttl = i64::try_from(facts.rule.ttl_secs).unwrap_or(60);
    // The upstream the request goes to (`upstream = "NAME"`), else the route's origin.
    let aud = facts
        .gate
        .policy()
        .route_upstream(facts.route)
        .map_or(facts.route.origin.as_str(), |u| u.url.as_str());
    let mut attestation = Vec::with_capacity(3);
    let device = p.device().map(json_str);
    let (issuers, providers) = (json_strs(p.issuers()), json_strs(p.providers()));
    if let Some(did) = &device {
        attestation.push(("device_id", did.as_str()));
    }
    attestation.push(("issuers", issuers.as_str()));
    attestation.push(("providers", providers.as_str()));
    let scopes = granted_scopes(p);
    let jkt = p
        .tokens
        .iter()
        .find_map(|(_, c)| c.get_path(&["cnf", "jkt"]).and_then(|v| v.as_str()));
    let texts = Texts {
        act: act_chain(p),
        attestation: json_object(&attestation),
        aud: json_str(aud.trim_end_matches('/')),
        cnf: jkt.map(|j| json_object(&[("jkt", &json_str(j))])),
        content_digest: json_str(&content_digest),
        exp: facts.now.saturating_add(ttl).to_string(),
        htm: json_str(facts.method),
        htu: json_str(facts.target),
        iat: facts.now.to_string(),
        intent: facts.intent_sha256.map(json_str),
        iss: json_str(crate::gate::signing::issuer(
            facts.gate,
            facts.request_origin,
        )),
        jti: json_str(facts.request_id),
        policy: json_str(facts.gate.policy_sha256()),
        route: json_str(&facts.route.id),
        scope: (!scopes.is_empty()).then(|| json_str(&scopes.join(" "))),
        sub: p.subject().map(json_str),
    };
    ReceiptPlan {
        claims: texts.object(),
        content_digest,
    }
}

/// The JSON text of each claim.
struct Texts {
    act: Option<String>,
    attestation: String,
    aud: String,
    cnf: Option<String>,
    content_digest: String,
    exp: String,
    htm: String,
    htu: String,
    iat: String,
    intent: Option<String>,
    iss: String,
    jti: String,
    policy: String,
    route: String,
    scope: Option<String>,
    sub: Option<String>,
}

impl Texts {
    /// The claims object, members sorted by name; absent ones left out.
    fn object(&self) -> String {
        let all: [(&str, Option<&String>); 16] = [
            ("act", self.act.as_ref()),
            ("attestation", Some(&self.attestation)),
            ("aud", Some(&self.aud)),
            ("cnf", self.cnf.as_ref()),
            ("content_digest", Some(&self.content_digest)),
            ("exp", Some(&self.exp)),
            ("htm", Some(&self.htm)),
            ("htu", Some(&self.htu)),
            ("iat", Some(&self.iat)),
            ("intent_sha256", self.intent.as_ref()),
            ("iss", Some(&self.iss)),
            ("jti", Some(&self.jti)),
            ("policy_sha256", Some(&self.policy)),
            ("route", Some(&self.route)),
            ("scope", self.scope.as_ref()),
            ("sub", self.sub.as_ref()),
        ];
        let members: Vec<(&str, &str)> = all
            .iter()
            .filter_map(|(n, v)| v.map(|v| (*n, v.as_str())))
            .collect();
        json_object(&members)
    }
}

/// Every scope the verified tokens grant (`scope` and `scp`), each once, in order.
fn granted_scopes<'p>(p: &'p Principal<'_>) -> Vec<&'p str> {
    let mut out: Vec<&str> = Vec::new();
    for (_, claims) in &p.tokens {
        for s in claims.scopes() {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// The `act` chain of the first credential that has one, as nested `{"act"?, "iss"?, "sub"}`
/// objects (RFC 8693 §4.1), at most [`crate::policy::act::MAX_DEPTH`] levels; the other members
/// of each level are left out.
fn act_chain(p: &Principal<'_>) -> Option<String> {
    let claims = p
        .tokens
        .iter()
        .find(|(_, c)| c.get("act").is_some())?
        .1
        .map();
    let levels: Vec<(String, Option<String>)> = crate::policy::act::chain(claims)
        .take(crate::policy::act::MAX_DEPTH)
        .map_while(|level| {
            let sub = json_str(level.sub()?);
            let iss = level
                .object()
                .and_then(|o| o.get("iss")?.as_str())
                .map(json_str);
            Some((sub, iss))
        })
        .collect();
    levels.into_iter().rev().fold(None, |inner, (sub, iss)| {
        let mut members: Vec<(&str, &str)> = Vec::with_capacity(3);
        if let Some(inner) = &inner {
            members.push(("act", inner));
        }
        if let Some(iss) = &iss {
            members.push(("iss", iss));
        }
        members.push(("sub", &sub));
        Some(json_object(&members))
    })
}

/// Issue 17 item 6: the receipt of a request whose record was sequenced first (`audit =
/// "sync"`) names the record's index, `log_index`, between `jti` and `policy_sha256` (the
/// members stay sorted). Every value in the claims text is a JSON string or a number written by
/// this module, so `,"policy_sha256":` occurs exactly once, at the top level.
pub fn with_log_index(plan: &mut ReceiptPlan, index: u64) {
    const AT: &str = ",\"policy_sha256\":";
    if let Some(i) = plan.claims.find(AT) {
        plan.claims
            .insert_str(i, &format!(",\"log_index\":{index}"));
    }
}
