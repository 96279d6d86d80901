//! Operator authentication (issue 16 item 3, SPEC §5): every request to the operator API under
//! [`PREFIX`] is authenticated by a token of the policy's `[operator] provider`, carrying every
//! one of `[operator] scopes`. Never a static shared token, never anything in the URL.
//!
//! [`authenticate`] is the one core function: the provider's credential family extracts the
//! token (a repeated one is 400), verifies it (signature, `iss`, `aud`, `exp`, typ, ...) and
//! binds it (DPoP proof and nonce when the provider says `proof = "dpop"`; single-use checks
//! run last, as on routes); then the scopes are checked. The answer is the operator's
//! [`OperatorId`] (`iss`, `sub`) for the record, or the refusal:
//! - no `[operator]` in the policy: 404 `not_found` (the API does not exist);
//! - no token: 401 `missing_token` with the provider's challenge (Bearer and/or DPoP);
//! - a bad token: 401 `invalid_token` (or the DPoP codes), with the challenge;
//! - a valid token without the scopes, or without `sub`: 403 `insufficient_scope`, its
//!   challenge naming the scopes needed (`scope="..."`, RFC 6750 §3.1).
//!
//! Which paths are the operator API: [`is_operator_path`]. The gateway's other own endpoints
//! under the same prefix (the challenge path, the public `jwks.json` of the signing key) are
//! not; they are answered before this is asked.

use crate::error::Challenge;
use crate::gate::compiled::ProviderRt;
use crate::gate::extract::HeaderSource;
use crate::gate::family::CredentialFamily;
use crate::gate::log::{json_object, json_str};
use crate::gate::phase::request::Request;
use crate::gate::phase::response::Answer;
use crate::gate::phase::{single_use, Env};
use crate::gate::seams::{KeySource, ReplayGuard, SignatureVerifier};
use crate::gate::Gate;
use crate::jose::Claims;
use crate::policy::{Allow, Denial, Miss};
use crate::Error;

/// Where the gateway's own endpoints live (SPEC §5).
pub const PREFIX: &str = "/.well-known/attestgate/";

/// Public endpoints under [`PREFIX`] that are not the operator API (the signing key's JWKS).
pub const PUBLIC_PATHS: [&str; 1] = ["/.well-known/attestgate/jwks.json"];

/// The operator, as recorded with every change they make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorId {
    pub iss: String,
    pub sub: String,
}

/// Whether `path` is the operator API's: under [`PREFIX`], and not the challenge path or one of
/// the [`PUBLIC_PATHS`].
pub fn is_operator_path(gate: &Gate, path: &str) -> bool {
    path.starts_with(PREFIX)
        && path != gate.challenge_path
        && !PUBLIC_PATHS.contains(&path)
        && gate
            .policy()
            .shared_signals()
            .is_none_or(|s| s.path != path)
}

/// The operator provider, when the policy has `[operator]`.
pub fn provider(gate: &Gate) -> Option<&ProviderRt> {
    gate.policy()
        .operator()
        .and_then(|o| gate.provider(&o.provider))
}

/// The `WWW-Authenticate` challenges of the operator API: its provider's schemes, the scopes
/// it needs (`scope="a b"` on 403, RFC 6750 §3.1) and, like every challenge (SPEC §4), RFC 9728
/// `resource_metadata`: the gateway-wide document (the operator API is no route's resource).
pub fn challenge(gate: &Gate) -> Challenge {
    let schemes = provider(gate)
        .map(|p| p.family.schemes())
        .unwrap_or_default();
    let scopes = gate
        .policy()
        .operator()
        .map(|o| o.scopes.clone())
        .unwrap_or_default();
    Challenge::new(&gate.realm, schemes.bearer, schemes.dpop)
        .with_resource(crate::gate::phase::metadata::WELL_KNOWN, &scopes)
}

