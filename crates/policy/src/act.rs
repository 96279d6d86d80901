//! The `act` delegation chain (RFC 8693 §4.1) of a token's claims: `act` is the current actor,
//! `act.act` the one before it, and so on. One walker, [`chain`], for every reader:
//!
//! - the JOSE claims validation (`attestgate::jose::claims`): every level an object with a
//!   string `sub`, at most [`MAX_DEPTH`] levels;
//! - a route's `delegation = { max_depth }` ([`crate::evaluate`]): the chain's depth, with an
//!   `act` that is not an object refused;
//! - the decision log's agent list (`attestgate::gate::log`): the `sub` of each level.

use serde_json::{Map, Value};

/// The deepest `act` chain a token may carry (the JOSE validation refuses deeper ones), and so
/// the largest `max_depth` a route's `delegation` may set.
pub const MAX_DEPTH: usize = 16;

/// The levels of the `act` chain of `claims`, outermost first (`act` at depth 1, `act.act` at
/// depth 2, ...). Lazy: a caller that stops early walks no further. The walk ends after the
/// last level, or after a level that is not a JSON object (it is still yielded, so that the
/// caller can refuse it). No bound of its own: the callers bound it ([`MAX_DEPTH`], a route's
/// `max_depth`, the log's list length), and the JSON reader bounds the nesting.
pub fn chain(claims: &Map<String, Value>) -> Chain<'_> {
    Chain {
        next: claims.get("act"),
        depth: 0,
    }
}

/// The iterator of [`chain`].
#[derive(Debug, Clone)]
pub struct Chain<'a> {
    next: Option<&'a Value>,
    depth: usize,
}

/// One level of an `act` chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level<'a> {
    /// 1 for `act`, 2 for `act.act`, ...
    pub depth: usize,
    /// The `act` value at this depth, as the token has it (not necessarily an object).
    pub value: &'a Value,
}

impl<'a> Level<'a> {
    /// The level as a JSON object, if it is one.
    pub fn object(&self) -> Option<&'a Map<String, Value>> {
        self.value.as_object()
    }

    /// The actor: the level's `sub`, if the level is an object with a string `sub`.
    pub fn sub(&self) -> Option<&'a str> {
        self.object()?.get("sub")?.as_str()
    }
}

impl<'a> Iterator for Chain<'a> {
    type Item = Level<'a>;

    fn next(&mut self) -> Option<Level<'a>> {
        let value = self.next.take()?;
        self.depth += 1;
        self.next = value.as_object().and_then(|o| o.get("act"));
        Some(Level {
            depth: self.depth,
            value,
        })
    }
}

impl std::iter::FusedIterator for Chain<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    /// `{"act": {"sub": "a1", "act": {"sub": "a2", ...}}}` with `n` levels.
    fn nested(n: usize) -> Map<String, Value> {
        let mut act: Option<Value> = None;
        for i in (1..=n).rev() {
            let mut level = json!({ "sub": format!("a{i}") });
            if let Some(inner) = act {
                level["act"] = inner;
            }
            act = Some(level);
        }
        let mut c = claims(json!({ "sub": "user" }));
        if let Some(a) = act {
            c.insert("act".to_owned(), a);
        }
        c
    }

    #[test]
    fn depth_and_subs_outermost_first() {
        assert_eq!(chain(&nested(0)).count(), 0);
        let c = nested(3);
        let levels: Vec<Level<'_>> = chain(&c).collect();
        assert_eq!(
            levels.iter().map(|l| l.depth).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            levels.iter().map(|l| l.sub()).collect::<Vec<_>>(),
            [Some("a1"), Some("a2"), Some("a3")]
        );
        assert!(levels.iter().all(|l| l.object().is_some()));
    }

    #[test]
    fn sixteen_and_seventeen_levels() {
        let c = nested(MAX_DEPTH);
        assert_eq!(chain(&c).count(), MAX_DEPTH);
        assert_eq!(chain(&c).last().and_then(|l| l.sub()), Some("a16"));
        let c = nested(MAX_DEPTH + 1);
        assert_eq!(chain(&c).count(), MAX_DEPTH + 1);
        let past: Vec<usize> = chain(&c)
            .filter(|l| l.depth > MAX_DEPTH)
            .map(|l| l.depth)
            .collect();
        assert_eq!(past, [MAX_DEPTH + 1]);
    }

    #[test]
    fn a_level_that_is_not_an_object_ends_the_walk() {
        for bad in [
            json!("agent"),
            json!(["x"]),
            json!(null),
            json!(3),
            json!(true),
        ] {
            let c = claims(json!({ "act": { "sub": "a1", "act": bad.clone() } }));
            let levels: Vec<Level<'_>> = chain(&c).collect();
            assert_eq!(levels.len(), 2, "{bad}");
            assert_eq!(levels[1].depth, 2);
            assert_eq!(levels[1].value, &bad);
            assert_eq!(levels[1].object(), None);
            assert_eq!(levels[1].sub(), None);
        }
        let c = claims(json!({ "act": "agent" }));
        assert_eq!(chain(&c).count(), 1);
        assert_eq!(chain(&c).next().map(|l| l.depth), Some(1));
    }

    #[test]
    fn missing_or_non_string_sub() {
        let c = claims(json!({ "act": { "act": { "sub": 7, "act": { "sub": "a3" } } } }));
        let subs: Vec<Option<&str>> = chain(&c).map(|l| l.sub()).collect();
        // the walk goes on through levels without an actor: what to do with them is the caller's
        assert_eq!(subs, [None, None, Some("a3")]);
    }

    #[test]
    fn lazy_and_fused() {
        let c = nested(5);
        let mut walk = chain(&c);
        assert_eq!(walk.by_ref().take(2).count(), 2);
        assert_eq!(walk.next().map(|l| l.depth), Some(3));
        assert_eq!(walk.by_ref().count(), 2);
        assert_eq!(walk.next(), None);
        assert_eq!(walk.next(), None);
    }
}
