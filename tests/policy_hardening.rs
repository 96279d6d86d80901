//! Issue 12, the policy side: paths the origin normalises, methods, host-specific routes,
//! providers that accept the same tokens with different checks, one claim-path dialect, HMAC
//! secrets with a `kid`, and the default token lifetime.
//!
//! The assertions compare the `Debug` form of a miss where they name a refusal, so each of them
//! can be run against the code before the fix (where it fails).

use attestgate::policy::{compile, parse_toml, Policy, PolicyError};

const GATEWAY: &str = r#"
[gateway]
origin = "https://origin.example.com"
"#;

const AGENT: &str = r#"
[provider.agent]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"
"#;

/// A public catch-all next to protected routes: the shape of every bypass of issue 12 item 1.
const ROUTES: &str = r#"
[[route]]
id = "public-all"
path = "/**"
public = true

[[route]]
id = "admin"
path = "/admin/**"
require = { all = ["agent"] }

[[route]]
id = "orders-read"
methods = ["GET"]
path = "/v1/orders/{id}"
require = { all = ["agent"] }
scopes = ["orders:read"]

[[route]]
id = "orders-write"
methods = ["PUT", "DELETE"]
path = "/v1/orders/{order}"
require = { all = ["agent"] }
scopes = ["orders:write"]

[[route]]
id = "inbox"
path = "/inbox/"
require = { all = ["agent"] }

[[route]]
id = "health"
methods = ["GET"]
path = "/healthz"
public = true
"#;

fn build(text: &str) -> Result<Policy, Vec<PolicyError>> {
    compile(vec![parse_toml("p.toml", text).expect("parses")])
}

fn policy_with(gateway_extra: &str, routes: &str) -> Policy {
    build(&format!("{GATEWAY}{gateway_extra}\n{AGENT}\n{routes}"))
        .unwrap_or_else(|e| panic!("{}", e[0]))
}

fn policy() -> Policy {
    policy_with("", ROUTES)
}

/// The route id, or the `Debug` form of the miss.
fn lookup(p: &Policy, method: &str, path: &str) -> String {
    match p.match_route(method, "api.example.com", path) {
        Ok(m) => m.route.id.clone(),
        Err(miss) => format!("{miss:?}"),
    }
}

fn refused_as(p: &Policy, method: &str, path: &str, want: &str) {
    let got = lookup(p, method, path);
    assert!(
        got.starts_with(want),
        "{method} {path}: got {got}, want {want}"
    );
}

// ---- item 1: paths the origin normalises ----------------------------------------------------

#[test]
fn semicolon_path_parameters_are_refused_before_matching() {
    let p = policy();
    for path in [
        "/admin;jsessionid=x/users",
        "/admin/users;x",
        "/v1/orders;x/7",
        "/v1/orders/7;",
        "/x;",
        "/admin%3bjsessionid=x/users",
        "/admin%3Bx/users",
    ] {
        refused_as(&p, "GET", path, "Unnormalised(PathParameter)");
    }
    // the older, more specific problems keep their names
    refused_as(&p, "GET", "/a/..;x/b", "Unnormalised(DotSegment)");
    refused_as(&p, "GET", "/a/;x/b", "Unnormalised(EmptySegment)");
}

#[test]
fn a_literal_with_a_semicolon_is_a_build_error() {
    let e = build(&format!(
        "{GATEWAY}\n[[route]]\nid = \"r\"\npath = \"/a;b\"\npublic = true\n"
    ))
    .expect_err("refused");
    assert!(e[0].to_string().contains("field \"path\""), "{}", e[0]);
    assert!(e[0].to_string().contains(';'), "{}", e[0]);
}

