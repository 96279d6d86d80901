//! Route evaluation against verified tokens (SPEC §3 step 8, and the header plan of step 10).
//!
//! Input: the claims of every token that *verified* (signature, `iss`, `aud`, `exp`, bindings:
//! all done before, by the JOSE code), keyed by provider name. A provider whose token was not
//! presented is simply absent. This module never sees a token, only claims.
//!
//! Order of the checks, and the first failure decides: requirement, scopes, claim constraints,
//! delegation depth, forwarded values. [`Policy::explain`] runs the same code, records every check with
//! a human-readable reason, and goes on after a failure.
//!
//! Semantics:
//! - `require.all`: every listed provider verified. `require.any`: at least one did (the pipeline
//!   separately refuses any presented token that is invalid).
//! - `scopes`: each scope must be in the `scope` (space-separated string) or `scp` (string or
//!   array of strings) of *some* verified token of a provider the route requires.
//! - `claims`: `equals` is JSON equality of scalars (numbers compare by value: `2` equals `2.0`);
//!   `one_of` needs a string claim matching one pattern, where `*` matches any run of characters
//!   and everything else is exact (case-sensitive); `contains` needs an array claim with that
//!   string as an element, or a space-separated string claim with that word. A missing claim, or
//!   a token of that provider that was not presented (`require.any`), fails the constraint.
//! - `delegation`: the depth of the nested `act` chain of that provider's token (`act` = 1,
//!   `act.act` = 2, ...) must be at most `max_depth`; an `act` that is not an object is refused. If
//!   that provider's token was not presented (`require.any`) there is no chain: the rule holds.
//! - `forward`: strings are sent as-is, numbers and booleans as JSON text, arrays and objects as
//!   compact JSON (`["a","b"]`). A value with a byte outside printable ASCII (0x20..=0x7E), with
//!   leading or trailing space, or longer than 1024 bytes refuses the request
//!   (`UnforwardableClaim`). An absent (or `null`) claim omits the header; the client can never
//!   supply it, because inbound headers with the claims prefix are always stripped.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::{Map, Value};

use crate::policy::{Access, ClaimRule, Policy, Route, ROUTE_HEADER};

/// Longest forwarded header value, in bytes.
pub const MAX_FORWARD_VALUE: usize = 1024;

/// The claims of the tokens that verified, by provider name.
pub trait VerifiedTokens {
    /// The verified claims of `provider`'s token, if one was presented and verified.
    fn claims(&self, provider: &str) -> Option<&Map<String, Value>>;
}

impl VerifiedTokens for BTreeMap<String, Map<String, Value>> {
    fn claims(&self, provider: &str) -> Option<&Map<String, Value>> {
        self.get(provider)
    }
}

impl<S: std::hash::BuildHasher> VerifiedTokens for HashMap<String, Map<String, Value>, S> {
    fn claims(&self, provider: &str) -> Option<&Map<String, Value>> {
        self.get(provider)
    }
}

impl VerifiedTokens for [(&str, &Map<String, Value>)] {
    fn claims(&self, provider: &str) -> Option<&Map<String, Value>> {
        self.iter().find(|(p, _)| *p == provider).map(|(_, c)| *c)
    }
}

impl<const N: usize> VerifiedTokens for [(&str, &Map<String, Value>); N] {
    fn claims(&self, provider: &str) -> Option<&Map<String, Value>> {
        self.as_slice().claims(provider)
    }
}

/// No verified token at all (public routes).
impl VerifiedTokens for () {
    fn claims(&self, _provider: &str) -> Option<&Map<String, Value>> {
        None
    }
}

/// Why valid tokens do not satisfy the route. The root crate nests it as `Error::Denied` (403
/// `insufficient_scope`, except `UnforwardableClaim`: 401 `invalid_token`).
// Word-sized: the root crate's `Error` nests it (see `repr` on `jose::Error`, src/jose/error.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Denial {
    RequirementUnmet,
    ScopeMissing,
    ClaimConstraint,
    DelegationTooDeep,
    UnforwardableClaim,
}

