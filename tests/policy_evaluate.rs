//! Route evaluation (SPEC §3 step 8) and the header plan (step 10): require all/any, scopes,
//! claim constraints, globs, delegation depth, forwarded values.

use std::collections::BTreeMap;

use attestgate::policy::{compile, parse_toml, Denial, HeaderPlan, Policy};
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

[provider.pop]
issuer = "https://pop.example.com"
audiences = ["https://api.example.com"]
algorithms = ["EdDSA"]
jwks_uri = "https://pop.example.com/jwks.json"
from = { header = "authorization", scheme = "DPoP" }
proof = "dpop"

[[route]]
id = "create"
path = "/create"
require = { all = ["device", "agent"] }
scopes = ["orders:write"]
claims = { "agent.act.sub" = { one_of = ["agent:planner", "agent:buyer-*"] }, "agent.tenant" = { equals = "acme" }, "agent.level" = { equals = 2 }, "agent.verified" = { equals = true }, "agent.roles" = { contains = "buyer" } }
delegation = { provider = "agent", max_depth = 2 }
forward = { "x-verified-user" = "agent.sub", "x-verified-agent" = "agent.act.sub", "x-verified-device" = "device.did" }

[[route]]
id = "either"
path = "/either"
require = { any = ["device", "agent"] }
scopes = ["read"]

[[route]]
id = "depth0"
path = "/depth0"
require = { all = ["agent"] }
delegation = { provider = "agent", max_depth = 0 }

[[route]]
id = "depth1"
path = "/depth1"
require = { all = ["agent"] }
delegation = { provider = "agent", max_depth = 1 }

[[route]]
id = "any-delegation"
path = "/any-delegation"
require = { any = ["device", "agent"] }
delegation = { provider = "agent", max_depth = 0 }

[[route]]
id = "fwd"
path = "/fwd"
require = { all = ["agent"] }
forward = { "x-verified-v" = "agent.v", "x-verified-nested" = "agent.\"https://example.com/claims\".team" }

[[route]]
id = "keep-tokens"
path = "/keep"
require = { all = ["agent"] }
forward_tokens = true

[[route]]
id = "dpop"
path = "/dpop"
require = { all = ["pop"] }

[[route]]
id = "open"
path = "/open"
public = true
"#;

