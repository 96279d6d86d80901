//! Issue 14: the request receipt, through the gateway's real pipeline (`api::Gateway`), and its
//! policy fields. The receipt is signed natively here (`NativeSigner`, the Worker signs the same
//! claims in WebCrypto) and checked by the JOSE parser and the native verifier.

mod common;

use attestgate::api::{
    block_on_ready, compile_toml, Decision, Error, Gateway, GatewayKeys, KeySet, MemoryReplay,
    NativeSigner, NativeVerifier, Request, Seams, StaticKeys,
};
use attestgate::gate::compiled::hmac_keys;
use attestgate::gate::phase::receipt::{CONTENT_DIGEST_HEADER, RECEIPT_HEADER, RECEIPT_TYP};
use attestgate::gate::signing::{sign_jwt, sign_jwt_json};
use attestgate::jose::{b64, verify_native, Alg, Limits};
use attestgate::policy::Secret;
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;
const SECRET: [u8; 32] = [7u8; 32];

const POLICY: &str = r#"
[gateway]
origin = "https://origin.example.com/"
issuer = "https://gw.example.com"

[provider.agent]
algorithms = ["HS256"]
secret = "AGENT_SECRET"
replay = "jti"

[[route]]
id = "rc-orders"
path = "/rc/orders/**"
require = { all = ["agent"] }
scopes = ["orders:write"]
receipt = true
receipt_ttl_secs = 30
max_body_bytes = 64

[[route]]
id = "rc-public"
path = "/rc/public"
public = true
receipt = true

[[route]]
id = "plain"
path = "/plain"
require = { all = ["agent"] }

[upstreams.billing]
url = "https://billing.internal.example.com/api/"

[[route]]
id = "rc-upstream"
path = "/rc/billing/**"
require = { all = ["agent"] }
upstream = "billing"
receipt = true
"#;

fn gateway(text: &str) -> Gateway {
    Gateway::new(compile_toml("p.toml", text).expect("policy")).expect("gateway")
}

fn signing_keys() -> GatewayKeys {
    let sk = p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap();
    let bytes = sk.verifying_key().to_sec1_bytes();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": "gw-1",
        "x": b64::encode(&bytes[1..33]), "y": b64::encode(&bytes[33..65]),
        "d": b64::encode(&[3u8; 32]),
    });
    GatewayKeys::new(&jwk.to_string(), None).unwrap()
}

