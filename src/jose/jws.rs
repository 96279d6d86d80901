//! Compact JWS parsing (RFC 7515 §7.1) under size limits, and the JOSE header checks.
//!
//! The payload is *not* decoded here: the pipeline is parse header → select key → verify
//! signature → decode and validate claims ([`super::claims::validate`]). Only its alphabet and
//! length are checked.
//!
//! Header rules (ATTACKS #1–#16):
//! * `alg`: required, a string, exactly one of the provider's algorithms ([`Alg::from_header`]).
//! * `typ`: required and one of the accepted types, compared ASCII-case-insensitively, with the
//!   `application/` prefix optional on either side (RFC 7515 §4.1.9): accepted `at+jwt` matches
//!   `AT+JWT` and `application/at+jwt`.
//! * `crit` in any form → [`Error::CritUnsupported`] (no extension is implemented);
//!   `b64` → [`Error::B64Unsupported`]; `enc`, `zip`, `cty` → [`Error::UnsupportedHeader`].
//! * `kid`: optional; a string of at most 256 bytes, else [`Error::HeaderType`].
//! * `jwk`, `jku`, `x5u`, `x5c` are never used to find a key. An access token that carries any of
//!   them is refused with [`Error::UnsupportedHeader`]: legitimate issuers do not send them, and
//!   refusing makes the injection attempts (ATTACKS #5–#7) visible in the logs. DPoP proofs
//!   ([`parse_dpop`]) are the one place a `jwk` is read, and there it only proves possession.

use serde_json::{Map, Value};

use super::alg::Alg;
use super::jwk::{Key, MAX_KID_LEN};
use super::Error;
use super::{b64, json};

/// Size caps, checked before anything is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest token, in bytes (default 8192).
    pub max_token_len: usize,
    /// Longest header segment, in base64url characters (default 2048).
    pub max_header_len: usize,
    /// Longest payload segment, in base64url characters (default 8192).
    pub max_payload_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_token_len: 8192,
            max_header_len: 2048,
            max_payload_len: 8192,
        }
    }
}

/// The checked JOSE header.
#[derive(Debug, Clone)]
pub struct Header {
    pub alg: Alg,
    /// The `typ` value as sent (it matched one of the accepted types).
    pub typ: String,
    pub kid: Option<String>,
    /// The embedded public key: only for DPoP proofs ([`parse_dpop`]), bound to `alg`.
    pub jwk: Option<Key>,
}

/// A parsed compact JWS whose signature is not verified yet.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    pub header: Header,
    /// `header.payload` exactly as received: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The payload segment, still base64url: decode it only after the signature verified.
    pub claims_b64: &'a str,
    /// The decoded signature (never empty).
    pub signature: Vec<u8>,
}

/// The DPoP proof `typ` (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

enum Mode<'t, T> {
    Token(&'t [T]),
    Dpop,
}

/// Parses a compact JWS access token whose `typ` must be one of `token_types` and whose `alg`
/// must be one of `algs`.
pub fn parse<'a, T: AsRef<str>>(
    token: &'a str,
    algs: &[Alg],
    token_types: &[T],
    limits: &Limits,
) -> Result<Jws<'a>, Error> {
    parse_with(token, algs, Mode::Token(token_types), limits)
}

/// Parses an RFC 9449 DPoP proof: `typ` must be `dpop+jwt`, `alg` one of `algs` and asymmetric
/// (ES256 or EdDSA), and the header must carry a public `jwk` (EC P-256 or OKP Ed25519, no
/// private members) that fits `alg`. Problems with the `jwk` are [`Error::DpopJwkUnusable`]; the
/// gateway reports every failure of a proof as `invalid_dpop_proof`.
pub fn parse_dpop<'a>(token: &'a str, algs: &[Alg], limits: &Limits) -> Result<Jws<'a>, Error> {
    parse_with::<&str>(token, algs, Mode::Dpop, limits)
}

/// Does a header `typ` match an accepted type? ASCII-case-insensitive, `application/` optional:
/// the one comparison, shared with the policy compiler (symmetric, so `(typ, accepted)` here).
pub use attestgate_policy::typ::matches as typ_matches;

