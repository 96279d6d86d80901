//! The example policies in `policies/` compile, and the Worker's embedded copy is the same policy.

use attestgate::policy::{load_dir, parse_toml, Access, KeySource, Policy};

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
    assert_eq!(device.keys, KeySource::Secret("APPROOV_SECRET".into()));
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