fn policy() -> Policy {
    compile(vec![parse_toml("eval.toml", POLICY).expect("parses")])
        .unwrap_or_else(|e| panic!("{}", e[0]))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn good_agent() -> Map<String, Value> {
    obj(json!({
        "sub": "user-1",
        "scope": "orders:read orders:write",
        "tenant": "acme",
        "level": 2,
        "verified": true,
        "roles": ["viewer", "buyer"],
        "act": { "sub": "agent:buyer-7", "act": { "sub": "agent:planner" } }
    }))
}

fn good_device() -> Map<String, Value> {
    obj(json!({ "did": "device-123", "pay": "abc" }))
}

fn eval(
    p: &Policy,
    route: &str,
    tokens: &[(&str, &Map<String, Value>)],
) -> Result<HeaderPlan, Denial> {
    p.evaluate(p.route(route).expect("route"), tokens)
}

#[test]
fn all_needs_every_provider() {
    let p = policy();
    let (agent, device) = (good_agent(), good_device());
    let plan = eval(&p, "create", &[("agent", &agent), ("device", &device)]).expect("allowed");
    assert_eq!(
        plan.set,
        vec![
            ("x-verified-agent".to_owned(), "agent:buyer-7".to_owned()),
            ("x-verified-device".to_owned(), "device-123".to_owned()),
            ("x-verified-user".to_owned(), "user-1".to_owned()),
            ("x-verified-route".to_owned(), "create".to_owned()),
        ]
    );
    assert_eq!(
        eval(&p, "create", &[("agent", &agent)]),
        Err(Denial::RequirementUnmet)
    );
    assert_eq!(
        eval(&p, "create", &[("device", &device)]),
        Err(Denial::RequirementUnmet)
    );
    assert_eq!(eval(&p, "create", &[]), Err(Denial::RequirementUnmet));
}

#[test]
fn any_needs_one_provider() {
    let p = policy();
    let agent = obj(json!({"sub": "u", "scope": "read"}));
    let device = obj(json!({"did": "d", "scp": ["read"]}));
    assert!(eval(&p, "either", &[("agent", &agent)]).is_ok());
    assert!(eval(&p, "either", &[("device", &device)]).is_ok());
    assert!(eval(&p, "either", &[("agent", &agent), ("device", &device)]).is_ok());
    assert_eq!(eval(&p, "either", &[]), Err(Denial::RequirementUnmet));
    // a verified token of a provider the route does not name does not count
    assert_eq!(
        eval(&p, "either", &[("pop", &agent)]),
        Err(Denial::RequirementUnmet)
    );
}

#[test]
fn scopes_come_from_scope_or_scp_of_some_required_token() {
    let p = policy();
    let d = obj(json!({}));
    for (claims, ok) in [
        (json!({"scope": "read"}), true),
        (json!({"scope": "write read admin"}), true),
        (json!({"scp": "read"}), true),
        (json!({"scp": "other read"}), true),
        (json!({"scp": ["other", "read"]}), true),
        (json!({"scope": "reader"}), false),
        (json!({"scope": "READ"}), false),
        (json!({"scope": ["read"]}), false), // `scope` is a string (RFC 8693 §4.2)
        (json!({"scp": [["read"]]}), false),
        (json!({"scp": 1}), false),
        (json!({}), false),
    ] {
        let agent = obj(claims.clone());
        let got = eval(&p, "either", &[("agent", &agent), ("device", &d)]);
        assert_eq!(got.is_ok(), ok, "{claims}");
        if !ok {
            assert_eq!(got, Err(Denial::ScopeMissing), "{claims}");
        }
    }
    // the scope may come from another required token than the one that has the claims
    let agent = obj(json!({"sub": "u"}));
    let device = obj(json!({"scope": "read"}));
    assert!(eval(&p, "either", &[("agent", &agent), ("device", &device)]).is_ok());
}

#[test]
fn each_claim_constraint() {
    let p = policy();
    let device = good_device();
    let cases: Vec<(&str, Value, bool)> = vec![
        // one_of with globs
        ("act", json!({"sub": "agent:planner"}), true),
        ("act", json!({"sub": "agent:buyer-"}), true),
        ("act", json!({"sub": "agent:buyer-x-y"}), true),
        ("act", json!({"sub": "agent:planner2"}), false),
        ("act", json!({"sub": "Agent:planner"}), false),
        ("act", json!({"sub": "agent:buyer"}), false),
        ("act", json!({"sub": 7}), false),
        ("act", json!({"iss": "x"}), false),
        ("act", Value::Null, false),
        // equals: string, number (by value), boolean
        ("tenant", json!("acme"), true),
        ("tenant", json!("ACME"), false),
        ("tenant", json!(["acme"]), false),
        ("level", json!(2), true),
        ("level", json!(2.0), true),
        ("level", json!("2"), false),
        ("level", json!(3), false),
        ("verified", json!(true), true),
        ("verified", json!("true"), false),
        ("verified", json!(1), false),
        // contains: array element or space-separated word
        ("roles", json!(["buyer"]), true),
        ("roles", json!("viewer buyer"), true),
        ("roles", json!("buyers"), false),
        ("roles", json!(["buyers", "Buyer"]), false),
        ("roles", json!({"buyer": true}), false),
    ];
    for (claim, value, ok) in cases {
        let mut agent = good_agent();
        if value.is_null() {
            agent.remove(claim);
        } else {
            agent.insert(claim.to_owned(), value.clone());
        }
        let got = eval(&p, "create", &[("agent", &agent), ("device", &device)]);
        if ok {
            assert!(got.is_ok(), "{claim}={value}: {got:?}");
        } else {
            assert_eq!(got, Err(Denial::ClaimConstraint), "{claim}={value}");
        }
    }
    // every missing constrained claim fails
    for claim in ["tenant", "level", "verified", "roles"] {
        let mut agent = good_agent();
        agent.remove(claim);
        assert_eq!(
            eval(&p, "create", &[("agent", &agent), ("device", &device)]),
            Err(Denial::ClaimConstraint),
            "{claim}"
        );
    }
}

fn chain(depth: usize) -> Map<String, Value> {
    let mut act = Value::Null;
    for i in (0..depth).rev() {
        let mut m = Map::new();
        m.insert("sub".into(), json!(format!("agent:planner{i}")));
        if !act.is_null() {
            m.insert("act".into(), act);
        }
        act = Value::Object(m);
    }
    let mut claims = obj(json!({"sub": "u", "scope": "orders:write"}));
    if !act.is_null() {
        claims.insert("act".into(), act);
    }
    claims
}

#[test]
fn delegation_depth_zero_one_two() {
    let p = policy();
    for (route, depth, ok) in [
        ("depth0", 0, true),
        ("depth0", 1, false),
        ("depth1", 0, true),
        ("depth1", 1, true),
        ("depth1", 2, false),
        ("depth1", 5, false),
    ] {
        let agent = chain(depth);
        let got = eval(&p, route, &[("agent", &agent)]);
        if ok {
            assert!(got.is_ok(), "{route} depth {depth}: {got:?}");
        } else {
            assert_eq!(got, Err(Denial::DelegationTooDeep), "{route} depth {depth}");
        }
    }
    // max_depth 2 on "create": depth 2 allowed, 3 refused
    let device = good_device();
    let mut agent = good_agent();
    assert!(eval(&p, "create", &[("agent", &agent), ("device", &device)]).is_ok());
    agent.insert(
        "act".into(),
        json!({"sub": "agent:planner", "act": {"sub": "b", "act": {"sub": "c"}}}),
    );
    assert_eq!(
        eval(&p, "create", &[("agent", &agent), ("device", &device)]),
        Err(Denial::DelegationTooDeep)
    );
    // an act that is not an object is refused
    let agent = obj(json!({"sub": "u", "act": "agent:x"}));
    assert_eq!(
        eval(&p, "depth1", &[("agent", &agent)]),
        Err(Denial::DelegationTooDeep)
    );
    // with require.any, a provider that was not presented has no chain
    let device = obj(json!({"did": "d"}));
    assert!(eval(&p, "any-delegation", &[("device", &device)]).is_ok());
    let agent = chain(1);
    assert_eq!(
        eval(
            &p,
            "any-delegation",
            &[("device", &device), ("agent", &agent)]
        ),
        Err(Denial::DelegationTooDeep)
    );
}

#[test]
fn forwarded_values_must_be_printable_ascii_within_1k() {
    let p = policy();
    let long_ok = "a".repeat(1024);
    let long_bad = "a".repeat(1025);
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!("plain value"), Some("plain value")),
        (json!(42), Some("42")),
        (json!(-1.5), Some("-1.5")),
        (json!(true), Some("true")),
        (json!(["a", "b"]), Some("[\"a\",\"b\"]")),
        (json!({"k": 1}), Some("{\"k\":1}")),
        (json!(long_ok), Some(long_ok.as_str())),
        (json!(""), Some("")),
        (json!("a\r\nx-verified-admin: true"), None),
        (json!("a\nb"), None),
        (json!("a\rb"), None),
        (json!("a\0b"), None),
        (json!("a\tb"), None),
        (json!("caf\u{e9}"), None),
        (json!("\u{202e}evil"), None),
        (json!("a\u{7f}"), None),
        (json!(long_bad), None),
        (json!(" padded"), None),
        (json!("padded "), None),
        (json!(["caf\u{e9}"]), None),
    ];
    for (value, want) in cases {
        let agent = obj(json!({"sub": "u", "v": value.clone()}));
        let got = eval(&p, "fwd", &[("agent", &agent)]);
        match want {
            Some(text) => {
                let plan = got.unwrap_or_else(|d| panic!("{value}: {d}"));
                assert_eq!(plan.value("x-verified-v"), Some(text), "{value}");
            }
            None => assert_eq!(got, Err(Denial::UnforwardableClaim), "{value}"),
        }
    }
    // absent or null: the header is omitted, the request goes on
    for agent in [
        obj(json!({"sub": "u"})),
        obj(json!({"sub": "u", "v": null})),
    ] {
        let plan = eval(&p, "fwd", &[("agent", &agent)]).expect("allowed");
        assert_eq!(plan.value("x-verified-v"), None);
        assert_eq!(plan.value("x-verified-route"), Some("fwd"));
        assert!(
            plan.strips("X-Verified-V"),
            "a client-sent value is still stripped"
        );
    }
    // quoted claim-path segments reach members whose names contain dots
    let agent = obj(json!({"sub": "u", "https://example.com/claims": {"team": "blue"}}));
    let plan = eval(&p, "fwd", &[("agent", &agent)]).expect("allowed");
    assert_eq!(plan.value("x-verified-nested"), Some("blue"));
}

