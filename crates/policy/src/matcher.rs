//! Path patterns, the raw-path normalisation check and the route index.
//!
//! Matching works on the **raw** request path (as sent, before any percent-decoding), which must
//! first pass [`check_path`]: a path that is not in normal form is refused before matching, so
//! that the gateway and the origin cannot disagree about which resource is meant.
//!
//! The index is a segment trie. Each node has children by literal segment (a hash map), one
//! parameter child (`{name}` and `*` share it) and two *slots*: the routes whose pattern ends
//! here with `**`, and those that end exactly here. Lookup walks the path once, trying at each
//! position the literal child, then the parameter child, then `**`, and stops at the first slot
//! that holds a route for the request's host. Because of that order, the slot found is the most
//! specific one: the first position where two matching patterns differ decides (literal >
//! parameter > `**`; a pattern that ends where the path ends beats a `**` that covers nothing).
//! The route of that slot that accepts the method wins; if none does, the request is 405 with the
//! slot's methods in `Allow` — it never falls through to a broader route (SPEC §2).
//! The work is bounded by the shape of the trie along the request path (every node is visited at
//! most once per lookup), never by the total number of routes.
//!
//! A second index over *folded* patterns (ASCII lowercase unless the origin is declared
//! case-sensitive, trailing `/` removed) answers, when a request could be a case or
//! trailing-slash variant of a protected route, which route an origin that ignores case or a
//! trailing slash would serve ([`crate::Policy::match_route`]).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Segment {
    /// An exact segment (compared byte for byte with the raw request segment).
    Literal(String),
    /// `{name}`: exactly one non-empty segment, captured under `name`.
    Param(String),
    /// `*`: exactly one non-empty segment, not captured.
    Star,
    /// `**`: the rest of the path, also nothing (`/x/**` matches `/x`, `/x/` and `/x/a/b`); only
    /// as the last segment.
    Rest,
}

/// Longest pattern accepted, in segments.
pub const MAX_PATTERN_SEGMENTS: usize = 32;

