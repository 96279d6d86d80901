//! Issue 13 item 6: one `typ` comparison. The JOSE parser (`jws::parse` for access tokens,
//! `jws::parse_dpop` for proofs) and the policy (`Provider::accepts_typ`, and through it the
//! provider-conflict check of issue 12 item 6) all answer with `attestgate_policy::typ::matches`;
//! one table goes through every caller. Before, the policy had its own copy that dropped an
//! `application/` prefix even when another `/` followed, so `application/a/b` and `a/b` were
//! "the same type" for the compiler but not for the parser.

use attestgate::jose::Error;
use attestgate::jose::{b64, jws, Alg, Limits};
use attestgate::policy::{compile, parse_toml, typ, Policy, PolicyError};

/// `(accepted, typ, matches)`: case-insensitive, `application/` optional on either side when no
/// other `/` follows (docs/verification.md).
const TABLE: &[(&str, &str, bool)] = &[
    ("at+jwt", "at+jwt", true),
    ("at+jwt", "AT+JWT", true),
    ("at+jwt", "application/at+jwt", true),
    ("at+jwt", "Application/AT+jwt", true),
    ("application/at+jwt", "at+jwt", true),
    ("application/at+jwt", "APPLICATION/AT+JWT", true),
    ("JWT", "jwt", true),
    ("JWT", "at+jwt", false),
    ("at+jwt", "application/application/at+jwt", false),
    ("a/b", "application/a/b", false),
    ("application/a/b", "a/b", false),
    ("application/a/b", "Application/A/B", true),
    ("at+jwt", "at+jwt ", false),
    ("at+jwt", "", false),
    ("at+jwt", "application/", false),
    ("dpop+jwt", "application/dpop+jwt", true),
    ("dpop+jwt", "DPoP+JWT", true),
];

/// A header-only compact JWS: `jws::parse` checks the header before any key or signature.
fn token(typ: &str) -> String {
    let header = serde_json::json!({ "alg": "ES256", "typ": typ }).to_string();
    format!("{}.e30.AAAA", b64::encode(header.as_bytes()))
}

fn provider(name: &str, types: &[&str], extra: &str) -> String {
    let list: Vec<String> = types.iter().map(|t| format!("{t:?}")).collect();
    format!(
        r#"
[provider.{name}]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"
token_types = [{}]
{extra}
"#,
        list.join(", ")
    )
}

fn policy(providers: &str) -> Result<Policy, Vec<PolicyError>> {
    let text = format!(
        r#"
[gateway]
origin = "https://origin.example.com"
{providers}
[[route]]
id = "r"
path = "/r"
require = {{ any = ["a"] }}
"#
    );
    compile(vec![parse_toml("typ.toml", &text).map_err(|e| vec![e])?])
}

/// A `token_types` entry the compiler takes (non-empty, visible ASCII).
fn valid_type(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())
}

#[test]
fn the_table_itself() {
    for &(accepted, typ, ok) in TABLE {
        assert_eq!(typ::matches(accepted, typ), ok, "{accepted:?} {typ:?}");
        assert_eq!(typ::matches(typ, accepted), ok, "{typ:?} {accepted:?}");
    }
}

#[test]
fn the_jose_parser_agrees() {
    for &(accepted, typ, ok) in TABLE {
        let t = token(typ);
        let parsed = jws::parse(&t, &[Alg::Es256], &[accepted], &Limits::default());
        match parsed {
            Ok(jws) => {
                assert!(ok, "parse took {typ:?} for {accepted:?}");
                assert_eq!(jws.header.typ, typ);
            }
            Err(e) => {
                assert!(!ok, "parse refused {typ:?} for {accepted:?}: {e:?}");
                assert_eq!(e, Error::TypNotAccepted, "{accepted:?} {typ:?}");
            }
        }
        if accepted == jws::DPOP_TYP {
            // No `jwk`: past the `typ` check a proof fails as invalid, before it as `typ`.
            let e = jws::parse_dpop(&token(typ), &[Alg::Es256], &Limits::default()).unwrap_err();
            let expected = if ok {
                Error::DpopJwkUnusable
            } else {
                Error::TypNotAccepted
            };
            assert_eq!(e, expected, "proof typ {typ:?}");
        }
    }
}

#[test]
fn the_compiled_provider_agrees() {
    for &(accepted, typ, ok) in TABLE {
        let p = policy(&provider("a", &[accepted], "")).expect("compiles");
        let a = p.provider("a").expect("provider a");
        assert_eq!(a.accepts_typ(typ), ok, "{accepted:?} {typ:?}");
    }
}

/// Issue 12 item 6 asks whether two providers can accept the same token; with the same issuer,
/// audiences and algorithms that is whether their token types match.
#[test]
fn the_provider_conflict_check_agrees() {
    for &(accepted, typ, ok) in TABLE {
        if !valid_type(accepted) || !valid_type(typ) {
            continue;
        }
        let text = provider("a", &[accepted], "") + &provider("b", &[typ], "replay = \"jti\"");
        let compiled = policy(&text);
        if ok {
            let errors = compiled.expect_err("a lacks b's replay check");
            assert!(
                errors
                    .iter()
                    .any(|e| e.to_string().contains("can accept the same tokens")),
                "{accepted:?} {typ:?}: {errors:?}"
            );
        } else {
            assert!(
                compiled.is_ok(),
                "{accepted:?} {typ:?}: {:?}",
                compiled.err()
            );
        }
    }
}