#[test]
fn header_plan_strips_prefix_and_consumed_tokens() {
    let p = policy();
    let (agent, device) = (good_agent(), good_device());
    let plan = eval(&p, "create", &[("agent", &agent), ("device", &device)]).expect("allowed");
    assert_eq!(plan.strip_prefix, "x-verified-");
    assert_eq!(
        plan.strip,
        vec!["x-verified-route", "approov-token", "authorization"]
    );
    for h in [
        "X-Verified-User",
        "x-verified-anything",
        "Authorization",
        "approov-token",
        "x-verified-route",
    ] {
        assert!(plan.strips(h), "{h}");
    }
    for h in ["accept", "x-verifiedx", "cookie", "dpop"] {
        assert!(!plan.strips(h), "{h}");
    }
    let keep = eval(&p, "keep-tokens", &[("agent", &agent)]).expect("allowed");
    assert_eq!(keep.strip, vec!["x-verified-route"]);
    assert!(!keep.strips("authorization"));
    let pop = obj(json!({"sub": "u"}));
    let dpop = eval(&p, "dpop", &[("pop", &pop)]).expect("allowed");
    assert_eq!(
        dpop.strip,
        vec!["x-verified-route", "authorization", "dpop"]
    );
    let open = p
        .evaluate(p.route("open").expect("route"), &())
        .expect("public");
    assert_eq!(
        open.set,
        vec![("x-verified-route".to_owned(), "open".to_owned())]
    );
    assert_eq!(open.strip, vec!["x-verified-route"]);
}

