//! The verified-token cache (issue 19): per isolate, it remembers that a token's signature
//! verified, so that an agent presenting the same access token for every call of its session
//! pays the signature check once. Like Envoy `jwt_authn`'s `jwt_cache_config`, it skips **only
//! the signature check**: parsing, the header rules, key selection, every claim check (times,
//! issuer, audience, lifetime, required claims), the bindings, the route's checks and the
//! single-use checks run on every request.
//!
//! - **Key**: SHA-256 over the provider name and the exact token bytes (length-prefixed), so a
//!   token that differs in one byte — one signature byte included — is a different entry and is
//!   verified afresh. The token text is never kept.
//! - **Bound to the key set that verified it**: an entry holds a weak reference to the key set;
//!   a lookup hits only when the key set now in use is that very set. A JWKS change, a key
//!   removal or an HMAC secret rotation makes a new set, and every entry of the old one misses
//!   (and is dropped when seen).
//! - **Never outlives the token**: an entry ends at the token's `exp`.
//! - **Bounded**: at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of token bytes accounted;
//!   when full, the least recently used entry goes.
//!
//! Pure: no clock of its own (`now` is a parameter), no I/O.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use sha2::{Digest, Sha256};

use crate::jose::KeySet;

/// Most entries kept per isolate.
pub const MAX_ENTRIES: usize = 2048;
/// Most token bytes accounted for (the entries themselves are fixed-size; this bounds what a
/// flood of large tokens can make the cache stand for).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// The cache key of one token of one provider.
pub type TokenDigest = [u8; 32];

struct Entry {
    keys: Weak<KeySet>,
    exp: i64,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<TokenDigest, Entry>,
    bytes: usize,
    clock: u64,
}

/// Tokens whose signature verified, per isolate.
pub struct VerifiedCache {
    inner: RefCell<Inner>,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::new(MAX_ENTRIES, MAX_BYTES)
    }
}

impl VerifiedCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        VerifiedCache {
            inner: RefCell::new(Inner::default()),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The key for `token` presented to `provider`.
    pub fn digest(provider: &str, token: &str) -> TokenDigest {
        let mut h = Sha256::new();
        h.update((provider.len() as u64).to_be_bytes());
        h.update(provider.as_bytes());
        h.update((token.len() as u64).to_be_bytes());
        h.update(token.as_bytes());
        h.finalize().into()
    }

    /// Whether `digest`'s signature verified with exactly `keys` and the entry is still live at
    /// `now`. A stale entry (other key set, past `exp`) is dropped.
    pub fn hit(&self, digest: &TokenDigest, keys: &Arc<KeySet>, now: i64) -> bool {
        let mut inner = self.inner.borrow_mut();
        inner.clock += 1;
        let clock = inner.clock;
        let live = match inner.map.get_mut(digest) {
            None => return false,
            Some(e) => {
                let same_keys = e.keys.upgrade().is_some_and(|k| Arc::ptr_eq(&k, keys));
                if same_keys && now < e.exp {
                    e.used = clock;
                    true
                } else {
                    false
                }
            }
        };
        if !live {
            if let Some(e) = inner.map.remove(digest) {
                inner.bytes = inner.bytes.saturating_sub(e.bytes);
            }
        }
        live
    }

    /// Remember that `digest` (a token of `token_len` bytes, expiring at `exp`) verified with
    /// `keys`. Called only after the signature verified and the claims were valid.
    pub fn insert(&self, digest: TokenDigest, keys: &Arc<KeySet>, exp: i64, token_len: usize) {
        if token_len > self.max_bytes {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.map.remove(&digest) {
            inner.bytes = inner.bytes.saturating_sub(old.bytes);
        }
        while inner.map.len() >= self.max_entries || inner.bytes + token_len > self.max_bytes {
            // Least recently used out: a scan, paid only on a miss that verified (which
            // already cost a signature check, far more than this).
            let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(e) = inner.map.remove(&oldest) {
                inner.bytes = inner.bytes.saturating_sub(e.bytes);
            }
        }
        inner.bytes += token_len;
        inner.map.insert(
            digest,
            Entry {
                keys: Arc::downgrade(keys),
                exp,
                bytes: token_len,
                used,
            },
        );
    }

    /// Entries held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.borrow().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Arc<KeySet> {
        Arc::new(KeySet::from_keys(Vec::new()))
    }

    #[test]
    fn a_hit_needs_the_same_provider_token_and_key_set_before_exp() {
        let c = VerifiedCache::default();
        let keys = set();
        let d = VerifiedCache::digest("agent", "a.b.c");
        assert!(!c.hit(&d, &keys, 100));
        c.insert(d, &keys, 200, 5);
        assert!(c.hit(&d, &keys, 100));
        assert!(c.hit(&d, &keys, 199));
        // Another provider, another token (one byte), another key set: misses.
        assert!(!c.hit(&VerifiedCache::digest("device", "a.b.c"), &keys, 100));
        assert!(!c.hit(&VerifiedCache::digest("agent", "a.b.d"), &keys, 100));
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
        let d = VerifiedCache::digest("agent", "t");
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
    fn bounded_by_entries_and_bytes_least_recently_used_out() {
        let c = VerifiedCache::new(3, 100);
        let keys = set();
        let d = |i: u8| VerifiedCache::digest("p", &format!("token-{i}"));
        for i in 0..3 {
            c.insert(d(i), &keys, 1000, 10);
        }
        assert!(c.hit(&d(0), &keys, 1), "refreshes 0");
        c.insert(d(3), &keys, 1000, 10);
        assert_eq!(c.len(), 3);
        assert!(!c.hit(&d(1), &keys, 1), "1 was least recently used");
        assert!(c.hit(&d(0), &keys, 1) && c.hit(&d(2), &keys, 1) && c.hit(&d(3), &keys, 1));
        // Bytes: one large token pushes out what it must.
        c.insert(d(4), &keys, 1000, 90);
        assert!(c.len() <= 2);
        assert!(c.hit(&d(4), &keys, 1));
        // Larger than the whole budget: not kept at all.
        c.insert(d(5), &keys, 1000, 101);
        assert!(!c.hit(&d(5), &keys, 1));
        // A flood never grows it past its bounds.
        for i in 0..200u8 {
            c.insert(
                VerifiedCache::digest("p", &format!("flood-{i}")),
                &keys,
                1000,
                1,
            );
        }
        assert_eq!(c.len(), 3);
    }
}
