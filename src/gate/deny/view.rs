//! The isolate's view of the deny store, and the propagation bound.
//!
//! Per shard the view holds the store's complete set of entries (key digest → [`Hit`]s) as of
//! one snapshot, the snapshot's version, and when it was asked for (`fetched_ms`: the clock
//! reading taken *before* the request to the store was sent). A shard's view answers a request
//! at `now_ms` only while `now_ms - fetched_ms < bound_ms` ([`is_fresh`]); past that the store is
//! asked again (with the version held: an unchanged shard answers in a few bytes), and if the
//! store cannot be reached the request is 503, never answered from the old view.
//!
//! **The bound.** A revocation the store acknowledged at `t0` is enforced for every request that
//! starts after `t0 + bound`: such a request is answered from a snapshot asked for at
//! `fetched_ms > now_ms - bound > t0`, and a snapshot asked for after `t0` contains it (the
//! store answers in order: a Durable Object handles one request at a time and commits a write
//! before acknowledging it). The Worker's clock only moves between I/O events, so both readings
//! can only be early: `fetched_ms` too early makes a view look older (refreshed sooner), never
//! fresher.
//!
//! A shard with more entries than a snapshot carries ([`super::wire::MAX_SNAPSHOT`]) is
//! `complete = false`: its keys are looked up in the store on every request instead. Denied is
//! never remembered as allowed: the view holds entries, not answers, and a strict lookup never
//! updates it.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{DenySource, Hit, Key, KeyMemo, Pending};
use crate::Error;

/// What the store answers to "the shard's entries, I hold version `have`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The shard is still at the version held.
    Unchanged { version: String },
    /// The shard's entries (all of them when `complete`).
    Full {
        version: String,
        complete: bool,
        entries: Vec<(String, Hit)>,
    },
}

/// One shard's view.
#[derive(Debug, Clone)]
struct ShardView {
    version: String,
    fetched_ms: i64,
    complete: bool,
    /// By the key's digest (decoded from the store's base64url text once, when the snapshot is
    /// taken: a request's keys are looked up without encoding them).
    entries: HashMap<[u8; 32], Vec<Hit>>,
}

/// Whether a view asked for at `fetched_ms` may answer at `now_ms` under `bound_ms`.
pub fn is_fresh(fetched_ms: i64, now_ms: i64, bound_ms: i64) -> bool {
    now_ms.saturating_sub(fetched_ms) < bound_ms
}

/// The isolate's view of every shard it has needed.
#[derive(Debug)]
pub struct View {
    bound_ms: i64,
    /// By shard number (a shard is at most 63).
    shards: RefCell<Vec<Option<ShardView>>>,
    /// The digests of the keys the isolate computed last ([`KeyMemo`]).
    memo: KeyMemo,
}

impl View {
    /// A view under the propagation bound `bound_secs`.
    pub fn new(bound_secs: u8) -> Self {
        View {
            bound_ms: i64::from(bound_secs) * 1000,
            shards: RefCell::new(Vec::new()),
            memo: KeyMemo::default(),
        }
    }

    pub fn bound_ms(&self) -> i64 {
        self.bound_ms
    }

    pub fn memo(&self) -> &KeyMemo {
        &self.memo
    }

    /// The shards of `keys` whose view cannot answer at `now_ms` (none, or too old), each once,
    /// with the version held.
    pub fn stale(&self, keys: &[Key], now_ms: i64) -> Vec<(u8, Option<String>)> {
        let shards = self.shards.borrow();
        let mut out: Vec<(u8, Option<String>)> = Vec::new();
        for key in keys {
            if out.iter().any(|(s, _)| *s == key.shard) {
                continue;
            }
            match shard_of(&shards, key.shard) {
                Some(v) if is_fresh(v.fetched_ms, now_ms, self.bound_ms) => {}
                Some(v) => out.push((key.shard, Some(v.version.clone()))),
                None => out.push((key.shard, None)),
            }
        }
        out
    }

