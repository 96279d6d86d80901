//! Path patterns, the raw-path normalisation check and the route index.
//!
//! Matching works on the **raw** request path (as sent, before any percent-decoding), which must
//! first pass [`check_path`]: a path that is not in normal form is refused before matching, so
//! that the gateway and the origin cannot disagree about which resource is meant.
//!
//! The index is a segment trie. Each node has children by literal segment (a hash map), one
//! parameter child (`{name}` and `*` share it) and the routes whose pattern ends here with `**`
//! or ends exactly here. Lookup walks the path once, trying at each position the literal child,
//! then the parameter child, then `**`, and returns the first route (of that node) that also
//! accepts the method and host. Because of that order, the route found is the most specific one:
//! the first position where two matching patterns differ decides (literal > parameter > `**`).
//! The work is bounded by the shape of the trie along the request path (every node is visited at
//! most once per lookup), never by the total number of routes.

use std::collections::HashMap;
use std::fmt;

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An exact segment (compared byte for byte with the raw request segment).
    Literal(String),
    /// `{name}`: exactly one non-empty segment, captured under `name`.
    Param(String),
    /// `*`: exactly one non-empty segment, not captured.
    Star,
    /// `**`: one or more remaining segments (the rest of the path); only as the last segment.
    Rest,
}

/// Longest pattern accepted, in segments.
pub const MAX_PATTERN_SEGMENTS: usize = 32;

/// A compiled path pattern: `/v1/orders/{id}/items/**`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

    /// Match one pattern against a raw path (which must already pass [`check_path`]); returns the
    /// `{param}` captures. A direct, linear implementation: the reference the index is tested
    /// against, and what `explain` uses to say why a route did not match.
    pub fn matches<'p>(&self, raw_path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let body = raw_path.strip_prefix('/')?;
        let parts: Vec<&str> = body.split('/').collect();
        let mut captures = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Rest => return (parts.len() > i).then_some(captures),
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
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if !ok {
            return Err(
                "has a character that is not allowed in a literal segment (use letters, digits and -._~!$&'()+,;=:@; no percent-encoding; {param}, * and ** only as whole segments)",
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
pub fn check_path(raw_path: &str) -> Result<(), PathProblem> {
    let bytes = raw_path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathProblem::NotAbsolute);
    }
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
                i += 3;
                continue;
            }
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
    Ok(())
}

/// The host part of a `Host` value: port and one trailing dot removed (case is kept; compare with
/// `eq_ignore_ascii_case`).
pub fn host_without_port(host: &str) -> &str {
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

/// Why no route was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Miss {
    /// The path is not in normal form (400 `invalid_request`, `Error::UnnormalisedPath`).
    Unnormalised(PathProblem),
    /// No route matches (404 `not_found`, `Error::NoRoute`).
    NoRoute,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Unnormalised(p) => write!(f, "unnormalised path: {p}"),
            Miss::NoRoute => f.write_str("no route matches"),
        }
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
    pub(crate) fn build<'a>(patterns: impl IntoIterator<Item = &'a PathPattern>) -> RouteIndex {
        let mut nodes = vec![Node::default()];
        for (route, pattern) in patterns.into_iter().enumerate() {
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

    /// Find the most specific route that accepts the request. `accepts(route)` filters by method
    /// and host. Returns the route index and the raw values of `{param}`/`*` segments in order.
    pub(crate) fn lookup<'p>(
        &self,
        raw_path: &'p str,
        accepts: &dyn Fn(u32) -> bool,
    ) -> Result<(u32, Vec<&'p str>), Miss> {
        check_path(raw_path).map_err(Miss::Unnormalised)?;
        let mut captures = Vec::new();
        match self.walk(0, Some(&raw_path[1..]), accepts, &mut captures) {
            Some(route) => Ok((route, captures)),
            None => Err(Miss::NoRoute),
        }
    }

    /// Depth-first, literal before parameter before `**`. `rest` is the unconsumed path after a
    /// `/` (None once every segment is consumed). Recursion depth is bounded by the trie depth.
    fn walk<'p>(
        &self,
        node: usize,
        rest: Option<&'p str>,
        accepts: &dyn Fn(u32) -> bool,
        captures: &mut Vec<&'p str>,
    ) -> Option<u32> {
        let n = &self.nodes[node];
        let Some(rest) = rest else {
            return n.leaf.iter().copied().find(|&r| accepts(r));
        };
        let (seg, next) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(&child) = n.literal.get(seg) {
            if let Some(r) = self.walk(child as usize, next, accepts, captures) {
                return Some(r);
            }
        }
        if let (Some(child), false) = (n.param, seg.is_empty()) {
            captures.push(seg);
            if let Some(r) = self.walk(child as usize, next, accepts, captures) {
                return Some(r);
            }
            captures.pop();
        }
        n.rest.iter().copied().find(|&r| accepts(r))
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
            "/a b", "/{}",
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
            "/a;b",
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
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("api.example.com:8443"), "api.example.com");
        assert_eq!(host_without_port("API.example.com."), "API.example.com");
        assert_eq!(host_without_port("[::1]:8788"), "[::1]");
        assert_eq!(host_without_port("::1"), "::1");
        assert_eq!(host_without_port("h"), "h");
    }
}
