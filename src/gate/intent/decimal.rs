//! Exact decimals for the numeric limits of intent rules: amounts are compared as decimal
//! numbers written in text, never through floats (`0.1 + 0.2`, `1e400`, `100.000000000000001`).
//!
//! A decimal is `-?DIGITS(.DIGITS)?` (at most 64 bytes: no exponent, no `+`, no leading or
//! trailing `.`), as a JSON string (RFC 9396's `instructedAmount.amount` is `"123.50"`), or a
//! JSON integer. A JSON number with a fraction or an exponent is not a decimal here: the JSON
//! reader has already turned it into a float, so its exact text is gone.

use core::cmp::Ordering;

use serde_json::Value;

/// Longest decimal text taken.
pub const MAX_DECIMAL: usize = 64;

/// A decimal: sign, integer digits without leading zeros, fraction digits without trailing
/// zeros. Zero is never negative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    int: String,
    frac: String,
}

impl Decimal {
    /// Parse decimal text (see the module docs).
    pub fn parse(text: &str) -> Option<Decimal> {
        if text.is_empty() || text.len() > MAX_DECIMAL {
            return None;
        }
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (int, frac) = match rest.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (rest, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return None;
        }
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.unwrap_or("").trim_end_matches('0').to_owned();
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal {
            negative,
            int,
            frac,
        })
    }

    /// A JSON value as a decimal: a decimal string, or an integer number.
    pub fn from_json(v: &Value) -> Option<Decimal> {
        match v {
            Value::String(s) => Decimal::parse(s),
            // Integers only, printed as integers (a float's text is gone; and formatting a
            // float would link core's float printing into the Worker).
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Decimal::parse(&i.to_string()),
                (None, Some(u)) => Decimal::parse(&u.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether it is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The exact sum of two non-negative decimals (`None` for a negative one, or a sum longer
    /// than [`MAX_DECIMAL`]).
    pub fn checked_add(&self, other: &Decimal) -> Option<Decimal> {
        if self.negative || other.negative {
            return None;
        }
        let frac_len = self.frac.len().max(other.frac.len());
        let int_len = self.int.len().max(other.int.len());
        // Both as digit strings of the same shape, then added right to left.
        let pad = |d: &Decimal| {
            let mut s = "0".repeat(int_len - d.int.len());
            s.push_str(&d.int);
            s.push_str(&d.frac);
            s.push_str(&"0".repeat(frac_len - d.frac.len()));
            s.into_bytes()
        };
        let (a, b) = (pad(self), pad(other));
        let mut out = Vec::with_capacity(a.len() + 1);
        let mut carry = 0u8;
        for (x, y) in a.iter().rev().zip(b.iter().rev()) {
            let d = (x - b'0') + (y - b'0') + carry;
            out.push(b'0' + d % 10);
            carry = d / 10;
        }
        if carry > 0 {
            out.push(b'0' + carry);
        }
        out.reverse();
        let split = out.len() - frac_len;
        let text = String::from_utf8(out).ok()?;
        let (int, frac) = text.split_at(split);
        let int = if int.is_empty() { "0" } else { int };
        let joined = if frac.is_empty() {
            int.to_owned()
        } else {
            format!("{int}.{frac}")
        };
        Decimal::parse(&joined)
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| {
                // Compare the fractions digit by digit, the shorter padded with zeros.
                let (a, b) = (self.frac.as_bytes(), other.frac.as_bytes());
                let n = a.len().max(b.len());
                (0..n)
                    .map(|i| {
                        let x = a.get(i).copied().unwrap_or(b'0');
                        let y = b.get(i).copied().unwrap_or(b'0');
                        x.cmp(&y)
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            })
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

/// The shortest text of the same value (`100`, `0.5`, `-3.25`).
impl core::fmt::Display for Decimal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(if self.int.is_empty() { "0" } else { &self.int })?;
        if !self.frac.is_empty() {
            write!(f, ".{}", self.frac)?;
        }
        Ok(())
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn parses_only_plain_decimals() {
        for ok in [
            "0",
            "-0",
            "007.50",
            "123.50",
            "1",
            "-1.000",
            "0.000001",
            "99999999999999999999999.99",
        ] {
            assert!(Decimal::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "-",
            ".5",
            "5.",
            "+5",
            "1e3",
            "1E3",
            "0x10",
            " 1",
            "1 ",
            "1,5",
            "--1",
            "1.2.3",
            "NaN",
            "Infinity",
            "١٢",
            &"9".repeat(65),
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn compares_exactly() {
        assert_eq!(d("100"), d("100.00"));
        assert_eq!(d("-0"), d("0.0"));
        assert_eq!(d("007.5"), d("7.50"));
        assert!(d("100.000000000000001") > d("100"));
        assert!(d("0.3") > d("0.29999999999999999"));
        assert!(d("99.99") < d("100"));
        assert!(d("1000") > d("999.999"));
        assert!(d("-5") < d("-4.99"));
        assert!(d("-5") < d("0"));
        assert!(d("12345678901234567890.1") > d("12345678901234567890.09"));
        // Beyond f64: these are equal as floats, not as decimals.
        assert!(d("9007199254740993") > d("9007199254740992"));
    }

    #[test]
    fn exact_sums() {
        let sum = |a: &str, b: &str| d(a).checked_add(&d(b)).map(|x| x.to_string());
        assert_eq!(sum("33.33", "66.67").as_deref(), Some("100"));
        assert_eq!(sum("0.1", "0.2").as_deref(), Some("0.3"));
        assert_eq!(sum("999.99", "0.01").as_deref(), Some("1000"));
        assert_eq!(sum("0", "0").as_deref(), Some("0"));
        assert_eq!(
            sum("9007199254740992", "1").as_deref(),
            Some("9007199254740993")
        );
        assert_eq!(sum("-1", "2"), None);
        assert_eq!(d("-3.250").to_string(), "-3.25");
        assert_eq!(d("000.5").to_string(), "0.5");
    }

    #[test]
    fn json_values() {
        assert_eq!(Decimal::from_json(&json!("12.30")), Some(d("12.3")));
        assert_eq!(Decimal::from_json(&json!(12)), Some(d("12")));
        assert_eq!(Decimal::from_json(&json!(-12)), Some(d("-12")));
        assert_eq!(
            Decimal::from_json(&json!(18446744073709551615u64)),
            Some(d("18446744073709551615"))
        );
        for bad in [
            json!(12.5),
            json!(1e3),
            json!(null),
            json!(true),
            json!(["1"]),
            json!({"a": "1"}),
            json!("1e3"),
        ] {
            assert_eq!(Decimal::from_json(&bad), None, "{bad}");
        }
    }
}
