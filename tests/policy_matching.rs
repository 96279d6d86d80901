//! Route matching: precedence tables, unnormalised paths, host and method filters, parameters,
//! and a cross-check of the trie index against a direct implementation of "most specific wins".

use std::collections::BTreeSet;

use attestgate::policy::{
    compile, parse_toml, Allow, Miss, PathPattern, PathProblem, Policy, Route, Segment, SourceFile,
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
        // method filter: the most specific routes do not accept DELETE: 405 with their methods,
        // never a fall-through to ** (SPEC §2)
        (
            "DELETE",
            H,
            "/users/42",
            Err(Miss::MethodNotAllowed(Allow::from_static(
                "GET, HEAD, PATCH, PUT",
            ))),
        ),
        (
            "DELETE",
            H,
            "/users/me",
            Err(Miss::MethodNotAllowed(Allow::from_static("GET, HEAD"))),
        ),
        // GET implies HEAD
        ("HEAD", H, "/users/me", Ok(("users-me", &[]))),
        ("GET", H, "/users/42/orders", Ok(("users-rest", &[]))),
        // ** also covers its prefix, with or without the slash
        ("GET", H, "/users", Ok(("users-rest", &[]))),
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
        (
            "GET",
            H,
            "/v1/orders/7/items",
            Ok(("order-items", &[("id", "7")])),
        ),
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
        // both spellings have a route of their own (both public: neither is a weaker variant)
        ("GET", H, "/dir/", Ok(("dir", &[]))),
        ("GET", H, "/dir", Ok(("dir-noslash", &[]))),
        // literals compare exactly; another spelling is no route at all here
        ("GET", H, "/HEALTHZ", Err(Miss::NoRoute)),
        // ...and a case variant of a protected route is never given to a weaker one
        (
            "GET",
            "catchall.example.com",
            "/USERS/me",
            Err(Miss::ProtectedVariant),
        ),
        (
            "GET",
            "catchall.example.com",
            "/v1/orders/7/items/special/",
            Ok(("order-items", &[("id", "7")])),
        ),
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
        // a path whose route does not take the method is 405, even next to a catch-all
        (
            "POST",
            "catchall.example.com",
            "/healthz",
            Err(Miss::MethodNotAllowed(Allow::from_static("GET, HEAD"))),
        ),
        (
            "POST",
            H,
            "/healthz",
            Err(Miss::MethodNotAllowed(Allow::from_static("GET, HEAD"))),
        ),
        // methods are case-sensitive tokens
        (
            "get",
            H,
            "/healthz",
            Err(Miss::MethodNotAllowed(Allow::from_static("GET, HEAD"))),
        ),
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
        ("/users;x/me", PathProblem::PathParameter),
        ("/users/me;jsessionid=1", PathProblem::PathParameter),
        ("/users/me%3Bx", PathProblem::PathParameter),
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

/// Segment kinds position by position, then 4 for "the pattern ends": a pattern that ends where
/// the path ends beats a `**` that covers nothing.
fn key(p: &PathPattern) -> Vec<u8> {
    let mut k: Vec<u8> = p.segments().iter().map(rank).collect();
    k.push(4);
    k
}

/// The most specific group of routes (greatest key) among those whose pattern matches `path` and
/// whose host filter takes `host`, with `pattern` giving each route's pattern.
fn most_specific<'p>(
    p: &'p Policy,
    host: &str,
    path: &str,
    pattern: &dyn Fn(&Route) -> PathPattern,
) -> Vec<&'p Route> {
    let matching: Vec<(&Route, Vec<u8>)> = p
        .routes()
        .iter()
        .filter(|r| r.accepts_host(host) && pattern(r).matches(path).is_some())
        .map(|r| (r, key(&pattern(r))))
        .collect();
    let Some(best) = matching.iter().map(|(_, k)| k.clone()).max() else {
        return Vec::new();
    };
    matching
        .into_iter()
        .filter(|(_, k)| *k == best)
        .map(|(r, _)| r)
        .collect()
}

/// `/A/b/` -> `/a/b` (lowercase unless case-sensitive, one trailing slash removed, except `/`).
fn fold(text: &str, case_sensitive: bool) -> String {
    let t = match text.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => text,
    };
    if case_sensitive {
        t.to_owned()
    } else {
        t.to_ascii_lowercase()
    }
}

