//! Request bodies (issue 15 item 2; the `h-body` foundation): which routes read the body, the
//! checks before reading it, and the strict JSON reading of it. Pure; the Worker reads the
//! stream (`src/edge/body.rs`) and hands the core the bytes.
//!
//! - A route reads its body when it needs it ([`crate::policy::Route::needs_body`]: intent rules
//!   read it, a receipt binds its digest, or the route sets `max_body_bytes`). Everywhere else
//!   the body streams through unread, as before.
//! - Before reading ([`admit`]): a `Content-Length` that is not one decimal number is 400; one
//!   above the route's cap is 413 `request_too_large` and nothing is read. On a route whose
//!   rules read JSON, a `Content-Encoding` other than `identity` is 415 (the gateway would check
//!   one thing and the origin, decompressing, read another) and so is a `Content-Type` that is
//!   not `application/json` or `application/*+json` (a form or text body the origin parses
//!   differently from the JSON the gateway checked).
//! - While reading (the adapter): a stream that crosses the cap is 413, reading stops there; a
//!   stream that fails (the client went away, a truncated upload) is 400.
//! - The bytes read are the bytes forwarded ([`crate::gate::phase::ForwardPlan::body`]), byte
//!   for byte: the origin gets exactly what was checked.
//! - [`read_json`]: the same strict reader as tokens ([`crate::jose::json::parse_object`]: one
//!   object, UTF-8, no BOM, no duplicate member at any depth, names compared after unescaping,
//!   no trailing data), plus the route's depth limit.

use serde_json::{Map, Value};

use crate::gate::extract::HeaderSource;
use crate::policy::Route;
use crate::Error;

/// The request body as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// Not read: the route does not need it (it streams through), or the caller did not read it
    /// (on a route that needs it, that fails closed).
    Unread,
    /// The bytes read, exactly as received (empty when the request had none).
    Bytes(&'a [u8]),
    /// The adapter could not read it: 413 (over the cap), 400 (the stream failed), ...
    Refused(Error),
}

impl<'a> Body<'a> {
    /// The bytes, when read.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self {
            Body::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// What the adapter must do with the body of a request on `route`, before reading it: `None`,
/// leave it unread (stream it through); `Some(cap)`, read at most `cap` bytes (a stream that
/// crosses it is [`Error::BodyTooLarge`]). `Err`: refused before anything is read.
pub fn admit<H: HeaderSource + ?Sized>(route: &Route, headers: &H) -> Result<Option<u64>, Error> {
    let rule = &route.body;
    if !rule.read {
        return Ok(None);
    }
    if let Some(len) = headers.header("content-length") {
        let len = content_length(&len).ok_or(Error::MalformedRequest)?;
        if len > rule.max_bytes {
            return Err(Error::BodyTooLarge);
        }
    }
    if rule.json {
        if let Some(enc) = headers.header("content-encoding") {
            if !enc.trim().eq_ignore_ascii_case("identity") {
                return Err(Error::BodyEncoded);
            }
        }
        match headers.header("content-type") {
            Some(ct) if is_json_media_type(&ct) => {}
            _ => return Err(Error::BodyMediaType),
        }
    }
    Ok(Some(rule.max_bytes))
}

/// The body the core takes for `route`: the bytes when the route needs them (an unread body on
/// such a route fails closed), `None` when it streams through.
pub fn for_route<'a>(route: &Route, body: Body<'a>) -> Result<Option<&'a [u8]>, Error> {
    if !route.needs_body() {
        return Ok(None);
    }
    match body {
        Body::Bytes(b) if b.len() as u64 <= route.body.max_bytes => Ok(Some(b)),
        Body::Bytes(_) => Err(Error::BodyTooLarge),
        Body::Refused(e) => Err(e),
        Body::Unread => Err(Error::Internal),
    }
}

