//! The authenticator: one request, one matched route, one decision (SPEC §3 steps 2–10).
//!
//! Everything with side effects comes in through seams the tests fake:
//! [`KeySource`] (JWKS cache and secrets), [`SignatureVerifier`] (WebCrypto in the Worker, pure
//! Rust natively) and [`ReplayGuard`] (the nonce-store Durable Object). Time is a parameter.
//!
//! Order matters and is fixed here: extraction for every required provider first (so a duplicated
//! credential is `invalid_request` whatever else is wrong), then for each presented token parse,
//! key, signature, claims and bindings, then the route's requirements, and only when all of that
//! passed the single-use checks — so a forged or unauthorised token can never burn a nonce or a
//! `jti`.

use std::sync::Arc;

use crate::gate::binding;
use crate::gate::dpop;
use crate::gate::extract::{self, HeaderSource};
use crate::gate::log::DecisionLog;
use crate::gate::nonce::{self, NonceKey, NonceRef};
use crate::gate::runtime::{Gate, ProviderRt};
use crate::jose::{self, Claims, KeySet, SignatureVerifier};
use crate::policy::{Denial, HeaderPlan};
use crate::Error;

/// Where the keys of a provider come from (JWKS cache, inline JWKS, Worker secret).
#[allow(async_fn_in_trait)]
pub trait KeySource {
    /// The provider's keys. With `refresh`, the cached keys lacked the token's `kid`: the source
    /// may refetch (it rate-limits that itself).
    async fn keys(&self, provider: &ProviderRt, refresh: bool) -> Result<Arc<KeySet>, Error>;
}

/// Single-use state: challenge nonces and first-seen ids. `Err` only when the store cannot be
/// reached (then the request fails closed with 503).
#[allow(async_fn_in_trait)]
pub trait ReplayGuard {
    /// Consume a nonce issued by this gateway: `Ok(true)` exactly once.
    async fn consume(&self, nonce: &NonceRef, now: i64) -> Result<bool, Error>;
    /// Record an id until `exp`: `Ok(true)` the first time it is seen.
    async fn first_seen(&self, shard: u8, id: &str, exp: i64, now: i64) -> Result<bool, Error>;
}

/// The request as the pipeline sees it.
pub struct RequestView<'a, H: HeaderSource + ?Sized> {
    pub method: &'a str,
    /// `Host` without port, lowercase.
    pub host: &'a str,
    /// The raw path as received (before any decoding), without the query.
    pub raw_path: &'a str,
    /// The request URL without query and fragment, for DPoP `htu`.
    pub htu: &'a str,
    pub headers: &'a H,
}

/// What to do with an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub route_id: String,
    pub origin: String,
    pub plan: HeaderPlan,
    /// The route's `pass_headers` (override headers the client may still send; usually none).
    pub pass_headers: Vec<String>,
    /// A DPoP-bound token was accepted: the response should carry a fresh `DPoP-Nonce` (RFC 9449
    /// §8.2), since the one in the proof is now spent.
    pub dpop: bool,
}

/// The pipeline's seams and secrets for one request.
pub struct Env<'a, K, V, R> {
    pub keys: &'a K,
    pub verifier: &'a V,
    pub replay: &'a R,
    /// The nonce MAC key, asked for only by routes that check a nonce (the Worker reads the
    /// secret lazily). `None` when `ATTESTGATE_NONCE_KEY` is missing or unusable.
    pub nonce_key: &'a dyn NonceKeySource,
    pub now: i64,
}

/// Where the nonce MAC key comes from.
pub trait NonceKeySource {
    fn nonce_key(&self) -> Option<&NonceKey>;
}

impl NonceKeySource for Option<&NonceKey> {
    fn nonce_key(&self) -> Option<&NonceKey> {
        *self
    }
}

/// A pending single-use check, run only after every other check passed.
enum SingleUse {
    Challenge(NonceRef),
    DpopNonce(NonceRef),
    Jti { shard: u8, id: String, exp: i64 },
    DpopJti { shard: u8, id: String, exp: i64 },
}

