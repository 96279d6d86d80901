//! Verification keys: JWK and JWK Set parsing, the one-key-one-algorithm binding, key selection
//! and RFC 7638 thumbprints.
//!
//! Every [`Key`] is bound to exactly one [`Alg`] when it is built (RFC 8725 §3.1), and it can only
//! be built through the validating constructors here, so a [`Key`] in hand is always usable:
//!
//! | key | alg | refused at load |
//! |---|---|---|
//! | `EC` `P-256` | ES256 | coordinates not exactly 32 bytes, point not on the curve, `x`/`y` ≥ p |
//! | `OKP` `Ed25519` | EdDSA | `x` not 32 bytes, non-canonical encoding, small-order (weak) point |
//! | `RSA` | RS256 | modulus < 2048 or > 8192 bits, `e` ≠ 65537, non-minimal `n`/`e` encoding |
//! | HMAC secret | HS256 | secret < 32 bytes; *only* from configuration, never from a JWKS |
//!
//! In a JWK Set a key is also skipped (and reported) when it has private members (`d`, ...),
//! is `oct`, has `use` other than `sig`, `key_ops` without `verify`, a JWK `alg` that does not
//! fit its type, another curve (`P-384`, `secp256k1`, `X25519`, `Ed448`, ...) or an unknown
//! `kty`. `x5c`, `x5u` and `x5t` members are ignored: certificates are never used for trust.

use core::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::alg::Alg;
use super::Error;
use super::{b64, json};

/// Longest `kid` accepted, in bytes, in a JWK and in a JOSE header.
pub const MAX_KID_LEN: usize = 256;
/// Shortest HS256 secret accepted (RFC 7518 §3.2: a key of at least the hash output size).
pub const MIN_HMAC_SECRET_LEN: usize = 32;
/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the verification cost).
pub const MAX_RSA_BITS: usize = 8192;

/// Private members of a JWK (RFC 7518 §6.2.2, §6.3.2). A JWKS served for verification that
/// carries any of them is leaking a private key.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// The key material, in the forms both the native verifier and a WebCrypto verifier need.
#[derive(Clone)]
pub enum KeyMaterial {
    /// P-256 public key: the parsed point and its affine coordinates (32 bytes each).
    Ec {
        key: p256::ecdsa::VerifyingKey,
        x: [u8; 32],
        y: [u8; 32],
    },
    /// Ed25519 public key: the parsed point and its (canonical) 32-byte encoding.
    Ed25519 {
        key: ed25519_dalek::VerifyingKey,
        x: [u8; 32],
    },
    /// RSA public key: big-endian, minimal `n` and `e` (as in the JWK), and natively the parsed key.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        #[cfg(not(target_arch = "wasm32"))]
        key: rsa::RsaPublicKey,
    },
    /// HMAC secret (at least [`MIN_HMAC_SECRET_LEN`] bytes). Never printed by `Debug`.
    Hmac { secret: Vec<u8> },
}

impl KeyMaterial {
    /// The uncompressed SEC1 point `04‖x‖y` of an EC key (what WebCrypto's `raw` import takes).
    pub fn sec1_uncompressed(&self) -> Option<[u8; 65]> {
        match self {
            KeyMaterial::Ec { x, y, .. } => {
                let mut out = [0u8; 65];
                out[0] = 4;
                out[1..33].copy_from_slice(x);
                out[33..].copy_from_slice(y);
                Some(out)
            }
            _ => None,
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Ec { x, y, .. } => f
                .debug_struct("Ec")
                .field("x", &b64::encode(x))
                .field("y", &b64::encode(y))
                .finish(),
            KeyMaterial::Ed25519 { x, .. } => f
                .debug_struct("Ed25519")
                .field("x", &b64::encode(x))
                .finish(),
            KeyMaterial::Rsa { n, .. } => f.debug_struct("Rsa").field("bits", &bit_len(n)).finish(),
            KeyMaterial::Hmac { secret } => f
                .debug_struct("Hmac")
                .field("len", &secret.len())
                .finish_non_exhaustive(),
        }
    }
}

