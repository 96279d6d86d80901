//! Shared helpers for the integration tests: the shared vector folder and small decoders.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// `/work/shared/vectors` (the worktree's sibling `shared/vectors`). The vectors are never
/// copied into the repository; a missing folder fails the test run loudly.
pub fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    assert!(
        dir.is_dir(),
        "test vectors not found at {}: the shared vector folder (shared/vectors next to the \
         worktree) is required by these tests",
        dir.display()
    );
    dir
}

/// Reads and parses a JSON file under the vector folder, panicking with the path on failure.
pub fn read_json(relative: &str) -> Value {
    let path = vectors_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// Decodes a hex string (Wycheproof `HexBytes`).
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex: {s}")))
        .collect()
}

/// A string member of a JSON object, panicking with its name when absent.
pub fn s<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("member {name} missing in {v}"))
}

/// Signing for the test token builders (an independent path from the verifiers under test:
/// the signing halves of the same crates).
pub mod sign {
    use sha2::Sha256;

    /// ES256: the 64-byte `r‖s` (P1363) signature.
    pub fn es256(key: &p256::ecdsa::SigningKey, input: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = key.sign(input);
        sig.to_bytes().to_vec()
    }

    /// EdDSA (Ed25519).
    pub fn ed25519(key: &ed25519_dalek::SigningKey, input: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        key.sign(input).to_bytes().to_vec()
    }

    /// HS256: the full 32-byte tag.
    pub fn hs256(secret: &[u8], input: &[u8]) -> Vec<u8> {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
}