    /// Take the store's answer for `shard`, asked for at `fetched_ms`. `false` when it cannot
    /// be used (unchanged from a version this view does not hold): the shard stays stale.
    pub fn apply(&self, shard: u8, refresh: Refresh, fetched_ms: i64) -> bool {
        let mut shards = self.shards.borrow_mut();
        match refresh {
            Refresh::Unchanged { version } => {
                match shards.get_mut(usize::from(shard)).and_then(Option::as_mut) {
                    Some(v) if v.version == version => {
                        v.fetched_ms = v.fetched_ms.max(fetched_ms);
                        true
                    }
                    _ => false,
                }
            }
            Refresh::Full {
                version,
                complete,
                entries,
            } => {
                let mut map: HashMap<[u8; 32], Vec<Hit>> = HashMap::new();
                for (key, hit) in entries {
                    // A key that is not the text of a digest can match no request's key (theirs
                    // all are): leaving it out changes no answer.
                    if let Some(raw) = raw_digest(&key) {
                        map.entry(raw).or_default().push(hit);
                    }
                }
                let at = usize::from(shard);
                if shards.len() <= at {
                    shards.resize_with(at + 1, || None);
                }
                if let Some(slot) = shards.get_mut(at) {
                    *slot = Some(ShardView {
                        version,
                        fetched_ms,
                        complete,
                        entries: map,
                    });
                }
                true
            }
        }
    }

    /// The entries of `keys` from views fresh at `now_ms`; `Err` with the keys whose shard view
    /// is missing, too old or incomplete (to be looked up in the store).
    pub fn hits(&self, keys: &[Key], now_ms: i64) -> (Vec<Hit>, Vec<Key>) {
        let shards = self.shards.borrow();
        let mut hits = Vec::new();
        let mut ask = Vec::new();
        for key in keys {
            match shard_of(&shards, key.shard) {
                Some(v) if v.complete && is_fresh(v.fetched_ms, now_ms, self.bound_ms) => {
                    // (an empty shard, the usual case, is not hashed into at all)
                    if v.entries.is_empty() {
                        continue;
                    }
                    if let Some(found) = v.entries.get(&key.raw) {
                        hits.extend(found.iter().cloned());
                    }
                }
                _ => ask.push(key.clone()),
            }
        }
        (hits, ask)
    }
}

fn shard_of(shards: &[Option<ShardView>], shard: u8) -> Option<&ShardView> {
    shards.get(usize::from(shard)).and_then(Option::as_ref)
}

/// The digest a store key's text names: 43 base64url characters of 32 bytes.
fn raw_digest(text: &str) -> Option<[u8; 32]> {
    if !super::wire::valid_digest(text) {
        return None;
    }
    crate::jose::b64::decode(text).ok()?.try_into().ok()
}

/// The deny store as the view's owner reaches it.
pub trait DenyStore {
    /// The shard's entries, given the version held.
    fn snapshot<'a>(
        &'a self,
        shard: u8,
        have: Option<&'a str>,
    ) -> Pending<'a, Result<Refresh, Error>>;
    /// The entries of `keys` (digests), all of `shard`.
    fn lookup<'a>(&'a self, shard: u8, keys: &'a [String]) -> Pending<'a, Result<Vec<Hit>, Error>>;
    /// A Status List Token's text ([`DenySource::list_token`]).
    fn list_token<'a>(&'a self, _uri: &'a str) -> Pending<'a, Result<String, Error>> {
        Box::pin(async { Err(Error::StatusListUnavailable) })
    }
}

/// A clock in unix milliseconds (the Worker's `Date.now()`, a fake one in tests).
pub trait Clock {
    fn now_ms(&self) -> i64;
}

/// The [`DenySource`] of an isolate: its [`View`] over a [`DenyStore`].
pub struct ViewSource<'a, S: ?Sized, C: ?Sized> {
    pub view: &'a View,
    pub store: &'a S,
    pub clock: &'a C,
}

