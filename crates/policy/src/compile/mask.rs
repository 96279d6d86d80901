//! `[route.mask]` (issue 18): response masking rules, compiled at build time.
//!
//! A rule is a JSON path in a small, documented subset of JSONPath (RFC 9535) and an action:
//!
//! ```text
//! path  := "$" step+                      (at most MAX_STEPS steps; "$" alone is refused)
//! step  := "." name                       a member of an object
//!        | "[" quoted "]"                 the same, any member name ('...' or "...")
//!        | ".*" | "[*]"                   every member of an object, every element of an array
//!        | "[" digits "]"                 one element of an array (0-based)
//!        | ".." name | "..[" quoted "]"   a member of that name at any depth below
//! name  := [A-Za-z_][A-Za-z0-9_-]*
//! ```
//!
//! Actions: `drop` (the member or element is removed), `redact` (the value is replaced by a
//! fixed JSON scalar, default `"[redacted]"`), `hash` (a string or number becomes
//! `"h:<22 base64url characters>"`, a keyed HMAC-SHA-256 with the Worker secret `secret`),
//! `last4` (a string or number becomes `"****"` followed by its last four characters; four
//! characters or fewer become `"****"`). An object or array at a `hash` or `last4` path is
//! replaced by `"[redacted]"`. Where several rules select one value, the strongest action wins
//! (`drop`, then `redact`, `hash`, `last4`; the first listed among equals).
//!
//! The condition (`when`, any that holds; default `{ agent = true }`): `agent`: a verified
//! credential carries an `act` claim; `agent_providers`: a credential of one of these providers
//! verified; `unattested`: no credential of any of these providers verified (they must be in
//! the route's `require`, which is then an `any`); `always`: every caller.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[cfg(not(target_arch = "wasm32"))]
use serde_json::Value;

#[cfg(not(target_arch = "wasm32"))]
use super::syntax::is_token;
#[cfg(not(target_arch = "wasm32"))]
use super::unknown_provider;
use super::Cx;
use crate::diag::Location;
use crate::model::MaskConfig;

/// Most rules on one route.
pub const MAX_RULES: usize = 64;
/// Most steps in one path.
pub const MAX_STEPS: usize = 16;
/// Longest member name in a path, and longest `redact` replacement (JSON text).
pub const MAX_NAME: usize = 256;
/// The replacement of `redact` without `with`, and of a container at a `hash`/`last4` path.
pub const DEFAULT_REDACTION: &str = "\"[redacted]\"";

/// One step of a compiled path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathStep {
    /// `.name`: the member `name` of an object.
    Child(String),
    /// `.*` / `[*]`: any member or element.
    Any,
    /// `[n]`: element `n` of an array.
    Index(u64),
    /// `..name`: a member `name` at any depth below.
    Descendant(String),
}

/// What happens to a selected value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskAction {
    Drop,
    /// The replacement, as compact JSON text.
    Redact(String),
    Hash,
    Last4,
}

impl MaskAction {
    /// Higher wins where several rules select one value.
    pub fn strength(&self) -> u8 {
        match self {
            MaskAction::Drop => 3,
            MaskAction::Redact(_) => 2,
            MaskAction::Hash => 1,
            MaskAction::Last4 => 0,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            MaskAction::Drop => "drop",
            MaskAction::Redact(_) => "redact",
            MaskAction::Hash => "hash",
            MaskAction::Last4 => "last4",
        }
    }
}

/// One rule: a path (its source text kept for the record) and an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskRule {
    pub path: String,
    pub steps: Vec<PathStep>,
    pub action: MaskAction,
}

/// When the mask applies: any condition that holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskWhen {
    pub agent: bool,
    pub agent_providers: Vec<String>,
    pub unattested: Vec<String>,
    pub always: bool,
}

/// A route's compiled mask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mask {
    pub when: MaskWhen,
    /// The Worker secret keying `hash` (present exactly when a rule hashes).
    pub secret: Option<String>,
    pub rules: Vec<MaskRule>,
}

