//! The strict JSON reader (`jose::json::parse_object`), checked against `serde_json` itself and
//! an independent duplicate-name detector written here.
//!
//! Properties: for a document `serde_json` reads as an object, the strict reader returns the
//! same object when no object in it repeats a member name, and `DuplicateMember` when one does;
//! it accepts nothing `serde_json` refuses or reads as a non-object; and an accepted object
//! serialises back to text the strict reader reads as the same object.
#![no_main]

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;

use attestgate::jose::json::parse_object;
use attestgate::jose::Error;
use libfuzzer_sys::fuzz_target;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Walks any JSON value and sets the flag when an object repeats a name (after unescaping).
#[derive(Clone, Copy)]
struct Duplicates<'f>(&'f Cell<bool>);

impl<'de> DeserializeSeed<'de> for Duplicates<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Duplicates<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut names = BTreeSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !names.insert(name) {
                self.0.set(true);
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

fn has_duplicate(data: &[u8]) -> bool {
    let flag = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(data);
    let _ = Duplicates(&flag).deserialize(&mut de);
    flag.get()
}

/// Does `v` hold a number that is not an integer? serde_json's default float parser (no
/// `float_roundtrip` feature, as in the gateway) may read the last digit back one unit off, so
/// such objects are only required to read back, not to read back equal. (Claims never rely on
/// floats: NumericDates must be integers.)
fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

fn check(data: &[u8]) {
    let strict = parse_object(data);
    let loose: Result<Value, _> = serde_json::from_slice(data);
    match (&strict, &loose) {
        (Ok(map), Ok(Value::Object(loose_map))) => {
            assert!(!has_duplicate(data), "a repeated member name was accepted");
            assert_eq!(
                map, loose_map,
                "strict and serde_json read different objects"
            );
            let text = serde_json::to_string(map).expect("a Value always serialises");
            let again = parse_object(text.as_bytes());
            if map.values().any(has_float) {
                assert!(
                    again.is_ok(),
                    "re-serialised object does not read back: {again:?}"
                );
            } else {
                assert_eq!(
                    again.as_ref(),
                    Ok(map),
                    "re-serialised object reads back differently"
                );
            }
        }
        (Ok(_), other) => panic!("strict accepted what serde_json reads as {other:?}"),
        (Err(e), Ok(Value::Object(_))) => {
            assert!(has_duplicate(data), "refused a plain object with {e:?}");
            assert_eq!(*e, Error::DuplicateMember);
        }
        (Err(e), _) => assert!(
            matches!(e, Error::Json | Error::Utf8 | Error::DuplicateMember),
            "unexpected error {e:?}"
        ),
    }
}

fuzz_target!(|data: &[u8]| check(data));
