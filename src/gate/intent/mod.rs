//! Intent rules (issue 15 item 1): does one detail of the token's declared intent cover this
//! request? Pure; the rules are compiled by the policy crate (`compile/intent.rs`).
//!
//! Two steps:
//! 1. [`resolve`]: the request parts the bindings read: path parameters (percent-decoded,
//!    strict), query parameters (form-decoded; absent or repeated is an error: the origin might
//!    read another value than the one checked) and JSON body members (the strict body reader).
//!    A part that is missing or not usable is the request's fault: 400, before any detail is
//!    looked at.
//! 2. [`evaluate`]: each detail in order: its `type` equals the rule's (a detail of any other
//!    type, known or not, never covers: fail closed), its `actions` include the required ones
//!    (the rule's, or the method's), its `locations` contain the required URLs, then every
//!    binding holds. The first detail that passes covers the request. Otherwise the failure
//!    reported is that of the detail that passed the most checks (the first of them on a tie):
//!    which check, and for a binding which one.
//!
//! Comparisons are exact: strings byte for byte (no Unicode normalisation: another normal form
//! is another value), decimals as decimals ([`decimal`]), never through floats.

pub mod decimal;
pub mod declared;

use serde_json::{Map, Value};

use crate::gate::extract::HeaderSource;
use crate::gate::phase::{Principal, Request};
use crate::gate::Gate;
use crate::policy::compile::intent::method_action;
use crate::policy::{Bind, Intent, MemberPath, Op, Route, Source};
use crate::Error;
use decimal::Decimal;
use declared::Declared;

/// Which check failed (the log line's reason, the decision record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The token declares no intent at all.
    NoIntent,
    /// `authorization_details` is not an array of objects.
    Malformed,
    /// No detail has the required `type`.
    Type,
    /// The detail's `actions` lack a required action (or the method implies none).
    Action,
    /// The detail's `locations` lack a required URL.
    Location,
    /// A binding does not hold.
    Binding,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::NoIntent => "no_intent",
            Check::Malformed => "malformed",
            Check::Type => "type",
            Check::Action => "action",
            Check::Location => "location",
            Check::Binding => "binding",
        }
    }
}

/// Why no detail covers the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub check: Check,
    /// The closest detail (index in the declared intent).
    pub detail: Option<usize>,
    /// For [`Check::Binding`]: the binding's index in the rule.
    pub binding: Option<usize>,
}

impl Failure {
    /// How the log names it: `type`, `action`, `binding instructedAmount.amount max body.amount`.
    pub fn describe(&self, intent: &Intent) -> String {
        match self.binding.and_then(|i| intent.bindings.get(i)) {
            Some(b) => format!("binding {}", b.label()),
            None => self.check.as_str().to_owned(),
        }
    }
}

/// The request parts of one binding, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub value: Value,
    pub currency: Option<Value>,
}

/// The parts of the request the bindings may read.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub method: &'a str,
    /// The route's `{param}` values, raw (percent-encoded).
    pub params: &'a [(&'a str, &'a str)],
    pub query: Option<&'a str>,
    /// The JSON body, when a binding reads it.
    pub body: Option<&'a Map<String, Value>>,
}

/// Step 1: the request value of every binding, or the index of the first binding whose request
/// part is missing or unusable.
pub fn resolve(intent: &Intent, parts: &Parts<'_>) -> Result<Vec<Resolved>, usize> {
    intent
        .bindings
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let value = part(&b.source, parts).ok_or(i)?;
            let currency = match &b.currency {
                Some(c) => Some(part(c, parts).filter(Value::is_string).ok_or(i)?),
                None => None,
            };
            if matches!(b.op, Op::Max | Op::Min) && Decimal::from_json(&value).is_none() {
                return Err(i);
            }
            Ok(Resolved { value, currency })
        })
        .collect()
}