/// Parse a path of the subset above.
pub fn parse_path(text: &str) -> Result<Vec<PathStep>, &'static str> {
    let b = text.as_bytes();
    if b.first() != Some(&b'$') {
        return Err("must start with \"$\"");
    }
    let mut i = 1;
    let mut steps = Vec::new();
    let name_at = |i: usize| -> Result<(String, usize), &'static str> {
        let start = i;
        let mut j = i;
        while let Some(&c) = b.get(j) {
            let ok = c.is_ascii_alphabetic()
                || c == b'_'
                || (j > start && (c.is_ascii_digit() || c == b'-'));
            if !ok {
                break;
            }
            j += 1;
        }
        if j == start {
            return Err("expected a member name (letters, digits, '_', '-', not starting with a digit or '-'; or ['any name'])");
        }
        Ok((text.get(start..j).unwrap_or_default().to_owned(), j))
    };
    // `[...]` at i (b[i] == '['): a quoted name, `*` or an index; returns the step and the end.
    let bracket = |i: usize| -> Result<(PathStep, usize), &'static str> {
        let rest = text.get(i + 1..).unwrap_or_default();
        if let Some(r) = rest.strip_prefix("*]") {
            let _ = r;
            return Ok((PathStep::Any, i + 3));
        }
        let first = rest.bytes().next();
        if let Some(q @ (b'\'' | b'"')) = first {
            let body = rest.get(1..).unwrap_or_default();
            let end = body
                .find(q as char)
                .ok_or("has an unterminated quoted name")?;
            let name = body.get(..end).unwrap_or_default();
            if name.contains('\\') {
                return Err("has an escape in a quoted name (not supported)");
            }
            if body.get(end + 1..end + 2) != Some("]") {
                return Err("expected ']' after a quoted name");
            }
            return Ok((PathStep::Child(name.to_owned()), i + 1 + 1 + end + 2));
        }
        let digits: &str = rest
            .get(..rest.bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or_default();
        if !digits.is_empty() && rest.get(digits.len()..digits.len() + 1) == Some("]") {
            if digits.len() > 1 && digits.starts_with('0') {
                return Err("has an index with a leading zero");
            }
            let n = digits
                .parse::<u64>()
                .map_err(|_| "has an index that is too large")?;
            return Ok((PathStep::Index(n), i + 1 + digits.len() + 1));
        }
        Err("expected ['name'], [*] or [index] (filters and slices are not supported)")
    };
    while i < b.len() {
        let step;
        match (b.get(i), b.get(i + 1)) {
            (Some(b'.'), Some(b'.')) => {
                let (name, j) = match b.get(i + 2) {
                    Some(b'[') => match bracket(i + 2)? {
                        (PathStep::Child(n), j) => (n, j),
                        _ => return Err("\"..\" must be followed by a member name"),
                    },
                    _ => name_at(i + 2)?,
                };
                step = PathStep::Descendant(name);
                i = j;
            }
            (Some(b'.'), Some(b'*')) => {
                step = PathStep::Any;
                i += 2;
            }
            (Some(b'.'), _) => {
                let (name, j) = name_at(i + 1)?;
                step = PathStep::Child(name);
                i = j;
            }
            (Some(b'['), _) => {
                let (s, j) = bracket(i)?;
                step = s;
                i = j;
            }
            _ => return Err("expected '.', '..' or '[' after a step"),
        }
        if let PathStep::Child(n) | PathStep::Descendant(n) = &step {
            if n.is_empty() || n.len() > MAX_NAME {
                return Err("has a member name that is empty or longer than 256 bytes");
            }
        }
        steps.push(step);
        if steps.len() > MAX_STEPS {
            return Err("has more than 16 steps");
        }
    }
    if steps.is_empty() {
        return Err("selects the whole document; name a member or element (\"$.field\")");
    }
    Ok(steps)
}