/// A compiled path pattern: `/v1/orders/{id}/items/**`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parse a pattern. The error is a message for the `path` field.
    pub fn parse(source: &str) -> Result<PathPattern, String> {
        let Some(body) = source.strip_prefix('/') else {
            return Err(format!("{source:?} must start with \"/\""));
        };
        if source.len() > 1024 {
            return Err("is longer than 1024 characters".to_owned());
        }
        let parts: Vec<&str> = body.split('/').collect();
        if parts.len() > MAX_PATTERN_SEGMENTS {
            return Err(format!(
                "{source:?} has more than {MAX_PATTERN_SEGMENTS} segments"
            ));
        }
        let mut segments = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let seg = if part.is_empty() {
                if i != last {
                    return Err(format!(
                        "{source:?} has an empty segment (\"//\"); only a trailing \"/\" is allowed"
                    ));
                }
                Segment::Literal(String::new())
            } else if *part == "**" {
                if i != last {
                    return Err(format!(
                        "{source:?}: \"**\" is only allowed as the last segment"
                    ));
                }
                Segment::Rest
            } else if *part == "*" {
                Segment::Star
            } else if let Some(inner) = part.strip_prefix('{') {
                let Some(name) = inner.strip_suffix('}') else {
                    return Err(format!(
                        "{source:?}: segment {part:?} is not a valid {{param}}"
                    ));
                };
                if !is_param_name(name) {
                    return Err(format!(
                        "{source:?}: parameter name {name:?} must be letters, digits and \"_\", not starting with a digit"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("{source:?}: parameter {{{name}}} appears twice"));
                }
                names.push(name);
                Segment::Param(name.to_owned())
            } else {
                check_literal(part).map_err(|m| format!("{source:?}: segment {part:?} {m}"))?;
                Segment::Literal((*part).to_owned())
            };
            segments.push(seg);
        }
        Ok(PathPattern {
            source: source.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The pattern with parameter names erased (`/v1/orders/*/items/**`): two routes with the same
    /// shape have exactly the same specificity and match exactly the same paths.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            out.push('/');
            match seg {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(_) | Segment::Star => out.push('*'),
                Segment::Rest => out.push_str("**"),
            }
        }
        out
    }

    /// Names of the captured parameters, one entry per `{param}` or `*` (None for `*`), in order.
    pub(crate) fn capture_names(&self) -> Vec<Option<String>> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n) => Some(Some(n.clone())),
                Segment::Star => Some(None),
                _ => None,
            })
            .collect()
    }

    /// The pattern as the folded index holds it: literals ASCII-lowercased when `fold_case`, and
    /// a trailing empty segment (`/dir/`) removed, except for `/` itself.
    pub(crate) fn folded(&self, fold_case: bool) -> PathPattern {
        let mut segments = self.segments.clone();
        if segments.len() > 1 && segments.last() == Some(&Segment::Literal(String::new())) {
            segments.pop();
        }
        if fold_case {
            for seg in &mut segments {
                if let Segment::Literal(l) = seg {
                    l.make_ascii_lowercase();
                }
            }
        }
        PathPattern {
            source: self.source.clone(),
            segments,
        }
    }

    /// Whether a literal segment has an ASCII upper-case letter.
    pub(crate) fn has_upper_literal(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(l) if l.bytes().any(|b| b.is_ascii_uppercase())))
    }

    /// Whether the pattern ends with a `/` (an empty last segment), other than `/` itself.
    pub(crate) fn has_trailing_slash(&self) -> bool {
        self.segments.len() > 1 && self.segments.last() == Some(&Segment::Literal(String::new()))
    }

    /// Whether the pattern matches a raw path exactly (what [`PathPattern::matches`] says, without
    /// collecting anything): how the variant check tells a variant from an exact match.
    pub fn is_match(&self, raw_path: &str) -> bool {
        let Some(body) = raw_path.strip_prefix('/') else {
            return false;
        };
        let mut parts = body.split('/');
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
                Segment::Param(_) | Segment::Star => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// Match one pattern against a raw path (which must already pass [`check_path`]); returns the
    /// `{param}` captures. A direct, linear implementation: the reference the index is tested
    /// against, and what `explain` uses to say why a route did not match.
    pub fn matches<'p>(&self, raw_path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let body = raw_path.strip_prefix('/')?;
        let parts: Vec<&str> = body.split('/').collect();
        let mut captures = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Rest => return Some(captures),
                Segment::Literal(l) => {
                    if parts.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => match parts.get(i) {
                    Some(p) if !p.is_empty() => captures.push((name.as_str(), *p)),
                    _ => return None,
                },
                Segment::Star => match parts.get(i) {
                    Some(p) if !p.is_empty() => {}
                    _ => return None,
                },
            }
        }
        (parts.len() == self.segments.len()).then_some(captures)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A literal pattern segment: RFC 3986 pchar without percent-encoding and without `*`, and not a
/// dot segment (a normalised request can never contain one).
fn check_literal(part: &str) -> Result<(), &'static str> {
    for b in part.bytes() {
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            );
        if b == b';' {
            return Err(
                "has a \";\": request paths with \";\" are refused (origins read it as a path parameter), so this literal could never match",
            );
        }
        if !ok {
            return Err(
                "has a character that is not allowed in a literal segment (use letters, digits and -._~!$&'()+,=:@; no percent-encoding; {param}, * and ** only as whole segments)",
            );
        }
    }
    if is_dot_segment(part) {
        return Err("is a dot segment, which a normalised path never contains");
    }
    Ok(())
}

/// `.` or `..`, also with a `;params` suffix (`..;x`), which some origin servers treat as `..`.
fn is_dot_segment(seg: &str) -> bool {
    let head = seg.split(';').next().unwrap_or(seg);
    head == "." || head == ".."
}

