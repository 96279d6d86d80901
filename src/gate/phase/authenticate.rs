//! The authenticate phase (SPEC §3 steps 3–7): for every provider the route names, its
//! credential family finds the credential (a repeated one is 400 whatever else is wrong), then
//! for each credential presented verifies it and checks its bindings. What was verified goes
//! into the [`Principal`]; what may be used once is queued for the single-use phase.
//!
//! Extraction runs for every provider before any verification, so a duplicated credential is
//! `invalid_request` even next to a forged token.

use crate::gate::compiled::ProviderRt;
use crate::gate::extract::{self, HeaderSource};
use crate::gate::family::{Credential, CredentialFamily};
use crate::gate::phase::record::Principal;
use crate::gate::phase::request::Request;
use crate::gate::phase::single_use::SingleUse;
use crate::gate::phase::Env;
use crate::gate::seams::{KeySource, SignatureVerifier};
use crate::gate::Gate;
use crate::policy::Route;
use crate::Error;

/// Authenticate the request for `route`. Verified credentials are added to `principal` as
/// they verify (so a decision refused by a binding still names the token's issuer and subject);
/// `refused_by` names the provider whose credential failed verification or its bindings.
pub async fn authenticate<'g, H, K, V, R>(
    gate: &'g Gate,
    route: &'g Route,
    req: &Request<'_, H>,
    env: &Env<'_, K, V, R>,
    principal: &mut Principal<'g>,
    refused_by: &mut Option<&'g str>,
    single_use: &mut Vec<SingleUse>,
) -> Result<(), Error>
where
    H: HeaderSource + ?Sized,
    K: KeySource,
    V: SignatureVerifier,
{
    // Step 3: extraction for every provider the route names.
    let mut presented: Vec<(&ProviderRt, Credential)> = Vec::new();
    let mut missing = false;
    for provider in gate.route_providers(route) {
        let sibling = || scheme_of_sibling(gate, route, provider, req.headers);
        match provider.family.extract(req.headers, sibling)? {
            Some(credential) => presented.push((provider, Credential::new(credential))),
            None => missing = true,
        }
    }
    // Issue 17: the decision record names each credential by its SHA-256.
    if route.audit.is_on() {
        principal.presented = presented
            .iter()
            .map(|(p, c)| (p.name.as_str(), *c.sha256()))
            .collect();
    }
    if presented.is_empty() || (missing && Gate::requires_all(route)) {
        return Err(Error::MissingToken);
    }

    // Steps 4–7 for each credential presented.
    principal.tokens.reserve_exact(presented.len());
    for (provider, credential) in &presented {
        let provider: &'g ProviderRt = provider;
        *refused_by = Some(&provider.name);
        let claims = provider
            .family
            .verify(gate, provider, credential, env)
            .await?;
        principal.tokens.push((provider, claims));
        if let Some((_, claims)) = principal.tokens.last() {
            provider
                .family
                .bind(gate, credential, claims, req, env, single_use)
                .await?;
        }
    }
    *refused_by = None;
    Ok(())
}

/// Whether another provider of `route` reads `provider`'s header and the request uses that
/// provider's scheme there (a route that takes Bearer and DPoP tokens in `Authorization`).
fn scheme_of_sibling<H: HeaderSource + ?Sized>(
    gate: &Gate,
    route: &Route,
    provider: &ProviderRt,
    headers: &H,
) -> bool {
    let own = provider.family.location();
    gate.route_providers(route).any(|other| {
        let theirs = other.family.location();
        other.name != provider.name
            && theirs.header == own.header
            && theirs
                .scheme
                .is_some_and(|s| extract::has_scheme(headers, theirs.header, s))
    })
}
