//! JWT claims: decoding (after the signature verified) and validation against a provider's rules.
//!
//! Decisions (ATTACKS #31–#38):
//! * `exp` is required. NumericDates must be JSON integers within i64: floats (`1.5`,
//!   `1.7e9`), strings, booleans, `null`, values above i64::MAX and `1e400` are
//!   [`Error::ClaimType`]. (RFC 7519 allows fractional dates; refusing them is this gateway's
//!   policy, so no rounding can favour the token.)
//! * Expiry: the token is expired when `exp <= now - skew`. RFC 7519 §4.1.4 says "now must be
//!   *before* exp", so without skew `exp == now` is expired; with the default 60 s skew,
//!   `exp == now` and `exp == now - 30` are accepted, `exp == now - 60` and older are refused.
//! * `nbf > now + skew` → [`Error::NotYetValid`]; `iat > now + skew` → [`Error::IssuedInFuture`]
//!   (the same skew, symmetric).
//! * Lifetime: `exp - iat` (or `exp - now` without `iat`) above `max_lifetime_secs` →
//!   [`Error::LifetimeTooLong`]; an overflowing difference counts as too long. With a maximum
//!   lifetime configured, `exp = i64::MAX` is therefore refused.
//! * All arithmetic saturates or is checked: no overflow panic, no wrap-around.
//! * `iss` must equal the configured issuer exactly ([`Error::IssuerMismatch`], also when absent
//!   or not a string). Without a configured issuer it is not compared, but must be a string.
//! * `aud` is a string or an array of strings; any other shape, or a non-string element, is
//!   [`Error::ClaimType`]. One of its values must equal one of the configured audiences exactly
//!   ([`Error::AudienceMismatch`], also when absent or `[]`). A provider without configured
//!   audiences refuses tokens that carry `aud` (RFC 7519 §4.1.3: a recipient that does not find
//!   itself in `aud` must reject).
//! * `sub` and `jti`, when present, must be strings. `act` (RFC 8693), when present, must be
//!   an object with a string `sub` at every level, nested at most [`MAX_ACT_DEPTH`] deep.
//! * `required` claims must be present and not `null`. Each is a path of object members given as
//!   segments (`["cnf", "jkt"]`, `["https://example.com/roles"]`): the policy compiler parses the
//!   quoted claim-path syntax once (`policy::MemberPath`); nothing here splits text on dots, so a
//!   claim whose name has dots is found only as itself, never as a nested object.

use serde_json::{Map, Value};

use super::Error;
use super::{b64, json};

/// Deepest `act` chain accepted (RFC 8693 delegation): the one limit, `attestgate_policy::act`.
pub const MAX_ACT_DEPTH: usize = attestgate_policy::act::MAX_DEPTH;

/// What a provider requires of a token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// Exact `iss`; `None`: not compared.
    pub issuer: Option<String>,
    /// `aud` must contain one of these; empty: the token must not carry `aud`.
    pub audiences: Vec<String>,
    /// Clock skew tolerated for `exp`, `nbf` and `iat` (negative values count as 0).
    pub skew_secs: i64,
    /// Longest allowed `exp - iat` (or `exp - now`).
    pub max_lifetime_secs: Option<i64>,
    /// Claims that must be present, each a path of member names (`["cnf", "jkt"]`).
    pub required: Vec<Vec<String>>,
}

impl Default for ClaimRules {
    /// No issuer or audience, 60 s skew (SPEC default), no lifetime cap, nothing else required.
    fn default() -> Self {
        ClaimRules {
            issuer: None,
            audiences: Vec::new(),
            skew_secs: 60,
            max_lifetime_secs: None,
            required: Vec::new(),
        }
    }
}

/// Validated claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    map: Map<String, Value>,
    exp: i64,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
    sub: Option<String>,
    iss: Option<String>,
}

/// Decodes a payload segment into a strict JSON object (no duplicate members at any depth).
/// Call it only after the signature verified.
pub fn decode(claims_b64: &str) -> Result<Map<String, Value>, Error> {
    json::parse_object(&b64::decode_public(claims_b64)?)
}

/// A NumericDate: a JSON integer within i64. Anything else is [`Error::ClaimType`].
pub fn numeric_date(value: &Value) -> Result<i64, Error> {
    value.as_i64().ok_or(Error::ClaimType)
}

