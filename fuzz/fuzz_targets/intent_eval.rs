//! The intent rule evaluator together with the body reader (issue 15): arbitrary bytes as the
//! request body, the token's `authorization_details`, the query string and the path parameter.
//!
//! Input: `body 0xFF details 0xFF query 0xFF account` (missing parts are empty). Properties:
//! nothing panics; the body reader accepts only what the token reader accepts, within the depth
//! limit; a covering detail really passes each check (its `type`, its actions, every binding
//! through `holds`, and for the amount an exact decimal at most its limit); the evaluation is
//! deterministic; decimals print back to the same value.
#![no_main]

use std::sync::OnceLock;

use attestgate::gate::body::read_json;
use attestgate::gate::intent::decimal::Decimal;
use attestgate::gate::intent::declared::Declared;
use attestgate::gate::intent::{evaluate, holds, resolve, Parts};
use attestgate::policy::{Intent, Op, Policy};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const POLICY: &str = r#"
[gateway]
origin = "https://bank.example"
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
max_body_depth = 8
[route.intent.bind]
"identifier" = "path.account"
"creditorAccount.iban" = "body.creditor.iban"
"instructedAmount.amount" = { max = "body.amount", currency = "body.currency" }
"remittance" = { glob = "query.reference" }
"purposes" = { contains = "body.purpose" }
"floor" = { min = "body.amount" }
"#;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| attestgate::api::compile_toml("fuzz.toml", POLICY).expect("the fuzz policy compiles"))
}

fn intent() -> &'static Intent {
    policy().route("pay").and_then(|r| r.intent.as_ref()).expect("intent rules")
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let body = parts.next().unwrap_or_default();
    let details = parts.next().unwrap_or_default();
    let query = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let account = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let intent = intent();

    // The body reader is the token reader plus the depth limit.
    let json = read_json(body, 8);
    if json.is_ok() {
        assert!(attestgate::jose::json::parse_object(body).is_ok(), "body accepted, token reader refuses");
    }
    let json = json.ok();

    // Decimals print back to themselves.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Some(d) = Decimal::parse(text) {
            assert_eq!(Decimal::parse(&d.to_string()), Some(d.clone()));
            assert!(d.to_string().len() <= text.len() + 1);
        }
    }

    let params = [("account", account)];
    let parts = Parts { method: "POST", params: &params, query: Some(query), body: json.as_ref() };
    let Ok(values) = resolve(intent, &parts) else { return };

    // authorization_details: the fuzzer's JSON, or a covering template with fuzzed fields.
    let declared_value = match serde_json::from_slice::<Value>(details) {
        Ok(v) => v,
        Err(_) => json!([{
            "type": "payment_initiation", "actions": ["initiate"], "locations": ["https://bank.example"],
            "identifier": account,
            "creditorAccount": {"iban": String::from_utf8_lossy(details)},
            "instructedAmount": {"currency": "EUR", "amount": String::from_utf8_lossy(details)},
        }]),
    };
    let claims = json!({ "authorization_details": declared_value });
    let declared = Declared::from_claims(claims.as_object().expect("an object"));
    let first = evaluate(intent, "POST", &declared, &values);
    assert_eq!(first, evaluate(intent, "POST", &declared, &values), "deterministic");
    let _ = declared.hash();

    if let Ok(i) = first {
        let detail = declared.details.get(i).and_then(Value::as_object).expect("the covering detail is an object");
        assert_eq!(detail.get("type").and_then(Value::as_str), Some("payment_initiation"));
        let actions = detail.get("actions").and_then(Value::as_array).expect("actions");
        assert!(actions.iter().any(|a| a == "initiate"));
        for (b, r) in intent.bindings.iter().zip(&values) {
            assert!(holds(b, detail, r), "binding {} reported covered but does not hold", b.label());
            if b.op == Op::Max {
                let mut limit = Some(detail);
                let segs = b.field.segments();
                for s in &segs[..segs.len() - 1] {
                    limit = limit.and_then(|m| m.get(s)).and_then(Value::as_object);
                }
                let limit = limit.and_then(|m| m.get(&segs[segs.len() - 1])).and_then(Decimal::from_json);
                let amount = Decimal::from_json(&r.value);
                assert!(matches!((amount, limit), (Some(a), Some(l)) if a <= l), "amount over the limit covered");
            }
        }
    }
});
