//! Property test of route matching, with shrinking: over random route sets (literal, `{param}`,
//! `*` and `**` segments, trailing slashes, method and host filters) and random requests, the
//! compiled trie (`Policy::match_route`) returns what a brute-force search of SPEC §2 finds: of
//! every route whose pattern and host accept the request (`/x/**` also takes `/x` and `/x/`),
//! the most specific ones — segment kinds greatest position by position (literal > parameter >
//! `**`, and a pattern that ends exactly where the path ends beats `**`) — and among them the
//! one that takes the method (GET implies HEAD), with its captures; when none of them takes it,
//! 405 with their methods as `Allow`, never a broader route.
//!
//! The brute force here matches patterns itself (it does not use `PathPattern::matches`, which
//! `tests/policy_matching.rs` already checks the index against with a fixed generator); a failure
//! shrinks to the fewest routes and the shortest path that still disagree.

use attestgate::policy::{check_path, compile, parse_toml, Allow, Miss, Policy};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(&'static str),
    Param,
    Star,
    /// `**`, only last.
    Rest,
    /// A trailing `/` (an empty last segment), only last.
    Slash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Methods {
    Any,
    Get,
    PostPut,
}

impl Methods {
    fn accepts(self, method: &str) -> bool {
        match self {
            Methods::Any => true,
            Methods::Get => method == "GET" || method == "HEAD",
            Methods::PostPut => method == "POST" || method == "PUT",
        }
    }

    fn overlaps(self, other: Methods) -> bool {
        self == other || self == Methods::Any || other == Methods::Any
    }

    fn listed(self) -> &'static [&'static str] {
        match self {
            Methods::Any => &[],
            Methods::Get => &["GET"],
            Methods::PostPut => &["POST", "PUT"],
        }
    }

    fn toml(self) -> &'static str {
        match self {
            Methods::Any => "",
            Methods::Get => "methods = [\"GET\"]\n",
            Methods::PostPut => "methods = [\"POST\", \"PUT\"]\n",
        }
    }
}

#[derive(Debug, Clone)]
struct RouteGen {
    segs: Vec<Seg>,
    methods: Methods,
    /// Only for `h.example`.
    host: bool,
}

const WORDS: [&str; 3] = ["a", "b", "c"];
const HOSTS: [&str; 4] = ["h.example", "H.Example:8443", "h.example.", "other.example"];
const METHODS: [&str; 5] = ["GET", "HEAD", "POST", "PUT", "DELETE"];

impl RouteGen {
    fn pattern(&self) -> String {
        let mut out = String::new();
        for (i, seg) in self.segs.iter().enumerate() {
            out.push('/');
            match seg {
                Seg::Lit(w) => out.push_str(w),
                Seg::Param => out.push_str(&format!("{{p{i}}}")),
                Seg::Star => out.push('*'),
                Seg::Rest => out.push_str("**"),
                Seg::Slash => {}
            }
        }
        out
    }

    /// Parameters erased: two routes of one shape match the same paths.
    fn shape(&self) -> Vec<Seg> {
        self.segs
            .iter()
            .map(|s| {
                if *s == Seg::Star {
                    Seg::Param
                } else {
                    s.clone()
                }
            })
            .collect()
    }

    /// Specificity, compared position by position; the pattern's end ranks above `**` (an
    /// exact `/x` beats `/x/**` on the path `/x`).
    fn rank(&self) -> Vec<u8> {
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Lit(_) | Seg::Slash => 3,
                Seg::Param | Seg::Star => 2,
                Seg::Rest => 1,
            })
            .chain([4])
            .collect()
    }

    /// The brute-force match: the `{param}` captures (name, value) when the pattern accepts
    /// the path's segments.
    fn matches(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        let mut captures = Vec::new();
        for (i, seg) in self.segs.iter().enumerate() {
            let part = path.get(i);
            match seg {
                // `/x/**` covers `/x` too (SPEC §2).
                Seg::Rest => return (path.len() >= i).then_some(captures),
                Seg::Lit(w) if part == Some(w) => {}
                Seg::Slash if part == Some(&"") => {}
                Seg::Param if part.is_some_and(|p| !p.is_empty()) => {
                    captures.push((format!("p{i}"), (*part?).to_owned()));
                }
                Seg::Star if part.is_some_and(|p| !p.is_empty()) => {}
                _ => return None,
            }
        }
        (path.len() == self.segs.len()).then_some(captures)
    }

    fn accepts_host(&self, host: &str) -> bool {
        if !self.host {
            return true;
        }
        let bare = host.split(':').next().unwrap_or(host);
        bare.strip_suffix('.')
            .unwrap_or(bare)
            .eq_ignore_ascii_case("h.example")
    }
}

