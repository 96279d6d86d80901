//! The parts of a request URL the gateway uses, split out of the absolute URL the runtime hands
//! the Worker.
//!
//! The runtime gives the Worker its own WHATWG serialisation of the request URL (scheme in lower
//! case, host in lower case and punycode, dot segments resolved, no fragment), so splitting that
//! string is exact: parsing it again with a full URL parser gives back the same parts, at a
//! cost paid on every request. Anything that does not have the expected shape is refused
//! (`None`), never guessed at.

/// The pieces of `scheme://authority/path?query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestUrl<'a> {
    /// `scheme://authority`, as in the URL (used for the DPoP `htu`).
    pub origin: &'a str,
    /// The host without port, brackets kept for IPv6 literals.
    pub host: &'a str,
    /// The path, starting with `/`.
    pub path: &'a str,
    /// The query without its `?`, if there is one.
    pub query: Option<&'a str>,
    /// `origin` and `path` together: the URL without its query (the DPoP `htu`), a slice of the
    /// same text, so no copy is made.
    pub htu: &'a str,
}

/// Split an absolute `http`/`https` URL. `None` for anything else, for user info in the
/// authority, an empty host, or a fragment (the runtime never sends one).
pub fn split(url: &str) -> Option<RequestUrl<'_>> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let scheme_len = url.len() - rest.len();
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    if authority.contains('@') || url.contains('#') {
        return None;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => &authority[..v6.find(']')? + 2],
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return None;
    }
    let origin = &url[..scheme_len + authority_len];
    let tail = &rest[authority_len..];
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    if !path.starts_with('/') {
        return None;
    }
    Some(RequestUrl {
        origin,
        host,
        path,
        query,
        htu: &url[..origin.len() + path.len()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> Option<(&str, &str, &str, Option<&str>)> {
        split(url).map(|u| {
            assert_eq!(u.htu, format!("{}{}", u.origin, u.path));
            (u.origin, u.host, u.path, u.query)
        })
    }

    #[test]
    fn splits_the_runtime_serialisation() {
        assert_eq!(
            parts("https://api.example.com/v1/orders/42?x=1&y=%2F"),
            Some((
                "https://api.example.com",
                "api.example.com",
                "/v1/orders/42",
                Some("x=1&y=%2F")
            ))
        );
        assert_eq!(
            parts("http://127.0.0.1:8787/"),
            Some(("http://127.0.0.1:8787", "127.0.0.1", "/", None))
        );
        assert_eq!(
            parts("http://[::1]:8787/a?"),
            Some(("http://[::1]:8787", "[::1]", "/a", Some("")))
        );
        // A `?` inside the query stays in the query; `//` and encoded slashes stay in the path
        // (the route matcher refuses them).
        assert_eq!(
            parts("https://h//a/%2F/b?q=?"),
            Some(("https://h", "h", "//a/%2F/b", Some("q=?")))
        );
    }

    #[test]
    fn refuses_what_the_runtime_never_sends() {
        for url in [
            "",
            "/v1/orders",
            "ftp://h/",
            "https://",
            "https:///path",
            "https://user@h/",
            "https://h/#frag",
            "https://h?q",
            "https://[::1/",
            "https://:443/",
        ] {
            assert_eq!(split(url), None, "{url}");
        }
    }

    #[test]
    fn agrees_with_a_full_parser_on_the_parts_used() {
        // Whatever a WHATWG parser makes of a request URL, splitting its serialisation (what the
        // runtime hands the Worker) gives the same origin, host, path and query.
        let hosts = [
            "api.example.com",
            "API.Example.com:8443",
            "127.0.0.1:8787",
            "[::1]:80",
            "xn--bcher-kva.example",
        ];
        let paths = [
            "",
            "/",
            "/v1/orders/42",
            "/a/./b/../c",
            "//x",
            "/%2F/é",
            "/a;b=c",
            "/sp ace",
        ];
        let queries = ["", "?", "?a=1&b=%20", "?q=?/#frag", "?ü"];
        let mut checked = 0;
        for scheme in ["http", "https"] {
            for host in hosts {
                for path in paths {
                    for query in queries {
                        let input = format!("{scheme}://{host}{path}{query}");
                        let mut parsed = ::url::Url::parse(&input).unwrap();
                        // Fragments never reach the server.
                        parsed.set_fragment(None);
                        let u = split(parsed.as_str()).unwrap_or_else(|| panic!("{parsed}"));
                        assert_eq!(u.origin, parsed.origin().ascii_serialization(), "{parsed}");
                        assert_eq!(Some(u.host), parsed.host_str(), "{parsed}");
                        assert_eq!(u.path, parsed.path(), "{parsed}");
                        assert_eq!(u.query, parsed.query(), "{parsed}");
                        assert_eq!(u.htu, format!("{}{}", u.origin, u.path), "{parsed}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 5 * 8 * 5);
    }
}