impl<S: DenyStore + ?Sized, C: Clock + ?Sized> ViewSource<'_, S, C> {
    /// The store's own answer for `keys`, shard by shard.
    async fn ask(&self, keys: &[Key]) -> Result<Vec<Hit>, Error> {
        let mut shards: Vec<u8> = Vec::new();
        for key in keys {
            if !shards.contains(&key.shard) {
                shards.push(key.shard);
            }
        }
        let mut hits = Vec::new();
        for shard in shards {
            let digests: Vec<String> = keys
                .iter()
                .filter(|k| k.shard == shard)
                .map(Key::digest)
                .collect();
            hits.extend(self.store.lookup(shard, &digests).await?);
        }
        Ok(hits)
    }

    async fn cached(&self, keys: &[Key], now_ms: i64) -> Result<Vec<Hit>, Error> {
        for (shard, have) in self.view.stale(keys, now_ms) {
            // Read before the request is sent: the snapshot holds everything acknowledged
            // before this instant.
            let asked_at = self.clock.now_ms();
            let refresh = self.store.snapshot(shard, have.as_deref()).await?;
            if !self.view.apply(shard, refresh, asked_at) {
                // Unchanged from a version we no longer hold: ask for everything.
                let asked_at = self.clock.now_ms();
                let refresh = self.store.snapshot(shard, None).await?;
                self.view.apply(shard, refresh, asked_at);
            }
        }
        let (mut hits, ask) = self.view.hits(keys, now_ms);
        if !ask.is_empty() {
            hits.extend(self.ask(&ask).await?);
        }
        Ok(hits)
    }
}