#[test]
fn rest_covers_its_prefix() {
    let p = policy();
    assert_eq!(lookup(&p, "GET", "/admin"), "admin");
    assert_eq!(lookup(&p, "GET", "/admin/"), "admin");
    assert_eq!(lookup(&p, "GET", "/admin/users"), "admin");
    assert_eq!(lookup(&p, "GET", "/admin/users/"), "admin");
    assert_eq!(lookup(&p, "GET", "/administrator"), "public-all");
    assert_eq!(lookup(&p, "GET", "/"), "public-all");
}

#[test]
fn rest_covering_the_prefix_loses_to_an_exact_route() {
    let p = policy_with(
        "",
        r#"
[[route]]
id = "files"
path = "/files/**"
require = { all = ["agent"] }

[[route]]
id = "files-index"
path = "/files"
public = true
"#,
    );
    assert_eq!(lookup(&p, "GET", "/files"), "files-index");
    assert_eq!(lookup(&p, "GET", "/files/"), "files");
    assert_eq!(lookup(&p, "GET", "/files/a"), "files");
}

#[test]
fn case_variants_of_a_protected_route_never_reach_a_weaker_one() {
    let p = policy();
    for path in [
        "/ADMIN/users",
        "/Admin",
        "/aDmIn/",
        "/V1/orders/7",
        "/v1/ORDERS/7",
        "/INBOX/",
    ] {
        refused_as(&p, "GET", path, "ProtectedVariant");
    }
    // the parameter segment is not a literal: any case is the same route
    assert_eq!(lookup(&p, "GET", "/v1/orders/ABC"), "orders-read");
    // variants of public routes are harmless: the catch-all takes them
    assert_eq!(lookup(&p, "GET", "/HEALTHZ"), "public-all");
    assert_eq!(lookup(&p, "GET", "/healthz/"), "public-all");
    // paths that are nobody's variant
    assert_eq!(lookup(&p, "GET", "/Other/Thing"), "public-all");
    assert_eq!(lookup(&p, "GET", "/v1/orders"), "public-all");
}

#[test]
fn trailing_slash_variants_of_a_protected_route_never_reach_a_weaker_one() {
    let p = policy();
    refused_as(&p, "GET", "/v1/orders/7/", "ProtectedVariant");
    refused_as(&p, "PUT", "/v1/orders/7/", "ProtectedVariant");
    // the route has the slash, the request has not
    refused_as(&p, "GET", "/inbox", "ProtectedVariant");
    assert_eq!(lookup(&p, "GET", "/inbox/"), "inbox");
}

#[test]
fn a_variant_of_a_protected_route_whose_method_does_not_match_is_refused_too() {
    // POST /V1/orders/7: the protected routes of that path take GET, PUT and DELETE only; an
    // origin that ignores case would still hand it to their handler, not to the catch-all.
    let p = policy();
    refused_as(&p, "POST", "/V1/orders/7", "ProtectedVariant");
    refused_as(&p, "POST", "/v1/orders/7/", "ProtectedVariant");
}

#[test]
fn a_stronger_route_may_take_a_variant_of_a_weaker_one() {
    let p = policy_with(
        "",
        r#"
[[route]]
id = "all"
path = "/**"
require = { all = ["agent"] }

[[route]]
id = "health"
path = "/healthz"
public = true
"#,
    );
    assert_eq!(lookup(&p, "GET", "/HEALTHZ"), "all");
    assert_eq!(lookup(&p, "GET", "/healthz/"), "all");
    assert_eq!(lookup(&p, "GET", "/healthz"), "health");
}

#[test]
fn routes_with_the_same_protection_share_their_variants() {
    let p = policy_with(
        "",
        r#"
[[route]]
id = "all"
path = "/**"
require = { all = ["agent"] }
scopes = ["read"]

[[route]]
id = "reports"
path = "/reports/{id}"
require = { all = ["agent"] }
scopes = ["read"]
forward = { "x-verified-user" = "agent.sub" }
"#,
    );
    assert_eq!(lookup(&p, "GET", "/REPORTS/1"), "all");
    assert_eq!(lookup(&p, "GET", "/reports/1/"), "all");
}