fn token(claims: Value) -> String {
    let header = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64::encode(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let sig = common::sign::hs256(&SECRET, input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

fn agent_token(jti: &str) -> String {
    token(json!({
        "sub": "user:alice", "iss": "https://idp.example.com", "exp": NOW + 300, "jti": jti,
        "scope": "orders:read orders:write", "did": "device-42",
        "act": {"sub": "agent:planner", "iss": "https://agents.example", "extra": [1, 2],
                "act": {"sub": "agent:tool"}},
    }))
}

struct World {
    keys: StaticKeys,
    replay: MemoryReplay,
}

impl World {
    fn new() -> Self {
        let mut keys = StaticKeys::new();
        let set: KeySet = hmac_keys(
            &[Secret {
                name: "AGENT_SECRET".into(),
                kid: None,
            }],
            &[Some(&b64::encode(&SECRET))],
        )
        .unwrap();
        keys.insert("agent", set);
        World {
            keys,
            replay: MemoryReplay::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide<T>(
        &self,
        gw: &Gateway,
        signing: Option<&GatewayKeys>,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        f: impl FnOnce(&Decision<'_>) -> T,
    ) -> T {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let seams = Seams {
            keys: &self.keys,
            verifier: &NativeVerifier,
            replay: &self.replay,
            nonce_key: None,
            signing_keys: signing,
            deny: None,
        };
        let req = Request {
            method,
            url,
            headers: &headers,
        };
        block_on_ready(async {
            let d = gw
                .decide_with_body(&req, body, &seams, NOW, "req-rc-1")
                .await;
            Ok::<_, Error>(f(&d))
        })
        .unwrap()
    }
}

/// The receipt's claims text, parsed strictly (it must also be exactly `serde_json`'s text).
fn claims_of(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).expect("the claims are JSON");
    assert_eq!(
        v.to_string(),
        text,
        "members sorted, compact, as serde_json writes them"
    );
    v
}

fn sets(d: &Decision<'_>) -> Vec<(String, String)> {
    d.forward()
        .expect("forwarded")
        .headers
        .sets()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_receipt_holds_exactly_the_claims_of_the_issue_bound_to_the_forwarded_request() {
    let gw = gateway(POLICY);
    let keys = signing_keys();
    let w = World::new();
    let bearer = format!("Bearer {}", agent_token("t-1"));
    let body = br#"{"hello": "world"}"#;
    let (text, digest, set) = w.decide(
        &gw,
        Some(&keys),
        "POST",
        "https://api.example.com/rc/orders/7?x=1&y=%2F",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
            ("content-length", "18"),
        ],
        body,
        |d| {
            assert_eq!(d.error(), None, "{:?}", d.error());
            let plan = d.forward().unwrap();
            assert_eq!(plan.body, Some(&body[..]));
            let r = plan
                .receipt
                .clone()
                .expect("a receipt route plans a receipt");
            (r.claims, r.content_digest, sets(d))
        },
    );
    let claims = claims_of(&text);
    assert_eq!(
        digest,
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    );
    assert_eq!(
        claims,
        json!({
            "iss": "https://gw.example.com",
            "aud": "https://origin.example.com",
            "iat": NOW,
            "exp": NOW + 30,
            "jti": "req-rc-1",
            "sub": "user:alice",
            "act": {"sub": "agent:planner", "iss": "https://agents.example",
                    "act": {"sub": "agent:tool"}},
            "attestation": {"providers": ["agent"], "issuers": ["https://idp.example.com"],
                            "device_id": "device-42"},
            "route": "rc-orders",
            "policy_sha256": gw.gate().policy_sha256(),
            "scope": "orders:read orders:write",
            "htm": "POST",
            "htu": "https://origin.example.com/rc/orders/7?x=1&y=%2F",
            "content_digest": digest,
        })
    );
    // The gateway sends the Content-Digest it signs.
    assert!(set.contains(&(CONTENT_DIGEST_HEADER.to_owned(), digest.clone())));
    // Signed as the Worker signs it; the JWS is a receipt the JOSE parser reads back.
    let jws = block_on_ready(sign_jwt_json(&keys, &NativeSigner, RECEIPT_TYP, &text)).unwrap();
    // ... the same bytes as signing the claims as a `Value`.
    let same = block_on_ready(sign_jwt(&keys, &NativeSigner, RECEIPT_TYP, &claims)).unwrap();
    assert_eq!(
        jws.rsplit_once('.').unwrap().0,
        same.rsplit_once('.').unwrap().0
    );
    let parsed =
        attestgate::jose::jws::parse(&jws, &[Alg::Es256], &[RECEIPT_TYP], &Limits::default())
            .unwrap();
    assert_eq!(parsed.header.kid.as_deref(), Some("gw-1"));
    verify_native(
        keys.current().public_key(),
        parsed.signing_input.as_bytes(),
        &parsed.signature,
    )
    .unwrap();
}

#[test]
fn a_public_receipt_route_and_a_bodiless_request_still_bind_method_url_and_the_empty_digest() {
    let gw = gateway(POLICY);
    let keys = signing_keys();
    let w = World::new();
    let claims = w.decide(
        &gw,
        Some(&keys),
        "GET",
        "https://api.example.com/rc/public",
        &[],
        b"",
        |d| claims_of(&d.forward().unwrap().receipt.clone().unwrap().claims),
    );
    assert_eq!(
        claims["content_digest"],
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    );
    assert_eq!(claims["exp"], NOW + 60, "default receipt_ttl_secs is 60");
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], "https://origin.example.com/rc/public");
    assert_eq!(
        claims["attestation"],
        json!({"providers": [], "issuers": []})
    );
    for absent in ["sub", "act", "scope", "cnf"] {
        assert!(claims.get(absent).is_none(), "{absent}: {claims}");
    }
    // Without `[gateway] issuer`, the issuer is the origin the request was sent to.
    let gw = gateway(&POLICY.replace("issuer = \"https://gw.example.com\"\n", ""));
    let claims = w.decide(
        &gw,
        Some(&keys),
        "GET",
        "https://api.example.com:8443/rc/public",
        &[],
        b"",
        |d| claims_of(&d.forward().unwrap().receipt.clone().unwrap().claims),
    );
    assert_eq!(claims["iss"], "https://api.example.com:8443");
}

#[test]
fn the_audience_of_a_receipt_is_the_upstream_it_goes_to() {
    let gw = gateway(POLICY);
    let keys = signing_keys();
    let w = World::new();
    let bearer = format!("Bearer {}", agent_token("t-up"));
    let claims = w.decide(
        &gw,
        Some(&keys),
        "GET",
        "https://api.example.com/rc/billing/invoices?n=2",
        &[("authorization", &bearer)],
        b"",
        |d| {
            assert_eq!(d.error(), None, "{:?}", d.error());
            claims_of(&d.forward().unwrap().receipt.clone().unwrap().claims)
        },
    );
    assert_eq!(claims["aud"], "https://billing.internal.example.com/api");
    assert_eq!(
        claims["htu"],
        "https://billing.internal.example.com/api/rc/billing/invoices?n=2"
    );
}

#[test]
fn a_client_sent_receipt_never_reaches_the_origin_on_any_route() {
    let gw = gateway(POLICY);
    let keys = signing_keys();
    let w = World::new();
    let spellings = [
        "attestgate-receipt",
        "Attestgate-Receipt",
        "ATTESTGATE_RECEIPT",
        "attestgate_receipt",
    ];
    for (i, url) in [
        "https://api.example.com/rc/public",
        "https://api.example.com/plain",
    ]
    .into_iter()
    .enumerate()
    {
        let bearer = format!("Bearer {}", agent_token(&format!("strip-{i}")));
        w.decide(
            &gw,
            Some(&keys),
            "GET",
            url,
            &[("authorization", &bearer)],
            b"",
            |d| {
                let plan = d.forward().expect("forwarded");
                for name in spellings {
                    assert!(plan.headers.deletes_name(name), "{url}: {name}");
                }
                // On a receipt route the gateway's own Content-Digest replaces the client's,
                // and other spellings of it go; elsewhere Content-Digest is the client's.
                let receipt_route = plan.receipt.is_some();
                assert_eq!(plan.headers.deletes_name("content_digest"), receipt_route);
                assert!(!plan.headers.deletes_name("content-digest"));
                assert_eq!(
                    plan.headers.sets().any(|(n, _)| n == CONTENT_DIGEST_HEADER),
                    receipt_route
                );
            },
        );
    }
    // Once signed, the gateway's receipt is set (replacing whatever the client sent).
    w.decide(
        &gw,
        Some(&keys),
        "GET",
        "https://api.example.com/rc/public",
        &[],
        b"",
        |d| {
            let mut headers = d.forward().unwrap().headers.clone();
            headers.set_receipt("a.b.c".into());
            assert!(headers.sets().any(|s| s == (RECEIPT_HEADER, "a.b.c")));
            assert!(!headers.deletes_name(RECEIPT_HEADER));
            assert!(headers.deletes_name("attestgate_receipt"));
        },
    );
}

#[test]
fn without_a_signing_key_a_receipt_route_is_503_and_spends_nothing_single_use() {
    let gw = gateway(POLICY);
    let w = World::new();
    let bearer = format!("Bearer {}", agent_token("t-once"));
    let headers = [("authorization", bearer.as_str())];
    let url = "https://api.example.com/rc/orders/1";
    let e = w.decide(&gw, None, "GET", url, &headers, b"", |d| {
        assert!(d.forward().is_none());
        d.error()
    });
    assert_eq!(e, Some(Error::SigningKeyUnavailable));
    assert_eq!(Error::SigningKeyUnavailable.wire("r").status, 503);
    // The token's jti was not spent by the refusal: with the key, the same token passes once.
    let keys = signing_keys();
    let e = w.decide(&gw, Some(&keys), "GET", url, &headers, b"", |d| d.error());
    assert_eq!(e, None);
    let e = w.decide(&gw, Some(&keys), "GET", url, &headers, b"", |d| d.error());
    assert_eq!(e, Some(Error::ReplayedToken));
    // A route without a receipt does not need the key.
    let bearer = format!("Bearer {}", agent_token("t-plain"));
    let e = w.decide(
        &gw,
        None,
        "GET",
        "https://api.example.com/plain",
        &[("authorization", &bearer)],
        b"",
        |d| (d.error(), d.forward().map(|p| p.receipt.is_none())),
    );
    assert_eq!(e, (None, Some(true)));
}

#[test]
fn a_body_over_the_cap_of_a_receipt_route_is_413_before_any_receipt() {
    let gw = gateway(POLICY);
    let keys = signing_keys();
    let w = World::new();
    let bearer = format!("Bearer {}", agent_token("t-big"));
    let body = [b'a'; 65];
    let e = w.decide(
        &gw,
        Some(&keys),
        "POST",
        "https://api.example.com/rc/orders/1",
        &[("authorization", &bearer), ("content-length", "65")],
        &body,
        |d| (d.error(), d.status),
    );
    assert_eq!(e.1, Some(413), "{:?}", e.0);
}

#[test]
fn receipt_fields_are_checked_at_build_and_the_policy_hash_is_stable() {
    let route = |extra: &str| {
        format!(
            "[gateway]\norigin = \"https://o.example\"\n[[route]]\nid = \"rc-x\"\npath = \"/rc/x\"\npublic = true\n{extra}\n"
        )
    };
    for (extra, field) in [
        ("receipt = true\nreceipt_ttl_secs = 0", "receipt_ttl_secs"),
        ("receipt = true\nreceipt_ttl_secs = 301", "receipt_ttl_secs"),
        ("receipt_ttl_secs = 30", "receipt_ttl_secs"),
    ] {
        let errors = compile_toml("p.toml", &route(extra)).unwrap_err();
        let text = errors[0].to_string();
        assert!(
            text.contains("rc-x") && text.contains(field) && text.contains("p.toml"),
            "{text}"
        );
    }
    let p = compile_toml("p.toml", &route("receipt = true\nreceipt_ttl_secs = 300")).unwrap();
    let r = &p.routes()[0];
    assert_eq!(r.receipt.map(|r| r.ttl_secs), Some(300));
    assert!(r.needs_body(), "a receipt route reads its body");
    // The hash is of the embedded form: the same for the same policy, another for another.
    let a = gateway(&route("receipt = true"));
    let b = gateway(&route("receipt = true"));
    let c = gateway(&route("receipt = true\nreceipt_ttl_secs = 61"));
    assert_eq!(a.gate().policy_sha256(), b.gate().policy_sha256());
    assert_ne!(a.gate().policy_sha256(), c.gate().policy_sha256());
    assert_eq!(a.gate().policy_sha256().len(), 43);
    // The Worker hashes its embedded compiled form: the same as the policy's.
    let built = attestgate::gate::Gate::from_embedded().unwrap();
    assert_eq!(
        built.policy_sha256(),
        b64::encode(&<sha2::Sha256 as sha2::Digest>::digest(
            attestgate::EMBEDDED_POLICY
        ))
    );
    // ... and what the Worker computes from the form it reads.
    let embedded = attestgate::policy::Policy::from_compiled(&a.policy().to_compiled()).unwrap();
    assert_eq!(
        Gateway::new(embedded).unwrap().gate().policy_sha256(),
        a.gate().policy_sha256()
    );
}

#[test]
fn a_receipt_names_the_declared_intent_and_the_decision_logs_index() {
    // Issue 15 item 3 and issue 17 item 6: the hash of the declared intent, and the index of the
    // record sequenced before the request was forwarded, are claims of the receipt (members
    // still sorted, so the text stays exactly serde_json's).
    let gw = gateway(POLICY);
    let keys = signing_keys();
    let w = World::new();
    let detail = json!([{"type": "payment_initiation", "actions": ["initiate"]}]);
    let tok = token(json!({
        "iss": "https://idp.example.com", "sub": "user:alice", "jti": "t-intent",
        "exp": NOW + 300, "scope": "orders:read orders:write", "authorization_details": detail,
    }));
    let bearer = format!("Bearer {tok}");
    let (mut plan, hash) = w.decide(
        &gw,
        Some(&keys),
        "GET",
        "https://api.example.com/rc/orders/7",
        &[("authorization", &bearer)],
        b"",
        |d| {
            assert_eq!(d.error(), None, "{:?}", d.error());
            let r = d.forward().unwrap().receipt.clone().expect("a receipt");
            (
                *r,
                d.intent.hash.clone().expect("the token declares an intent"),
            )
        },
    );
    assert_eq!(claims_of(&plan.claims)["intent_sha256"], json!(hash));
    assert!(claims_of(&plan.claims).get("log_index").is_none());
    attestgate::gate::phase::receipt::with_log_index(&mut plan, 41);
    let claims = claims_of(&plan.claims);
    assert_eq!(claims["log_index"], json!(41));
    assert_eq!(claims["policy_sha256"], json!(gw.gate().policy_sha256()));
}
