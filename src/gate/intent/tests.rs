//! Every evaluator rule, natively (issue 15 item 1).

use serde_json::{json, Value};

use super::*;
use crate::policy::Policy;

const POLICY: &str = r#"
[gateway]
origin = "https://bank.example/"
[provider.agent]
algorithms = ["HS256"]
secret = "S"

[[route]]
id = "pay"
methods = ["POST"]
path = "/accounts/{account}/payments"
require = { all = ["agent"] }
[route.intent]
type = "payment_initiation"
actions = ["initiate"]
locations = true
[route.intent.bind]
"identifier" = "path.account"
"creditorAccount.iban" = "body.creditor.iban"
"instructedAmount.amount" = { max = "body.amount", currency = "body.currency" }
"creditorName" = { glob = "body.creditor.name" }
"purposes" = { contains = "query.purpose" }

[[route]]
id = "read"
methods = ["GET", "DELETE", "PATCH"]
path = "/accounts/{account}"
require = { all = ["agent"] }
[route.intent]
type = "account_information"
[route.intent.bind]
"minimum" = { min = "query.amount" }
"flag" = "body.flag"
"#;

fn policy() -> Policy {
    crate::api::compile_toml("t.toml", POLICY).unwrap()
}

fn detail() -> Value {
    json!({
        "type": "payment_initiation",
        "actions": ["initiate", "status"],
        "locations": ["https://bank.example"],
        "identifier": "acc 1",
        "creditorAccount": {"iban": "DE02100100109307118603"},
        "instructedAmount": {"currency": "EUR", "amount": "100.00"},
        "creditorName": "ACME*",
        "purposes": ["rent", "utilities"],
    })
}

fn body() -> Value {
    json!({
        "creditor": {"iban": "DE02100100109307118603", "name": "ACME Ltd"},
        "amount": "99.50",
        "currency": "EUR",
    })
}

/// Evaluate the `pay` route for `details` against a request with `body`, `query` and the
/// account path parameter `account` (raw).
fn pay(
    details: Vec<Value>,
    account: &str,
    query: &str,
    body: Value,
) -> Result<Result<usize, Failure>, usize> {
    let p = policy();
    let intent = p.route("pay").unwrap().intent.clone().unwrap();
    let params = [("account", account)];
    let body = body.as_object().cloned();
    let parts = Parts {
        method: "POST",
        params: &params,
        query: Some(query),
        body: body.as_ref(),
    };
    let values = resolve(&intent, &parts)?;
    let declared = Declared::from_claims(
        json!({ "authorization_details": details })
            .as_object()
            .unwrap(),
    );
    Ok(evaluate(&intent, "POST", &declared, &values))
}

fn ok(details: Vec<Value>) -> Result<Result<usize, Failure>, usize> {
    pay(details, "acc%201", "purpose=rent", body())
}

fn with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut d = detail();
    f(d.as_object_mut().unwrap());
    d
}

/// The binding index of `name` in the compiled `pay` rule (bindings are sorted by field).
fn binding(name: &str) -> usize {
    let p = policy();
    let i = p
        .route("pay")
        .unwrap()
        .intent
        .as_ref()
        .unwrap()
        .bindings
        .iter()
        .position(|b| b.field.as_str() == name);
    i.unwrap()
}

fn failed(r: Result<Result<usize, Failure>, usize>) -> (Check, Option<usize>) {
    let f = r.unwrap().unwrap_err();
    (f.check, f.binding)
}

#[test]
fn a_covering_detail_passes() {
    assert_eq!(ok(vec![detail()]), Ok(Ok(0)));
    // The first detail that covers, after others that do not.
    let other = with(|d| {
        d.insert("type".into(), json!("account_information"));
    });
    assert_eq!(ok(vec![other, detail()]), Ok(Ok(1)));
}

#[test]
fn the_type_must_match_and_unknown_types_fail_closed() {
    for t in [
        json!("payment"),
        json!("PAYMENT_INITIATION"),
        json!(null),
        json!(["payment_initiation"]),
        json!(1),
    ] {
        let d = with(|d| {
            d.insert("type".into(), t.clone());
        });
        assert_eq!(failed(ok(vec![d])), (Check::Type, None), "{t}");
    }
    let d = with(|d| {
        d.remove("type");
    });
    assert_eq!(failed(ok(vec![d])), (Check::Type, None));
}

