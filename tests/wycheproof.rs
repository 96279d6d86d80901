//! Every test of the four Wycheproof files, through the production path: the key is built the
//! way the gateway builds keys ([`Key::from_jwk`] from the group's JWK, cross-checked against the
//! raw-key constructors) and every signature goes through [`verify_native`].
//!
//! Verdicts: `valid` must verify, `invalid` must be refused, `acceptable` is refused (a strict
//! verifier; the one such case is RSA tcId 8, `MissingNull`). Totals are asserted so the test
//! cannot pass vacuously.

mod common;

use attestgate::jose::crypto::verify_native;
use attestgate::jose::Error;
use attestgate::jose::{Alg, Key, KeyRejection, KeySet};
use common::{hex, read_json, s};
use serde_json::Value;

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    total: usize,
    valid_accepted: usize,
    invalid_refused: usize,
    acceptable_refused: usize,
    /// Tests whose key the gateway refuses to load (so every signature is refused).
    key_refused: usize,
    /// Tests refused because the tag/signature length is not the JWS one.
    length_refused: usize,
}

/// Loads a file, checks its schema and that `numberOfTests` matches the groups.
fn load(file: &str, schema: &str) -> Value {
    let doc = read_json(&format!("wycheproof/{file}"));
    assert_eq!(doc["schema"], schema, "{file}: schema changed");
    let counted: usize = groups(&doc).iter().map(|g| tests(g).len()).sum();
    assert_eq!(
        doc["numberOfTests"].as_u64(),
        Some(counted as u64),
        "{file}: numberOfTests"
    );
    doc
}

fn groups(doc: &Value) -> &Vec<Value> {
    doc["testGroups"].as_array().expect("testGroups")
}

fn tests(group: &Value) -> &Vec<Value> {
    group["tests"].as_array().expect("tests")
}

/// Records one verdict against the expected result; mismatches go to `failures`.
fn record(tally: &mut Tally, failures: &mut Vec<String>, test: &Value, verdict: Result<(), Error>) {
    tally.total += 1;
    let id = &test["tcId"];
    let what = format!("tcId {id} ({}, {})", test["comment"], test["flags"]);
    match (s(test, "result"), verdict) {
        ("valid", Ok(())) => tally.valid_accepted += 1,
        ("valid", Err(e)) => failures.push(format!("valid refused ({e}): {what}")),
        ("invalid", Err(_)) => tally.invalid_refused += 1,
        ("acceptable", Err(_)) => tally.acceptable_refused += 1,
        (r, Ok(())) => failures.push(format!("{r} accepted: {what}")),
        (r, Err(_)) => failures.push(format!("unknown result {r}: {what}")),
    }
}