fn part(source: &Source, parts: &Parts<'_>) -> Option<Value> {
    match source {
        Source::Path(name) => {
            let raw = parts.params.iter().find(|(n, _)| n == name)?.1;
            percent_decode(raw, false).map(Value::String)
        }
        Source::Query(name) => {
            let mut found = None;
            for pair in parts.query?.split('&') {
                let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                if percent_decode(n, true)?.as_str() == name.as_str() {
                    if found.is_some() {
                        return None; // repeated: which one would the origin read?
                    }
                    found = Some(percent_decode(v, true)?);
                }
            }
            found.map(Value::String)
        }
        Source::Body(path) => {
            let v = lookup(parts.body?, path)?;
            // Only scalars are bound; a null is a missing value.
            (!v.is_null() && !v.is_array() && !v.is_object()).then(|| v.clone())
        }
    }
}

/// Strict percent-decoding to UTF-8 (`form`: `+` is a space, as in query strings). A `%` not
/// followed by two hex digits, or bytes that are not UTF-8, is `None`.
fn percent_decode(s: &str, form: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = |j: usize| b.get(j).and_then(|h| char::from(*h).to_digit(16));
                let (hi, lo) = (hex(i + 1)?, hex(i + 2)?);
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A member path in an object (members only, no array indexes).
fn lookup<'v>(obj: &'v Map<String, Value>, path: &MemberPath) -> Option<&'v Value> {
    let (first, rest) = path.segments().split_first()?;
    let mut v = obj.get(first)?;
    for seg in rest {
        v = v.as_object()?.get(seg)?;
    }
    Some(v)
}

/// Step 2: the index of the first detail that covers the request, or why none does.
pub fn evaluate(
    intent: &Intent,
    method: &str,
    declared: &Declared,
    values: &[Resolved],
) -> Result<usize, Failure> {
    let fail = |check| Failure {
        check,
        detail: None,
        binding: None,
    };
    if declared.malformed {
        return Err(fail(Check::Malformed));
    }
    if declared.details.is_empty() {
        return Err(fail(Check::NoIntent));
    }
    let mut best: Option<(usize, Failure)> = None;
    for (i, detail) in declared.details.iter().enumerate() {
        match check_detail(intent, method, detail, values) {
            Ok(()) => return Ok(i),
            Err((passed, mut failure)) => {
                failure.detail = Some(i);
                if best.as_ref().is_none_or(|(p, _)| passed > *p) {
                    best = Some((passed, failure));
                }
            }
        }
    }
    Err(best.map_or(fail(Check::Type), |(_, f)| f))
}

/// One detail: `Err((checks passed, the failed check))`.
fn check_detail(
    intent: &Intent,
    method: &str,
    detail: &Value,
    values: &[Resolved],
) -> Result<(), (usize, Failure)> {
    let fail = |passed, check, binding| {
        Err((
            passed,
            Failure {
                check,
                detail: None,
                binding,
            },
        ))
    };
    let Some(d) = detail.as_object() else {
        return fail(0, Check::Type, None);
    };
    if d.get("type").and_then(Value::as_str) != Some(intent.detail_type.as_str()) {
        return fail(0, Check::Type, None);
    }
    let strings = |name: &str| -> Vec<&str> {
        d.get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let actions = strings("actions");
    let required: Vec<&str> = match &intent.actions {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => match method_action(method) {
            Some(a) => vec![a],
            None => return fail(1, Check::Action, None),
        },
    };
    if !required.iter().all(|a| actions.contains(a)) {
        return fail(1, Check::Action, None);
    }
    let locations = strings("locations");
    let has = |want: &str| {
        locations
            .iter()
            .any(|l| l.trim_end_matches('/') == want.trim_end_matches('/'))
    };
    if !intent.locations.iter().all(|l| has(l)) {
        return fail(2, Check::Location, None);
    }
    for (i, (b, r)) in intent.bindings.iter().zip(values).enumerate() {
        if !holds(b, d, r) {
            return fail(3 + i, Check::Binding, Some(i));
        }
    }
    Ok(())
}

/// Whether binding `b` holds for detail `d` with the request values `r`.
pub fn holds(b: &Bind, d: &Map<String, Value>, r: &Resolved) -> bool {
    let Some(field) = lookup(d, &b.field) else {
        return false;
    };
    let ok = match b.op {
        Op::Equals => same(field, &r.value),
        Op::Contains => field
            .as_array()
            .is_some_and(|a| a.iter().any(|e| same(e, &r.value))),
        Op::Glob => match (field.as_str(), r.value.as_str()) {
            (Some(pattern), Some(text)) => glob(pattern, text),
            _ => false,
        },
        Op::Max | Op::Min => match (Decimal::from_json(field), Decimal::from_json(&r.value)) {
            (Some(limit), Some(v)) if b.op == Op::Max => v <= limit,
            (Some(limit), Some(v)) => v >= limit,
            _ => false,
        },
    };
    ok && match &r.currency {
        None => true,
        Some(want) => {
            // The detail's `currency` next to the bound amount (`instructedAmount.currency`).
            let segs = b.field.segments();
            let parent = match segs.split_last() {
                Some((_, [])) | None => Some(d),
                Some((_, init)) => init
                    .iter()
                    .try_fold(d, |m, s| m.get(s).and_then(Value::as_object)),
            };
            parent
                .and_then(|p| p.get("currency"))
                .is_some_and(|c| c.is_string() && c == want)
        }
    }
}

/// The same value: equal strings or booleans, or equal decimals (a decimal string and an
/// integer included). Nothing else is ever equal (null, arrays, objects, floats).
fn same(detail: &Value, req: &Value) -> bool {
    match (detail, req) {
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            matches!((Decimal::from_json(detail), Decimal::from_json(req)), (Some(a), Some(b)) if a == b)
        }
        _ => false,
    }
}

