//! Value validators of the compiler: URLs, hosts, header names, tokens, identifiers. Pure
//! predicates and checks; the messages name the value, the caller adds the location.

/// Longest forwarded / token header name accepted.
const MAX_HEADER_NAME: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    Https,
    Http,
}

/// `https://host[:port][/path][?query]`, ASCII, no userinfo, no fragment.
pub(super) fn check_url(url: &str, allow_query: bool) -> Result<Scheme, String> {
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{url:?} has spaces, control or non-ASCII characters"
        ));
    }
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(format!("{url:?} must be an https:// URL"));
    };
    if url.contains('#') {
        return Err(format!("{url:?} must not have a fragment"));
    }
    if !allow_query && url.contains('?') {
        return Err(format!("{url:?} must not have a query"));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(format!(
            "{url:?} must not carry credentials (use a Worker secret)"
        ));
    }
    let host = url_host(url).unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    check_host(host).map_err(|m| format!("{url:?}: host {m}"))?;
    let after_host = &authority[host.len()..];
    if let Some(port) = after_host.strip_prefix(':') {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('0') => {}
            _ => return Err(format!("{url:?} has an invalid port")),
        }
    } else if !after_host.is_empty() {
        return Err(format!("{url:?} has an invalid authority"));
    }
    Ok(scheme)
}

/// The host of an `http(s)://` URL (lowercase is not enforced here).
pub(super) fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.starts_with('[') {
        return authority.find(']').map(|i| &authority[..=i]);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// A host name (`api.example.com`), IPv4 address or bracketed IPv6 address; no port.
pub(super) fn check_host(h: &str) -> Result<(), &'static str> {
    if let Some(inner) = h.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(a)
                if !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                Ok(())
            }
            _ => Err("is not a valid bracketed IPv6 address"),
        };
    }
    if h.is_empty() || h.len() > 253 {
        return Err("must be a host name of 1 to 253 characters");
    }
    if h.contains(':') {
        return Err("must not have a port (ports are ignored when matching)");
    }
    for label in h.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("is not a valid host name (letters, digits, '-' and '.', no empty label)");
        }
    }
    Ok(())
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

pub(super) fn is_header_name(s: &str) -> bool {
    is_token(s) && s.len() <= MAX_HEADER_NAME
}

pub(super) fn is_lower_header_name(s: &str) -> bool {
    is_header_name(s) && !s.bytes().any(|b| b.is_ascii_uppercase())
}

pub(super) fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

pub(super) fn is_identifier(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) fn is_secret_name(s: &str) -> bool {
    s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(super) fn is_route_id(s: &str) -> bool {
    s.len() <= 128
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(check_url("https://a.example", false), Ok(Scheme::Https));
        assert_eq!(
            check_url("https://a.example:8443/x", false),
            Ok(Scheme::Https)
        );
        assert_eq!(check_url("http://127.0.0.1:8788", false), Ok(Scheme::Http));
        assert_eq!(check_url("https://[::1]:8443/", false), Ok(Scheme::Https));
        assert_eq!(
            check_url("https://i.example/jwks?v=1", true),
            Ok(Scheme::Https)
        );
        for bad in [
            "ftp://a",
            "https://",
            "https://u:p@a.example",
            "https://a.example#f",
            "https://a b",
            "https://a.example:0",
            "https://a.example:99999",
            "https://a.example?x",
            "//a.example",
            "HTTPS://a.example",
            "https://a..example",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
    }
}