#[test]
fn a_case_sensitive_origin_turns_the_case_rule_off() {
    let p = policy_with("case_sensitive_paths = true", ROUTES);
    assert_eq!(lookup(&p, "GET", "/ADMIN/users"), "public-all");
    assert_eq!(lookup(&p, "GET", "/V1/orders/7"), "public-all");
    // the trailing slash rule stays
    refused_as(&p, "GET", "/v1/orders/7/", "ProtectedVariant");
    refused_as(&p, "GET", "/inbox", "ProtectedVariant");
    assert!(p.gateway().case_sensitive_paths);
    assert!(!policy().gateway().case_sensitive_paths);
}

#[test]
fn upper_case_literals_are_protected_in_every_spelling() {
    let p = policy_with(
        "",
        r#"
[[route]]
id = "public-all"
path = "/**"
public = true

[[route]]
id = "reports"
path = "/Reports/{id}"
require = { all = ["agent"] }
"#,
    );
    assert_eq!(lookup(&p, "GET", "/Reports/1"), "reports");
    refused_as(&p, "GET", "/reports/1", "ProtectedVariant");
    refused_as(&p, "GET", "/REPORTS/1", "ProtectedVariant");
}

fn warnings(p: &Policy) -> Vec<String> {
    p.warnings().iter().map(ToString::to_string).collect()
}

#[test]
fn the_compiler_warns_when_a_weaker_route_catches_variants() {
    let w = warnings(&policy());
    let about = |route: &str, weaker: &str| {
        w.iter()
            .filter(|m| m.contains(&format!("route \"{route}\"")) && m.contains(weaker))
            .count()
    };
    // /ADMIN/x reaches the catch-all (case); /admin/x/ does not (** covers it)
    assert_eq!(about("admin", "p.toml#public-all"), 1, "{w:#?}");
    assert_eq!(about("orders-read", "p.toml#public-all"), 1, "{w:#?}");
    assert_eq!(about("inbox", "p.toml#public-all"), 1, "{w:#?}");
    // public routes have nothing to protect
    assert_eq!(about("health", "p.toml#public-all"), 0, "{w:#?}");
    let admin = w
        .iter()
        .find(|m| m.contains("route \"admin\""))
        .expect("warning");
    assert!(admin.contains("case"), "{admin}");
    assert!(admin.contains("case_sensitive_paths"), "{admin}");
    let orders = w
        .iter()
        .find(|m| m.contains("route \"orders-read\""))
        .expect("warning");
    assert!(orders.contains("trailing"), "{orders}");

    // case-sensitive origin: only the trailing-slash variants are left
    let w = warnings(&policy_with("case_sensitive_paths = true", ROUTES));
    assert!(!w.iter().any(|m| m.contains("route \"admin\"")), "{w:#?}");
    assert!(
        w.iter().any(|m| m.contains("route \"orders-read\"")),
        "{w:#?}"
    );
}

#[test]
fn no_variant_warning_without_a_weaker_route() {
    let w = warnings(&policy_with(
        "",
        r#"
[[route]]
id = "orders"
methods = ["GET"]
path = "/v1/orders/{id}"
require = { all = ["agent"] }

[[route]]
id = "health"
path = "/healthz"
public = true
"#,
    ));
    assert!(w.is_empty(), "{w:#?}");
}

// ---- item 2: methods ------------------------------------------------------------------------

#[test]
fn get_implies_head() {
    let p = policy();
    assert_eq!(lookup(&p, "HEAD", "/v1/orders/7"), "orders-read");
    assert_eq!(lookup(&p, "HEAD", "/healthz"), "health");
    assert!(p
        .route("orders-read")
        .is_some_and(|r| r.accepts_method("HEAD")));
    assert!(!p
        .route("orders-write")
        .is_some_and(|r| r.accepts_method("HEAD")));
}

