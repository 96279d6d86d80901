//! Issue 16 item 3: operator authentication for the operator API under /.well-known/attestgate/
//! (the whole decision through `api::Gateway`, tokens signed here with the signing half of the
//! HMAC crate, independent of the verifier).

mod common;

use attestgate::api::{
    block_on_ready, compile_toml, Gateway, KeySet, MemoryReplay, NativeVerifier, Request, Seams,
    StaticKeys, Verdict,
};
use attestgate::jose::{b64, Key};
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = &[7u8; 32];
const OTHER: &[u8] = &[8u8; 32];
const IDP: &str = "https://corp-idp.example.com";
const AUD: &str = "https://gateway.example.com";

fn policy(operator: &str) -> String {
    format!(
        r#"
[gateway]
origin = "https://origin.example.com"
realm = "gw"

[provider.corp-idp]
issuer = "{IDP}"
audiences = ["{AUD}"]
algorithms = ["HS256"]
secret = "CORP_IDP_KEY"

[provider.agent]
issuer = "https://agents.example.com"
audiences = ["{AUD}"]
algorithms = ["HS256"]
secret = "AGENT_KEY"

[[route]]
id = "api"
path = "/api/**"
require = {{ all = ["agent"] }}

[[route]]
id = "catch-wk"
path = "/.well-known/**"
public = true
{operator}
"#
    )
}

const OPERATOR: &str = r#"
[operator]
provider = "corp-idp"
scopes = ["attestgate:admin"]
"#;

fn gateway(operator: &str) -> Gateway {
    let p = compile_toml("operator.toml", &policy(operator)).unwrap_or_else(|e| panic!("{e:?}"));
    Gateway::new(p).unwrap()
}

