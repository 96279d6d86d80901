//! The example policies in `policies/` compile, and the Worker's embedded copy is the same policy.

use attestgate::policy::{load_dir, parse_toml, Access, KeyOrigin, Miss, Policy, Secret};

#[test]
fn example_policies_compile() {
    let (policy, warnings) = load_dir("policies").unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    // The demo runs on loopback over http: the build must say so, loudly.
    assert!(policy.gateway().allow_insecure_http);
    assert!(warnings
        .iter()
        .any(|w| w.to_string().contains("allow_insecure_http = true")));
    let ids: Vec<&str> = policy.routes().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["health", "orders-list", "orders-create"]);
    assert_eq!(
        policy.route("health").map(|r| r.access.clone()),
        Some(Access::Public)
    );
    assert_eq!(
        policy.route("orders-create").map(|r| r.access.clone()),
        Some(Access::All(vec!["device".into(), "agent".into()]))
    );
    let device = policy.provider("device").expect("device provider");
    assert_eq!(
        device.keys,
        KeyOrigin::Secrets(vec![Secret {
            name: "APPROOV_SECRET".into(),
            kid: None
        }])
    );
    assert_eq!(device.from.header, "approov-token");
    let agent = policy.provider("agent").expect("agent provider");
    assert!(agent.allows_alg("ES256") && agent.allows_alg("EdDSA") && agent.allows_alg("Ed25519"));
    assert!(!agent.allows_alg("HS256") && !agent.allows_alg("none"));
    assert!(agent.accepts_typ("at+JWT") && agent.accepts_typ("application/at+jwt"));
    assert!(!agent.accepts_typ("JWT"));

    let m = policy
        .match_route("POST", "127.0.0.1:8787", "/v1/orders")
        .expect("matches");
    assert_eq!(m.route.id, "orders-create");
    let m = policy
        .match_route("GET", "localhost", "/v1/orders")
        .expect("matches");
    assert_eq!(m.route.id, "orders-list");
}

/// Issue 12 item 1 and 2 on the example policy: the spellings an origin may normalise never
/// reach a route, and a method a path's routes do not take is 405.
#[test]
fn example_routes_refuse_what_the_origin_would_normalise() {
    let (policy, _) = load_dir("policies").expect("compiles");
    let at = |method: &str, path: &str| match policy.match_route(method, "127.0.0.1:8787", path) {
        Ok(m) => Ok(m.route.id.clone()),
        Err(miss) => Err(miss),
    };
    for path in [
        "/v1/orders;x/7",
        "/v1/orders;x",
        "/v1/orders%3Bx",
        "/healthz;a=b",
    ] {
        assert!(
            matches!(at("GET", path), Err(Miss::Unnormalised(_))),
            "{path}: {:?}",
            at("GET", path)
        );
    }
    for path in [
        "/V1/orders/7",
        "/v1/orders/7/",
        "/V1/orders",
        "/v1/Orders",
        "/v1/orders/",
    ] {
        assert_eq!(at("GET", path), Err(Miss::NoRoute), "{path}");
        assert_eq!(at("POST", path), Err(Miss::NoRoute), "{path}");
    }
    assert_eq!(at("HEAD", "/v1/orders"), Ok("orders-list".to_owned()));
    assert_eq!(at("HEAD", "/healthz"), Ok("health".to_owned()));
    let allow = |path: &str| match at("DELETE", path) {
        Err(Miss::MethodNotAllowed(a)) => a.as_str(),
        other => panic!("{path}: {other:?}"),
    };
    assert_eq!(allow("/v1/orders"), "GET, HEAD, POST");
    assert_eq!(allow("/healthz"), "GET, HEAD");
}

#[test]
fn every_example_file_parses_on_its_own() {
    for entry in std::fs::read_dir("policies").expect("policies/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("readable");
            parse_toml(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn the_embedded_policy_is_the_compiled_folder() {
    let embedded = Policy::from_embedded(attestgate::EMBEDDED_POLICY_JSON)
        .unwrap_or_else(|e| panic!("embedded policy does not load: {}", e[0]));
    // Built from ATTESTGATE_POLICY_DIR when it was set for this build; compare only the default.
    if option_env!("ATTESTGATE_POLICY_DIR").is_none() {
        let (folder, _) = load_dir("policies").expect("compiles");
        assert_eq!(embedded.routes(), folder.routes());
        assert_eq!(embedded.providers(), folder.providers());
        assert_eq!(embedded.gateway(), folder.gateway());
    }
}
