//! Route lookup cost at 10, 1 000 and 10 000 routes: it must stay near-flat (segment trie, not a
//! linear scan). `cargo bench --bench routes`.

use std::hint::black_box;

use attestgate::policy::model::{GatewayConfig, PolicyFile, RouteConfig};
use attestgate::policy::{compile, Policy, SourceFile};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn route(id: String, path: String, methods: Option<Vec<String>>) -> RouteConfig {
    RouteConfig {
        id,
        methods,
        host: None,
        path,
        require: None,
        public: Some(true),
        scopes: vec![],
        claims: Default::default(),
        delegation: None,
        forward: Default::default(),
        forward_tokens: false,
        pass_headers: vec![],
        origin: None,
        resource: None,
        max_body_bytes: None,
        intent: None,
        budget: None,
        receipt: false,
        receipt_ttl_secs: None,
        upstream: None,
        strip_cookies: false,
        audit: None,
        deny_check: None,
        status_max_stale_secs: None,
        mask: None,
    }
}

/// `n` routes mixing literals, parameters and `**`, sharing prefixes the way real APIs do.
fn policy(n: usize) -> Policy {
    let mut routes = Vec::with_capacity(n);
    for i in 0..n {
        let path = match i % 5 {
            0 => format!("/svc{i}/items/{{id}}"),
            1 => format!("/svc{i}/items/{{id}}/parts/{{part}}"),
            2 => format!("/svc{i}/static/**"),
            3 => format!("/api/v{}/res{i}/{{id}}/detail", i % 7),
            _ => format!("/api/v{}/res{i}/*", i % 7),
        };
        let methods = (i % 2 == 0).then(|| vec!["GET".to_owned()]);
        routes.push(route(format!("r{i}"), path, methods));
    }
    // generic routes that every lookup has to consider (backtracking targets)
    routes.push(route(
        "tenant-profile".into(),
        "/{tenant}/profile/{id}".into(),
        None,
    ));
    routes.push(route(
        "tenant-files".into(),
        "/{tenant}/files/**".into(),
        None,
    ));
    let file = PolicyFile {
        gateway: Some(GatewayConfig {
            origin: "https://origin.example.com".into(),
            realm: None,
            clock_skew_secs: 60,
            claims_header_prefix: "x-verified-".into(),
            challenge_path: "/.well-known/attestgate/challenge".into(),
            challenge_ttl_secs: 120,
            allow_insecure_http: false,
            nonce_shards: 4,
            case_sensitive_paths: false,
            origin_timeout_secs: 100,
            log_allow_sample: 1,
            issuer: None,
        }),
        provider: Default::default(),
        route: routes,
        upstreams: Default::default(),
        ..Default::default()
    };
    compile(vec![SourceFile::new("bench.toml", file)]).unwrap_or_else(|e| panic!("{}", e[0]))
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("match_route");
    for n in [10usize, 1_000, 10_000] {
        let p = policy(n);
        // ids of routes near the end of the generated set, so a linear scan would be at its worst
        let k0 = (n - 1) / 5 * 5; // i % 5 == 0
        let k2 = k0.saturating_sub(3); // i % 5 == 2
        let k3 = k0.saturating_sub(2); // i % 5 == 3
        let cases = [
            ("param", "GET", format!("/svc{k0}/items/12345")),
            ("rest", "GET", format!("/svc{k2}/static/css/site/main.css")),
            (
                "deep",
                "POST",
                format!("/api/v{}/res{k3}/42/detail", k3 % 7),
            ),
            ("backtrack", "GET", format!("/svc{k0}/profile/7")),
            ("miss", "GET", "/api/v9/nothing/here".to_owned()),
        ];
        for (name, method, path) in &cases {
            let found = p
                .match_route(method, "api.example.com", path)
                .map(|m| m.route.id.clone());
            assert!(
                (*name == "miss") == found.is_err(),
                "{n} {name} {path}: {found:?}"
            );
            group.bench_with_input(BenchmarkId::new(*name, n), path, |b, path| {
                b.iter(|| {
                    black_box(
                        p.match_route(black_box(method), "api.example.com", black_box(path))
                            .is_ok(),
                    )
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for n in [10usize, 1_000, 10_000] {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| black_box(policy(n).routes().len()))
        });
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
