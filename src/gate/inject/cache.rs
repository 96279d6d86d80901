//! The injected-token cache of one isolate, pure: which token to use, when to fetch, when to wait
//! for another request's fetch. The Worker keeps one per isolate and executes its plans.
//!
//! - a token is used while `now < cache_until` ([`super::Issued::cache_until`]: `expires_in`
//!   minus the upstream's margin), never after;
//! - single flight: while a fetch of a key is in flight, other requests for that key
//!   [`CachePlan::Wait`] (polling); when that fetch fails, the waiters fail with it
//!   ([`CachePlan::Failed`]) instead of each trying in turn; a fetch that never reports back is
//!   forgotten after its timeout plus a second;
//! - bounded: at most [`MAX_ENTRIES`] keys; past it, expired entries go first, then the one that
//!   expires soonest.

use std::collections::HashMap;
use std::sync::Arc;

use super::CacheKey;

/// Most keys cached per isolate.
pub const MAX_ENTRIES: usize = 1024;

#[derive(Debug, Default)]
struct Entry {
    /// The token and until when it may be used.
    token: Option<(Arc<str>, i64)>,
    /// When the fetch now in flight started (milliseconds) and how long it may take.
    in_flight: Option<(i64, i64)>,
    /// Fetches of this key that failed so far (a waiter whose fetch failed sees it change).
    failures: u64,
}

/// What to do for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePlan {
    /// A cached token (printed redacted by no one: it is only ever set as a header).
    Use(Arc<str>),
    /// Fetch it: this request now holds the key's flight.
    Fetch,
    /// Another request is fetching it: ask again shortly, with this ticket.
    Wait(u64),
    /// The fetch this request waited for failed: 503.
    Failed,
}

/// Tokens by cache key, per isolate.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<CacheKey, Entry>,
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The plan for `key` at `now_ms`. `ticket` is what an earlier [`CachePlan::Wait`] gave
    /// this request (None on its first ask); `timeout_ms` bounds a fetch this request starts.
    pub fn plan(
        &mut self,
        key: CacheKey,
        now_ms: i64,
        ticket: Option<u64>,
        timeout_ms: i64,
    ) -> CachePlan {
        let now = now_ms.div_euclid(1000);
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_ENTRIES {
            self.evict(now);
        }
        let entry = self.entries.entry(key).or_default();
        if let Some((token, until)) = &entry.token {
            if now < *until {
                return CachePlan::Use(token.clone());
            }
            entry.token = None;
        }
        if ticket.is_some_and(|t| t != entry.failures) {
            return CachePlan::Failed;
        }
        match entry.in_flight {
            Some((started, limit))
                if now_ms.saturating_sub(started) < limit.saturating_add(1000) =>
            {
                CachePlan::Wait(entry.failures)
            }
            _ => {
                entry.in_flight = Some((now_ms, timeout_ms));
                CachePlan::Fetch
            }
        }
    }

    /// The fetch of `key` gave `token`, usable until `until` (None: this request only).
    pub fn fetched(&mut self, key: CacheKey, token: &str, until: Option<i64>) -> Arc<str> {
        let token: Arc<str> = Arc::from(token);
        let entry = self.entries.entry(key).or_default();
        entry.in_flight = None;
        entry.token = until.map(|u| (token.clone(), u));
        token
    }

    /// The fetch of `key` failed: its waiters fail too.
    pub fn failed(&mut self, key: CacheKey) {
        let entry = self.entries.entry(key).or_default();
        entry.in_flight = None;
        entry.failures = entry.failures.wrapping_add(1);
    }

    /// Make room: drop entries without a usable token and no flight, else the soonest to expire.
    fn evict(&mut self, now: i64) {
        self.entries.retain(|_, e| {
            e.in_flight.is_some() || e.token.as_ref().is_some_and(|(_, until)| now < *until)
        });
        if self.entries.len() >= MAX_ENTRIES {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.token.as_ref().map_or(i64::MIN, |(_, u)| *u))
                .map(|(k, _)| *k);
            if let Some(k) = soonest {
                self.entries.remove(&k);
            }
        }
    }

    /// Number of keys held (tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: CacheKey = CacheKey([1; 32]);
    const OTHER: CacheKey = CacheKey([2; 32]);

    #[test]
    fn one_fetch_for_concurrent_requests_then_the_cached_token_until_it_expires() {
        let mut c = TokenCache::new();
        assert_eq!(c.plan(K, 1_000_000, None, 5000), CachePlan::Fetch);
        // Concurrent requests wait for that fetch; another key is independent.
        let CachePlan::Wait(ticket) = c.plan(K, 1_000_010, None, 5000) else {
            panic!("not waiting")
        };
        assert_eq!(c.plan(OTHER, 1_000_010, None, 5000), CachePlan::Fetch);
        assert_eq!(
            c.plan(K, 1_000_020, Some(ticket), 5000),
            CachePlan::Wait(ticket)
        );
        c.fetched(K, "tok", Some(1_270));
        assert_eq!(
            c.plan(K, 1_000_030, Some(ticket), 5000),
            CachePlan::Use(Arc::from("tok"))
        );
        assert_eq!(
            c.plan(K, 1_269_999, None, 5000),
            CachePlan::Use(Arc::from("tok"))
        );
        // At cache_until (expires_in minus the margin) it is fetched again.
        assert_eq!(c.plan(K, 1_270_000, None, 5000), CachePlan::Fetch);
    }

    #[test]
    fn waiters_fail_with_the_fetch_they_waited_for_and_the_next_request_tries_again() {
        let mut c = TokenCache::new();
        assert_eq!(c.plan(K, 0, None, 5000), CachePlan::Fetch);
        let CachePlan::Wait(ticket) = c.plan(K, 10, None, 5000) else {
            panic!("not waiting")
        };
        c.failed(K);
        assert_eq!(c.plan(K, 20, Some(ticket), 5000), CachePlan::Failed);
        assert_eq!(c.plan(K, 30, None, 5000), CachePlan::Fetch);
    }

    #[test]
    fn a_token_for_this_request_only_is_not_cached_and_a_lost_flight_is_forgotten() {
        let mut c = TokenCache::new();
        assert_eq!(c.plan(K, 0, None, 5000), CachePlan::Fetch);
        c.fetched(K, "once", None);
        assert_eq!(c.plan(K, 10, None, 5000), CachePlan::Fetch);
        // That flight never reports back: after its timeout and a second, another may fetch.
        assert!(matches!(c.plan(K, 5_999, None, 5000), CachePlan::Wait(_)));
        assert_eq!(c.plan(K, 6_010, None, 5000), CachePlan::Fetch);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = TokenCache::new();
        for i in 0..(MAX_ENTRIES + 10) {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let key = CacheKey(k);
            assert_eq!(c.plan(key, 0, None, 5000), CachePlan::Fetch);
            c.fetched(key, "t", Some(100 + i as i64));
        }
        assert!(c.len() <= MAX_ENTRIES);
    }
}
