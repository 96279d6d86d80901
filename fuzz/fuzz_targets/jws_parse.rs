//! The compact JWS parser (`jose::jws::parse`) and, behind a valid signature, the claims checks.
//!
//! Input, first byte:
//! * even: the rest is a token, parsed as an access token. Properties of an accepted token: it
//!   is exactly `signing_input "." base64url(signature)` (one spelling per content), the payload
//!   segment is the middle one, `alg` is allowed, `typ` accepted, `kid` within its limit.
//! * odd: the rest is `header 0xff claims` (raw JSON bytes, any content); the target encodes and
//!   HS256-signs them with a fixed key and runs the whole `verify_token`. A signature the fuzzer
//!   could never forge is thus not what stops it: every header and claim check is reached.
//!   Properties of accepted claims: not expired, not before `nbf`, issuer and audience as
//!   configured, lifetime within the maximum.
#![no_main]

use attestgate::jose::{
    b64, block_on_ready, jws, jws::typ_matches, verify_token, Alg, ClaimRules, Key, KeySet, Limits,
    NativeVerifier, Profile,
};
use hmac::{KeyInit, Mac};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_700_000_000;
const SECRET: [u8; 32] = [0x42; 32];
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "https://api.example";
const ALGS: &[Alg] = &[Alg::Es256, Alg::EdDsa, Alg::Rs256, Alg::Hs256];
const TYPS: &[&str] = &["at+jwt", "JWT"];

fn check_parse(token: &str) {
    let Ok(parsed) = jws::parse(token, ALGS, TYPS, &Limits::default()) else {
        return;
    };
    assert_eq!(
        format!(
            "{}.{}",
            parsed.signing_input,
            b64::encode(&parsed.signature)
        ),
        token,
        "an accepted token has exactly one spelling"
    );
    let mut parts = parsed.signing_input.split('.');
    let (Some(_header), Some(claims), None) = (parts.next(), parts.next(), parts.next()) else {
        panic!(
            "signing input is not header.payload: {:?}",
            parsed.signing_input
        );
    };
    assert_eq!(claims, parsed.claims_b64);
    assert!(!parsed.signature.is_empty());
    assert!(ALGS.contains(&parsed.header.alg));
    assert!(TYPS.iter().any(|t| typ_matches(&parsed.header.typ, t)));
    assert!(
        parsed.header.jwk.is_none(),
        "access tokens never carry a key"
    );
    assert!(parsed.header.kid.as_ref().is_none_or(|k| k.len() <= 256));
    // The DPoP parser refuses every access token (its typ is never dpop+jwt here).
    assert!(jws::parse_dpop(token, ALGS, &Limits::default()).is_err());
}

fn profile() -> Profile {
    Profile {
        algs: vec![Alg::Hs256],
        token_types: vec!["at+jwt".into(), "JWT".into()],
        rules: ClaimRules {
            issuer: Some(ISSUER.into()),
            audiences: vec![AUDIENCE.into()],
            skew_secs: 60,
            max_lifetime_secs: Some(3600),
            required: vec![vec!["sub".into()], vec!["cnf".into(), "jkt".into()]],
        },
        limits: Limits::default(),
    }
}

fn check_signed(header: &[u8], claims: &[u8]) {
    let input = format!("{}.{}", b64::encode(header), b64::encode(claims));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&SECRET).expect("any key length");
    mac.update(input.as_bytes());
    let token = format!("{input}.{}", b64::encode(&mac.finalize().into_bytes()));
    check_parse(&token);
    let keys = KeySet::from_keys(vec![Key::hs256(None, &SECRET).expect("32-byte secret")]);
    let profile = profile();
    let Ok(claims) = block_on_ready(verify_token(&token, &profile, &keys, &NativeVerifier, NOW))
    else {
        return;
    };
    assert!(claims.exp() > NOW - 60, "expired claims accepted");
    assert!(claims.nbf().is_none_or(|nbf| nbf <= NOW + 60));
    assert!(claims.iat().is_none_or(|iat| iat <= NOW + 60));
    assert!(claims.exp() - claims.iat().unwrap_or(NOW) <= 3600);
    assert_eq!(claims.iss(), Some(ISSUER));
    match claims.get("aud") {
        Some(serde_json::Value::String(a)) => assert_eq!(a, AUDIENCE),
        Some(serde_json::Value::Array(a)) => assert!(a.iter().any(|v| v == AUDIENCE)),
        other => panic!("accepted aud {other:?}"),
    }
    assert!(claims.sub().is_some());
    assert!(claims
        .get_path(&["cnf", "jkt"])
        .is_some_and(|v| !v.is_null()));
    // The same token with the first signature character changed is refused.
    let cut = input.len() + 1;
    let first = if token.as_bytes()[cut] == b'A' {
        "B"
    } else {
        "A"
    };
    let forged = format!("{}{first}{}", &token[..cut], &token[cut + 1..]);
    assert!(block_on_ready(verify_token(&forged, &profile, &keys, &NativeVerifier, NOW)).is_err());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            check_parse(token);
        }
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == 0xff) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b"{}"[..]),
        };
        check_signed(header, claims);
    }
});
