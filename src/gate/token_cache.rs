//! The verified-token cache (issue 19): per isolate, it remembers that a token's signature
//! verified, so that an agent presenting the same access token for every call of its session
//! pays the signature check once. Like Envoy `jwt_authn`'s `jwt_cache_config`, it skips **only
//! the signature check**: parsing, the header rules, key selection, every claim check (times,
//! issuer, audience, lifetime, required claims), the bindings, the route's checks and the
//! single-use checks run on every request.
//!
//! - **Key**: SHA-256 over the provider name and the SHA-256 of the exact token bytes
//!   (length-prefixed), so a token that differs in one byte — one signature byte included — is a
//!   different entry and is verified afresh. The token text is never kept. The token's SHA-256 is
//!   the one the decision record names and the DPoP `ath` compares: computed once per request.
//! - **Bound to the key set that verified it**: an entry holds a weak reference to the key set;
//!   a lookup hits only when the key set now in use is that very set. A JWKS change, a key
//!   removal or an HMAC secret rotation makes a new set, and every entry of the old one misses
//!   (and is dropped when seen).
//! - **Never outlives the token**: an entry ends at the token's `exp`.
//! - **Bounded**: at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of token bytes accounted,
//!   kept as two generations (2Q-style, O(1) per request): new and recently used entries live in
//!   the young one; when it is full it becomes the old one, and the previous old one is dropped
//!   whole. A hit in the old generation moves the entry back to the young one, so what is in use
//!   stays and what is not falls out (least recently used first, by generation).
//! - Only public-key signatures are worth caching: an HMAC check costs about what the cache's own
//!   SHA-256 of the token costs, so HS256 tokens are never cached (the caller decides, see
//!   [`VerifiedCache::worth_caching`]).
//!
//! Pure: no clock of its own (`now` is a parameter), no I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::jose::KeySet;

/// Most entries kept per isolate (both generations).
pub const MAX_ENTRIES: usize = 2048;
/// Most token bytes accounted for (both generations): bounds what a flood of large tokens can
/// make the cache stand for.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// The cache key of one token of one provider.
pub type TokenDigest = [u8; 32];

struct Entry {
    keys: Weak<KeySet>,
    exp: i64,
    bytes: usize,
}

#[derive(Default)]
struct Generation {
    map: HashMap<TokenDigest, Entry>,
    bytes: usize,
}

impl Generation {
    fn take(&mut self, digest: &TokenDigest) -> Option<Entry> {
        let e = self.map.remove(digest)?;
        self.bytes = self.bytes.saturating_sub(e.bytes);
        Some(e)
    }
}

#[derive(Default)]
struct Inner {
    young: Generation,
    old: Generation,
    /// Lookups since the isolate started: whether the Worker's path hits is a measurement
    /// (issue 19), not an assumption.
    hits: u64,
    misses: u64,
}

/// What the cache did since it was made (or cleared).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

/// Tokens whose signature verified, per isolate.
pub struct VerifiedCache {
    /// A mutex so a gateway stays `Send + Sync` for embedders; uncontended in the Worker.
    inner: Mutex<Inner>,
    /// Per generation.
    max_entries: usize,
    max_bytes: usize,
}

impl core::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::new(MAX_ENTRIES, MAX_BYTES)
    }
}