/// `Content-Length`: one run of ASCII digits (RFC 9110 §8.6), at most 15 of them. A list
/// (`"5, 5"`), a sign or anything else is `None`.
fn content_length(value: &str) -> Option<u64> {
    let v = value.trim_matches([' ', '\t']);
    if v.is_empty() || v.len() > 15 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// `application/json` or `application/<anything>+json`, parameters allowed (`; charset=utf-8`),
/// case-insensitive.
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches([' ', '\t']);
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || (sub.len() > 5
                && sub
                    .get(sub.len() - 5..)
                    .is_some_and(|t| t.eq_ignore_ascii_case("+json"))
                && sub.bytes().all(|b| b.is_ascii_graphic())))
}

/// Read a JSON body strictly: the token reader ([`crate::jose::json::parse_object`]) and at
/// most `max_depth` levels of arrays and objects (the top-level object is level 1). Anything
/// else is [`Error::BodyNotJson`] (a duplicate member included: the origin's parser may keep the
/// other one).
pub fn read_json(bytes: &[u8], max_depth: u32) -> Result<Map<String, Value>, Error> {
    let map = crate::jose::json::parse_object(bytes).map_err(|_| Error::BodyNotJson)?;
    if object_depth(&map, 1) > max_depth as usize {
        return Err(Error::BodyNotJson);
    }
    Ok(map)
}

/// The nesting depth of a parsed value (the parser already bounds it at 128 levels, so the
/// recursion is bounded).
fn object_depth(map: &Map<String, Value>, level: usize) -> usize {
    map.values()
        .map(|v| value_depth(v, level + 1))
        .max()
        .unwrap_or(level)
        .max(level)
}

