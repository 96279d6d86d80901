//! Credential extraction: where a provider's token is, and refusing anything ambiguous.
//!
//! The Workers runtime joins repeated request headers with `", "` (Fetch `Headers.get`), and no
//! compact JWS contains a comma or a space, so `", "` in a credential header means the
//! credential was sent more than once: `invalid_request`, never "take the first".
//!
//! Extraction only finds the credential; it does not judge the token. Whatever follows the
//! scheme (other characters, whitespace inside, a JSON serialisation) goes to the JWS parser,
//! which refuses it as `invalid_token`.

use crate::{jose, Error};

/// Longest credential header value read at all (the token limit is checked again in the parser).
pub const MAX_CREDENTIAL_HEADER: usize = 16 * 1024;

/// Read access to request headers, as the runtime exposes them (repeats joined by `", "`).
pub trait HeaderSource {
    /// The value of `name` (lowercase), or `None` when absent.
    fn header(&self, name: &str) -> Option<String>;
}

/// Plain header pairs, joined as the runtime would join them. For native tests and tools.
impl HeaderSource for [(String, String)] {
    fn header(&self, name: &str) -> Option<String> {
        let mut values = self
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        Some(values.fold(first.to_owned(), |mut acc, v| {
            acc.push_str(", ");
            acc.push_str(v);
            acc
        }))
    }
}

impl HeaderSource for Vec<(String, String)> {
    fn header(&self, name: &str) -> Option<String> {
        self.as_slice().header(name)
    }
}

/// Take the token from `header`, after `scheme` when one is configured.
///
/// - absent header -> `Ok(None)`;
/// - a repeated credential (`", "`, how the runtime joins repeated headers) ->
///   [`Error::DuplicateCredential`];
/// - wrong scheme, or no token after it -> [`Error::MalformedCredential`].
///
/// The scheme is compared case-insensitively (RFC 9110 §11.1) and may be followed by one or more
/// spaces (RFC 6750 §2.1 `1*SP`). Leading and trailing SP and HTAB around the whole field value
/// are trimmed: RFC 9110 §5.5 excludes that optional whitespace (OWS) from the field value (the
/// runtime's `Headers` has already removed it). Nothing else is trimmed, and nothing inside the
/// token: other whitespace stays and the JWS parser refuses it.
pub fn credential(
    headers: &(impl HeaderSource + ?Sized),
    header: &str,
    scheme: Option<&str>,
) -> Result<Option<String>, Error> {
    let Some(raw) = headers.header(header) else {
        return Ok(None);
    };
    if raw.len() > MAX_CREDENTIAL_HEADER {
        return Err(Error::Token(jose::Error::TokenTooLarge));
    }
    if raw.contains(", ") {
        return Err(Error::DuplicateCredential);
    }
    let value = raw.trim_matches(|c| c == ' ' || c == '\t');
    let token = match scheme {
        Some(scheme) => {
            let (name, rest) = value.split_once(' ').ok_or(Error::MalformedCredential)?;
            if !name.eq_ignore_ascii_case(scheme) {
                return Err(Error::MalformedCredential);
            }
            rest.trim_start_matches(' ')
        }
        None => value,
    };
    if token.is_empty() {
        return Err(Error::MalformedCredential);
    }
    Ok(Some(token.to_owned()))
}

