//! Route matching: precedence tables, unnormalised paths, host and method filters, parameters,
//! and a cross-check of the trie index against a direct implementation of "most specific wins".

use std::collections::BTreeSet;

use attestgate::policy::{
    compile, parse_toml, Miss, PathPattern, PathProblem, Policy, Segment, SourceFile,
};

const ROUTES: &str = r#"
[gateway]
origin = "https://origin.example.com"

[provider.agent]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"

[[route]]
id = "root"
path = "/"
public = true

[[route]]
id = "health"
methods = ["GET", "HEAD"]
path = "/healthz"
public = true

[[route]]
id = "users-me"
methods = ["GET"]
path = "/users/me"
require = { all = ["agent"] }

[[route]]
id = "users-id"
methods = ["GET"]
path = "/users/{id}"
require = { all = ["agent"] }

[[route]]
id = "users-write"
methods = ["PUT", "PATCH"]
path = "/users/{user}"
require = { all = ["agent"] }

[[route]]
id = "users-rest"
path = "/users/**"
require = { all = ["agent"] }

[[route]]
id = "order-items"
path = "/v1/orders/{id}/items/**"
require = { all = ["agent"] }

[[route]]
id = "order-item-special"
path = "/v1/orders/{id}/items/special"
require = { all = ["agent"] }

[[route]]
id = "order-item"
path = "/v1/orders/{order}/items/{item}"
require = { all = ["agent"] }

[[route]]
id = "a-param"
path = "/a/{x}"
require = { all = ["agent"] }

[[route]]
id = "param-b"
path = "/{y}/b"
require = { all = ["agent"] }

[[route]]
id = "star"
path = "/s/*/t"
require = { all = ["agent"] }

[[route]]
id = "dir"
path = "/dir/"
public = true

[[route]]
id = "dir-noslash"
path = "/dir"
public = true

[[route]]
id = "files-api"
host = "api.example.com"
path = "/files/{name}"
require = { all = ["agent"] }

[[route]]
id = "files-cdn"
host = "CDN.example.com"
path = "/files/**"
public = true

[[route]]
id = "catch-all"
host = "catchall.example.com"
path = "/**"
public = true
"#;

fn policy() -> Policy {
    let file = parse_toml("routes.toml", ROUTES).expect("parses");
    compile(vec![file]).unwrap_or_else(|e| panic!("{e:?}"))
}

fn found(
    p: &Policy,
    method: &str,
    host: &str,
    path: &str,
) -> Result<(String, Vec<(String, String)>), Miss> {
    p.match_route(method, host, path).map(|m| {
        (
            m.route.id.clone(),
            m.params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    })
}

const H: &str = "api.example.com";

/// (method, host, raw path, expected route id and params, or the miss)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Result<(&'static str, &'static [(&'static str, &'static str)]), Miss>,
);

