//! The OAuth token endpoint exchange, pure: the request the Worker sends and the strict reading
//! of the answer.
//!
//! Request (RFC 6749 §4.4, §2.3.1): `POST token_url`, `Content-Type:
//! application/x-www-form-urlencoded`, `Authorization: Basic base64(urlencode(id) ":"
//! urlencode(secret))` (`client_secret_basic`), body `grant_type=client_credentials` and the
//! upstream's `scope`, `audience` and `resource`.
//!
//! Answer: status 200 and a JSON object (no duplicate member, at most [`MAX_RESPONSE_BYTES`])
//! with `access_token` (1 to [`MAX_TOKEN_BYTES`] visible ASCII characters, what a header can
//! carry), `token_type` `Bearer` (case-insensitive: the gateway sends it as a bearer token) and
//! `expires_in` (a non-negative integer). Anything else is a [`TokenFault`] (the route answers
//! 503 `temporarily_unavailable`, never forwards without the credential).

use core::fmt;

use serde_json::Value;

use crate::policy::{InjectHeader, OauthClient};

/// Largest token endpoint answer read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest access token accepted.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `expires_in` honoured (a day): a longer one is cached for a day.
pub const MAX_EXPIRES_IN: i64 = 86_400;

/// One token endpoint request. Its `authorization` holds the client secret: printed redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub url: String,
    /// `Basic ...` (`client_secret_basic`).
    pub authorization: String,
    /// `application/x-www-form-urlencoded`.
    pub body: String,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("url", &self.url)
            .field("authorization", &"<redacted>")
            .field("body", &self.body)
            .finish()
    }
}

/// RFC 6749 Appendix B: `application/x-www-form-urlencoded` of one name or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                use core::fmt::Write;
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4, what `Basic` takes), from the base64url encoder
/// the gateway already has: the two alphabets differ in two characters.
fn base64_std(bytes: &[u8]) -> String {
    let mut out: String = crate::jose::b64::encode(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while out.len() % 4 != 0 {
        out.push('=');
    }
    out
}

/// The client credentials request of `client`, with its id and secret (the Worker secrets'
/// texts).
pub fn token_request(client: &OauthClient, client_id: &str, client_secret: &str) -> TokenRequest {
    let basic = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    let mut body = String::from("grant_type=client_credentials");
    for (name, value) in [
        ("scope", &client.scope),
        ("audience", &client.audience),
        ("resource", &client.resource),
    ] {
        if let Some(v) = value {
            body.push('&');
            body.push_str(name);
            body.push('=');
            body.push_str(&form_encode(v));
        }
    }
    TokenRequest {
        url: client.token_url.clone(),
        authorization: format!("Basic {}", base64_std(basic.as_bytes())),
        body,
    }
}

/// RFC 8693 §2.1: the token exchange request of `client` for `subject_token` (the verified
/// inbound token) with `actor_token` (the gateway's signed assertion), `client_secret_basic`.
pub fn exchange_request(
    client: &OauthClient,
    client_id: &str,
    client_secret: &str,
    subject_token: &str,
    actor_token: &str,
) -> TokenRequest {
    let mut r = token_request(client, client_id, client_secret);
    let mut body =
        String::from("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange");
    for (name, value) in [
        ("subject_token", subject_token),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("actor_token", actor_token),
        ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
    ] {
        body.push('&');
        body.push_str(name);
        body.push('=');
        body.push_str(&form_encode(value));
    }
    // scope, audience and resource as in the client credentials request
    if let Some((_, rest)) = r.body.split_once('&') {
        body.push('&');
        body.push_str(rest);
    }
    r.body = body;
    r
}

/// A token as issued: its value and until when (unix seconds) it may be used from the cache
/// (`None`: not cached, used for this request only). Printed redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub cache_until: Option<i64>,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("token", &"<redacted>")
            .field("cache_until", &self.cache_until)
            .finish()
    }
}

/// Why a token endpoint answer is not a usable token (logged by name; the body never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFault {
    /// Not reached, or no answer within the timeout.
    Unreachable,
    Timeout,
    /// A status other than 200 (an OAuth error, a 5xx).
    Status(u16),
    /// Larger than [`MAX_RESPONSE_BYTES`].
    TooLarge,
    /// Not a JSON object, or a duplicate member.
    NotJson,
    /// No usable `access_token`.
    AccessToken,
    /// `token_type` missing or not `Bearer`.
    TokenType,
    /// `expires_in` not a non-negative integer.
    ExpiresIn,
}

