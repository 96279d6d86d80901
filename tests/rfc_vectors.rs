//! The standards vectors in `shared/vectors/rfc/jose_rfc_vectors.json`, every one of them.
//!
//! Signed vectors are checked at two levels: the signature with a key built through the
//! production constructors and [`verify_native`], and the whole gateway check
//! ([`verify_token`] / [`verify_dpop_proof`]) with the clock pinned as the notes say. The
//! gateway requires an explicit `typ` (ATTACKS #36), which most RFC examples do not carry: for
//! those the full check must stop at `TypNotAccepted`, and the claims are validated separately
//! with the pinned clock.

mod common;

use std::collections::BTreeSet;

use attestgate::jose::crypto::verify_native;
use attestgate::jose::Error;
use attestgate::jose::{
    b64, block_on_ready, claims, jws, verify_dpop_proof, verify_token, Alg, ClaimRules, Key,
    KeyRejection, KeySet, Limits, NativeVerifier, Profile,
};
use common::{read_json, s};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// "pin the clock at or before 1300819380 (e.g. 1300819300)".
const RFC7515_NOW: i64 = 1_300_819_300;
const DPOP_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn vectors() -> Vec<Value> {
    let doc = read_json("rfc/jose_rfc_vectors.json");
    let list = doc["vectors"].as_array().expect("vectors").clone();
    assert_eq!(doc["summary"]["total"].as_u64(), Some(list.len() as u64));
    list
}

/// The key a vector's `jwk` describes, built as the gateway builds keys: JWKs through
/// [`Key::from_jwk`], symmetric keys only as a configured secret through [`Key::hs256`].
fn key_of(v: &Value) -> Key {
    let jwk = &v["jwk"];
    if jwk["kty"] == "oct" {
        let kid = jwk["kid"].as_str().map(str::to_owned);
        Key::hs256(kid, &b64::decode(s(jwk, "k")).expect("k")).expect("HMAC secret")
    } else {
        Key::from_jwk(jwk).unwrap_or_else(|e| panic!("{}: key refused: {e}", v["id"]))
    }
}

/// Signature check over the received `header.payload` text.
fn signature_check(compact: &str, key: &Key) -> Result<(), Error> {
    let (signing_input, sig) = compact.rsplit_once('.').expect("compact");
    verify_native(key, signing_input.as_bytes(), &b64::decode(sig)?)
}

fn profile(alg: Alg, typ: &str, issuer: Option<&str>) -> Profile {
    Profile {
        algs: vec![alg],
        token_types: vec![typ.to_owned()],
        rules: ClaimRules {
            issuer: issuer.map(str::to_owned),
            ..ClaimRules::default()
        },
        limits: Limits::default(),
    }
}

fn gateway(compact: &str, profile: &Profile, key: Key, now: i64) -> Result<claims::Claims, Error> {
    block_on_ready(verify_token(
        compact,
        profile,
        &KeySet::from_keys(vec![key]),
        &NativeVerifier,
        now,
    ))
}

fn payload_b64(compact: &str) -> &str {
    compact.split('.').nth(1).expect("payload")
}

/// A signed vector whose signature must verify, with a flipped-bit control.
fn assert_signature_valid(v: &Value) -> Key {
    let key = key_of(v);
    let compact = s(v, "compact");
    assert_eq!(signature_check(compact, &key), Ok(()), "{}", v["id"]);
    let (input, sig) = compact.rsplit_once('.').expect("compact");
    let mut bad = b64::decode(sig).expect("sig");
    bad[0] ^= 1;
    assert_eq!(
        verify_native(&key, input.as_bytes(), &bad),
        Err(Error::BadSignature),
        "{}",
        v["id"]
    );
    key
}

