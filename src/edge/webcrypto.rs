//! The [`SignatureVerifier`] seam on WebCrypto (`crypto.subtle`), the Worker's hot path.
//!
//! ES256 (ECDSA P-256, IEEE P1363 `r‖s`), EdDSA (Ed25519) and RS256 (RSASSA-PKCS1-v1_5) verify
//! in the runtime's native crypto, about 11x faster than pure-Rust P-256 in wasm (and the
//! pure-Rust verifiers stay out of the wasm: HS256 goes through [`verify_hmac`] only). Imported
//! `CryptoKey`s are cached per isolate by the key's RFC 7638 thumbprint. HS256 stays in Rust: an
//! HMAC is cheaper than the round trip into JavaScript, and `hmac` compares in constant time.
//!
//! The same checks as the native path run first ([`check_signature_length`]); key validation
//! (curve points, weak Ed25519 keys, RSA size and exponent) happened when the key was loaded.
//!
//! Ed25519 needs one more check in Rust: WebCrypto (BoringSSL's `ED25519_verify`) does not refuse
//! a small-order `R`, which `verify_strict` on the native path does. The key's owner can make such
//! signatures (R = identity, s = H(R‖A‖M)·a), a second valid spelling of a signed message. So `R`
//! must not be one of the small-order encodings before WebCrypto sees the signature
//! ([`ed25519_small_order`]: a byte comparison with the seven encodings libsodium lists; an `R`
//! that is no point at all, or not canonical, never verifies in WebCrypto anyway). The self-test (`selftest.rs`, `tests/e2e/test_webcrypto_vectors.py`) checks
//! that both paths give the same verdict on every vector.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::task::Settled;

use crate::jose::crypto::{
    check_signature_length, ed25519_small_order, verify_hmac, SignatureVerifier,
};
use crate::jose::Error;
use crate::jose::{b64, Key, KeyMaterial, Signer, SigningKey};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey, catch)]
    fn subtle_import_key(
        format: &str,
        key_data: &JsValue,
        algorithm: &JsValue,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = sign, catch)]
    fn subtle_sign(algorithm: &JsValue, key: &JsValue, data: &[u8]) -> Result<Promise, JsValue>;

    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = verify, catch)]
    fn subtle_verify(
        algorithm: &JsValue,
        key: &JsValue,
        signature: &[u8],
        data: &[u8],
    ) -> Result<Promise, JsValue>;
}

/// WebCrypto verifier with a per-isolate cache of imported keys.
pub struct WebCrypto {
    keys: RefCell<HashMap<String, JsValue>>,
    ecdsa: JsValue,
    ed25519: JsValue,
    rsa: JsValue,
}

/// Upper bound on cached imported keys (a JWKS holds at most 100; rotation adds a few).
const MAX_CACHED_KEYS: usize = 512;

fn object(pairs: &[(&str, &str)]) -> JsValue {
    let obj = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&obj, &JsValue::from_str(k), &JsValue::from_str(v));
    }
    obj.into()
}

impl WebCrypto {
    pub fn new() -> Self {
        Self {
            keys: RefCell::new(HashMap::new()),
            ecdsa: object(&[("name", "ECDSA"), ("hash", "SHA-256")]),
            ed25519: object(&[("name", "Ed25519")]),
            rsa: object(&[("name", "RSASSA-PKCS1-v1_5")]),
        }
    }

    /// The imported `CryptoKey` for `key`, from the cache or imported now.
    async fn crypto_key(&self, key: &Key) -> Result<JsValue, Error> {
        let id = key.thumbprint().ok_or(Error::KeyAlgMismatch)?;
        if let Some(k) = self.keys.borrow().get(id) {
            return Ok(k.clone());
        }
        let usages = Array::of1(&JsValue::from_str("verify"));
        let promise = match key.material() {
            KeyMaterial::Ec { .. } => {
                let raw = key
                    .material()
                    .sec1_uncompressed()
                    .ok_or(Error::KeyAlgMismatch)?;
                let data = js_sys::Uint8Array::from(&raw[..]);
                subtle_import_key(
                    "raw",
                    &data,
                    &object(&[("name", "ECDSA"), ("namedCurve", "P-256")]),
                    false,
                    &usages,
                )
            }
            KeyMaterial::Ed25519 { x, .. } => {
                let data = js_sys::Uint8Array::from(&x[..]);
                subtle_import_key(
                    "raw",
                    &data,
                    &object(&[("name", "Ed25519")]),
                    false,
                    &usages,
                )
            }
            KeyMaterial::Rsa { n, e, .. } => {
                let jwk = object(&[
                    ("kty", "RSA"),
                    ("n", &b64::encode(n)),
                    ("e", &b64::encode(e)),
                    ("alg", "RS256"),
                ]);
                subtle_import_key(
                    "jwk",
                    &jwk,
                    &object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")]),
                    false,
                    &usages,
                )
            }
            KeyMaterial::Hmac { .. } => return Err(Error::KeyAlgMismatch),
        }
        .map_err(|_| Error::KeyAlgMismatch)?;
        let imported = Settled::new(promise)
            .await
            .map_err(|_| Error::KeyAlgMismatch)?;
        let mut keys = self.keys.borrow_mut();
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(id.to_owned(), imported.clone());
        Ok(imported)
    }
}

