//! RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value, so a decision
//! record hashes the same wherever it is re-serialised.
//!
//! - object members sorted by their names as UTF-16 code units (RFC 8785 §3.2.3), recursively;
//! - strings with the minimal escapes of ECMAScript `JSON.stringify` (§3.2.2.2): `\"`, `\\`,
//!   `\b \f \n \r \t`, other controls below U+0020 as lowercase `\u00xx`, everything else as
//!   UTF-8 (serde_json strings are always valid UTF-8, so no lone surrogates reach here);
//! - numbers as ECMAScript `Number.prototype.toString` of the IEEE 754 double (§3.2.2.3): an
//!   integer beyond 2^53 is first rounded to a double, as I-JSON requires; `-0` is `0`.
//!
//! serde_json cannot hold NaN or infinities, so every `Value` has a canonical form.

use serde_json::{Map, Value};

/// The canonical form of `value`.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value);
    out
}

fn write(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => match n.as_f64() {
            Some(x) => number(out, x),
            None => out.push('0'),
        },
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => object(out, map),
    }
}

fn object(out: &mut String, map: &Map<String, Value>) {
    // serde_json's map (without `preserve_order`) is ordered by the names' UTF-8 bytes, which
    // is code-point order; UTF-16 order differs from it only between U+E000..U+FFFF and the
    // supplementary planes. So the sort runs only for a name above U+D7FF, or if the map ever
    // comes in another order.
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    let in_order = members
        .iter()
        .zip(members.iter().skip(1))
        .all(|(a, b)| a.0 < b.0);
    if !in_order
        || members
            .iter()
            .any(|(name, _)| name.chars().any(|c| c > '\u{d7ff}'))
    {
        members.sort_unstable_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    }
    out.push('{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, name);
        out.push(':');
        write(out, value);
    }
    out.push('}');
}

/// A JSON string literal with the minimal ECMAScript escapes. Every byte that needs one is
/// ASCII, so the runs between them are copied whole (they start and end at character
/// boundaries).
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(run..i).unwrap_or_default());
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(
                HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
            ));
            out.push(char::from(
                HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'),
            ));
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(s.get(run..).unwrap_or_default());
    out.push('"');
}

/// ECMAScript `Number::toString(x)` (ECMA-262 §7.1.12.1 / Number::toString) for a finite `x`.
///
/// The digits come from serde_json's own float writer (Ryu): the shortest digit string that
/// round-trips, and of those the closest to `x`, which is exactly the `s` and `k` ECMAScript
/// asks for; only the layout differs, so its text is read back into digits and exponent and
/// laid out again. (Rust's `{:e}` is not used: it may pick another of the shortest strings,
/// `1424953923781206.3` for `1424953923781206.2`, and it links a second float formatter into
/// the Worker.)
pub fn number(out: &mut String, x: f64) {
    if x == 0.0 || !x.is_finite() {
        out.push('0');
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    let text = serde_json::to_string(&x.abs()).unwrap_or_default();
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.trim_start_matches('+').parse::<i32>().unwrap_or(0)),
        None => (text.as_str(), 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // mantissa = int.frac: the digits, and where the decimal point sits among them.
    let all: String = int.chars().chain(frac.chars()).collect();
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let e = int.len() as i32 - lead as i32 + exp - 1;
    // x = 0.d1d2...dk × 10^n with n = e + 1.
    let k = digits.len() as i32;
    let n = e + 1;
    if k <= n && n <= 21 {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(bits: u64) -> String {
        let mut s = String::new();
        number(&mut s, f64::from_bits(bits));
        s
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in cases {
            assert_eq!(num(*bits), *want, "{bits:016x}");
        }
    }

    /// RFC 8785 §3.2.2 (the "values" example) and §3.2.3 (the sorting example), as published in
    /// the reference implementation's test data (cyberphone/json-canonicalization testdata).
    #[test]
    fn rfc8785_examples() {
        let values = r#"{
  "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],
  "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
        let mut v: Value = serde_json::from_str(values).unwrap();
        // serde_json (without `float_roundtrip`) may parse a long decimal one ULP off; the
        // canonicaliser is what is tested, so the numbers are the correctly parsed doubles.
        v["numbers"] = [
            "1E30",
            "4.50",
            "333333333.33333329",
            "2e-3",
            "0.000000000000000000000000001",
        ]
        .iter()
        .map(|t| Value::from(t.parse::<f64>().unwrap()))
        .collect();
        assert_eq!(
            to_string(&v),
            r#"{"escaping":"€$\u000f\nA'B\"\\\\\"/","literals":[null,true,false],"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}"#
        );
        let weird = r#"{
  "\u20ac": "Euro Sign",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}"#;
        let v: Value = serde_json::from_str(weird).unwrap();
        assert_eq!(
            to_string(&v),
            "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😂\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn utf16_order_differs_from_code_point_order_and_controls_escape() {
        // U+FB33 (one unit 0xFB33) sorts after U+1F602 (units 0xD83D 0xDE02) in UTF-16 order,
        // before it in code-point order.
        let v = serde_json::json!({"\u{fb33}": 1, "\u{1f602}": 2});
        assert_eq!(to_string(&v), "{\"\u{1f602}\":2,\"\u{fb33}\":1}");
        let v = serde_json::json!("\u{0}\u{1f}\u{7f}\u{2028}");
        assert_eq!(to_string(&v), "\"\\u0000\\u001f\u{7f}\u{2028}\"");
        // Integers above 2^53 are doubles first (I-JSON).
        let v: Value =
            serde_json::from_str("[9007199254740993, -1, 18446744073709551615]").unwrap();
        assert_eq!(to_string(&v), "[9007199254740992,-1,18446744073709552000]");
    }
}
