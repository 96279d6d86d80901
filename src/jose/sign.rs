//! The signing seam: the gateway's own signatures (request receipts, log checkpoints, JWTs it
//! mints for upstreams). One trait, [`Signer`]; natively a pure-Rust implementation
//! ([`NativeSigner`]); in the Worker, WebCrypto with non-extractable keys (`src/edge/webcrypto.rs`),
//! so the private key never sits in wasm memory longer than its one import.
//!
//! The key is a private JWK kept in a Worker secret: EC P-256 (`ES256`) or OKP Ed25519
//! (`EdDSA`). [`SigningKey::from_jwk`] reads it strictly (the same JSON reader as tokens; exact
//! member lengths; the public half validated like any JWKS key) and keeps the public half, which
//! is what the gateway's JWKS publishes ([`SigningKey::public_jwk`]). Whether the private half
//! belongs to the public half is checked by each signer when it first uses the key (natively by
//! deriving it; in the Worker by a probe signature verified with the public key), so a
//! mismatched secret fails closed before anything is signed with it.

use serde_json::{json, Map, Value};

use super::jwk::{Key, KeyMaterial, KeyRejection};
use super::Error;
use super::{b64, json, Alg};

/// A private signing key (ES256 or EdDSA) and its public half.
pub struct SigningKey {
    public: Key,
    /// The private scalar (P-256) or seed (Ed25519): exactly 32 bytes. Cleared on drop.
    d: [u8; 32],
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        // Not a guarantee against every copy, but the key does not outlive its owner in memory.
        self.d.iter_mut().for_each(|b| *b = 0);
    }
}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.public.alg())
            .field("kid", &self.public.kid())
            .field("thumbprint", &self.public.thumbprint())
            .finish_non_exhaustive()
    }
}

/// The member `name` of a JWK as strict base64url of exactly 32 bytes.
fn member32(jwk: &Map<String, Value>, name: &str) -> Result<[u8; 32], KeyRejection> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or(KeyRejection::Malformed)?;
    let bytes = b64::decode(text).map_err(|_| KeyRejection::Malformed)?;
    bytes.try_into().map_err(|_| KeyRejection::Malformed)
}

impl SigningKey {
    /// Reads a private JWK (the text of a Worker secret). Refused: anything but a strict JSON
    /// object; `kty`/`crv` other than EC P-256 or OKP Ed25519; `d`, `x` (and `y`) not exactly
    /// 32 bytes; an `alg` that does not fit; `use` other than `sig`; a public half that is not a
    /// valid key (off-curve point, weak Ed25519 key); a `kid` that is not a short string.
    pub fn from_jwk(text: &str) -> Result<SigningKey, KeyRejection> {
        let jwk = json::parse_object(text.as_bytes()).map_err(|_| KeyRejection::NotAnObject)?;
        let d = member32(&jwk, "d")?;
        // The public half, through the JWKS key constructor (all its checks), without `d`.
        let mut public_only = jwk.clone();
        public_only.remove("d");
        let public = Key::from_jwk(&Value::Object(public_only))?;
        if !matches!(public.alg(), Alg::Es256 | Alg::EdDsa) {
            return Err(KeyRejection::UnknownKty);
        }
        Ok(SigningKey { public, d })
    }

    pub fn alg(&self) -> Alg {
        self.public.alg()
    }

    pub fn kid(&self) -> Option<&str> {
        self.public.kid()
    }

    /// The public half, as the token verifier sees keys.
    pub fn public_key(&self) -> &Key {
        &self.public
    }

    /// The public JWK to publish (`kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`), never `d`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match self.public.material() {
            KeyMaterial::Ec { x, y, .. } => json!({
                "kty": "EC", "crv": "P-256", "x": b64::encode(x), "y": b64::encode(y)
            }),
            KeyMaterial::Ed25519 { x, .. } => json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64::encode(x)
            }),
            // `from_jwk` admits only the two above.
            _ => Value::Null,
        };
        if let Value::Object(m) = &mut jwk {
            m.insert("alg".into(), Value::from(self.alg().as_str()));
            m.insert("use".into(), Value::from("sig"));
            if let Some(kid) = self.kid() {
                m.insert("kid".into(), Value::from(kid));
            }
        }
        jwk
    }

    /// The private half, for the signers of this crate only.
    #[cfg_attr(
        all(target_arch = "wasm32", not(attestgate_selftest)),
        allow(dead_code)
    )]
    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.d
    }
}