impl SignatureVerifier for WebCrypto {
    async fn verify(&self, key: &Key, signing_input: &[u8], signature: &[u8]) -> Result<(), Error> {
        check_signature_length(key, signature)?;
        let algorithm = match key.material() {
            KeyMaterial::Hmac { .. } => return verify_hmac(key, signing_input, signature),
            KeyMaterial::Ec { .. } => &self.ecdsa,
            KeyMaterial::Ed25519 { .. } if signature.get(..32).is_none_or(ed25519_small_order) => {
                return Err(Error::BadSignature)
            }
            KeyMaterial::Ed25519 { .. } => &self.ed25519,
            KeyMaterial::Rsa { .. } => &self.rsa,
        };
        let crypto_key = self.crypto_key(key).await?;
        let promise = subtle_verify(algorithm, &crypto_key, signature, signing_input)
            .map_err(|_| Error::BadSignature)?;
        match Settled::new(promise).await {
            Ok(v) if v.as_bool() == Some(true) => Ok(()),
            _ => Err(Error::BadSignature),
        }
    }
}

/// The [`Signer`] seam on WebCrypto: the gateway's private key is imported once per isolate as a
/// non-extractable `CryptoKey` (usages `sign` only) and cached by its public thumbprint. Before
/// first use, a probe signature is verified with the key's public half, so a secret whose
/// private and public halves do not match never signs anything (`SecretUnavailable`, 503).
///
/// Used by the gateway's signing key (`src/edge/signing.rs`: receipts, minted JWTs) and the
/// self-test endpoint.
pub struct WebCryptoSigner {
    keys: RefCell<HashMap<String, JsValue>>,
    verifier: WebCrypto,
}

/// What the probe signature covers (never sent anywhere).
const PROBE: &[u8] = b"attestgate signing key probe";

impl WebCryptoSigner {
    pub fn new() -> Self {
        Self {
            keys: RefCell::new(HashMap::new()),
            verifier: WebCrypto::new(),
        }
    }

    fn algorithm(&self, key: &SigningKey) -> &JsValue {
        match key.public_key().material() {
            KeyMaterial::Ec { .. } => &self.verifier.ecdsa,
            _ => &self.verifier.ed25519,
        }
    }

    async fn raw_sign(
        &self,
        crypto_key: &JsValue,
        key: &SigningKey,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let promise = subtle_sign(self.algorithm(key), crypto_key, input)
            .map_err(|_| Error::SigningKeyUnusable)?;
        let buffer = Settled::new(promise)
            .await
            .map_err(|_| Error::SigningKeyUnusable)?;
        Ok(js_sys::Uint8Array::new(&buffer).to_vec())
    }

    async fn private_key(&self, key: &SigningKey) -> Result<JsValue, Error> {
        let id = key
            .public_key()
            .thumbprint()
            .ok_or(Error::SigningKeyUnusable)?;
        if let Some(k) = self.keys.borrow().get(id) {
            return Ok(k.clone());
        }
        let public = key.public_jwk();
        let member = |name: &str| public.get(name).and_then(|v| v.as_str()).unwrap_or("");
        let d = b64::encode(key.secret_bytes());
        let (jwk, algorithm) = match key.public_key().material() {
            KeyMaterial::Ec { .. } => (
                object(&[
                    ("kty", "EC"),
                    ("crv", "P-256"),
                    ("x", member("x")),
                    ("y", member("y")),
                    ("d", &d),
                ]),
                object(&[("name", "ECDSA"), ("namedCurve", "P-256")]),
            ),
            KeyMaterial::Ed25519 { .. } => (
                object(&[
                    ("kty", "OKP"),
                    ("crv", "Ed25519"),
                    ("x", member("x")),
                    ("d", &d),
                ]),
                object(&[("name", "Ed25519")]),
            ),
            _ => return Err(Error::SigningKeyUnusable),
        };
        let usages = Array::of1(&JsValue::from_str("sign"));
        let promise = subtle_import_key("jwk", &jwk, &algorithm, false, &usages)
            .map_err(|_| Error::SigningKeyUnusable)?;
        let imported = Settled::new(promise)
            .await
            .map_err(|_| Error::SigningKeyUnusable)?;
        let probe = self.raw_sign(&imported, key, PROBE).await?;
        self.verifier
            .verify(key.public_key(), PROBE, &probe)
            .await
            .map_err(|_| Error::SigningKeyUnusable)?;
        let mut keys = self.keys.borrow_mut();
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(id.to_owned(), imported.clone());
        Ok(imported)
    }
}

impl Signer for WebCryptoSigner {
    async fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, Error> {
        let crypto_key = self.private_key(key).await?;
        let signature = self.raw_sign(&crypto_key, key, input).await?;
        if signature.len() != 64 {
            return Err(Error::SigningKeyUnusable);
        }
        Ok(signature)
    }
}
