//! Challenge nonces: unpredictable, MAC-protected, expiring, and naming their store shard.
//!
//! Layout (before base64url): `version (1) | shard (1) | issued_at (8, big-endian) | random (16)
//! | mac (16)`, 42 bytes, 56 characters. The MAC is HMAC-SHA-256 over a domain label and the first
//! 26 bytes, truncated to 128 bits, keyed with `ATTESTGATE_NONCE_KEY`. So a forged, altered or
//! expired nonce is refused here, without a Durable Object call; only a well-formed, live nonce
//! costs a `consume` in its shard, which makes it single use.
//!
//! Issuing stores nothing: the MAC is what proves the gateway issued a nonce, and its issued-at
//! when it expires. The store records a nonce only when it is first used (`consume` inserts its
//! id if absent and keeps it until the nonce's expiry, `src/gate/store.rs`), so an
//! unauthenticated caller asking for challenges costs no write at all. Version 2: version 1
//! nonces were recorded at issue and deleted at use, so a v1 nonce already used under the old
//! scheme would look unused to the new one; v1 nonces are therefore refused as unknown.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Error;

const VERSION: u8 = 2;
const DOMAIN: &[u8] = b"attestgate/challenge-nonce/v2";
const BODY_LEN: usize = 26;
const MAC_LEN: usize = 16;
const NONCE_LEN: usize = BODY_LEN + MAC_LEN;
/// Length of the base64url text form.
pub const NONCE_TEXT_LEN: usize = 56;
/// Minimum length of the nonce MAC key.
pub const MIN_KEY_LEN: usize = 32;
/// Most shards a nonce can name.
pub const MAX_SHARDS: u8 = 64;

/// The nonce MAC key, checked for length once when loaded.
#[derive(Clone)]
pub struct NonceKey(Vec<u8>);

impl NonceKey {
    /// From the raw secret bytes (at least 32).
    pub fn new(bytes: Vec<u8>) -> Result<Self, Error> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(Error::SecretUnavailable);
        }
        Ok(Self(bytes))
    }

    /// From the base64 text of the Worker secret (standard or URL-safe alphabet, padding optional).
    pub fn from_base64(text: &str) -> Result<Self, Error> {
        Self::new(decode_any_base64(text.trim()).ok_or(Error::SecretUnavailable)?)
    }

    /// A key for another purpose, derived from this one: HMAC-SHA-256 over a domain label that
    /// no nonce MAC input can equal (those start with the nonce domain label).
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Some(mac) = hmac_sha256(&self.0, &[b"attestgate/derived-key/", label]) {
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    fn mac(&self, body: &[u8]) -> Result<Hmac<Sha256>, Error> {
        hmac_sha256(&self.0, &[DOMAIN, body]).ok_or(Error::SecretUnavailable)
    }
}

/// HMAC-SHA-256 with `key` over the concatenation of `parts`, ready to finalize or verify. One
/// function for every MAC of the gateway (nonces, derived keys, JWKS copies), so the wasm holds
/// one copy of it. `None` never happens in practice (HMAC takes keys of any length).
#[inline(never)]
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac)
}

impl core::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

/// A verified (or freshly issued) nonce: what the store needs to record or consume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceRef {
    /// The shard (Durable Object) that holds it.
    pub shard: u8,
    /// The store key: the random part, base64url.
    pub id: String,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// A new nonce: its text and its store reference.
#[derive(Debug, Clone)]
pub struct Issued {
    pub text: String,
    pub nonce: NonceRef,
}

/// Make a nonce. `random` must come from a CSPRNG; it also picks the shard.
pub fn issue(
    key: &NonceKey,
    shards: u8,
    now: i64,
    ttl_secs: i64,
    random: [u8; 16],
) -> Result<Issued, Error> {
    let shards = shards.clamp(1, MAX_SHARDS);
    let shard = random[0] % shards;
    let mut raw = [0u8; NONCE_LEN];
    raw[0] = VERSION;
    raw[1] = shard;
    raw[2..10].copy_from_slice(&now.to_be_bytes());
    raw[10..26].copy_from_slice(&random);
    let tag = key.mac(&raw[..BODY_LEN])?.finalize().into_bytes();
    raw[BODY_LEN..].copy_from_slice(&tag[..MAC_LEN]);
    Ok(Issued {
        text: crate::jose::b64::encode(&raw),
        nonce: NonceRef {
            shard,
            id: crate::jose::b64::encode(&random),
            exp: now.saturating_add(ttl_secs),
        },
    })
}

