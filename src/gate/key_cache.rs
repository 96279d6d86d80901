//! The JWKS cache's decisions, without the fetching: when to use cached keys, when to fetch,
//! when stale keys may still serve, and when to give up with 503.
//!
//! The runtime adapter owns the I/O (network fetch, Cache API); it asks [`KeyCache::plan`] before
//! every lookup and reports each fetch with [`KeyCache::fetched`] or [`KeyCache::failed`].
//!
//! Rules (SPEC §3 step 5, ATTACKS #9, #43, #44):
//! - keys are fresh for `min(jwks_cache_secs, issuer max-age)` (never less than `MIN_MAX_AGE`);
//! - an unknown `kid` asks for a refresh, granted at most once per `refresh_cooldown` per issuer,
//!   so a flood of random `kid`s causes at most one fetch per cooldown. Only refreshes count
//!   against the cooldown: a key the issuer published just after a scheduled fetch is found by the
//!   first token that names it;
//! - single flight: while a fetch is in flight no other starts; lookups use fresh or stale keys,
//!   and wait ([`Plan::Wait`]) only when there are none or they asked for a refresh. A fetch that
//!   never reports back is forgotten after [`IN_FLIGHT_MAX`];
//! - a failed fetch is not retried before `retry_backoff`;
//! - when the issuer is unreachable, the last good keys serve for at most `stale_window` past
//!   their freshness, then lookups fail with 503;
//! - a fetched set with no usable key never replaces a non-empty cached set;
//! - a copy shared with other isolates through the Cache API is used only if its MAC verifies
//!   ([`verify_shared_copy`]): the Cache API is shared with every Worker on the zone, so an
//!   unauthenticated copy could be a planted key set.

use std::collections::HashMap;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::gate::nonce::{hmac_sha256, NonceKey};

/// Timing policy of the cache (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTimes {
    pub max_age: i64,
    pub refresh_cooldown: i64,
    pub retry_backoff: i64,
    pub stale_window: i64,
}

/// Shortest freshness accepted from an issuer's `Cache-Control`.
pub const MIN_MAX_AGE: i64 = 30;

/// After this many seconds a fetch that never reported back ([`KeyCache::fetched`] or
/// [`KeyCache::failed`], e.g. its request was cancelled) no longer blocks a new one. Longer than
/// the adapter's fetch timeout.
pub const IN_FLIGHT_MAX: i64 = 10;

impl CacheTimes {
    /// Defaults for a provider with `jwks_cache_secs`.
    pub fn for_provider(jwks_cache_secs: i64) -> Self {
        Self {
            max_age: jwks_cache_secs.max(1),
            refresh_cooldown: 30,
            retry_backoff: 5,
            stale_window: 3600,
        }
    }
}

impl CacheTimes {
    /// How long fetched keys stay fresh: the configured `max_age`, shortened by the issuer's
    /// `Cache-Control: max-age` but never below [`MIN_MAX_AGE`] on the issuer's say-so alone
    /// (and never above the configured value).
    pub fn effective_max_age(&self, issuer_max_age: Option<i64>) -> i64 {
        match issuer_max_age {
            Some(m) => m.max(MIN_MAX_AGE).min(self.max_age),
            None => self.max_age,
        }
    }
}

/// What to do for one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<K> {
    /// Use these keys, no fetch.
    Use(Arc<K>),
    /// Fetch now; `fallback` is what to use if the fetch fails (stale keys within the window).
    Fetch { fallback: Option<Arc<K>> },
    /// Another lookup's fetch is in flight and nothing usable is cached (or a refresh was asked
    /// for): wait a little and plan again.
    Wait,
    /// No usable keys and no fetch allowed now: 503.
    Unavailable,
}

#[derive(Debug)]
struct Entry<K> {
    keys: Option<Arc<K>>,
    fresh_until: i64,
    last_attempt: Option<i64>,
    last_failed: bool,
    /// When the last unknown-`kid` refresh was granted.
    last_refresh: Option<i64>,
    /// When the fetch now in flight started.
    in_flight: Option<i64>,
}

impl<K> Default for Entry<K> {
    fn default() -> Self {
        Self {
            keys: None,
            fresh_until: i64::MIN,
            last_attempt: None,
            last_failed: false,
            last_refresh: None,
            in_flight: None,
        }
    }
}

/// Per-issuer cache state, keyed by provider name.
#[derive(Debug)]
pub struct KeyCache<K> {
    entries: HashMap<String, Entry<K>>,
}