#[test]
fn the_actions_must_be_declared() {
    for a in [
        json!(["status"]),
        json!("initiate"),
        json!([]),
        json!([["initiate"]]),
    ] {
        let d = with(|d| {
            d.insert("actions".into(), a.clone());
        });
        assert_eq!(failed(ok(vec![d])), (Check::Action, None), "{a}");
    }
    let d = with(|d| {
        d.remove("actions");
    });
    assert_eq!(failed(ok(vec![d])), (Check::Action, None));
}

#[test]
fn actions_from_the_method() {
    let p = policy();
    let intent = p.route("read").unwrap().intent.clone().unwrap();
    let body = json!({"flag": true});
    let body = body.as_object().cloned();
    let parts = |m| Parts {
        method: m,
        params: &[],
        query: Some("amount=5"),
        body: body.as_ref(),
    };
    let values = resolve(&intent, &parts("GET")).unwrap();
    let decl = |actions: Value| {
        Declared::from_claims(json!({"authorization_details": [{"type": "account_information", "actions": actions, "minimum": "5", "flag": true}]}).as_object().unwrap())
    };
    assert_eq!(
        evaluate(&intent, "GET", &decl(json!(["read"])), &values),
        Ok(0)
    );
    assert_eq!(
        evaluate(&intent, "HEAD", &decl(json!(["read"])), &values),
        Ok(0)
    );
    assert_eq!(
        evaluate(&intent, "DELETE", &decl(json!(["delete"])), &values),
        Ok(0)
    );
    assert_eq!(
        evaluate(&intent, "PATCH", &decl(json!(["update"])), &values),
        Ok(0)
    );
    assert_eq!(
        evaluate(&intent, "DELETE", &decl(json!(["read"])), &values)
            .unwrap_err()
            .check,
        Check::Action
    );
    // A method with no CRUD action never passes.
    assert_eq!(
        evaluate(
            &intent,
            "PROPFIND",
            &decl(json!(["read", "create", "update", "delete"])),
            &values
        )
        .unwrap_err()
        .check,
        Check::Action
    );
}

#[test]
fn the_locations_must_contain_the_origin() {
    for l in [
        json!(["https://evil.example"]),
        json!([]),
        json!("https://bank.example"),
        json!(["https://bank.example.evil"]),
    ] {
        let d = with(|d| {
            d.insert("locations".into(), l.clone());
        });
        assert_eq!(failed(ok(vec![d])), (Check::Location, None), "{l}");
    }
    // A trailing slash on either side is the same location.
    let d = with(|d| {
        d.insert(
            "locations".into(),
            json!(["https://other.example", "https://bank.example/"]),
        );
    });
    assert_eq!(ok(vec![d]), Ok(Ok(0)));
}

#[test]
fn equality_bindings_from_path_and_body() {
    // The path parameter is percent-decoded ("acc%201" is "acc 1").
    assert_eq!(
        pay(vec![detail()], "acc%2", "purpose=rent", body()),
        Err(binding("identifier"))
    );
    assert_eq!(
        pay(vec![detail()], "acc%FF", "purpose=rent", body()),
        Err(binding("identifier"))
    );
    assert_eq!(
        failed(pay(vec![detail()], "acc-2", "purpose=rent", body())),
        (Check::Binding, Some(binding("identifier")))
    );
    let mut b = body();
    b["creditor"]["iban"] = json!("DE02100100109307118604");
    assert_eq!(
        failed(pay(vec![detail()], "acc%201", "purpose=rent", b)),
        (Check::Binding, Some(binding("creditorAccount.iban")))
    );
    // The detail's field of another JSON type never equals.
    let d = with(|d| {
        d.insert(
            "creditorAccount".into(),
            json!({"iban": ["DE02100100109307118603"]}),
        );
    });
    assert_eq!(
        failed(ok(vec![d])),
        (Check::Binding, Some(binding("creditorAccount.iban")))
    );
}