#[test]
fn precedence_table() {
    let p = policy();
    let table: &[Case] = &[
        ("GET", H, "/", Ok(("root", &[]))),
        ("GET", H, "/healthz", Ok(("health", &[]))),
        ("HEAD", H, "/healthz", Ok(("health", &[]))),
        // literal beats parameter
        ("GET", H, "/users/me", Ok(("users-me", &[]))),
        ("GET", H, "/users/42", Ok(("users-id", &[("id", "42")]))),
        // parameter beats **; params are named per route
        (
            "PUT",
            H,
            "/users/42",
            Ok(("users-write", &[("user", "42")])),
        ),
        // method filter: the more specific routes do not accept DELETE, ** does
        ("DELETE", H, "/users/42", Ok(("users-rest", &[]))),
        ("DELETE", H, "/users/me", Ok(("users-rest", &[]))),
        ("GET", H, "/users/42/orders", Ok(("users-rest", &[]))),
        // ** needs at least one segment
        ("GET", H, "/users", Err(Miss::NoRoute)),
        ("GET", H, "/users/", Ok(("users-rest", &[]))),
        // literal > param > ** at the first position where patterns differ
        (
            "GET",
            H,
            "/v1/orders/7/items/special",
            Ok(("order-item-special", &[("id", "7")])),
        ),
        (
            "GET",
            H,
            "/v1/orders/7/items/3",
            Ok(("order-item", &[("order", "7"), ("item", "3")])),
        ),
        (
            "GET",
            H,
            "/v1/orders/7/items/3/notes",
            Ok(("order-items", &[("id", "7")])),
        ),
        ("GET", H, "/v1/orders/7/items", Err(Miss::NoRoute)),
        (
            "GET",
            H,
            "/v1/orders/7/items/",
            Ok(("order-items", &[("id", "7")])),
        ),
        // /a/{x} vs /{y}/b: the first segment decides
        ("GET", H, "/a/b", Ok(("a-param", &[("x", "b")]))),
        ("GET", H, "/z/b", Ok(("param-b", &[("y", "z")]))),
        ("GET", H, "/a/c", Ok(("a-param", &[("x", "c")]))),
        // * matches one non-empty segment and is not captured
        ("GET", H, "/s/anything/t", Ok(("star", &[]))),
        ("GET", H, "/s/a/b/t", Err(Miss::NoRoute)),
        // parameters never match an empty segment
        (
            "GET",
            H,
            "/s//t",
            Err(Miss::Unnormalised(PathProblem::EmptySegment)),
        ),
        // trailing slash is significant
        ("GET", H, "/dir/", Ok(("dir", &[]))),
        ("GET", H, "/dir", Ok(("dir-noslash", &[]))),
        // case-sensitive paths
        ("GET", H, "/HEALTHZ", Err(Miss::NoRoute)),
        // raw values: parameters stay percent-encoded
        (
            "GET",
            H,
            "/users/caf%C3%A9",
            Ok(("users-id", &[("id", "caf%C3%A9")])),
        ),
        (
            "GET",
            H,
            "/users/a%20b",
            Ok(("users-id", &[("id", "a%20b")])),
        ),
        // host filters: case-insensitive, port ignored
        (
            "GET",
            "api.example.com",
            "/files/a.txt",
            Ok(("files-api", &[("name", "a.txt")])),
        ),
        (
            "GET",
            "API.Example.COM:8443",
            "/files/a.txt",
            Ok(("files-api", &[("name", "a.txt")])),
        ),
        (
            "GET",
            "cdn.example.com",
            "/files/a.txt",
            Ok(("files-cdn", &[])),
        ),
        (
            "GET",
            "cdn.example.com.",
            "/files/a/b",
            Ok(("files-cdn", &[])),
        ),
        (
            "GET",
            "other.example.com",
            "/files/a.txt",
            Err(Miss::NoRoute),
        ),
        ("GET", "api.example.com", "/files/a/b", Err(Miss::NoRoute)),
        (
            "GET",
            "catchall.example.com",
            "/anything/at/all",
            Ok(("catch-all", &[])),
        ),
        (
            "GET",
            "catchall.example.com",
            "/users/me",
            Ok(("users-me", &[])),
        ),
        (
            "POST",
            "catchall.example.com",
            "/healthz",
            Ok(("catch-all", &[])),
        ),
        ("POST", H, "/healthz", Err(Miss::NoRoute)),
        // methods are case-sensitive tokens
        ("get", H, "/healthz", Err(Miss::NoRoute)),
    ];
    let mut failures = Vec::new();
    for (method, host, path, want) in table {
        let got = found(&p, method, host, path);
        let want = want.map(|(id, params)| {
            (
                id.to_owned(),
                params
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>(),
            )
        });
        if got != want {
            failures.push(format!(
                "{method} {host} {path}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn unnormalised_paths_are_refused_before_matching() {
    let p = policy();
    let cases = [
        ("//users/me", PathProblem::EmptySegment),
        ("/users//me", PathProblem::EmptySegment),
        ("/users/./me", PathProblem::DotSegment),
        ("/users/../healthz", PathProblem::DotSegment),
        ("/users/me/.", PathProblem::DotSegment),
        ("/users/me/..", PathProblem::DotSegment),
        ("/users/..;/healthz", PathProblem::DotSegment),
        ("/users/a%2Fb", PathProblem::EncodedSeparator),
        ("/users/a%2fb", PathProblem::EncodedSeparator),
        ("/users/a%5Cb", PathProblem::EncodedSeparator),
        ("/users/a%5cb", PathProblem::EncodedSeparator),
        ("/users/%2E%2E/healthz", PathProblem::EncodedUnreserved),
        ("/users/%2e", PathProblem::EncodedUnreserved),
        ("/%75sers/me", PathProblem::EncodedUnreserved),
        ("/users\\me", PathProblem::Backslash),
        ("/users/a\0", PathProblem::ControlOrNonAscii),
        ("/users/a\r\nx: y", PathProblem::ControlOrNonAscii),
        ("/users/\u{7f}", PathProblem::ControlOrNonAscii),
        ("/users/é", PathProblem::ControlOrNonAscii),
        ("/users/a%00", PathProblem::EncodedControl),
        ("/users/a%", PathProblem::BadPercent),
        ("/users/me?x=1", PathProblem::QueryOrFragment),
        ("users/me", PathProblem::NotAbsolute),
        ("*", PathProblem::NotAbsolute),
    ];
    for (path, problem) in cases {
        assert_eq!(
            p.match_route("GET", "catchall.example.com", path)
                .map(|m| m.route.id.clone()),
            Err(Miss::Unnormalised(problem)),
            "{path:?}"
        );
    }
}

#[test]
fn embedded_json_round_trip_matches_the_same() {
    let p = policy();
    let q = Policy::from_json(&p.to_json()).expect("recompiles");
    assert_eq!(p.routes(), q.routes());
    assert_eq!(p.providers(), q.providers());
    assert_eq!(p.gateway(), q.gateway());
    for path in [
        "/users/me",
        "/users/1",
        "/v1/orders/1/items/2",
        "/a/b",
        "/nothing",
    ] {
        assert_eq!(
            found(&p, "GET", H, path),
            found(&q, "GET", H, path),
            "{path}"
        );
    }
    assert!(Policy::from_json("{}").is_err());
    assert!(Policy::from_json(r#"{"format":"attestgate-policy/0","files":[]}"#).is_err());
}

// ---- cross-check of the index against a direct implementation --------------------------------
// (tests/prop_routes.rs checks the same with proptest: wider route sets, host filters, its own
// brute-force matcher instead of `PathPattern::matches`, and failures shrunk to a minimal case.)

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn rank(s: &Segment) -> u8 {
    match s {
        Segment::Literal(_) => 3,
        Segment::Param(_) | Segment::Star => 2,
        Segment::Rest => 1,
    }
}

/// Among routes whose pattern, method and host match, the one whose segment kinds are greatest
/// position by position (literal > param > **).
fn reference<'p>(p: &'p Policy, method: &str, host: &str, path: &str) -> Option<&'p str> {
    p.routes()
        .iter()
        .filter(|r| {
            r.accepts_method(method) && r.accepts_host(host) && r.path.matches(path).is_some()
        })
        .max_by(|a, b| {
            let ka: Vec<u8> = a.path.segments().iter().map(rank).collect();
            let kb: Vec<u8> = b.path.segments().iter().map(rank).collect();
            ka.cmp(&kb)
        })
        .map(|r| r.id.as_str())
}

#[test]
fn index_agrees_with_direct_matching() {
    let mut rng = Lcg(7);
    let words = ["a", "b", "c"];
    for round in 0..40 {
        let mut shapes = BTreeSet::new();
        let mut routes = String::from("[gateway]\norigin = \"https://o.example.com\"\n");
        for i in 0..60 {
            let len = 1 + rng.next(4) as usize;
            let mut segs = Vec::new();
            for j in 0..len {
                let seg = match rng.next(10) {
                    0..=5 => words[rng.next(3) as usize].to_owned(),
                    6 | 7 => format!("{{p{j}}}"),
                    8 => "*".to_owned(),
                    _ if j == len - 1 => "**".to_owned(),
                    _ => "b".to_owned(),
                };
                segs.push(seg);
            }
            let path = format!("/{}", segs.join("/"));
            let pattern = PathPattern::parse(&path).expect("generated pattern");
            // one route per shape and method set, so that the policy is never ambiguous
            let methods =
                ["", "methods = [\"GET\"]\n", "methods = [\"POST\"]\n"][rng.next(3) as usize];
            let host = if rng.next(4) == 0 {
                "host = \"h.example.com\"\n"
            } else {
                ""
            };
            let key = (
                pattern.shape(),
                methods.is_empty() || methods.contains("GET"),
                methods.is_empty() || methods.contains("POST"),
            );
            if shapes.iter().any(|(s, g, p): &(String, bool, bool)| {
                *s == key.0 && ((*g && key.1) || (*p && key.2))
            }) {
                continue;
            }
            shapes.insert(key);
            routes.push_str(&format!(
                "[[route]]\nid = \"r{i}\"\n{methods}{host}path = \"{path}\"\npublic = true\n"
            ));
        }
        let policy = compile(vec![parse_toml("gen.toml", &routes).expect("parses")])
            .unwrap_or_else(|e| panic!("round {round}: {}", e[0]));
        for _ in 0..300 {
            let len = 1 + rng.next(5) as usize;
            let mut segs: Vec<&str> = (0..len).map(|_| words[rng.next(3) as usize]).collect();
            if rng.next(5) == 0 {
                segs.push("");
            }
            let path = format!("/{}", segs.join("/"));
            let method = ["GET", "POST", "PUT"][rng.next(3) as usize];
            let host = ["h.example.com", "other.example.com"][rng.next(2) as usize];
            let got = policy
                .match_route(method, host, &path)
                .ok()
                .map(|m| m.route.id.as_str());
            let want = reference(&policy, method, host, &path);
            assert_eq!(got, want, "round {round}: {method} {host} {path}\n{routes}");
        }
    }
}

#[test]
fn source_files_can_be_built_without_toml() {
    // The Worker path: JSON model -> compile, no TOML.
    let p = policy();
    let files: Vec<SourceFile> = p.sources().to_vec();
    assert_eq!(
        compile(files).expect("compiles").routes().len(),
        p.routes().len()
    );
}
