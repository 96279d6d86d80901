//! Decision records (issue 17 item 1) from real decisions of the native pipeline: the AIMS
//! fields, canonical bytes (RFC 8785), token hashes and never a token, bounded under hostile
//! claim values.

mod common;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use attestgate::api::{self, Gateway, MemoryReplay, Seams, StaticKeys};
use attestgate::gate::audit::{jcs, record};
use attestgate::gate::phase::record::Decision;
use attestgate::jose::{block_on_ready, NativeVerifier};

const NOW: i64 = 1_700_000_000;

fn b64u(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

fn key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
}

fn policy() -> Gateway {
    let sec1 = key().verifying_key().to_sec1_bytes();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
        "x": b64u(&sec1[1..33]), "y": b64u(&sec1[33..])}]});
    let text = format!(
        r#"
[gateway]
origin = "https://origin.example"
realm = "api.example.com"

[provider.agent]
issuer = "https://idp.example"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
token_types = ["JWT"]
jwks = '{jwks}'

[[route]]
id = "pay"
path = "/pay/**"
require = {{ all = ["agent"] }}
scopes = ["pay"]
audit = "sync"

[[route]]
id = "quiet"
path = "/quiet/**"
require = {{ all = ["agent"] }}
"#
    );
    Gateway::new(api::compile_toml("audit.toml", &text).unwrap()).unwrap()
}

fn token(claims: &Value) -> String {
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let sig = common::sign::es256(&key(), input.as_bytes());
    format!("{input}.{}", b64u(&sig))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": "https://idp.example", "aud": "https://api.example.com",
        "exp": NOW + 300, "iat": NOW, "sub": "alice", "jti": "j-1", "scope": "pay",
        "act": {"sub": "agent:buyer", "act": {"sub": "agent:planner"}}, "did": "device-9"});
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    c
}

/// The record of one request, as the Worker builds it.
/// The request headers of `tok` as a Bearer token (none without one).
fn bearer(tok: Option<&str>) -> Vec<(String, String)> {
    tok.map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
        .unwrap_or_default()
}

/// The decision on a POST to `url` with `headers`.
fn decide<'a>(
    gw: &'a Gateway,
    url: &'a str,
    headers: &'a [(String, String)],
    request_id: &'a str,
) -> Decision<'a> {
    let req = api::Request {
        method: "POST",
        url,
        headers,
    };
    let (keys, replay) = (StaticKeys::new(), MemoryReplay::new());
    let seams = Seams {
        keys: &keys,
        verifier: &NativeVerifier,
        replay: &replay,
        nonce_key: None,
        signing_keys: None,
        deny: None,
    };
    block_on_ready(async {
        Ok::<_, attestgate::jose::Error>(gw.decide(&req, &seams, NOW, request_id).await)
    })
    .unwrap()
}

fn record_of(gw: &Gateway, url: &str, tok: Option<&str>) -> (Value, String) {
    let headers = bearer(tok);
    let d = decide(gw, url, &headers, "req-1");
    let parts = attestgate::gate::url::split(url).unwrap();
    let cx = record::Context {
        policy_hash: "P",
        url: parts.htu,
        query: parts.query,
        body_sha256: None,
    };
    let text = record::canonical(&d, &cx);
    (serde_json::from_str(&text).unwrap(), text)
}