fn segment() -> impl Strategy<Value = Seg> {
    prop_oneof![
        6 => prop::sample::select(WORDS.to_vec()).prop_map(Seg::Lit),
        2 => Just(Seg::Param),
        1 => Just(Seg::Star),
    ]
}

fn route() -> impl Strategy<Value = RouteGen> {
    let last =
        prop_oneof![4 => Just(None), 1 => Just(Some(Seg::Rest)), 1 => Just(Some(Seg::Slash))];
    let methods = prop::sample::select(vec![Methods::Any, Methods::Get, Methods::PostPut]);
    (
        prop::collection::vec(segment(), 0..4),
        last,
        methods,
        prop::bool::weighted(0.25),
    )
        .prop_map(|(mut segs, last, methods, host)| {
            segs.extend(last);
            if segs.is_empty() {
                // `/`: the root route.
                segs.push(Seg::Slash);
            }
            RouteGen {
                segs,
                methods,
                host,
            }
        })
}

/// Routes that the compiler accepts: at most one per shape and overlapping method set (the
/// compiler refuses the others as ambiguous, with or without a host filter).
fn unambiguous(routes: Vec<RouteGen>) -> Vec<RouteGen> {
    let mut kept: Vec<RouteGen> = Vec::new();
    for r in routes {
        if !kept
            .iter()
            .any(|k| k.shape() == r.shape() && k.methods.overlaps(r.methods))
        {
            kept.push(r);
        }
    }
    kept
}

fn policy(routes: &[RouteGen]) -> Result<Policy, String> {
    let mut text = String::from("[gateway]\norigin = \"https://o.example.com\"\n");
    for (i, r) in routes.iter().enumerate() {
        let host = if r.host { "host = \"h.example\"\n" } else { "" };
        text.push_str(&format!(
            "[[route]]\nid = \"r{i}\"\n{}{host}path = \"{}\"\npublic = true\n",
            r.methods.toml(),
            r.pattern()
        ));
    }
    let file = parse_toml("gen.toml", &text).map_err(|e| format!("{e}\n{text}"))?;
    compile(vec![file]).map_err(|e| format!("{}\n{text}", e[0]))
}

/// Request paths over the same words, sometimes with an empty trailing segment, now and then
/// with a segment the normaliser refuses.
fn request_path() -> impl Strategy<Value = Vec<&'static str>> {
    let part = prop_oneof![
        20 => prop::sample::select(WORDS.to_vec()),
        3 => Just("x"),
        1 => prop::sample::select(vec!["..", ".", "%2e", "%41", ";p"]),
    ];
    (prop::collection::vec(part, 0..6), prop::bool::weighted(0.2)).prop_map(|(mut parts, slash)| {
        if slash || parts.is_empty() {
            parts.push("");
        }
        parts
    })
}

type Want = Result<(String, Vec<(String, String)>), Miss>;
/// A route that accepts the request's path and host: (index, route, captures).
type Candidate<'r> = (usize, &'r RouteGen, Vec<(String, String)>);

fn brute_force(routes: &[RouteGen], method: &str, host: &str, parts: &[&str]) -> Want {
    let path = format!("/{}", parts.join("/"));
    if let Err(problem) = check_path(&path) {
        return Err(Miss::Unnormalised(problem));
    }
    let candidates: Vec<Candidate> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.accepts_host(host))
        .filter_map(|(i, r)| r.matches(parts).map(|c| (i, r, c)))
        .collect();
    let Some(best) = candidates.iter().map(|(_, r, _)| r.rank()).max() else {
        return Err(Miss::NoRoute);
    };
    let slot: Vec<&Candidate> = candidates
        .iter()
        .filter(|(_, r, _)| r.rank() == best)
        .collect();
    match slot.iter().find(|(_, r, _)| r.methods.accepts(method)) {
        Some((i, _, captures)) => Ok((format!("r{i}"), captures.clone())),
        None => Err(Miss::MethodNotAllowed(Allow::from_methods(
            slot.iter()
                .flat_map(|(_, r, _)| r.methods.listed().iter().copied()),
        ))),
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn trie_agrees_with_brute_force(
        routes in prop::collection::vec(route(), 1..40).prop_map(unambiguous),
        requests in prop::collection::vec(
            (request_path(), prop::sample::select(METHODS.to_vec()), prop::sample::select(HOSTS.to_vec())),
            1..40,
        ),
    ) {
        let policy = policy(&routes).map_err(TestCaseError::fail)?;
        for (parts, method, host) in &requests {
            let path = format!("/{}", parts.join("/"));
            let got: Want = policy.match_route(method, host, &path).map(|m| {
                let params = m.params.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
                (m.route.id.clone(), params)
            });
            let want = brute_force(&routes, method, host, parts);
            prop_assert_eq!(got, want, "{} {} {}", method, host, path);
        }
    }
}
