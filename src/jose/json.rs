//! A strict JSON-object parser for JOSE headers, JWT claims and JWK Sets.
//!
//! `serde_json::Value` silently keeps the *last* of two members with the same name, while other
//! parsers keep the first (ATTACKS #15, #16). Here every object, at any depth, is built by a
//! visitor that refuses a repeated name. Names are compared after unescaping, so
//! `{"alg":..,"\u0061lg":..}` is a duplicate too. Also refused: invalid UTF-8, a byte-order mark,
//! trailing data, and any top-level value that is not an object. `serde_json`'s recursion limit
//! (128 levels) stays on.

use core::cell::Cell;
use core::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::Error;

/// Parses `bytes` as one JSON object with no duplicate member at any depth.
///
/// Errors: [`Error::Utf8`] (not UTF-8), [`Error::DuplicateMember`], [`Error::Json`] (BOM, syntax,
/// trailing data, nesting deeper than 128, numbers out of range, lone surrogates, not an object).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(Error::Json),
    }
}

/// [`parse_object`] for any top-level value (the masking reference, issue 18).
pub fn parse_value(bytes: &[u8]) -> Result<Value, Error> {
    let text = core::str::from_utf8(bytes).map_err(|_| Error::Utf8)?;
    if text.starts_with('\u{feff}') {
        return Err(Error::Json);
    }
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if duplicate.get() => Err(Error::DuplicateMember),
        Err(_) => Err(Error::Json),
    }
}

/// A seed that deserializes any JSON value into a `serde_json::Value`, refusing duplicate
/// object members. The flag records why it failed, so the caller can tell a duplicate from a
/// syntax error without matching on message text.
#[derive(Clone, Copy)]
struct StrictValue<'f> {
    duplicate: &'f Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                self.duplicate.set(true);
                return Err(de::Error::custom("duplicate member"));
            }
            let value = access.next_value_seed(self)?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_objects_parse() {
        let m = parse_object(br#"{"a":1,"b":[1,2,{"c":null}],"d":{"e":"f"},"g":-1.5}"#).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m["b"][2]["c"], Value::Null);
        let m = parse_object(b" {\r\n \"a\" : true }\n").unwrap();
        assert_eq!(m["a"], Value::Bool(true));
    }

    #[test]
    fn duplicates_refused_at_any_depth_and_escaped() {
        for bad in [
            r#"{"alg":"none","alg":"ES256"}"#,
            r#"{"alg":"ES256","\u0061lg":"HS256"}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":[{"x":1},{"y":1,"y":1}]}"#,
            r#"{"a":[[[{"k":1,"\u006b":2}]]]}"#,
        ] {
            assert_eq!(
                parse_object(bad.as_bytes()),
                Err(Error::DuplicateMember),
                "{bad}"
            );
        }
        // Same name in sibling objects is fine.
        assert!(parse_object(br#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn shape_encoding_and_trailing_data() {
        assert_eq!(parse_object(b"\xef\xbb\xbf{}"), Err(Error::Json)); // BOM
        assert_eq!(parse_object(b"{\"sub\":\"\xc0\xaf\"}"), Err(Error::Utf8));
        for bad in [
            r#"{"sub":"\ud800"}"#,
            r#"{"sub":"\ud800x"}"#,
            r#"{"a":1} garbage"#,
            r#"{"a":1}{}"#,
            r#"[{"a":1}]"#,
            r#""header""#,
            "1",
            "null",
            "",
            r#"{"exp":1e400}"#,
            r#"{"exp":NaN}"#,
            r#"{"a":1,}"#,
            "{'a':1}",
        ] {
            assert_eq!(parse_object(bad.as_bytes()), Err(Error::Json), "{bad}");
        }
    }

    #[test]
    fn recursion_limit_is_kept() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(parse_object(deep(100).as_bytes()).is_ok());
        assert_eq!(parse_object(deep(200).as_bytes()), Err(Error::Json));
        assert_eq!(parse_object(deep(100_000).as_bytes()), Err(Error::Json));
        let objs = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert_eq!(parse_object(objs.as_bytes()), Err(Error::Json));
    }

    #[test]
    fn big_numbers_keep_their_kind() {
        let m =
            parse_object(br#"{"a":9223372036854775808,"b":18446744073709551616,"c":-1}"#).unwrap();
        assert_eq!(m["a"].as_i64(), None);
        assert_eq!(m["a"].as_u64(), Some(9223372036854775808));
        assert!(m["b"].is_f64());
        assert_eq!(m["c"].as_i64(), Some(-1));
    }
}