fn parse_with<'a, T: AsRef<str>>(
    token: &'a str,
    algs: &[Alg],
    mode: Mode<'_, T>,
    limits: &Limits,
) -> Result<Jws<'a>, Error> {
    if token.len() > limits.max_token_len {
        return Err(Error::TokenTooLarge);
    }
    let mut segments = token.split('.');
    let (header_b64, claims_b64, signature_b64) = match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => return Err(Error::SegmentCount),
    };
    for segment in [header_b64, claims_b64, signature_b64] {
        if segment.is_empty() || !segment.bytes().all(b64::is_alphabet) {
            return Err(Error::MalformedSegment);
        }
    }
    if header_b64.len() > limits.max_header_len || claims_b64.len() > limits.max_payload_len {
        return Err(Error::TokenTooLarge);
    }
    let members = json::parse_object(&b64::decode_public(header_b64)?)?;
    let header = check_header(&members, algs, mode)?;
    let signature = b64::decode_public(signature_b64)?;
    let signing_input = token
        .get(..header_b64.len() + 1 + claims_b64.len())
        .ok_or(Error::MalformedSegment)?;
    Ok(Jws {
        header,
        signing_input,
        claims_b64,
        signature,
    })
}

fn check_header<T: AsRef<str>>(
    members: &Map<String, Value>,
    algs: &[Alg],
    mode: Mode<'_, T>,
) -> Result<Header, Error> {
    if members.contains_key("crit") {
        return Err(Error::CritUnsupported);
    }
    if members.contains_key("b64") {
        return Err(Error::B64Unsupported);
    }
    if ["enc", "zip", "cty", "jku", "x5u", "x5c"]
        .iter()
        .any(|m| members.contains_key(*m))
    {
        return Err(Error::UnsupportedHeader);
    }
    let alg = match members.get("alg") {
        None => return Err(Error::AlgMissing),
        Some(Value::String(name)) => Alg::from_header(name)
            .filter(|alg| algs.contains(alg))
            .ok_or(Error::AlgNotAllowed)?,
        Some(_) => return Err(Error::HeaderType),
    };
    let typ = match members.get("typ") {
        None => return Err(Error::TypNotAccepted),
        Some(Value::String(typ)) => typ,
        Some(_) => return Err(Error::HeaderType),
    };
    let kid = match members.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= MAX_KID_LEN => Some(kid.clone()),
        Some(_) => return Err(Error::HeaderType),
    };
    let jwk = match mode {
        Mode::Token(accepted) => {
            if members.contains_key("jwk") {
                return Err(Error::UnsupportedHeader);
            }
            if !accepted.iter().any(|a| typ_matches(typ, a.as_ref())) {
                return Err(Error::TypNotAccepted);
            }
            None
        }
        Mode::Dpop => {
            if !typ_matches(typ, DPOP_TYP) {
                return Err(Error::TypNotAccepted);
            }
            if !matches!(alg, Alg::Es256 | Alg::EdDsa) {
                return Err(Error::AlgNotAllowed);
            }
            let jwk = members.get("jwk").ok_or(Error::DpopJwkUnusable)?;
            let key = Key::from_jwk(jwk).map_err(|_| Error::DpopJwkUnusable)?;
            if key.alg() != alg {
                return Err(Error::DpopJwkUnusable);
            }
            Some(key)
        }
    };
    Ok(Header {
        alg,
        typ: typ.clone(),
        kid,
        jwk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(header: &str) -> String {
        format!("{}.e30.AAAA", b64::encode(header.as_bytes()))
    }

    const ALGS: &[Alg] = &[Alg::Es256, Alg::EdDsa];
    const TYPS: &[&str] = &["at+jwt"];

    fn p(token: &str) -> Result<Jws<'_>, Error> {
        parse(token, ALGS, TYPS, &Limits::default())
    }

    #[test]
    fn typ_comparison() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("AT+JWT", "at+jwt"));
        assert!(typ_matches("application/at+jwt", "at+jwt"));
        assert!(typ_matches("Application/AT+jwt", "at+jwt"));
        assert!(typ_matches("at+jwt", "application/at+jwt"));
        assert!(!typ_matches("application/application/at+jwt", "at+jwt"));
        assert!(!typ_matches("JWT", "at+jwt"));
        assert!(!typ_matches("at+jwt ", "at+jwt"));
        assert!(!typ_matches("", "at+jwt"));
        assert!(!typ_matches("application/", "at+jwt"));
    }

    #[test]
    fn good_header_parses() {
        let t = tok(r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#);
        let jws = p(&t).unwrap();
        assert_eq!(jws.header.alg, Alg::Es256);
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims_b64, "e30");
        assert_eq!(jws.signature, [0, 0, 0]);
        assert!(t.starts_with(jws.signing_input));
        assert!(jws.signing_input.ends_with(".e30"));
    }

    #[test]
    fn header_refusals() {
        let cases = [
            (r#"{"typ":"at+jwt"}"#, Error::AlgMissing),
            (r#"{"alg":null,"typ":"at+jwt"}"#, Error::HeaderType),
            (r#"{"alg":["ES256"],"typ":"at+jwt"}"#, Error::HeaderType),
            (r#"{"alg":"none","typ":"at+jwt"}"#, Error::AlgNotAllowed),
            (r#"{"alg":"HS256","typ":"at+jwt"}"#, Error::AlgNotAllowed),
            (r#"{"alg":"ES256"}"#, Error::TypNotAccepted),
            (r#"{"alg":"ES256","typ":1}"#, Error::HeaderType),
            (r#"{"alg":"ES256","typ":"JWT"}"#, Error::TypNotAccepted),
            (
                r#"{"alg":"ES256","typ":"at+jwt","crit":[]}"#,
                Error::CritUnsupported,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","b64":true}"#,
                Error::B64Unsupported,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","cty":"JWT"}"#,
                Error::UnsupportedHeader,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","enc":"A256GCM"}"#,
                Error::UnsupportedHeader,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","zip":"DEF"}"#,
                Error::UnsupportedHeader,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","jku":"https://a"}"#,
                Error::UnsupportedHeader,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","jwk":{}}"#,
                Error::UnsupportedHeader,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","kid":7}"#,
                Error::HeaderType,
            ),
            (
                r#"{"alg":"ES256","alg":"ES256","typ":"at+jwt"}"#,
                Error::DuplicateMember,
            ),
            (r#"["ES256"]"#, Error::Json),
        ];
        for (header, want) in cases {
            assert_eq!(p(&tok(header)).map(|_| ()), Err(want), "{header}");
        }
        let long_kid = format!(
            r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}"}}"#,
            "k".repeat(257)
        );
        assert_eq!(p(&tok(&long_kid)).map(|_| ()), Err(Error::HeaderType));
    }

    #[test]
    fn segment_and_size_refusals() {
        let good = tok(r#"{"alg":"ES256","typ":"at+jwt"}"#);
        assert!(p(&good).is_ok());
        assert_eq!(p("").map(|_| ()), Err(Error::SegmentCount));
        assert_eq!(p("..").map(|_| ()), Err(Error::MalformedSegment));
        assert_eq!(p("a.b").map(|_| ()), Err(Error::SegmentCount));
        assert_eq!(p(&format!("{good}.")).map(|_| ()), Err(Error::SegmentCount));
        assert_eq!(
            p(&format!("{good}.x.y")).map(|_| ()),
            Err(Error::SegmentCount)
        );
        assert_eq!(
            p(&format!("{good} ")).map(|_| ()),
            Err(Error::MalformedSegment)
        );
        assert_eq!(
            p(&format!("{good}=")).map(|_| ()),
            Err(Error::MalformedSegment)
        );
        assert_eq!(p(&"a".repeat(9000)).map(|_| ()), Err(Error::TokenTooLarge));
        let strict = Limits {
            max_header_len: 10,
            ..Limits::default()
        };
        assert_eq!(
            parse(&good, ALGS, TYPS, &strict).map(|_| ()),
            Err(Error::TokenTooLarge)
        );
    }
}