/// Why a raw request path is refused before matching (400 `invalid_request`).
// Word-sized: the root crate's `Error` nests it in `Miss` (see `repr` on `jose::Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PathProblem {
    /// Does not start with `/`.
    NotAbsolute,
    /// `//`: an empty segment that is not the last one (also `/;x/`).
    EmptySegment,
    /// A `.` or `..` segment (also `..;x`).
    DotSegment,
    /// `%2F` or `%5C`: an encoded separator.
    EncodedSeparator,
    /// A percent-encoded unreserved character (`%2E`, `%41`, ...): RFC 3986 §6.2.2.2 says a
    /// normalised URI has them decoded, and origins decode them.
    EncodedUnreserved,
    /// A percent-encoded control character (`%00`, `%0A`, `%7F`, ...).
    EncodedControl,
    /// `%` not followed by two hex digits.
    BadPercent,
    /// A literal `\`.
    Backslash,
    /// A control character, space, DEL or a non-ASCII byte.
    ControlOrNonAscii,
    /// `?` or `#`: the caller must pass the path without query or fragment.
    QueryOrFragment,
    /// `;` in a segment (`/admin;jsessionid=x/users`), also encoded (`%3B`): Tomcat, Jetty and
    /// Spring strip `;params` before routing, so the origin would serve another path than the
    /// one matched.
    PathParameter,
}

impl PathProblem {
    pub fn describe(self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "the path does not start with \"/\"",
            PathProblem::EmptySegment => "the path has an empty segment (\"//\")",
            PathProblem::DotSegment => "the path has a \".\" or \"..\" segment",
            PathProblem::EncodedSeparator => "the path has an encoded \"/\" or \"\\\" (%2F, %5C)",
            PathProblem::EncodedUnreserved => {
                "the path percent-encodes an unreserved character (%2E, %41, ...)"
            }
            PathProblem::EncodedControl => "the path has an encoded control character",
            PathProblem::BadPercent => "the path has a \"%\" not followed by two hex digits",
            PathProblem::Backslash => "the path has a backslash",
            PathProblem::ControlOrNonAscii => {
                "the path has a control character, space or non-ASCII byte"
            }
            PathProblem::QueryOrFragment => "the path has \"?\" or \"#\" (pass the path only)",
            PathProblem::PathParameter => {
                "the path has a \";\" (a path parameter), also encoded as %3B"
            }
        }
    }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Check that a raw request path (before percent-decoding, without query) is in normal form.
/// The more specific problems are reported first: `/a/..;x` is a [`PathProblem::DotSegment`],
/// `/a/;x/b` an [`PathProblem::EmptySegment`], `/a;x/b` a [`PathProblem::PathParameter`].
pub fn check_path(raw_path: &str) -> Result<(), PathProblem> {
    let bytes = raw_path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathProblem::NotAbsolute);
    }
    let mut semicolon = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let decoded = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => match (hex(h), hex(l)) {
                        (Some(h), Some(l)) => h * 16 + l,
                        _ => return Err(PathProblem::BadPercent),
                    },
                    _ => return Err(PathProblem::BadPercent),
                };
                if decoded == b'/' || decoded == b'\\' {
                    return Err(PathProblem::EncodedSeparator);
                }
                if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                    return Err(PathProblem::EncodedUnreserved);
                }
                if decoded < 0x20 || decoded == 0x7f {
                    return Err(PathProblem::EncodedControl);
                }
                semicolon |= decoded == b';';
                i += 3;
                continue;
            }
            b';' => semicolon = true,
            b'\\' => return Err(PathProblem::Backslash),
            b'?' | b'#' => return Err(PathProblem::QueryOrFragment),
            0x21..=0x7e => {}
            _ => return Err(PathProblem::ControlOrNonAscii),
        }
        i += 1;
    }
    let body = &raw_path[1..];
    let mut segments = body.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        // `;x` alone is an empty segment with a path parameter (`/a/;x/b` is `/a//b` to some
        // servers).
        if (seg.is_empty() && !last) || seg.starts_with(';') {
            return Err(PathProblem::EmptySegment);
        }
        if is_dot_segment(seg) {
            return Err(PathProblem::DotSegment);
        }
    }
    if semicolon {
        return Err(PathProblem::PathParameter);
    }
    Ok(())
}

