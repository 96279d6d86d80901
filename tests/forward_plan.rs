//! The forward plan (SPEC §3 step 10) over real compiled policies: the header plan the policy
//! evaluation gives, the route's `pass_headers`, the credential headers its families consumed,
//! and what the gateway saw. The Worker only executes this plan (`src/edge/forward.rs`), so what
//! the origin receives is decided here.

use attestgate::gate::phase::forward::{HeaderEdits, Seen};
use attestgate::gate::Gate;
use attestgate::policy::{compile, parse_toml, Policy, ROUTE_HEADER};
use serde_json::{json, Map, Value};

const POLICY: &str = r#"
[gateway]
origin = "https://origin.example.com"

[provider.agent]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"

[provider.device]
algorithms = ["HS256"]
secret = "DEVICE_SECRET"
from = { header = "approov-token" }

[[route]]
id = "public"
path = "/public"
public = true

[[route]]
id = "legacy"
path = "/legacy"
public = true
pass_headers = ["x-http-method-override", "forwarded", "x-forwarded-prefix"]

[provider.bound]
issuer = "https://as.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://as.example.com/jwks.json"
from = { header = "authorization", scheme = "DPoP" }
proof = "dpop"

[[route]]
id = "orders"
path = "/orders"
require = { all = ["device", "agent"] }
forward = { "x-verified-user" = "agent.sub", "x-verified-tenant" = "agent.tenant" }

[[route]]
id = "bound"
path = "/bound"
require = { all = ["bound", "device"] }

[[route]]
id = "kept"
path = "/kept"
require = { all = ["device"] }
forward_tokens = true
"#;

fn policy() -> Policy {
    compile(vec![parse_toml("p.toml", POLICY).expect("toml")]).expect("policy")
}

fn gate() -> Gate {
    Gate::new(policy()).expect("gate")
}

fn seen() -> Seen<'static> {
    Seen {
        proto: "https",
        host: "api.example.com",
        client: Some("198.51.100.4".into()),
    }
}

/// Inbound names as the runtime lists them (lowercase, each once).
const INBOUND: [&str; 24] = [
    "accept",
    "approov-token",
    "authorization",
    "cf-connecting-ip",
    "content-type",
    "forwarded",
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-proto",
    "x-http-method",
    "x-http-method-override",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-verified-route",
    "x-verified-tenant",
    "x-verified-user",
    "x_forwarded_for",
    "x_http_method_override",
    "x_verified_tenant",
    "x_verified_user",
];

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

#[test]
fn pass_headers_compile_with_a_warning_each() {
    let p = policy();
    let route = p.route("legacy").expect("route");
    assert_eq!(
        route.pass_headers,
        ["x-http-method-override", "forwarded", "x-forwarded-prefix"]
    );
    let warnings: Vec<String> = p.warnings().iter().map(ToString::to_string).collect();
    for name in &route.pass_headers {
        assert!(
            warnings.iter().any(|w| w.contains(&format!(
                "route \"legacy\": field \"pass_headers\": \"{name}\" from the client reaches the origin: dangerous"
            ))),
            "{name}: {warnings:?}"
        );
    }
    assert!(p.route("public").expect("route").pass_headers.is_empty());
}

#[test]
fn public_route_loses_every_claims_spelling_and_override_and_gets_x_forwarded() {
    let g = gate();
    let p = g.policy();
    let route = p.route("public").expect("route");
    let hp = p.evaluate(route, &()).expect("public");
    let plan = HeaderEdits::new(&route.pass_headers, g.consumed(route), hp, seen());
    let deleted: Vec<&str> = plan.deletes(INBOUND).collect();
    assert_eq!(
        deleted,
        [
            "forwarded",
            "host",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-http-method",
            "x-http-method-override",
            "x-method-override",
            "x-original-url",
            "x-rewrite-url",
            "x-verified-tenant",
            "x-verified-user",
            "x_forwarded_for",
            "x_http_method_override",
            "x_verified_tenant",
            "x_verified_user",
        ]
    );
    let set: Vec<(&str, &str)> = plan.sets().collect();
    assert_eq!(
        set,
        [
            ("x-verified-route", "public"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "198.51.100.4"),
        ]
    );
    // A public route consumes no credential: those headers pass.
    for kept in [
        "authorization",
        "approov-token",
        "accept",
        "cf-connecting-ip",
    ] {
        assert!(!deleted.contains(&kept), "{kept}");
    }
}