/// SPEC §2 written out directly, route by route: the most specific group of routes for the host
/// decides; none of them takes the method: 405; a more protected route that the folded path
/// reaches first (and that the path does not match exactly) refuses it.
fn reference<'p>(p: &'p Policy, method: &str, host: &str, path: &str) -> Result<&'p str, String> {
    let group = most_specific(p, host, path, &|r| r.path.clone());
    if group.is_empty() {
        return Err("NoRoute".into());
    }
    let Some(e) = group.iter().find(|r| r.accepts_method(method)) else {
        let mut allow: BTreeSet<&str> = BTreeSet::new();
        for r in &group {
            for m in r.methods.iter().flatten() {
                allow.insert(m);
                if m == "GET" {
                    allow.insert("HEAD");
                }
            }
        }
        return Err(format!(
            "405 {}",
            allow.into_iter().collect::<Vec<_>>().join(", ")
        ));
    };
    let cs = p.gateway().case_sensitive_paths;
    let folded = fold(path, cs);
    let variants = most_specific(p, host, &folded, &|r| {
        PathPattern::parse(&fold(r.path.as_str(), cs)).expect("folded pattern")
    });
    if variants
        .iter()
        .any(|r| r.id != e.id && !e.covers(r) && r.path.matches(path).is_none())
    {
        return Err("ProtectedVariant".into());
    }
    Ok(e.id.as_str())
}

#[test]
fn index_agrees_with_direct_matching() {
    let mut rng = Lcg(7);
    let words = ["a", "b", "c", "B"];
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    for round in 0..40 {
        let mut shapes = BTreeSet::new();
        let mut routes = String::from("[gateway]\norigin = \"https://o.example.com\"\n");
        if round % 3 == 0 {
            routes.push_str("case_sensitive_paths = true\n");
        }
        routes.push_str(
            "[provider.agent]\nissuer = \"https://i.example.com\"\naudiences = [\"a\"]\n\
             algorithms = [\"ES256\"]\njwks_uri = \"https://i.example.com/jwks\"\n",
        );
        for i in 0..60 {
            let len = 1 + rng.next(4) as usize;
            let mut segs = Vec::new();
            for j in 0..len {
                let seg = match rng.next(10) {
                    0..=5 => words[rng.next(4) as usize].to_owned(),
                    6 | 7 => format!("{{p{j}}}"),
                    8 => "*".to_owned(),
                    _ if j == len - 1 => "**".to_owned(),
                    _ => "b".to_owned(),
                };
                segs.push(seg);
            }
            if rng.next(6) == 0 && segs.last().is_some_and(|s| s != "**") {
                segs.push(String::new());
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
            let access = match rng.next(4) {
                0 => "public = true\n",
                1 => "require = { all = [\"agent\"] }\n",
                2 => "require = { all = [\"agent\"] }\nscopes = [\"x\"]\n",
                _ => "require = { all = [\"agent\"] }\nscopes = [\"x\", \"y\"]\n",
            };
            routes.push_str(&format!(
                "[[route]]\nid = \"r{i}\"\n{methods}{host}path = \"{path}\"\n{access}"
            ));
        }
        let policy = compile(vec![parse_toml("gen.toml", &routes).expect("parses")])
            .unwrap_or_else(|e| panic!("round {round}: {}", e[0]));
        for _ in 0..300 {
            let len = 1 + rng.next(5) as usize;
            let mut segs: Vec<&str> = (0..len)
                .map(|_| ["a", "b", "c", "B", "A"][rng.next(5) as usize])
                .collect();
            if rng.next(5) == 0 {
                segs.push("");
            }
            let path = format!("/{}", segs.join("/"));
            let method = ["GET", "POST", "PUT", "HEAD"][rng.next(4) as usize];
            let host = ["h.example.com", "other.example.com"][rng.next(2) as usize];
            let got = match policy.match_route(method, host, &path) {
                Ok(m) => Ok(m.route.id.as_str()),
                Err(Miss::NoRoute) => Err("NoRoute".to_owned()),
                Err(Miss::MethodNotAllowed(allow)) => Err(format!("405 {allow}")),
                Err(Miss::ProtectedVariant) => Err("ProtectedVariant".to_owned()),
                Err(other) => Err(format!("{other:?}")),
            };
            let want = reference(&policy, method, host, &path);
            assert_eq!(got, want, "round {round}: {method} {host} {path}\n{routes}");
            let outcome = match &got {
                Ok(_) => "route",
                Err(e) if e.starts_with("405") => "405",
                Err(e) => e.as_str(),
            };
            *seen.entry(outcome.to_owned()).or_default() += 1;
        }
    }
    // every outcome was exercised, many times
    for outcome in ["route", "405", "NoRoute", "ProtectedVariant"] {
        assert!(seen.get(outcome).copied().unwrap_or(0) > 100, "{seen:?}");
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