impl Denial {
    /// The snake_case reason code of the log line (the root crate's `Error::reason` of
    /// `Error::Denied`).
    pub fn reason(self) -> &'static str {
        match self {
            Denial::RequirementUnmet => "requirement_unmet",
            Denial::ScopeMissing => "scope_missing",
            Denial::ClaimConstraint => "claim_constraint",
            Denial::DelegationTooDeep => "delegation_too_deep",
            Denial::UnforwardableClaim => "unforwardable_claim",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// What to do with the request headers before forwarding (SPEC §3 step 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPlan {
    /// Remove every inbound header whose (lowercase) name starts with this prefix.
    pub strip_prefix: String,
    /// Remove these inbound headers too (lowercase): the consumed token headers (each required
    /// provider's `from.header`, and `dpop` for DPoP providers), unless `forward_tokens`.
    /// Always includes `x-verified-route`.
    pub strip: Vec<String>,
    /// Then add these (lowercase name, value): the route's `forward` headers whose claim is
    /// present, sorted by name, and last `x-verified-route: <route id>`.
    pub set: Vec<(String, String)>,
}

impl HeaderPlan {
    /// Whether an inbound header must be removed (case-insensitive).
    pub fn strips(&self, name: &str) -> bool {
        let prefix = self.strip_prefix.as_bytes();
        let bytes = name.as_bytes();
        (bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix))
            || self.strip.iter().any(|s| s.eq_ignore_ascii_case(name))
            || self.set.iter().any(|(s, _)| s.eq_ignore_ascii_case(name))
    }

    /// The value the plan sets for a header, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One check of [`Policy::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was checked: `scope "orders:read"`, `claim agent.act.sub one_of [...]`, ...
    pub check: String,
    pub passed: bool,
    /// Why it passed or failed (may quote claim values: for the CLI, never for logs).
    pub detail: String,
    /// The denial this check produces when it fails.
    pub denial: Option<Denial>,
}

/// Every check of a route against the tokens, and the outcome [`Policy::evaluate`] would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub steps: Vec<Step>,
    pub outcome: Result<HeaderPlan, Denial>,
}

impl Policy {
    /// Evaluate a matched route against the verified tokens (SPEC §3 step 8) and plan the
    /// forwarded headers (step 10). Stops at the first failure.
    pub fn evaluate<T: VerifiedTokens + ?Sized>(
        &self,
        route: &Route,
        tokens: &T,
    ) -> Result<HeaderPlan, Denial> {
        run(self, route, tokens, &mut Fast)
    }

    /// Same checks as [`Policy::evaluate`], every one recorded with its reason; does not stop at
    /// a failure.
    pub fn explain<T: VerifiedTokens + ?Sized>(&self, route: &Route, tokens: &T) -> Explanation {
        let mut trace = Trace::default();
        let outcome = run(self, route, tokens, &mut trace);
        Explanation {
            steps: trace.steps,
            outcome,
        }
    }
}

trait Sink {
    /// Record a check. Returning `Err` stops the evaluation.
    fn step(
        &mut self,
        check: impl FnOnce() -> String,
        verdict: Result<(), Denial>,
        detail: impl FnOnce() -> String,
    ) -> Result<(), Denial>;
    /// The first failure recorded (for sinks that do not stop).
    fn first_failure(&self) -> Option<Denial>;
}

struct Fast;

impl Sink for Fast {
    #[inline]
    fn step(
        &mut self,
        _check: impl FnOnce() -> String,
        verdict: Result<(), Denial>,
        _detail: impl FnOnce() -> String,
    ) -> Result<(), Denial> {
        verdict
    }
    fn first_failure(&self) -> Option<Denial> {
        None
    }
}

#[derive(Default)]
struct Trace {
    steps: Vec<Step>,
    first: Option<Denial>,
}

impl Sink for Trace {
    fn step(
        &mut self,
        check: impl FnOnce() -> String,
        verdict: Result<(), Denial>,
        detail: impl FnOnce() -> String,
    ) -> Result<(), Denial> {
        let denial = verdict.err();
        if self.first.is_none() {
            self.first = denial;
        }
        self.steps.push(Step {
            check: check(),
            passed: denial.is_none(),
            detail: detail(),
            denial,
        });
        Ok(())
    }
    fn first_failure(&self) -> Option<Denial> {
        self.first
    }
}

fn verdict(ok: bool, denial: Denial) -> Result<(), Denial> {
    if ok {
        Ok(())
    } else {
        Err(denial)
    }
}