/// The host part of a `Host` value: port and one trailing dot removed (case is kept; compare with
/// `eq_ignore_ascii_case`).
pub(crate) fn host_without_port(host: &str) -> &str {
    let h = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    h.strip_suffix('.').unwrap_or(h)
}

/// Split an absolute request URL string (`https://host:port/raw/path?query`) into its authority
/// (`host:port`, for the host filter) and its raw path, without any normalisation: the path is
/// exactly as in the string, for [`check_path`] and route lookup. An empty path is `/`. Returns
/// None if the string is not `scheme://authority...`.
///
/// Use it on the request URL *string*. A parsed URL (`url::Url::path()`, JS `new URL().pathname`)
/// has already resolved `.`/`..` (also `%2E`), turned `\` into `/`: exactly the spellings the
/// gateway must refuse, because the origin may not read them the same way.
pub fn split_request_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after = &rest[end..];
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = &after[..path_end];
    Some((authority, if path.is_empty() { "/" } else { path }))
}

/// Why no route was returned. The root crate nests it as `Error::Route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Miss {
    /// The path is not in normal form (400 `invalid_request`, reason `unnormalised_path`).
    Unnormalised(PathProblem),
    /// No route matches (404 `not_found`, reason `no_route`).
    NoRoute,
    /// The most specific routes of the path do not take the method (405 `method_not_allowed`
    /// with this `Allow`, reason `method_not_allowed`). Never handed to a broader route.
    MethodNotAllowed(Allow),
    /// The path differs only by ASCII case or a trailing slash from a route that is more
    /// protected than the route it matches (400 `invalid_request`, reason `path_variant`): an
    /// origin that ignores case or a trailing slash would serve the protected resource.
    ProtectedVariant,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Unnormalised(p) => write!(f, "unnormalised path: {p}"),
            Miss::NoRoute => f.write_str("no route matches"),
            Miss::MethodNotAllowed(allow) => {
                write!(f, "method not allowed (Allow: {})", allow.as_str())
            }
            Miss::ProtectedVariant => f.write_str(
                "the path differs only by case or a trailing slash from a more protected route",
            ),
        }
    }
}

/// The value of an `Allow` header (RFC 9110 §10.2.1): method tokens, sorted, `", "`-separated.
///
/// `Copy` and `'static`, so that the gateway's `Copy` error type can carry it from the route
/// lookup to the response. Values made from a policy are interned: each distinct value is
/// allocated once per process and kept (the number of distinct values is bounded by the policy,
/// never by requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Allow(&'static str);

static INTERNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

impl Allow {
    /// A fixed value, e.g. `Allow::from_static("POST")` for the challenge endpoint.
    pub const fn from_static(value: &'static str) -> Allow {
        Allow(value)
    }

    /// The sorted, deduplicated methods, with `HEAD` wherever `GET` is (GET implies HEAD).
    pub fn from_methods<'a>(methods: impl IntoIterator<Item = &'a str>) -> Allow {
        let mut list: Vec<&str> = Vec::new();
        for m in methods {
            for m in [Some(m), (m == "GET").then_some("HEAD")]
                .into_iter()
                .flatten()
            {
                if let Err(at) = list.binary_search(&m) {
                    list.insert(at, m);
                }
            }
        }
        let mut value = String::new();
        for m in list {
            if !value.is_empty() {
                value.push_str(", ");
            }
            value.push_str(m);
        }
        let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&known) = interned.iter().find(|k| **k == value) {
            return Allow(known);
        }
        let leaked: &'static str = Box::leak(value.into_boxed_str());
        interned.push(leaked);
        Allow(leaked)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A request path as the folded index reads it: ASCII lowercase when `fold_case`, one trailing