fn token(secret: &[u8], claims: Value) -> String {
    let header = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64::encode(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let sig = common::sign::hs256(secret, input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

fn operator_token(extra: Value) -> String {
    let mut claims = json!({
        "iss": IDP, "aud": AUD, "sub": "ops:alice", "iat": NOW, "exp": NOW + 300,
        "scope": "openid attestgate:admin",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    token(SECRET, claims)
}

struct Answer {
    verdict: Verdict,
    status: u16,
    body: String,
    www: Option<String>,
    operator: Option<(String, String)>,
}

fn call(gw: &Gateway, method: &str, path: &str, auth: Option<&str>) -> Answer {
    let mut keys = StaticKeys::new();
    keys.insert(
        "corp-idp",
        KeySet::from_keys(vec![Key::hs256(None, SECRET).unwrap()]),
    );
    keys.insert(
        "agent",
        KeySet::from_keys(vec![Key::hs256(None, OTHER).unwrap()]),
    );
    let replay = MemoryReplay::new();
    let headers: Vec<(String, String)> = auth
        .map(|t| vec![("authorization".to_owned(), t.to_owned())])
        .unwrap_or_default();
    let url = format!("https://gateway.example.com{path}");
    let req = Request {
        method,
        url: &url,
        headers: &headers,
    };
    let seams = Seams {
        keys: &keys,
        verifier: &NativeVerifier,
        replay: &replay,
        nonce_key: None,
        signing_keys: None,
    };
    block_on_ready(async {
        let d = gw.decide(&req, &seams, NOW, "rid").await;
        let (status, body, www) = match &d.response {
            attestgate::api::ResponsePlan::Own(a) => (
                a.status,
                a.body.clone(),
                a.headers
                    .iter()
                    .find(|(n, _)| *n == "www-authenticate")
                    .map(|(_, v)| v.clone()),
            ),
            other => panic!("not an own answer: {other:?}"),
        };
        Ok::<_, attestgate::Error>(Answer {
            verdict: d.verdict(),
            status,
            body,
            www,
            operator: d.operator.as_ref().map(|o| (o.iss.clone(), o.sub.clone())),
        })
    })
    .unwrap()
}

const WHOAMI: &str = "/.well-known/attestgate/operator/whoami";

#[test]
fn an_operator_token_with_the_scope_is_authenticated_and_recorded() {
    let gw = gateway(OPERATOR);
    let bearer = format!("Bearer {}", operator_token(json!({})));
    let a = call(&gw, "GET", WHOAMI, Some(&bearer));
    assert_eq!(
        (a.verdict, a.status),
        (Verdict::Operator, 200),
        "{}",
        a.body
    );
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v, json!({"iss": IDP, "sub": "ops:alice"}));
    assert_eq!(a.operator, Some((IDP.to_owned(), "ops:alice".to_owned())));
    // scp as an array grants the scope as well
    let bearer = format!(
        "Bearer {}",
        operator_token(json!({"scope": null, "scp": ["attestgate:admin"]}))
    );
    assert_eq!(call(&gw, "GET", WHOAMI, Some(&bearer)).status, 200);
}

#[test]
fn no_token_is_401_with_the_providers_challenge() {
    let gw = gateway(OPERATOR);
    let a = call(&gw, "GET", WHOAMI, None);
    assert_eq!((a.verdict, a.status), (Verdict::Deny, 401));
    assert!(a.body.contains("\"missing_token\""), "{}", a.body);
    assert_eq!(a.www.as_deref(), Some("Bearer realm=\"gw\""));
    assert_eq!(a.operator, None);
    // Any path under the prefix is the operator API: nothing about it is said before
    // authentication (not even 404 for an unknown one), and no route under the prefix sees it.
    let a = call(&gw, "GET", "/.well-known/attestgate/nothing-here", None);
    assert_eq!(a.status, 401);
}

#[test]
fn bad_tokens_are_401_invalid_token() {
    let gw = gateway(OPERATOR);
    let forged = token(
        OTHER,
        json!({"iss": IDP, "aud": AUD, "sub": "ops:alice", "iat": NOW, "exp": NOW + 300,
               "scope": "attestgate:admin"}),
    );
    let expired = operator_token(json!({"iat": NOW - 600, "exp": NOW - 300}));
    let wrong_aud = operator_token(json!({"aud": "https://elsewhere.example.com"}));
    let wrong_iss = operator_token(json!({"iss": "https://agents.example.com"}));
    for t in [
        forged,
        expired,
        wrong_aud,
        wrong_iss,
        "not.a.jwt".to_owned(),
    ] {
        let a = call(&gw, "GET", WHOAMI, Some(&format!("Bearer {t}")));
        assert_eq!(a.status, 401, "{t}: {}", a.body);
        assert!(a.body.contains("\"invalid_token\""), "{}", a.body);
        assert_eq!(
            a.www.as_deref(),
            Some("Bearer realm=\"gw\", error=\"invalid_token\"")
        );
        assert_eq!(a.operator, None);
    }
}

#[test]
fn a_valid_token_without_the_scope_or_sub_is_403_naming_the_scope() {
    let gw = gateway(OPERATOR);
    for extra in [
        json!({"scope": "openid"}),
        json!({"scope": "attestgate:admins"}),
        json!({"scope": null}),
        json!({"sub": null}),
    ] {
        let bearer = format!("Bearer {}", operator_token(extra.clone()));
        let a = call(&gw, "GET", WHOAMI, Some(&bearer));
        assert_eq!(a.status, 403, "{extra}: {}", a.body);
        assert!(a.body.contains("\"insufficient_scope\""), "{}", a.body);
        assert_eq!(
            a.www.as_deref(),
            Some("Bearer realm=\"gw\", error=\"insufficient_scope\", scope=\"attestgate:admin\"")
        );
        assert_eq!(a.operator, None);
    }
}

#[test]
fn the_operator_api_does_not_exist_without_an_operator_section() {
    let gw = gateway("");
    let bearer = format!("Bearer {}", operator_token(json!({})));
    for auth in [None, Some(bearer.as_str())] {
        let a = call(&gw, "GET", WHOAMI, auth);
        assert_eq!(a.status, 404, "{}", a.body);
        assert!(a.body.contains("\"not_found\""));
        assert_eq!(a.www, None);
    }
}

#[test]
fn unknown_operator_paths_and_methods_after_authentication() {
    let gw = gateway(OPERATOR);
    let bearer = format!("Bearer {}", operator_token(json!({})));
    let a = call(
        &gw,
        "GET",
        "/.well-known/attestgate/nothing-here",
        Some(&bearer),
    );
    assert_eq!(a.status, 404);
    let a = call(&gw, "DELETE", WHOAMI, Some(&bearer));
    assert_eq!(a.status, 405);
    // A token in the URL is never read.
    let t = operator_token(json!({}));
    let a = call(&gw, "GET", &format!("{WHOAMI}?access_token={t}"), None);
    assert_eq!(a.status, 401);
}

#[test]
fn operator_tokens_are_not_route_tokens_and_the_challenge_path_stays_public() {
    let gw = gateway(OPERATOR);
    let bearer = format!("Bearer {}", operator_token(json!({})));
    // the operator's token does not open the routes of another provider
    assert_eq!(call(&gw, "GET", "/api/x", Some(&bearer)).status, 401);
}

#[test]
fn policy_errors_name_the_operator_table_and_field() {
    let errors = |operator: &str| {
        compile_toml("p.toml", &policy(operator))
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    let e = errors("[operator]\nprovider = \"nobody\"\nscopes = [\"a\"]");
    assert!(
        e.iter()
            .any(|m| m.starts_with("p.toml: [operator]: field \"provider\": unknown provider")),
        "{e:?}"
    );
    let e = errors("[operator]\nprovider = \"corp-idp\"\nscopes = []");
    assert!(
        e.iter()
            .any(|m| m.starts_with("p.toml: [operator]: field \"scopes\"")),
        "{e:?}"
    );
    let e = errors("[operator]\nprovider = \"corp-idp\"\nscopes = [\"a b\"]");
    assert!(
        e.iter().any(|m| m.contains("not an OAuth scope token")),
        "{e:?}"
    );
    let e = errors("[operator]\nprovider = \"corp-idp\"\nscopes = [\"a\"]\ntoken = \"s3cret\"");
    assert!(!e.is_empty(), "an unknown field is refused");
}