/// Check a nonce's form, MAC and age. `Err(ChallengeUnknown)` for anything not issued by this
/// gateway (with this key and shard count), `Err(ChallengeExpired)` when older than `ttl_secs`
/// (or issued more than `skew_secs` in the future).
pub fn verify(
    key: &NonceKey,
    shards: u8,
    text: &str,
    now: i64,
    ttl_secs: i64,
    skew_secs: i64,
) -> Result<NonceRef, Error> {
    if text.len() != NONCE_TEXT_LEN {
        return Err(Error::ChallengeUnknown);
    }
    let raw = crate::jose::b64::decode(text).map_err(|_| Error::ChallengeUnknown)?;
    if raw.len() != NONCE_LEN || raw[0] != VERSION {
        return Err(Error::ChallengeUnknown);
    }
    key.mac(&raw[..BODY_LEN])?
        .verify_truncated_left(&raw[BODY_LEN..])
        .map_err(|_| Error::ChallengeUnknown)?;
    let shard = raw[1];
    if shard >= shards.clamp(1, MAX_SHARDS) {
        return Err(Error::ChallengeUnknown);
    }
    let mut iat = [0u8; 8];
    iat.copy_from_slice(&raw[2..10]);
    let iat = i64::from_be_bytes(iat);
    let exp = iat.saturating_add(ttl_secs);
    if now > exp || iat > now.saturating_add(skew_secs) {
        return Err(Error::ChallengeExpired);
    }
    Ok(NonceRef {
        shard,
        id: crate::jose::b64::encode(&raw[10..26]),
        exp,
    })
}

