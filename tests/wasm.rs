//! The pure core compiled to wasm32 (what the Worker runs), under wasm-bindgen-test:
//! `cargo test --target wasm32-unknown-unknown --test wasm` (runner: wasm-bindgen-test-runner).
//!
//! These check what only the wasm build can break: the policy embedded by build.rs parses and
//! compiles in the Worker's target, tokens verify end to end with the pure-Rust backends in wasm,
//! and the nonce MAC round-trips. WebCrypto itself is tested inside workerd (tests/e2e).
#![cfg(target_arch = "wasm32")]

use attestgate::gate::nonce::{self, NonceKey};
use attestgate::gate::Gate;
use attestgate::jose::{
    self, b64, block_on_ready, Alg, ClaimRules, Key, KeySet, Limits, NativeVerifier, Profile,
};
use attestgate::Error;
use wasm_bindgen_test::wasm_bindgen_test;

const NOW: i64 = 1_700_000_000;

fn profile(alg: Alg) -> Profile {
    Profile {
        algs: vec![alg],
        token_types: vec!["at+jwt".into()],
        rules: ClaimRules {
            issuer: Some("https://issuer.example".into()),
            audiences: vec!["https://api.example".into()],
            skew_secs: 60,
            max_lifetime_secs: Some(3600),
            required: vec![vec!["sub".into()]],
        },
        limits: Limits::default(),
    }
}

fn signing_input(alg: &str, kid: &str) -> String {
    let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#);
    let claims = format!(
        r#"{{"iss":"https://issuer.example","aud":"https://api.example","sub":"user-1","iat":{NOW},"exp":{}}}"#,
        NOW + 300
    );
    format!(
        "{}.{}",
        b64::encode(header.as_bytes()),
        b64::encode(claims.as_bytes())
    )
}

#[wasm_bindgen_test]
fn embedded_policy_compiles_in_wasm() {
    let gate = Gate::from_embedded().expect("the embedded policy must load in the Worker target");
    assert!(!gate.policy().routes().is_empty());
    assert!(gate.challenge_ttl_secs > 0);
}

#[wasm_bindgen_test]
fn es256_token_verifies_and_tampering_fails_in_wasm() {
    use p256::ecdsa::{signature::Signer, Signature, SigningKey};
    let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let sec1 = sk.verifying_key().to_sec1_bytes();
    let key = Key::es256(Some("k1".into()), &sec1[1..33], &sec1[33..65]).unwrap();
    let keys = KeySet::from_keys(vec![key]);
    let input = signing_input("ES256", "k1");
    let sig: Signature = sk.sign(input.as_bytes());
    let token = format!("{input}.{}", b64::encode(&sig.to_bytes()));
    let claims = block_on_ready(jose::verify_token(
        &token,
        &profile(Alg::Es256),
        &keys,
        &NativeVerifier,
        NOW,
    ))
    .unwrap();
    assert_eq!(claims.sub(), Some("user-1"));

    let mut bad = sig.to_bytes().to_vec();
    bad[10] ^= 1;
    let forged = format!("{input}.{}", b64::encode(&bad));
    let got = block_on_ready(jose::verify_token(
        &forged,
        &profile(Alg::Es256),
        &keys,
        &NativeVerifier,
        NOW,
    ));
    assert_eq!(got.err(), Some(jose::Error::BadSignature));
}

#[wasm_bindgen_test]
fn eddsa_token_verifies_and_weak_key_is_refused_in_wasm() {
    use ed25519_dalek::{Signer, SigningKey};
    let sk = SigningKey::from_bytes(&[9u8; 32]);
    let key = Key::ed25519(Some("e1".into()), sk.verifying_key().as_bytes()).unwrap();
    let keys = KeySet::from_keys(vec![key]);
    let input = signing_input("EdDSA", "e1");
    let sig = sk.sign(input.as_bytes());
    let token = format!("{input}.{}", b64::encode(&sig.to_bytes()));
    assert!(block_on_ready(jose::verify_token(
        &token,
        &profile(Alg::EdDsa),
        &keys,
        &NativeVerifier,
        NOW
    ))
    .is_ok());
    // The identity point: a universal-forgery key (ATTACKS #23) must not load.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(Key::ed25519(None, &identity).is_err());
}

#[wasm_bindgen_test]
fn nonce_round_trip_in_wasm() {
    let key = NonceKey::new(vec![5u8; 32]).unwrap();
    let issued = nonce::issue(&key, 4, NOW, 120, [3u8; 16]).unwrap();
    assert_eq!(
        nonce::verify(&key, 4, &issued.text, NOW + 1, 120, 60).unwrap(),
        issued.nonce
    );
    assert_eq!(
        nonce::verify(&key, 4, &issued.text, NOW + 121, 120, 60),
        Err(Error::ChallengeExpired)
    );
}
