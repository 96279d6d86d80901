//! Issue 14 items 1 and 2, natively: upstreams in the policy (build errors naming file,
//! upstream or route, and field), the forward plan of a route with an upstream (every inbound
//! credential and gateway-owned header family deleted, in every spelling, before the
//! credential is injected), and the injection plan each kind makes. Tokens are HS256, signed
//! here with `hmac` directly (tests/common), independently of the gateway's own code.

mod common;

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use serde_json::json;

use attestgate::api::{Gateway, MemoryReplay, Outcome, Request, Seams, StaticKeys};
use attestgate::gate::inject::Source;
use attestgate::jose::{block_on_ready, NativeVerifier};
use attestgate::policy::{compile, parse_toml, Auth, Policy};

const NOW: i64 = 1_700_000_000;
const SECRET: [u8; 32] = [0x42; 32];

const POLICY: &str = r#"
[gateway]
origin = "https://origin.example.com"

[provider.agent]
algorithms = ["HS256"]
secret = "AGENT_SECRET"

[provider.device]
algorithms = ["HS256"]
secret = "DEVICE_SECRET"
from = { header = "approov-token" }

[provider.sig]
algorithms = ["HS256"]
secret = "SIG_SECRET"
from = { header = "x-client-signature" }

[upstreams.billing]
url = "https://billing.internal.example.com/v2"
auth = { kind = "static", secret = "BILLING_KEY", header = "x-api-key" }

[upstreams.ledger]
url = "https://ledger.internal.example.com"
auth = { kind = "client_credentials", token_url = "https://as.example.com/token", secrets = { client_id = "LEDGER_ID", client_secret = "LEDGER_SECRET" }, scope = "ledger:read", audience = "https://ledger.internal.example.com" }

[upstreams.plain]
url = "https://plain.internal.example.com"

[upstreams.exchange]
url = "https://exchange.internal.example.com"
auth = { kind = "token_exchange", token_url = "https://as.example.com/token", secrets = { client_id = "X_ID", client_secret = "X_SECRET" }, subject = "agent", audience = "https://exchange.internal.example.com", scope = "orders:read" }

[upstreams.minted]
url = "https://minted.internal.example.com"
auth = { kind = "gateway_jwt", audience = "https://minted.internal.example.com", subject = "agent", lifetime_secs = 45, header = "x-gateway-jwt" }

[[route]]
id = "billing"
path = "/billing/**"
upstream = "billing"
require = { all = ["agent"] }
forward = { "x-verified-user" = "agent.sub" }
strip_cookies = true

[[route]]
id = "ledger"
path = "/ledger/**"
upstream = "ledger"
require = { all = ["agent"] }

[[route]]
id = "plain"
path = "/plain/**"
upstream = "plain"
public = true

[[route]]
id = "exchange"
path = "/exchange/**"
upstream = "exchange"
require = { all = ["agent"] }

[[route]]
id = "minted"
path = "/minted/**"
upstream = "minted"
require = { all = ["agent"] }

[[route]]
id = "legacy"
path = "/legacy/**"
require = { all = ["agent"] }
"#;

fn policy() -> Policy {
    compile(vec![parse_toml("p.toml", POLICY).expect("toml")])
        .unwrap_or_else(|e| panic!("{}", e[0]))
}

