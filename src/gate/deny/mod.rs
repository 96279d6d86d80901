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
    /// base64url of SHA-256 over the length-prefixed kind and values.
    pub digest: String,
    pub shard: u8,
}

impl Key {
    /// The key of `kind` with `values` (e-mail addresses in lowercase) over `shards` shards.
    pub fn new(kind: Kind, values: &[&str], shards: u8) -> Key {
        let lower;
        let values = if kind == Kind::Email {
            lower = values
                .iter()
                .map(|v| v.to_ascii_lowercase())
                .collect::<Vec<_>>();
            lower.iter().map(String::as_str).collect::<Vec<_>>()
        } else {
            values.to_vec()
        };
        let mut parts = vec!["attestgate-deny", kind.as_str()];
        parts.extend(values);
        let digest = crate::gate::digest::parts(&parts);
        let first = digest.first().copied().unwrap_or(0);
        Key {
            digest: crate::jose::b64::encode(&digest),
            shard: first % shards.max(1),
        }
    }
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

/// Every key of one verified credential's claims.
pub fn keys_of_claims(claims: &Claims, shards: u8, out: &mut Vec<Key>) {
    let map = claims.map();
    let text = |name: &str| map.get(name).and_then(|v| v.as_str());
    let iss = claims.iss().unwrap_or("");
    let mut push = |kind: Kind, values: &[&str]| {
        let key = Key::new(kind, values, shards);
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
pub fn keys_of(principal: &Principal<'_>, shards: u8) -> Vec<Key> {
    let mut out = Vec::new();
    for (_, claims) in &principal.tokens {
        keys_of_claims(claims, shards, &mut out);
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
    let keys = keys_of(principal, shards);
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
        keys_of_claims(&claims, 8, &mut keys);
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