/// Signs `input` with a [`SigningKey`]: the 64-byte JWS signature (ES256 as IEEE P1363 `r‖s`,
/// EdDSA as RFC 8032). A key that cannot be used (its halves do not match, the runtime refuses
/// it) is [`Error::SigningKeyUnusable`]: the routes that need it answer 503, never unsigned.
#[allow(async_fn_in_trait)]
pub trait Signer {
    async fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Pure-Rust signing (`p256` with RFC 6979 deterministic nonces, `ed25519-dalek`): natively,
/// for the CLI, tests and benches. The Worker signs in WebCrypto.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeSigner;

#[cfg(not(target_arch = "wasm32"))]
impl Signer for NativeSigner {
    async fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, Error> {
        sign_native(key, input)
    }
}

/// [`NativeSigner`]'s work, checking first that the private half derives the public one.
#[cfg(not(target_arch = "wasm32"))]
pub fn sign_native(key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, Error> {
    match key.public.material() {
        KeyMaterial::Ec { key: public, .. } => {
            use p256::ecdsa::signature::Signer as _;
            let sk = p256::ecdsa::SigningKey::from_slice(key.secret_bytes())
                .map_err(|_| Error::SigningKeyUnusable)?;
            if sk.verifying_key() != public {
                return Err(Error::SigningKeyUnusable);
            }
            let sig: p256::ecdsa::Signature = sk.sign(input);
            Ok(sig.to_bytes().to_vec())
        }
        KeyMaterial::Ed25519 { key: public, .. } => {
            use ed25519_dalek::Signer as _;
            let sk = ed25519_dalek::SigningKey::from_bytes(key.secret_bytes());
            if sk.verifying_key() != *public {
                return Err(Error::SigningKeyUnusable);
            }
            Ok(sk.sign(input).to_bytes().to_vec())
        }
        _ => Err(Error::SigningKeyUnusable),
    }
}

/// A compact JWS of `claims` with header `{"alg", "typ", "kid"}`, signed by `signer`.
pub async fn sign_compact<S: Signer>(
    claims: &Value,
    typ: &str,
    key: &SigningKey,
    signer: &S,
) -> Result<String, Error> {
    sign_compact_json(&claims.to_string(), typ, key, signer).await
}

/// [`sign_compact`] of claims given as JSON text (the caller wrote a JSON object; the Worker
/// writes its JSON by hand rather than building a `serde_json::Value`, less code in the wasm).
/// The header is `{"alg","kid"?,"typ"}`, members sorted as `serde_json` writes them.
pub async fn sign_compact_json<S: Signer>(
    claims_json: &str,
    typ: &str,
    key: &SigningKey,
    signer: &S,
) -> Result<String, Error> {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""));
    let kid = key
        .kid()
        .map(|k| format!(",\"kid\":{}", quoted(k)))
        .unwrap_or_default();
    let header = format!(
        "{{\"alg\":\"{}\"{kid},\"typ\":{}}}",
        key.alg().as_str(),
        quoted(typ)
    );
    let mut out = b64::encode(header.as_bytes());
    out.push('.');
    out.push_str(&b64::encode(claims_json.as_bytes()));
    let signature = signer.sign(key, out.as_bytes()).await?;
    out.push('.');
    out.push_str(&b64::encode(&signature));
    Ok(out)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::jose::{block_on_ready, verify_native};

    fn es256_jwk(seed: u8) -> String {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        let bytes = sk.verifying_key().to_sec1_bytes();
        json!({
            "kty": "EC", "crv": "P-256", "kid": "gw-1",
            "x": b64::encode(&bytes[1..33]), "y": b64::encode(&bytes[33..65]),
            "d": b64::encode(&[seed; 32]),
        })
        .to_string()
    }