/// A verification key bound to exactly one algorithm. Built only by the validating
/// constructors ([`Key::from_jwk`], [`Key::es256`], [`Key::ed25519`], [`Key::rs256`],
/// [`Key::hs256`]), so its fields are private.
#[derive(Clone, Debug)]
pub struct Key {
    kid: Option<String>,
    alg: Alg,
    material: KeyMaterial,
    thumbprint: Option<String>,
}

/// Why a key was not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyRejection {
    /// The JWK is not a JSON object.
    NotAnObject,
    /// A member is missing, of the wrong type, not strict base64url, or of the wrong length.
    Malformed,
    /// `kid` is not a string of at most [`MAX_KID_LEN`] bytes.
    KidInvalid,
    /// A `kty` the gateway does not implement (skipped, RFC 7517 §5).
    UnknownKty,
    /// A curve other than P-256 (EC) or Ed25519 (OKP).
    UnsupportedCurve,
    /// The JWK carries private members (`d`, `p`, `q`, ...): the issuer's key is exposed. Alert.
    PrivateKey,
    /// An `oct` (symmetric) key in a JWK Set: never used, HS256 secrets come from configuration.
    Symmetric,
    /// `use` is not `sig`.
    NotForSignature,
    /// `key_ops` does not contain `verify`.
    NoVerifyOp,
    /// The JWK `alg` does not fit the key type.
    AlgMismatch,
    /// The point is not on the curve (or a coordinate is out of range).
    InvalidPoint,
    /// The Ed25519 point is not canonically encoded.
    NonCanonical,
    /// A small-order Ed25519 key, or an HMAC secret shorter than 32 bytes.
    WeakKey,
    /// The RSA modulus is smaller than 2048 or larger than 8192 bits.
    RsaModulusSize,
    /// The RSA public exponent is not 65537.
    RsaExponent,
}

impl KeyRejection {
    /// A stable snake_case code for the log line.
    pub fn reason(self) -> &'static str {
        match self {
            KeyRejection::NotAnObject => "not_an_object",
            KeyRejection::Malformed => "malformed",
            KeyRejection::KidInvalid => "kid_invalid",
            KeyRejection::UnknownKty => "unknown_kty",
            KeyRejection::UnsupportedCurve => "unsupported_curve",
            KeyRejection::PrivateKey => "private_key",
            KeyRejection::Symmetric => "symmetric_key",
            KeyRejection::NotForSignature => "not_for_signature",
            KeyRejection::NoVerifyOp => "no_verify_op",
            KeyRejection::AlgMismatch => "alg_mismatch",
            KeyRejection::InvalidPoint => "invalid_point",
            KeyRejection::NonCanonical => "non_canonical",
            KeyRejection::WeakKey => "weak_key",
            KeyRejection::RsaModulusSize => "rsa_modulus_size",
            KeyRejection::RsaExponent => "rsa_exponent",
        }
    }
}

impl fmt::Display for KeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for KeyRejection {}

impl Key {
    /// The `kid`, if the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The key material.
    pub fn material(&self) -> &KeyMaterial {
        &self.material
    }

    /// The RFC 7638 SHA-256 thumbprint (base64url) of a public key; `None` for HMAC secrets
    /// (a digest of a secret is not something to log or compare).
    pub fn thumbprint(&self) -> Option<&str> {
        self.thumbprint.as_deref()
    }