impl TokenFault {
    /// For the log line.
    pub fn reason(self) -> String {
        match self {
            TokenFault::Unreachable => "unreachable".into(),
            TokenFault::Timeout => "timeout".into(),
            TokenFault::Status(s) => format!("status_{s}"),
            TokenFault::TooLarge => "too_large".into(),
            TokenFault::NotJson => "not_json".into(),
            TokenFault::AccessToken => "access_token".into(),
            TokenFault::TokenType => "token_type".into(),
            TokenFault::ExpiresIn => "expires_in".into(),
        }
    }
}

/// Whether `v` can be sent in a header as it is: visible ASCII (no space, no control).
fn is_visible_ascii(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Read a token endpoint answer received at `now` (unix seconds); `margin` is the upstream's
/// `refresh_margin_secs`. A token is cached until `now + expires_in - margin` (`expires_in`
/// capped at [`MAX_EXPIRES_IN`]); without `expires_in`, or when that is not in the future, it
/// is used for this request only.
pub fn token_response(
    status: u16,
    body: &[u8],
    now: i64,
    margin: u64,
) -> Result<Issued, TokenFault> {
    if status != 200 {
        return Err(TokenFault::Status(status));
    }
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(TokenFault::TooLarge);
    }
    let map = crate::jose::json::parse_object(body).map_err(|_| TokenFault::NotJson)?;
    let token = match map.get("access_token") {
        Some(Value::String(t)) if t.len() <= MAX_TOKEN_BYTES && is_visible_ascii(t) => t.clone(),
        _ => return Err(TokenFault::AccessToken),
    };
    match map.get("token_type") {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        _ => return Err(TokenFault::TokenType),
    }
    let expires_in = match map.get("expires_in") {
        None => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(s) if s >= 0 => Some(s.min(MAX_EXPIRES_IN)),
            _ => return Err(TokenFault::ExpiresIn),
        },
        Some(_) => return Err(TokenFault::ExpiresIn),
    };
    let margin = i64::try_from(margin).unwrap_or(i64::MAX);
    let cache_until = expires_in
        .map(|s| now.saturating_add(s).saturating_sub(margin))
        .filter(|&until| until > now);
    Ok(Issued { token, cache_until })
}

