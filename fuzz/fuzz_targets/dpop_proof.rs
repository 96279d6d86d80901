//! The DPoP proof parser (`jws::parse_dpop`) and, behind a valid signature, the proof checks
//! (`gate::dpop::verify`).
//!
//! Input, first byte:
//! * even: the rest is a proof. Properties of a parsed proof: exactly one spelling
//!   (`signing_input "." base64url(signature)`), `typ` dpop+jwt, an asymmetric `alg`, and an
//!   embedded public key bound to that `alg`, with a thumbprint.
//! * odd: the rest is the proof's claims (raw JSON bytes, any content), signed by the target with
//!   a fixed Ed25519 key whose public JWK is in the header. Properties of an accepted proof: the
//!   returned `jkt` is that key's RFC 7638 thumbprint (computed here independently), the `jti`
//!   is non-empty and bounded, and the same proof is refused for another method, another URL or
//!   another access token.
#![no_main]

use attestgate::gate::dpop::{self, Expect, PROOF_ALGS};
use attestgate::jose::{b64, block_on_ready, jws, jws::typ_matches, Limits, NativeVerifier};
use ed25519_dalek::Signer;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const NOW: i64 = 1_700_000_000;
const METHOD: &str = "POST";
const HTU: &str = "https://api.example/v1/orders";
const ACCESS_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
const ANOTHER_TOKEN: &str = "another.access.token";

/// SHA-256 of an access token, as the gateway hands it to the proof check (computed once per
/// request by `gate::family::Credential`).
fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn check_parse(proof: &str) {
    let Ok(parsed) = jws::parse_dpop(proof, &PROOF_ALGS, &Limits::default()) else {
        return;
    };
    assert_eq!(
        format!(
            "{}.{}",
            parsed.signing_input,
            b64::encode(&parsed.signature)
        ),
        proof
    );
    assert!(typ_matches(&parsed.header.typ, jws::DPOP_TYP));
    assert!(PROOF_ALGS.contains(&parsed.header.alg));
    let key = parsed.header.jwk.as_ref().expect("a proof carries its key");
    assert_eq!(key.alg(), parsed.header.alg);
    assert!(key.thumbprint().is_some());
}

fn expect<'a>(
    method: &'a str,
    htu: &'a str,
    token_sha256: &'a [u8; 32],
    jkt: &'a str,
) -> Expect<'a> {
    Expect {
        method,
        htu,
        access_token_sha256: token_sha256,
        jkt: Some(jkt),
        skew_secs: 60,
        now: NOW,
    }
}

fn check_signed(claims: &[u8]) {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let x = b64::encode(&sk.verifying_key().to_bytes());
    let thumbprint = b64::encode(&Sha256::digest(
        format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#).as_bytes(),
    ));
    let header = format!(
        r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}}}"#
    );
    let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(claims));
    let proof = format!(
        "{input}.{}",
        b64::encode(&sk.sign(input.as_bytes()).to_bytes())
    );
    check_parse(&proof);
    let run = |e: &Expect<'_>| block_on_ready(dpop::verify(&proof, e, &NativeVerifier));
    let (token, another) = (sha256(ACCESS_TOKEN), sha256(ANOTHER_TOKEN));
    let Ok(checked) = run(&expect(METHOD, HTU, &token, &thumbprint)) else {
        return;
    };
    assert_eq!(checked.jkt, thumbprint);
    assert!(!checked.jti.is_empty() && checked.jti.len() <= dpop::MAX_JTI);
    for other in [
        expect("GET", HTU, &token, &thumbprint),
        expect(METHOD, "https://api.example/v1/other", &token, &thumbprint),
        expect(
            METHOD,
            "https://evil.example/v1/orders",
            &token,
            &thumbprint,
        ),
        expect(METHOD, HTU, &another, &thumbprint),
        expect(METHOD, HTU, &token, "another-thumbprint"),
    ] {
        assert!(
            run(&other).is_err(),
            "the proof is not bound to its request"
        );
    }
    let late = Expect {
        now: NOW + 3600,
        ..expect(METHOD, HTU, &token, &thumbprint)
    };
    assert!(run(&late).is_err(), "an old proof is accepted");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(proof) = std::str::from_utf8(rest) {
            check_parse(proof);
            // The whole proof check on whatever parsed; nothing to compare it with but no panic.
            let _ = block_on_ready(dpop::verify(
                proof,
                &expect(METHOD, HTU, &sha256(ACCESS_TOKEN), "x"),
                &NativeVerifier,
            ));
        }
    } else {
        check_signed(rest);
    }
});
