//! The one `typ` comparison (RFC 7515 §4.1.9): the JOSE parser checks a token's header `typ`
//! with it (`attestgate::jose::jws`), and the policy compiler asks it whether two providers'
//! `token_types` overlap ([`crate::Provider::accepts_typ`]). Documented in docs/verification.md.

/// Whether a header `typ` value matches an accepted type (a `token_types` entry, or `dpop+jwt`):
/// ASCII-case-insensitive, with the `application/` prefix optional on either side. Accepted
/// `at+jwt` matches `AT+JWT` and `application/at+jwt`, and accepted `application/at+jwt` matches
/// `at+jwt`. The comparison is symmetric: the order of the two arguments does not matter.
pub fn matches(accepted: &str, typ: &str) -> bool {
    strip_application(typ).eq_ignore_ascii_case(strip_application(accepted))
}

/// RFC 7515 §4.1.9: `application/` may be omitted when no other `/` appears.
fn strip_application(media_type: &str) -> &str {
    const PREFIX: &str = "application/";
    match media_type.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => {
            let rest = &media_type[PREFIX.len()..];
            if rest.contains('/') {
                media_type
            } else {
                rest
            }
        }
        _ => media_type,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn case_and_prefix() {
        for (accepted, typ, ok) in [
            ("at+jwt", "at+jwt", true),
            ("at+jwt", "AT+JWT", true),
            ("at+jwt", "application/at+jwt", true),
            ("at+jwt", "Application/AT+jwt", true),
            ("application/at+jwt", "at+jwt", true),
            ("APPLICATION/JWT", "jwt", true),
            ("at+jwt", "application/application/at+jwt", false),
            // a media type with another `/` keeps its prefix
            ("a/b", "application/a/b", false),
            ("application/a/b", "a/b", false),
            ("application/a/b", "APPLICATION/A/B", true),
            ("at+jwt", "JWT", false),
            ("at+jwt", "at+jwt ", false),
            ("at+jwt", "", false),
            ("at+jwt", "application/", false),
            ("dpop+jwt", "application/dpop+jwt", true),
        ] {
            assert_eq!(matches(accepted, typ), ok, "{accepted:?} {typ:?}");
            assert_eq!(
                matches(typ, accepted),
                ok,
                "symmetric: {accepted:?} {typ:?}"
            );
        }
    }
}