fn run<T: VerifiedTokens + ?Sized, S: Sink>(
    policy: &Policy,
    route: &Route,
    tokens: &T,
    sink: &mut S,
) -> Result<HeaderPlan, Denial> {
    let required = route.access.providers();

    // 1. requirement
    match &route.access {
        Access::Public => sink.step(
            || "requirement".to_owned(),
            Ok(()),
            || "public route: no token is verified".to_owned(),
        )?,
        Access::All(providers) => {
            for p in providers {
                let ok = tokens.claims(p).is_some();
                sink.step(
                    || format!("requirement all: provider {p}"),
                    verdict(ok, Denial::RequirementUnmet),
                    || {
                        if ok {
                            "token verified".to_owned()
                        } else {
                            "no verified token from this provider".to_owned()
                        }
                    },
                )?;
            }
        }
        Access::Any(providers) => {
            let verified: Vec<&str> = providers
                .iter()
                .filter(|p| tokens.claims(p).is_some())
                .map(String::as_str)
                .collect();
            sink.step(
                || format!("requirement any: {}", providers.join(", ")),
                verdict(!verified.is_empty(), Denial::RequirementUnmet),
                || {
                    if verified.is_empty() {
                        "no verified token from any of these providers".to_owned()
                    } else {
                        format!("verified: {}", verified.join(", "))
                    }
                },
            )?;
        }
    }

    // 2. scopes
    for scope in &route.scopes {
        let granted_by: Vec<&str> = required
            .iter()
            .filter(|p| tokens.claims(p).is_some_and(|c| has_scope(c, scope)))
            .map(String::as_str)
            .collect();
        sink.step(
            || format!("scope {scope:?}"),
            verdict(!granted_by.is_empty(), Denial::ScopeMissing),
            || {
                if granted_by.is_empty() {
                    let seen: Vec<String> = required
                        .iter()
                        .filter_map(|p| {
                            tokens.claims(p).map(|c| format!("{p}: {}", scopes_text(c)))
                        })
                        .collect();
                    format!(
                        "not in the scope/scp of any verified token ({})",
                        if seen.is_empty() {
                            "no verified token".to_owned()
                        } else {
                            seen.join("; ")
                        }
                    )
                } else {
                    format!("granted by {}", granted_by.join(", "))
                }
            },
        )?;
    }

    // 3. claim constraints
    for rule in &route.claims {
        let value = tokens
            .claims(&rule.claim.provider)
            .and_then(|c| rule.claim.lookup(c));
        check_rule(rule, value, sink)?;
    }

    // 4. delegation depth
    if let Some(d) = &route.delegation {
        let (ok, detail) = match tokens.claims(&d.provider) {
            None => (true, format!("no token from {}: no act chain", d.provider)),
            Some(claims) => match act_depth(claims, d.max_depth) {
                Ok(depth) => (true, format!("act chain depth {depth}")),
                Err(ActError::TooDeep) => (false, format!("act chain deeper than {}", d.max_depth)),
                Err(ActError::NotObject(depth)) => {
                    (false, format!("act at depth {depth} is not a JSON object"))
                }
            },
        };
        sink.step(
            || format!("delegation {}: max_depth {}", d.provider, d.max_depth),
            verdict(ok, Denial::DelegationTooDeep),
            || detail,
        )?;
    }

    // 5. forwarded headers
    let mut set: Vec<(String, String)> = Vec::with_capacity(route.forward.len() + 1);
    for f in &route.forward {
        let value = tokens
            .claims(&f.claim.provider)
            .and_then(|c| f.claim.lookup(c));
        let text = match value {
            None | Some(Value::Null) => {
                sink.step(
                    || format!("forward {} = {}", f.header, f.claim),
                    Ok(()),
                    || "claim absent: header omitted".to_owned(),
                )?;
                continue;
            }
            Some(v) => forward_text(v),
        };
        let problem = text
            .as_deref()
            .map_or(Some("cannot be encoded"), unforwardable);
        sink.step(
            || format!("forward {} = {}", f.header, f.claim),
            verdict(problem.is_none(), Denial::UnforwardableClaim),
            || match (problem, &text) {
                (None, Some(t)) => format!("{t:?}"),
                (Some(p), _) => format!("refused: the value {p}"),
                (None, None) => String::new(),
            },
        )?;
        if let (None, Some(t)) = (problem, text) {
            set.push((f.header.clone(), t));
        }
    }
    set.push((ROUTE_HEADER.to_owned(), route.id.clone()));

    if let Some(d) = sink.first_failure() {
        return Err(d);
    }

    let mut strip = vec![ROUTE_HEADER.to_owned()];
    if !route.forward_tokens {
        for name in required {
            if let Some(p) = policy.provider(name) {
                if !strip.contains(&p.from.header) {
                    strip.push(p.from.header.clone());
                }
                if p.dpop && !strip.iter().any(|s| s == "dpop") {
                    strip.push("dpop".to_owned());
                }
            }
        }
    }
    Ok(HeaderPlan {
        strip_prefix: policy.gateway().claims_header_prefix.clone(),
        strip,
        set,
    })
}