impl<S: DenyStore + ?Sized, C: Clock + ?Sized> DenySource for ViewSource<'_, S, C> {
    fn hits<'a>(
        &'a self,
        keys: &'a [Key],
        strict: bool,
        now_ms: i64,
    ) -> Pending<'a, Result<Vec<Hit>, Error>> {
        Box::pin(async move {
            if strict {
                self.ask(keys).await
            } else {
                self.cached(keys, now_ms).await
            }
        })
    }

    fn list_token<'a>(&'a self, uri: &'a str) -> Pending<'a, Result<String, Error>> {
        self.store.list_token(uri)
    }

    fn memo(&self) -> Option<&KeyMemo> {
        Some(&self.view.memo)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::gate::deny::{verdict, Kind};
    use crate::jose::block_on_ready;

    /// A store in memory that can be made unreachable, counting its calls.
    #[derive(Default)]
    struct FakeStore {
        entries: RefCell<Vec<(String, u8, Hit)>>,
        version: Cell<u64>,
        down: Cell<bool>,
        snapshots: Cell<u32>,
        lookups: Cell<u32>,
        max: Cell<Option<usize>>,
    }

    impl FakeStore {
        fn add(&self, key: &Key, id: &str, fence: Option<i64>) {
            self.entries.borrow_mut().push((
                key.digest(),
                key.shard,
                Hit {
                    id: id.into(),
                    fence,
                },
            ));
            self.version.set(self.version.get() + 1);
        }
        fn remove(&self, id: &str) {
            self.entries.borrow_mut().retain(|(_, _, h)| h.id != id);
            self.version.set(self.version.get() + 1);
        }
    }

    impl DenyStore for FakeStore {
        fn snapshot<'a>(
            &'a self,
            shard: u8,
            have: Option<&'a str>,
        ) -> Pending<'a, Result<Refresh, Error>> {
            Box::pin(async move {
                self.snapshots.set(self.snapshots.get() + 1);
                if self.down.get() {
                    return Err(Error::DenyStoreUnavailable);
                }
                let version = self.version.get().to_string();
                if have == Some(version.as_str()) {
                    return Ok(Refresh::Unchanged { version });
                }
                let all: Vec<(String, Hit)> = self
                    .entries
                    .borrow()
                    .iter()
                    .filter(|(_, s, _)| *s == shard)
                    .map(|(k, _, h)| (k.clone(), h.clone()))
                    .collect();
                let max = self.max.get().unwrap_or(usize::MAX);
                Ok(Refresh::Full {
                    version,
                    complete: all.len() <= max,
                    entries: all.into_iter().take(max).collect(),
                })
            })
        }
        fn lookup<'a>(
            &'a self,
            shard: u8,
            keys: &'a [String],
        ) -> Pending<'a, Result<Vec<Hit>, Error>> {
            Box::pin(async move {
                self.lookups.set(self.lookups.get() + 1);
                if self.down.get() {
                    return Err(Error::DenyStoreUnavailable);
                }
                Ok(self
                    .entries
                    .borrow()
                    .iter()
                    .filter(|(k, s, _)| *s == shard && keys.contains(k))
                    .map(|(_, _, h)| h.clone())
                    .collect())
            })
        }
    }

    struct FakeClock(Cell<i64>);
    impl Clock for FakeClock {
        fn now_ms(&self) -> i64 {
            self.0.get()
        }
    }

    const T0: i64 = 1_800_000_000_000;

    fn check(src: &dyn DenySource, keys: &[Key], strict: bool, now_ms: i64) -> Result<(), Error> {
        block_on_ready(async {
            let hits = src.hits(keys, strict, now_ms).await?;
            Ok(verdict(&hits, now_ms / 1000).map_err(|(e, _)| e))
        })
        .and_then(|r| r)
    }

    fn setup() -> (FakeStore, View, FakeClock) {
        (FakeStore::default(), View::new(2), FakeClock(Cell::new(T0)))
    }

    #[test]
    fn a_revocation_is_enforced_once_the_bound_has_passed_and_not_served_from_an_old_view() {
        let (store, view, clock) = setup();
        let src = ViewSource {
            view: &view,
            store: &store,
            clock: &clock,
        };
        let agent = [Key::new(Kind::Agent, &["agent:x"], 4)];
        // First request: the view is fetched, nothing is denied.
        assert_eq!(check(&src, &agent, false, T0), Ok(()));
        assert_eq!(store.snapshots.get(), 1);
        // The store acknowledges a revocation 100 ms later.
        let acked = T0 + 100;
        store.add(&agent[0], "e1", None);
        // Within the bound of the view's fetch the isolate may still allow (the stated
        // bound), without asking the store again ...
        clock.0.set(T0 + 1_999);
        assert_eq!(check(&src, &agent, false, T0 + 1_999), Ok(()));
        assert_eq!(store.snapshots.get(), 1);
        // ... and every request starting later than acknowledgement + bound is refused.
        let after = acked + view.bound_ms() + 1;
        clock.0.set(after);
        assert_eq!(check(&src, &agent, false, after), Err(Error::Revoked));
        assert_eq!(store.snapshots.get(), 2);
        // The fence-free entry keeps refusing from the refreshed view, at no store cost.
        assert_eq!(check(&src, &agent, false, after + 10), Err(Error::Revoked));
        assert_eq!(store.snapshots.get(), 2);
    }

    #[test]
    fn the_bound_holds_for_every_interleaving_of_fetches_and_the_acknowledgement() {
        // For fetch times f and acknowledgement times t0 in a grid, and requests at r:
        // r > t0 + bound ⇒ refused.
        for fetch_at in (0..6_000).step_by(250) {
            for ack_at in (0..6_000).step_by(333) {
                let (store, view, clock) = setup();
                let src = ViewSource {
                    view: &view,
                    store: &store,
                    clock: &clock,
                };
                let key = [Key::new(Kind::Device, &["d"], 4)];
                let mut added = false;
                let mut t = 0;
                while t < 9_000 {
                    if !added && t >= ack_at {
                        store.add(&key[0], "e", None);
                        added = true;
                    }
                    clock.0.set(T0 + t);
                    // The isolate's first request is at `fetch_at`.
                    if t < fetch_at {
                        t += 97;
                        continue;
                    }
                    let r = check(&src, &key, false, T0 + t);
                    if added && t > ack_at + view.bound_ms() {
                        assert_eq!(
                            r,
                            Err(Error::Revoked),
                            "fetch {fetch_at} ack {ack_at} t {t}"
                        );
                    }
                    t += 97;
                }
            }
        }
    }

    #[test]
    fn an_unreachable_store_past_the_bound_is_503_never_the_old_view() {
        let (store, view, clock) = setup();
        let src = ViewSource {
            view: &view,
            store: &store,
            clock: &clock,
        };
        let key = [Key::new(Kind::Client, &["c"], 4)];
        assert_eq!(check(&src, &key, false, T0), Ok(()));
        store.down.set(true);
        // Within the bound the fresh view answers (the stated bound) ...
        assert_eq!(check(&src, &key, false, T0 + 1_000), Ok(()));
        // ... past it, 503.
        clock.0.set(T0 + 2_000);
        assert_eq!(
            check(&src, &key, false, T0 + 2_000),
            Err(Error::DenyStoreUnavailable)
        );
        // Strict: the store on every request.
        assert_eq!(
            check(&src, &key, true, T0 + 1),
            Err(Error::DenyStoreUnavailable)
        );
        // Back up: answered again.
        store.down.set(false);
        assert_eq!(check(&src, &key, false, T0 + 2_000), Ok(()));
    }

    #[test]
    fn strict_asks_the_store_every_time_and_never_fills_the_view() {
        let (store, view, clock) = setup();
        let src = ViewSource {
            view: &view,
            store: &store,
            clock: &clock,
        };
        let key = [Key::new(Kind::Jkt, &["j"], 4)];
        assert_eq!(check(&src, &key, true, T0), Ok(()));
        store.add(&key[0], "e", None);
        assert_eq!(check(&src, &key, true, T0 + 1), Err(Error::Revoked));
        assert_eq!((store.lookups.get(), store.snapshots.get()), (2, 0));
        // A removal is seen by the next strict request at once.
        store.remove("e");
        assert_eq!(check(&src, &key, true, T0 + 2), Ok(()));
    }

    #[test]
    fn unchanged_shards_refresh_cheaply_and_a_removal_takes_effect_after_the_bound() {
        let (store, view, clock) = setup();
        let src = ViewSource {
            view: &view,
            store: &store,
            clock: &clock,
        };
        let key = [Key::new(Kind::User, &["i", "s"], 4)];
        store.add(&key[0], "e", None);
        assert_eq!(check(&src, &key, false, T0), Err(Error::Revoked));
        clock.0.set(T0 + 2_500);
        assert_eq!(check(&src, &key, false, T0 + 2_500), Err(Error::Revoked));
        store.remove("e");
        clock.0.set(T0 + 5_000);
        assert_eq!(check(&src, &key, false, T0 + 5_000), Ok(()));
        // An unchanged answer for a version the view never held is not taken.
        assert!(!view.apply(
            9,
            Refresh::Unchanged {
                version: "x".into()
            },
            T0
        ));
    }

    #[test]
    fn an_incomplete_shard_is_looked_up_per_request() {
        let (store, view, clock) = setup();
        store.max.set(Some(1));
        let src = ViewSource {
            view: &view,
            store: &store,
            clock: &clock,
        };
        let key = Key::new(Kind::Agent, &["a"], 1);
        store.add(&Key::new(Kind::Agent, &["other"], 1), "o", None);
        store.add(&key, "e", None);
        assert_eq!(
            check(&src, std::slice::from_ref(&key), false, T0),
            Err(Error::Revoked)
        );
        assert_eq!(store.lookups.get(), 1);
    }

    #[test]
    fn a_fence_is_decided_at_the_request_time_from_the_cached_view() {
        let (store, view, clock) = setup();
        let src = ViewSource {
            view: &view,
            store: &store,
            clock: &clock,
        };
        let key = [Key::new(Kind::Agent, &["a"], 4)];
        store.add(&key[0], "f", Some(T0 / 1000 + 1));
        assert_eq!(check(&src, &key, false, T0), Ok(()));
        assert_eq!(check(&src, &key, false, T0 + 1_000), Err(Error::Fenced));
    }

    #[test]
    fn freshness_is_strictly_less_than_the_bound() {
        assert!(is_fresh(1000, 2999, 2000));
        assert!(!is_fresh(1000, 3000, 2000));
        // a clock reading before the fetch (a later request's early reading) is fresh
        assert!(is_fresh(1000, 900, 2000));
        assert!(!is_fresh(i64::MIN, i64::MAX, 2000));
    }
}