impl VerifiedCache {
    /// A cache of at most `max_entries` entries and `max_bytes` token bytes in all.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        VerifiedCache {
            inner: Mutex::new(Inner::default()),
            max_entries: (max_entries / 2).max(1),
            max_bytes: max_bytes / 2,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a signature by `key` is worth caching: public-key algorithms only (an HMAC costs
    /// about what the cache's own hashing costs).
    pub fn worth_caching(key: &crate::jose::Key) -> bool {
        !key.alg().is_hmac()
    }

    /// The key for a token presented to `provider`, from the token's SHA-256 (computed once per
    /// request, [`crate::gate::family::Credential::sha256`]).
    pub fn digest(provider: &str, token_sha256: &[u8; 32]) -> TokenDigest {
        crate::gate::digest::parts(&[provider.as_bytes(), token_sha256])
    }

    /// Whether `digest`'s signature verified with exactly `keys` and the entry is still live at
    /// `now`. A stale entry (other key set, past `exp`) is dropped; a live one in the old
    /// generation moves to the young one.
    pub fn hit(&self, digest: &TokenDigest, keys: &Arc<KeySet>, now: i64) -> bool {
        let mut inner = self.lock();
        let live =
            |e: &Entry| now < e.exp && e.keys.upgrade().is_some_and(|k| Arc::ptr_eq(&k, keys));
        if let Some(e) = inner.young.map.get(digest) {
            if live(e) {
                inner.hits += 1;
                return true;
            }
            inner.young.take(digest);
            inner.misses += 1;
            return false;
        }
        match inner.old.take(digest) {
            Some(e) if live(&e) => {
                inner.hits += 1;
                drop(inner);
                self.put(*digest, e);
                true
            }
            _ => {
                inner.misses += 1;
                false
            }
        }
    }

    /// Hits, misses and entries so far.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            entries: inner.young.map.len() + inner.old.map.len(),
        }
    }

    /// Remember that `digest` (a token of `token_len` bytes, expiring at `exp`) verified with
    /// `keys`. Called only after the signature verified and the claims were valid.
    pub fn insert(&self, digest: TokenDigest, keys: &Arc<KeySet>, exp: i64, token_len: usize) {
        if token_len > self.max_bytes {
            return;
        }
        {
            let mut inner = self.lock();
            inner.young.take(&digest);
            inner.old.take(&digest);
        }
        self.put(
            digest,
            Entry {
                keys: Arc::downgrade(keys),
                exp,
                bytes: token_len,
            },
        );
    }

    fn put(&self, digest: TokenDigest, entry: Entry) {
        let mut inner = self.lock();
        if inner.young.map.len() >= self.max_entries
            || inner.young.bytes + entry.bytes > self.max_bytes
        {
            // The young generation is full: it becomes the old one, the old one goes.
            inner.old = std::mem::take(&mut inner.young);
        }
        inner.young.bytes += entry.bytes;
        inner.young.map.insert(digest, entry);
    }

    /// Forget everything (the native CPU gate measures full decisions).
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    /// Entries held now (for tests and metrics).
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.young.map.len() + inner.old.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache key of `token` presented to `provider`, as the JWT family makes it.
    fn key(provider: &str, token: &str) -> TokenDigest {
        let credential = crate::gate::family::Credential::new(token.to_owned());
        VerifiedCache::digest(provider, credential.sha256())
    }

    fn set() -> Arc<KeySet> {
        Arc::new(KeySet::from_keys(Vec::new()))
    }

    #[test]
    fn a_hit_needs_the_same_provider_token_and_key_set_before_exp() {
        let c = VerifiedCache::default();
        let keys = set();
        let d = key("agent", "a.b.c");
        assert!(!c.hit(&d, &keys, 100));
        c.insert(d, &keys, 200, 5);
        assert!(c.hit(&d, &keys, 100));
        assert!(c.hit(&d, &keys, 199));
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 2,
                misses: 1,
                entries: 1
            }
        );
        // Another provider, another token (one byte), another key set: misses.
        assert!(!c.hit(&key("device", "a.b.c"), &keys, 100));
        assert!(!c.hit(&key("agent", "a.b.d"), &keys, 100));
        let rotated = set();
        assert!(!c.hit(&d, &rotated, 100));
        // ... and the stale entry is gone, even for the old set.
        assert!(!c.hit(&d, &keys, 100));
        assert!(c.is_empty());
    }

    #[test]
    fn an_entry_never_outlives_the_token_or_its_key_set() {
        let c = VerifiedCache::default();
        let keys = set();
        let d = key("agent", "t");
        c.insert(d, &keys, 200, 1);
        assert!(!c.hit(&d, &keys, 200), "exp reached");
        assert_eq!(c.len(), 0);
        c.insert(d, &keys, 300, 1);
        drop(keys);
        // The set that verified it is gone: nothing can hit it again.
        assert!(!c.hit(&d, &set(), 100));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn bounded_by_entries_and_bytes_what_is_in_use_stays() {
        // 4 entries in all: two generations of 2.
        let c = VerifiedCache::new(4, 200);
        let keys = set();
        let d = |i: u8| key("p", &format!("token-{i}"));
        c.insert(d(0), &keys, 1000, 10);
        c.insert(d(1), &keys, 1000, 10);
        c.insert(d(2), &keys, 1000, 10); // young full: {0, 1} become old
        assert_eq!(c.len(), 3);
        assert!(c.hit(&d(0), &keys, 1), "0 used again: back to young");
        c.insert(d(3), &keys, 1000, 10); // young {2, 0} full: old {1} dropped
        assert!(!c.hit(&d(1), &keys, 1), "1 was not used: gone");
        assert!(c.hit(&d(0), &keys, 1) && c.hit(&d(2), &keys, 1) && c.hit(&d(3), &keys, 1));
        assert!(c.len() <= 4);
        // Bytes: a generation holds at most 100 bytes; a token larger than that is not kept.
        c.insert(d(5), &keys, 1000, 101);
        assert!(!c.hit(&d(5), &keys, 1));
        c.insert(d(4), &keys, 1000, 90);
        assert!(c.hit(&d(4), &keys, 1));
        // A flood never grows it past its bounds.
        for i in 0..200u8 {
            c.insert(key("p", &format!("flood-{i}")), &keys, 1000, 1);
            assert!(c.len() <= 4);
        }
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn hmac_signatures_are_not_worth_caching() {
        let hs = crate::jose::Key::hs256(None, &[7u8; 32]).unwrap();
        assert!(!VerifiedCache::worth_caching(&hs));
        let ed = crate::jose::Key::ed25519(
            None,
            ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
                .verifying_key()
                .as_bytes(),
        )
        .unwrap();
        assert!(VerifiedCache::worth_caching(&ed));
    }
}