/// Decodes and validates a payload segment at time `now` (unix seconds).
pub fn validate(claims_b64: &str, rules: &ClaimRules, now: i64) -> Result<Claims, Error> {
    let map = decode(claims_b64)?;
    let exp = numeric_date(map.get("exp").ok_or(Error::ExpMissing)?)?;
    let nbf = map.get("nbf").map(numeric_date).transpose()?;
    let iat = map.get("iat").map(numeric_date).transpose()?;
    let sub = optional_string(&map, "sub")?;
    let jti = optional_string(&map, "jti")?;

    let iss = match (&rules.issuer, map.get("iss")) {
        (Some(want), Some(Value::String(got))) if got == want => Some(got.clone()),
        (Some(_), _) => return Err(Error::IssuerMismatch),
        (None, _) => optional_string(&map, "iss")?,
    };
    check_audience(map.get("aud"), &rules.audiences)?;
    check_act(&map)?;

    let skew = rules.skew_secs.max(0);
    if exp <= now.saturating_sub(skew) {
        return Err(Error::Expired);
    }
    let latest = now.saturating_add(skew);
    if nbf.is_some_and(|nbf| nbf > latest) {
        return Err(Error::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > latest) {
        return Err(Error::IssuedInFuture);
    }
    if let Some(max) = rules.max_lifetime_secs {
        let lifetime = exp.checked_sub(iat.unwrap_or(now));
        if lifetime.is_none_or(|lifetime| lifetime > max) {
            return Err(Error::LifetimeTooLong);
        }
    }
    let claims = Claims {
        map,
        exp,
        iat,
        nbf,
        jti,
        sub,
        iss,
    };
    for name in &rules.required {
        if claims.get_path(name).is_none_or(Value::is_null) {
            return Err(Error::RequiredClaimMissing);
        }
    }
    Ok(claims)
}

fn optional_string(map: &Map<String, Value>, name: &str) -> Result<Option<String>, Error> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::ClaimType),
    }
}

fn check_audience(aud: Option<&Value>, accepted: &[String]) -> Result<(), Error> {
    let values: Vec<&str> = match aud {
        None => Vec::new(),
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(Error::ClaimType))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Error::ClaimType),
    };
    if accepted.is_empty() {
        return match aud {
            None => Ok(()),
            Some(_) => Err(Error::AudienceMismatch),
        };
    }
    if values.iter().any(|v| accepted.iter().any(|a| a == v)) {
        Ok(())
    } else {
        Err(Error::AudienceMismatch)
    }
}

fn check_act(claims: &Map<String, Value>) -> Result<(), Error> {
    for level in attestgate_policy::act::chain(claims) {
        if level.depth > MAX_ACT_DEPTH || level.sub().is_none() {
            return Err(Error::ClaimType);
        }
    }
    Ok(())
}