impl<K> Default for KeyCache<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<K> KeyCache<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decide for one lookup. `want_refresh` is set after the cached keys did not have the
    /// token's `kid`. A `Fetch` answer marks a fetch in flight, so concurrent lookups do not fetch
    /// too; the caller must report it with [`KeyCache::fetched`] or [`KeyCache::failed`].
    pub fn plan(
        &mut self,
        provider: &str,
        times: &CacheTimes,
        now: i64,
        want_refresh: bool,
    ) -> Plan<K> {
        let entry = self.entries.entry(provider.to_owned()).or_default();
        if entry
            .in_flight
            .is_some_and(|t| now.saturating_sub(t) >= IN_FLIGHT_MAX)
        {
            entry.in_flight = None;
        }
        let since_attempt = entry.last_attempt.map(|t| now.saturating_sub(t));
        let stale_ok = entry
            .keys
            .clone()
            .filter(|_| now <= entry.fresh_until.saturating_add(times.stale_window));
        let fresh = entry.keys.is_some() && now < entry.fresh_until;

        let backing_off =
            entry.last_failed && since_attempt.is_some_and(|s| s < times.retry_backoff);
        let may_fetch = entry.in_flight.is_none()
            && if fresh {
                want_refresh
                    && entry
                        .last_refresh
                        .is_none_or(|t| now.saturating_sub(t) >= times.refresh_cooldown)
            } else {
                !backing_off
            };

        if may_fetch {
            entry.last_attempt = Some(now);
            entry.in_flight = Some(now);
            if fresh {
                entry.last_refresh = Some(now);
            }
            return Plan::Fetch { fallback: stale_ok };
        }
        match stale_ok {
            _ if entry.in_flight.is_some() && want_refresh => Plan::Wait,
            Some(keys) => Plan::Use(keys),
            None if entry.in_flight.is_some() => Plan::Wait,
            None => Plan::Unavailable,
        }
    }

    /// Record a successful fetch. `issuer_max_age` is the issuer's `Cache-Control: max-age`, if
    /// any; `usable` is false when the set has no key the gateway can use (then a non-empty
    /// cached set is kept, and the fetch counts as failed). Returns the keys to use now.
    pub fn fetched(
        &mut self,
        provider: &str,
        times: &CacheTimes,
        now: i64,
        keys: K,
        usable: bool,
        issuer_max_age: Option<i64>,
    ) -> Option<Arc<K>> {
        let entry = self.entries.entry(provider.to_owned()).or_default();
        entry.last_attempt = Some(now);
        entry.in_flight = None;
        if !usable && entry.keys.is_some() {
            entry.last_failed = true;
            return entry.keys.clone();
        }
        let max_age = times.effective_max_age(issuer_max_age);
        entry.keys = Some(Arc::new(keys));
        entry.fresh_until = now.saturating_add(max_age);
        entry.last_failed = false;
        entry.keys.clone()
    }

    /// Record a failed fetch; returns stale keys still inside the window, if any.
    pub fn failed(&mut self, provider: &str, times: &CacheTimes, now: i64) -> Option<Arc<K>> {
        let entry = self.entries.entry(provider.to_owned()).or_default();
        entry.last_attempt = Some(now);
        entry.last_failed = true;
        entry.in_flight = None;
        entry
            .keys
            .clone()
            .filter(|_| now <= entry.fresh_until.saturating_add(times.stale_window))
    }
}

/// How long a JWKS copy that another isolate shared (Cache API) may be used as fresh: what remains
/// of the sharing isolate's freshness. `None` (fetch from the issuer instead) when the copy has no
/// expiry or less than [`MIN_MAX_AGE`] left: a copy must never restart the full freshness in each
/// isolate that reads it (keys would outlive `jwks_cache_secs`), and its remaining time is used
/// exactly, so it must not fall under the floor that [`CacheTimes::effective_max_age`] applies.
pub fn shared_copy_max_age(fresh_until: Option<i64>, now: i64) -> Option<i64> {
    fresh_until
        .map(|until| until.saturating_sub(now))
        .filter(|left| *left >= MIN_MAX_AGE)
}

/// The key that seals JWKS copies in the Cache API: derived from `ATTESTGATE_NONCE_KEY` (a
/// secret only this gateway's Workers hold) under its own label, so it is never the nonce MAC
/// key itself. Without that secret no copy is written or read.
pub struct CopyKey([u8; 32]);

impl CopyKey {
    /// The derivation label (see [`NonceKey::derive`]).
    pub const LABEL: &'static [u8] = b"jwks-cache-copy/v1";

    pub fn derive(secret: &NonceKey) -> Self {
        Self(secret.derive(Self::LABEL))
    }

