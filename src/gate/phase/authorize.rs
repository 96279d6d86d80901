//! The authorize phase (SPEC §3 step 8): the route's requirement (`all` / `any`), scopes, claim
//! constraints and delegation depth, on the verified principal — the policy's own `evaluate`,
//! which also plans the verified-claims headers (a claim that cannot be a header value is 401
//! `unforwardable_claim`). A failed check is 403 `insufficient_scope` with its own reason.

use crate::gate::phase::record::Principal;
use crate::gate::Gate;
use crate::policy::{HeaderPlan, Route};
use crate::Error;

/// The verified-claims header plan of an authorised request, or the route check that failed.
pub fn authorize(
    gate: &Gate,
    route: &Route,
    principal: &Principal<'_>,
) -> Result<HeaderPlan, Error> {
    if route.is_public() {
        // No token is verified on a public route: only `x-verified-route` is set.
        return gate.evaluate(route, &()).map_err(Error::from);
    }
    let tokens: Vec<(&str, &serde_json::Map<String, serde_json::Value>)> = principal
        .tokens
        .iter()
        .map(|(p, c)| (p.name.as_str(), c.map()))
        .collect();
    gate.evaluate(route, tokens.as_slice()).map_err(Error::from)
}
