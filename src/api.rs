//! The library API of the core: what the `attestgate` command-line tool, the native tests, the
//! benches and any embedder use to run the gateway's real decision outside the Worker.
//!
//! Three steps, all pure (no I/O, the clock is a parameter):
//!
//! 1. compile a policy: [`compile_dir`] / [`compile_toml`] (natively; the Worker embeds the
//!    compiled form at build time: [`Policy::from_compiled`]);
//! 2. build a [`Gateway`] from it (per isolate, once);
//! 3. [`Gateway::decide`] one [`Request`] at a given time, with the seams supplied by the caller:
//!    where keys come from ([`KeySource`]), how signatures are checked ([`SignatureVerifier`]),
//!    single-use state ([`ReplayGuard`]) and the challenge-nonce MAC key. Ready-made in-memory
//!    seams are here too: [`StaticKeys`], [`MemoryReplay`], [`MemorySecrets`] and, natively,
//!    [`NativeVerifier`] and [`NativeSigner`].
//!
//! The answer is a [`Decision`], the value the Worker's phases produce: its [`Verdict`] and
//! typed reason, the route, the verified [`Principal`], the [`Outcome`] (a [`ForwardPlan`]: the
//! target URL and every header to delete and to set; the gateway's own endpoint; or the typed
//! refusal) and the [`ResponsePlan`]. [`Decision::log_line`] is the Worker's log line;
//! [`DecisionSink`]s consume decisions. [`Decision::wire`] gives a refusal's exact wire form
//! (status, `error` code, `WWW-Authenticate`) through the gateway's one error mapping.
//!
//! This module is the stable surface: names here change only with a note in the changelog of
//! the README; everything under [`crate::gate`] is internal and may move.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::error::{Error, Wire};
pub use crate::gate::deny::view::{Clock, DenyStore, Refresh, View as DenyView, ViewSource};
pub use crate::gate::deny::{DenySource, Hit, Key as DenyKey, Kind as DenyKind, NoDenyStore};
pub use crate::gate::extract::HeaderSource;
pub use crate::gate::log::DecisionLog;
pub use crate::gate::nonce::{NonceKey, NonceRef};
pub use crate::gate::phase::record::{LogLines, Timings};
/// The former name of the forward plan (what an allowed request becomes).
pub use crate::gate::phase::ForwardPlan as Forward;
pub use crate::gate::phase::{
    Answer, Decision, DecisionSink, ForwardPlan, Outcome, Principal, ResponsePlan, Verdict,
};
pub use crate::gate::seams::{
    secret_keys, KeySource, MemorySecrets, Random, ReplayGuard, Secrets, SignatureVerifier, Signer,
    SystemRandom,
};
pub use crate::gate::signing::GatewayKeys;
pub use crate::gate::{Gate, KeySpec, ProviderRt};
pub use crate::jose::{block_on_ready, KeySet};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::jose::{NativeSigner, NativeVerifier};
pub use crate::policy::{Policy, PolicyError, Warning};

use crate::gate::body;
use crate::gate::phase::{self, Env};
use crate::gate::rate_limit::RateLimiter;
use crate::gate::url;

/// Compile every `*.toml` file of a policy folder, exactly as the Worker's build does.
#[cfg(not(target_arch = "wasm32"))]
pub fn compile_dir(dir: impl AsRef<std::path::Path>) -> Result<Policy, Vec<PolicyError>> {
    crate::policy::load_dir(dir.as_ref()).map(|(policy, _)| policy)
}

/// Compile one policy file given as text (`name` is used in every message).
#[cfg(not(target_arch = "wasm32"))]
pub fn compile_toml(name: &str, text: &str) -> Result<Policy, Vec<PolicyError>> {
    let file = crate::policy::parse_toml(name, text).map_err(|e| vec![e])?;
    crate::policy::compile(vec![file])
}

/// One request as an embedder has it: the method exactly as received, the absolute URL
/// (`https://host/path?query`, as the runtime hands it to a Worker) and the header pairs as
/// received (repeats are joined with `", "`, as the runtime's `Headers.get` does).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
}

/// The seams of one decision.
pub struct Seams<'a, K, V, R> {
    pub keys: &'a K,
    pub verifier: &'a V,
    pub replay: &'a R,
    /// The challenge-nonce MAC key (`ATTESTGATE_NONCE_KEY`); `None` makes the routes that check
    /// a nonce answer 503, as in the Worker.
    pub nonce_key: Option<&'a NonceKey>,
    /// Issue 14: the gateway's signing keys (`ATTESTGATE_SIGNING_KEY`); `None` makes the JWKS
    /// endpoint and the routes that sign answer 503, as in the Worker.
    pub signing_keys: Option<&'a GatewayKeys>,
    /// Issue 16: the deny list; `None` makes the routes that check it answer 503, as a Worker
    /// whose deny store cannot be reached.
    pub deny: Option<&'a dyn DenySource>,
}

/// The gateway's decision logic for one compiled policy.
#[derive(Debug)]
pub struct Gateway {
    gate: Gate,
    /// The challenge endpoint's per-client buckets, as the Worker keeps them per isolate.
    challenges: Mutex<RateLimiter>,
}

impl Gateway {
    /// Prepare a compiled policy for deciding requests (what the Worker does once per isolate).
    pub fn new(policy: Policy) -> Result<Self, Error> {
        Ok(Gateway {
            gate: Gate::new(policy)?,
            challenges: Mutex::new(RateLimiter::for_challenges()),
        })
    }