    /// Parses one public JWK, with every check described in the module docs. The `kid`, if
    /// present, must be a string of at most [`MAX_KID_LEN`] bytes. `oct` keys are refused
    /// ([`KeyRejection::Symmetric`]): use [`Key::hs256`] with a configured secret.
    pub fn from_jwk(jwk: &Value) -> Result<Key, KeyRejection> {
        let jwk = jwk.as_object().ok_or(KeyRejection::NotAnObject)?;
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) if kid.len() <= MAX_KID_LEN => Some(kid.clone()),
            Some(_) => return Err(KeyRejection::KidInvalid),
        };
        let kty = str_member(jwk, "kty")?;
        if kty == "oct" {
            return Err(KeyRejection::Symmetric);
        }
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(KeyRejection::PrivateKey);
        }
        match jwk.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(_)) => return Err(KeyRejection::NotForSignature),
            Some(_) => return Err(KeyRejection::Malformed),
        }
        if let Some(ops) = jwk.get("key_ops") {
            let ops = ops.as_array().ok_or(KeyRejection::Malformed)?;
            let mut verify = false;
            for op in ops {
                verify |= op.as_str().ok_or(KeyRejection::Malformed)? == "verify";
            }
            if !verify {
                return Err(KeyRejection::NoVerifyOp);
            }
        }
        let implied = match kty {
            "EC" => match str_member(jwk, "crv")? {
                "P-256" => Alg::Es256,
                _ => return Err(KeyRejection::UnsupportedCurve),
            },
            "OKP" => match str_member(jwk, "crv")? {
                "Ed25519" => Alg::EdDsa,
                _ => return Err(KeyRejection::UnsupportedCurve),
            },
            "RSA" => Alg::Rs256,
            _ => return Err(KeyRejection::UnknownKty),
        };
        match jwk.get("alg") {
            None => {}
            Some(Value::String(a)) if Alg::from_header(a) == Some(implied) => {}
            Some(Value::String(_)) => return Err(KeyRejection::AlgMismatch),
            Some(_) => return Err(KeyRejection::Malformed),
        }
        match implied {
            Alg::Es256 => Key::es256(kid, &b64_member(jwk, "x")?, &b64_member(jwk, "y")?),
            Alg::EdDsa => Key::ed25519(kid, &b64_member(jwk, "x")?),
            _ => Key::rs256(kid, &b64_member(jwk, "n")?, &b64_member(jwk, "e")?),
        }
    }

    /// An ES256 key from its P-256 affine coordinates, each exactly 32 bytes (RFC 7518
    /// §6.2.1.2: full length, leading zeros kept).
    pub fn es256(kid: Option<String>, x: &[u8], y: &[u8]) -> Result<Key, KeyRejection> {
        check_kid(kid.as_deref())?;
        let x: [u8; 32] = x.try_into().map_err(|_| KeyRejection::Malformed)?;
        let y: [u8; 32] = y.try_into().map_err(|_| KeyRejection::Malformed)?;
        let mut sec1 = [0u8; 65];
        sec1[0] = 4;
        sec1[1..33].copy_from_slice(&x);
        sec1[33..].copy_from_slice(&y);
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .map_err(|_| KeyRejection::InvalidPoint)?;
        let thumbprint = thumbprint_of(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64::encode(&x),
            b64::encode(&y)
        ));
        Ok(Key {
            kid,
            alg: Alg::Es256,
            material: KeyMaterial::Ec { key, x, y },
            thumbprint: Some(thumbprint),
        })
    }

    /// An EdDSA key from its 32-byte encoding. Refused: a non-canonical encoding (`y` ≥ p, or
    /// `x` = 0 with the sign bit set) and small-order points (`is_weak`, ATTACKS #23).
    pub fn ed25519(kid: Option<String>, x: &[u8]) -> Result<Key, KeyRejection> {
        check_kid(kid.as_deref())?;
        let x: [u8; 32] = x.try_into().map_err(|_| KeyRejection::Malformed)?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| KeyRejection::InvalidPoint)?;
        // `from_bytes` reduces y mod p; only the canonical encoding re-compresses to itself.
        if key.to_edwards().compress().to_bytes() != x {
            return Err(KeyRejection::NonCanonical);
        }
        if key.is_weak() {
            return Err(KeyRejection::WeakKey);
        }
        let thumbprint = thumbprint_of(&format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            b64::encode(&x)
        ));
        Ok(Key {
            kid,
            alg: Alg::EdDsa,
            material: KeyMaterial::Ed25519 { key, x },
            thumbprint: Some(thumbprint),
        })
    }

    /// An RS256 key from big-endian `n` and `e`, minimally encoded (no leading zero octet,
    /// RFC 7518 §6.3.1). The modulus must be odd and 2048..=8192 bits; `e` must be 65537:
    /// every mainstream issuer uses it, and small exponents are what Bleichenbacher-style
    /// forgeries against lax verifiers need.
    pub fn rs256(kid: Option<String>, n: &[u8], e: &[u8]) -> Result<Key, KeyRejection> {
        check_kid(kid.as_deref())?;
        if n.first().is_none_or(|b| *b == 0) || e.first().is_none_or(|b| *b == 0) {
            return Err(KeyRejection::Malformed);
        }
        if e != [1, 0, 1] {
            return Err(KeyRejection::RsaExponent);
        }
        let bits = bit_len(n);
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyRejection::RsaModulusSize);
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err(KeyRejection::Malformed);
        }
        #[cfg(not(target_arch = "wasm32"))]
        let key = {
            let n_int = rsa::BoxedUint::from_be_slice_vartime(n);
            let e_int = rsa::BoxedUint::from_be_slice_vartime(e);
            rsa::RsaPublicKey::new_with_max_size(n_int, e_int, MAX_RSA_BITS)
                .map_err(|_| KeyRejection::Malformed)?
        };
        let thumbprint = thumbprint_of(&format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            b64::encode(e),
            b64::encode(n)
        ));
        Ok(Key {
            kid,
            alg: Alg::Rs256,
            material: KeyMaterial::Rsa {
                n: n.to_vec(),
                e: e.to_vec(),
                #[cfg(not(target_arch = "wasm32"))]
                key,
            },
            thumbprint: Some(thumbprint),
        })
    }

    /// An HS256 key from a configured secret of at least [`MIN_HMAC_SECRET_LEN`] bytes
    /// (shorter: [`KeyRejection::WeakKey`]). Never call this with bytes from a JWKS or a public key
    /// (ATTACKS #3).
    pub fn hs256(kid: Option<String>, secret: &[u8]) -> Result<Key, KeyRejection> {
        check_kid(kid.as_deref())?;
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(KeyRejection::WeakKey);
        }
        Ok(Key {
            kid,
            alg: Alg::Hs256,
            material: KeyMaterial::Hmac {
                secret: secret.to_vec(),
            },
            thumbprint: None,
        })
    }
}

