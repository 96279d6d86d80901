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

use serde_json::{json, Map, Value};
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

/// base64url SHA-256 of the policy's embedded JSON (`attestgate::EMBEDDED_POLICY_JSON`, which
/// `attestgate audit policy-hash DIR` recomputes from a policy folder).
pub fn policy_hash(embedded_json: &str) -> String {
    b64::encode(&Sha256::digest(embedded_json.as_bytes()))
}

/// base64url SHA-256 of a credential, as a record names it.
pub fn token_hash(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

struct Bounded {
    truncated: bool,
}

impl Bounded {
    fn cut(&mut self, s: &str, max: usize) -> Value {
        if s.len() <= max {
            return Value::from(s);
        }
        self.truncated = true;
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut out = s.get(..end).unwrap_or_default().to_owned();
        out.push('…');
        Value::from(out)
    }

    fn claim(&mut self, s: &str) -> Value {
        self.cut(s, MAX_CLAIM)
    }

    fn list<'s>(&mut self, items: impl Iterator<Item = &'s str>) -> Value {
        let mut out = Vec::new();
        for item in items {
            if out.len() == MAX_LIST {
                self.truncated = true;
                break;
            }
            out.push(self.claim(item));
        }
        Value::Array(out)
    }
}

fn put(map: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(name.to_owned(), v);
    }
}

/// The record of `d`, as a JSON value (not yet canonical: [`canonical`]).
pub fn build(d: &Decision<'_>, cx: &Context<'_>) -> Value {
    let mut b = Bounded { truncated: false };
    let p = &d.principal;

    let mut resource = Map::new();
    put(&mut resource, "route", d.route.map(|r| b.claim(r)));
    resource.insert("method".into(), b.claim(d.method));
    resource.insert("path".into(), b.cut(d.path, MAX_URL));

    let mut request = Map::new();
    request.insert("method".into(), b.claim(d.method));
    request.insert("url".into(), b.cut(cx.url, MAX_URL));
    put(
        &mut request,
        "query_sha256",
        cx.query
            .map(|q| Value::from(b64::encode(&Sha256::digest(q.as_bytes())))),
    );
    put(
        &mut request,
        "body_sha256",
        cx.body_sha256.map(|h| Value::from(b64::encode(&h))),
    );

    let mut decision = Map::new();
    decision.insert("verdict".into(), Value::from(d.verdict().as_str()));
    put(&mut decision, "status", d.status.map(Value::from));
    let error = d.error();
    put(
        &mut decision,
        "reason",
        error.map(|e| Value::from(e.reason())),
    );
    let wire = error.map(|e| e.wire(""));
    put(
        &mut decision,
        "error",
        wire.as_ref().map(|w| Value::from(w.code)),
    );
    put(&mut decision, "provider", d.provider.map(|s| b.claim(s)));

    let mut record = Map::new();
    record.insert("v".into(), Value::from(1));
    record.insert("kind".into(), Value::from("decision"));
    record.insert("request_id".into(), b.claim(d.request_id));
    let time_ms = d.timings.started_ms.clamp(0.0, 9.0e15).trunc() as i64;
    record.insert("time_ms".into(), Value::from(time_ms));
    record.insert("policy".into(), Value::from(cx.policy_hash));
    record.insert("resource".into(), Value::Object(resource));
    record.insert("request".into(), Value::Object(request));
    record.insert("decision".into(), Value::Object(decision));
    put(&mut record, "subject", p.subject().map(|s| b.claim(s)));

    let act = p.agents();
    let agent_id = act.first().map(String::as_str).or_else(|| {
        p.tokens
            .iter()
            .find_map(|(_, c)| c.get("client_id").and_then(Value::as_str))
    });
    if agent_id.is_some() || !act.is_empty() {
        let mut agent = Map::new();
        put(&mut agent, "id", agent_id.map(|s| b.claim(s)));
        agent.insert("act".into(), b.list(act.iter().map(String::as_str)));
        record.insert("agent".into(), Value::Object(agent));
    }
    let issuers = p.issuers();
    if !issuers.is_empty() {
        record.insert("issuers".into(), b.list(issuers.into_iter()));
    }

    let mut tokens = Vec::new();
    for (i, (provider, digest)) in p.presented.iter().enumerate() {
        if i == MAX_LIST {
            b.truncated = true;
            break;
        }
        let verified = p.tokens.iter().find(|(rt, _)| rt.name == *provider);
        let mut t = Map::new();
        t.insert("provider".into(), b.claim(provider));
        t.insert("sha256".into(), Value::from(b64::encode(digest)));
        t.insert("verified".into(), Value::from(verified.is_some()));
        put(
            &mut t,
            "jti",
            verified.and_then(|(_, c)| c.jti()).map(|j| b.claim(j)),
        );
        tokens.push(Value::Object(t));
    }
    if !tokens.is_empty() {
        record.insert("tokens".into(), Value::Array(tokens));
    }
    if !p.tokens.is_empty() {
        let mut posture = Map::new();
        posture.insert("attestations".into(), b.list(p.providers()));
        put(&mut posture, "device", p.device().map(|s| b.claim(s)));
        record.insert("posture".into(), Value::Object(posture));
    }
    let remediation = wire.and_then(|w| match w.fresh_nonce {
        FreshNonce::No => None,
        FreshNonce::Dpop => Some("dpop_nonce"),
        FreshNonce::Attestation => Some("attestation_challenge"),
    });
    if let Some(r) = remediation {
        record.insert("remediation".into(), json!([r]));
    }
    if let Some(op) = &d.operator {
        let mut o = Map::new();
        o.insert("iss".into(), b.claim(&op.iss));
        o.insert("sub".into(), b.claim(&op.sub));
        record.insert("operator".into(), Value::Object(o));
    }
    if b.truncated {
        record.insert("truncated".into(), Value::Bool(true));
    }
    Value::Object(record)
}

/// The record's canonical bytes: what the log's leaf hashes.
pub fn canonical(d: &Decision<'_>, cx: &Context<'_>) -> String {
    super::jcs::to_string(&build(d, cx))
}