#[test]
fn checks_run_in_spec_order_and_explain_agrees() {
    let p = policy();
    let device = good_device();
    // fails scope, constraint, delegation and forward at once: scope is reported
    let mut agent = good_agent();
    agent.insert("scope".into(), json!("orders:read"));
    agent.insert("tenant".into(), json!("other"));
    agent.insert(
        "act".into(),
        json!({"sub": "agent:planner\n", "act": {"act": {"sub": "x"}}}),
    );
    let route = p.route("create").expect("route");
    let tokens = [("agent", &agent), ("device", &device)];
    assert_eq!(p.evaluate(route, &tokens), Err(Denial::ScopeMissing));
    let explanation = p.explain(route, &tokens);
    assert_eq!(explanation.outcome, Err(Denial::ScopeMissing));
    let failed: Vec<Denial> = explanation.steps.iter().filter_map(|s| s.denial).collect();
    assert_eq!(
        failed,
        vec![
            Denial::ScopeMissing,
            Denial::ClaimConstraint, // one_of on act.sub
            Denial::ClaimConstraint, // tenant
            Denial::DelegationTooDeep,
            Denial::UnforwardableClaim, // act.sub has a newline
        ]
    );
    assert!(explanation
        .steps
        .iter()
        .all(|s| s.passed == s.denial.is_none()));
    // the passing case explains every check as passed and gives the same plan
    let agent = good_agent();
    let tokens = [("agent", &agent), ("device", &device)];
    let explanation = p.explain(route, &tokens);
    assert!(
        explanation.steps.iter().all(|s| s.passed),
        "{:?}",
        explanation.steps
    );
    assert_eq!(explanation.outcome, p.evaluate(route, &tokens));
    // a BTreeMap of claims works as the token set too
    let mut map = BTreeMap::new();
    map.insert("agent".to_owned(), good_agent());
    map.insert("device".to_owned(), good_device());
    assert_eq!(p.evaluate(route, &map), p.evaluate(route, &tokens));
}