    /// `None` never happens in practice (HMAC takes keys of any length).
    fn mac(&self, uri: &str, fresh_until: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
        hmac_sha256(
            &self.0,
            &[
                b"attestgate/jwks-cache-copy/v1",
                &(uri.len() as u64).to_be_bytes(),
                uri.as_bytes(),
                &fresh_until.to_be_bytes(),
                &(body.len() as u64).to_be_bytes(),
                body,
            ],
        )
    }
}

impl core::fmt::Debug for CopyKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CopyKey(..)")
    }
}

/// The tag of a shared JWKS copy (base64url of HMAC-SHA-256 over the provider's `jwks_uri`, the
/// copy's freshness stamp and the document, each length-prefixed).
pub fn seal_shared_copy(key: &CopyKey, uri: &str, fresh_until: i64, body: &[u8]) -> Option<String> {
    let tag = key.mac(uri, fresh_until, body)?.finalize().into_bytes();
    Some(crate::jose::b64::encode(&tag))
}

/// Whether a shared copy is one this gateway sealed for `uri` with this stamp and document. A
/// missing or malformed tag is `false`. Constant-time comparison.
pub fn verify_shared_copy(
    key: &CopyKey,
    uri: &str,
    fresh_until: i64,
    body: &[u8],
    tag: Option<&str>,
) -> bool {
    let Some(tag) = tag.and_then(|t| crate::jose::b64::decode(t).ok()) else {
        return false;
    };
    key.mac(uri, fresh_until, body)
        .is_some_and(|mac| mac.verify_slice(&tag).is_ok())
}