    /// The prepared policy and providers.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn policy(&self) -> &Policy {
        self.gate.policy()
    }

    /// Decide one request at `now` (unix seconds), exactly as the Worker does: its own
    /// endpoints (`POST {challenge_path}` issues a nonce, from the system's CSPRNG), else
    /// route, credentials, signatures, claims, bindings, the route's requirements, then the
    /// single-use checks, and the forward and response plans. The decision borrows the
    /// gateway, the request and `request_id`.
    pub async fn decide<'a, K, V, R>(
        &'a self,
        req: &Request<'a>,
        seams: &Seams<'_, K, V, R>,
        now: i64,
        request_id: &'a str,
    ) -> Decision<'a>
    where
        K: KeySource,
        V: SignatureVerifier,
        R: ReplayGuard,
    {
        self.decide_with_body(req, &[], seams, now, request_id)
            .await
    }

    /// [`Gateway::decide`] for a request with a body (issue 15): `body` exactly as received
    /// (empty when there is none). Routes that read their body check it as the Worker does
    /// ([`crate::gate::body::admit`] on the headers, then the cap); the others ignore it.
    pub async fn decide_with_body<'a, K, V, R>(
        &'a self,
        req: &Request<'a>,
        body: &'a [u8],
        seams: &Seams<'_, K, V, R>,
        now: i64,
        request_id: &'a str,
    ) -> Decision<'a>
    where
        K: KeySource,
        V: SignatureVerifier,
        R: ReplayGuard,
    {
        let Some(parts) = url::split(req.url) else {
            let path = req.url.split(['?', '#']).next().unwrap_or("");
            return Decision::refused(
                request_id,
                req.method,
                path,
                Error::MalformedRequest,
                &self.gate.realm,
            );
        };
        let request = phase::Request::new(req.method, parts, req.headers);
        let body = match self.gate.route(req.method, &request.host, parts.path) {
            Ok(route) => match body::admit(route, req.headers) {
                Ok(Some(_)) => body::Body::Bytes(body),
                Ok(None) => body::Body::Unread,
                Err(e) => body::Body::Refused(e),
            },
            Err(_) => body::Body::Unread,
        };
        let request = request.with_body(body);
        let env = Env {
            keys: seams.keys,
            verifier: seams.verifier,
            replay: seams.replay,
            nonce_key: &seams.nonce_key,
            random: &SystemRandom,
            challenges: &self.challenges,
            signing: &seams.signing_keys,
            deny: seams.deny.unwrap_or(&NoDenyStore),
            now,
            now_ms: now.saturating_mul(1000),
        };
        let mut decision = phase::decide(&self.gate, &request, &env, request_id).await;
        decision.timings.started_ms = now as f64 * 1000.0;
        decision
    }
}

/// Keys held in memory: a provider's inline JWKS as compiled, otherwise the key set given for
/// the provider by name (a JWKS read from a file, an HMAC secret). A provider with neither is
/// `KeysUnavailable`, as a Worker whose issuer cannot be reached.
#[derive(Debug, Default, Clone)]
pub struct StaticKeys {
    sets: HashMap<String, Arc<KeySet>>,
}

impl StaticKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Use `keys` for provider `provider`.
    pub fn insert(&mut self, provider: &str, keys: KeySet) {
        self.sets.insert(provider.to_owned(), Arc::new(keys));
    }

    /// Whether keys for `provider` are available (given here or inline in the policy).
    pub fn has(&self, provider: &ProviderRt) -> bool {
        self.sets.contains_key(&provider.name) || matches!(provider.keys, KeySpec::Inline(_))
    }
}

impl KeySource for StaticKeys {
    async fn keys(&self, provider: &ProviderRt, _refresh: bool) -> Result<Arc<KeySet>, Error> {
        if let Some(set) = self.sets.get(&provider.name) {
            return Ok(set.clone());
        }
        match &provider.keys {
            KeySpec::Inline(set) => Ok(set.clone()),
            KeySpec::Secret(..) => Err(Error::SecretUnavailable),
            KeySpec::Jwks { .. } => Err(Error::KeysUnavailable),
        }
    }
}

/// Single-use state in memory, with the nonce store's semantics: a nonce (already verified by
/// its MAC and expiry) is accepted the first time it is used; an id is accepted the first time
/// it is seen, until its expiry.
#[derive(Debug, Default)]
pub struct MemoryReplay {
    used: RefCell<HashMap<(u8, String), i64>>,
    /// Issue 15: session budgets by session key, charged as the Durable Object charges them.
    budgets: RefCell<HashMap<String, crate::gate::budget::State>>,
}

impl MemoryReplay {
    pub fn new() -> Self {
        Self::default()
    }

    fn first_use(&self, shard: u8, id: &str, exp: i64, now: i64) -> bool {
        let mut used = self.used.borrow_mut();
        used.retain(|_, until| *until >= now);
        let key = (shard, id.to_owned());
        if used.contains_key(&key) {
            return false;
        }
        used.insert(key, exp);
        true
    }
}

impl ReplayGuard for MemoryReplay {
    async fn consume(&self, nonce: &NonceRef, now: i64) -> Result<bool, Error> {
        Ok(nonce.exp >= now && self.first_use(nonce.shard, &nonce.id, nonce.exp, now))
    }

    async fn first_seen(&self, shard: u8, id: &str, exp: i64, now: i64) -> Result<bool, Error> {
        Ok(self.first_use(shard, id, exp, now))
    }

    async fn charge_budget(
        &self,
        session: &str,
        ask: &crate::gate::budget::Ask,
    ) -> Result<crate::gate::budget::Answer, Error> {
        let mut budgets = self.budgets.borrow_mut();
        let state = budgets.entry(session.to_owned()).or_default();
        let (next, answer) = crate::gate::budget::charge(state, ask);
        *state = next;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An embedder may share one gateway between threads (the challenge endpoint's buckets are
    /// behind a mutex here, in a `RefCell` per isolate in the Worker).
    #[test]
    fn a_gateway_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Gateway>();
    }
}
