//! Properties every compiled policy has, shared by the `policy_toml` and `policy_json` targets.

use std::collections::BTreeMap;

use attestgate::policy::{check_path, PathPattern, Policy, Route, Segment};
use serde_json::{json, Map, Value};

/// Segment kinds position by position: literal > parameter > `**` (the specificity order).
fn rank(pattern: &PathPattern) -> Vec<u8> {
    pattern
        .segments()
        .iter()
        .map(|s| match s {
            Segment::Literal(_) => 3,
            Segment::Param(_) | Segment::Star => 2,
            Segment::Rest => 1,
        })
        .collect()
}

/// A request path the pattern matches: literals as written, `x` for every other segment.
fn concrete(pattern: &PathPattern) -> String {
    let mut path = String::new();
    for seg in pattern.segments() {
        path.push('/');
        match seg {
            Segment::Literal(l) => path.push_str(l),
            _ => path.push('x'),
        }
    }
    path
}

fn request_for(route: &Route) -> (String, String, String) {
    let method = route
        .methods
        .as_ref()
        .and_then(|m| m.first().cloned())
        .unwrap_or_else(|| "GET".to_owned());
    let host = route
        .host
        .clone()
        .unwrap_or_else(|| "any.example".to_owned());
    (method, host, concrete(&route.path))
}

/// Claims that satisfy many rules at once, given to every provider.
fn rich_claims() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "sub": "user-1", "iss": "https://issuer.example", "scope": "a b orders:read",
        "act": {"sub": "agent-1", "act": {"sub": "agent-2"}}, "roles": ["admin", "user"],
        "did": "did:example:1", "cnf": {"jkt": "abc"}, "pay": "p"
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// A policy the compiler made (from TOML or the source form): its source form compiles to the
/// same policy and is a fixed point, then [`check_compiled`].
pub fn check_from_source(policy: &Policy) {
    let json = policy.to_json();
    let again = match Policy::from_json(&json) {
        Ok(p) => p,
        Err(e) => panic!("the source form of a compiled policy does not compile: {e:?}\n{json}"),
    };
    assert_eq!(policy.routes(), again.routes());
    assert_eq!(policy.providers(), again.providers());
    assert_eq!(policy.gateway(), again.gateway());
    assert_eq!(again.to_json(), json, "source form is not a fixed point");
    check_compiled(policy);
}

/// Any compiled policy (also one read from the compiled form, which has no sources).
pub fn check_compiled(policy: &Policy) {
    // The compiled form (what build.rs embeds and the Worker reads) reads back as the same
    // policy, and is a fixed point.
    let form = policy.to_compiled();
    let again = match Policy::from_compiled(&form) {
        Ok(p) => p,
        Err(e) => panic!("the compiled form of a compiled policy does not read: {e:?}"),
    };
    assert_eq!(policy.routes(), again.routes());
    assert_eq!(policy.providers(), again.providers());
    assert_eq!(policy.gateway(), again.gateway());
    assert_eq!(again.to_compiled(), form, "compiled form is not a fixed point");

    let everyone: BTreeMap<String, Map<String, Value>> = policy
        .providers()
        .iter()
        .map(|p| (p.name.clone(), rich_claims()))
        .collect();
    for route in policy.routes() {
        // The fast evaluation and the explaining one agree.
        assert_eq!(
            policy.evaluate(route, &()),
            policy.explain(route, &()).outcome
        );
        assert_eq!(
            policy.evaluate(route, &everyone),
            policy.explain(route, &everyone).outcome
        );

        // A route's own path finds a route at least as specific that accepts the request, whose
        // pattern matches it, with the same captures; the recompiled policy finds the same.
        let (method, host, path) = request_for(route);
        if check_path(&path).is_err() {
            // A literal segment the request normaliser refuses (e.g. one starting with `;`): the
            // route can never be requested with it.
            continue;
        }
        let found = match policy.match_route(&method, &host, &path) {
            Ok(m) => m,
            // The route's own path is a case or trailing-slash variant of a more protected route
            // (the compiler warns of it): an origin that folds paths would serve that route's
            // resource, so the request is refused (fail closed), never forwarded as this one.
            Err(attestgate::policy::Miss::ProtectedVariant) => continue,
            Err(miss) => panic!("{method} {host} {path}: {miss} (route {})", route.id),
        };
        assert!(found.route.accepts_method(&method) && found.route.accepts_host(&host));
        let captures = found.route.path.matches(&path).unwrap_or_else(|| {
            panic!("{path} matched {} whose pattern refuses it", found.route.id)
        });
        assert!(
            rank(&found.route.path) >= rank(&route.path),
            "{path}: {} won over the more specific {}",
            found.route.id,
            route.id
        );
        let named: Vec<(&str, &str)> = captures;
        assert_eq!(found.params, named);
        let twin = again
            .match_route(&method, &host, &path)
            .map(|m| m.route.id.clone());
        assert_eq!(twin, Ok(found.route.id.clone()));
    }
}