/// Decode base64 in either alphabet, padded or not (for secrets typed by people, and `pay`
/// binding claims): exactly what one of the standard, standard unpadded, URL-safe or URL-safe
/// unpadded decoders of `base64ct` accepts, with their bytes. Done with the one decoder the
/// token path already links (URL-safe, unpadded; size, docs/performance.md): one alphabet per
/// text, the standard one mapped onto the URL-safe one (same values), and padding only as the
/// padded decoders take it (a whole number of 4-character blocks, at most two `=` at the end).
pub fn decode_any_base64(text: &str) -> Option<Vec<u8>> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let standard = text.contains(['+', '/']);
    if standard && text.contains(['-', '_']) {
        return None;
    }
    let unpadded = if text.len() % 4 == 0 {
        text.strip_suffix("==")
            .or_else(|| text.strip_suffix('='))
            .unwrap_or(text)
    } else {
        text
    };
    if standard {
        let url: String = unpadded
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        Base64UrlUnpadded::decode_vec(&url).ok()
    } else {
        Base64UrlUnpadded::decode_vec(unpadded).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `decode_any_base64` was: the four `base64ct` decoders, first success.
    fn four_decoders(text: &str) -> Option<Vec<u8>> {
        use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
        Base64::decode_vec(text)
            .or_else(|_| Base64Unpadded::decode_vec(text))
            .or_else(|_| Base64Url::decode_vec(text))
            .or_else(|_| Base64UrlUnpadded::decode_vec(text))
            .ok()
    }

    #[test]
    fn decode_any_base64_is_the_four_decoders() {
        // Every text up to 5 characters over characters of every kind (values with and without
        // low bits set, both alphabets' extra characters, padding, others), then random longer
        // ones over the full alphabets.
        let chars: Vec<char> = "AQgwB+/-_= .".chars().collect();
        let mut text = String::new();
        let mut checked = 0u32;
        fn all(chars: &[char], text: &mut String, left: usize, checked: &mut u32) {
            assert_eq!(decode_any_base64(text), four_decoders(text), "{text:?}");
            *checked += 1;
            if left == 0 {
                return;
            }
            for &c in chars {
                text.push(c);
                all(chars, text, left - 1, checked);
                text.pop();
            }
        }
        all(&chars, &mut text, 5, &mut checked);
        assert!(checked > 270_000);
        let full: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
            .chars()
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..100_000 {
            let len = (next() % 48) as usize;
            let mut t: String = (0..len)
                .map(|_| full[(next() % full.len() as u64) as usize])
                .collect();
            // Mostly one alphabet, often valid: also encode random bytes.
            if next() % 2 == 0 {
                use base64ct::{Base64, Base64Unpadded, Base64Url, Encoding};
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                t = match next() % 4 {
                    0 => Base64::encode_string(&bytes),
                    1 => Base64Unpadded::encode_string(&bytes),
                    2 => Base64Url::encode_string(&bytes),
                    _ => crate::jose::b64::encode(&bytes),
                };
            }
            assert_eq!(decode_any_base64(&t), four_decoders(&t), "{t:?}");
        }
    }

    fn key() -> NonceKey {
        NonceKey::new(vec![7u8; 32]).unwrap()
    }

    #[test]
    fn round_trip() {
        let issued = issue(&key(), 4, 1_700_000_000, 120, [9u8; 16]).unwrap();
        assert_eq!(issued.text.len(), NONCE_TEXT_LEN);
        let got = verify(&key(), 4, &issued.text, 1_700_000_100, 120, 60).unwrap();
        assert_eq!(got, issued.nonce);
        assert_eq!(got.shard, 9 % 4);
        assert_eq!(got.exp, 1_700_000_120);
    }

    #[test]
    fn expired_and_future_nonces_are_refused() {
        let issued = issue(&key(), 4, 1_700_000_000, 120, [1u8; 16]).unwrap();
        assert_eq!(
            verify(&key(), 4, &issued.text, 1_700_000_121, 120, 60),
            Err(Error::ChallengeExpired)
        );
        assert_eq!(
            verify(&key(), 4, &issued.text, 1_699_999_000, 120, 60),
            Err(Error::ChallengeExpired)
        );
    }

    #[test]
    fn forged_or_altered_nonces_are_refused() {
        let issued = issue(&key(), 4, 1_700_000_000, 120, [1u8; 16]).unwrap();
        let other = NonceKey::new(vec![8u8; 32]).unwrap();
        assert_eq!(
            verify(&other, 4, &issued.text, 1_700_000_001, 120, 60),
            Err(Error::ChallengeUnknown)
        );
        // Flip one character in every position: never accepted.
        for i in 0..issued.text.len() {
            let mut bytes = issued.text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let text = String::from_utf8(bytes).unwrap();
            assert!(
                verify(&key(), 4, &text, 1_700_000_001, 120, 60).is_err(),
                "{i}"
            );
        }
        for junk in ["", "x", &"A".repeat(56), &issued.text[..55]] {
            assert_eq!(
                verify(&key(), 4, junk, 1_700_000_001, 120, 60),
                Err(Error::ChallengeUnknown)
            );
        }
    }

    #[test]
    fn shard_must_exist() {
        let issued = issue(&key(), 16, 1_700_000_000, 120, [15u8; 16]).unwrap();
        assert_eq!(issued.nonce.shard, 15);
        assert_eq!(
            verify(&key(), 4, &issued.text, 1_700_000_001, 120, 60),
            Err(Error::ChallengeUnknown)
        );
    }

    #[test]
    fn version_one_nonces_are_refused() {
        // A v1 nonce (recorded at issue, deleted at use) with a valid v1 MAC: unknown now.
        let mut raw = [0u8; NONCE_LEN];
        raw[0] = 1;
        raw[2..10].copy_from_slice(&1_700_000_000i64.to_be_bytes());
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(b"attestgate/challenge-nonce/v1");
        mac.update(&raw[..BODY_LEN]);
        raw[BODY_LEN..].copy_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        let text = crate::jose::b64::encode(&raw);
        assert_eq!(
            verify(&key(), 4, &text, 1_700_000_001, 120, 60),
            Err(Error::ChallengeUnknown)
        );
    }

    #[test]
    fn derived_keys_depend_on_key_and_label() {
        let other = NonceKey::new(vec![8u8; 32]).unwrap();
        let a = key().derive(b"jwks-copy/v1");
        assert_eq!(a, key().derive(b"jwks-copy/v1"));
        assert_ne!(a, key().derive(b"jwks-copy/v2"));
        assert_ne!(a, other.derive(b"jwks-copy/v1"));
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(NonceKey::new(vec![0u8; 31]).is_err());
        assert!(NonceKey::from_base64("c2hvcnQ=").is_err());
        let b64 = <base64ct::Base64 as base64ct::Encoding>::encode_string(&[3u8; 32]);
        assert!(NonceKey::from_base64(&b64).is_ok());
    }
}
