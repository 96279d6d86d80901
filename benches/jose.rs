//! Native timings of the JOSE core: header parsing, each algorithm's signature check, and the
//! whole `verify_token` for ES256 and EdDSA. And two things the Worker does in Rust besides the
//! token (issue 19): the decision log line, built and serialised, and the policy compile of an
//! isolate's first request (`Gate::from_embedded`), for the policy of benches/policies.
//!
//! `cargo bench --bench jose -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use attestgate::gate::log::DecisionLog;
use attestgate::gate::Gate;
use attestgate::jose::{
    b64, block_on_ready, jws, verify_native, verify_token, Alg, ClaimRules, Key, KeySet, Limits,
    NativeVerifier, Profile,
};
use attestgate::policy::Policy;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use sha2::{Digest, Sha256};

const NOW: i64 = 1_700_000_000;
const HS_SECRET: [u8; 32] = [0x55; 32];

/// RFC 7515 A.2 RSA key (published; test use only): modulus, p, q.
const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const RSA_P: &str = "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
const RSA_Q: &str = "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";

fn claims() -> serde_json::Value {
    json!({"iss":"https://issuer.example","aud":"https://api.example","sub":"user-1",
           "jti":"jti-1","iat":NOW-10,"exp":NOW+600,"scope":"orders:read orders:write",
           "act":{"sub":"agent:planner"}})
}

fn signing_input(alg: &str, kid: &str) -> String {
    let header = json!({"alg":alg,"typ":"at+jwt","kid":kid}).to_string();
    format!(
        "{}.{}",
        b64::encode(header.as_bytes()),
        b64::encode(claims().to_string().as_bytes())
    )
}

struct Case {
    key: Key,
    token: String,
}

impl Case {
    fn parts(&self) -> (&str, Vec<u8>) {
        let (input, sig) = self.token.rsplit_once('.').unwrap();
        (input, b64::decode(sig).unwrap())
    }
}

fn es256() -> Case {
    use p256::ecdsa::signature::Signer;
    let sk = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
    let point = sk.verifying_key().to_sec1_point(false);
    let p = point.as_bytes();
    let key = Key::es256(Some("es".into()), &p[1..33], &p[33..65]).unwrap();
    let input = signing_input("ES256", "es");
    let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
    Case {
        key,
        token: format!("{input}.{}", b64::encode(&sig.to_bytes())),
    }
}

fn eddsa() -> Case {
    use ed25519_dalek::Signer;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]);
    let key = Key::ed25519(Some("ed".into()), &sk.verifying_key().to_bytes()).unwrap();
    let input = signing_input("EdDSA", "ed");
    Case {
        key,
        token: format!(
            "{input}.{}",
            b64::encode(&sk.sign(input.as_bytes()).to_bytes())
        ),
    }
}

fn rs256() -> Case {
    let big = |s: &str| rsa::BoxedUint::from_be_slice_vartime(&b64::decode(s).unwrap());
    let sk = rsa::RsaPrivateKey::from_p_q(big(RSA_P), big(RSA_Q), big("AQAB")).unwrap();
    let key = Key::rs256(Some("rs".into()), &b64::decode(RSA_N).unwrap(), &[1, 0, 1]).unwrap();
    let input = signing_input("RS256", "rs");
    let sig = sk
        .sign(
            rsa::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(input.as_bytes()),
        )
        .unwrap();
    Case {
        key,
        token: format!("{input}.{}", b64::encode(&sig)),
    }
}

fn hs256() -> Case {
    use hmac::{KeyInit, Mac};
    let key = Key::hs256(Some("hs".into()), &HS_SECRET).unwrap();
    let input = signing_input("HS256", "hs");
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&HS_SECRET).unwrap();
    mac.update(input.as_bytes());
    Case {
        key,
        token: format!("{input}.{}", b64::encode(&mac.finalize().into_bytes())),
    }
}

fn profile() -> Profile {
    Profile {
        algs: vec![Alg::Es256, Alg::EdDsa],
        token_types: vec!["at+jwt".into()],
        rules: ClaimRules {
            issuer: Some("https://issuer.example".into()),
            audiences: vec!["https://api.example".into()],
            skew_secs: 60,
            max_lifetime_secs: Some(3600),
            required: vec![vec!["sub".into()], vec!["jti".into()]],
        },
        limits: Limits::default(),
    }
}

fn benches(c: &mut Criterion) {
    let cases = [
        ("ES256", es256()),
        ("EdDSA", eddsa()),
        ("RS256", rs256()),
        ("HS256", hs256()),
    ];
    let profile = profile();
    let (_, es) = &cases[0];
    c.bench_function("parse/ES256 header", |b| {
        b.iter(|| {
            jws::parse(
                black_box(&es.token),
                &profile.algs,
                &profile.token_types,
                &profile.limits,
            )
            .unwrap()
        })
    });
    for (name, case) in &cases {
        let (input, sig) = case.parts();
        assert_eq!(verify_native(&case.key, input.as_bytes(), &sig), Ok(()));
        c.bench_function(&format!("verify/{name}"), |b| {
            b.iter(|| verify_native(&case.key, black_box(input.as_bytes()), black_box(&sig)))
        });
    }
    for (name, case) in &cases[..2] {
        let keys = KeySet::from_keys(vec![case.key.clone()]);
        let run = || {
            block_on_ready(verify_token(
                black_box(&case.token),
                &profile,
                &keys,
                &NativeVerifier,
                NOW,
            ))
        };
        assert!(run().is_ok());
        c.bench_function(&format!("verify_token/{name}"), |b| b.iter(run));
    }
}

/// The bench policy (benches/policies, loopback URLs filled in) as the build embeds it: the
/// compiled form.
fn bench_policy_json() -> Vec<u8> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/policies");
    let dir = std::env::temp_dir().join(format!("attestgate-bench-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("{{ORIGIN}}", "http://127.0.0.1:47123")
                .replace("{{ISSUER}}", "http://127.0.0.1:47123/demo-issuer")
                .replace(
                    "{{JWKS_URI}}",
                    "http://127.0.0.1:47123/demo-issuer/jwks.json",
                );
            std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
        }
    }
    let (policy, _warnings) = attestgate::policy::load_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    policy.to_compiled()
}

/// The Rust side of the decision line (what the Worker builds before `console.log`; the
/// runtime's side is measured in workerd, benches/workerd.py's log variants) and of the first
/// request's policy compile (the rest of a cold first request is measured there too).
fn worker_rust(c: &mut Criterion) {
    let claims = json!({"iss":"http://127.0.0.1:47123/demo-issuer","sub":"user:alice",
                        "jti":"q3Rk1xPzW8mN0aBc","act":{"sub":"agent:planner"}});
    let claims = claims.as_object().unwrap();
    c.bench_function("log/decision line (allow, to_line)", |b| {
        b.iter(|| {
            let mut log = DecisionLog::new("3q2-7wAAAAAAAAAA", "GET", black_box("/v1/orders/42"));
            log.route = Some("orders-read".into());
            log.verdict = "allow";
            log.provider = Some("agent".into());
            log.add_claims(black_box(claims));
            log.latency_ms = 1.0;
            log.to_line()
        })
    });
    let json = bench_policy_json();
    assert!(Gate::new(Policy::from_embedded(&json).unwrap()).is_ok());
    c.bench_function("policy/Gate::from_embedded (benches/policies)", |b| {
        b.iter(|| Gate::new(Policy::from_embedded(black_box(&json)).unwrap()).unwrap())
    });
}

criterion_group!(jose, benches, worker_rust);
criterion_main!(jose);