/// Authenticate an operator request: the operator's identity and the verified claims, or the
/// refusal (see the module docs).
pub async fn authenticate<'g, H, K, V, R>(
    gate: &'g Gate,
    req: &Request<'_, H>,
    env: &Env<'_, K, V, R>,
) -> Result<(OperatorId, &'g ProviderRt, Claims), Error>
where
    H: HeaderSource + ?Sized,
    K: KeySource,
    V: SignatureVerifier,
    R: ReplayGuard,
{
    let operator = gate
        .policy()
        .operator()
        .ok_or(Error::Route(Miss::NoRoute))?;
    let provider = gate
        .provider(&operator.provider)
        .ok_or(Error::PolicyUnavailable)?;
    let credential = provider
        .family
        .extract(req.headers, || false)?
        .map(crate::gate::family::Credential::new)
        .ok_or(Error::MissingToken)?;
    let claims = provider
        .family
        .verify(gate, provider, &credential, env)
        .await?;
    let mut pending = Vec::new();
    provider
        .family
        .bind(gate, &credential, &claims, req, env, &mut pending)
        .await?;
    let id = identity(&claims, &operator.scopes)?;
    single_use::run(pending, env.replay, env.now).await?;
    Ok((id, provider, claims))
}

/// The operator's identity from verified claims: every scope present, and a `sub`.
pub fn identity(claims: &Claims, scopes: &[String]) -> Result<OperatorId, Error> {
    let granted = claims.scopes();
    if !scopes.iter().all(|s| granted.contains(&s.as_str())) {
        return Err(Error::Denied(Denial::ScopeMissing));
    }
    match (claims.iss(), claims.sub()) {
        (Some(iss), Some(sub)) if !sub.is_empty() => Ok(OperatorId {
            iss: iss.to_owned(),
            sub: sub.to_owned(),
        }),
        _ => Err(Error::Denied(Denial::RequirementUnmet)),
    }
}

/// The path that answers who the authenticated operator is (`GET`): `{"iss", "sub"}`. For the
/// command-line tool to check its token, and for tests.
pub const WHOAMI_PATH: &str = "/.well-known/attestgate/operator/whoami";

/// What an authenticated operator asked for that the executor runs against a store (the
/// operator API's endpoints that need I/O add their variant here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// The deny list ([`crate::gate::deny::api`]).
    Deny(crate::gate::deny::api::DenyCall),
    /// A pushed SET for the Shared Signals receiver ([`crate::gate::ssf::receive`], with the
    /// request body the executor reads).
    Signals,
    /// Issue 17: a read of the decision log (`/.well-known/attestgate/log/...`).
    AuditLog(crate::gate::audit::read::LogRead),
}

/// An authenticated operator request: answered by the core, or a [`Call`] for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    Answer(Answer),
    Call(Call),
}

/// Which operator endpoint `method` and `path` are, for the authenticated operator `id`: 404 for
/// an unknown path, 405 (with `Allow`) for a known path with another method.
pub fn dispatch(
    method: &str,
    path: &str,
    query: Option<&str>,
    id: &OperatorId,
) -> Result<Dispatch, Error> {
    if let Some(call) = crate::gate::deny::api::route(method, path, query) {
        return call.map(|c| Dispatch::Call(Call::Deny(c)));
    }
    if let Some(read) = crate::gate::audit::read::LogRead::parse(method, path) {
        return read.map(|r| Dispatch::Call(Call::AuditLog(r)));
    }
    if path == WHOAMI_PATH {
        if method != "GET" && method != "HEAD" {
            return Err(Error::Route(Miss::MethodNotAllowed(Allow::from_static(
                "GET, HEAD",
            ))));
        }
        return Ok(Dispatch::Answer(Answer::json(
            200,
            json_object(&[("iss", &json_str(&id.iss)), ("sub", &json_str(&id.sub))]),
        )));
    }
    Err(Error::Route(Miss::NoRoute))
}
