//! The compact binary form of the compiled policy (issue 19 item 4): what `build.rs` embeds in
//! the Worker, a serde data format of its own.
//!
//! Not self-describing: a value is only its data, in the order its type declares it, read back
//! by the same type. Integers are LEB128 varints (signed ones zigzagged), a `bool` one byte (0 or
//! 1), a string or byte string its length then its bytes (a string must be UTF-8), an `Option` a
//! tag byte (0: none, 1: some) then the value, a sequence its length then its elements, a struct
//! or tuple its fields one after the other with nothing between them, an enum its variant's index
//! then the variant's data. Floats, maps and `deserialize_any` are not supported (the compiled
//! policy has none: its one JSON value, a claim's `equals`, is written as its JSON text).
//!
//! Why a format of its own: the reader is what a fresh isolate runs, and compiles, before its
//! first request. serde's derived code for a format whose structs are sequences is only
//! `visit_seq` (no field-name matching), and every error is one unit value without a message, so
//! the reader and what it instantiates stay small (docs/performance.md, "Cold start: the
//! compiled policy embedded"). The writer runs only in the build.
//!
//! Hostile input cannot make it panic or loop: every read is bounds-checked, a varint has at
//! most 10 bytes, and a sequence claims at most as many elements as bytes remain (every element
//! of the compiled policy takes at least one byte). Every value has one encoding (minimal
//! varints, tags 0 or 1), so reading then writing gives the same bytes. The form is written by the build that checked
//! the policy and embedded in the same Worker; the reader still refuses anything else whole.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// Not this build's compact form (or a value the form cannot hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactError;

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a compiled policy of this build")
    }
}

impl std::error::Error for CompactError {}

impl ser::Error for CompactError {
    fn custom<T: fmt::Display>(_: T) -> Self {
        CompactError
    }
}

impl de::Error for CompactError {
    fn custom<T: fmt::Display>(_: T) -> Self {
        CompactError
    }
}

type Result<T> = std::result::Result<T, CompactError>;

/// `value` in the compact form.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut w = Writer { out: Vec::new() };
    value.serialize(&mut w)?;
    Ok(w.out)
}

/// A `T` read from the whole of `bytes` (a byte left over is an error).
pub fn from_bytes<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    let mut r = Reader { input: bytes };
    let value = T::deserialize(&mut r)?;
    if r.input.is_empty() {
        Ok(value)
    } else {
        Err(CompactError)
    }
}

// ---- writing -----------------------------------------------------------------------------------

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(byte);
                return;
            }
            self.out.push(byte | 0x80);
        }
    }

    fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn len(&mut self, len: usize) {
        self.varint(len as u64);
    }
}

