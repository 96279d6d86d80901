//! The deny list (issue 16): one store of deny entries, fed by operators (the operator API),
//! Shared Signals (SETs from configured transmitters) and token status lists, checked on every
//! protected route whose `deny_check` is not `off`.
//!
//! - An entry has one **key**: a [`Kind`] and its values: an agent (`act.sub` at any depth of
//!   any credential's delegation chain), a user (`iss` + `sub`), a device id (`did`), a token
//!   (`iss` + `jti`), a proof-of-possession key (`cnf.jkt`), a client id (`client_id` or `azp`),
//!   an issuer (`iss`), a session (`iss` + `sid`) or an e-mail address (`email`, compared in
//!   lowercase; what Shared Signals name users by). Keys are stored and compared as a SHA-256
//!   digest of the kind and values ([`Key`]); the digest picks the shard.
//! - An entry also has a reason, a [`Source`], its creation time, the operator who made it, and
//!   an optional **time fence** (`fence`, unix seconds): without one the key is refused at once
//!   (401 `invalid_token`, [`Error::Revoked`]); with one, requests are allowed until the fence
//!   and refused from it on with 403 ([`Error::Fenced`]: the token is valid, the principal may no
//!   longer act).
//! - [`enforce`] is the phase: every key of the verified principal ([`keys_of`]) is looked up
//!   through the [`DenySource`] seam, which answers from the isolate's view ([`view`]: at most the
//!   propagation bound old, refreshed from the store past it) or, for `deny_check = "strict"`,
//!   from the store itself. A store that cannot be reached when it must be asked is
//!   [`Error::DenyStoreUnavailable`] (503): never an allow.
//! - [`wire`]: the store's protocol, shared by the Worker and the Durable Object; [`api`]: the
//!   operator API's requests and answers.

pub mod api;
pub mod view;
pub mod wire;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

use crate::gate::phase::record::Principal;
use crate::jose::Claims;
use crate::policy::compile::deny::DenyCheck;
use crate::Error;

/// What a deny entry is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Agent,
    User,
    Device,
    Token,
    Jkt,
    Client,
    Issuer,
    Session,
    Email,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Agent,
        Kind::User,
        Kind::Device,
        Kind::Token,
        Kind::Jkt,
        Kind::Client,
        Kind::Issuer,
        Kind::Session,
        Kind::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::User => "user",
            Kind::Device => "device",
            Kind::Token => "token",
            Kind::Jkt => "jkt",
            Kind::Client => "client",
            Kind::Issuer => "issuer",
            Kind::Session => "session",
            Kind::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The members that name the key in the operator API and the store, in order.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::User => &["iss", "sub"],
            Kind::Token => &["iss", "jti"],
            Kind::Session => &["iss", "sid"],
            _ => &["value"],
        }
    }
}

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Operator,
    SharedSignal,
    StatusList,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Operator => "operator",
            Source::SharedSignal => "shared_signal",
            Source::StatusList => "status_list",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        [Source::Operator, Source::SharedSignal, Source::StatusList]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A key: its kind and values, as the digest the store is keyed by, and its shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// SHA-256 over the length-prefixed domain, kind and values ([`digest`]); the store and
    /// its protocol carry it as base64url text ([`Key::digest`]).
    pub raw: [u8; 32],
    pub shard: u8,
}

impl Key {
    /// The key of `kind` with `values` (e-mail addresses in lowercase) over `shards` shards.
    pub fn new(kind: Kind, values: &[&str], shards: u8) -> Key {
        Key::from_raw(digest(kind, values), shards)
    }

    /// The key of a digest over `shards` shards: its first byte picks the shard.
    pub fn from_raw(raw: [u8; 32], shards: u8) -> Key {
        let [first, ..] = raw;
        Key {
            shard: first % shards.max(1),
            raw,
        }
    }

    /// The digest as the store keeps it: 43 base64url characters.
    pub fn digest(&self) -> String {
        crate::jose::b64::encode(&self.raw)
    }
}