impl Claims {
    /// All claims.
    pub fn map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// A top-level claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// A claim by its path of member names into nested objects: `&["act", "sub"]`,
    /// `&["cnf", "jkt"]`, `&["https://example.com/roles"]` (one top-level claim whose name has
    /// dots). Each segment is exactly one member name; an empty path is `None`.
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.map.get(first.as_ref())?;
        for segment in rest {
            value = value.as_object()?.get(segment.as_ref())?;
        }
        Some(value)
    }

    pub fn exp(&self) -> i64 {
        self.exp
    }

    pub fn iat(&self) -> Option<i64> {
        self.iat
    }

    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }

    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    pub fn sub(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    pub fn iss(&self) -> Option<&str> {
        self.iss.as_deref()
    }

    /// The granted scopes: the space-separated `scope` string (RFC 8693 §4.2) and `scp` (a
    /// string of space-separated scopes, or an array of strings), without repeats, in order.
    /// Values of another shape grant nothing.
    pub fn scopes(&self) -> Vec<&str> {
        let scp: &[Value] = match self.map.get("scp") {
            Some(Value::Array(items)) => items,
            Some(one) => core::slice::from_ref(one),
            None => &[],
        };
        let texts = self
            .map
            .get("scope")
            .into_iter()
            .chain(scp)
            .filter_map(Value::as_str);
        let mut out: Vec<&str> = Vec::new();
        for text in texts {
            for word in text.split(' ').filter(|w| !w.is_empty()) {
                if !out.contains(&word) {
                    out.push(word);
                }
            }
        }
        out
    }

    /// The delegation chain, outermost actor first: `act.sub`, `act.act.sub`, ...
    pub fn act_chain(&self) -> Vec<String> {
        attestgate_policy::act::chain(&self.map)
            .take(MAX_ACT_DEPTH)
            .map_while(|level| level.sub())
            .map(str::to_owned)
            .collect()
    }

    /// How many actors the token was delegated through (0: no `act`).
    pub fn delegation_depth(&self) -> usize {
        self.act_chain().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn enc(v: &Value) -> String {
        b64::encode(v.to_string().as_bytes())
    }

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://issuer.example".into()),
            audiences: vec!["https://api.example".into()],
            skew_secs: 60,
            max_lifetime_secs: Some(3600),
            required: vec![],
        }
    }

    fn base() -> Value {
        json!({"iss":"https://issuer.example","aud":"https://api.example","exp":NOW+600,"iat":NOW-10})
    }

    fn with(k: &str, v: Value) -> String {
        let mut b = base();
        b[k] = v;
        enc(&b)
    }

    fn check(claims: &str) -> Result<Claims, Error> {
        validate(claims, &rules(), NOW)
    }

    #[test]
    fn accepts_base() {
        let c = check(&enc(&base())).unwrap();
        assert_eq!(c.exp(), NOW + 600);
        assert_eq!(c.iss(), Some("https://issuer.example"));
    }

    #[test]
    fn exp_boundaries() {
        let no_iat = |exp: i64| {
            let mut b = base();
            b["exp"] = json!(exp);
            b.as_object_mut().unwrap().remove("iat");
            check(&enc(&b)).map(|_| ())
        };
        assert_eq!(no_iat(NOW - 30), Ok(()));
        assert_eq!(no_iat(NOW), Ok(()));
        assert_eq!(no_iat(NOW - 59), Ok(()));
        assert_eq!(no_iat(NOW - 60), Err(Error::Expired));
        assert_eq!(no_iat(NOW - 61), Err(Error::Expired));
        let strict = ClaimRules {
            skew_secs: 0,
            ..rules()
        };
        let b = with("exp", json!(NOW));
        assert_eq!(validate(&b, &strict, NOW).map(|_| ()), Err(Error::Expired));
        let b = with("exp", json!(NOW + 1));
        assert!(validate(&b, &strict, NOW).is_ok());
    }

    #[test]
    fn exp_types() {
        let mut b = base();
        b.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&enc(&b)).map(|_| ()), Err(Error::ExpMissing));
        for bad in [
            json!("1700003600"),
            json!(true),
            json!(null),
            json!([NOW]),
            json!(1.5e9),
        ] {
            assert_eq!(
                check(&with("exp", bad.clone())).map(|_| ()),
                Err(Error::ClaimType),
                "{bad}"
            );
        }
        for raw in [
            "1700003600.5",
            "1.7000036e9",
            "9223372036854775808",
            "18446744073709551616",
            "1e30",
            "1700003600.0",
        ] {
            let t = format!(
                r#"{{"iss":"https://issuer.example","aud":"https://api.example","exp":{raw}}}"#
            );
            assert_eq!(
                check(&b64::encode(t.as_bytes())).map(|_| ()),
                Err(Error::ClaimType),
                "{raw}"
            );
        }
        let t = r#"{"iss":"https://issuer.example","aud":"https://api.example","exp":1e400}"#;
        assert_eq!(
            check(&b64::encode(t.as_bytes())).map(|_| ()),
            Err(Error::Json)
        );
        for v in [json!(-1), json!(0)] {
            assert_eq!(check(&with("exp", v)).map(|_| ()), Err(Error::Expired));
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let b = with("exp", json!(i64::MAX));
        assert_eq!(check(&b).map(|_| ()), Err(Error::LifetimeTooLong));
        let mut b = base();
        b["exp"] = json!(i64::MAX);
        b["iat"] = json!(i64::MIN);
        assert_eq!(check(&enc(&b)).map(|_| ()), Err(Error::LifetimeTooLong));
        let no_cap = ClaimRules {
            max_lifetime_secs: None,
            skew_secs: i64::MAX,
            ..rules()
        };
        assert!(validate(&with("exp", json!(i64::MAX)), &no_cap, i64::MIN).is_err());
        assert!(validate(&with("exp", json!(i64::MIN)), &no_cap, i64::MAX).is_err());
        assert!(validate(&with("exp", json!(i64::MAX)), &rules(), i64::MAX).is_err());
    }

    #[test]
    fn nbf_iat_lifetime() {
        assert!(check(&with("nbf", json!(NOW + 30))).is_ok());
        assert_eq!(
            check(&with("nbf", json!(NOW + 120))).map(|_| ()),
            Err(Error::NotYetValid)
        );
        assert_eq!(
            check(&with("nbf", json!("x"))).map(|_| ()),
            Err(Error::ClaimType)
        );
        assert_eq!(
            check(&with("iat", json!(NOW + 86400))).map(|_| ()),
            Err(Error::IssuedInFuture)
        );
        assert_eq!(
            check(&with("iat", json!("yesterday"))).map(|_| ()),
            Err(Error::ClaimType)
        );
        let mut b = base();
        b["iat"] = json!(NOW);
        b["exp"] = json!(NOW + 3601);
        assert_eq!(check(&enc(&b)).map(|_| ()), Err(Error::LifetimeTooLong));
        b["exp"] = json!(NOW + 3600);
        assert!(check(&enc(&b)).is_ok());
    }

    #[test]
    fn issuer_and_audience() {
        for bad in [
            json!("https://issuer.example/"),
            json!(["https://issuer.example"]),
            json!(null),
        ] {
            assert_eq!(
                check(&with("iss", bad)).map(|_| ()),
                Err(Error::IssuerMismatch)
            );
        }
        let mut b = base();
        b.as_object_mut().unwrap().remove("iss");
        assert_eq!(check(&enc(&b)).map(|_| ()), Err(Error::IssuerMismatch));
        assert!(check(&with("aud", json!(["x", "https://api.example"]))).is_ok());
        for bad in [
            json!([]),
            json!(""),
            json!("https://api.example/"),
            json!(["x"]),
        ] {
            assert_eq!(
                check(&with("aud", bad.clone())).map(|_| ()),
                Err(Error::AudienceMismatch),
                "{bad}"
            );
        }
        for bad in [
            json!([1, "https://api.example"]),
            json!({}),
            json!(null),
            json!(5),
        ] {
            assert_eq!(
                check(&with("aud", bad.clone())).map(|_| ()),
                Err(Error::ClaimType),
                "{bad}"
            );
        }
        let no_aud = ClaimRules {
            audiences: vec![],
            ..rules()
        };
        assert_eq!(
            validate(&enc(&base()), &no_aud, NOW).map(|_| ()),
            Err(Error::AudienceMismatch)
        );
    }

    #[test]
    fn required_and_paths() {
        let r = ClaimRules {
            required: vec![vec!["sub".into()], vec!["cnf".into(), "jkt".into()]],
            ..rules()
        };
        assert_eq!(
            validate(&enc(&base()), &r, NOW).map(|_| ()),
            Err(Error::RequiredClaimMissing)
        );
        let mut b = base();
        b["sub"] = json!("u");
        b["cnf"] = json!({"jkt": "t"});
        let c = validate(&enc(&b), &r, NOW).unwrap();
        assert_eq!(c.get_path(&["cnf", "jkt"]), Some(&json!("t")));
        assert_eq!(c.get_path(&["cnf", "x"]), None);
        assert_eq!(c.get_path(&["sub", "x"]), None);
        assert_eq!(c.get_path::<&str>(&[]), None);
        // a dotted text is one member name, never split
        assert_eq!(c.get_path(&["cnf.jkt"]), None);
        b["sub"] = json!(null);
        assert_eq!(
            validate(&enc(&b), &r, NOW).map(|_| ()),
            Err(Error::ClaimType)
        );
    }

    #[test]
    fn a_required_claim_with_dots_in_its_name_is_one_top_level_claim() {
        let r = ClaimRules {
            required: vec![vec!["https://example.com/roles".into()]],
            ..rules()
        };
        let mut b = base();
        b["https://example.com/roles"] = json!(["admin"]);
        assert!(validate(&enc(&b), &r, NOW).is_ok());
        // issue 12 item 8: the nested spelling does not satisfy it
        let mut b = base();
        b["https://example"] = json!({"com/roles": 1});
        assert_eq!(
            validate(&enc(&b), &r, NOW).map(|_| ()),
            Err(Error::RequiredClaimMissing)
        );
    }

    #[test]
    fn scopes_and_act() {
        let mut b = base();
        b["scope"] = json!("a b  a");
        b["scp"] = json!(["c", "b", 5]);
        b["act"] = json!({"sub":"agent:1","act":{"sub":"agent:2"}});
        let c = check(&enc(&b)).unwrap();
        assert_eq!(c.scopes(), ["a", "b", "c"]);
        assert_eq!(c.act_chain(), ["agent:1", "agent:2"]);
        assert_eq!(c.delegation_depth(), 2);
        assert_eq!(c.get_path(&["act", "act", "sub"]), Some(&json!("agent:2")));
        assert_eq!(
            check(&with("act", json!("x"))).map(|_| ()),
            Err(Error::ClaimType)
        );
        assert_eq!(
            check(&with("act", json!({"act":{}}))).map(|_| ()),
            Err(Error::ClaimType)
        );
        let mut deep = json!({"sub":"leaf"});
        for i in 0..MAX_ACT_DEPTH {
            deep = json!({"sub": format!("a{i}"), "act": deep});
        }
        assert_eq!(check(&with("act", deep)).map(|_| ()), Err(Error::ClaimType));
        assert_eq!(check(&enc(&base())).unwrap().delegation_depth(), 0);
    }
}