fn value_depth(v: &Value, level: usize) -> usize {
    match v {
        Value::Object(m) => object_depth(m, level),
        Value::Array(a) => a
            .iter()
            .map(|v| value_depth(v, level + 1))
            .max()
            .unwrap_or(level),
        _ => level - 1,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn route(toml_route: &str) -> Route {
        let text = format!(
            "[gateway]\norigin = \"https://o.example\"\n[provider.a]\nalgorithms = [\"HS256\"]\nsecret = \"S\"\n[[route]]\nid = \"r\"\npath = \"/p\"\nrequire = {{ all = [\"a\"] }}\n{toml_route}\n"
        );
        let policy = crate::api::compile_toml("t.toml", &text).unwrap();
        policy.routes()[0].clone()
    }

    type H = [(String, String)];
    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn routes_that_do_not_need_the_body_leave_it_unread() {
        let r = route("");
        assert!(!r.needs_body());
        let headers = h(&[("content-length", "99999999999")]);
        assert_eq!(admit(&r, headers.as_slice() as &H), Ok(None));
        assert_eq!(for_route(&r, Body::Unread), Ok(None));
        assert_eq!(for_route(&r, Body::Bytes(b"x")), Ok(None));
    }

    #[test]
    fn content_length_over_the_cap_is_413_before_reading() {
        let r = route("max_body_bytes = 10");
        assert!(r.needs_body());
        let ok = |v: &str| admit(&r, h(&[("content-length", v)]).as_slice() as &H);
        assert_eq!(ok("10"), Ok(Some(10)));
        assert_eq!(ok("0"), Ok(Some(10)));
        assert_eq!(ok("11"), Err(Error::BodyTooLarge));
        assert_eq!(ok("99999999999999"), Err(Error::BodyTooLarge));
        for bad in ["", "-1", "+5", "5, 5", "0x10", "1e3", "9999999999999999999"] {
            assert_eq!(ok(bad), Err(Error::MalformedRequest), "{bad:?}");
        }
        // No Content-Length (a chunked upload): read, capped while reading.
        assert_eq!(admit(&r, h(&[]).as_slice() as &H), Ok(Some(10)));
    }

    #[test]
    fn the_core_takes_exactly_the_bytes_read_and_fails_closed_otherwise() {
        let r = route("max_body_bytes = 4");
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(for_route(&r, Body::Bytes(&all[..4])), Ok(Some(&all[..4])));
        assert_eq!(for_route(&r, Body::Bytes(&all)), Err(Error::BodyTooLarge));
        assert_eq!(for_route(&r, Body::Unread), Err(Error::Internal));
        assert_eq!(
            for_route(&r, Body::Refused(Error::BodyUnreadable)),
            Err(Error::BodyUnreadable)
        );
        assert_eq!(for_route(&r, Body::Bytes(&[])), Ok(Some(&[][..])));
    }

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            " application/json ",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/+json",
            "application",
            "json",
            "",
            "text/json",
        ] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn the_json_reader_is_the_token_reader_with_a_depth_limit() {
        assert!(read_json(br#"{"a":{"b":[1,{"c":"d"}]}}"#, 4).is_ok());
        assert_eq!(
            read_json(br#"{"a":{"b":[1,{"c":"d"}]}}"#, 3),
            Err(Error::BodyNotJson)
        );
        assert!(read_json(br#"{"a":1}"#, 1).is_ok());
        assert_eq!(read_json(br#"{"a":[]}"#, 1), Err(Error::BodyNotJson));
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"amount":"1","\u0061mount":"1000"}"#,
            br#"{"a":1"#,
            br#"[{"a":1}]"#,
            b"\xef\xbb\xbf{}",
            b"{\"a\":\"\xff\"}",
            br#"{"a":1} {}"#,
            b"",
            b"a=1&b=2",
        ] {
            assert_eq!(read_json(bad, 32), Err(Error::BodyNotJson), "{bad:?}");
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(read_json(deep.as_bytes(), 32), Err(Error::BodyNotJson));
        assert!(read_json(deep.as_bytes(), 64).is_ok());
        let deeper = format!("{{\"a\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(read_json(deeper.as_bytes(), 64), Err(Error::BodyNotJson));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod pipeline {
    use crate::api::{compile_toml, Gateway, MemoryReplay, Request, Seams, StaticKeys};
    use crate::jose::{block_on_ready, NativeVerifier};
    use crate::Error;

    const POLICY: &str = r#"
[gateway]
origin = "https://o.example"
[[route]]
id = "capped"
path = "/up"
public = true
max_body_bytes = 8
[[route]]
id = "streamed"
path = "/stream"
public = true
"#;

    /// The forward plan's body and the refusal of one request with `body` on `path`.
    fn decide(
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (Option<Vec<u8>>, Option<Error>) {
        let gw = Gateway::new(compile_toml("t.toml", POLICY).unwrap()).unwrap();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let url = format!("https://o.example{path}");
        let req = Request {
            method: "POST",
            url: &url,
            headers: &headers,
        };
        let (keys, replay) = (StaticKeys::new(), MemoryReplay::new());
        let seams = Seams {
            keys: &keys,
            verifier: &NativeVerifier,
            replay: &replay,
            nonce_key: None,
            signing_keys: None,
            deny: None,
        };
        block_on_ready(async {
            let d = gw
                .decide_with_body(&req, body, &seams, 1_700_000_000, "id")
                .await;
            Ok::<_, Error>((
                d.forward().and_then(|p| p.body.map(<[u8]>::to_vec)),
                d.error(),
            ))
        })
        .unwrap()
    }

    #[test]
    fn the_plan_forwards_exactly_the_bytes_read() {
        let body = [0u8, 255, 10, 13, 0x80, b'"', b'\\', 7];
        assert_eq!(decide("/up", &[], &body), (Some(body.to_vec()), None));
        // A route that does not read its body: the stream goes through, no bytes in the plan.
        assert_eq!(decide("/stream", &[], &body), (None, None));
        assert_eq!(
            decide("/stream", &[("content-length", "100000000")], &body),
            (None, None)
        );
    }

    #[test]
    fn over_the_cap_is_413_by_header_or_by_length() {
        assert_eq!(
            decide("/up", &[("content-length", "9")], b"x"),
            (None, Some(Error::BodyTooLarge))
        );
        assert_eq!(
            decide("/up", &[], b"123456789"),
            (None, Some(Error::BodyTooLarge))
        );
        assert_eq!(
            decide("/up", &[("content-length", "1,1")], b"x"),
            (None, Some(Error::MalformedRequest))
        );
    }
}