    fn ed25519_jwk(seed: u8) -> String {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": b64::encode(sk.verifying_key().as_bytes()), "d": b64::encode(&[seed; 32]),
        })
        .to_string()
    }

    #[test]
    fn signatures_verify_with_the_public_half_and_the_token_verifier() {
        for text in [es256_jwk(3), ed25519_jwk(4)] {
            let key = SigningKey::from_jwk(&text).unwrap();
            let sig = sign_native(&key, b"header.payload").unwrap();
            assert_eq!(sig.len(), 64);
            verify_native(key.public_key(), b"header.payload", &sig).unwrap();
            assert_eq!(
                verify_native(key.public_key(), b"header.payloaD", &sig),
                Err(Error::BadSignature)
            );
            let jwk = key.public_jwk();
            assert!(jwk.get("d").is_none(), "{jwk}");
            assert_eq!(
                Key::from_jwk(&jwk).unwrap().thumbprint(),
                key.public_key().thumbprint()
            );
        }
    }

    #[test]
    fn a_compact_jws_verifies_through_verify_token_profile_checks() {
        let key = SigningKey::from_jwk(&es256_jwk(5)).unwrap();
        let claims = json!({"iss": "gw", "exp": 2_000_000_000_i64});
        let jws = block_on_ready(sign_compact(
            &claims,
            "attestgate-receipt+jwt",
            &key,
            &NativeSigner,
        ))
        .unwrap();
        let parsed = crate::jose::jws::parse(
            &jws,
            &[Alg::Es256],
            &["attestgate-receipt+jwt"],
            &crate::jose::Limits::default(),
        )
        .unwrap();
        assert_eq!(parsed.header.kid.as_deref(), Some("gw-1"));
        verify_native(
            key.public_key(),
            parsed.signing_input.as_bytes(),
            &parsed.signature,
        )
        .unwrap();
    }

    #[test]
    fn mismatched_halves_never_sign() {
        // d of one key with x/y of another: parses (each half is well formed), never signs.
        let a: Value = serde_json::from_str(&es256_jwk(6)).unwrap();
        let mut b: Value = serde_json::from_str(&es256_jwk(7)).unwrap();
        b["d"] = a["d"].clone();
        let key = SigningKey::from_jwk(&b.to_string()).unwrap();
        assert_eq!(sign_native(&key, b"x"), Err(Error::SigningKeyUnusable));
        let a: Value = serde_json::from_str(&ed25519_jwk(8)).unwrap();
        let mut b: Value = serde_json::from_str(&ed25519_jwk(9)).unwrap();
        b["d"] = a["d"].clone();
        let key = SigningKey::from_jwk(&b.to_string()).unwrap();
        assert_eq!(sign_native(&key, b"x"), Err(Error::SigningKeyUnusable));
    }

    #[test]
    fn malformed_private_jwks_are_refused() {
        let good: Value = serde_json::from_str(&es256_jwk(10)).unwrap();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            SigningKey::from_jwk(&v.to_string()).map(|_| ())
        };
        assert_eq!(
            with(&|v| {
                v.as_object_mut().unwrap().remove("d");
            }),
            Err(KeyRejection::Malformed)
        );
        assert_eq!(
            with(&|v| v["d"] = json!("AAAA")),
            Err(KeyRejection::Malformed)
        );
        assert_eq!(with(&|v| v["d"] = json!(7)), Err(KeyRejection::Malformed));
        assert_eq!(
            with(&|v| v["crv"] = json!("P-384")),
            Err(KeyRejection::UnsupportedCurve)
        );
        assert_eq!(
            with(&|v| v["alg"] = json!("EdDSA")),
            Err(KeyRejection::AlgMismatch)
        );
        assert_eq!(
            with(&|v| v["use"] = json!("enc")),
            Err(KeyRejection::NotForSignature)
        );
        assert_eq!(
            with(&|v| v["y"] = v["x"].clone()),
            Err(KeyRejection::InvalidPoint)
        );
        assert_eq!(
            with(&|v| v["kty"] = json!("oct")),
            Err(KeyRejection::Symmetric)
        );
        // RSA private keys are not signing keys of the gateway.
        assert!(SigningKey::from_jwk(r#"{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#).is_err());
        // Duplicate members, trailing data, not JSON.
        assert!(SigningKey::from_jwk(r#"{"kty":"EC","kty":"EC"}"#).is_err());
        assert!(SigningKey::from_jwk("not json").is_err());
        assert!(SigningKey::from_jwk("").is_err());
        // Debug never shows the private half.
        let key = SigningKey::from_jwk(&es256_jwk(11)).unwrap();
        let shown = format!("{key:?}");
        assert!(
            !shown.contains(good["d"].as_str().unwrap()) && shown.contains("gw-1"),
            "{shown}"
        );
    }
}
