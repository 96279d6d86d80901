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
    let embedded = Policy::from_embedded(attestgate::EMBEDDED_POLICY)
        .unwrap_or_else(|e| panic!("embedded policy does not load: {e:?}"));
    // Built from ATTESTGATE_POLICY_DIR when it was set for this build; compare only the default.
    if option_env!("ATTESTGATE_POLICY_DIR").is_none() {
        let (folder, _) = load_dir("policies").expect("compiles");
        assert_eq!(embedded.routes(), folder.routes());
        assert_eq!(embedded.providers(), folder.providers());
        assert_eq!(embedded.gateway(), folder.gateway());
    }
}

/// Issue 19 item 4: the Worker embeds the compiled form (`Policy::to_compiled`) and reads
/// it without the compiler. For every policy folder in the repository (the examples, the e2e
/// and the bench policies, their `{{...}}` placeholders filled as their harnesses do): the form
/// read back is the same policy (the same form again, the same routes, providers, gateway and
/// upstreams) and its rebuilt route indexes decide every route's path, a case variant and a
/// trailing-slash variant of it, for every method, exactly as the compiler's.
#[test]
fn the_compiled_form_reads_back_as_the_same_policy() {
    use attestgate::policy::Segment;
    for folder in ["policies", "tests/e2e/policies", "benches/policies"] {
        let dir = std::env::temp_dir().join(format!(
            "attestgate-compiled-form-{}-{}",
            std::process::id(),
            folder.replace('/', "-")
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for entry in std::fs::read_dir(folder).expect("policy folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).expect("readable");
                let filled = fill_placeholders(&text);
                std::fs::write(dir.join(path.file_name().expect("name")), filled).expect("write");
            }
        }
        let (compiled, _) = load_dir(&dir).unwrap_or_else(|e| panic!("{folder}: {}", e[0]));
        let (again, _) = load_dir(&dir).expect("compiles twice");
        std::fs::remove_dir_all(&dir).expect("clean up");
        let form = compiled.to_compiled();
        assert_eq!(
            form,
            again.to_compiled(),
            "{folder}: the form is deterministic"
        );
        let read = Policy::from_compiled(&form).unwrap_or_else(|e| panic!("{folder}: {e:?}"));
        assert_eq!(read.to_compiled(), form, "{folder}");
        assert_eq!(read.routes(), compiled.routes(), "{folder}");
        assert_eq!(read.providers(), compiled.providers(), "{folder}");
        assert_eq!(read.gateway(), compiled.gateway(), "{folder}");
        assert_eq!(read.upstreams(), compiled.upstreams(), "{folder}");
        let mut checked = 0;
        for route in compiled.routes() {
            let path: String = route
                .path
                .segments()
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => format!("/{l}"),
                    Segment::Param(_) | Segment::Star => "/x1".to_owned(),
                    Segment::Rest => "/a/b".to_owned(),
                })
                .collect();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            let host = route
                .host
                .clone()
                .unwrap_or_else(|| "gw.example".to_owned());
            for p in [path.clone(), path.to_uppercase(), format!("{path}/")] {
                for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
                    let a = compiled
                        .match_route(method, &host, &p)
                        .map(|m| m.route.id.clone());
                    let b = read
                        .match_route(method, &host, &p)
                        .map(|m| m.route.id.clone());
                    assert_eq!(a, b, "{folder}: {method} {host}{p}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 0, "{folder}: no route checked");
    }
}

/// What a compiled form is not is refused (the Worker answers every request with 503 then,
/// `PolicyUnavailable`), never a panic: another format's tag, the source form, every
/// truncation, a byte appended, any byte changed (read as an error or as some policy).
#[test]
fn the_compiled_form_refuses_what_it_is_not() {
    let (policy, _) = load_dir("policies").expect("compiles");
    let form = policy.to_compiled();
    assert!(Policy::from_compiled(&form).is_ok());
    let tag = b"attestgate-compiled-policy/1";
    let at = form
        .windows(tag.len())
        .position(|w| w == tag)
        .expect("the format tag leads the form");
    assert_eq!(at, 1, "the tag's length, then the tag");
    let mut other = form.clone();
    other[at + tag.len() - 1] = b'2';
    assert!(Policy::from_compiled(&other).is_err(), "another format");
    assert!(
        Policy::from_compiled(policy.to_json().as_bytes()).is_err(),
        "the source form"
    );
    for n in 0..form.len() {
        assert!(
            Policy::from_compiled(&form[..n]).is_err(),
            "truncated at {n}"
        );
    }
    let mut longer = form.clone();
    longer.push(0);
    assert!(Policy::from_compiled(&longer).is_err(), "a byte appended");
    for i in 0..form.len() {
        for v in [0u8, 0x01, 0x7f, 0x80, 0xff] {
            let mut changed = form.clone();
            changed[i] = v;
            let _ = Policy::from_compiled(&changed);
        }
    }
    for bad in [&b""[..], b"\x00", b"{}", &[0xff; 64][..]] {
        assert!(Policy::from_compiled(bad).is_err(), "{bad:?}");
    }
}

/// The harnesses' placeholders (tests/e2e/conftest.py, benches/workerd.py) with loopback values.
fn fill_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let Some(end) = rest[at..].find("}}") else {
            break;
        };
        let name = &rest[at + 2..at + end];
        out.push_str(if name.starts_with("PORT:") {
            "47999"
        } else {
            "http://127.0.0.1:47999"
        });
        rest = &rest[at + end + 2..];
    }
    out.push_str(rest);
    out
}