/// `/` removed (except for `/`). Borrowed when nothing changes.
pub(crate) fn fold_path(raw_path: &str, fold_case: bool) -> std::borrow::Cow<'_, str> {
    let trimmed = match raw_path.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => raw_path,
    };
    if fold_case && trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

#[derive(Debug, Default, Clone)]
struct Node {
    literal: HashMap<Box<str>, u32>,
    param: Option<u32>,
    /// Routes whose pattern ends here with `**`.
    rest: Vec<u32>,
    /// Routes whose pattern ends exactly here.
    leaf: Vec<u32>,
}

/// The segment trie over all route patterns.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteIndex {
    nodes: Vec<Node>,
}

impl RouteIndex {
    pub(crate) fn build(patterns: &mut dyn Iterator<Item = &PathPattern>) -> RouteIndex {
        let mut nodes = vec![Node::default()];
        for (route, pattern) in patterns.enumerate() {
            let route = route as u32;
            let mut at = 0usize;
            let mut ended_with_rest = false;
            for seg in &pattern.segments {
                let next = match seg {
                    Segment::Rest => {
                        nodes[at].rest.push(route);
                        ended_with_rest = true;
                        break;
                    }
                    Segment::Literal(l) => nodes[at].literal.get(l.as_str()).copied(),
                    Segment::Param(_) | Segment::Star => nodes[at].param,
                };
                let next = match next {
                    Some(n) => n as usize,
                    None => {
                        let n = nodes.len();
                        nodes.push(Node::default());
                        match seg {
                            Segment::Literal(l) => {
                                nodes[at].literal.insert(l.as_str().into(), n as u32);
                            }
                            _ => nodes[at].param = Some(n as u32),
                        }
                        n
                    }
                };
                at = next;
            }
            if !ended_with_rest {
                nodes[at].leaf.push(route);
            }
        }
        RouteIndex { nodes }
    }

    /// Every group of routes that share one pattern shape (the only routes that can be ambiguous).
    pub(crate) fn groups(&self) -> impl Iterator<Item = &[u32]> {
        self.nodes
            .iter()
            .flat_map(|n| [n.leaf.as_slice(), n.rest.as_slice()])
            .filter(|g| g.len() > 1)
    }

