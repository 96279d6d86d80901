//! What crosses between the Worker's wasm and the runtime's JavaScript in one call (issue 19).
//! Every call into the runtime costs: a string passed from Rust is decoded by the runtime's
//! `TextDecoder` (a few µs each in workerd), a `Headers.get` made from Rust about 8 µs
//! (docs/performance.md, "Per-request overhead: where the time went"). So the Worker reads the
//! request's headers in one call and sends the forward in one more, each as one string whose
//! form is fixed here, where it is tested natively; `src/edge/forward.rs` holds the JavaScript
//! half of each.

/// The answer of the Worker's one-call header read (`readHeaders` in `src/edge/forward.rs`): for
/// each wanted name, in order, `-` (absent) or the value's length in UTF-16 code units (what
/// JavaScript's `length` counts), `:` and the value; then the names the runtime lists, joined
/// by `\n` (each a lower-case token). Returns each wanted value and the names, or `None` when
/// the text is not that form (the caller then reads the headers one by one): a value holding
/// `:`, `\n`, `-` or any character is taken by its length, never by a separator.
pub fn parse_header_read(text: &str, wanted: usize) -> Option<(Vec<Option<String>>, &str)> {
    let mut rest = text;
    let mut values = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        if let Some(after) = rest.strip_prefix('-') {
            values.push(None);
            rest = after;
            continue;
        }
        let (len, after) = rest.split_once(':')?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let units: usize = len.parse().ok()?;
        // The value ends `units` UTF-16 code units in.
        let mut seen = 0;
        let mut end = 0;
        for c in after.chars() {
            if seen >= units {
                break;
            }
            seen += c.len_utf16();
            end += c.len_utf8();
        }
        if seen != units {
            return None;
        }
        let (value, after) = after.split_at_checked(end)?;
        values.push(Some(value.to_owned()));
        rest = after;
    }
    // The names as the runtime lists them: lower-case tokens (RFC 9110 §5.1), each non-empty.
    let token =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    let names_ok = rest.is_empty()
        || rest
            .split('\n')
            .all(|n| !n.is_empty() && n.bytes().all(token));
    names_ok.then_some((values, rest))
}

/// The forward in one string, for the Worker's JavaScript (`forward` in `src/edge/forward.rs`):
/// the request id, the method and the target URL, then each header edit in order, `d<name>`
/// (delete) or `s<name>` followed by the value (set), all separated by `\n`. Every part is
/// checked to be printable ASCII (and a value may hold a tab), so no part can hold a separator
/// or anything the runtime would refuse in a header. The plan's values already are (forwarded
/// claims, [`crate::policy::MAX_FORWARD_VALUE`]'s rule; the `X-Forwarded-*` values; an injected
/// credential): a part that is not is refused here, as the runtime's `Headers.set` refused it
/// when each edit was its own call.
#[derive(Debug)]
pub struct ForwardText {
    text: String,
}

/// A part of a [`ForwardText`] that is not printable ASCII (or an empty name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsendable;

impl ForwardText {
    pub fn new(request_id: &str, method: &str, target: &str) -> Result<Self, Unsendable> {
        let mut text = String::with_capacity(request_id.len() + method.len() + target.len() + 256);
        for part in [request_id, method, target] {
            check(part, false)?;
            text.push_str(part);
            text.push('\n');
        }
        text.pop();
        Ok(ForwardText { text })
    }

    /// Delete the inbound header `name`.
    pub fn delete(&mut self, name: &str) -> Result<(), Unsendable> {
        check(name, false)?;
        self.text.push_str("\nd");
        self.text.push_str(name);
        Ok(())
    }

    /// Set header `name` to `value` (replacing every inbound value of it).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), Unsendable> {
        check(name, false)?;
        check(value, true)?;
        self.text.push_str("\ns");
        self.text.push_str(name);
        self.text.push('\n');
        self.text.push_str(value);
        Ok(())
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

/// Printable ASCII (0x20..=0x7E), and a tab where `value`; a name is never empty.
fn check(part: &str, value: bool) -> Result<(), Unsendable> {
    let printable = part
        .bytes()
        .all(|b| (0x20..=0x7e).contains(&b) || (value && b == b'\t'));
    if printable && (value || !part.is_empty()) {
        Ok(())
    } else {
        Err(Unsendable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_call_read_gives_each_wanted_value_exactly_then_the_names() {
        // `-` absent; a length in UTF-16 units; values holding the separators and non-ASCII.
        let text = "-5:a:b\nc-3:\u{e9}\u{1F600}authorization\ncf-connecting-ip\nx-a";
        let (values, names) = parse_header_read(text, 4).unwrap();
        assert_eq!(
            values,
            [
                None,
                Some("a:b\nc".to_owned()),
                None,
                Some("\u{e9}\u{1F600}".to_owned())
            ]
        );
        assert_eq!(names, "authorization\ncf-connecting-ip\nx-a");
        // A value that looks like the next entries is still one value.
        let (values, names) = parse_header_read("4:-3:x-", 2).unwrap();
        assert_eq!(values, [Some("-3:x".to_owned()), None]);
        assert_eq!(names, "");
        assert_eq!(parse_header_read("host", 0).unwrap(), (vec![], "host"));
        // Anything else is not taken (the headers are then read one by one).
        for bad in [
            "",
            "x",
            "9:short",
            "1:\u{1F600}",
            "1x:a",
            "+1:a",
            ":a",
            "-Host",
            "-a\n\nb",
        ] {
            assert!(parse_header_read(bad, 1).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_forward_text_holds_only_printable_ascii_parts_in_order() {
        let mut t = ForwardText::new("id1", "GET", "http://o.test/a?b=c").unwrap();
        t.delete("host").unwrap();
        t.set("x-verified-user", "user: alice\t1").unwrap();
        t.set("x-empty", "").unwrap();
        t.delete("x_verified_user").unwrap();
        assert_eq!(
            t.into_string(),
            "id1\nGET\nhttp://o.test/a?b=c\ndhost\nsx-verified-user\nuser: alice\t1\n\
             sx-empty\n\ndx_verified_user"
        );
        let mut t = ForwardText::new("id1", "GET", "http://o.test/").unwrap();
        // A claim value holding a separator could otherwise add a header of its own choosing.
        for bad in [
            "a\nsx-verified-admin\ntrue",
            "a\rb",
            "a\0b",
            "caf\u{e9}",
            "\u{7f}",
        ] {
            assert_eq!(t.set("x-a", bad), Err(Unsendable), "{bad:?}");
            assert_eq!(t.set(bad, "v"), Err(Unsendable), "{bad:?}");
            assert_eq!(t.delete(bad), Err(Unsendable), "{bad:?}");
            assert!(
                ForwardText::new("id", bad, "http://o.test/").is_err(),
                "{bad:?}"
            );
            assert!(ForwardText::new("id", "GET", bad).is_err(), "{bad:?}");
        }
        assert!(t.set("", "v").is_err() && t.delete("").is_err());
        assert!(t.set("x-a\t", "v").is_err(), "no tab in a name");
        // Nothing refused was written.
        assert_eq!(t.into_string(), "id1\nGET\nhttp://o.test/");
    }
}