#[test]
fn protected_route_with_an_absent_claim_leaves_no_client_spelling_of_it() {
    let g = gate();
    let p = g.policy();
    let route = p.route("orders").expect("route");
    let agent = claims(json!({ "sub": "user:alice" }));
    let device = claims(json!({ "did": "d-1" }));
    let hp = p
        .evaluate(route, &[("agent", &agent), ("device", &device)])
        .expect("allowed");
    let plan = HeaderEdits::new(&route.pass_headers, g.consumed(route), hp, seen());
    let deleted: Vec<&str> = plan.deletes(INBOUND).collect();
    for name in [
        "authorization",
        "approov-token",
        "x-verified-tenant",
        "x_verified_tenant",
        "x_verified_user",
        "forwarded",
        "x_forwarded_for",
    ] {
        assert!(deleted.contains(&name), "{name}: {deleted:?}");
    }
    // Set (so replaced, not deleted first): the claim the token has, the route, X-Forwarded-*.
    for name in [
        "x-verified-user",
        "x-verified-route",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-for",
    ] {
        assert!(!deleted.contains(&name), "{name}");
    }
    let set: Vec<(&str, &str)> = plan.sets().collect();
    assert_eq!(set[0], ("x-verified-user", "user:alice"));
    assert_eq!(set[1], ("x-verified-route", "orders"));
    assert!(
        set.iter().all(|(n, _)| *n != "x-verified-tenant"),
        "{set:?}"
    );
}

#[test]
fn a_route_passes_exactly_the_names_it_lists() {
    let g = gate();
    let p = g.policy();
    let route = p.route("legacy").expect("route");
    let hp = p.evaluate(route, &()).expect("public");
    let plan = HeaderEdits::new(&route.pass_headers, g.consumed(route), hp, seen());
    let deleted: Vec<&str> = plan.deletes(INBOUND).collect();
    for passed in ["x-http-method-override", "forwarded", "x-forwarded-prefix"] {
        assert!(!deleted.contains(&passed), "{passed}");
    }
    for still in [
        "x_http_method_override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-port",
        "x_forwarded_for",
        "x_verified_user",
    ] {
        assert!(deleted.contains(&still), "{still}");
    }
    // The gateway's own X-Forwarded-* are set whatever the route passes.
    let set: Vec<&str> = plan.sets().map(|(n, _)| n).collect();
    assert!(set.contains(&"x-forwarded-host") && set.contains(&"x-forwarded-for"));
}

#[test]
fn without_a_runtime_client_address_the_clients_x_forwarded_for_is_deleted() {
    let g = gate();
    let p = g.policy();
    let route = p.route("public").expect("route");
    let hp = p.evaluate(route, &()).expect("public");
    let seen = Seen {
        client: None,
        ..seen()
    };
    let plan = HeaderEdits::new(&route.pass_headers, g.consumed(route), hp, seen);
    assert!(plan.deletes(INBOUND).any(|n| n == "x-forwarded-for"));
    assert!(plan.sets().all(|(n, _)| n != "x-forwarded-for"));
}

#[test]
fn the_credential_headers_deleted_are_the_ones_the_families_consumed() {
    let g = gate();
    let p = g.policy();
    let consumed = |id: &str| g.consumed(p.route(id).expect("route")).to_vec();
    // In the order the route names its providers, each once; a DPoP provider's family also
    // consumes the proof header; `forward_tokens = true` consumes nothing; public routes none.
    assert_eq!(consumed("orders"), ["approov-token", "authorization"]);
    assert_eq!(
        consumed("bound"),
        ["authorization", "dpop", "approov-token"]
    );
    assert!(consumed("kept").is_empty());
    assert!(consumed("public").is_empty());

    // The policy's own strip list says the same (with x-verified-route, which is set anyway).
    let agent = claims(json!({ "sub": "user:alice" }));
    let device = claims(json!({ "did": "d-1" }));
    let bound = claims(json!({ "sub": "user:bob" }));
    for (id, tokens) in [
        ("orders", vec![("agent", &agent), ("device", &device)]),
        ("bound", vec![("bound", &bound), ("device", &device)]),
        ("kept", vec![("device", &device)]),
    ] {
        let route = p.route(id).expect("route");
        let hp = p.evaluate(route, tokens.as_slice()).expect("allowed");
        let mut expected = vec![ROUTE_HEADER.to_owned()];
        expected.extend(consumed(id));
        assert_eq!(hp.strip, expected, "{id}");
    }

    // So `dpop` goes only where a DPoP family consumed it.
    let names = ["authorization", "dpop", "approov-token", "accept"];
    let deleted = |id: &str, tokens: &[(&str, &Map<String, Value>)]| -> Vec<String> {
        let route = p.route(id).expect("route");
        let hp = p.evaluate(route, tokens).expect("allowed");
        let plan = HeaderEdits::new(&route.pass_headers, g.consumed(route), hp, seen());
        plan.deletes(names).map(str::to_owned).collect()
    };
    assert_eq!(
        deleted("bound", &[("bound", &bound), ("device", &device)]),
        ["authorization", "dpop", "approov-token"]
    );
    assert_eq!(
        deleted("orders", &[("agent", &agent), ("device", &device)]),
        ["authorization", "approov-token"]
    );
    assert!(deleted("kept", &[("device", &device)]).is_empty());
}