#[test]
fn an_allowed_request_has_the_aims_fields_and_token_hashes_never_tokens() {
    let gw = policy();
    let tok = token(&claims(json!({})));
    let (r, text) = record_of(&gw, "https://api.example.com/pay/1?secret=x", Some(&tok));
    assert_eq!(r["v"], 1);
    assert_eq!(r["request_id"], "req-1");
    assert_eq!(r["time_ms"], NOW * 1000);
    assert_eq!(r["policy"], "P");
    assert_eq!(
        r["resource"],
        json!({"route": "pay", "method": "POST", "path": "/pay/1"})
    );
    assert_eq!(r["request"]["url"], "https://api.example.com/pay/1");
    assert_eq!(
        r["request"]["query_sha256"],
        b64u(&Sha256::digest(b"secret=x"))
    );
    assert_eq!(r["decision"], json!({"verdict": "allow"}));
    assert_eq!(r["subject"], "alice");
    assert_eq!(
        r["agent"],
        json!({"id": "agent:buyer", "act": ["agent:buyer", "agent:planner"]})
    );
    assert_eq!(r["issuers"], json!(["https://idp.example"]));
    assert_eq!(
        r["tokens"],
        json!([{"provider": "agent", "jti": "j-1", "verified": true,
            "sha256": b64u(&Sha256::digest(tok.as_bytes()))}])
    );
    assert_eq!(
        r["posture"],
        json!({"attestations": ["agent"], "device": "device-9"})
    );
    // Never the token, nor any of its parts, nor the query.
    for part in tok.split('.') {
        assert!(!text.contains(part), "{text}");
    }
    assert!(!text.contains("secret=x"));
    // Canonical: re-canonicalising the parsed record gives the same bytes.
    assert_eq!(jcs::to_string(&r), text);
}

#[test]
fn a_refusal_records_the_reason_and_the_failed_token() {
    let gw = policy();
    let good = token(&claims(json!({})));
    // One character of the signature changed (the middle one: every bit of it counts).
    let at = good.len() - 40;
    let flipped = if &good[at..at + 1] == "A" { "B" } else { "A" };
    let bad = format!("{}{flipped}{}", &good[..at], &good[at + 1..]);
    let (r, _) = record_of(&gw, "https://api.example.com/pay/1", Some(&bad));
    assert_eq!(r["decision"]["verdict"], "deny");
    assert_eq!(r["decision"]["status"], 401);
    assert_eq!(r["decision"]["error"], "invalid_token");
    assert!(r["decision"]["reason"].is_string());
    assert_eq!(r["decision"]["provider"], "agent");
    assert_eq!(r["tokens"][0]["verified"], false);
    assert_eq!(
        r["tokens"][0]["sha256"],
        b64u(&Sha256::digest(bad.as_bytes()))
    );
    assert!(r.get("posture").is_none());
    // Insufficient scope: verified, then refused.
    let tok = token(&claims(json!({"scope": "read"})));
    let (r, _) = record_of(&gw, "https://api.example.com/pay/1", Some(&tok));
    assert_eq!(r["decision"]["error"], "insufficient_scope");
    assert_eq!(r["tokens"][0]["verified"], true);
    assert_eq!(r["subject"], "alice");
    // No route: still a record, without tokens.
    let (r, _) = record_of(&gw, "https://api.example.com/nowhere", None);
    assert_eq!(r["decision"]["error"], "not_found");
}

#[test]
fn routes_without_audit_do_not_hash_tokens() {
    let gw = policy();
    let tok = token(&claims(json!({})));
    let (r, _) = record_of(&gw, "https://api.example.com/quiet/1", Some(&tok));
    assert!(r.get("tokens").is_none());
}

#[test]
fn hostile_claim_values_stay_canonical_and_bounded() {
    let gw = policy();
    // Within the token size limit (8 KiB), far beyond the record's bounds.
    let huge = "é".repeat(1500);
    let controls: String = (0u8..0x20)
        .map(char::from)
        .chain("\u{2028}\u{7f}\"\\".chars())
        .collect();
    let tok = token(&claims(json!({
        "sub": huge,
        "jti": controls,
        "did": "\u{1f602}".repeat(300),
        "act": {"sub": "a", "act": {"sub": "b", "act": {"sub": "c", "act": {"sub": "d"}}}},
    })));
    let long_path = format!("https://api.example.com/pay/{}", "x".repeat(10_000));
    let (r, text) = record_of(&gw, &long_path, Some(&tok));
    assert_eq!(r["truncated"], true);
    let sub = r["subject"].as_str().unwrap();
    assert!(
        sub.len() <= record::MAX_CLAIM + 3 && sub.ends_with('…'),
        "{}",
        sub.len()
    );
    assert!(r["posture"]["device"].as_str().unwrap().len() <= record::MAX_CLAIM + 3);
    assert!(r["resource"]["path"].as_str().unwrap().len() <= record::MAX_URL + 3);
    // The whole record is bounded: a few KiB whatever the token carried.
    assert!(text.len() < 8 * 1024, "{}", text.len());
    // Control characters are escaped (no raw control byte in the record) and the record is
    // canonical.
    assert!(!text.bytes().any(|b| b < 0x20), "{text}");
    assert!(text.contains("\\u0000") && text.contains("\\n") && text.contains("\\u001f"));
    assert_eq!(r["tokens"][0]["jti"], controls);
    assert_eq!(jcs::to_string(&r), text);
}