impl ser::Serializer for &mut Writer {
    type Ok = ();
    type Error = CompactError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = ser::Impossible<(), CompactError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(u8::from(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.signed(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.varint(v);
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<()> {
        Err(CompactError)
    }
    fn serialize_f64(self, _: f64) -> Result<()> {
        Err(CompactError)
    }
    fn serialize_char(self, v: char) -> Result<()> {
        self.varint(u64::from(u32::from(v)));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.len(v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<()> {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.out.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<()> {
        self.varint(index.into());
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        self.varint(index.into());
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.len(len.ok_or(CompactError)?);
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self> {
        self.varint(index.into());
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Err(CompactError)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self> {
        self.varint(index.into());
        Ok(self)
    }
}

macro_rules! write_elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Writer {
            type Ok = ();
            type Error = CompactError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}

write_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// A struct's fields, named or not, are its values one after the other.
macro_rules! write_fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Writer {
            type Ok = ();
            type Error = CompactError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<()> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}

write_fields!(SerializeStruct, SerializeStructVariant);

// ---- reading -----------------------------------------------------------------------------------

struct Reader<'de> {
    input: &'de [u8],
}

impl<'de> Reader<'de> {
    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self.input.split_first().ok_or(CompactError)?;
        self.input = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            // The tenth byte may hold only the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err(CompactError);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                // Minimal only (no trailing zero groups): one encoding per value, so the form
                // of a policy, and its SHA-256, is unique.
                if b == 0 && shift > 0 {
                    return Err(CompactError);
                }
                return Ok(v);
            }
        }
        Err(CompactError)
    }

    fn signed(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A length: at most the bytes that remain (every element takes one byte at least).
    fn len(&mut self) -> Result<usize> {
        let n = usize::try_from(self.varint()?).map_err(|_| CompactError)?;
        if n > self.input.len() {
            return Err(CompactError);
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'de [u8]> {
        let n = self.len()?;
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn unsigned<T: TryFrom<u64>>(&mut self) -> Result<T> {
        T::try_from(self.varint()?).map_err(|_| CompactError)
    }

    fn int<T: TryFrom<i64>>(&mut self) -> Result<T> {
        T::try_from(self.signed()?).map_err(|_| CompactError)
    }
}

/// `count` values one after the other (a sequence's elements, a struct's fields).
struct Elements<'a, 'de> {
    reader: &'a mut Reader<'de>,
    count: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = CompactError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.count == 0 {
            return Ok(None);
        }
        self.count -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.count)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Reader<'de> {
    type Error = CompactError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index: u32 = self.unsigned()?;
        let value = seed.deserialize(IntoDeserializer::<CompactError>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Reader<'de> {
    type Error = CompactError;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Elements {
            reader: self,
            count: len,
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.tuple_variant(fields.len(), visitor)
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = CompactError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(CompactError)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            _ => Err(CompactError),
        }
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i8(self.int()?)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i16(self.int()?)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i32(self.int()?)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i64(self.signed()?)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.unsigned()?)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u16(self.unsigned()?)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u32(self.unsigned()?)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u64(self.varint()?)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(CompactError)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(CompactError)
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let c: u32 = self.unsigned()?;
        visitor.visit_char(char::from_u32(c).ok_or(CompactError)?)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let bytes = self.bytes()?;
        visitor.visit_borrowed_str(std::str::from_utf8(bytes).map_err(|_| CompactError)?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            _ => Err(CompactError),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let count = self.len()?;
        visitor.visit_seq(Elements {
            reader: self,
            count,
        })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Elements {
            reader: self,
            count: len,
        })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }
    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(CompactError)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), visitor)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_enum(self)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(CompactError)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(CompactError)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// serde `with` for the compiled policy's one JSON value (a claim's `equals`): its JSON text in
/// the compact form (which has no self-describing values).
pub(crate) mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(value: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        value.as_ref().map(Value::to_string).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| serde_json::from_str(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Unit,
        New(String),
        Tuple(u8, i64),
        Named { a: bool, b: Option<u32> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        kinds: Vec<Kind>,
        name: String,
        big: u64,
        small: i8,
        usize_: usize,
        maybe: Option<Vec<Option<String>>>,
        c: char,
    }

    fn sample() -> Sample {
        Sample {
            kinds: vec![
                Kind::Unit,
                Kind::New("ünïcode ✓".into()),
                Kind::Tuple(255, i64::MIN),
                Kind::Named {
                    a: true,
                    b: Some(u32::MAX),
                },
                Kind::Named { a: false, b: None },
            ],
            name: String::new(),
            big: u64::MAX,
            small: -128,
            usize_: 1 << 40,
            maybe: Some(vec![None, Some("x".into())]),
            c: '\u{10FFFF}',
        }
    }

    #[test]
    fn values_read_back_as_written() {
        let bytes = to_bytes(&sample()).unwrap();
        assert_eq!(from_bytes::<Sample>(&bytes).unwrap(), sample());
        for v in [0u64, 1, 127, 128, 300, u32::MAX.into(), u64::MAX] {
            assert_eq!(from_bytes::<u64>(&to_bytes(&v).unwrap()).unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(from_bytes::<i64>(&to_bytes(&v).unwrap()).unwrap(), v);
        }
    }

    #[test]
    fn every_truncation_and_every_extension_is_refused() {
        let bytes = to_bytes(&sample()).unwrap();
        for n in 0..bytes.len() {
            assert_eq!(from_bytes::<Sample>(&bytes[..n]), Err(CompactError), "{n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(from_bytes::<Sample>(&longer), Err(CompactError));
    }

    #[test]
    fn every_byte_changed_reads_as_an_error_or_a_value_never_a_panic() {
        let bytes = to_bytes(&sample()).unwrap();
        for i in 0..bytes.len() {
            for v in [0u8, 1, 2, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[i] = v;
                let _ = from_bytes::<Sample>(&changed);
            }
        }
    }

    #[test]
    fn out_of_range_values_are_refused() {
        // A length beyond the input, an over-long varint, a bool, an option tag, a u8 and a
        // char out of range, a string that is not UTF-8, an unknown variant.
        assert!(from_bytes::<Vec<u8>>(&[5, 1, 2]).is_err());
        assert!(from_bytes::<u64>(&[0xff; 11]).is_err());
        assert!(
            from_bytes::<u64>(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .is_err()
        );
        assert!(
            from_bytes::<u64>(&[0x80, 0x00]).is_err(),
            "a non-minimal zero"
        );
        assert!(
            from_bytes::<u64>(&[0x81, 0x80, 0x00]).is_err(),
            "a non-minimal one"
        );
        assert!(from_bytes::<bool>(&[2]).is_err());
        assert!(from_bytes::<Option<u8>>(&[2, 0]).is_err());
        assert!(from_bytes::<u8>(&[0x80, 0x02]).is_err());
        assert!(from_bytes::<char>(&[0x80, 0xb0, 0x03]).is_err()); // 0xD800, a surrogate
        assert!(from_bytes::<String>(&[2, 0xc3, 0x28]).is_err());
        assert!(from_bytes::<Kind>(&[9]).is_err());
        assert!(from_bytes::<f64>(&[0; 8]).is_err());
        assert!(to_bytes(&1.5f64).is_err());
        let mut map = std::collections::BTreeMap::new();
        map.insert(1u8, 2u8);
        assert!(to_bytes(&map).is_err());
    }
}