/// Decide one request. Fills `log` with what was learned, whatever the outcome.
pub async fn decide<H, K, V, R>(
    gate: &Gate,
    req: &RequestView<'_, H>,
    env: &Env<'_, K, V, R>,
    log: &mut DecisionLog,
) -> Result<Forward, Error>
where
    H: HeaderSource + ?Sized,
    K: KeySource,
    V: SignatureVerifier,
    R: ReplayGuard,
{
    // Step 2: route lookup, fail closed.
    let route = gate.route(req.method, req.host, req.raw_path)?;
    log.route = Some(route.id.clone());
    if route.is_public() {
        log.verdict = "public";
        return Ok(Forward {
            route_id: route.id.clone(),
            origin: route.origin.clone(),
            plan: gate.evaluate(route, &()).map_err(denial_error)?,
            pass_headers: route.pass_headers.clone(),
            dpop: false,
        });
    }

    // Step 3: extraction for every provider the route names.
    let mut presented: Vec<(&ProviderRt, String)> = Vec::new();
    let mut missing = false;
    for provider in gate.route_providers(route) {
        let found =
            match extract::credential(req.headers, &provider.header, provider.scheme.as_deref()) {
                // A route that takes Bearer and DPoP tokens in the same header: the scheme sent
                // is another provider's, so this one has no token.
                Err(Error::MalformedCredential)
                    if scheme_of_sibling(gate, route, provider, req.headers) =>
                {
                    None
                }
                // RFC 9449 §7.1: a DPoP-bound token sent as a bearer token is answered with a DPoP
                // challenge (401 invalid_dpop_proof and a fresh nonce), so the client learns what to
                // send, rather than 400.
                Err(Error::MalformedCredential)
                    if provider.dpop
                        && extract::has_scheme(req.headers, &provider.header, "Bearer") =>
                {
                    return Err(Error::DpopProofMissing)
                }
                other => other?,
            };
        match found {
            Some(token) => presented.push((provider, token)),
            None => missing = true,
        }
    }
    if presented.is_empty() || (missing && Gate::requires_all(route)) {
        return Err(Error::MissingToken);
    }

    // Steps 4–7 for each presented token.
    let mut verified: Vec<(&ProviderRt, Claims)> = Vec::with_capacity(presented.len());
    let mut single_use: Vec<SingleUse> = Vec::new();
    for (provider, token) in &presented {
        log.provider = Some(provider.name.clone());
        let claims = verify_one(provider, token, env).await?;
        log.add_claims(claims.map());
        // RFC 9449 §7.2: a sender-constrained token (`cnf`: DPoP `jkt`, mTLS `x5t#S256`, ...)
        // is refused by a provider that cannot check the proof, never taken as a bearer token.
        if !provider.dpop && claims.map().contains_key("cnf") {
            return Err(Error::SenderConstrained);
        }
        bindings(gate, provider, token, &claims, req, env, &mut single_use).await?;
        verified.push((provider, claims));
    }
    log.provider = None;

    // Step 8: the route's requirement, scopes, claims, delegation, forward plan.
    let tokens: Vec<(&str, &serde_json::Map<String, serde_json::Value>)> = verified
        .iter()
        .map(|(p, c)| (p.name.as_str(), c.map()))
        .collect();
    let plan = gate
        .evaluate(route, tokens.as_slice())
        .map_err(denial_error)?;

    // Step 9: single-use checks, only now.
    for check in single_use {
        let (fresh, refused) = match &check {
            SingleUse::Challenge(n) => {
                (env.replay.consume(n, env.now).await?, Error::ChallengeUsed)
            }
            SingleUse::DpopNonce(n) => (
                env.replay.consume(n, env.now).await?,
                Error::DpopNonceRequired,
            ),
            SingleUse::Jti { shard, id, exp } => (
                env.replay.first_seen(*shard, id, *exp, env.now).await?,
                Error::ReplayedToken,
            ),
            SingleUse::DpopJti { shard, id, exp } => (
                env.replay.first_seen(*shard, id, *exp, env.now).await?,
                Error::DpopProofInvalid,
            ),
        };
        if !fresh {
            return Err(refused);
        }
    }

    log.verdict = "allow";
    Ok(Forward {
        route_id: route.id.clone(),
        origin: route.origin.clone(),
        plan,
        pass_headers: route.pass_headers.clone(),
        dpop: verified.iter().any(|(p, _)| p.dpop),
    })
}

/// Whether another provider of `route` reads `provider`'s header and the request uses that
/// provider's scheme there.
fn scheme_of_sibling<H: HeaderSource + ?Sized>(
    gate: &Gate,
    route: &crate::policy::Route,
    provider: &ProviderRt,
    headers: &H,
) -> bool {
    gate.route_providers(route).any(|other| {
        other.name != provider.name
            && other.header == provider.header
            && other
                .scheme
                .as_deref()
                .is_some_and(|s| extract::has_scheme(headers, &other.header, s))
    })
}