fn assert_no_failures(file: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{file}: {} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// P-256 group order n, and floor(n / 2): s above it is "high-S".
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

#[test]
fn ecdsa_p256_p1363_es256() {
    let file = "ecdsa_secp256r1_sha256_p1363_test.json";
    let doc = load(file, "ecdsa_p1363_verify_schema_v1.json");
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    let mut high_s_valid_accepted = 0;
    let mut groups_without_jwk = 0;
    for group in groups(&doc) {
        let point = hex(s(&group["publicKey"], "uncompressed"));
        assert_eq!((point.len(), point[0]), (65, 4), "uncompressed point");
        let raw = Key::es256(None, &point[1..33], &point[33..]);
        let key = match group.get("publicKeyJwk") {
            Some(jwk) => {
                let from_jwk = Key::from_jwk(jwk);
                // The JWK path and the raw path must agree on the key.
                assert_eq!(
                    from_jwk.as_ref().ok().and_then(Key::thumbprint),
                    raw.as_ref().ok().and_then(Key::thumbprint),
                    "JWK and SEC1 forms disagree: {jwk}"
                );
                from_jwk
            }
            None => {
                groups_without_jwk += 1;
                raw
            }
        };
        let key = key.unwrap_or_else(|e| panic!("P-256 key refused ({e}): {group}"));
        assert_eq!(key.alg(), Alg::Es256);
        for test in tests(group) {
            let sig = hex(s(test, "sig"));
            let verdict = verify_native(&key, &hex(s(test, "msg")), &sig);
            if verdict.is_ok() && sig.len() == 64 && sig[32..] > P256_HALF_N[..] {
                high_s_valid_accepted += 1;
            }
            if sig.len() != 64 {
                assert_eq!(
                    verdict,
                    Err(Error::SignatureLength),
                    "tcId {}",
                    test["tcId"]
                );
                tally.length_refused += 1;
            }
            record(&mut tally, &mut failures, test, verdict);
        }
    }
    assert_no_failures(file, &failures);
    assert_eq!(groups_without_jwk, 9, "groups that use the SEC1 fallback");
    // High-S is accepted (ATTACKS #19): all 70 high-S valid vectors verify.
    assert_eq!(high_s_valid_accepted, 70);
    assert_eq!(
        tally,
        Tally {
            total: 262,
            valid_accepted: 173,
            invalid_refused: 89,
            acceptable_refused: 0,
            key_refused: 0,
            length_refused: 21,
        }
    );
}

#[test]
fn ed25519_eddsa() {
    let file = "ed25519_test.json";
    let doc = load(file, "eddsa_verify_schema_v1.json");
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for group in groups(&doc) {
        let pk = hex(s(&group["publicKey"], "pk"));
        let key = Key::from_jwk(&group["publicKeyJwk"])
            .unwrap_or_else(|e| panic!("Ed25519 key refused ({e}): {group}"));
        let raw = Key::ed25519(None, &pk).expect("raw Ed25519 key");
        assert_eq!(key.thumbprint(), raw.thumbprint());
        assert_eq!(key.alg(), Alg::EdDsa);
        for test in tests(group) {
            let sig = hex(s(test, "sig"));
            let verdict = verify_native(&key, &hex(s(test, "msg")), &sig);
            if sig.len() != 64 {
                assert_eq!(
                    verdict,
                    Err(Error::SignatureLength),
                    "tcId {}",
                    test["tcId"]
                );
                tally.length_refused += 1;
            }
            record(&mut tally, &mut failures, test, verdict);
        }
    }
    assert_no_failures(file, &failures);
    assert_eq!(
        tally,
        Tally {
            total: 151,
            valid_accepted: 88,
            invalid_refused: 63,
            acceptable_refused: 0,
            key_refused: 0,
            length_refused: 12,
        }
    );
}

/// HS256 is HMAC-SHA-256 with the full 32-byte tag and a secret of at least 32 bytes.
/// * `tagSize` 256 with keys >= 32 bytes: verdicts as in the file.
/// * `tagSize` 128 (truncated tags): refused by length, whatever the file says, because a
///   truncated tag is never a valid JWS HS256 signature.
/// * 128-bit keys: the gateway refuses such secrets at configuration time
///   ([`KeySet::from_hmac_secret`] → `SecretUnavailable`), so no token is ever verified with them.
#[test]
fn hmac_sha256_hs256() {
    let file = "hmac_sha256_test.json";
    let doc = load(file, "mac_test_schema_v1.json");
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for group in groups(&doc) {
        let tag_bits = group["tagSize"].as_u64().expect("tagSize");
        for test in tests(group) {
            let secret = hex(s(test, "key"));
            let (msg, tag) = (hex(s(test, "msg")), hex(s(test, "tag")));
            if secret.len() < 32 {
                assert_eq!(Key::hs256(None, &secret).err(), Some(KeyRejection::WeakKey));
                assert_eq!(
                    KeySet::from_hmac_secret(&secret, None).err(),
                    Some(Error::HmacSecretUnusable)
                );
                tally.total += 1;
                tally.key_refused += 1;
                continue;
            }
            let key = Key::hs256(None, &secret).expect("HMAC key >= 32 bytes");
            let verdict = verify_native(&key, &msg, &tag);
            if tag_bits == 256 {
                record(&mut tally, &mut failures, test, verdict);
            } else {
                assert_eq!(
                    verdict,
                    Err(Error::SignatureLength),
                    "tcId {}",
                    test["tcId"]
                );
                tally.total += 1;
                tally.length_refused += 1;
            }
        }
    }
    assert_no_failures(file, &failures);
    assert_eq!(
        tally,
        Tally {
            total: 174,
            valid_accepted: 30,
            invalid_refused: 54,
            acceptable_refused: 0,
            key_refused: 6,
            length_refused: 84,
        }
    );
}

/// RS256. The two e = 3 keys are refused at load (e must be 65537), so their tests count as
/// "key refused"; the `acceptable` MissingNull case is refused.
#[test]
fn rsa_pkcs1_2048_rs256() {
    let file = "rsa_signature_2048_sha256_test.json";
    let doc = load(file, "rsassa_pkcs1_verify_schema_v1.json");
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for group in groups(&doc) {
        let modulus = hex(s(&group["publicKey"], "modulus"));
        let modulus: Vec<u8> = modulus.into_iter().skip_while(|b| *b == 0).collect();
        let exponent = hex(s(&group["publicKey"], "publicExponent"));
        let key = Key::from_jwk(&group["keyJwk"]);
        let raw = Key::rs256(None, &modulus, &exponent);
        assert_eq!(
            key.as_ref().ok().and_then(Key::thumbprint),
            raw.as_ref().ok().and_then(Key::thumbprint)
        );
        match key {
            Ok(key) => {
                assert_eq!(key.alg(), Alg::Rs256);
                for test in tests(group) {
                    let sig = hex(s(test, "sig"));
                    let verdict = verify_native(&key, &hex(s(test, "msg")), &sig);
                    if sig.len() != modulus.len() {
                        assert_eq!(verdict, Err(Error::SignatureLength));
                        tally.length_refused += 1;
                    }
                    record(&mut tally, &mut failures, test, verdict);
                }
            }
            Err(e) => {
                assert_eq!(e, KeyRejection::RsaExponent, "only e = 3 keys are refused");
                assert_eq!(raw.err(), Some(KeyRejection::RsaExponent));
                tally.total += tests(group).len();
                tally.key_refused += tests(group).len();
            }
        }
    }
    assert_no_failures(file, &failures);
    assert_eq!(
        (tally.total, tally.valid_accepted, tally.invalid_refused),
        (259, 7, 249)
    );
    assert_eq!((tally.acceptable_refused, tally.key_refused), (1, 2));
    assert!(tally.length_refused > 0);
}