/// The record as a JSON value, built member by member (the construction the record had before
/// it was written straight into canonical text), canonicalised by `jcs`: the oracle the direct
/// writer is held to.
fn reference(
    d: &attestgate::gate::phase::record::Decision<'_>,
    cx: &record::Context<'_>,
) -> String {
    use attestgate::error::FreshNonce;
    use serde_json::Map;
    let truncated = std::cell::Cell::new(false);
    let cut = |s: &str, max: usize| -> Value {
        if s.len() <= max {
            return Value::from(s);
        }
        truncated.set(true);
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Value::from(format!("{}…", &s[..end]))
    };
    let list = |items: Vec<&str>| -> Value {
        if items.len() > record::MAX_LIST {
            truncated.set(true);
        }
        let items = items.into_iter().take(record::MAX_LIST);
        Value::Array(items.map(|s| cut(s, record::MAX_CLAIM)).collect())
    };
    let p = &d.principal;
    let mut r = Map::new();
    r.insert("v".into(), json!(1));
    r.insert("kind".into(), json!("decision"));
    r.insert("request_id".into(), cut(d.request_id, record::MAX_CLAIM));
    r.insert(
        "time_ms".into(),
        json!(d.timings.started_ms.clamp(0.0, 9.0e15).trunc() as i64),
    );
    r.insert("policy".into(), json!(cx.policy_hash));
    let mut resource = Map::new();
    if let Some(route) = d.route {
        resource.insert("route".into(), cut(route, record::MAX_CLAIM));
    }
    resource.insert("method".into(), cut(d.method, record::MAX_CLAIM));
    resource.insert("path".into(), cut(d.path, record::MAX_URL));
    r.insert("resource".into(), Value::Object(resource));
    let mut request = Map::new();
    request.insert("method".into(), cut(d.method, record::MAX_CLAIM));
    request.insert("url".into(), cut(cx.url, record::MAX_URL));
    if let Some(q) = cx.query {
        request.insert(
            "query_sha256".into(),
            json!(b64u(&Sha256::digest(q.as_bytes()))),
        );
    }
    if let Some(h) = cx.body_sha256 {
        request.insert("body_sha256".into(), json!(b64u(&h)));
    }
    r.insert("request".into(), Value::Object(request));
    let mut decision = Map::new();
    decision.insert("verdict".into(), json!(d.verdict().as_str()));
    if let Some(s) = d.status {
        decision.insert("status".into(), json!(s));
    }
    let error = d.error();
    let wire = error.map(|e| e.wire(""));
    if let Some(e) = error {
        decision.insert("reason".into(), json!(e.reason()));
    }
    if let Some(w) = &wire {
        decision.insert("error".into(), json!(w.code));
    }
    if let Some(provider) = d.provider {
        decision.insert("provider".into(), cut(provider, record::MAX_CLAIM));
    }
    r.insert("decision".into(), Value::Object(decision));
    if let Some(s) = p.subject() {
        r.insert("subject".into(), cut(s, record::MAX_CLAIM));
    }
    let act = p.agents();
    let id = act.first().map(String::as_str).or_else(|| {
        p.tokens
            .iter()
            .find_map(|(_, c)| c.get("client_id").and_then(Value::as_str))
    });
    if id.is_some() || !act.is_empty() {
        let mut agent = Map::new();
        if let Some(id) = id {
            agent.insert("id".into(), cut(id, record::MAX_CLAIM));
        }
        agent.insert("act".into(), list(act.iter().map(String::as_str).collect()));
        r.insert("agent".into(), Value::Object(agent));
    }
    let issuers = p.issuers();
    if !issuers.is_empty() {
        r.insert("issuers".into(), list(issuers));
    }
    let mut tokens = Vec::new();
    for (provider, digest) in p.presented.iter().take(record::MAX_LIST) {
        let verified = p.tokens.iter().find(|(rt, _)| rt.name == *provider);
        let mut t = Map::new();
        t.insert("provider".into(), cut(provider, record::MAX_CLAIM));
        t.insert("sha256".into(), json!(b64u(digest)));
        t.insert("verified".into(), json!(verified.is_some()));
        if let Some(jti) = verified.and_then(|(_, c)| c.jti()) {
            t.insert("jti".into(), cut(jti, record::MAX_CLAIM));
        }
        tokens.push(Value::Object(t));
    }
    if p.presented.len() > record::MAX_LIST {
        truncated.set(true);
    }
    if !tokens.is_empty() {
        r.insert("tokens".into(), Value::Array(tokens));
    }
    if !p.tokens.is_empty() {
        let mut posture = Map::new();
        posture.insert("attestations".into(), list(p.providers().collect()));
        if let Some(device) = p.device() {
            posture.insert("device".into(), cut(device, record::MAX_CLAIM));
        }
        r.insert("posture".into(), Value::Object(posture));
    }
    match wire.map(|w| w.fresh_nonce) {
        Some(FreshNonce::Dpop) => {
            r.insert("remediation".into(), json!(["dpop_nonce"]));
        }
        Some(FreshNonce::Attestation) => {
            r.insert("remediation".into(), json!(["attestation_challenge"]));
        }
        _ => {}
    }
    if let Some(op) = &d.operator {
        r.insert(
            "operator".into(),
            json!({"iss": cut(&op.iss, record::MAX_CLAIM), "sub": cut(&op.sub, record::MAX_CLAIM)}),
        );
    }
    if truncated.get() {
        r.insert("truncated".into(), json!(true));
    }
    jcs::to_string(&Value::Object(r))
}