#[test]
fn a_method_the_most_specific_routes_do_not_list_is_405_with_allow() {
    let p = policy();
    // never handed to the public catch-all
    refused_as(
        &p,
        "POST",
        "/v1/orders/7",
        "MethodNotAllowed(Allow(\"DELETE, GET, HEAD, PUT\"))",
    );
    refused_as(
        &p,
        "PATCH",
        "/v1/orders/7",
        "MethodNotAllowed(Allow(\"DELETE, GET, HEAD, PUT\"))",
    );
    refused_as(
        &p,
        "POST",
        "/healthz",
        "MethodNotAllowed(Allow(\"GET, HEAD\"))",
    );
    refused_as(
        &p,
        "get",
        "/healthz",
        "MethodNotAllowed(Allow(\"GET, HEAD\"))",
    );
    assert_eq!(lookup(&p, "DELETE", "/v1/orders/7"), "orders-write");
    // a route without `methods` takes every method
    assert_eq!(lookup(&p, "PROPFIND", "/admin/x"), "admin");
}

#[test]
fn head_and_get_in_two_routes_of_one_shape_are_ambiguous() {
    let e = build(&format!(
        "{GATEWAY}\n[[route]]\nid = \"a\"\nmethods = [\"GET\"]\npath = \"/a\"\npublic = true\n\
         [[route]]\nid = \"b\"\nmethods = [\"HEAD\"]\npath = \"/a\"\npublic = true\n"
    ))
    .expect_err("ambiguous");
    assert!(e[0].to_string().contains("ambiguous"), "{}", e[0]);
    assert!(e[0].to_string().contains("HEAD"), "{}", e[0]);
}

#[test]
fn allow_follows_the_host_filter() {
    let p = policy_with(
        "",
        r#"
[[route]]
id = "a-get"
methods = ["GET"]
host = "a.example.com"
path = "/x"
public = true

[[route]]
id = "any-post"
methods = ["POST"]
path = "/x"
public = true
"#,
    );
    let on = |host: &str, method: &str| match p.match_route(method, host, "/x") {
        Ok(m) => m.route.id.clone(),
        Err(miss) => format!("{miss:?}"),
    };
    assert_eq!(on("a.example.com", "GET"), "a-get");
    assert_eq!(on("b.example.com", "POST"), "any-post");
    assert_eq!(
        on("a.example.com", "PUT"),
        "MethodNotAllowed(Allow(\"GET, HEAD, POST\"))"
    );
    assert_eq!(
        on("b.example.com", "GET"),
        "MethodNotAllowed(Allow(\"POST\"))"
    );
}

// ---- item 3: host-specific routes sharing an origin -----------------------------------------

#[test]
fn the_compiler_warns_when_host_specific_routes_share_an_origin() {
    let routes = r#"
[[route]]
id = "admin-host"
host = "admin.example.com"
path = "/reports/**"
require = { all = ["agent"] }

[[route]]
id = "public-host"
host = "www.example.com"
path = "/reports/{id}"
public = true
"#;
    let w = warnings(&policy_with("", routes));
    let shared: Vec<&String> = w
        .iter()
        .filter(|m| m.contains("X-Forwarded-Host"))
        .collect();
    assert_eq!(shared.len(), 1, "{w:#?}");
    assert!(shared[0].contains("p.toml#admin-host") || shared[0].contains("route \"admin-host\""));
    assert!(shared[0].contains("public-host"), "{}", shared[0]);

    // their own origins: nothing to say
    let separate = routes.replace(
        "public = true",
        "public = true\norigin = \"https://www.internal.example.com\"",
    );
    let w = warnings(&policy_with("", &separate));
    assert!(!w.iter().any(|m| m.contains("X-Forwarded-Host")), "{w:#?}");

    // disjoint paths: nothing to say
    let disjoint = routes.replace("/reports/{id}", "/about");
    let w = warnings(&policy_with("", &disjoint));
    assert!(!w.iter().any(|m| m.contains("X-Forwarded-Host")), "{w:#?}");
}