#[test]
fn every_rfc_vector() {
    let mut seen = BTreeSet::new();
    let mut signatures_verified = 0;
    for v in vectors() {
        let id = s(&v, "id").to_owned();
        assert!(seen.insert(id.clone()), "duplicate id {id}");
        match id.as_str() {
            // RFC 7515 A.1: typ JWT, HS256 with the published secret: the full gateway check
            // passes with the clock pinned, and refuses with the real clock.
            "rfc7515-A.1-HS256" => {
                let key = assert_signature_valid(&v);
                signatures_verified += 1;
                let p = profile(Alg::Hs256, "JWT", Some("joe"));
                let c = gateway(s(&v, "compact"), &p, key.clone(), RFC7515_NOW).expect("A.1");
                assert_eq!((c.iss(), c.exp()), (Some("joe"), 1_300_819_380));
                assert_eq!(
                    c.get("http://example.com/is_root"),
                    Some(&Value::Bool(true))
                );
                assert_eq!(
                    gateway(s(&v, "compact"), &p, key, 1_800_000_000).err(),
                    Some(Error::Expired)
                );
            }
            // RFC 7515 A.2 / A.3: no typ. Signature valid (A.3 is high-S), claims valid at the
            // pinned clock, but the gateway refuses untyped tokens.
            "rfc7515-A.2-RS256" | "rfc7515-A.3-ES256" => {
                let key = assert_signature_valid(&v);
                signatures_verified += 1;
                let alg = key.alg();
                let compact = s(&v, "compact");
                let p = profile(alg, "JWT", Some("joe"));
                assert_eq!(
                    gateway(compact, &p, key, RFC7515_NOW).err(),
                    Some(Error::TypNotAccepted)
                );
                let rules = &p.rules;
                assert!(claims::validate(payload_b64(compact), rules, RFC7515_NOW).is_ok());
                assert_eq!(
                    claims::validate(payload_b64(compact), rules, 1_800_000_000).err(),
                    Some(Error::Expired)
                );
                if id.ends_with("ES256") {
                    assert_eq!(v["signature_s_is_low"], false, "A.3 is the high-S example");
                }
            }
            // ES512 / P-521: refused on alg before any crypto, and the key is refused too.
            "rfc7515-A.4-ES512" | "rfc7520-4.3-ES512" => {
                assert_eq!(Alg::from_header("ES512"), None);
                assert_eq!(
                    Key::from_jwk(&v["jwk"]).err(),
                    Some(KeyRejection::UnsupportedCurve)
                );
                let all = Profile {
                    algs: Alg::ALL.to_vec(),
                    ..Profile::default()
                };
                let r = jws::parse(s(&v, "compact"), &all.algs, &["JWT"], &all.limits);
                assert!(r.is_err(), "{id}");
            }
            // Unsecured and crit examples: refused even with every algorithm enabled.
            "rfc7515-A.5-none" | "rfc7515-E-crit-unknown" => {
                let compact = s(&v, "compact");
                for alg in Alg::ALL {
                    let key = Key::hs256(None, &[9; 32]).expect("key");
                    assert!(gateway(compact, &profile(alg, "JWT", None), key, 0).is_err());
                }
                // With a signature appended, the header alone is still refused.
                let forged = format!("{compact}AAAA");
                let r = jws::parse(&forged, &Alg::ALL, &["JWT"], &Limits::default());
                let want = if id.contains("crit") {
                    Error::CritUnsupported
                } else {
                    Error::AlgNotAllowed
                };
                assert_eq!(r.err(), Some(want), "{id}");
            }
            "rfc7515-A.7-flattened-json" => {
                let key = key_of(&v);
                let p = profile(Alg::Es256, "JWT", None);
                let r = gateway(s(&v, "serialized"), &p, key, RFC7515_NOW);
                assert_eq!(r.err(), Some(Error::SegmentCount));
            }
            "rfc7517-3-example-jwk" => {
                let key = key_of(&v);
                assert_eq!(key.kid(), v["jwk"]["kid"].as_str());
                assert_eq!(
                    key.thumbprint(),
                    v["expected"]["thumbprint_sha256_computed"].as_str()
                );
            }
            "rfc7517-A.1-jwks-public" => {
                let doc = serde_json::to_vec(&v["jwks"]).expect("jwks");
                let (set, report) = KeySet::from_jwks(&doc, &Default::default()).expect("jwks");
                assert_eq!((set.len(), report.loaded), (1, 1));
                assert_eq!(report.skipped.len(), 1);
                assert_eq!(report.skipped[0].reason, KeyRejection::NotForSignature);
                assert_eq!(report.skipped[0].kid.as_deref(), Some("1"));
                let rsa = set.select(Alg::Rs256, Some("2011-04-29")).expect("RSA key");
                assert_eq!(
                    set.select(Alg::Es256, Some("1")).err(),
                    Some(Error::UnknownKey)
                );
                assert_eq!(
                    set.select(Alg::Es256, Some("2011-04-29")).err(),
                    Some(Error::KeyAlgMismatch)
                );
                // Both computed thumbprints (the EC one through the raw-coordinate path, since
                // the use=enc key is rightly never loaded).
                let ec = &v["jwks"]["keys"][0];
                let ec_key = Key::es256(
                    None,
                    &b64::decode(s(ec, "x")).expect("x"),
                    &b64::decode(s(ec, "y")).expect("y"),
                )
                .expect("EC key");
                let want = &v["expected"]["thumbprints_sha256_computed"];
                assert_eq!(ec_key.thumbprint(), want[0].as_str());
                assert_eq!(rsa.thumbprint(), want[1].as_str());
            }
            "rfc7517-A.2-jwks-private" => {
                let doc = serde_json::to_vec(&v["jwks"]).expect("jwks");
                let (set, report) = KeySet::from_jwks(&doc, &Default::default()).expect("jwks");
                assert!(set.is_empty());
                assert!(report.private_key_found());
                assert!(report
                    .skipped
                    .iter()
                    .all(|k| k.reason == KeyRejection::PrivateKey));
                assert_eq!(report.skipped.len(), 2);
            }
            "rfc7517-A.3-jwks-symmetric" => {
                let doc = serde_json::to_vec(&v["jwks"]).expect("jwks");
                let (set, report) = KeySet::from_jwks(&doc, &Default::default()).expect("jwks");
                assert!(set.is_empty());
                assert_eq!(report.skipped.len(), 2);
                assert!(report
                    .skipped
                    .iter()
                    .all(|k| k.reason == KeyRejection::Symmetric));
            }
            "rfc7517-B-x5c" => {
                // Parses as an RSA key; x5c is ignored (never used for trust).
                let key = key_of(&v);
                assert_eq!((key.alg(), key.kid()), (Alg::Rs256, Some("1b94c")));
            }
            "rfc7638-3.1-rsa-thumbprint" | "rfc8037-A.1-A.3-ed25519-key-thumbprint" => {
                let key = key_of(&v);
                assert_eq!(
                    key.thumbprint(),
                    v["expected"]["thumbprint_sha256"].as_str()
                );
                let canonical = s(&v, "canonical_input");
                assert_eq!(
                    key.thumbprint().map(str::to_owned),
                    Some(b64::encode(&Sha256::digest(canonical.as_bytes())))
                );
            }
            // Signed, but the payload is not a JWT claims set.
            "rfc8037-A.4-A.5-EdDSA"
            | "rfc7520-4.1-RS256"
            | "rfc7520-4.4-HS256"
            | "rfc7797-4.1-b64-true" => {
                let key = assert_signature_valid(&v);
                signatures_verified += 1;
                let compact = s(&v, "compact");
                assert_eq!(
                    claims::validate(payload_b64(compact), &ClaimRules::default(), 0).err(),
                    Some(Error::Json)
                );
                let r = gateway(compact, &profile(key.alg(), "JWT", None), key, 0);
                assert_eq!(r.err(), Some(Error::TypNotAccepted));
            }
            "rfc7520-4.5-HS256-detached" | "rfc7797-4.2-b64-false-detached" => {
                let key = key_of(&v);
                let compact = s(&v, "compact");
                let p = profile(Alg::Hs256, "JWT", None);
                assert_eq!(
                    gateway(compact, &p, key.clone(), 0).err(),
                    Some(Error::MalformedSegment)
                );
                // The detached signature is genuine over header.payload...
                let (head, sig) = compact.split_once("..").expect("detached");
                let payload = s(&v, "detached_payload_raw");
                let attached = if id.starts_with("rfc7797") {
                    format!("{head}.{payload}")
                } else {
                    format!("{head}.{}", b64::encode(payload.as_bytes()))
                };
                assert_eq!(
                    verify_native(&key, attached.as_bytes(), &b64::decode(sig).expect("sig")),
                    Ok(())
                );
                signatures_verified += 1;
                // ...and re-attaching the payload still does not make it a token: no typ, or
                // b64/crit.
                let attached = format!("{head}.{}.{sig}", b64::encode(payload.as_bytes()));
                let want = if id.starts_with("rfc7797") {
                    Error::CritUnsupported
                } else {
                    Error::TypNotAccepted
                };
                assert_eq!(gateway(&attached, &p, key, 0).err(), Some(want));
            }
            "rfc9449-fig2-fig5-token-request-proof"
            | "rfc9449-fig7-refresh-request-proof"
            | "rfc9449-fig13-resource-request-proof-ath" => {
                let compact = s(&v, "compact");
                let algs = [Alg::Es256, Alg::EdDsa];
                let proof = block_on_ready(verify_dpop_proof(
                    compact,
                    &algs,
                    &Limits::default(),
                    &NativeVerifier,
                ))
                .unwrap_or_else(|e| panic!("{id}: {e}"));
                signatures_verified += 1;
                assert_eq!(proof.jkt(), Some(DPOP_JKT));
                assert_eq!(proof.jkt(), v["expected"]["jkt"].as_str());
                assert_eq!(proof.claims["htm"], v["request"]["htm"]);
                assert_eq!(proof.claims["htu"], v["request"]["htu"]);
                if let Some(at) = v["access_token"].as_str() {
                    let ath = b64::encode(&Sha256::digest(at.as_bytes()));
                    assert_eq!(proof.claims["ath"], Value::String(ath));
                }
                // The same key from the vector's jwk verifies the same signature.
                assert_eq!(signature_check(compact, &key_of(&v)), Ok(()));
                // Presented as an access token: refused (embedded jwk / typ dpop+jwt).
                let p = Profile {
                    token_types: vec!["at+jwt".into(), "JWT".into()],
                    ..Profile::default()
                };
                assert_eq!(
                    gateway(compact, &p, key_of(&v), 1_562_262_616).err(),
                    Some(Error::UnsupportedHeader)
                );
                // A DPoP proof parse accepts only the DPoP typ and an embedded key.
                assert!(jws::parse_dpop(compact, &[Alg::EdDsa], &Limits::default()).is_err());
            }
            "rfc9449-fig8-access-token-cnf-jkt" => {
                let compact = s(&v, "compact");
                // The issuer key is not published: with keys that do not include kid BeALkb
                // the token is refused as UnknownKey.
                let other = Key::es256(
                    Some("other".into()),
                    &b64::decode("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs").expect("x"),
                    &b64::decode("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA").expect("y"),
                )
                .expect("key");
                let p = Profile {
                    token_types: vec!["JWT".into()],
                    ..Profile::default()
                };
                let parsed = jws::parse(compact, &p.algs, &p.token_types, &p.limits);
                assert_eq!(parsed.err(), Some(Error::TypNotAccepted));
                let keys = KeySet::from_keys(vec![other]);
                assert_eq!(
                    keys.select(Alg::Es256, Some("BeALkb")).err(),
                    Some(Error::UnknownKey)
                );
                // cnf.jkt extraction from the (unverified) claims fixture.
                let c = claims::decode(payload_b64(compact)).expect("claims");
                assert_eq!(c["cnf"]["jkt"], DPOP_JKT);
            }
            other => panic!("vector {other} is not covered by this test"),
        }
    }
    assert_eq!(seen.len(), 25, "all 25 vectors");
    assert_eq!(signatures_verified, 12, "signed vectors verified");
}
