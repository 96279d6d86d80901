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
#[cfg(attestgate_deny)]
use crate::gate::operator;
use crate::gate::seams::{KeySource, NonceKeySource, Random, ReplayGuard, SignatureVerifier};
use crate::gate::Gate;
use crate::Error;

pub mod authenticate;
pub mod authorize;
// Issue 19: the one-call encodings of the Worker's header read and forward.
pub mod crossing;
pub mod forward;
pub mod metadata;
pub mod receipt;
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
    /// Issue 14: the gateway's signing keys (the Worker reads the secrets lazily).
    pub signing: &'a dyn crate::gate::signing::SigningKeySource,
    /// Issue 16: the deny list's entries (the isolate's view of the deny store).
    pub deny: &'a dyn crate::gate::deny::DenySource,
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
        // Issue 16: compiled into the Worker only for a policy with `[operator]` or `[deny]`
        // (`build.rs`); without, the policy has no operator and the API answers 404.
        #[cfg(attestgate_deny)]
        request::Plan::Endpoint(request::Endpoint::Operator, _) => {
            operator_endpoint(gate, req, env, &mut d).await;
            return d;
        }
        #[cfg(attestgate_deny)]
        request::Plan::Endpoint(request::Endpoint::SharedSignals, Ok(()))
            if req.method == "POST" =>
        {
            d.route = Some(request::Endpoint::SharedSignals.label());
            d.outcome = Outcome::Endpoint(request::Endpoint::SharedSignals);
            d.operator_call = Some(operator::Call::Signals);
            d.status = Some(202);
            d.response = ResponsePlan::Own(Answer::json(202, String::new()));
            return d;
        }
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
            d.audit = route.audit;
            route_phases(gate, route, req, env, &mut d).await
        }
    };
    match outcome {
        Ok(plan) => d.outcome = Outcome::Forward(plan),
        Err(e) => {
            let mut answer = refusal(gate, d.route, e, request_id, req.url.origin, env);
            // Issue 15: a spent rate budget says exactly when its window ends.
            if let (Error::BudgetRate, Some(secs)) = (e, d.budget.retry_after) {
                for (name, value) in answer.headers.iter_mut() {
                    if *name == "retry-after" {
                        *value = secs.to_string();
                    }
                }
            }
            d.refuse(e, Some(answer));
        }
    }
    d
}

