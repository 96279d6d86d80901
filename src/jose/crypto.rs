//! The signature seam: one trait the pipeline calls, a pure-Rust implementation for native
//! builds and tests, and (in the Worker) a WebCrypto implementation behind the same trait.
//!
//! Decisions (ATTACKS #17–#26):
//! * ES256: exactly 64 bytes, parsed as IEEE P1363 `r‖s` with `Signature::from_slice` (which
//!   refuses r or s = 0 or ≥ n). DER is never tried. High-S signatures are **accepted**: JWS does
//!   not require low-S, the RFC 7515 A.3 example and most WebCrypto/OpenSSL signers produce them
//!   (ATTACKS #19, *policy_accept*). Replay caches must therefore key on `(iss, jti)`, never on
//!   the token text or the signature bytes.
//! * EdDSA: exactly 64 bytes, `verify_strict` (refuses S ≥ L, non-canonical and small-order R,
//!   small-order keys; weak keys are also refused when the key is loaded).
//! * HS256: exactly 32 bytes (no truncated tags), constant-time comparison (`Mac::verify_slice`).
//! * RS256: signature length equal to the modulus length, then a full EMSA-PKCS1-v1_5 block
//!   comparison (`rsa` crate, natively only).

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use super::jwk::{Key, KeyMaterial};
use super::Error;

/// Verifies a JWS signature with a key that was already selected for the token's `alg`.
/// Implementations must check the length ([`check_signature_length`]) and return
/// [`Error::SignatureLength`] or [`Error::BadSignature`], nothing else on a bad signature.
#[allow(async_fn_in_trait)]
pub trait SignatureVerifier {
    async fn verify(&self, key: &Key, signing_input: &[u8], signature: &[u8]) -> Result<(), Error>;
}

/// Pure-Rust verification (`p256`, `ed25519-dalek`, `hmac`, and natively `rsa`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeVerifier;

impl SignatureVerifier for NativeVerifier {
    async fn verify(&self, key: &Key, signing_input: &[u8], signature: &[u8]) -> Result<(), Error> {
        verify_native(key, signing_input, signature)
    }
}

/// The exact signature length, in bytes, that `key` produces.
pub fn signature_length(key: &Key) -> usize {
    match key.material() {
        KeyMaterial::Ec { .. } | KeyMaterial::Ed25519 { .. } => 64,
        KeyMaterial::Hmac { .. } => 32,
        KeyMaterial::Rsa { n, .. } => n.len(),
    }
}

/// [`Error::SignatureLength`] unless `signature` has exactly [`signature_length`] bytes.
pub fn check_signature_length(key: &Key, signature: &[u8]) -> Result<(), Error> {
    if signature.len() == signature_length(key) {
        Ok(())
    } else {
        Err(Error::SignatureLength)
    }
}

/// Verifies `signature` over `signing_input` (the ASCII `header.payload` text) with `key`.
///
/// On wasm32 RS256 is not available natively and returns [`Error::AlgUnavailable`]; the Worker
/// verifies RS256 through WebCrypto instead.
pub fn verify_native(key: &Key, signing_input: &[u8], signature: &[u8]) -> Result<(), Error> {
    check_signature_length(key, signature)?;
    match key.material() {
        KeyMaterial::Ec { key, .. } => {
            use p256::ecdsa::signature::Verifier;
            let sig =
                p256::ecdsa::Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
            key.verify(signing_input, &sig)
                .map_err(|_| Error::BadSignature)
        }
        KeyMaterial::Ed25519 { key, .. } => {
            let sig =
                ed25519_dalek::Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
            key.verify_strict(signing_input, &sig)
                .map_err(|_| Error::BadSignature)
        }
        KeyMaterial::Hmac { .. } => verify_hmac(key, signing_input, signature),
        #[cfg(not(target_arch = "wasm32"))]
        KeyMaterial::Rsa { key, .. } => {
            use sha2::Digest;
            let hashed = sha2::Sha256::digest(signing_input);
            key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hashed, signature)
                .map_err(|_| Error::BadSignature)
        }
        #[cfg(target_arch = "wasm32")]
        KeyMaterial::Rsa { .. } => Err(Error::AlgUnavailable),
    }
}

/// HS256 only: the part of [`verify_native`] the Worker needs (it verifies the public-key
/// algorithms in WebCrypto). Calling this instead of [`verify_native`] keeps the pure-Rust
/// P-256 and Ed25519 verification code out of the Worker's wasm. Any other key is
/// [`Error::KeyAlgMismatch`].
pub fn verify_hmac(key: &Key, signing_input: &[u8], signature: &[u8]) -> Result<(), Error> {
    check_signature_length(key, signature)?;
    let KeyMaterial::Hmac { secret } = key.material() else {
        return Err(Error::KeyAlgMismatch);
    };
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).map_err(|_| Error::BadSignature)?;
    mac.update(signing_input);
    mac.verify_slice(signature).map_err(|_| Error::BadSignature)
}

/// What [`block_on_ready`] reports when the future it polled had to wait. Each error type it
/// is used with says what that means for it: [`Error::NotReady`] for the JOSE layer, keys
/// unavailable (503) for the gateway's decision (`src/error.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending;