/// The digest of a key: SHA-256 over `attestgate-deny`, the kind and the values, each preceded
/// by its length in bytes (8 bytes, big-endian): what [`crate::gate::digest::parts`] makes of
/// them, streamed (no list of parts, e-mail addresses lowercased through a stack buffer).
pub fn digest(kind: Kind, values: &[&str]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    fn part(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    part(&mut h, b"attestgate-deny");
    part(&mut h, kind.as_str().as_bytes());
    for value in values {
        if kind != Kind::Email {
            part(&mut h, value.as_bytes());
            continue;
        }
        h.update((value.len() as u64).to_be_bytes());
        let mut buf = [0u8; 64];
        for chunk in value.as_bytes().chunks(buf.len()) {
            for (b, c) in buf.iter_mut().zip(chunk) {
                *b = c.to_ascii_lowercase();
            }
            h.update(buf.get(..chunk.len()).unwrap_or_default());
        }
    }
    h.finalize().into()
}

/// Per isolate, the digests of the keys it computed last (issue 16, the fresh-view cost): a
/// principal's issuer, user, agents, device, client, session, e-mail and key are the same on
/// every token it presents, so each is hashed once, not on every request (only the token key,
/// `iss` + `jti`, is new with each token). Direct-mapped, [`KeyMemo::SLOTS`] slots, each kind
/// and values compared exactly (a colliding slot is replaced, never taken for another key);
/// keys whose values are longer than [`KeyMemo::MAX_BYTES`] together are not kept.
#[derive(Debug, Default)]
pub struct KeyMemo {
    slots: RefCell<Vec<Option<Memo>>>,
}

#[derive(Debug)]
struct Memo {
    kind: Kind,
    /// Each value as its length (4 bytes, little-endian) then its bytes.
    values: Box<[u8]>,
    raw: [u8; 32],
}

impl KeyMemo {
    pub const SLOTS: usize = 256;
    pub const MAX_BYTES: usize = 256;

    /// [`digest`] of `kind` and `values`, from the memo when it holds them.
    pub fn digest(&self, kind: Kind, values: &[&str]) -> [u8; 32] {
        let size: usize = values.iter().map(|v| v.len() + 4).sum();
        if size > Self::MAX_BYTES {
            return digest(kind, values);
        }
        // FNV-1a over the kind and the length-prefixed values.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |b: u8| hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        mix(kind as u8);
        for v in values {
            // (`size` bounds every length: each fits a byte of the hash input)
            mix(v.len() as u8);
            v.bytes().for_each(&mut mix);
        }
        let slot = (hash % Self::SLOTS as u64) as usize;
        let same = |m: &Memo| m.kind == kind && encoded_eq(&m.values, values);
        if let Some(m) = self.slots.borrow().get(slot).and_then(Option::as_ref) {
            if same(m) {
                return m.raw;
            }
        }
        let raw = digest(kind, values);
        let mut encoded = Vec::with_capacity(size);
        for v in values {
            encoded.extend_from_slice(&(v.len() as u32).to_le_bytes());
            encoded.extend_from_slice(v.as_bytes());
        }
        let mut slots = self.slots.borrow_mut();
        if slots.is_empty() {
            slots.resize_with(Self::SLOTS, || None);
        }
        if let Some(s) = slots.get_mut(slot) {
            *s = Some(Memo {
                kind,
                values: encoded.into_boxed_slice(),
                raw,
            });
        }
        raw
    }
}

/// Whether `encoded` (as [`Memo::values`]) is exactly `values`.
fn encoded_eq(mut encoded: &[u8], values: &[&str]) -> bool {
    for v in values {
        let Some((len, rest)) = encoded.split_first_chunk::<4>() else {
            return false;
        };
        if u32::from_le_bytes(*len) as usize != v.len() {
            return false;
        }
        let Some((bytes, rest)) = rest.split_at_checked(v.len()) else {
            return false;
        };
        if bytes != v.as_bytes() {
            return false;
        }
        encoded = rest;
    }
    encoded.is_empty()
}

/// One entry as a lookup sees it: its id and its fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub id: String,
    pub fence: Option<i64>,
}

/// The refusal of a request whose keys have `hits`, at `now` (unix seconds): an entry without a
/// fence refuses at once (401), one whose fence has passed refuses with 403; an entry whose
/// fence is still ahead allows. A revocation wins over a fence. `Err` carries the entry id.
pub fn verdict(hits: &[Hit], now: i64) -> Result<(), (Error, String)> {
    if let Some(h) = hits.iter().find(|h| h.fence.is_none()) {
        return Err((Error::Revoked, h.id.clone()));
    }
    match hits
        .iter()
        .filter(|h| h.fence.is_some_and(|f| now >= f))
        .min_by_key(|h| h.fence)
    {
        Some(h) => Err((Error::Fenced, h.id.clone())),
        None => Ok(()),
    }
}