#[test]
fn another_unicode_normal_form_is_another_value() {
    let d = with(|d| {
        d.insert("identifier".into(), json!("caf\u{e9}"));
    });
    assert_eq!(
        pay(vec![d.clone()], "caf%C3%A9", "purpose=rent", body()),
        Ok(Ok(0))
    );
    // NFD: "e" + combining acute.
    assert_eq!(
        failed(pay(vec![d], "cafe%CC%81", "purpose=rent", body())),
        (Check::Binding, Some(binding("identifier")))
    );
}

#[test]
fn request_parts_that_are_missing_or_ambiguous_are_the_requests_fault() {
    let q = binding("purposes");
    assert_eq!(pay(vec![detail()], "acc%201", "", body()), Err(q));
    assert_eq!(
        pay(
            vec![detail()],
            "acc%201",
            "purpose=rent&purpose=other",
            body()
        ),
        Err(q)
    );
    assert_eq!(
        pay(vec![detail()], "acc%201", "x=1&purpos%65=rent", body()),
        Ok(Ok(0))
    );
    let mut b = body();
    b["creditor"] = json!("DE02");
    assert_eq!(
        pay(vec![detail()], "acc%201", "purpose=rent", b),
        Err(binding("creditorAccount.iban"))
    );
    for amount in [
        json!(99.5),
        json!("99,50"),
        json!("1e2"),
        json!(null),
        json!(["99"]),
        json!(true),
    ] {
        let mut b = body();
        b["amount"] = amount.clone();
        assert_eq!(
            pay(vec![detail()], "acc%201", "purpose=rent", b),
            Err(binding("instructedAmount.amount")),
            "{amount}"
        );
    }
    let mut b = body();
    b["currency"] = json!(978);
    assert_eq!(
        pay(vec![detail()], "acc%201", "purpose=rent", b),
        Err(binding("instructedAmount.amount"))
    );
}

#[test]
fn amounts_are_exact_decimals_with_the_currency() {
    let amount = binding("instructedAmount.amount");
    let run = |a: Value| {
        let mut b = body();
        b["amount"] = a;
        pay(vec![detail()], "acc%201", "purpose=rent", b)
    };
    assert_eq!(run(json!("100.00")), Ok(Ok(0)));
    assert_eq!(run(json!("100")), Ok(Ok(0)));
    assert_eq!(run(json!(100)), Ok(Ok(0)));
    assert_eq!(run(json!("0.01")), Ok(Ok(0)));
    assert_eq!(
        failed(run(json!("100.000000000000001"))),
        (Check::Binding, Some(amount))
    );
    assert_eq!(failed(run(json!("100.01"))), (Check::Binding, Some(amount)));
    assert_eq!(failed(run(json!(101))), (Check::Binding, Some(amount)));
    // Currency: exact, next to the amount.
    for cur in ["USD", "eur", "EUR "] {
        let mut b = body();
        b["currency"] = json!(cur);
        assert_eq!(
            failed(pay(vec![detail()], "acc%201", "purpose=rent", b)),
            (Check::Binding, Some(amount)),
            "{cur}"
        );
    }
    // A float limit in the token is no limit: fail closed.
    let d = with(|d| {
        d.insert(
            "instructedAmount".into(),
            json!({"currency": "EUR", "amount": 1000.5}),
        );
    });
    assert_eq!(failed(ok(vec![d])), (Check::Binding, Some(amount)));
    let d = with(|d| {
        d.insert("instructedAmount".into(), json!({"amount": "1000"}));
    });
    assert_eq!(failed(ok(vec![d])), (Check::Binding, Some(amount)));
}

#[test]
fn min_limits() {
    let p = policy();
    let intent = p.route("read").unwrap().intent.clone().unwrap();
    let body = json!({"flag": true});
    let body = body.as_object().cloned();
    let run = |q: &str, min: Value| {
        let parts = Parts {
            method: "GET",
            params: &[],
            query: Some(q),
            body: body.as_ref(),
        };
        let values = resolve(&intent, &parts)?;
        let d = Declared::from_claims(json!({"authorization_details": [{"type": "account_information", "actions": ["read"], "minimum": min, "flag": true}]}).as_object().unwrap());
        Ok::<_, usize>(evaluate(&intent, "GET", &d, &values).map_err(|f| f.check))
    };
    assert_eq!(run("amount=5", json!("5.0")), Ok(Ok(0)));
    assert_eq!(run("amount=5.01", json!("5")), Ok(Ok(0)));
    assert_eq!(run("amount=4.99", json!("5")), Ok(Err(Check::Binding)));
    assert_eq!(run("amount=-1", json!(0)), Ok(Err(Check::Binding)));
    assert!(run("amount=1e9", json!(0)).is_err());
    assert!(run("amount=%2B5", json!(0)).is_err());
}