impl From<Pending> for Error {
    fn from(_: Pending) -> Self {
        Error::NotReady
    }
}

/// Drives a future that completes without waiting (like [`NativeVerifier::verify`]) to its
/// result, by polling it once with a no-op waker. Only for futures that never actually wait:
/// one that returns `Pending` is dropped and the call fails closed with [`Pending`] (converted
/// to the future's error type) instead of blocking or panicking.
pub fn block_on_ready<T, E, F>(future: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: From<Pending>,
{
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => Err(E::from(Pending)),
    }
}

/// The encodings of the Ed25519 points of small order, sign bit cleared: the y-coordinates 0, 1,
/// p − 1, the two of order 8, and the non-canonical p and p + 1 (the list libsodium checks).
const SMALL_ORDER_Y: [[u8; 32]; 7] = {
    let mut ys = [[0u8; 32]; 7];
    // 0 (order 4) stays all zero.
    ys[1][0] = 1; // 1 (order 1)
    ys[2] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ]; // order 8
    ys[3] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ]; // order 8
       // p − 1, p, p + 1: 0xec / 0xed / 0xee, then 0xff ... 0xff, 0x7f.
    let mut i = 4;
    while i < 7 {
        let mut j = 1;
        while j < 31 {
            ys[i][j] = 0xff;
            j += 1;
        }
        ys[i][0] = 0xec + (i as u8 - 4);
        ys[i][31] = 0x7f;
        i += 1;
    }
    ys
};

/// Whether a 32-byte Ed25519 point encoding is one of the small-order points (either sign).
///
/// The WebCrypto path checks a signature's `R` with this before calling `crypto.subtle.verify`,
/// so that it refuses small-order `R` as `verify_strict` does. A byte comparison is enough: an
/// encoding that is not a point at all, or not canonical, never verifies in WebCrypto anyway
/// (the verifier compares `R` with the canonical encoding of the point it computes).
pub fn ed25519_small_order(encoding: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 32]>::try_from(encoding) else {
        return false;
    };
    let mut y = bytes;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_ready_fails_closed_on_pending() {
        assert_eq!(block_on_ready(async { Ok::<_, Error>(7) }), Ok(7));
        assert_eq!(
            block_on_ready(core::future::pending::<Result<(), Error>>()),
            Err(Error::NotReady)
        );
    }

    #[test]
    fn hmac_lengths() {
        let key = Key::hs256(None, &[1; 32]).unwrap();
        assert_eq!(
            verify_native(&key, b"x", &[0; 31]),
            Err(Error::SignatureLength)
        );
        assert_eq!(
            verify_native(&key, b"x", &[0; 16]),
            Err(Error::SignatureLength)
        );
        assert_eq!(verify_native(&key, b"x", &[]), Err(Error::SignatureLength));
        assert_eq!(
            verify_native(&key, b"x", &[0; 32]),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn verify_hmac_agrees_with_verify_native_and_refuses_other_keys() {
        use hmac::{KeyInit, Mac};
        let secret = [7u8; 32];
        let key = Key::hs256(None, &secret).unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(b"header.payload");
        let tag = mac.finalize().into_bytes();
        assert_eq!(verify_hmac(&key, b"header.payload", &tag), Ok(()));
        assert_eq!(verify_native(&key, b"header.payload", &tag), Ok(()));
        let mut bad = tag;
        bad[0] ^= 1;
        for input in [&b"header.payloaX"[..], b""] {
            assert_eq!(
                verify_hmac(&key, input, &tag),
                verify_native(&key, input, &tag)
            );
        }
        assert_eq!(
            verify_hmac(&key, b"header.payload", &bad),
            Err(Error::BadSignature)
        );
        assert_eq!(
            verify_hmac(&key, b"x", &[0; 31]),
            Err(Error::SignatureLength)
        );

        let jwk =
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let ed = Key::from_jwk(&serde_json::from_str(jwk).unwrap()).unwrap();
        assert_eq!(verify_hmac(&ed, b"x", &[0; 64]), Err(Error::KeyAlgMismatch));
    }

    #[test]
    fn small_order_list_is_exactly_the_torsion_points() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        // Every point of small order is on the list, with either sign bit.
        for point in EIGHT_TORSION {
            let mut enc = point.compress().to_bytes();
            assert!(ed25519_small_order(&enc), "{enc:02x?}");
            enc[31] ^= 0x80;
            assert!(ed25519_small_order(&enc), "{enc:02x?}");
        }
        // Everything on the list is a small-order point (or no point at all) for dalek.
        for y in SMALL_ORDER_Y {
            for sign in [0u8, 0x80] {
                let mut enc = y;
                enc[31] |= sign;
                if let Some(p) = CompressedEdwardsY(enc).decompress() {
                    assert!(p.is_small_order(), "{enc:02x?}");
                }
            }
        }
        // And it agrees with dalek on encodings that are not on it: real keys' points.
        for seed in 0u8..=255 {
            let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
            assert!(!ed25519_small_order(key.as_bytes()));
            assert!(!key.is_weak());
        }
        assert!(!ed25519_small_order(&[0u8; 31]));
    }
}