/// `*` matches any run of characters (none included); everything else is exact. Iterative, no
/// backtracking blow-up (the classic two-pointer match).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// What the route phase records about the intent check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// SHA-256 (base64url) of the canonical declared intent ([`Declared::hash`]).
    pub hash: Option<String>,
    /// The detail that covered the request.
    pub covered_by: Option<usize>,
    /// Which check or binding failed (`binding instructedAmount.amount max body.amount`).
    pub failed: Option<String>,
}

/// The route's `authorization_remediation` (draft-ietf-oauth-rar-metadata-remediation): the
/// base64url JSON `{"authorization_details":[{"type", "actions", "locations"}]}` of what the
/// route needs, from the policy alone (never a value of the token or the request). `actions`
/// only when the rules name them or the route takes one method.
pub fn remediation(route: &Route) -> Option<String> {
    use crate::gate::log::{json_str, json_strs};
    let intent = route.intent.as_ref()?;
    let actions: Vec<&str> = match (&intent.actions, route.methods.as_deref()) {
        (Some(a), _) => a.iter().map(String::as_str).collect(),
        (None, Some([m])) => method_action(m).into_iter().collect(),
        (None, Some([a, b])) if (a == "GET" && b == "HEAD") || (a == "HEAD" && b == "GET") => {
            vec!["read"]
        }
        _ => Vec::new(),
    };
    let mut detail = format!("{{\"type\":{}", json_str(&intent.detail_type));
    if !actions.is_empty() {
        detail.push_str(&format!(",\"actions\":{}", json_strs(actions)));
    }
    if !intent.locations.is_empty() {
        detail.push_str(&format!(
            ",\"locations\":{}",
            json_strs(intent.locations.iter().map(String::as_str))
        ));
    }
    let json = format!("{{\"authorization_details\":[{detail}}}]}}");
    Some(crate::jose::b64::encode(json.as_bytes()))
}

/// What the intent phase learned for the session budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The budget's identifier part (`budget.identifier`).
    pub identifier: Option<String>,
    /// The amount of the budget's `spend` binding and the limit the covering detail declared.
    pub amount: Option<String>,
    pub limit: Option<String>,
}