impl Cx {
    /// In the Worker: the build compiled and checked this very policy natively, so the embedded
    /// mask is only converted. Anything that does not convert fails the policy (every route
    /// answers 503): a mask is never silently lost.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn mask(
        &mut self,
        file: &str,
        id: &str,
        config: &MaskConfig,
        _known: &BTreeSet<&str>,
        _required: &[&str],
        _any: bool,
    ) -> Option<Mask> {
        let mut rules = Vec::new();
        for r in &config.rules {
            let action = match (r.action.as_str(), &r.with) {
                ("drop", _) => MaskAction::Drop,
                ("hash", _) => MaskAction::Hash,
                ("last4", _) => MaskAction::Last4,
                ("redact", None) => MaskAction::Redact(DEFAULT_REDACTION.to_owned()),
                ("redact", Some(v)) => {
                    MaskAction::Redact(serde_json::to_string(v).unwrap_or_default())
                }
                _ => {
                    self.error(Location::route(file, id, "mask"), "unknown action");
                    return None;
                }
            };
            let Ok(steps) = parse_path(&r.path) else {
                self.error(Location::route(file, id, "mask"), "bad path");
                return None;
            };
            rules.push(MaskRule {
                path: r.path.clone(),
                steps,
                action,
            });
        }
        let w = config.when.clone().unwrap_or(crate::model::MaskWhenConfig {
            agent: true,
            ..Default::default()
        });
        Some(Mask {
            when: MaskWhen {
                agent: w.agent,
                agent_providers: w.agent_providers,
                unattested: w.unattested,
                always: w.always,
            },
            secret: config.secret.clone(),
            rules,
        })
    }

    /// Compile a route's `mask`; `required` are the route's providers (empty for a public route).
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn mask(
        &mut self,
        file: &str,
        id: &str,
        config: &MaskConfig,
        known: &BTreeSet<&str>,
        required: &[&str],
        any: bool,
    ) -> Option<Mask> {
        let before = self.errors.len();
        let at = |field: &str| Location::route(file, id, field);
        let w = config.when.clone().unwrap_or(crate::model::MaskWhenConfig {
            agent: true,
            ..Default::default()
        });
        if !w.agent && !w.always && w.agent_providers.is_empty() && w.unattested.is_empty() {
            self.error(
                at("mask.when"),
                "names no condition: set agent = true, agent_providers, unattested or always = true",
            );
        }
        if required.is_empty() && !w.always {
            self.error(
                at("mask.when"),
                "a public route verifies no token: only always = true can apply",
            );
        }
        for (field, list) in [
            ("agent_providers", &w.agent_providers),
            ("unattested", &w.unattested),
        ] {
            let f = format!("mask.when.{field}");
            for p in list {
                if !known.contains(p.as_str()) {
                    self.error(at(&f), unknown_provider(p, known));
                } else if !required.contains(&p.as_str()) {
                    self.error(
                        at(&f),
                        format!("provider {p:?} is not in this route's require list"),
                    );
                }
            }
        }
        if !w.unattested.is_empty() && !any {
            self.error(
                at("mask.when.unattested"),
                "with require = { all = [...] } every listed provider is always verified: unattested needs require = { any = [...] }",
            );
        }
        if config.rules.is_empty() || config.rules.len() > MAX_RULES {
            self.error(at("mask.rules"), format!("needs 1 to {MAX_RULES} rules"));
        }
        let mut rules = Vec::new();
        let mut hashes = false;
        for (n, r) in config.rules.iter().enumerate() {
            let f = format!("mask.rules[{n}]");
            let steps = match parse_path(&r.path) {
                Ok(s) => Some(s),
                Err(m) => {
                    self.error(at(&format!("{f}.path")), format!("{:?}: {m}", r.path));
                    None
                }
            };
            if r.with.is_some() && r.action != "redact" {
                self.error(
                    at(&format!("{f}.with")),
                    "only the redact action takes a replacement",
                );
            }
            let action = match r.action.as_str() {
                "drop" => Some(MaskAction::Drop),
                "hash" => {
                    hashes = true;
                    Some(MaskAction::Hash)
                }
                "last4" => Some(MaskAction::Last4),
                "redact" => match &r.with {
                    None => Some(MaskAction::Redact(DEFAULT_REDACTION.to_owned())),
                    Some(
                        v @ (Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null),
                    ) => {
                        let text = serde_json::to_string(v).unwrap_or_default();
                        if text.len() > MAX_NAME {
                            self.error(
                                at(&format!("{f}.with")),
                                format!("is longer than {MAX_NAME} bytes"),
                            );
                        }
                        Some(MaskAction::Redact(text))
                    }
                    Some(_) => {
                        self.error(
                            at(&format!("{f}.with")),
                            "must be a string, number, boolean or null",
                        );
                        None
                    }
                },
                other => {
                    self.error(
                        at(&format!("{f}.action")),
                        format!("{other:?} is not one of drop, redact, hash, last4"),
                    );
                    None
                }
            };
            if let (Some(steps), Some(action)) = (steps, action) {
                if rules.iter().any(|q: &MaskRule| q.path == r.path) {
                    self.error(
                        at(&format!("{f}.path")),
                        format!("{:?} is listed twice", r.path),
                    );
                }
                rules.push(MaskRule {
                    path: r.path.clone(),
                    steps,
                    action,
                });
            }
        }
        match (&config.secret, hashes) {
            (None, true) => self.error(
                at("mask.secret"),
                "a hash rule needs secret = \"NAME\" (the Worker secret keying the hash)",
            ),
            (Some(_), false) => self.error(at("mask.secret"), "no rule hashes: remove secret"),
            (Some(s), true) if !is_token(s) || s.len() > 128 => {
                self.error(at("mask.secret"), format!("{s:?} is not a secret name"))
            }
            _ => {}
        }
        if self.errors.len() != before {
            return None;
        }
        Some(Mask {
            when: MaskWhen {
                agent: w.agent,
                agent_providers: w.agent_providers,
                unattested: w.unattested,
                always: w.always,
            },
            secret: config.secret.clone(),
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_paths_parse() {
        use PathStep::*;
        assert_eq!(
            parse_path("$.a.b").unwrap(),
            [Child("a".into()), Child("b".into())]
        );
        assert_eq!(
            parse_path("$.items[*].ssn").unwrap(),
            [Child("items".into()), Any, Child("ssn".into())]
        );
        assert_eq!(
            parse_path("$..email").unwrap(),
            [Descendant("email".into())]
        );
        assert_eq!(
            parse_path("$['odd name'][2].*..[\"x y\"]").unwrap(),
            [
                Child("odd name".into()),
                Index(2),
                Any,
                Descendant("x y".into())
            ]
        );
        for bad in [
            "",
            "a.b",
            "$",
            "$.",
            "$..",
            "$.a[",
            "$.a[?(@.x)]",
            "$.a[1:2]",
            "$.a[01]",
            "$.1a",
            "$['a",
            "$.a b",
        ] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
        assert!(parse_path(&format!("${}", ".a".repeat(MAX_STEPS + 1))).is_err());
    }
}
