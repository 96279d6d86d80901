//! Decision records (issue 17 item 1) from real decisions of the native pipeline: the AIMS
//! fields, canonical bytes (RFC 8785), token hashes and never a token, bounded under hostile
//! claim values.

mod common;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use attestgate::api::{self, Gateway, MemoryReplay, Seams, StaticKeys};
use attestgate::gate::audit::{jcs, record};
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
fn record_of(gw: &Gateway, url: &str, tok: Option<&str>) -> (Value, String) {
    let headers: Vec<(String, String)> = tok
        .map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
        .unwrap_or_default();
    let req = api::Request {
        method: "POST",
        url,
        headers: &headers,
    };
    let keys = StaticKeys::new();
    let replay = MemoryReplay::new();
    let seams = Seams {
        keys: &keys,
        verifier: &NativeVerifier,
        replay: &replay,
        nonce_key: None,
        signing_keys: None,
        deny: None,
    };
    let d = block_on_ready(async {
        Ok::<_, attestgate::jose::Error>(gw.decide(&req, &seams, NOW, "req-1").await)
    })
    .unwrap();
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
