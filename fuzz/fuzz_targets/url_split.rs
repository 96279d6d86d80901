//! The URL splitters: `gate::url::split` (the Worker's request URL) and the policy crate's
//! `split_request_url` and `check_path`, checked against the WHATWG parser of the `url` crate.
//!
//! Properties:
//! * `split` is exact: origin, path and query put back together are the input.
//! * On what the runtime sends (a URL's WHATWG serialisation, fragment removed), `split`
//!   accepts exactly the URLs without user info and agrees with `url` on origin, host, path and
//!   query; `split_request_url` agrees on authority and path.
//! * A path `check_path` accepts is one a WHATWG origin reads unchanged (apart from characters
//!   it percent-encodes, which the runtime has already encoded in the URL it hands over): the
//!   gateway and the origin cannot disagree about which resource is meant.
#![no_main]

use attestgate::gate::url::split;
use attestgate::policy::{check_path, split_request_url};
use libfuzzer_sys::fuzz_target;

fn check_split(s: &str) {
    let Some(u) = split(s) else {
        return;
    };
    let mut back = format!("{}{}", u.origin, u.path);
    if let Some(q) = u.query {
        back.push('?');
        back.push_str(q);
    }
    assert_eq!(back, s, "split is not exact");
    assert_eq!(u.htu, format!("{}{}", u.origin, u.path), "htu is not origin + path");
    let authority = u
        .origin
        .strip_prefix("https://")
        .or_else(|| u.origin.strip_prefix("http://"))
        .expect("an http(s) origin");
    assert!(authority.starts_with(u.host) && !u.host.is_empty());
    assert!(!authority.contains(['@', '/', '?', '#']));
    assert!(u.path.starts_with('/') && !u.path.contains('?'));
    assert!(!s.contains('#'));
}

fn check_against_whatwg(s: &str) {
    let Ok(mut parsed) = url::Url::parse(s) else {
        return;
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return;
    }
    parsed.set_fragment(None);
    let runtime = parsed.as_str();
    let got = split(runtime);
    if !parsed.username().is_empty() || parsed.password().is_some() {
        assert_eq!(got, None, "{runtime}: user info accepted");
        return;
    }
    let Some(u) = got else {
        panic!("{runtime}: the runtime's serialisation does not split");
    };
    assert_eq!(u.origin, parsed.origin().ascii_serialization(), "{runtime}");
    assert_eq!(Some(u.host), parsed.host_str(), "{runtime}");
    assert_eq!(u.path, parsed.path(), "{runtime}");
    assert_eq!(u.query, parsed.query(), "{runtime}");

    let (authority, path) = split_request_url(runtime).expect("an absolute URL splits");
    let want = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_owned(),
    };
    assert_eq!(authority, want, "{runtime}");
    assert_eq!(path, parsed.path(), "{runtime}");
}

/// Characters a WHATWG parser percent-encodes in a path (the path percent-encode set, beyond
/// the controls, space, `#` and `?` that `check_path` refuses itself).
fn whatwg_encodes(b: u8) -> bool {
    matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'^')
}

fn check_normal_path(path: &str) {
    if check_path(path).is_err() || path.bytes().any(whatwg_encodes) {
        return;
    }
    let url = format!("http://h.example{path}");
    let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(
        parsed.path(),
        path,
        "an accepted path is read differently by the origin"
    );
}

fn check_request_url(s: &str) {
    let Some((authority, path)) = split_request_url(s) else {
        return;
    };
    assert!(path.starts_with('/') && !path.contains(['?', '#']));
    assert!(!authority.contains(['/', '?', '#', '@']));
    assert!(s.contains(authority));
    check_normal_path(path);
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check_split(s);
    check_against_whatwg(s);
    check_request_url(s);
    check_normal_path(s);
});