/// Every key of one verified credential's claims (their digests from `memo` where it holds
/// them).
pub fn keys_of_claims(claims: &Claims, shards: u8, memo: Option<&KeyMemo>, out: &mut Vec<Key>) {
    let map = claims.map();
    let text = |name: &str| map.get(name).and_then(|v| v.as_str());
    let iss = claims.iss().unwrap_or("");
    let mut push = |kind: Kind, values: &[&str]| {
        let raw = match memo {
            Some(memo) => memo.digest(kind, values),
            None => digest(kind, values),
        };
        let key = Key::from_raw(raw, shards);
        if !out.contains(&key) {
            out.push(key);
        }
    };
    push(Kind::Issuer, &[iss]);
    if let Some(sub) = claims.sub() {
        push(Kind::User, &[iss, sub]);
    }
    if let Some(jti) = claims.jti() {
        push(Kind::Token, &[iss, jti]);
    }
    if let Some(sid) = text("sid") {
        push(Kind::Session, &[iss, sid]);
    }
    if let Some(did) = text("did") {
        push(Kind::Device, &[did]);
    }
    if let Some(email) = text("email") {
        push(Kind::Email, &[email]);
    }
    for name in ["client_id", "azp"] {
        if let Some(client) = text(name) {
            push(Kind::Client, &[client]);
        }
    }
    if let Some(jkt) = claims.get_path(&["cnf", "jkt"]).and_then(|v| v.as_str()) {
        push(Kind::Jkt, &[jkt]);
    }
    // Every actor of the delegation chain, at any depth (the chain walker's own depth limit
    // bounds it).
    for level in crate::policy::act::chain(map) {
        if let Some(sub) = level.sub() {
            push(Kind::Agent, &[sub]);
        }
    }
}

/// Every key of the verified principal, each once.
pub fn keys_of(principal: &Principal<'_>, shards: u8, memo: Option<&KeyMemo>) -> Vec<Key> {
    let mut out = Vec::new();
    for (_, claims) in &principal.tokens {
        keys_of_claims(claims, shards, memo, &mut out);
    }
    out
}

/// A boxed future of the seam (the seam is used through `dyn`).
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Where the entries of a request's keys come from.
pub trait DenySource {
    /// The entries for `keys` at `now_ms`: from a view at most the propagation bound old
    /// (`strict` false) or from the store itself (`strict` true). `Err` when the store must be
    /// asked and cannot be reached ([`Error::DenyStoreUnavailable`]).
    fn hits<'a>(
        &'a self,
        keys: &'a [Key],
        strict: bool,
        now_ms: i64,
    ) -> Pending<'a, Result<Vec<Hit>, Error>>;

    /// The text of the Status List Token at `uri` (concurrent asks for one URI share one
    /// fetch); [`Error::StatusListUnavailable`] when it cannot be had.
    fn list_token<'a>(&'a self, _uri: &'a str) -> Pending<'a, Result<String, Error>> {
        Box::pin(async { Err(Error::StatusListUnavailable) })
    }

    /// The isolate's memo of key digests, if it keeps one.
    fn memo(&self) -> Option<&KeyMemo> {
        None
    }
}

/// A source for a gateway without a deny store: every lookup fails closed (used where a route
/// would check and no store was given).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDenyStore;

impl DenySource for NoDenyStore {
    fn hits<'a>(&'a self, _: &'a [Key], _: bool, _: i64) -> Pending<'a, Result<Vec<Hit>, Error>> {
        Box::pin(async { Err(Error::DenyStoreUnavailable) })
    }
}