/// The intent phase (after the route's scope and claim checks, before single use): on a route
/// with intent rules, the declared intent of the rule's provider must cover the request; on any
/// route, the decision records the hash of the first declared intent. For the route's budget:
/// the identifier part, and the amount against the covering detail's limit.
pub fn check<H: HeaderSource + ?Sized>(
    gate: &Gate,
    route: &Route,
    req: &Request<'_, H>,
    body: Option<&[u8]>,
    principal: &Principal<'_>,
    rec: &mut Record,
) -> Result<Checked, Error> {
    let identifier = route.budget.as_ref().and_then(|b| b.identifier.as_ref());
    let Some(intent) = &route.intent else {
        rec.hash = principal
            .tokens
            .iter()
            .find_map(|(_, c)| Declared::from_claims(c.map()).hash());
        if identifier.is_none() {
            return Ok(Checked::default());
        }
        let empty = Intent {
            provider: String::new(),
            detail_type: String::new(),
            actions: None,
            locations: Vec::new(),
            bindings: Vec::new(),
        };
        return parts_of(gate, route, req, body, &empty, identifier, |parts| {
            Ok(Checked {
                identifier: identifier_of(identifier, parts, rec)?,
                ..Checked::default()
            })
        });
    };
    let declared = principal
        .tokens
        .iter()
        .find(|(p, _)| p.name == intent.provider)
        .map(|(_, c)| Declared::from_claims(c.map()))
        .unwrap_or_default();
    rec.hash = declared.hash();
    parts_of(gate, route, req, body, intent, identifier, |parts| {
        let values = resolve(intent, parts).map_err(|i| {
            rec.failed = intent
                .bindings
                .get(i)
                .map(|b| format!("request {}", b.label()));
            Error::IntentRequestField
        })?;
        let covered = match evaluate(intent, req.method, &declared, &values) {
            Ok(i) => i,
            Err(f) => {
                rec.failed = Some(f.describe(intent));
                return Err(Error::IntentNotCovered(f.check));
            }
        };
        rec.covered_by = Some(covered);
        let mut checked = Checked {
            identifier: identifier_of(identifier, parts, rec)?,
            ..Checked::default()
        };
        let spend = route.budget.as_ref().and_then(|b| b.spend);
        if let Some((b, r)) = spend.and_then(|i| intent.bindings.get(i).zip(values.get(i))) {
            let amount = Decimal::from_json(&r.value).filter(|a| !a.is_negative());
            let Some(amount) = amount else {
                rec.failed = Some(format!("request {}", b.label()));
                return Err(Error::IntentRequestField);
            };
            let limit = declared
                .details
                .get(covered)
                .and_then(Value::as_object)
                .and_then(|d| lookup(d, &b.field))
                .and_then(Decimal::from_json);
            checked.amount = Some(amount.to_string());
            checked.limit = limit.map(|l| l.to_string());
        }
        Ok(checked)
    })
}

/// The budget's identifier part, a string (missing: the request's fault, 400).
fn identifier_of(
    source: Option<&Source>,
    parts: &Parts<'_>,
    rec: &mut Record,
) -> Result<Option<String>, Error> {
    let Some(source) = source else {
        return Ok(None);
    };
    match part(source, parts) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.as_i64().is_some() || n.as_u64().is_some() => {
            Ok(Decimal::from_json(&Value::Number(n)).map(|d| d.to_string()))
        }
        _ => {
            rec.failed = Some(format!("request budget.identifier {source}"));
            Err(Error::IntentRequestField)
        }
    }
}

/// The request parts the rules (and the budget's identifier) read, handed to `f`.
fn parts_of<H: HeaderSource + ?Sized, T>(
    gate: &Gate,
    route: &Route,
    req: &Request<'_, H>,
    body: Option<&[u8]>,
    intent: &Intent,
    identifier: Option<&Source>,
    f: impl FnOnce(&Parts<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let is_body = |s: &Source| matches!(s, Source::Body(_));
    let is_path = |s: &Source| matches!(s, Source::Path(_));
    let sources = || {
        intent
            .bindings
            .iter()
            .flat_map(|b| std::iter::once(&b.source).chain(b.currency.as_ref()))
            .chain(identifier)
    };
    let json = if sources().any(is_body) {
        Some(crate::gate::body::read_json(
            body.unwrap_or(&[]),
            route.body.max_depth,
        )?)
    } else {
        None
    };
    let params = if sources().any(is_path) {
        gate.policy()
            .match_route(req.method, &req.host, req.url.path)
            .map(|m| m.params)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    f(&Parts {
        method: req.method,
        params: &params,
        query: req.url.query,
        body: json.as_ref(),
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