fn check_kid(kid: Option<&str>) -> Result<(), KeyRejection> {
    match kid {
        Some(k) if k.len() > MAX_KID_LEN => Err(KeyRejection::KidInvalid),
        _ => Ok(()),
    }
}

fn str_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, KeyRejection> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or(KeyRejection::Malformed)
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyRejection> {
    b64::decode(str_member(jwk, name)?).map_err(|_| KeyRejection::Malformed)
}

/// Number of significant bits of a big-endian unsigned integer.
fn bit_len(be: &[u8]) -> usize {
    let mut bytes = be.iter().skip_while(|b| **b == 0);
    match bytes.next() {
        None => 0,
        Some(first) => (8 - first.leading_zeros() as usize) + 8 * bytes.count(),
    }
}

/// RFC 7638: base64url(SHA-256(canonical JSON of the required members)).
fn thumbprint_of(canonical: &str) -> String {
    b64::encode(&Sha256::digest(canonical.as_bytes()))
}

/// Caps on a JWK Set document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksLimits {
    /// Largest document, in bytes (default 256 KiB).
    pub max_bytes: usize,
    /// Most entries in `keys` (default 100). A longer list refuses the whole document.
    pub max_keys: usize,
}

impl Default for JwksLimits {
    fn default() -> Self {
        JwksLimits {
            max_bytes: 256 * 1024,
            max_keys: 100,
        }
    }
}

/// A JWK Set entry that was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in `keys`.
    pub index: usize,
    /// The entry's `kid`, when it is a string of at most [`MAX_KID_LEN`] bytes.
    pub kid: Option<String>,
    pub reason: KeyRejection,
}

/// What loading a JWK Set did, for the log line and alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwksReport {
    /// Keys loaded.
    pub loaded: usize,
    /// Entries skipped, with why.
    pub skipped: Vec<SkippedKey>,
    /// `kid`s held by more than one loaded key of the same algorithm: tokens naming them are
    /// refused with [`Error::AmbiguousKey`] (ATTACKS #40). Worth an alert.
    pub duplicate_kids: Vec<String>,
}

impl JwksReport {
    /// Did the document carry a private key? That means the issuer's key is exposed: alert.
    pub fn private_key_found(&self) -> bool {
        self.skipped
            .iter()
            .any(|s| s.reason == KeyRejection::PrivateKey)
    }
}