#[test]
fn glob_and_membership_bindings() {
    let name = binding("creditorName");
    let run = |n: &str| {
        let mut b = body();
        b["creditor"]["name"] = json!(n);
        pay(vec![detail()], "acc%201", "purpose=rent", b)
    };
    assert_eq!(run("ACME"), Ok(Ok(0)));
    assert_eq!(run("ACME Holdings*"), Ok(Ok(0)));
    assert_eq!(failed(run("acme Ltd")), (Check::Binding, Some(name)));
    assert_eq!(failed(run("The ACME")), (Check::Binding, Some(name)));
    let purposes = binding("purposes");
    assert_eq!(
        pay(vec![detail()], "acc%201", "purpose=utilities", body()),
        Ok(Ok(0))
    );
    assert_eq!(
        failed(pay(vec![detail()], "acc%201", "purpose=gambling", body())),
        (Check::Binding, Some(purposes))
    );
    assert_eq!(
        failed(pay(vec![detail()], "acc%201", "purpose=ren", body())),
        (Check::Binding, Some(purposes))
    );
    // A form-encoded value is decoded before the comparison.
    let d = with(|d| {
        d.insert("purposes".into(), json!(["house rent"]));
    });
    assert_eq!(
        pay(vec![d], "acc%201", "purpose=house+rent", body()),
        Ok(Ok(0))
    );
}

#[test]
fn glob_matching() {
    for (p, t) in [
        ("*", ""),
        ("*", "abc"),
        ("a*c", "abc"),
        ("a*c", "ac"),
        ("a**c", "abbbc"),
        ("*b*", "abc"),
        ("abc", "abc"),
        ("é*", "éa"),
    ] {
        assert!(glob(p, t), "{p} {t}");
    }
    for (p, t) in [
        ("a*c", "abd"),
        ("abc", "abcd"),
        ("", "a"),
        ("a", ""),
        ("*a", "b"),
        ("a*b*c", "acb"),
    ] {
        assert!(!glob(p, t), "{p} {t}");
    }
    // No exponential backtracking.
    let text = "a".repeat(10_000);
    assert!(!glob(&format!("{}b", "*a".repeat(50)), &text));
}

#[test]
fn no_declared_intent_or_a_malformed_one_never_covers() {
    assert_eq!(failed(ok(vec![])), (Check::NoIntent, None));
    let p = policy();
    let intent = p.route("pay").unwrap().intent.clone().unwrap();
    let values = resolve(
        &intent,
        &Parts {
            method: "POST",
            params: &[("account", "a")],
            query: Some("purpose=rent"),
            body: body().as_object(),
        },
    )
    .unwrap();
    for claims in [
        json!({}),
        json!({"authorization_details": {"type": "payment_initiation"}}),
        json!({"authorization_details": [detail(), "x"]}),
    ] {
        let d = Declared::from_claims(claims.as_object().unwrap());
        let e = evaluate(&intent, "POST", &d, &values).unwrap_err();
        assert!(
            matches!(e.check, Check::NoIntent | Check::Malformed),
            "{claims}"
        );
    }
}

#[test]
fn the_closest_detail_names_the_failure() {
    let wrong_type = with(|d| {
        d.insert("type".into(), json!("x"));
    });
    let wrong_iban = with(|d| {
        d.insert("creditorAccount".into(), json!({"iban": "X"}));
    });
    let wrong_action = with(|d| {
        d.insert("actions".into(), json!(["status"]));
    });
    let f = ok(vec![wrong_type, wrong_action, wrong_iban])
        .unwrap()
        .unwrap_err();
    assert_eq!((f.check, f.detail), (Check::Binding, Some(2)));
    let p = policy();
    let intent = p.route("pay").unwrap().intent.clone().unwrap();
    assert_eq!(
        f.describe(&intent),
        "binding creditorAccount.iban equals body.creditor.iban"
    );
    let amount = &intent.bindings[binding("instructedAmount.amount")];
    assert_eq!(
        amount.label(),
        "instructedAmount.amount max body.amount currency body.currency"
    );
}