fn check_rule<S: Sink>(
    rule: &ClaimRule,
    value: Option<&Value>,
    sink: &mut S,
) -> Result<(), Denial> {
    let claim = &rule.claim;
    let shown = || match value {
        None => "claim absent".to_owned(),
        Some(v) => format!("claim is {}", short_json(v)),
    };
    if let Some(expected) = &rule.equals {
        let ok = value.is_some_and(|v| scalar_eq(v, expected));
        sink.step(
            || format!("claim {claim} equals {expected}"),
            verdict(ok, Denial::ClaimConstraint),
            shown,
        )?;
    }
    if let Some(patterns) = &rule.one_of {
        let hit = value
            .and_then(Value::as_str)
            .and_then(|s| patterns.iter().find(|p| glob_match(p, s)));
        sink.step(
            || format!("claim {claim} one_of {patterns:?}"),
            verdict(hit.is_some(), Denial::ClaimConstraint),
            || match hit {
                Some(p) => format!("{} (matches {p:?})", shown()),
                None if value.is_some_and(|v| !v.is_string()) => {
                    format!("{} (not a string)", shown())
                }
                None => format!("{} (no pattern matches)", shown()),
            },
        )?;
    }
    if let Some(word) = &rule.contains {
        let ok = value.is_some_and(|v| contains(v, word));
        sink.step(
            || format!("claim {claim} contains {word:?}"),
            verdict(ok, Denial::ClaimConstraint),
            shown,
        )?;
    }
    Ok(())
}

/// `scope` (space-separated string) or `scp` (string or array of strings) has `scope`.
fn has_scope(claims: &Map<String, Value>, scope: &str) -> bool {
    ["scope", "scp"].iter().any(|name| match claims.get(*name) {
        Some(Value::String(s)) => s.split(' ').any(|w| w == scope),
        Some(Value::Array(a)) if *name == "scp" => a.iter().any(|v| v.as_str() == Some(scope)),
        _ => false,
    })
}

fn scopes_text(claims: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for name in ["scope", "scp"] {
        if let Some(v) = claims.get(name) {
            parts.push(format!("{name}={}", short_json(v)));
        }
    }
    if parts.is_empty() {
        "no scope or scp claim".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Scalars equal; numbers by value (`2` == `2.0`), integers exactly.
fn scalar_eq(claim: &Value, expected: &Value) -> bool {
    match (claim, expected) {
        (Value::Number(a), Value::Number(b)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(a), int(b)) {
                (Some(x), Some(y)) => x == y,
                _ => match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                },
            }
        }
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => {
            claim == expected
        }
        _ => false,
    }
}

fn contains(claim: &Value, word: &str) -> bool {
    match claim {
        Value::Array(a) => a.iter().any(|v| v.as_str() == Some(word)),
        Value::String(s) => s.split(' ').any(|w| w == word),
        _ => false,
    }
}

/// `*` matches any run of characters (also empty); everything else exactly.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

enum ActError {
    TooDeep,
    /// `act` at this depth is not an object.
    NotObject(u32),
}

/// Depth of the `act` chain ([`crate::act::chain`]), walking at most `max + 1` levels.
fn act_depth(claims: &Map<String, Value>, max: u32) -> Result<u32, ActError> {
    let mut depth = 0u32;
    for level in crate::act::chain(claims) {
        depth += 1;
        if level.object().is_none() {
            return Err(ActError::NotObject(depth));
        }
        if depth > max {
            return Err(ActError::TooDeep);
        }
    }
    Ok(depth)
}

/// The header text of a claim value (None if it cannot be encoded).
fn forward_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => serde_json::to_string(v).ok(),
        Value::Null => None,
    }
}

/// Why a value cannot be a header value, if it cannot.
fn unforwardable(value: &str) -> Option<&'static str> {
    if value.len() > MAX_FORWARD_VALUE {
        Some("is longer than 1024 bytes")
    } else if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        Some("has a byte that is not printable ASCII (control, CR/LF, NUL or non-ASCII)")
    } else if value.starts_with(' ') || value.ends_with(' ') {
        Some("has leading or trailing space (the origin would see another value)")
    } else {
        None
    }
}

fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, ok) in [
            ("agent:planner", "agent:planner", true),
            ("agent:planner", "agent:planner2", false),
            ("agent:buyer-*", "agent:buyer-1", true),
            ("agent:buyer-*", "agent:buyer-", true),
            ("agent:buyer-*", "agent:buye", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*x", "abxx", true),
            ("a?", "ab", false),
            ("Agent", "agent", false),
        ] {
            assert_eq!(glob_match(p, t), ok, "{p} {t}");
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(scalar_eq(&serde_json::json!(2), &serde_json::json!(2.0)));
        assert!(!scalar_eq(&serde_json::json!(2), &serde_json::json!("2")));
        assert!(!scalar_eq(&serde_json::json!(true), &serde_json::json!(1)));
        assert!(scalar_eq(
            &serde_json::json!(u64::MAX),
            &serde_json::json!(u64::MAX)
        ));
        assert!(!scalar_eq(
            &serde_json::json!(9_007_199_254_740_993u64),
            &serde_json::json!(9_007_199_254_740_992u64)
        ));
    }
}