/// Parse, select the key (one refresh on an unknown `kid`), verify, validate claims.
async fn verify_one<K: KeySource, V: SignatureVerifier, R>(
    provider: &ProviderRt,
    token: &str,
    env: &Env<'_, K, V, R>,
) -> Result<Claims, Error> {
    let keys = env.keys.keys(provider, false).await?;
    match jose::verify_token(token, &provider.profile, &keys, env.verifier, env.now).await {
        Err(jose::Error::UnknownKey) if provider.refreshable => {
            let keys = env.keys.keys(provider, true).await?;
            Ok(jose::verify_token(token, &provider.profile, &keys, env.verifier, env.now).await?)
        }
        other => Ok(other?),
    }
}

/// Step 7: DPoP proof, token binding, challenge nonce; and the provider's `jti` replay rule.
async fn bindings<H, K, V, R>(
    gate: &Gate,
    provider: &ProviderRt,
    token: &str,
    claims: &Claims,
    req: &RequestView<'_, H>,
    env: &Env<'_, K, V, R>,
    single_use: &mut Vec<SingleUse>,
) -> Result<(), Error>
where
    H: HeaderSource + ?Sized,
    V: SignatureVerifier,
{
    if provider.dpop {
        let proof = match extract::credential(req.headers, "dpop", None) {
            Ok(Some(proof)) => proof,
            Ok(None) => return Err(Error::DpopProofMissing),
            Err(Error::DuplicateCredential) => return Err(Error::DuplicateCredential),
            Err(_) => return Err(Error::DpopProofInvalid),
        };
        let checked = dpop::verify(
            &proof,
            &dpop::Expect {
                method: req.method,
                htu: req.htu,
                access_token: token,
                jkt: claims.get_path(&["cnf", "jkt"]).and_then(|v| v.as_str()),
                skew_secs: gate.skew_secs,
                now: env.now,
            },
            env.verifier,
        )
        .await?;
        let key = env.nonce_key.nonce_key().ok_or(Error::SecretUnavailable)?;
        let nonce_text = checked.nonce.as_deref().ok_or(Error::DpopNonceRequired)?;
        let nonce = nonce::verify(
            key,
            gate.nonce_shards,
            nonce_text,
            env.now,
            gate.challenge_ttl_secs,
            gate.skew_secs,
        )
        .map_err(|_| Error::DpopNonceRequired)?;
        single_use.push(SingleUse::DpopNonce(nonce));
        let (shard, id) = replay_id(gate, "dpop", &checked.jkt, &checked.jti);
        single_use.push(SingleUse::DpopJti {
            shard,
            id,
            exp: env
                .now
                .saturating_add(gate.challenge_ttl_secs.max(gate.skew_secs * 2)),
        });
    }
    if let Some(bind) = &provider.binding {
        binding::check(
            claims.get_path(bind.claim.segments()),
            req.headers.header(&bind.header).as_deref(),
        )?;
    }
    if let Some(claim) = &provider.nonce_claim {
        let key = env.nonce_key.nonce_key().ok_or(Error::SecretUnavailable)?;
        let text = claims
            .get_path(claim.segments())
            .and_then(|v| v.as_str())
            .ok_or(Error::ChallengeMissing)?;
        let nonce = nonce::verify(
            key,
            gate.nonce_shards,
            text,
            env.now,
            gate.challenge_ttl_secs,
            gate.skew_secs,
        )?;
        single_use.push(SingleUse::Challenge(nonce));
    }
    if provider.replay_jti {
        let jti = claims.jti().ok_or(Error::JtiMissing)?;
        let iss = claims
            .map()
            .get("iss")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let (shard, id) = replay_id(gate, "jti", iss, jti);
        let exp = claims.exp().saturating_add(gate.skew_secs);
        // The store keeps a record at most MAX_RECORD_SECS: a token that outlives it could be
        // replayed afterwards, so it is refused.
        if exp > env.now.saturating_add(crate::gate::store::MAX_RECORD_SECS) {
            return Err(Error::Token(jose::Error::LifetimeTooLong));
        }
        single_use.push(SingleUse::Jti { shard, id, exp });
    }
    Ok(())
}

/// A fixed-length store key and its shard for `(kind, scope, id)`: SHA-256 over the
/// length-prefixed parts, so no two different triples collide by concatenation.
fn replay_id(gate: &Gate, kind: &str, scope: &str, id: &str) -> (u8, String) {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [kind, scope, id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let shard = digest[0] % gate.nonce_shards.max(1);
    (shard, jose::b64::encode(&digest))
}

fn denial_error(denial: Denial) -> Error {
    Error::from(denial)
}