/// Parse `max-age` out of a `Cache-Control` value (`no-store`/`no-cache` count as 0).
pub fn cache_control_max_age(value: &str) -> Option<i64> {
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return Some(0);
        }
        if let Some(v) = directive.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<i64>().ok();
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: CacheTimes = CacheTimes {
        max_age: 600,
        refresh_cooldown: 30,
        retry_backoff: 5,
        stale_window: 3600,
    };

    #[test]
    fn cold_fetch_then_use() {
        let mut c = KeyCache::new();
        assert_eq!(c.plan("p", &T, 0, false), Plan::Fetch { fallback: None });
        c.fetched("p", &T, 0, 1u32, true, None);
        assert_eq!(c.plan("p", &T, 10, false), Plan::Use(Arc::new(1)));
        assert_eq!(c.plan("p", &T, 599, false), Plan::Use(Arc::new(1)));
        assert!(matches!(
            c.plan("p", &T, 600, false),
            Plan::Fetch { fallback: Some(_) }
        ));
    }

    #[test]
    fn unknown_kid_refresh_is_rate_limited() {
        let mut c = KeyCache::new();
        c.plan("p", &T, 0, false);
        c.fetched("p", &T, 0, 1u32, true, None);
        // 1000 random kids within the cooldown: one fetch (whether or not it has finished).
        let mut fetches = 0;
        for i in 40..1040 {
            let now = 40 + i / 100;
            if i == 500 {
                c.fetched("p", &T, now, 1u32, true, None);
            }
            if let Plan::Fetch { .. } = c.plan("p", &T, now, true) {
                fetches += 1;
            }
        }
        assert_eq!(fetches, 1);
        assert!(matches!(c.plan("p", &T, 40 + 30, true), Plan::Fetch { .. }));
    }

    #[test]
    fn refresh_cooldown_counts_refreshes_not_scheduled_fetches() {
        let mut c = KeyCache::new();
        c.plan("p", &T, 0, false);
        c.fetched("p", &T, 0, 1u32, true, None);
        // The issuer publishes a new key right after the scheduled fetch: the first token naming
        // it gets a refresh at once (this used to wait for the 30 s cooldown).
        assert!(matches!(c.plan("p", &T, 5, true), Plan::Fetch { .. }));
        c.fetched("p", &T, 5, 2u32, true, None);
        // Further unknown kids within the cooldown: no fetch.
        assert_eq!(c.plan("p", &T, 20, true), Plan::Use(Arc::new(2)));
        assert!(matches!(c.plan("p", &T, 35, true), Plan::Fetch { .. }));
    }

    #[test]
    fn single_flight() {
        let mut c = KeyCache::new();
        // Cold: one fetch; concurrent lookups wait for it instead of fetching too.
        assert_eq!(c.plan("p", &T, 0, false), Plan::Fetch { fallback: None });
        assert_eq!(c.plan("p", &T, 0, false), Plan::Wait);
        assert_eq!(c.plan("p", &T, 0, true), Plan::Wait);
        c.fetched("p", &T, 0, 1u32, true, None);
        assert_eq!(c.plan("p", &T, 0, false), Plan::Use(Arc::new(1)));
        // Expired: one refetch; meanwhile the others use the stale keys.
        assert!(matches!(c.plan("p", &T, 600, false), Plan::Fetch { .. }));
        assert_eq!(c.plan("p", &T, 600, false), Plan::Use(Arc::new(1)));
        // An unknown kid while that fetch is in flight waits for its result.
        assert_eq!(c.plan("p", &T, 601, true), Plan::Wait);
        c.fetched("p", &T, 601, 2u32, true, None);
        assert_eq!(c.plan("p", &T, 601, false), Plan::Use(Arc::new(2)));
        // A fetch that never reports back stops blocking after IN_FLIGHT_MAX.
        assert!(matches!(c.plan("p", &T, 1300, false), Plan::Fetch { .. }));
        assert_eq!(c.plan("p", &T, 1301, false), Plan::Use(Arc::new(2)));
        assert!(matches!(
            c.plan("p", &T, 1300 + IN_FLIGHT_MAX, false),
            Plan::Fetch { .. }
        ));
    }

    #[test]
    fn zero_stale_window_means_no_stale_keys() {
        let t = CacheTimes {
            stale_window: 0,
            ..T
        };
        let mut c = KeyCache::new();
        c.plan("p", &t, 0, false);
        c.fetched("p", &t, 0, 1u32, true, None);
        assert!(matches!(
            c.plan("p", &t, 601, false),
            Plan::Fetch { fallback: None }
        ));
        assert_eq!(c.failed("p", &t, 601), None);
        assert_eq!(c.plan("p", &t, 602, false), Plan::Unavailable);
    }

    #[test]
    fn outage_serves_stale_within_window_then_unavailable() {
        let mut c = KeyCache::new();
        c.plan("p", &T, 0, false);
        c.fetched("p", &T, 0, 1u32, true, None);
        assert!(matches!(
            c.plan("p", &T, 700, false),
            Plan::Fetch { fallback: Some(_) }
        ));
        assert_eq!(c.failed("p", &T, 700), Some(Arc::new(1)));
        // Within the backoff: stale keys, no fetch.
        assert_eq!(c.plan("p", &T, 702, false), Plan::Use(Arc::new(1)));
        // Past the stale window: a fetch is attempted; when it fails there is nothing left.
        assert!(matches!(
            c.plan("p", &T, 600 + 3601, false),
            Plan::Fetch { fallback: None }
        ));
        assert_eq!(c.failed("p", &T, 600 + 3601), None);
        assert_eq!(c.plan("p", &T, 600 + 3602, false), Plan::Unavailable);
    }

    #[test]
    fn cold_failure_backs_off() {
        let mut c: KeyCache<u32> = KeyCache::new();
        c.plan("p", &T, 0, false);
        assert_eq!(c.failed("p", &T, 0), None);
        assert_eq!(c.plan("p", &T, 1, false), Plan::Unavailable);
        assert!(matches!(c.plan("p", &T, 5, false), Plan::Fetch { .. }));
    }

    #[test]
    fn empty_set_never_replaces_good_keys() {
        let mut c = KeyCache::new();
        c.plan("p", &T, 0, false);
        c.fetched("p", &T, 0, 1u32, true, None);
        assert_eq!(c.fetched("p", &T, 50, 0u32, false, None), Some(Arc::new(1)));
        assert_eq!(c.plan("p", &T, 51, false), Plan::Use(Arc::new(1)));
    }

    #[test]
    fn issuer_max_age_shortens_but_is_floored() {
        let mut c = KeyCache::new();
        c.plan("p", &T, 0, false);
        c.fetched("p", &T, 0, 1u32, true, Some(60));
        assert!(matches!(c.plan("p", &T, 61, false), Plan::Fetch { .. }));
        c.fetched("p", &T, 100, 2u32, true, Some(0));
        assert_eq!(
            c.plan("p", &T, 100 + MIN_MAX_AGE - 1, false),
            Plan::Use(Arc::new(2))
        );
        c.fetched("p", &T, 200, 3u32, true, Some(100_000));
        assert_eq!(c.plan("p", &T, 799, false), Plan::Use(Arc::new(3)));
    }

    #[test]
    fn short_configured_freshness_is_never_lengthened() {
        let t = CacheTimes::for_provider(2);
        assert_eq!(t.max_age, 2);
        assert_eq!(t.effective_max_age(Some(0)), 2);
        assert_eq!(t.effective_max_age(Some(600)), 2);
        assert_eq!(t.effective_max_age(None), 2);
        assert_eq!(T.effective_max_age(Some(0)), MIN_MAX_AGE);
    }

    #[test]
    fn a_shared_copy_is_fresh_only_for_what_remains() {
        assert_eq!(shared_copy_max_age(Some(1000), 400), Some(600));
        assert_eq!(
            shared_copy_max_age(Some(1000), 1000 - MIN_MAX_AGE),
            Some(MIN_MAX_AGE)
        );
        assert_eq!(
            shared_copy_max_age(Some(1000), 1000 - MIN_MAX_AGE + 1),
            None
        );
        assert_eq!(shared_copy_max_age(Some(1000), 2000), None);
        assert_eq!(shared_copy_max_age(None, 0), None);
        // Used as the issuer max-age of the copy, the remaining time is kept exactly.
        let t = CacheTimes::for_provider(600);
        assert_eq!(
            t.effective_max_age(shared_copy_max_age(Some(1000), 400)),
            600
        );
        assert_eq!(
            t.effective_max_age(shared_copy_max_age(Some(1000), 900)),
            100
        );
    }

    fn copy_key(byte: u8) -> CopyKey {
        CopyKey::derive(&NonceKey::new(vec![byte; 32]).unwrap())
    }

    #[test]
    fn a_shared_copy_is_used_only_with_a_valid_mac() {
        let key = copy_key(7);
        let uri = "https://idp.example.com/jwks.json";
        let doc = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let tag = seal_shared_copy(&key, uri, 1000, doc).unwrap();
        assert!(verify_shared_copy(&key, uri, 1000, doc, Some(&tag)));

        // Tampered document: one byte changed, a key appended, truncated.
        let mut changed = doc.to_vec();
        changed[30] ^= 1;
        assert!(!verify_shared_copy(&key, uri, 1000, &changed, Some(&tag)));
        let mut planted = doc[..doc.len() - 2].to_vec();
        planted.extend_from_slice(br#",{"kty":"EC"}]}"#);
        assert!(!verify_shared_copy(&key, uri, 1000, &planted, Some(&tag)));
        assert!(!verify_shared_copy(&key, uri, 1000, &doc[..10], Some(&tag)));
        // Tampered freshness stamp (a copy made to look fresh for longer).
        assert!(!verify_shared_copy(&key, uri, 1001, doc, Some(&tag)));
        assert!(!verify_shared_copy(&key, uri, i64::MAX, doc, Some(&tag)));
        // The copy of another provider's jwks_uri.
        assert!(!verify_shared_copy(
            &key,
            "https://idp.example.com/jwks.json2",
            1000,
            doc,
            Some(&tag)
        ));
        let other_uri = "https://other.example.com/jwks.json";
        let other_tag = seal_shared_copy(&key, other_uri, 1000, doc).unwrap();
        assert!(!verify_shared_copy(&key, uri, 1000, doc, Some(&other_tag)));
        // Missing, empty, malformed, truncated tags; a tag made with another key.
        for bad in [None, Some(""), Some("!!!!"), Some(&tag[..20])] {
            assert!(!verify_shared_copy(&key, uri, 1000, doc, bad), "{bad:?}");
        }
        let foreign = seal_shared_copy(&copy_key(8), uri, 1000, doc).unwrap();
        assert!(!verify_shared_copy(&key, uri, 1000, doc, Some(&foreign)));
        // Length prefixes: moving bytes between the uri and the document changes the tag.
        let glued = seal_shared_copy(&key, "https://a", 1, b"bc").unwrap();
        assert!(!verify_shared_copy(
            &key,
            "https://ab",
            1,
            b"c",
            Some(&glued)
        ));
    }

    #[test]
    fn the_copy_key_is_not_the_nonce_key() {
        let secret = NonceKey::new(vec![7u8; 32]).unwrap();
        let derived = CopyKey::derive(&secret);
        assert_ne!(derived.0, [7u8; 32]);
        assert_eq!(derived.0, secret.derive(CopyKey::LABEL));
        assert_eq!(format!("{derived:?}"), "CopyKey(..)");
    }

    #[test]
    fn cache_control_parsing() {
        assert_eq!(cache_control_max_age("public, max-age=300"), Some(300));
        assert_eq!(cache_control_max_age("no-store"), Some(0));
        assert_eq!(cache_control_max_age("public"), None);
        assert_eq!(cache_control_max_age("max-age=abc"), None);
    }
}