/// The header value of a credential: `scheme value`, or the value alone. `None` when the value
/// cannot be sent as it is (not visible ASCII, or longer than [`MAX_TOKEN_BYTES`]): a secret
/// with a stray newline or space is a configuration error, never trimmed into something else
/// than what was set (surrounding whitespace aside, which `wrangler secret put` can add).
pub fn header_value(at: &InjectHeader, value: &str) -> Option<String> {
    let value = value.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n');
    if value.len() > MAX_TOKEN_BYTES || !is_visible_ascii(value) {
        return None;
    }
    Some(match &at.scheme {
        Some(scheme) => format!("{scheme} {value}"),
        None => value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64, Encoding};

    fn client() -> OauthClient {
        OauthClient {
            token_url: "https://as.example.com/token".into(),
            client_id_secret: "ID".into(),
            client_secret_secret: "SECRET".into(),
            scope: Some("read write".into()),
            audience: None,
            resource: Some("https://api.example.com/".into()),
            refresh_margin_secs: 30,
            timeout_secs: 5,
        }
    }

    #[test]
    fn basic_is_standard_base64_with_padding() {
        for input in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0xfb, 0xff, 0xfe],
        ] {
            assert_eq!(
                base64_std(input),
                base64ct::Base64::encode_string(input),
                "{input:?}"
            );
        }
    }

    #[test]
    fn the_request_is_client_secret_basic_with_form_encoded_parts() {
        let r = token_request(&client(), "gw client", "s3:cr+t/é");
        assert_eq!(r.url, "https://as.example.com/token");
        assert_eq!(
            r.body,
            "grant_type=client_credentials&scope=read+write&resource=https%3A%2F%2Fapi.example.com%2F"
        );
        // RFC 6749 §2.3.1: id and secret form-encoded, then base64 of "id:secret".
        let basic = r.authorization.strip_prefix("Basic ").expect("basic");
        let decoded = Base64::decode_vec(basic).expect("base64");
        assert_eq!(decoded, b"gw+client:s3%3Acr%2Bt%2F%C3%A9");
        // Never printed.
        let shown = format!("{r:?}");
        assert!(
            !shown.contains(basic) && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn the_exchange_request_carries_subject_actor_and_the_upstreams_parameters() {
        let mut c = client();
        c.audience = Some("https://ledger".into());
        let r = exchange_request(&c, "id", "secret", "sub.tok.en", "act.tok.en");
        assert_eq!(
            r.body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
             &subject_token=sub.tok.en\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &actor_token=act.tok.en\
             &actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
             &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &scope=read+write&audience=https%3A%2F%2Fledger&resource=https%3A%2F%2Fapi.example.com%2F"
        );
        assert!(r.authorization.starts_with("Basic "));
    }

    #[test]
    fn a_good_answer_is_cached_until_expiry_minus_the_margin() {
        let body =
            br#"{"access_token":"tok-1","token_type":"Bearer","expires_in":300,"scope":"read"}"#;
        let t = token_response(200, body, 1000, 30).expect("token");
        assert_eq!(t.token, "tok-1");
        assert_eq!(t.cache_until, Some(1270));
        assert!(!format!("{t:?}").contains("tok-1"));
        // Case-insensitive bearer; no expires_in or a short one: this request only.
        let t = token_response(
            200,
            br#"{"access_token":"a","token_type":"bearer"}"#,
            1000,
            30,
        )
        .expect("token");
        assert_eq!(t.cache_until, None);
        let t = token_response(
            200,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":20}"#,
            1000,
            30,
        )
        .expect("token");
        assert_eq!(t.cache_until, None);
        // A huge expires_in is capped at a day.
        let t = token_response(
            200,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":99999999999}"#,
            0,
            0,
        )
        .expect("token");
        assert_eq!(t.cache_until, Some(MAX_EXPIRES_IN));
    }

    #[test]
    fn garbage_errors_and_odd_tokens_are_faults() {
        let bad: &[(u16, &[u8], TokenFault)] = &[
            (
                400,
                br#"{"error":"invalid_client"}"#,
                TokenFault::Status(400),
            ),
            (503, b"", TokenFault::Status(503)),
            (200, b"<html>hello</html>", TokenFault::NotJson),
            (200, b"", TokenFault::NotJson),
            (200, b"[\"access_token\"]", TokenFault::NotJson),
            (
                200,
                br#"{"access_token":"a","access_token":"b","token_type":"Bearer"}"#,
                TokenFault::NotJson,
            ),
            (200, br#"{"token_type":"Bearer"}"#, TokenFault::AccessToken),
            (
                200,
                br#"{"access_token":"","token_type":"Bearer"}"#,
                TokenFault::AccessToken,
            ),
            (
                200,
                br#"{"access_token":"a\r\nx-evil: 1","token_type":"Bearer"}"#,
                TokenFault::AccessToken,
            ),
            (
                200,
                br#"{"access_token":"a b","token_type":"Bearer"}"#,
                TokenFault::AccessToken,
            ),
            (
                200,
                br#"{"access_token":7,"token_type":"Bearer"}"#,
                TokenFault::AccessToken,
            ),
            (200, br#"{"access_token":"a"}"#, TokenFault::TokenType),
            (
                200,
                br#"{"access_token":"a","token_type":"DPoP"}"#,
                TokenFault::TokenType,
            ),
            (
                200,
                br#"{"access_token":"a","token_type":"Bearer","expires_in":"300"}"#,
                TokenFault::ExpiresIn,
            ),
            (
                200,
                br#"{"access_token":"a","token_type":"Bearer","expires_in":-1}"#,
                TokenFault::ExpiresIn,
            ),
            (
                200,
                br#"{"access_token":"a","token_type":"Bearer","expires_in":1.5}"#,
                TokenFault::ExpiresIn,
            ),
        ];
        for (status, body, fault) in bad {
            assert_eq!(
                token_response(*status, body, 0, 30),
                Err(*fault),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let huge = format!(
            r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
            "a".repeat(MAX_TOKEN_BYTES + 1)
        );
        assert_eq!(
            token_response(200, huge.as_bytes(), 0, 0),
            Err(TokenFault::AccessToken)
        );
        let big = vec![b' '; MAX_RESPONSE_BYTES + 1];
        assert_eq!(token_response(200, &big, 0, 0), Err(TokenFault::TooLarge));
    }

    #[test]
    fn header_values_are_visible_ascii_with_the_scheme() {
        let bearer = InjectHeader {
            header: "authorization".into(),
            scheme: Some("Bearer".into()),
        };
        let raw = InjectHeader {
            header: "x-api-key".into(),
            scheme: None,
        };
        assert_eq!(header_value(&bearer, "k1").as_deref(), Some("Bearer k1"));
        assert_eq!(header_value(&raw, "k1\n").as_deref(), Some("k1"));
        for bad in ["", " ", "a b", "a\r\nx: y", "é", "a\u{0}"] {
            assert_eq!(header_value(&raw, bad), None, "{bad:?}");
        }
    }
}