#[cfg(attestgate_deny)]
/// The operator API (issue 16): authenticate the operator ([`operator::authenticate`]), then
/// the endpoint's answer or the [`operator::Call`] for the executor. Refusals carry the operator
/// provider's challenges (and the scopes needed, for 403).
async fn operator_endpoint<'a, H, K, V, R>(
    gate: &'a Gate,
    req: &Request<'a, H>,
    env: &Env<'_, K, V, R>,
    d: &mut Decision<'a>,
) where
    H: HeaderSource + ?Sized,
    K: KeySource,
    V: SignatureVerifier,
    R: ReplayGuard,
{
    d.route = Some(request::Endpoint::Operator.label());
    let answered = match operator::authenticate(gate, req, env).await {
        Ok((id, provider, claims)) => {
            d.principal.tokens.push((provider, claims));
            let dispatched = operator::dispatch(req.method, req.url.path, req.url.query, &id);
            d.operator = Some(id);
            dispatched
        }
        Err(e) => Err(e),
    };
    let next_nonce = || {
        operator::provider(gate)
            .is_some_and(|p| p.family.needs_next_nonce())
            .then(|| {
                request::issue_nonce(gate, env.nonce_key.nonce_key(), env.random, env.now).ok()
            })
            .flatten()
    };
    match answered {
        Ok(dispatch) => {
            d.outcome = Outcome::Endpoint(request::Endpoint::Operator);
            let mut answer = match dispatch {
                operator::Dispatch::Answer(answer) => answer,
                operator::Dispatch::Call(call) => {
                    d.operator_call = Some(call);
                    Answer::json(500, String::new())
                }
            };
            if let Some(nonce) = next_nonce() {
                answer.headers.push((response::DPOP_NONCE, nonce));
            }
            d.status = Some(answer.status);
            d.response = ResponsePlan::Own(answer);
        }
        Err(e) => {
            let wire = e.wire_at(&operator::challenge(gate), req.url.origin);
            let fresh = match wire.fresh_nonce {
                FreshNonce::No => None,
                _ => {
                    request::issue_nonce(gate, env.nonce_key.nonce_key(), env.random, env.now).ok()
                }
            };
            let answer = Answer::refusal(&wire, d.request_id, fresh);
            d.refuse(e, Some(answer));
        }
    }
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
        // Answered by `operator_endpoint` (it authenticates first, asynchronously).
        request::Endpoint::Operator => Err(Error::Route(crate::policy::Miss::NoRoute).into()),
        // Issue 16: the receiver's metadata; a pushed SET is the executor's (it reads the body).
        #[cfg(not(attestgate_deny))]
        request::Endpoint::SharedSignals => Err(Error::Route(crate::policy::Miss::NoRoute).into()),
        #[cfg(attestgate_deny)]
        request::Endpoint::SharedSignals => {
            let ssf = gate
                .policy()
                .shared_signals()
                .ok_or(Error::Route(crate::policy::Miss::NoRoute))?;
            let endpoint = format!("{}{}", req.url.origin, ssf.path);
            let issuers: Vec<&str> = ssf
                .transmitters
                .iter()
                .filter_map(|t| gate.policy().provider(t))
                .filter_map(|p| p.issuer.as_deref())
                .collect();
            Ok(Answer::json(
                200,
                crate::gate::ssf::metadata(&endpoint, &ssf.audience, &issuers),
            ))
        }
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
        // Issue 14 item 5: RFC 9728 protected-resource metadata.
        request::Endpoint::ResourceMetadata => Ok(metadata::answer(
            gate.resources(),
            req.method,
            req.url.origin,
            &req.host,
            metadata::requested(req.url.path).unwrap_or_default(),
            &gate.challenge_path,
        )?),
        request::Endpoint::Jwks => Ok(crate::gate::signing::jwks_answer(
            env.signing.signing_keys()?,
        )),
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
    // Issue 15: the body, on a route that reads it (413 / 415 / 400 before any token work).
    let body = crate::gate::body::for_route(route, req.body)?;
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
    // Issue 16: the deny list, on the verified principal, before anything is authorised or
    // consumed.
    #[cfg(attestgate_deny)]
    crate::gate::deny::enforce(
        route.deny_check,
        gate.deny_shards,
        &d.principal,
        env.deny,
        env.now_ms,
        &mut d.deny_entry,
    )
    .await?;
    // Issue 16: token status lists of the verified credentials.
    #[cfg(attestgate_deny)]
    crate::gate::status_list::enforce(
        gate,
        route,
        &d.principal,
        env.keys,
        env.verifier,
        env.deny,
        env.now,
    )
    .await?;
    let claims = authorize::authorize(gate, route, &d.principal)?;
    // Issue 14: a route that signs a receipt needs the signing key: 503 before anything
    // single-use is spent.
    if route.receipt.is_some() {
        env.signing.signing_keys()?;
    }
    // Issue 15: the declared intent must cover the request (on a route with intent rules); an
    // attempt outside it counts against the session's divergence score.
    let checked =
        match crate::gate::intent::check(gate, route, req, body, &d.principal, &mut d.intent) {
            Ok(checked) => checked,
            Err(e) => {
                if let (Some(b), Error::IntentNotCovered(_)) = (&route.budget, e) {
                    if let Ok(key) = crate::gate::budget::session_key(b, &d.principal) {
                        let ask = crate::gate::budget::Ask {
                            now: env.now,
                            limits: crate::gate::budget::limits(b),
                            refused: true,
                            ..Default::default()
                        };
                        if let Ok(a) = env.replay.charge_budget(&key, &ask).await {
                            d.budget.divergence = Some(a.divergence);
                        }
                    }
                }
                return Err(e);
            }
        };
    single_use::run(pending, env.replay, env.now).await?;
    // Issue 15: the session budget, charged last (only a request that passed everything).
    if let Some(b) = &route.budget {
        let key = crate::gate::budget::session_key(b, &d.principal)?;
        let ask = crate::gate::budget::ask(b, req.method, &checked, env.now);
        let answer = env.replay.charge_budget(&key, &ask).await?;
        d.budget.divergence = Some(answer.divergence);
        if !answer.ok {
            d.budget.spent = answer.spent;
            d.budget.retry_after = answer.retry_after;
            return Err(match answer.spent {
                Some(s) if s.is_rate() => Error::BudgetRate,
                _ => Error::BudgetSpent,
            });
        }
    }
    let mut plan = forward::plan(gate, route, claims, req);
    plan.body = body;
    if let Some(rule) = route.receipt {
        // A receipt route always reads its body (the compiler sets it): never sign a digest
        // of bytes the gateway did not see.
        let body = body.ok_or(Error::Internal)?;
        let receipt = receipt::plan(&receipt::Facts {
            gate,
            route,
            rule,
            principal: &d.principal,
            request_origin: req.url.origin,
            method: req.method,
            target: &plan.target,
            body,
            request_id: d.request_id,
            now: env.now,
            intent_sha256: d.intent.hash.as_deref(),
        });
        plan.headers
            .set_content_digest(receipt.content_digest.clone());
        plan.receipt = Some(Box::new(receipt));
    }
    // Issue 14: the upstream's credential, planned here, obtained by the executor.
    if let Some(upstream) = gate.policy().route_upstream(route) {
        let cx = crate::gate::inject::Context {
            headers: req.headers,
            issuer: crate::gate::signing::issuer(gate, req.url.origin),
            now: env.now,
            random: env.random,
        };
        plan.inject = crate::gate::inject::plan(upstream, &d.principal.tokens, &cx)?.map(Box::new);
    }
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
            vary: gate.mask_vary(route).to_owned(),
        });
    }
    Ok(plan)
}

/// The answer to a refusal on `route` (the route's challenges, SPEC §4, naming the route's
/// RFC 9728 metadata under the request's `origin`), with a fresh nonce where the wire form asks
/// for one.
pub fn refusal<K, V, R>(
    gate: &Gate,
    route: Option<&str>,
    e: Error,
    request_id: &str,
    origin: &str,
    env: &Env<'_, K, V, R>,
) -> Answer {
    let wire = e.wire_at(gate.challenge(route), origin);
    let fresh = match wire.fresh_nonce {
        FreshNonce::No => None,
        _ => request::issue_nonce(gate, env.nonce_key.nonce_key(), env.random, env.now).ok(),
    };
    Answer::refusal(&wire, request_id, fresh)
}