/// The deny phase on a route: its principal's keys against the deny list. The refusing entry's
/// id goes to `entry` (the decision record and the log line), never to the response.
pub async fn enforce(
    check: DenyCheck,
    shards: u8,
    principal: &Principal<'_>,
    source: &dyn DenySource,
    now_ms: i64,
    entry: &mut Option<String>,
) -> Result<(), Error> {
    if check == DenyCheck::Off {
        return Ok(());
    }
    let keys = keys_of(principal, shards, source.memo());
    if keys.is_empty() {
        return Ok(());
    }
    let hits = source
        .hits(&keys, check == DenyCheck::Strict, now_ms)
        .await?;
    verdict(&hits, now_ms.div_euclid(1000)).map_err(|(e, id)| {
        *entry = Some(id);
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_kind_and_part_boundaries_and_email_case() {
        let a = Key::new(Kind::User, &["i", "s"], 4);
        assert_ne!(a, Key::new(Kind::Token, &["i", "s"], 4));
        assert_ne!(a, Key::new(Kind::User, &["is", ""], 4));
        assert_eq!(a, Key::new(Kind::User, &["i", "s"], 4));
        assert_eq!(
            Key::new(Kind::Email, &["Alice@Example.COM"], 4),
            Key::new(Kind::Email, &["alice@example.com"], 4)
        );
        assert_ne!(
            Key::new(Kind::Agent, &["A"], 4),
            Key::new(Kind::Agent, &["a"], 4)
        );
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert!(Key::new(kind, &["x"], 7).shard < 7);
        }
        assert_eq!(Kind::parse("Agent"), None);
    }

    #[test]
    fn the_digest_is_the_stores_format() {
        // Vectors from Python's hashlib (SHA-256 over each part's 8-byte big-endian length and
        // bytes, base64url): the entries already in a store keep matching.
        let token = format!("jti-{}", "x".repeat(60));
        for (kind, values, text, shard) in [
            (
                Kind::Agent,
                vec!["agent:planner"],
                "q6FTO56Icg3jOq5qkBqjoaMniUzLHuS3JcrSLKVOdeY",
                3,
            ),
            (
                Kind::Token,
                vec!["https://idp.example", token.as_str()],
                "SnfHG5noJOj2qTPBnzjU0J4FXwLPttb5Z8Kbg_2MN4E",
                2,
            ),
            (
                Kind::Email,
                vec!["Alice@EXAMPLE.com"],
                "BI0tuKOq282oDoa3R-hhA9NrUC85LfNPUPE5wL5MZRQ",
                0,
            ),
        ] {
            let key = Key::new(kind, &values, 4);
            assert_eq!(
                (key.digest().as_str(), key.shard),
                (text, shard),
                "{kind:?}"
            );
        }
        // The streamed digest is `digest::parts` over the same parts, e-mail lowercased, for
        // values across the lowercase buffer's boundary too.
        for len in [0, 1, 63, 64, 65, 200] {
            let mixed: String = (0..len)
                .map(|i| if i % 2 == 0 { 'A' } else { 'b' })
                .collect();
            for kind in Kind::ALL {
                let values = [mixed.as_str(), "second"];
                let n = kind.fields().len().max(1);
                let values = values.get(..n.min(2)).unwrap();
                let lower: Vec<String> = values
                    .iter()
                    .map(|v| {
                        if kind == Kind::Email {
                            v.to_ascii_lowercase()
                        } else {
                            (*v).to_owned()
                        }
                    })
                    .collect();
                let mut parts = vec!["attestgate-deny", kind.as_str()];
                parts.extend(lower.iter().map(String::as_str));
                assert_eq!(digest(kind, values), crate::gate::digest::parts(&parts));
            }
        }
    }

    #[test]
    fn the_memo_answers_what_the_digest_does_and_never_another_keys_digest() {
        let memo = KeyMemo::default();
        let long = "v".repeat(KeyMemo::MAX_BYTES + 1);
        let mut cases: Vec<(Kind, Vec<String>)> = Vec::new();
        for i in 0..(3 * KeyMemo::SLOTS) {
            cases.push((Kind::Agent, vec![format!("agent:{i}")]));
            cases.push((Kind::User, vec!["i".into(), format!("s{i}")]));
            // Same bytes, other split, other kind: other keys.
            cases.push((Kind::User, vec![format!("i{i}"), String::new()]));
            cases.push((Kind::Device, vec![format!("agent:{i}")]));
        }
        cases.push((Kind::Email, vec!["Bob@Example.COM".into()]));
        cases.push((Kind::Email, vec!["bob@example.com".into()]));
        cases.push((Kind::Agent, vec![long]));
        // Twice over: the second pass answers from the slots the first one left.
        for _ in 0..2 {
            for (kind, values) in &cases {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                assert_eq!(memo.digest(*kind, &values), digest(*kind, &values));
            }
        }
        let slots = memo.slots.borrow();
        assert_eq!(slots.len(), KeyMemo::SLOTS);
        assert!(slots
            .iter()
            .flatten()
            .all(|m| m.values.len() <= KeyMemo::MAX_BYTES));
        drop(slots);
        // A hit needs the exact kind and values.
        assert!(!encoded_eq(&[1, 0, 0, 0, b'a'], &["a", ""]));
        assert!(!encoded_eq(&[1, 0, 0, 0, b'a', 0, 0, 0, 0], &["a"]));
        assert!(!encoded_eq(&[2, 0, 0, 0, b'a'], &["a"]));
        assert!(encoded_eq(&[1, 0, 0, 0, b'a', 0, 0, 0, 0], &["a", ""]));
    }

    #[test]
    fn keys_from_the_memo_are_the_keys_without_it() {
        let claims = crate::jose::claims::validate(
            &crate::jose::b64::encode(
                serde_json::json!({
                    "iss": "https://idp", "sub": "alice", "jti": "t1", "email": "A@x.io",
                    "exp": 2_000_000_000, "act": {"sub": "agent:a", "act": {"sub": "agent:b"}},
                })
                .to_string()
                .as_bytes(),
            ),
            &crate::jose::ClaimRules::default(),
            1_900_000_000,
        )
        .unwrap();
        let memo = KeyMemo::default();
        let (mut plain, mut first, mut again) = (Vec::new(), Vec::new(), Vec::new());
        keys_of_claims(&claims, 4, None, &mut plain);
        keys_of_claims(&claims, 4, Some(&memo), &mut first);
        keys_of_claims(&claims, 4, Some(&memo), &mut again);
        assert_eq!(plain.len(), 6);
        assert_eq!(plain, first);
        assert_eq!(plain, again);
    }

    #[test]
    fn a_revocation_refuses_now_a_fence_from_its_time_on() {
        let revoked = Hit {
            id: "r".into(),
            fence: None,
        };
        let fence = |id: &str, at| Hit {
            id: id.into(),
            fence: Some(at),
        };
        assert_eq!(verdict(&[], 100), Ok(()));
        assert_eq!(verdict(&[fence("f", 101)], 100), Ok(()));
        assert_eq!(
            verdict(&[fence("f", 100)], 100),
            Err((Error::Fenced, "f".into()))
        );
        assert_eq!(
            verdict(&[fence("late", 90), fence("early", 50)], 100),
            Err((Error::Fenced, "early".into()))
        );
        assert_eq!(
            verdict(&[fence("f", 50), revoked.clone()], 100),
            Err((Error::Revoked, "r".into()))
        );
    }

    #[test]
    fn every_identifier_of_a_credential_is_a_key() {
        let claims = crate::jose::claims::validate(
            &crate::jose::b64::encode(
                serde_json::json!({
                    "iss": "https://idp", "sub": "alice", "jti": "t1", "sid": "s1",
                    "did": "dev-1", "email": "A@x.io", "client_id": "c1", "azp": "c2",
                    "cnf": {"jkt": "thumb"}, "exp": 2_000_000_000,
                    "act": {"sub": "agent:a", "act": {"sub": "agent:b", "act": {"sub": "agent:c"}}},
                })
                .to_string()
                .as_bytes(),
            ),
            &crate::jose::ClaimRules::default(),
            1_900_000_000,
        )
        .unwrap();
        let mut keys = Vec::new();
        keys_of_claims(&claims, 8, None, &mut keys);
        let want = [
            Key::new(Kind::Issuer, &["https://idp"], 8),
            Key::new(Kind::User, &["https://idp", "alice"], 8),
            Key::new(Kind::Token, &["https://idp", "t1"], 8),
            Key::new(Kind::Session, &["https://idp", "s1"], 8),
            Key::new(Kind::Device, &["dev-1"], 8),
            Key::new(Kind::Email, &["a@x.io"], 8),
            Key::new(Kind::Client, &["c1"], 8),
            Key::new(Kind::Client, &["c2"], 8),
            Key::new(Kind::Jkt, &["thumb"], 8),
            Key::new(Kind::Agent, &["agent:a"], 8),
            Key::new(Kind::Agent, &["agent:b"], 8),
            Key::new(Kind::Agent, &["agent:c"], 8),
        ];
        assert_eq!(keys, want);
    }
}