/// Whether `header` is present and uses authentication scheme `scheme` (case-insensitive).
pub fn has_scheme(headers: &(impl HeaderSource + ?Sized), header: &str, scheme: &str) -> bool {
    headers.header(header).is_some_and(|raw| {
        raw.trim_matches(|c| c == ' ' || c == '\t')
            .split_once(' ')
            .is_some_and(|(name, _)| name.eq_ignore_ascii_case(scheme))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_allows_1_sp() {
        for v in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            let got = credential(&h(&[("Authorization", v)]), "authorization", Some("Bearer"));
            assert_eq!(got, Ok(Some("abc.def.ghi".into())), "{v}");
        }
    }

    #[test]
    fn absent_is_none() {
        assert_eq!(
            credential(&h(&[]), "authorization", Some("Bearer")),
            Ok(None)
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let two = h(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ]);
        assert_eq!(
            credential(&two, "authorization", Some("Bearer")),
            Err(Error::DuplicateCredential)
        );
        let joined = h(&[("approov-token", "a.b.c, d.e.f")]);
        assert_eq!(
            credential(&joined, "approov-token", None),
            Err(Error::DuplicateCredential)
        );
    }

    #[test]
    fn wrong_scheme_or_no_token_is_malformed() {
        for v in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearerabc.def.ghi",
            "DPoP a.b.c",
        ] {
            assert_eq!(
                credential(&h(&[("authorization", v)]), "authorization", Some("Bearer")),
                Err(Error::MalformedCredential),
                "{v}"
            );
        }
    }

    #[test]
    fn the_token_itself_is_left_to_the_parser() {
        // Whitespace or other characters inside the token, a JSON serialisation: the JWS parser
        // refuses them as invalid_token; extraction passes them on unchanged.
        let json = r#"{"protected":"x","payload":"y","signature":"z"}"#;
        for (v, want) in [
            ("Bearer a.b c".to_string(), "a.b c"),
            ("Bearer a.b\tc".to_string(), "a.b\tc"),
            (format!("Bearer {json}"), json),
        ] {
            assert_eq!(
                credential(
                    &h(&[("authorization", &v)]),
                    "authorization",
                    Some("Bearer")
                ),
                Ok(Some(want.into())),
                "{v}"
            );
        }
        assert_eq!(
            credential(&h(&[("x", "a.b\u{200b}.c")]), "x", None),
            Ok(Some("a.b\u{200b}.c".into()))
        );
    }

    /// RFC 9110 §5.5: a field value does not include leading or trailing OWS (SP and HTAB), so
    /// both are trimmed (the runtime's `Headers` already does; other sources may not). Nothing
    /// else is OWS: other whitespace stays with the token and the JWS parser refuses it.
    #[test]
    fn only_ows_around_the_field_value_is_trimmed() {
        let bearer =
            |v: &str| credential(&h(&[("authorization", v)]), "authorization", Some("Bearer"));
        for v in [
            " Bearer a.b.c",
            "Bearer a.b.c ",
            "\tBearer a.b.c\t",
            " \t Bearer  a.b.c \t ",
        ] {
            assert_eq!(bearer(v), Ok(Some("a.b.c".into())), "{v:?}");
        }
        assert_eq!(
            credential(
                &h(&[("approov-token", " \ta.b.c\t ")]),
                "approov-token",
                None
            ),
            Ok(Some("a.b.c".into()))
        );
        // Not OWS: kept, so the token is refused by the parser (never trimmed into a valid one).
        for ws in [
            "\u{b}", "\u{c}", "\r", "\n", "\u{a0}", "\u{3000}", "\u{200b}",
        ] {
            assert_eq!(
                bearer(&format!("Bearer a.b.c{ws}")),
                Ok(Some(format!("a.b.c{ws}"))),
                "{ws:?}"
            );
            assert_eq!(
                credential(&h(&[("x", &format!("{ws}a.b.c"))]), "x", None),
                Ok(Some(format!("{ws}a.b.c"))),
                "{ws:?}"
            );
            // Before the scheme it is part of the scheme name: malformed.
            assert_eq!(
                bearer(&format!("{ws}Bearer a.b.c")),
                Err(Error::MalformedCredential),
                "{ws:?}"
            );
        }
        // Between scheme and token only SP separates (RFC 9110 §11.4 `1*SP`).
        assert_eq!(bearer("Bearer\ta.b.c"), Err(Error::MalformedCredential));
        assert_eq!(bearer("Bearer \ta.b.c"), Ok(Some("\ta.b.c".into())));
    }

    #[test]
    fn oversized_header_is_refused_before_parsing() {
        let big = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_HEADER));
        assert_eq!(
            credential(
                &h(&[("authorization", &big)]),
                "authorization",
                Some("Bearer")
            ),
            Err(Error::Token(jose::Error::TokenTooLarge))
        );
    }

    #[test]
    fn has_scheme_reads_the_scheme_only() {
        let hv = |v: &str| h(&[("Authorization", v)]);
        assert!(has_scheme(&hv("Bearer a.b.c"), "authorization", "bearer"));
        assert!(has_scheme(
            &hv("  bearer   a.b.c"),
            "authorization",
            "Bearer"
        ));
        assert!(!has_scheme(&hv("DPoP a.b.c"), "authorization", "Bearer"));
        assert!(!has_scheme(&hv("Bearer"), "authorization", "Bearer"));
        assert!(!has_scheme(&h(&[]), "authorization", "Bearer"));
    }
}