#[test]
fn the_record_is_the_canonical_form_of_every_member_whatever_the_decision() {
    use attestgate::gate::operator::OperatorId;
    use attestgate::gate::phase::record::Outcome;
    let gw = policy();
    let huge = "é".repeat(1500);
    let controls: String = (0u8..0x20)
        .map(char::from)
        .chain("\u{2028}\"\\".chars())
        .collect();
    let tokens = [
        Some(token(&claims(json!({})))),
        Some(token(&claims(
            json!({"sub": huge, "jti": controls, "did": "\u{1f602}".repeat(300)}),
        ))),
        Some(token(&claims(
            json!({"act": null, "client_id": "cli\u{0}ent", "did": null}),
        ))),
        Some(token(&claims(json!({"scope": "read"})))),
        None,
    ];
    let mut checked = 0;
    for tok in &tokens {
        for url in [
            "https://api.example.com/pay/1",
            "https://api.example.com/pay/%22q%22?a=b&secret=\u{7f}",
            "https://api.example.com/nowhere",
        ] {
            let headers = bearer(tok.as_deref());
            let decided = decide(&gw, url, &headers, "req-\"1\"");
            let parts = attestgate::gate::url::split(url).unwrap();
            // As decided, then with what the executor or the operator API adds.
            for variant in 0..4 {
                let mut d = decided.clone();
                let mut cx = record::Context {
                    policy_hash: "P",
                    url: parts.htu,
                    query: parts.query,
                    body_sha256: None,
                };
                match variant {
                    1 => {
                        d.outcome = Outcome::Refused(attestgate::Error::DpopNonceRequired);
                        d.status = Some(401);
                        d.provider = Some("agent");
                        cx.body_sha256 = Some([9; 32]);
                    }
                    2 => {
                        d.outcome = Outcome::Refused(attestgate::Error::ChallengeUnknown);
                        d.operator = Some(OperatorId {
                            iss: "https://op.example".into(),
                            sub: "x".repeat(300),
                        });
                        d.timings.started_ms = 1.7e12 + 0.75;
                    }
                    3 => {
                        d.status = Some(200);
                        d.timings.started_ms = -5.0;
                    }
                    _ => {}
                }
                let text = record::canonical(&d, &cx);
                assert_eq!(text, reference(&d, &cx), "variant {variant}, {url}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 60);
}