#[test]
fn the_remediation_names_what_the_route_needs_and_nothing_else() {
    let p = policy();
    let r = remediation(p.route("pay").unwrap()).unwrap();
    let json = crate::jose::b64::decode(&r).unwrap();
    let v: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v,
        json!({"authorization_details": [{"type": "payment_initiation", "actions": ["initiate"], "locations": ["https://bank.example"]}]})
    );
    // Several methods, no listed actions: no actions.
    let r = remediation(p.route("read").unwrap()).unwrap();
    let v: Value = serde_json::from_slice(&crate::jose::b64::decode(&r).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"authorization_details": [{"type": "account_information"}]})
    );
}

#[test]
fn intent_routes_read_their_body_as_json() {
    let p = policy();
    let r = p.route("pay").unwrap();
    assert!(r.needs_body() && r.body.json);
    assert_eq!(
        r.body.max_depth,
        crate::policy::compile::DEFAULT_MAX_BODY_DEPTH
    );
}

#[test]
fn build_errors_name_the_field() {
    let base = "[gateway]\norigin = \"https://o.example\"\n[provider.a]\nalgorithms = [\"HS256\"]\nsecret = \"S\"\n[provider.b]\nalgorithms = [\"HS256\"]\nsecret = \"T\"\nfrom = { header = \"x-b\" }\n";
    for (route, field, says) in [
        ("methods = [\"POST\"]\npath = \"/p/{id}\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\", bind = { x = \"path.nope\" } }", "intent.bind.x", "no {nope} parameter"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\", bind = { x = { max = \"body.a\", min = \"body.b\" } } }", "intent.bind.x", "exactly one of"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\", bind = { x = { equals = \"body.a\", currency = \"body.c\" } } }", "intent.bind.x", "currency goes with max or min"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\", bind = { x = \"header.a\" } }", "intent.bind.x", "not a request part"),
        ("path = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\" }", "intent.actions", "every method"),
        ("methods = [\"PROPFIND\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\" }", "intent.actions", "implies no action"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\", \"b\"] }\nintent = { type = \"t\" }", "intent.provider", "several providers"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\", provider = \"b\" }", "intent.provider", "not in this route's require list"),
        ("methods = [\"POST\"]\npath = \"/p\"\npublic = true\nintent = { type = \"t\" }", "intent.provider", "public route"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"\" }", "intent.type", "non-empty"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\", max_body_depth = 0 }", "intent.max_body_depth", "between"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\", locations = [\"not a url\"] }", "intent.locations", ""),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nmax_body_bytes = 0", "max_body_bytes", "between 1 and"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nmax_body_bytes = 2000000", "max_body_bytes", "between 1 and"),
        ("methods = [\"POST\"]\npath = \"/p\"\nrequire = { all = [\"a\"] }\nintent = { type = \"t\", unknown = 1 }", "", "unknown"),
    ] {
        let text = format!("{base}[[route]]\nid = \"r\"\n{route}\n");
        let errors = match crate::api::compile_toml("t.toml", &text) {
            Ok(_) => panic!("{route} compiled"),
            Err(e) => e,
        };
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            all.iter().any(|e| e.contains(field) && e.contains(says)),
            "{route}: {all:?}"
        );
    }
}

#[test]
fn the_refusal_is_401_insufficient_authorization_with_the_remediation() {
    let gate = crate::gate::Gate::new(policy()).unwrap();
    let e = Error::IntentNotCovered(Check::Binding);
    let w = e.wire_for(gate.challenge(Some("pay")));
    assert_eq!((w.status, w.code), (401, "insufficient_authorization"));
    let r = remediation(policy().route("pay").unwrap()).unwrap();
    assert_eq!(
        w.www_authenticate.as_deref(),
        Some(format!("Bearer realm=\"bank.example\", error=\"insufficient_authorization\", authorization_remediation=\"{r}\"").as_str())
    );
    assert_eq!(e.reason(), "intent_binding");
    // A request part missing is the request's fault: 400, no challenge.
    let w = Error::IntentRequestField.wire_for(gate.challenge(Some("pay")));
    assert_eq!((w.status, w.www_authenticate), (400, None));
}
