//! The declared intent of a verified token in one internal form (issue 15 item 3), and the
//! SHA-256 of its canonical form for the decision record (and, once receipts exist, the receipt).
//!
//! Sources, in this order, each read only when the claim is present:
//! - RFC 9396 `authorization_details`: a JSON array of objects, taken as they are. Present but
//!   not an array of objects: the declared intent is [`Declared::malformed`] (no detail covers).
//! - ACAP (agent capability tokens) `att_intent` (any JSON value) with `att_scope`: one detail
//!   `{"type": "acap_intent", "intent": ..., "scope": ...}`.
//! - Transaction Tokens (`draft-ietf-oauth-transaction-tokens`) `tctx` (an object) with `scope`
//!   and `purp`: one detail `{"type": "txn_token", "tctx": ..., "scope": ..., "purpose": ...}`.
//!
//! The canonical form is the JSON text of `{"details": [...], "sources": [...]}` with every
//! object's members sorted by name (code unit order), no white space, strings as `serde_json`
//! escapes them: equal intents hash equal whatever the token's member order.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The declared intent of one token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    /// The details, RFC 9396 shaped (objects with a `type`).
    pub details: Vec<Value>,
    /// Which claims they came from (`authorization_details`, `att_intent`, `tctx`).
    pub sources: Vec<&'static str>,
    /// `authorization_details` was present but not an array of objects.
    pub malformed: bool,
}

impl Declared {
    /// Read the declared intent of a token's verified claims.
    pub fn from_claims(claims: &Map<String, Value>) -> Declared {
        let mut d = Declared::default();
        if let Some(ad) = claims.get("authorization_details") {
            d.sources.push("authorization_details");
            match ad {
                Value::Array(items) if items.iter().all(Value::is_object) => {
                    d.details.extend(items.iter().cloned());
                }
                _ => d.malformed = true,
            }
        }
        if let Some(intent) = claims.get("att_intent") {
            d.sources.push("att_intent");
            let mut m = Map::new();
            m.insert("type".into(), Value::String("acap_intent".into()));
            m.insert("intent".into(), intent.clone());
            if let Some(s) = claims.get("att_scope") {
                m.insert("scope".into(), s.clone());
            }
            d.details.push(Value::Object(m));
        }
        if let Some(tctx) = claims.get("tctx").filter(|v| v.is_object()) {
            d.sources.push("tctx");
            let mut m = Map::new();
            m.insert("type".into(), Value::String("txn_token".into()));
            m.insert("tctx".into(), tctx.clone());
            for (claim, name) in [("scope", "scope"), ("purp", "purpose")] {
                if let Some(v) = claims.get(claim) {
                    m.insert(name.into(), v.clone());
                }
            }
            d.details.push(Value::Object(m));
        }
        d
    }

    /// Whether the token declares any intent at all.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The canonical JSON text (module docs).
    pub fn canonical(&self) -> String {
        let mut out = String::from("{\"details\":[");
        for (i, d) in self.details.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_canonical(d, &mut out);
        }
        out.push_str("],\"sources\":[");
        for (i, s) in self.sources.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&crate::gate::log::json_str(s));
        }
        out.push_str("]}");
        out
    }

    /// SHA-256 of the canonical form, base64url without padding; `None` when nothing is declared.
    pub fn hash(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let digest = Sha256::digest(self.canonical().as_bytes());
        Some(crate::jose::b64::encode(&digest))
    }
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            // `serde_json::Map` is a `BTreeMap` here (no `preserve_order`): its members come
            // sorted by name already (byte order), which is the canonical order.
            out.push('{');
            for (i, (name, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&crate::gate::log::json_str(name));
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => out.push_str(&crate::gate::log::json_str(s)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            // A float: as serde_json writes it (shortest round trip).
            _ => out.push_str(&serde_json::to_string(n).unwrap_or_default()),
        },
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rfc9396_details_are_taken_as_they_are() {
        let d = Declared::from_claims(&claims(json!({
            "authorization_details": [{"type": "payment_initiation", "actions": ["initiate"]}]
        })));
        assert_eq!(d.sources, ["authorization_details"]);
        assert_eq!(d.details.len(), 1);
        assert!(!d.malformed);
        for bad in [
            json!("x"),
            json!({"type": "a"}),
            json!([1]),
            json!([{"type": "a"}, "b"]),
            json!(null),
        ] {
            let d = Declared::from_claims(&claims(json!({ "authorization_details": bad })));
            assert!(d.malformed, "{bad}");
            assert!(d.details.is_empty());
            assert!(d.hash().is_some());
        }
    }

    #[test]
    fn acap_and_transaction_tokens_map_to_details() {
        let d = Declared::from_claims(&claims(json!({
            "att_intent": "book a flight", "att_scope": "travel:book",
            "tctx": {"amount": "10"}, "scope": "pay", "purp": "checkout"
        })));
        assert_eq!(d.sources, ["att_intent", "tctx"]);
        assert_eq!(
            d.details[0],
            json!({"type": "acap_intent", "intent": "book a flight", "scope": "travel:book"})
        );
        assert_eq!(
            d.details[1],
            json!({"type": "txn_token", "tctx": {"amount": "10"}, "scope": "pay", "purpose": "checkout"})
        );
        // A token without any of these declares nothing: no hash.
        let none = Declared::from_claims(&claims(json!({"sub": "a", "scope": "x"})));
        assert!(none.is_empty());
        assert_eq!(none.hash(), None);
    }

    #[test]
    fn the_hash_is_of_the_canonical_form() {
        let a = Declared::from_claims(&claims(json!({
            "authorization_details": [{"type": "t", "b": [1, {"y": 2, "x": "é"}], "a": "1"}]
        })));
        let b = Declared::from_claims(&claims(
            serde_json::from_str(
                r#"{"authorization_details":[{"a":"1","type":"t","b":[1,{"x":"é","y":2}]}]}"#,
            )
            .unwrap(),
        ));
        assert_eq!(
            a.canonical(),
            r#"{"details":[{"a":"1","b":[1,{"x":"é","y":2}],"type":"t"}],"sources":["authorization_details"]}"#
        );
        assert_eq!(a.hash(), b.hash());
        // Another Unicode normal form is another intent.
        let nfd = Declared::from_claims(&claims(json!({
            "authorization_details": [{"type": "t", "b": [1, {"y": 2, "x": "e\u{301}"}], "a": "1"}]
        })));
        assert_ne!(a.hash(), nfd.hash());
        assert_eq!(a.hash().unwrap().len(), 43);
    }
}
