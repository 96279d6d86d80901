//! Issue 13 item 6: one `act`-chain walker (`attestgate_policy::act::chain`) and one depth limit
//! (`act::MAX_DEPTH`) behind the three readers of a token's delegation chain: the JOSE claims
//! validation (`jose::claims::validate`: every level an object with a string `sub`, at most 16
//! levels), a route's `delegation.max_depth` (`policy::evaluate`) and the decision log's agent
//! list (`gate::log::DecisionLog::add_claims`). The same chains go through all three.
//!
//! The route check and the log only ever see claims the JOSE validation accepted; for those the
//! three must agree exactly. Chains the validation refuses are checked where the route check
//! decides on its own (an `act` that is not an object, a chain deeper than any `max_depth`).

use attestgate::gate::log::DecisionLog;
use attestgate::jose::claims::{validate, MAX_ACT_DEPTH};
use attestgate::jose::Error;
use attestgate::jose::{b64, ClaimRules};
use attestgate::policy::compile::MAX_DELEGATION_DEPTH;
use attestgate::policy::{act, compile, parse_toml, Denial, Policy};
use serde_json::{json, Map, Value};

const NOW: i64 = 1_700_000_000;
/// The log keeps at most this many agents (`gate::log`'s list bound).
const LOG_LIST: usize = 8;

/// `{"act": {"sub": "a1", "act": {"sub": "a2", ...}}}`, `n` levels; `last` replaces the
/// innermost level (or is the whole `act` when `n` is 1).
fn chain_claims(n: usize, last: Option<Value>) -> Map<String, Value> {
    let mut act: Option<Value> = None;
    for i in (1..=n).rev() {
        let mut level = match (&last, i == n) {
            (Some(v), true) => v.clone(),
            _ => json!({ "sub": format!("agent:{i}") }),
        };
        if let (Some(inner), Some(obj)) = (act, level.as_object_mut()) {
            obj.insert("act".to_owned(), inner);
        }
        act = Some(level);
    }
    let mut claims = Map::new();
    claims.insert("sub".to_owned(), json!("user"));
    claims.insert("exp".to_owned(), json!(NOW + 600));
    if let Some(a) = act {
        claims.insert("act".to_owned(), a);
    }
    claims
}

fn jose(claims: &Map<String, Value>) -> Result<Vec<String>, Error> {
    let b64 = b64::encode(Value::Object(claims.clone()).to_string().as_bytes());
    validate(&b64, &ClaimRules::default(), NOW).map(|c| {
        assert_eq!(c.delegation_depth(), c.act_chain().len());
        c.act_chain()
    })
}

/// One route per `max_depth` 0..=16, each delegating to provider `agent`.
fn policy() -> Policy {
    let mut text = String::from(
        r#"
[gateway]
origin = "https://origin.example.com"

[provider.agent]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"
"#,
    );
    for m in 0..=MAX_DELEGATION_DEPTH {
        text.push_str(&format!(
            "\n[[route]]\nid = \"d{m}\"\npath = \"/d{m}\"\nrequire = {{ all = [\"agent\"] }}\ndelegation = {{ provider = \"agent\", max_depth = {m} }}\n"
        ));
    }
    compile(vec![parse_toml("act.toml", &text).expect("parses")]).expect("compiles")
}

/// For each `max_depth` 0..=16: does the route's delegation check pass?
fn route_checks(policy: &Policy, claims: &Map<String, Value>) -> Vec<bool> {
    (0..=MAX_DELEGATION_DEPTH)
        .map(|m| {
            let route = policy.route(&format!("d{m}")).expect("route");
            match policy.evaluate(route, &[("agent", claims)]) {
                Ok(_) => true,
                Err(Denial::DelegationTooDeep) => false,
                Err(other) => panic!("unexpected denial {other:?}"),
            }
        })
        .collect()
}

fn logged_agents(claims: &Map<String, Value>) -> Vec<String> {
    let mut log = DecisionLog::new("req", "GET", "/");
    log.add_claims(claims);
    log.agent
}

#[test]
fn one_limit() {
    assert_eq!(act::MAX_DEPTH, 16);
    assert_eq!(MAX_ACT_DEPTH, act::MAX_DEPTH);
    assert_eq!(MAX_DELEGATION_DEPTH as usize, act::MAX_DEPTH);
}

#[test]
fn valid_chains_up_to_sixteen_levels_agree_everywhere() {
    let policy = policy();
    for depth in 0..=act::MAX_DEPTH {
        let claims = chain_claims(depth, None);
        let walked: Vec<String> = act::chain(&claims)
            .map(|l| l.sub().expect("sub").to_owned())
            .collect();
        assert_eq!(walked.len(), depth);
        // JOSE accepts it and reads the same chain
        assert_eq!(jose(&claims).as_ref(), Ok(&walked), "depth {depth}");
        // every route with max_depth >= depth takes it, every other refuses it
        let expected: Vec<bool> = (0..=MAX_DELEGATION_DEPTH)
            .map(|m| depth <= m as usize)
            .collect();
        assert_eq!(route_checks(&policy, &claims), expected, "depth {depth}");
        // the log names the same agents, outermost first, at most LOG_LIST
        let shown = &walked[..depth.min(LOG_LIST)];
        assert_eq!(logged_agents(&claims), shown, "depth {depth}");
    }
}

#[test]
fn seventeen_levels_are_refused_by_jose_and_by_every_route() {
    let policy = policy();
    let claims = chain_claims(act::MAX_DEPTH + 1, None);
    assert_eq!(act::chain(&claims).count(), act::MAX_DEPTH + 1);
    assert_eq!(jose(&claims), Err(Error::ClaimType));
    assert!(route_checks(&policy, &claims).iter().all(|ok| !ok));
}

#[test]
fn an_act_that_is_not_an_object_is_refused_by_jose_and_by_every_route() {
    let policy = policy();
    for depth in [1, 2, 5, act::MAX_DEPTH] {
        for bad in [json!("agent:x"), json!(["agent:x"]), json!(7), json!(null)] {
            let claims = chain_claims(depth, Some(bad.clone()));
            let last = act::chain(&claims).last().expect("a level");
            assert_eq!((last.depth, last.object()), (depth, None));
            assert_eq!(jose(&claims), Err(Error::ClaimType), "{depth} {bad}");
            assert!(
                route_checks(&policy, &claims).iter().all(|ok| !ok),
                "{depth} {bad}"
            );
            // the log stops there too: only the levels above it
            let above: Vec<String> = (1..depth).map(|i| format!("agent:{i}")).collect();
            assert_eq!(logged_agents(&claims), &above[..above.len().min(LOG_LIST)]);
        }
    }
}

#[test]
fn a_level_without_a_string_sub_is_refused_by_jose() {
    for depth in [1, 3, act::MAX_DEPTH] {
        for bad in [json!({}), json!({ "sub": 7 }), json!({ "sub": null })] {
            let claims = chain_claims(depth, Some(bad.clone()));
            assert_eq!(
                act::chain(&claims).last().map(|l| (l.depth, l.sub())),
                Some((depth, None))
            );
            assert_eq!(jose(&claims), Err(Error::ClaimType), "{depth} {bad}");
        }
    }
}
