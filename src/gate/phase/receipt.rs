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
//!
//! The gateway also sends the `Content-Digest` header it signed. An inbound `Attestgate-Receipt`
//! (any case, `_` for `-`) is deleted on every route; on a receipt route so is every other
//! spelling of `Content-Digest` (the exact name is replaced). A receipt route reads its body
//! under the cap (`max_body_bytes`; 413 above it), so the digest covers exactly what is sent.
//! Without a usable signing key the request is refused with 503 before anything single-use is
//! spent, and nothing reaches the origin.

use serde_json::{json, Map, Value};

use crate::gate::digest;
use crate::gate::phase::record::Principal;
use crate::gate::Gate;
use crate::policy::{ReceiptRule, Route};

/// The receipt's request header.
pub const RECEIPT_HEADER: &str = "attestgate-receipt";
/// The RFC 9530 digest header the gateway sends with a receipt.
pub const CONTENT_DIGEST_HEADER: &str = "content-digest";
/// The receipt's JWS `typ`.
pub const RECEIPT_TYP: &str = "attestgate-receipt+jwt";

/// A receipt to sign: the claims, and the digest also sent as `Content-Digest`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptPlan {
    pub claims: Value,
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
}

/// The receipt for `facts`.
pub fn plan(facts: &Facts<'_>) -> ReceiptPlan {
    let p = facts.principal;
    let content_digest = digest::content_digest(facts.body);
    let ttl = i64::try_from(facts.rule.ttl_secs).unwrap_or(60);
    let mut c = Map::new();
    let mut put = |name: &str, value: Value| {
        c.insert(name.to_owned(), value);
    };
    put(
        "iss",
        Value::from(crate::gate::signing::issuer(
            facts.gate,
            facts.request_origin,
        )),
    );
    // The upstream the request goes to (`upstream = "NAME"`), else the route's origin.
    let aud = facts
        .gate
        .policy()
        .route_upstream(facts.route)
        .map_or(facts.route.origin.as_str(), |u| u.url.as_str());
    put("aud", Value::from(aud.trim_end_matches('/')));
    put("iat", Value::from(facts.now));
    put("exp", Value::from(facts.now.saturating_add(ttl)));
    put("jti", Value::from(facts.request_id));
    if let Some(sub) = p.subject() {
        put("sub", Value::from(sub));
    }
    if let Some(act) = act_chain(p) {
        put("act", act);
    }
    let mut attestation = json!({
        "providers": p.providers().collect::<Vec<_>>(),
        "issuers": p.issuers(),
    });
    if let (Some(did), Value::Object(m)) = (p.device(), &mut attestation) {
        m.insert("device_id".into(), Value::from(did));
    }
    put("attestation", attestation);
    put("route", Value::from(facts.route.id.as_str()));
    put("policy_sha256", Value::from(facts.gate.policy_sha256()));
    let scopes = granted_scopes(p);
    if !scopes.is_empty() {
        put("scope", Value::from(scopes.join(" ")));
    }
    if let Some(jkt) = p
        .tokens
        .iter()
        .find_map(|(_, c)| c.get_path(&["cnf", "jkt"]).and_then(Value::as_str))
    {
        put("cnf", json!({ "jkt": jkt }));
    }
    put("htm", Value::from(facts.method));
    put("htu", Value::from(facts.target));
    put("content_digest", Value::from(content_digest.as_str()));
    ReceiptPlan {
        claims: Value::Object(c),
        content_digest,
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

/// The `act` chain of the first credential that has one, as nested `{"sub", "iss"?, "act"}`
/// objects (RFC 8693 §4.1), at most [`crate::policy::act::MAX_DEPTH`] levels; the other members
/// of each level are left out.
fn act_chain(p: &Principal<'_>) -> Option<Value> {
    let claims = p
        .tokens
        .iter()
        .find(|(_, c)| c.get("act").is_some())?
        .1
        .map();
    let levels: Vec<Map<String, Value>> = crate::policy::act::chain(claims)
        .take(crate::policy::act::MAX_DEPTH)
        .map_while(|level| {
            let sub = level.sub()?;
            let mut m = Map::new();
            m.insert("sub".into(), Value::from(sub));
            if let Some(iss) = level.object().and_then(|o| o.get("iss")?.as_str()) {
                m.insert("iss".into(), Value::from(iss));
            }
            Some(m)
        })
        .collect();
    levels.into_iter().rev().fold(None, |inner, mut level| {
        if let Some(inner) = inner {
            level.insert("act".into(), inner);
        }
        Some(Value::Object(level))
    })
}