/// The verification keys of one issuer.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// A set from keys already built (for example a configured secret plus nothing else).
    pub fn from_keys(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    /// Parses a JWK Set document (RFC 7517 §5).
    ///
    /// The whole document is refused when it is larger than `limits.max_bytes` or has more than
    /// `limits.max_keys` entries ([`Error::JwksTooLarge`]), or is not a strict JSON object with
    /// a `keys` array ([`Error::Utf8`], [`Error::Json`], [`Error::DuplicateMember`]). The caller
    /// (the JWKS cache) then keeps its last good set.
    ///
    /// Entries are loaded one by one; those that fail a check are skipped and listed in the
    /// report. `{"keys":[]}`, or a set whose every entry was skipped, is `Ok` with an empty set:
    /// whether that may replace a non-empty cached set is the cache's decision.
    pub fn from_jwks(json: &[u8], limits: &JwksLimits) -> Result<(KeySet, JwksReport), Error> {
        if json.len() > limits.max_bytes {
            return Err(Error::JwksTooLarge);
        }
        let doc = json::parse_object(json)?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(Error::Json)?;
        if entries.len() > limits.max_keys {
            return Err(Error::JwksTooLarge);
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut report = JwksReport::default();
        for (index, entry) in entries.iter().enumerate() {
            match Key::from_jwk(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => report.skipped.push(SkippedKey {
                    index,
                    kid: entry
                        .get("kid")
                        .and_then(Value::as_str)
                        .filter(|k| k.len() <= MAX_KID_LEN)
                        .map(str::to_owned),
                    reason,
                }),
            }
        }
        report.loaded = keys.len();
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = key.kid() {
                let first = keys
                    .iter()
                    .take(i)
                    .position(|k| k.kid() == Some(kid) && k.alg == key.alg);
                let reported = report.duplicate_kids.iter().any(|d| d == kid);
                if first.is_some() && !reported {
                    report.duplicate_kids.push(kid.to_owned());
                }
            }
        }
        Ok((KeySet { keys }, report))
    }

    /// A set holding one HS256 key from a configured secret. A secret shorter than 32 bytes
    /// (or a `kid` longer than 256 bytes) is refused with [`Error::HmacSecretUnusable`]: the
    /// routes that need it answer 503 rather than verify with a weak key.
    pub fn from_hmac_secret(secret: &[u8], kid: Option<String>) -> Result<KeySet, Error> {
        let key = Key::hs256(kid, secret).map_err(|_| Error::HmacSecretUnusable)?;
        Ok(KeySet { keys: vec![key] })
    }

    /// The keys, in document order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The one key for a token with header `alg` and `kid`.
    ///
    /// * With a `kid`: exact byte comparison among the keys bound to `alg`. Exactly one must
    ///   match. None, but a key of another algorithm has this `kid`: [`Error::KeyAlgMismatch`]
    ///   (no crypto is tried, ATTACKS #3, #4). None at all: [`Error::UnknownKey`] (the cache may
    ///   refresh once). Two or more keys of `alg` with this `kid`: [`Error::AmbiguousKey`]. The
    ///   gateway never tries each of them (ATTACKS #40): a JWKS that repeats a `kid` within one
    ///   algorithm disables that `kid` until the issuer fixes it; other `kid`s keep working. Keys
    ///   of *different* algorithms may share a `kid` (RFC 7517 §4.5).
    /// * Without a `kid`: allowed only when exactly one key is bound to `alg` (the common
    ///   single-key issuer and configured HMAC secrets). More than one: [`Error::KidMissing`];
    ///   none: [`Error::UnknownKey`]. At most one verification is ever attempted per token.
    pub fn select(&self, alg: Alg, kid: Option<&str>) -> Result<&Key, Error> {
        let mut of_alg = self.keys.iter().filter(|k| k.alg == alg);
        match kid {
            Some(kid) => {
                let mut named = of_alg.filter(|k| k.kid() == Some(kid));
                match (named.next(), named.next()) {
                    (Some(key), None) => Ok(key),
                    (Some(_), Some(_)) => Err(Error::AmbiguousKey),
                    (None, _) if self.keys.iter().any(|k| k.kid() == Some(kid)) => {
                        Err(Error::KeyAlgMismatch)
                    }
                    (None, _) => Err(Error::UnknownKey),
                }
            }
            None => match (of_alg.next(), of_alg.next()) {
                (Some(key), None) => Ok(key),
                (Some(_), Some(_)) => Err(Error::KidMissing),
                (None, _) => Err(Error::UnknownKey),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // RFC 7515 A.3 / RFC 7517 §3 P-256 key.
    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    // RFC 8037 A.2 Ed25519 key.
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn ec(extra: Value) -> Value {
        let mut v = json!({"kty":"EC","crv":"P-256","x":EC_X,"y":EC_Y});
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        v
    }

    #[test]
    fn ec_and_okp_load_with_thumbprints() {
        let k = Key::from_jwk(&ec(json!({"kid":"a","use":"sig","alg":"ES256"}))).unwrap();
        assert_eq!(k.alg(), Alg::Es256);
        assert_eq!(k.kid(), Some("a"));
        assert_eq!(
            k.thumbprint(),
            Some("oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U")
        );
        let sec1 = k.material().sec1_uncompressed().unwrap();
        assert_eq!(sec1[0], 4);
        let k =
            Key::from_jwk(&json!({"kty":"OKP","crv":"Ed25519","x":ED_X,"alg":"Ed25519"})).unwrap();
        assert_eq!(k.alg(), Alg::EdDsa);
        assert_eq!(
            k.thumbprint(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
    }

    #[test]
    fn refusals() {
        use KeyRejection::*;
        let cases = [
            (json!([]), NotAnObject),
            (json!({"crv":"P-256","x":EC_X,"y":EC_Y}), Malformed),
            (ec(json!({"kid": 5})), KidInvalid),
            (ec(json!({"kid": "k".repeat(257)})), KidInvalid),
            (ec(json!({"d":"AAAA"})), PrivateKey),
            (ec(json!({"use":"enc"})), NotForSignature),
            (ec(json!({"use":1})), Malformed),
            (ec(json!({"key_ops":["encrypt"]})), NoVerifyOp),
            (ec(json!({"key_ops":[]})), NoVerifyOp),
            (ec(json!({"key_ops":"verify"})), Malformed),
            (ec(json!({"alg":"RS256"})), AlgMismatch),
            (ec(json!({"alg":"none"})), AlgMismatch),
            (ec(json!({"crv":"P-384"})), UnsupportedCurve),
            (ec(json!({"crv":"secp256k1"})), UnsupportedCurve),
            (
                ec(json!({"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRV"})),
                Malformed,
            ),
            (
                ec(json!({"x":"AAf83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"})),
                Malformed,
            ),
            (
                ec(json!({"y":"y_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})),
                InvalidPoint,
            ),
            // Non-canonical trailing bits in a coordinate.
            (
                ec(json!({"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1"})),
                Malformed,
            ),
            (
                ec(json!({"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU="})),
                Malformed,
            ),
            (
                json!({"kty":"OKP","crv":"X25519","x":ED_X}),
                UnsupportedCurve,
            ),
            (
                json!({"kty":"OKP","crv":"Ed448","x":ED_X}),
                UnsupportedCurve,
            ),
            (
                json!({"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
                WeakKey,
            ),
            (
                json!({"kty":"OKP","crv":"Ed25519","x":"7v_______________________________________38"}),
                NonCanonical,
            ),
            (
                json!({"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}),
                Symmetric,
            ),
            (json!({"kty":"foo"}), UnknownKty),
            (json!({"kty":7}), Malformed),
        ];
        for (jwk, want) in cases {
            assert_eq!(Key::from_jwk(&jwk).map(|_| ()), Err(want), "{jwk}");
        }
    }

    #[test]
    fn hmac_secret_length() {
        assert_eq!(
            Key::hs256(None, &[7; 31]).map(|_| ()),
            Err(KeyRejection::WeakKey)
        );
        let k = Key::hs256(Some("h".into()), &[7; 32]).unwrap();
        assert_eq!(k.alg(), Alg::Hs256);
        assert_eq!(k.thumbprint(), None);
        assert!(!format!("{k:?}").contains("7, 7"));
        assert_eq!(
            KeySet::from_hmac_secret(b"secret", None).map(|_| ()),
            Err(Error::HmacSecretUnusable)
        );
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0x80, 0]), 16);
        assert_eq!(bit_len(&[0, 0x7f, 0]), 15);
    }
}
