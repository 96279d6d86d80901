//! The reference the streaming transformer is tested and fuzzed against (native only, never in
//! the Worker): parse the whole document with serde_json (strictly: duplicate members refused,
//! [`crate::jose::json::parse_value`]), apply the rules to the tree by matching each value's
//! location against each path directly, and return the masked tree.

use serde_json::Value;

use super::stream::{last4, Counts, HashKey, Limits};
use crate::policy::compile::mask::DEFAULT_REDACTION;
use crate::policy::{Mask, MaskAction, PathStep};

/// Why the reference refused a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefError {
    /// Not strict JSON (syntax, UTF-8, duplicate member, number out of range, ...).
    Invalid,
    /// Nested deeper than the limit.
    TooDeep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Loc {
    Key(String),
    Index(u64),
}

/// Whether `steps` select exactly the location `loc` (from the root).
fn matches(steps: &[PathStep], loc: &[Loc]) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return loc.is_empty();
    };
    match step {
        PathStep::Child(n) => {
            matches!(loc.first(), Some(Loc::Key(k)) if k == n) && matches(rest, &loc[1..])
        }
        PathStep::Any => !loc.is_empty() && matches(rest, &loc[1..]),
        PathStep::Index(i) => {
            matches!(loc.first(), Some(Loc::Index(j)) if j == i) && matches(rest, &loc[1..])
        }
        PathStep::Descendant(n) => (0..loc.len())
            .any(|k| matches!(&loc[k], Loc::Key(x) if x == n) && matches(rest, &loc[k + 1..])),
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Mask `body` as a whole.
pub fn mask_whole(
    mask: &Mask,
    key: Option<&HashKey>,
    body: &[u8],
    limits: &Limits,
) -> Result<(Value, Counts), RefError> {
    let value = crate::jose::json::parse_value(body).map_err(|_| RefError::Invalid)?;
    if depth(&value) > limits.max_depth {
        return Err(RefError::TooDeep);
    }
    let mut counts = Counts(vec![0; mask.rules.len()]);
    let mut loc = Vec::new();
    let out = walk(mask, key, value, &mut loc, &mut counts);
    Ok((out.unwrap_or(Value::Null), counts))
}

/// The rule that selects `loc`: the strongest action, the first listed among equals.
fn rule_for<'m>(mask: &'m Mask, loc: &[Loc]) -> Option<(usize, &'m MaskAction)> {
    let mut best: Option<(usize, &MaskAction)> = None;
    for (i, r) in mask.rules.iter().enumerate() {
        if matches(&r.steps, loc) && best.is_none_or(|(_, b)| r.action.strength() > b.strength()) {
            best = Some((i, &r.action));
        }
    }
    best
}

fn masked(key: Option<&HashKey>, action: &MaskAction, v: Value) -> Value {
    let redaction = || serde_json::from_str(DEFAULT_REDACTION).unwrap_or(Value::Null);
    let (tag, text) = match &v {
        Value::String(s) => (b's', s.clone()),
        Value::Number(n) => (b'n', n.to_string()),
        Value::Bool(b) => (b'l', b.to_string()),
        Value::Null => (b'l', "null".to_owned()),
        _ => (0, String::new()),
    };
    match action {
        MaskAction::Drop => Value::Null,
        MaskAction::Redact(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ if tag == 0 => redaction(),
        MaskAction::Hash => match key {
            Some(k) => Value::String(k.token(tag, text.as_bytes())),
            None => Value::Null,
        },
        MaskAction::Last4 => Value::String(last4(&text)),
    }
}

/// The masked `v` at `loc`; `None` when it is dropped.
fn walk(
    mask: &Mask,
    key: Option<&HashKey>,
    v: Value,
    loc: &mut Vec<Loc>,
    counts: &mut Counts,
) -> Option<Value> {
    if !loc.is_empty() {
        if let Some((i, action)) = rule_for(mask, loc) {
            counts.0[i] += 1;
            if *action == MaskAction::Drop {
                return None;
            }
            return Some(masked(key, action, v));
        }
    }
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, child) in map {
                loc.push(Loc::Key(k.clone()));
                if let Some(c) = walk(mask, key, child, loc, counts) {
                    out.insert(k, c);
                }
                loc.pop();
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, child) in items.into_iter().enumerate() {
                loc.push(Loc::Index(i as u64));
                if let Some(c) = walk(mask, key, child, loc, counts) {
                    out.push(c);
                }
                loc.pop();
            }
            Some(Value::Array(out))
        }
        other => Some(other),
    }
}
