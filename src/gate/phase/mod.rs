//! The phases of one decision, in the order SPEC §3 fixes, composed into [`decide`]. Each phase
//! is a pure planner with native tests; the Worker (`src/edge`) executes the plans.
//!
//! 1. [`request`]: the gateway's own endpoints (the challenge endpoint), else route lookup;
//! 2. [`authenticate`]: for every provider the route names, its credential family extracts,
//!    verifies and binds the credential: the verified [`record::Principal`];
//! 3. [`authorize`]: the route's requirement, scopes, claim constraints and delegation depth;
//! 4. [`single_use`]: the nonces and `jti`s the families queued, through the [`ReplayGuard`],
//!    only now — a forged or unauthorised token never burns a nonce;
//! 5. [`forward`]: the target URL and every header to delete and to set;
//! 6. [`response`]: what the client gets back (the origin's response and the headers the gateway
//!    adds, or the gateway's own answer);
//! 7. [`record`]: the [`Decision`] as a value, for the [`record::DecisionSink`]s.
//!
//! Everything with side effects comes in through the seams of [`crate::gate::seams`], gathered
//! in an [`Env`]. Time is a parameter.

use crate::error::FreshNonce;
use crate::gate::extract::HeaderSource;
use crate::gate::family::CredentialFamily;
use crate::gate::seams::{KeySource, NonceKeySource, Random, ReplayGuard, SignatureVerifier};
use crate::gate::Gate;
use crate::Error;

pub mod authenticate;
pub mod authorize;
pub mod forward;
pub mod record;
pub mod request;
pub mod response;
pub mod single_use;

pub use forward::ForwardPlan;
pub use record::{Decision, DecisionSink, Outcome, Principal, Verdict};
pub use request::Request;
pub use response::{Answer, MaskPlan, ResponsePlan};

/// The seams, per-isolate state and clock of one decision.
pub struct Env<'a, K, V, R> {
    pub keys: &'a K,
    pub verifier: &'a V,
    pub replay: &'a R,
    /// The nonce MAC key, asked for only where a nonce is issued or checked (the Worker reads
    /// the secret lazily). `None` when `ATTESTGATE_NONCE_KEY` is missing or unusable.
    pub nonce_key: &'a dyn NonceKeySource,
    /// Randomness for the nonces the gateway issues.
    pub random: &'a dyn Random,
    /// The challenge endpoint's per-client buckets (per isolate).
    pub challenges: &'a dyn request::Buckets,
    /// Unix seconds.
    pub now: i64,
    /// Unix milliseconds (the challenge endpoint's rate limit).
    pub now_ms: i64,
}

/// Decide one request: every phase in order, to a [`Decision`] with the plans the executor
/// runs. Whatever the outcome, the decision records what was learned.
pub async fn decide<'a, H, K, V, R>(
    gate: &'a Gate,
    req: &Request<'a, H>,
    env: &Env<'_, K, V, R>,
    request_id: &'a str,
) -> Decision<'a>
where
    H: HeaderSource + ?Sized,
    K: KeySource,
    V: SignatureVerifier,
    R: ReplayGuard,
{
    let mut d = Decision::new(request_id, req.method, req.url.path);
    // 1. The request phase: the gateway's own endpoints, else the route.
    let route = match request::plan(gate, req) {
        request::Plan::Endpoint(endpoint, allowed) => {
            d.route = Some(endpoint.label());
            let answered = allowed
                .map_err(request::EndpointRefusal::from)
                .and_then(|()| own_endpoint(gate, endpoint, req, env));
            match answered {
                Ok(answer) => {
                    d.outcome = Outcome::Endpoint(endpoint);
                    d.status = Some(answer.status);
                    d.response = ResponsePlan::Own(answer);
                }
                Err(refused) => {
                    // The endpoints' refusals (405, 429, 503) carry no challenge and no nonce.
                    let mut wire = refused.error.wire(&gate.realm);
                    if let Some(secs) = refused.retry_after_secs {
                        wire.retry_after = Some(secs);
                    }
                    let answer = Answer::refusal(&wire, request_id, None);
                    d.refuse(refused.error, Some(answer));
                }
            }
            return d;
        }
        request::Plan::Route(route) => route,
    };
    let outcome = match route {
        Err(e) => Err(e),
        Ok(route) => {
            d.route = Some(&route.id);
            route_phases(gate, route, req, env, &mut d).await
        }
    };
    match outcome {
        Ok(plan) => d.outcome = Outcome::Forward(plan),
        Err(e) => {
            let answer = refusal(gate, d.route, e, request_id, env);
            d.refuse(e, Some(answer));
        }
    }
    d
}

/// The answer of one of the gateway's own endpoints.
fn own_endpoint<H, K, V, R>(
    gate: &Gate,
    endpoint: request::Endpoint,
    req: &Request<'_, H>,
    env: &Env<'_, K, V, R>,
) -> Result<Answer, request::EndpointRefusal>
where
    H: HeaderSource + ?Sized,
{
    match endpoint {
        request::Endpoint::Challenge => {
            let nonce = request::challenge(
                gate,
                req,
                env.challenges,
                env.now_ms,
                env.nonce_key.nonce_key(),
                env.random,
                env.now,
            )?;
            Ok(Answer::challenge(nonce, gate.challenge_ttl_secs))
        }
    }
}

/// Phases 2–6 on a matched route: the forward plan, and the response plan in `d`.
async fn route_phases<'a, H, K, V, R>(
    gate: &'a Gate,
    route: &'a crate::policy::Route,
    req: &Request<'a, H>,
    env: &Env<'_, K, V, R>,
    d: &mut Decision<'a>,
) -> Result<ForwardPlan<'a>, Error>
where
    H: HeaderSource + ?Sized,
    K: KeySource,
    V: SignatureVerifier,
    R: ReplayGuard,
{
    let mut pending = Vec::new();
    if !route.is_public() {
        authenticate::authenticate(
            gate,
            route,
            req,
            env,
            &mut d.principal,
            &mut d.provider,
            &mut pending,
        )
        .await?;
    }
    let claims = authorize::authorize(gate, route, &d.principal)?;
    single_use::run(pending, env.replay, env.now).await?;
    let plan = forward::plan(gate, route, claims, req);
    // RFC 9449 §8.2: the proof's nonce is spent; the response carries the next one.
    let next_nonce = d
        .principal
        .tokens
        .iter()
        .any(|(p, _)| p.family.needs_next_nonce());
    if next_nonce {
        d.response = ResponsePlan::origin(
            request::issue_nonce(gate, env.nonce_key.nonce_key(), env.random, env.now).ok(),
        );
    }
    // Issue 18: the route's mask, and whether it applies to this caller.
    if let (Some(mask), ResponsePlan::Origin { mask: slot, .. }) = (&route.mask, &mut d.response) {
        *slot = Some(response::MaskPlan {
            why: crate::gate::mask::applies(mask, &d.principal),
            vary: gate.mask_vary(route),
        });
    }
    Ok(plan)
}

/// The answer to a refusal on `route` (the route's challenges, SPEC §4), with a fresh nonce
/// where the wire form asks for one.
pub fn refusal<K, V, R>(
    gate: &Gate,
    route: Option<&str>,
    e: Error,
    request_id: &str,
    env: &Env<'_, K, V, R>,
) -> Answer {
    let wire = e.wire_for(gate.challenge(route));
    let fresh = match wire.fresh_nonce {
        FreshNonce::No => None,
        _ => request::issue_nonce(gate, env.nonce_key.nonce_key(), env.random, env.now).ok(),
    };
    Answer::refusal(&wire, request_id, fresh)
}