// ---- item 8: one claim-path dialect ---------------------------------------------------------

mod claim_paths {
    use super::*;
    use attestgate::gate::Gate;
    use attestgate::jose::{b64, claims};
    use serde_json::{json, Value};

    const NOW: i64 = 1_700_000_000;

    fn gate(required: &str) -> Gate {
        let text = format!(
            r#"{GATEWAY}
[provider.p]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"
required_claims = {required}

[[route]]
id = "r"
path = "/r"
require = {{ all = ["p"] }}
"#
        );
        Gate::new(build(&text).unwrap_or_else(|e| panic!("{}", e[0]))).expect("gate")
    }

    fn check(g: &Gate, extra: Value) -> Result<(), attestgate::jose::Error> {
        let mut c = json!({
            "iss": "https://idp.example.com",
            "aud": "https://api.example.com",
            "exp": NOW + 600,
            "iat": NOW - 10,
        });
        if let (Some(m), Value::Object(e)) = (c.as_object_mut(), extra) {
            m.extend(e);
        }
        let rules = &g
            .provider("p")
            .and_then(|p| p.jwt())
            .expect("jwt provider")
            .profile
            .rules;
        claims::validate(&b64::encode(c.to_string().as_bytes()), rules, NOW).map(|_| ())
    }

    #[test]
    fn a_quoted_required_claim_is_one_top_level_claim() {
        let g = gate(r#"['"https://example.com/roles"']"#);
        assert_eq!(
            check(&g, json!({"https://example.com/roles": ["admin"]})),
            Ok(())
        );
        // the counter-example of issue 12 item 8: a nested object does not satisfy it
        assert_eq!(
            check(&g, json!({"https://example": {"com/roles": 1}})),
            Err(attestgate::jose::Error::RequiredClaimMissing)
        );
        assert_eq!(
            check(&g, json!({})),
            Err(attestgate::jose::Error::RequiredClaimMissing)
        );
    }

    #[test]
    fn unquoted_dots_still_walk_into_objects() {
        let g = gate(r#"["cnf.jkt", "sub"]"#);
        assert_eq!(check(&g, json!({"sub": "u", "cnf": {"jkt": "t"}})), Ok(()));
        assert_eq!(
            check(&g, json!({"sub": "u", "cnf.jkt": "t"})),
            Err(attestgate::jose::Error::RequiredClaimMissing)
        );
        // a quoted segment inside a longer path
        let g = gate(r#"['ext."https://example.com/tenant".id']"#);
        assert_eq!(
            check(
                &g,
                json!({"ext": {"https://example.com/tenant": {"id": 7}}})
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &g,
                json!({"ext": {"https://example": {"com/tenant": {"id": 7}}}})
            ),
            Err(attestgate::jose::Error::RequiredClaimMissing)
        );
    }

    #[test]
    fn binding_and_nonce_claims_are_parsed_once_into_segments() {
        let text = format!(
            "{GATEWAY}\n[provider.p]\nalgorithms = [\"HS256\"]\nsecret = \"S\"\n\
             binding = {{ claim = 'ext.\"https://example.com/pay\"', header = \"Authorization\" }}\n\
             nonce_claim = '\"urn:example:nonce\"'\n\
             [[route]]\nid = \"r\"\npath = \"/r\"\nrequire = {{ all = [\"p\"] }}\n"
        );
        let g = Gate::new(build(&text).unwrap_or_else(|e| panic!("{}", e[0]))).expect("gate");
        let p = g.provider("p").and_then(|p| p.jwt()).expect("jwt provider");
        let binding = p.binding.as_ref().expect("binding");
        assert_eq!(binding.claim.segments(), ["ext", "https://example.com/pay"]);
        assert_eq!(binding.header, "authorization");
        assert_eq!(
            p.nonce_claim.as_ref().map(|n| n.segments().to_vec()),
            Some(vec!["urn:example:nonce".to_owned()])
        );
    }

    #[test]
    fn a_malformed_claim_path_is_a_build_error_in_every_field() {
        for (field, line) in [
            ("required_claims", r#"required_claims = ['"unterminated']"#),
            ("required_claims", r#"required_claims = ["a..b"]"#),
            ("nonce_claim", r#"nonce_claim = 'x."y'"#),
            (
                "binding",
                r#"binding = { claim = "pay.", header = "authorization" }"#,
            ),
        ] {
            let text = format!(
                "{GATEWAY}\n[provider.p]\nissuer = \"https://i.example.com\"\naudiences = [\"a\"]\n\
                 algorithms = [\"ES256\"]\njwks_uri = \"https://i.example.com/j\"\n{line}\n\
                 [[route]]\nid = \"r\"\npath = \"/r\"\nrequire = {{ all = [\"p\"] }}\n"
            );
            let e = build(&text).expect_err(line);
            assert!(
                e.iter()
                    .any(|e| e.to_string().contains(&format!("field \"{field}\""))),
                "{line}: {e:?}"
            );
        }
        // the same path twice, once quoted
        let text = format!(
            "{GATEWAY}\n[provider.p]\nissuer = \"https://i.example.com\"\naudiences = [\"a\"]\n\
             algorithms = [\"ES256\"]\njwks_uri = \"https://i.example.com/j\"\n\
             required_claims = ['sub', '\"sub\"']\n\
             [[route]]\nid = \"r\"\npath = \"/r\"\nrequire = {{ all = [\"p\"] }}\n"
        );
        let e = build(&text).expect_err("listed twice");
        assert!(e[0].to_string().contains("twice"), "{}", e[0]);
    }
}

// ---- item 10: a default lifetime ------------------------------------------------------------

mod lifetime {
    use super::*;
    use attestgate::gate::Gate;
    use attestgate::jose::Error;
    use attestgate::jose::{b64, claims};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn gate(extra: &str, hmac: bool) -> Gate {
        let keys = if hmac {
            "algorithms = [\"HS256\"]\nsecret = \"S\"\n".to_owned()
        } else {
            "issuer = \"https://i.example.com\"\naudiences = [\"a\"]\nalgorithms = [\"ES256\"]\n\
             jwks_uri = \"https://i.example.com/j\"\n"
                .to_owned()
        };
        let text = format!(
            "{GATEWAY}\n[provider.p]\n{keys}{extra}\n\
             [[route]]\nid = \"r\"\npath = \"/r\"\nrequire = {{ all = [\"p\"] }}\n"
        );
        Gate::new(build(&text).unwrap_or_else(|e| panic!("{}", e[0]))).expect("gate")
    }

    fn token(g: &Gate, hmac: bool, iat: Option<i64>, exp: i64) -> Result<(), Error> {
        let mut c = json!({ "exp": exp });
        if !hmac {
            c["iss"] = json!("https://i.example.com");
            c["aud"] = json!("a");
        }
        if let Some(iat) = iat {
            c["iat"] = json!(iat);
        }
        let rules = &g
            .provider("p")
            .and_then(|p| p.jwt())
            .expect("jwt provider")
            .profile
            .rules;
        claims::validate(&b64::encode(c.to_string().as_bytes()), rules, NOW).map(|_| ())
    }

    #[test]
    fn without_max_lifetime_secs_a_token_lives_at_most_a_day() {
        for hmac in [false, true] {
            let g = gate("", hmac);
            assert_eq!(token(&g, hmac, None, i64::MAX), Err(Error::LifetimeTooLong));
            assert_eq!(
                token(&g, hmac, Some(NOW), i64::MAX),
                Err(Error::LifetimeTooLong)
            );
            assert_eq!(token(&g, hmac, Some(NOW), NOW + 86_400), Ok(()));
            assert_eq!(
                token(&g, hmac, Some(NOW), NOW + 86_401),
                Err(Error::LifetimeTooLong)
            );
            assert_eq!(
                token(&g, hmac, None, NOW + 86_401),
                Err(Error::LifetimeTooLong)
            );
        }
    }

    #[test]
    fn a_policy_may_raise_or_lower_it_within_bounds() {
        let g = gate("max_lifetime_secs = 604800", false);
        assert_eq!(token(&g, false, Some(NOW), NOW + 2 * 86_400), Ok(()));
        assert_eq!(
            token(&g, false, Some(NOW), i64::MAX),
            Err(Error::LifetimeTooLong)
        );
        let g = gate("max_lifetime_secs = 60", false);
        assert_eq!(
            token(&g, false, Some(NOW), NOW + 61),
            Err(Error::LifetimeTooLong)
        );
        for bad in ["0", "31536001", "18446744073709551615"] {
            let text = format!(
                "{GATEWAY}\n[provider.p]\nalgorithms = [\"HS256\"]\nsecret = \"S\"\nmax_lifetime_secs = {bad}\n\
                 [[route]]\nid = \"r\"\npath = \"/r\"\nrequire = {{ all = [\"p\"] }}\n"
            );
            let e = match parse_toml("p.toml", &text) {
                Err(e) => vec![e],
                Ok(f) => compile(vec![f]).expect_err(bad),
            };
            assert!(
                e[0].to_string().contains("max_lifetime_secs"),
                "{bad}: {}",
                e[0]
            );
        }
    }
}

// ---- item 6, build part: providers that accept the same tokens with different checks --------

mod token_state {
    use super::*;

    fn provider(name: &str, extra: &str) -> String {
        format!(
            "[provider.{name}]\nissuer = \"https://idp.example.com\"\naudiences = [\"https://api.example.com\"]\n\
             algorithms = [\"ES256\", \"EdDSA\"]\ntoken_types = [\"at+jwt\"]\nfrom = {{ header = \"{name}-token\" }}\n\
             jwks_uri = \"https://idp.example.com/jwks.json\"\n{extra}\n"
        )
    }

    fn hmac(name: &str, extra: &str) -> String {
        format!(
            "[provider.{name}]\nalgorithms = [\"HS256\"]\nsecret = \"APPROOV_SECRET\"\n\
             from = {{ header = \"{name}-token\" }}\n{extra}\n"
        )
    }

    fn routes(names: &[&str]) -> String {
        names
            .iter()
            .map(|n| {
                format!(
                    "[[route]]\nid = \"{n}\"\npath = \"/{n}\"\nrequire = {{ all = [\"{n}\"] }}\n"
                )
            })
            .collect()
    }

    fn errors(providers: &str, names: &[&str]) -> Vec<String> {
        match build(&format!("{GATEWAY}\n{providers}\n{}", routes(names))) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_bearer_provider_next_to_a_dpop_provider_of_the_same_issuer_is_an_error() {
        let e = errors(
            &(provider("agent", "") + &provider("dpop_agent", "proof = \"dpop\"")),
            &["agent", "dpop_agent"],
        );
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].contains("provider \"agent\": field \"proof\""),
            "{}",
            e[0]
        );
        assert!(e[0].contains("\"dpop_agent\""), "{}", e[0]);
        assert!(e[0].contains("weakens = [\"dpop_agent\"]"), "{}", e[0]);
    }

    #[test]
    fn every_token_state_field_counts() {
        for (field, strict) in [
            ("proof", "proof = \"dpop\""),
            ("replay", "replay = \"jti\""),
            (
                "binding",
                "binding = { claim = \"pay\", header = \"authorization\" }",
            ),
            ("nonce_claim", "nonce_claim = \"nonce\""),
        ] {
            let e = errors(&(provider("a", "") + &provider("b", strict)), &["a", "b"]);
            assert_eq!(e.len(), 1, "{field}: {e:#?}");
            assert!(
                e[0].contains(&format!("provider \"a\": field \"{field}\"")),
                "{}",
                e[0]
            );
            // for HMAC providers, the same secret is the same issuer
            let e = errors(&(hmac("a", "") + &hmac("b", strict)), &["a", "b"]);
            assert_eq!(e.len(), 1, "{field}: {e:#?}");
            assert!(e[0].contains("same HMAC secret"), "{}", e[0]);
        }
        // both check, differently: each lacks the other's check
        let e = errors(
            &(provider("a", "nonce_claim = \"nonce\"") + &provider("b", "nonce_claim = \"n2\"")),
            &["a", "b"],
        );
        assert_eq!(e.len(), 2, "{e:#?}");
        // the same checks: nothing to say
        let same = provider("a", "replay = \"jti\"") + &provider("b", "replay = \"jti\"");
        assert!(errors(&same, &["a", "b"]).is_empty());
    }

    #[test]
    fn providers_that_cannot_share_a_token_do_not_conflict() {
        let strict = provider("b", "proof = \"dpop\"");
        for other in [
            provider("a", "").replace("https://idp.example.com\"", "https://other.example.com\""),
            provider("a", "").replace(
                "[\"https://api.example.com\"]",
                "[\"https://else.example.com\"]",
            ),
            provider("a", "").replace("[\"ES256\", \"EdDSA\"]", "[\"RS256\"]"),
            provider("a", "").replace("[\"at+jwt\"]", "[\"JWT\"]"),
        ] {
            assert!(
                errors(&(other.clone() + &strict), &["a", "b"]).is_empty(),
                "{other}"
            );
        }
        let other_secret = hmac("a", "").replace("APPROOV_SECRET", "OTHER_SECRET");
        assert!(errors(
            &(other_secret + &hmac("b", "nonce_claim = \"n\"")),
            &["a", "b"]
        )
        .is_empty());
        // an HMAC provider without issuer does not check iss: an issuer on the other is no help
        let e = errors(
            &(hmac("a", "") + &hmac("b", "issuer = \"x\"\nnonce_claim = \"n\"")),
            &["a", "b"],
        );
        assert_eq!(e.len(), 1, "{e:#?}");
    }

    #[test]
    fn weakens_acknowledges_it() {
        let p = build(&format!(
            "{GATEWAY}\n{}{}{}",
            provider("agent", "weakens = [\"dpop_agent\"]"),
            provider("dpop_agent", "proof = \"dpop\""),
            routes(&["agent", "dpop_agent"])
        ))
        .unwrap_or_else(|e| panic!("{}", e[0]));
        assert_eq!(
            p.provider("agent").map(|a| a.weakens.clone()),
            Some(vec!["dpop_agent".to_owned()])
        );
        // on the wrong side it acknowledges nothing
        let e = errors(
            &(provider("agent", "")
                + &provider("dpop_agent", "proof = \"dpop\"\nweakens = [\"agent\"]")),
            &["agent", "dpop_agent"],
        );
        assert_eq!(e.len(), 1, "{e:#?}");
    }

    #[test]
    fn weakens_must_name_a_provider_and_something_to_acknowledge() {
        let e = errors(&provider("a", "weakens = [\"nobody\"]"), &["a"]);
        assert!(e[0].contains("unknown provider \"nobody\""), "{}", e[0]);
        let e = errors(&provider("a", "weakens = [\"a\"]"), &["a"]);
        assert!(e[0].contains("cannot weaken itself"), "{}", e[0]);
        let p = build(&format!(
            "{GATEWAY}\n{}{}{}",
            provider("a", "weakens = [\"b\"]"),
            provider("b", ""),
            routes(&["a", "b"])
        ))
        .expect("compiles");
        assert!(
            p.warnings()
                .iter()
                .any(|w| w.to_string().contains("nothing to acknowledge")),
            "{:?}",
            p.warnings()
        );
    }
}