    /// The most specific slot (routes of one pattern shape) that matches `path` and holds a route
    /// for which `host_ok` holds; the raw values of its `{param}`/`*` segments go to `captures`.
    /// `path` must start with `/` (it passed [`check_path`]).
    pub(crate) fn slot<'p>(
        &self,
        path: &'p str,
        host_ok: &dyn Fn(u32) -> bool,
        captures: &mut Vec<&'p str>,
    ) -> Option<&[u32]> {
        self.walk(0, Some(path.get(1..)?), host_ok, captures)
    }

    /// Depth-first, literal before parameter before `**`. `rest` is the unconsumed path after a
    /// `/` (None once every segment is consumed). Recursion depth is bounded by the trie depth.
    fn walk<'p>(
        &self,
        node: usize,
        rest: Option<&'p str>,
        host_ok: &dyn Fn(u32) -> bool,
        captures: &mut Vec<&'p str>,
    ) -> Option<&[u32]> {
        // (An index never built, `RouteIndex::default()`, has no node: nothing matches.)
        let n = self.nodes.get(node)?;
        let pick = |slot: &'_ [u32]| slot.iter().any(|&r| host_ok(r));
        let Some(rest) = rest else {
            // The path ends here: a pattern that ends here too, else a `**` that covers nothing.
            return [n.leaf.as_slice(), n.rest.as_slice()]
                .into_iter()
                .find(|s| pick(s));
        };
        let (seg, next) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(&child) = n.literal.get(seg) {
            if let Some(s) = self.walk(child as usize, next, host_ok, captures) {
                return Some(s);
            }
        }
        if let (Some(child), false) = (n.param, seg.is_empty()) {
            captures.push(seg);
            if let Some(s) = self.walk(child as usize, next, host_ok, captures) {
                return Some(s);
            }
            captures.pop();
        }
        pick(&n.rest).then_some(n.rest.as_slice())
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// For the compiler's pairwise checks: a superset of the routes whose pattern can match a path
    /// that `pattern` matches (with literals compared ASCII-case-insensitively when `fold_case`),
    /// or that path with its trailing `/` added or removed. Sorted, without repeats.
    pub(crate) fn candidates(&self, pattern: &PathPattern, fold_case: bool) -> Vec<u32> {
        let mut out = Vec::new();
        self.collect(0, &pattern.segments, fold_case, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn collect(&self, node: usize, segs: &[Segment], fold_case: bool, out: &mut Vec<u32>) {
        let n = &self.nodes[node];
        // A `**` here covers whatever the pattern still has (also nothing).
        out.extend_from_slice(&n.rest);
        let Some((first, tail)) = segs.split_first() else {
            out.extend_from_slice(&n.leaf);
            // the same path with a trailing slash
            if let Some(&child) = n.literal.get("") {
                out.extend_from_slice(&self.nodes[child as usize].leaf);
            }
            return;
        };
        match first {
            Segment::Rest => self.subtree(node, out),
            Segment::Literal(l) => {
                if l.is_empty() && tail.is_empty() {
                    // the same path without its trailing slash
                    out.extend_from_slice(&n.leaf);
                }
                for (key, &child) in &n.literal {
                    let same = if fold_case {
                        key.eq_ignore_ascii_case(l)
                    } else {
                        **key == **l
                    };
                    if same {
                        self.collect(child as usize, tail, fold_case, out);
                    }
                }
                if let (Some(child), false) = (n.param, l.is_empty()) {
                    self.collect(child as usize, tail, fold_case, out);
                }
            }
            Segment::Param(_) | Segment::Star => {
                for (key, &child) in &n.literal {
                    if !key.is_empty() {
                        self.collect(child as usize, tail, fold_case, out);
                    }
                }
                if let Some(child) = n.param {
                    self.collect(child as usize, tail, fold_case, out);
                }
            }
        }
    }

    /// Every route whose pattern passes through `node`.
    #[cfg(not(target_arch = "wasm32"))]
    fn subtree(&self, node: usize, out: &mut Vec<u32>) {
        let n = &self.nodes[node];
        out.extend_from_slice(&n.leaf);
        out.extend_from_slice(&n.rest);
        for &child in n.literal.values().chain(n.param.iter()) {
            self.subtree(child as usize, out);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// What a request that varies a path of the protected pattern `protected` can reach through the
/// pattern `other`: `(case, slash)`. `case`: some path of `other` differs from a path of
/// `protected` only by ASCII case in a literal segment (asked only when `fold_case`); `slash`:
/// some path of `other` is a path of `protected` with its trailing `/` added or removed (and, when
/// `fold_case`, its case changed too). Paths that `protected` itself matches are not variants.
pub(crate) fn variants(
    protected: &PathPattern,
    other: &PathPattern,
    fold_case: bool,
) -> (bool, bool) {
    let p = protected.segments();
    let q = other.segments();
    let case = fold_case && meet(p, q, true, true, false);
    let slash = match p.last() {
        None | Some(Segment::Rest) => false,
        Some(Segment::Literal(l)) if l.is_empty() => {
            p.len() > 1 && meet(&p[..p.len() - 1], q, fold_case, false, false)
        }
        Some(_) => {
            let mut toggled = p.to_vec();
            toggled.push(Segment::Literal(String::new()));
            meet(&toggled, q, fold_case, false, false)
        }
    };
    (case, slash)
}

#[cfg(not(target_arch = "wasm32"))]
/// Whether some path `v` matches `q` exactly and `p` with literals compared case-insensitively
/// when `fold_case`; with `need_escape`, `v` must also differ from every path of `p` (a literal
/// of `p` spelt in another case). `escaped`: that already happened at an earlier segment.
pub(crate) fn meet(
    p: &[Segment],
    q: &[Segment],
    fold_case: bool,
    need_escape: bool,
    escaped: bool,
) -> bool {
    let cased = |s: &Segment| matches!(s, Segment::Literal(l) if l.bytes().any(|b| b.is_ascii_alphabetic()));
    match (p.split_first(), q.split_first()) {
        (None, None) => !need_escape || escaped,
        // `p`'s `**` covers whatever `q` still needs (any pattern tail has a path), in any case.
        (Some((Segment::Rest, _)), _) => !need_escape || escaped,
        // `q`'s `**` takes any tail of `p`, also one spelt in another case.
        (_, Some((Segment::Rest, _))) => {
            !need_escape || escaped || (fold_case && p.iter().any(cased))
        }
        (None, Some(_)) | (Some(_), None) => false,
        (Some((a, p_tail)), Some((b, q_tail))) => {
            let (ok, escape) = match (a, b) {
                (Segment::Literal(x), Segment::Literal(y)) => {
                    let ok = if fold_case {
                        x.eq_ignore_ascii_case(y)
                    } else {
                        x == y
                    };
                    (ok, ok && x != y)
                }
                (Segment::Literal(x), _) => (!x.is_empty(), fold_case && cased(a)),
                (_, Segment::Literal(y)) => (!y.is_empty(), false),
                _ => (true, false),
            };
            ok && meet(p_tail, q_tail, fold_case, need_escape, escaped || escape)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse() {
        let p = PathPattern::parse("/v1/orders/{id}/items/**").unwrap();
        assert_eq!(p.shape(), "/v1/orders/*/items/**");
        assert_eq!(PathPattern::parse("/").unwrap().shape(), "/");
        assert_eq!(PathPattern::parse("/a/").unwrap().shape(), "/a/");
        for bad in [
            "", "v1", "/a//b", "/**/a", "/a{b}", "/{1a}", "/{a}/{a}", "/a*", "/%41", "/..", "/a/.",
            "/a b", "/{}", "/a;b", "/a/;",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn raw_paths_are_checked() {
        for ok in [
            "/",
            "/a",
            "/a/",
            "/a/b",
            "/caf%C3%A9",
            "/a%20b",
            "/a%25",
            "/.well-known/x",
            "/a..b",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        let bad = [
            ("", PathProblem::NotAbsolute),
            ("a", PathProblem::NotAbsolute),
            ("//", PathProblem::EmptySegment),
            ("/a//b", PathProblem::EmptySegment),
            ("/./a", PathProblem::DotSegment),
            ("/a/../b", PathProblem::DotSegment),
            ("/a/.", PathProblem::DotSegment),
            ("/a/..", PathProblem::DotSegment),
            ("/a/..;x/b", PathProblem::DotSegment),
            ("/a/;x/b", PathProblem::EmptySegment),
            ("/a%2Fb", PathProblem::EncodedSeparator),
            ("/a%2fb", PathProblem::EncodedSeparator),
            ("/a%5Cb", PathProblem::EncodedSeparator),
            ("/a%2E%2E/b", PathProblem::EncodedUnreserved),
            ("/a%2e", PathProblem::EncodedUnreserved),
            ("/%61dmin", PathProblem::EncodedUnreserved),
            ("/a%00", PathProblem::EncodedControl),
            ("/a%0a", PathProblem::EncodedControl),
            ("/a%", PathProblem::BadPercent),
            ("/a%4", PathProblem::BadPercent),
            ("/a%zz", PathProblem::BadPercent),
            ("/a\\b", PathProblem::Backslash),
            ("/a\0b", PathProblem::ControlOrNonAscii),
            ("/a\tb", PathProblem::ControlOrNonAscii),
            ("/a b", PathProblem::ControlOrNonAscii),
            ("/café", PathProblem::ControlOrNonAscii),
            ("/a?b", PathProblem::QueryOrFragment),
            ("/a;b", PathProblem::PathParameter),
            ("/a;", PathProblem::PathParameter),
            ("/a/b;c=d/e", PathProblem::PathParameter),
            ("/a%3Bb", PathProblem::PathParameter),
            ("/a%3bb", PathProblem::PathParameter),
        ];
        for (path, problem) in bad {
            assert_eq!(check_path(path), Err(problem), "{path:?}");
        }
    }

    #[test]
    fn request_urls_split_without_normalising() {
        assert_eq!(
            split_request_url("https://api.example.com:8443/a/../b%2e?x=1#f"),
            Some(("api.example.com:8443", "/a/../b%2e"))
        );
        assert_eq!(split_request_url("http://h"), Some(("h", "/")));
        assert_eq!(split_request_url("http://h?q"), Some(("h", "/")));
        assert_eq!(split_request_url("http://u@h/x\\y"), Some(("h", "/x\\y")));
        assert_eq!(split_request_url("/just/a/path"), None);
        assert_eq!(split_request_url("://h/x"), None);
    }

    #[test]
    fn folding_paths_and_patterns() {
        assert_eq!(fold_path("/A/b/", true), "/a/b");
        assert_eq!(fold_path("/A/b/", false), "/A/b");
        assert_eq!(fold_path("/", true), "/");
        assert!(matches!(
            fold_path("/a/b", true),
            std::borrow::Cow::Borrowed(_)
        ));
        let p = PathPattern::parse("/Dir/{id}/").unwrap();
        assert_eq!(p.folded(true).shape(), "/dir/*");
        assert_eq!(p.folded(false).shape(), "/Dir/*");
        assert_eq!(PathPattern::parse("/").unwrap().folded(true).shape(), "/");
        assert!(p.has_upper_literal() && p.has_trailing_slash());
        assert!(!PathPattern::parse("/").unwrap().has_trailing_slash());
    }

    #[test]
    fn variant_analysis() {
        let v = |p: &str, q: &str, ci: bool| {
            variants(
                &PathPattern::parse(p).unwrap(),
                &PathPattern::parse(q).unwrap(),
                ci,
            )
        };
        // (case, slash)
        assert_eq!(v("/admin/**", "/**", true), (true, false));
        assert_eq!(v("/admin/**", "/**", false), (false, false));
        assert_eq!(v("/v1/orders/{id}", "/**", true), (true, true));
        assert_eq!(v("/v1/orders/{id}", "/**", false), (false, true));
        assert_eq!(v("/inbox/", "/{x}", false), (false, true));
        assert_eq!(v("/a/{id}", "/{x}/{y}", true), (true, false));
        assert_eq!(v("/a/b", "/a/**", true), (true, true));
        // the same shape and literals: no variant escapes
        assert_eq!(v("/v1/orders/{id}", "/v1/orders/{o}", true), (false, false));
        // a parameter or ** in the protected route takes every spelling itself
        assert_eq!(v("/{id}", "/**", true), (false, true));
        assert_eq!(v("/**", "/x/**", true), (false, false));
        // disjoint paths
        assert_eq!(v("/a/b", "/c/**", true), (false, false));
        assert_eq!(v("/a/b", "/a", true), (false, false));
        // another spelling of the literal is a variant; `/` itself has no slash variant
        assert_eq!(v("/Reports/{id}", "/reports/{id}", true), (true, false));
        assert_eq!(v("/", "/**", true), (false, false));
    }

    #[test]
    fn allow_values_are_sorted_and_interned() {
        let a = Allow::from_methods(["POST", "GET", "GET"]);
        assert_eq!(a.as_str(), "GET, HEAD, POST");
        let b = Allow::from_methods(["GET", "POST"]);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(Allow::from_methods(["PUT"]).as_str(), "PUT");
        assert_eq!(Allow::from_static("POST").to_string(), "POST");
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("api.example.com:8443"), "api.example.com");
        assert_eq!(host_without_port("API.example.com."), "API.example.com");
        assert_eq!(host_without_port("[::1]:8788"), "[::1]");
        assert_eq!(host_without_port("::1"), "::1");
        assert_eq!(host_without_port("h"), "h");
    }
}