fn errors(text: &str) -> Vec<String> {
    match compile(vec![parse_toml("p.toml", text).expect("toml")]) {
        Ok(_) => panic!("compiled"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn hs256(claims: serde_json::Value) -> String {
    let head = Base64UrlUnpadded::encode_string(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = Base64UrlUnpadded::encode_string(claims.to_string().as_bytes());
    let input = format!("{head}.{body}");
    let sig = common::sign::hs256(&SECRET, input.as_bytes());
    format!("{input}.{}", Base64UrlUnpadded::encode_string(&sig))
}

fn token() -> String {
    hs256(json!({"sub": "user:alice", "iat": NOW, "exp": NOW + 300}))
}

/// Decide `GET https://api.example.com{path}` with `headers`; the outcome, looked at by `f`.
fn decide<T>(path: &str, headers: &[(&str, &str)], f: impl FnOnce(&Outcome<'_>) -> T) -> T {
    let gw = Gateway::new(policy()).expect("gateway");
    let mut keys = StaticKeys::new();
    for p in ["agent", "device", "sig"] {
        let set = attestgate::api::secret_keys(
            &{
                let mut s = attestgate::api::MemorySecrets::new();
                s.insert("K", &Base64::encode_string(&SECRET));
                s
            },
            &[attestgate::policy::Secret {
                name: "K".into(),
                kid: None,
            }],
        )
        .expect("keys");
        keys.insert(p, set);
    }
    let replay = MemoryReplay::new();
    let seams = Seams {
        keys: &keys,
        verifier: &NativeVerifier,
        replay: &replay,
        nonce_key: None,
        signing_keys: None,
        deny: None,
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let url = format!("https://api.example.com{path}");
    let req = Request {
        method: "GET",
        url: &url,
        headers: &headers,
    };
    block_on_ready(async {
        let d = gw.decide(&req, &seams, NOW, "req-1").await;
        Ok::<_, attestgate::Error>(f(&d.outcome))
    })
    .expect("nothing waits")
}

/// Every spelling a client could use for the gateway-owned families, its tokens, a receipt, an
/// injected credential and the claims prefix.
const HOSTILE: [&str; 24] = [
    "authorization",
    "dpop",
    "DPoP",
    "approov-token",
    "approov_token",
    "x-firebase-appcheck",
    "oauth-client-attestation",
    "oauth-client-attestation-pop",
    "signature",
    "signature-input",
    "signature-agent",
    "x-client-signature",
    "x_client_signature",
    "attestgate-receipt",
    "Attestgate-Receipt",
    "attestgate_receipt",
    "x-api-key",
    "X-Api-Key",
    "x_api_key",
    "cookie",
    "Cookie",
    "x_verified_user",
    "X-Verified_Route",
    "x-verified-admin",
];

#[test]
fn an_upstream_route_deletes_every_owned_family_and_plans_its_credential() {
    let auth = format!("Bearer {}", token());
    decide("/billing/invoices", &[("authorization", &auth)], |o| {
        let Outcome::Forward(plan) = o else {
            panic!("not forwarded: {o:?}")
        };
        assert_eq!(
            plan.target,
            "https://billing.internal.example.com/v2/billing/invoices"
        );
        for name in HOSTILE {
            assert!(
                plan.headers.deletes_name(name),
                "{name} reaches the upstream"
            );
        }
        for kept in ["accept", "content-type", "user-agent", "x-request-id"] {
            assert!(!plan.headers.deletes_name(kept), "{kept}");
        }
        let inject = plan.inject.as_ref().expect("a credential");
        assert_eq!(inject.kind(), "static");
        assert_eq!(inject.at.header, "x-api-key");
        assert!(matches!(inject.source, Source::Secret("BILLING_KEY")));
        // The verified claims are still set (and x-verified-user is replaced, not kept).
        let set: Vec<(&str, &str)> = plan.headers.sets().collect();
        assert!(set.contains(&("x-verified-user", "user:alice")), "{set:?}");
    });
}

#[test]
fn a_client_credentials_route_plans_a_token_for_its_own_upstream_only() {
    let auth = format!("Bearer {}", token());
    let key = |path: &str| {
        decide(path, &[("authorization", &auth)], |o| {
            let Outcome::Forward(plan) = o else {
                panic!("not forwarded: {o:?}")
            };
            let inject = plan.inject.as_ref().expect("a credential");
            assert_eq!(inject.kind(), "client_credentials");
            assert_eq!(
                (inject.at.header.as_str(), inject.at.scheme.as_deref()),
                ("authorization", Some("Bearer"))
            );
            // The client's Authorization is deleted before the token goes in.
            assert!(plan.headers.deletes_name("authorization"));
            assert!(
                !plan.headers.deletes_name("cookie"),
                "strip_cookies is per route"
            );
            match &inject.source {
                Source::ClientCredentials { client, key } => {
                    assert_eq!(client.scope.as_deref(), Some("ledger:read"));
                    *key
                }
                _ => panic!("not a client credentials token"),
            }
        })
    };
    assert_eq!(key("/ledger/a"), key("/ledger/b"), "one token per upstream");
}

#[test]
fn a_public_route_on_a_plain_upstream_injects_nothing_but_still_strips_owned_headers() {
    decide(
        "/plain/x",
        &[
            ("authorization", "Bearer abc"),
            ("dpop", "x"),
            ("attestgate-receipt", "r"),
        ],
        |o| {
            let Outcome::Forward(plan) = o else {
                panic!("not forwarded: {o:?}")
            };
            assert!(plan.inject.is_none());
            assert_eq!(plan.target, "https://plain.internal.example.com/plain/x");
            for name in [
                "authorization",
                "dpop",
                "approov-token",
                "attestgate-receipt",
                "x-client-signature",
            ] {
                assert!(plan.headers.deletes_name(name), "{name}");
            }
        },
    );
}

#[test]
fn a_route_with_origin_keeps_its_behaviour_but_never_passes_a_client_receipt() {
    let auth = format!("Bearer {}", token());
    decide("/legacy/x", &[("authorization", &auth)], |o| {
        let Outcome::Forward(plan) = o else {
            panic!("not forwarded: {o:?}")
        };
        assert!(plan.inject.is_none());
        assert_eq!(plan.target, "https://origin.example.com/legacy/x");
        assert!(plan.headers.deletes_name("authorization"), "consumed");
        assert!(plan.headers.deletes_name("attestgate_receipt"));
        // Not an upstream route: the other families pass as before.
        assert!(!plan.headers.deletes_name("approov-token"));
        assert!(!plan.headers.deletes_name("cookie"));
    });
}

/// The token exchange plan of a request with `claims` (its token, the plan's cache key, the
/// subject token it carries, the actor claims and the subject's exp).
fn exchange(claims: serde_json::Value) -> (String, [u8; 32], String, serde_json::Value, i64) {
    let token = hs256(claims);
    let auth = format!("Bearer {token}");
    decide("/exchange/x", &[("authorization", &auth)], |o| {
        let Outcome::Forward(plan) = o else {
            panic!("not forwarded: {o:?}")
        };
        let inject = plan.inject.as_ref().expect("a credential");
        assert_eq!(inject.kind(), "token_exchange");
        assert!(
            !format!("{inject:?}").contains(&token),
            "the plan prints no token"
        );
        match &inject.source {
            Source::TokenExchange {
                key,
                subject_token,
                actor,
                subject_exp,
                ..
            } => (
                token.clone(),
                key.0,
                subject_token.0.clone(),
                actor.clone(),
                *subject_exp,
            ),
            _ => panic!("not an exchange"),
        }
    })
}

#[test]
fn token_exchange_sends_the_verified_token_and_caches_per_principal_chain_and_scope() {
    let alice = |jti: &str, act: serde_json::Value, scope: &str| json!({"sub": "user:alice", "iss": "https://idp", "jti": jti, "scope": scope, "act": act, "iat": NOW, "exp": NOW + 200});
    let planner = json!({"sub": "agent:planner"});
    let (token, key, subject, actor, exp) = exchange(alice("1", planner.clone(), "orders:read"));
    assert_eq!(
        subject, token,
        "the verified inbound token is the subject_token"
    );
    assert_eq!(exp, NOW + 200);
    assert_eq!(
        actor["iss"], "https://api.example.com",
        "the gateway, as the request's origin"
    );
    assert_eq!(actor["sub"], actor["iss"]);
    assert_eq!(actor["aud"], "https://as.example.com/token");
    assert_eq!(actor["exp"].as_i64(), Some(NOW + 60));
    assert!(actor["jti"].as_str().is_some_and(|j| j.len() >= 16));
    // Another token of the same principal, chain and scopes: the same cached exchange.
    let (_, same, ..) = exchange(alice("2", planner.clone(), "orders:read"));
    assert_eq!(same, key);
    // Another principal, another actor chain, other scopes: never the same token.
    let (_, bob, ..) = exchange(
        json!({"sub": "user:bob", "iss": "https://idp", "act": planner, "scope": "orders:read", "iat": NOW, "exp": NOW + 200}),
    );
    let (_, chain, ..) = exchange(alice("3", json!({"sub": "agent:buyer"}), "orders:read"));
    let (_, deeper, ..) = exchange(alice(
        "4",
        json!({"sub": "agent:planner", "act": {"sub": "agent:root"}}),
        "orders:read",
    ));
    let (_, scopes, ..) = exchange(alice(
        "5",
        json!({"sub": "agent:planner"}),
        "orders:read orders:write",
    ));
    let keys = [key, bob, chain, deeper, scopes];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn gateway_jwt_carries_the_verified_subject_and_act_chain_for_the_upstreams_audience() {
    let act = json!({"sub": "agent:planner", "act": {"sub": "agent:root"}});
    let token = hs256(
        json!({"sub": "user:alice", "iss": "https://idp", "act": act, "iat": NOW, "exp": NOW + 200}),
    );
    let auth = format!("Bearer {token}");
    decide("/minted/x", &[("authorization", &auth)], |o| {
        let Outcome::Forward(plan) = o else {
            panic!("not forwarded: {o:?}")
        };
        // The client's Authorization is not the upstream's: deleted.
        assert!(plan.headers.deletes_name("authorization"));
        assert!(plan.headers.deletes_name("x_gateway_jwt"));
        let inject = plan.inject.as_ref().expect("a credential");
        assert_eq!(inject.at.header, "x-gateway-jwt");
        let Source::GatewayJwt { claims } = &inject.source else {
            panic!("not a gateway_jwt")
        };
        assert_eq!(claims["aud"], "https://minted.internal.example.com");
        assert_eq!(claims["sub"], "user:alice");
        assert_eq!(claims["act"], act);
        assert_eq!(claims["subject_issuer"], "https://idp");
        assert_eq!(claims["iss"], "https://api.example.com");
        assert_eq!(claims["exp"].as_i64(), Some(NOW + 45));
        assert_eq!(claims["iat"].as_i64(), Some(NOW));
    });
    // A verified token without `sub` cannot name the principal: refused, not minted.
    let token = hs256(json!({"iat": NOW, "exp": NOW + 200}));
    let auth = format!("Bearer {token}");
    decide("/minted/x", &[("authorization", &auth)], |o| {
        assert!(matches!(o, Outcome::Refused(_)), "{o:?}");
    });
}

#[test]
fn the_compiled_upstreams_resolve_kinds_headers_and_defaults() {
    let p = policy();
    let billing = p.upstream("billing").expect("billing");
    assert!(matches!(&billing.auth, Some(Auth::Static { secret, .. }) if secret == "BILLING_KEY"));
    let ledger = p.upstream("ledger").expect("ledger");
    match &ledger.auth {
        Some(Auth::ClientCredentials { client, at }) => {
            assert_eq!(client.refresh_margin_secs, 30);
            assert_eq!(client.timeout_secs, 5);
            assert_eq!(at.scheme.as_deref(), Some("Bearer"));
            assert_eq!(client.client_id_secret, "LEDGER_ID");
        }
        other => panic!("{other:?}"),
    }
    assert!(p.upstream("plain").expect("plain").auth.is_none());
    assert_eq!(
        p.route("billing").expect("r").upstream.as_deref(),
        Some("billing")
    );
    assert!(p.route("billing").expect("r").strip_cookies);
}

const HEAD: &str = r#"
[gateway]
origin = "https://origin.example.com"
[provider.agent]
algorithms = ["HS256"]
secret = "AGENT_SECRET"
"#;

fn with(extra: &str) -> String {
    format!("{HEAD}{extra}")
}

#[test]
fn policy_errors_name_file_upstream_or_route_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            r#"
[[route]]
id = "r"
path = "/r"
upstream = "nowhere"
require = { all = ["agent"] }
"#,
            r#"p.toml: route "r": field "upstream": unknown upstream "nowhere" (defined: none)"#,
        ),
        (
            r#"
[upstreams.u]
url = "ftp://u.example.com"
"#,
            r#"p.toml: upstream "u": field "url": "ftp://u.example.com" must be an https:// URL"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "static" }
"#,
            r#"p.toml: upstream "u": field "auth.secret": is required for kind "static""#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "static", secret = "not-a-name" }
"#,
            r#"p.toml: upstream "u": field "auth.secret": "not-a-name" is not a Worker secret name"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "client_credentials", token_url = "https://as.example.com/token" }
"#,
            r#"p.toml: upstream "u": field "auth.secrets": is required for kind "client_credentials""#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "client_credentials", secrets = { client_id = "A", client_secret = "B" } }
"#,
            r#"p.toml: upstream "u": field "auth.token_url": is required for kind "client_credentials""#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "static", secret = "K", token_url = "https://as.example.com/token" }
"#,
            r#"p.toml: upstream "u": field "auth.token_url": kind "static" does not take token_url"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "magic" }
"#,
            r#"p.toml: upstream "u": field "auth.kind": "magic" is not a credential kind"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "static", secret = "K", header = "x-verified-key" }
"#,
            r#"p.toml: upstream "u": field "auth.header": "x-verified-key" starts with the claims_header_prefix"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "static", secret = "K", header = "host" }
"#,
            r#"p.toml: upstream "u": field "auth.header": "host" is a header the gateway sets"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "static", secret = "K" }
[[route]]
id = "r"
path = "/r"
upstream = "u"
public = true
"#,
            r#"p.toml: route "r": field "upstream": a public route cannot use upstream "u", which injects a static credential"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "static", secret = "K" }
[[route]]
id = "r"
path = "/r"
upstream = "u"
origin = "https://o.example.com"
require = { all = ["agent"] }
"#,
            r#"p.toml: route "r": field "upstream": a route has either origin or upstream, not both"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "gateway_jwt", subject = "agent" }
"#,
            r#"p.toml: upstream "u": field "auth.audience": is required for kind "gateway_jwt""#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "gateway_jwt", audience = "https://u", subject = "nobody" }
"#,
            r#"p.toml: upstream "u": field "auth.subject": unknown provider "nobody""#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "token_exchange", token_url = "https://as.example.com/token", secrets = { client_id = "A", client_secret = "B" } }
"#,
            r#"p.toml: upstream "u": field "auth.subject": is required for kind "token_exchange""#,
        ),
        (
            r#"
[provider.other]
algorithms = ["HS256"]
secret = "OTHER"
from = { header = "x-other" }
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "gateway_jwt", audience = "https://u", subject = "agent" }
[[route]]
id = "r"
path = "/r"
upstream = "u"
require = { any = ["agent", "other"] }
"#,
            r#"p.toml: route "r": field "upstream": upstream "u" (gateway_jwt) needs the verified token of provider "agent""#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "gateway_jwt", audience = "https://u", subject = "agent", lifetime_secs = 3600 }
"#,
            r#"p.toml: upstream "u": field "auth.lifetime_secs": 3600 is not in 1..=300"#,
        ),
        (
            r#"
[upstreams.u]
url = "https://u.example.com"
auth = { kind = "static", secret = "K" }
[[route]]
id = "r"
path = "/r"
upstream = "u"
forward_tokens = true
require = { all = ["agent"] }
"#,
            r#"p.toml: route "r": field "forward_tokens": upstream "u" injects a static credential"#,
        ),
    ];
    for (extra, want) in cases {
        let got = errors(&with(extra));
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "want {want}\n got {got:?}"
        );
    }
}

#[test]
fn an_unused_upstream_is_a_warning() {
    let text = with(
        r#"
[upstreams.u]
url = "https://u.example.com"
[[route]]
id = "r"
path = "/r"
require = { all = ["agent"] }
"#,
    );
    let p = compile(vec![parse_toml("p.toml", &text).expect("toml")]).expect("policy");
    assert!(p
        .warnings()
        .iter()
        .any(|w| w.to_string()
            == r#"p.toml: upstream "u": field "name": no route uses this upstream"#));
}

/// The `[upstreams.NAME]` example of policies/README.md compiles as written (with a gateway and
/// the agent provider it names), and the error messages listed there are the compiler's.
#[test]
fn the_policy_reference_example_compiles() {
    let text = std::fs::read_to_string("policies/README.md").expect("README");
    let section = text
        .split("## `[upstreams.NAME]`")
        .nth(1)
        .expect("the upstreams section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a toml example");
    let p = compile(vec![parse_toml("u.toml", &with(example)).expect("toml")])
        .unwrap_or_else(|e| panic!("{}", e[0]));
    let kinds: Vec<&str> = p
        .upstreams()
        .iter()
        .filter_map(|u| u.auth.as_ref().map(Auth::kind))
        .collect();
    assert_eq!(
        kinds,
        [
            "static",
            "gateway_jwt",
            "client_credentials",
            "token_exchange"
        ]
    );
    assert!(p.route("ledger-read").expect("route").strip_cookies);
}
