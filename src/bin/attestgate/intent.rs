//! `attestgate explain ... --body FILE`: the intent rules of the route (issue 15) against the
//! token's declared intent and the request's body: which detail covers the request, or for each
//! detail which check or binding fails. The gateway's own evaluator (`gate::intent`).

use attestgate::gate::body::read_json;
use attestgate::gate::intent::declared::Declared;
use attestgate::gate::intent::{evaluate, resolve, Parts};
use attestgate::policy::{Policy, Route};
use serde_json::{Map, Value};

/// Print the intent check of `route` for the request; `decoded` are the tokens' claims.
#[allow(clippy::too_many_arguments)]
pub fn explain(
    policy: &Policy,
    route: &Route,
    method: &str,
    host: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    decoded: &[(String, Map<String, Value>)],
) {
    let Some(intent) = &route.intent else {
        return;
    };
    println!();
    println!(
        "intent rules (type {:?}, provider {}; the gateway's evaluator)",
        intent.detail_type, intent.provider
    );
    let Some((_, claims)) = decoded.iter().find(|(n, _)| *n == intent.provider) else {
        println!("  [FAIL] no token of provider {} given", intent.provider);
        return;
    };
    let declared = Declared::from_claims(claims);
    match declared.hash() {
        Some(h) => println!(
            "  declared intent from {} (sha-256 {h})",
            declared.sources.join(", ")
        ),
        None => println!("  [FAIL] the token declares no intent"),
    }
    let json = if intent.reads_body() {
        match read_json(body, route.body.max_depth) {
            Ok(m) => Some(m),
            Err(e) => {
                println!("  [FAIL] body: {} ({})", e.description(), e.reason());
                return;
            }
        }
    } else {
        None
    };
    let params = policy
        .match_route(method, host, path)
        .map(|m| m.params)
        .unwrap_or_default();
    let parts = Parts {
        method,
        params: &params,
        query,
        body: json.as_ref(),
    };
    let values = match resolve(intent, &parts) {
        Ok(v) => v,
        Err(i) => {
            let label = intent
                .bindings
                .get(i)
                .map(|b| b.label())
                .unwrap_or_default();
            println!("  [FAIL] the request lacks a usable value for binding {label} (400 invalid_request)");
            return;
        }
    };
    for (b, v) in intent.bindings.iter().zip(&values) {
        println!("  request {} = {}", b.source, v.value);
    }
    if declared.malformed {
        println!("  [FAIL] authorization_details is not an array of objects");
        return;
    }
    let mut covered = false;
    for (i, detail) in declared.details.iter().enumerate() {
        let one = Declared {
            details: vec![detail.clone()],
            ..Declared::default()
        };
        match evaluate(intent, method, &one, &values) {
            Ok(_) => {
                println!("  [ok] detail {i} covers the request");
                covered = true;
            }
            Err(f) => println!("  [FAIL] detail {i}: {}", f.describe(intent)),
        }
    }
    if !covered {
        println!("  no detail covers the request: 401 insufficient_authorization");
    }
}
