//! The streaming JSON transformer: an incremental, strict tokenizer fed the origin's body in
//! chunks of any size, writing the masked document as it goes.
//!
//! - Strict RFC 8259: one value, optional insignificant whitespace around it; no BOM, no
//!   comments, no trailing commas; strings are valid UTF-8 without raw control characters,
//!   with valid escapes (a `\u` surrogate must be a correct pair); a number that does not fit a
//!   finite double (what serde_json refuses, `1e400`) is an error; duplicate member names in an
//!   object (compared after unescaping) are an error.
//! - Fixed memory ([`Limits`]): nesting depth, the length of one string, number or member name,
//!   and the member names kept for the duplicate check of the objects open at one time. Whatever
//!   the body's size, the transformer holds at most one string (only for a value it hashes or
//!   cuts to its last four characters, or a member name), one number, the open containers and
//!   their member names; a passed-through string is copied as it streams.
//! - Output: compact JSON (insignificant whitespace dropped), strings and numbers copied as the
//!   origin wrote them, member names re-encoded from their decoded form. A value's fate is
//!   known when it starts (its member name or index decides), so nothing of a masked value is
//!   ever written; an error stops the output where it is (the caller never passes on a
//!   document that did not end cleanly: `src/edge/mask.rs`).

use std::borrow::Cow;
use std::collections::HashSet;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::policy::{Mask, MaskAction, MaskRule, PathStep};

/// The fixed limits of one transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of objects and arrays.
    pub max_depth: usize,
    /// Longest string value, in bytes as written (escapes included).
    pub max_string: usize,
    /// Longest number literal, in bytes.
    pub max_number: usize,
    /// Longest member name, in bytes as written.
    pub max_key: usize,
    /// Most bytes of member names kept for the duplicate check (each name counts its length
    /// plus 32) over the objects open at one time.
    pub max_key_bytes: usize,
    /// Most bytes of (decompressed) input: the bound against a compression bomb.
    pub max_input: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_string: 1 << 20,
            max_number: 512,
            max_key: 1024,
            max_key_bytes: 1 << 20,
            max_input: 32 << 20,
        }
    }
}

/// Why a document could not be transformed. Every one fails the response closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskError {
    /// Not JSON: an unexpected byte.
    Syntax,
    /// A string that is not valid UTF-8.
    InvalidUtf8,
    /// A raw control character in a string, or a bad escape (lone surrogate included).
    BadString,
    /// The body ended before the document did (or was empty).
    Truncated,
    /// A number outside the range of a double.
    NumberOverflow,
    /// A member name twice in one object.
    DuplicateKey,
    /// Deeper than [`Limits::max_depth`].
    TooDeep,
    /// A string, number or member name longer than its limit.
    ValueTooLarge,
    /// More member names open at once than [`Limits::max_key_bytes`] allows.
    TooManyKeys,
    /// More input than [`Limits::max_input`].
    BodyTooLarge,
}

impl MaskError {
    /// The log line's reason.
    pub fn reason(self) -> &'static str {
        match self {
            MaskError::Syntax => "mask_syntax",
            MaskError::InvalidUtf8 => "mask_invalid_utf8",
            MaskError::BadString => "mask_bad_string",
            MaskError::Truncated => "mask_truncated",
            MaskError::NumberOverflow => "mask_number_overflow",
            MaskError::DuplicateKey => "mask_duplicate_key",
            MaskError::TooDeep => "mask_too_deep",
            MaskError::ValueTooLarge => "mask_value_too_large",
            MaskError::TooManyKeys => "mask_too_many_keys",
            MaskError::BodyTooLarge => "mask_body_too_large",
        }
    }

    /// A limit of this transformer, not a fault of the JSON itself (a strict parser without
    /// these limits could accept the document).
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            MaskError::TooDeep
                | MaskError::ValueTooLarge
                | MaskError::TooManyKeys
                | MaskError::BodyTooLarge
        )
    }
}

/// The HMAC key of the `hash` action.
#[derive(Clone)]
pub struct HashKey(Hmac<Sha256>);

impl core::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    /// `None` for a key shorter than 32 bytes.
    pub fn new(key: &[u8]) -> Option<Self> {
        if key.len() < 32 {
            return None;
        }
        Hmac::<Sha256>::new_from_slice(key).ok().map(HashKey)
    }

    /// `h:` and the first 16 bytes of HMAC-SHA-256(key, `tag` `:` `value`), base64url: the
    /// same value always maps to the same token; `tag` is `s` (string), `n` (number, as
    /// serde_json's `Number` displays it: `1.0`, `100`, `1e+21`) or `l` (`true`, `false`, `null`).
    pub fn token(&self, tag: u8, value: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(&[tag, b':']);
        mac.update(value);
        let out = mac.finalize().into_bytes();
        format!(
            "h:{}",
            crate::jose::b64::encode(out.get(..16).unwrap_or_default())
        )
    }
}

/// Objects with at most this many members check duplicates by a scan of one buffer (no
/// allocation or hash per name); larger ones move their names into a hash set.
const SMALL_OBJECT: usize = 24;

/// A state of one rule's path: rule `r` has matched its first `i` steps.
type St = (u16, u8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
}

struct Frame {
    kind: Kind,
    /// Nothing of this container is written (it is masked, or inside a masked value).
    silent: bool,
    /// The path states its children start from.
    states: Vec<St>,
    /// Which children a rule may end at, for a quick "no": a rule's last step in `states`
    /// names a member of this length (bit `len`, names of 64 bytes or more in bit 63) ...
    final_lens: u64,
    /// ... or takes any member or element (`*`, `[n]`).
    final_any: bool,
    /// Children written so far (for the commas).
    written: u64,
    /// The next element's index.
    index: u64,
    /// The member names seen, for the duplicate check: the first [`SMALL_OBJECT`] in one
    /// buffer (`names`, `spans`: start and length), compared by a scan; past that all in `keys`.
    names: Vec<u8>,
    spans: Vec<(usize, usize)>,
    keys: HashSet<Vec<u8>>,
    key_bytes: usize,
}

/// What happens to the value about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Pass,
    /// Parsed, nothing written (dropped, inside a masked value, or already replaced).
    Silent,
    Hash,
    Last4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// A member's value (after its name and colon).
    Value,
    /// An array element after `,` (its fate is decided when it starts).
    Elem,
    /// Just after `[`: an element or `]`.
    ValueOrClose,
    /// Just after `{`: a member name or `}`.
    KeyOrClose,
    /// After `,` in an object.
    Key,
    Colon,
    /// After a value inside a container: `,` or the close.
    After,
    /// The document is complete: only whitespace may follow.
    End,
    // Inside a token (from here on: whitespace is not insignificant).
    Str,
    Num,
    Lit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    No,
    Backslash,
    /// `\u` and `n` hex digits of `v` so far; `low`: the second half of a surrogate pair.
    Hex {
        n: u8,
        v: u32,
        low: bool,
    },
    /// After a high surrogate: expecting `\`, then `u`.
    PairBackslash,
    PairU,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrTo {
    Key,
    Emit,
    Silent,
    /// Decoded into `sbuf` (hash, last4).
    Collect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumSt {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

/// Masked values per rule, in the order of the route's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub Vec<u32>);

impl Counts {
    pub fn total(&self) -> u64 {
        self.0.iter().map(|&c| u64::from(c)).sum()
    }
}

/// The streaming transformer of one response.
pub struct Transformer<'m> {
    mask: Cow<'m, Mask>,
    key: Option<HashKey>,
    limits: Limits,
    lex: Lex,
    frames: Vec<Frame>,
    depth: usize,
    act: Act,
    /// The rule that masks the current value (for hash / last4 output).
    rule: usize,
    /// The rule that masks the value about to start, when it is written (replaced).
    masked: Option<usize>,
    // string state
    esc: Esc,
    str_to: StrTo,
    str_len: usize,
    /// The string has no escape: its decoded bytes are the bytes as written.
    str_raw: bool,
    /// Bytes of member names kept over the open objects (the sum of their `key_bytes`).
    key_bytes: usize,
    /// The innermost open container is silent (nothing of it is written).
    silent_top: bool,
    hi: u32,
    utf8_need: u8,
    utf8_lo: u8,
    utf8_hi: u8,
    utf8_cp: u32,
    sbuf: Vec<u8>,
    // number state
    num: NumSt,
    nbuf: Vec<u8>,
    // literal state
    lit: &'static [u8],
    lit_pos: usize,
    seen: u64,
    counts: Counts,
    failed: Option<MaskError>,
}

/// A byte that stands for itself inside a string: printable ASCII but `"` and `\\`.
#[inline(always)]
fn plain_ascii(c: u8) -> bool {
    (0x20..0x80).contains(&c) && c != b'"' && c != b'\\'
}

/// How many bytes at the start of `s` stand for themselves in a string ([`plain_ascii`]):
/// eight at a time (the lowest flagged byte of a word is exact: a borrow only runs upwards
/// from a byte that is itself flagged).
fn plain_run(s: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let w = u64::from_le_bytes(word);
        let stop = (w & HI)
            | (w.wrapping_sub(0x20 * LO) & !w & HI)
            | zero(w ^ (u64::from(b'"') * LO))
            | zero(w ^ (u64::from(b'\\') * LO));
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let rest = s.get(i..).unwrap_or_default();
    i + rest
        .iter()
        .position(|&c| !plain_ascii(c))
        .unwrap_or(rest.len())
}

#[inline(always)]
fn ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Write `s` as a JSON string literal.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_json_chars(out, s);
    out.push(b'"');
}

/// `last4` ([`last4`]) of `text`, written as a JSON string literal (no allocation).
pub fn write_last4(out: &mut Vec<u8>, text: &str) {
    let tail = if text.is_ascii() {
        // (One byte per character.)
        match text.len().checked_sub(4) {
            Some(at) if at > 0 => text.get(at..).unwrap_or_default(),
            _ => "",
        }
    } else {
        // The start of the fourth character from the end, when a fifth one precedes it.
        let mut rev = text.char_indices().rev();
        let fourth = rev.nth(3).map(|(at, _)| at);
        match (fourth, rev.next()) {
            (Some(at), Some(_)) => text.get(at..).unwrap_or_default(),
            _ => "",
        }
    };
    out.extend_from_slice(b"\"****");
    write_json_chars(out, tail);
    out.push(b'"');
}

/// `s` escaped for the inside of a JSON string literal.
fn write_json_chars(out: &mut Vec<u8>, s: &str) {
    // The common case: nothing to escape.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let v = c as usize;
                out.extend_from_slice(b"\\u00");
                out.push(HEX.get(v >> 4).copied().unwrap_or(b'0'));
                out.push(HEX.get(v & 15).copied().unwrap_or(b'0'));
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// `last4` of a text: `****` and its last four characters (`****` alone for four or fewer).
pub fn last4(text: &str) -> String {
    let n = text.chars().count();
    let mut s = String::from("****");
    if n > 4 {
        s.extend(text.chars().skip(n - 4));
    }
    s
}

/// A number's state after one more byte, `None` when the byte does not continue the literal.
#[inline(always)]
fn number_next(st: NumSt, b: u8) -> Option<NumSt> {
    use NumSt::*;
    Some(match (st, b) {
        (Minus, b'0') => Zero,
        (Minus, b'1'..=b'9') => Int,
        (Int, b'0'..=b'9') => Int,
        (Zero | Int, b'.') => Dot,
        (Dot | Frac, b'0'..=b'9') => Frac,
        (Zero | Int | Frac, b'e' | b'E') => E,
        (E, b'+' | b'-') => ESign,
        (E | ESign | Exp, b'0'..=b'9') => Exp,
        _ => return None,
    })
}

/// The bit of a member name's length in [`Frame::final_lens`].
#[inline(always)]
fn len_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Whether `step` lets the child `key` (an object member) or `index` (an array element)
/// through.
#[inline(always)]
fn step_matches(step: &PathStep, key: Option<&[u8]>, index: u64) -> bool {
    match step {
        PathStep::Child(name) | PathStep::Descendant(name) => key == Some(name.as_bytes()),
        PathStep::Any => true,
        PathStep::Index(n) => key.is_none() && index == *n,
    }
}

/// The states a child container `key`/`index` of a container in `states` starts from, when
/// the child passes (no rule ends at it): each state a step further where its step lets the
/// child through, and every `..name` state as it is (it goes on looking deeper).
fn child_states(
    rules: &[MaskRule],
    states: &[St],
    key: Option<&[u8]>,
    index: u64,
    out: &mut Vec<St>,
) {
    for &(r, i) in states {
        let Some(rule) = rules.get(usize::from(r)) else {
            continue;
        };
        let Some(step) = rule.steps.get(usize::from(i)) else {
            continue;
        };
        if matches!(step, PathStep::Descendant(_)) && !out.contains(&(r, i)) {
            out.push((r, i));
        }
        let j = i + 1;
        if step_matches(step, key, index)
            && usize::from(j) < rule.steps.len()
            && !out.contains(&(r, j))
        {
            out.push((r, j));
        }
    }
}

impl<'m> Transformer<'m> {
    /// A transformer for `mask`; `key` keys the `hash` action (required when a rule hashes:
    /// without it a hashed value fails the document).
    pub fn new(mask: &'m Mask, key: Option<HashKey>, limits: Limits) -> Self {
        Self::with(Cow::Borrowed(mask), key, limits)
    }

    /// [`Transformer::new`] owning its copy of the rules (the Worker's stream outlives the
    /// request's borrow of the policy).
    pub fn owned(mask: Mask, key: Option<HashKey>, limits: Limits) -> Transformer<'static> {
        Transformer::with(Cow::Owned(mask), key, limits)
    }

    fn with(mask: Cow<'m, Mask>, key: Option<HashKey>, limits: Limits) -> Self {
        Transformer {
            key,
            limits,
            lex: Lex::Value,
            frames: Vec::new(),
            depth: 0,
            act: Act::Pass,
            rule: 0,
            masked: None,
            esc: Esc::No,
            str_to: StrTo::Emit,
            str_len: 0,
            str_raw: true,
            key_bytes: 0,
            silent_top: false,
            hi: 0,
            utf8_need: 0,
            utf8_lo: 0,
            utf8_hi: 0,
            utf8_cp: 0,
            sbuf: Vec::new(),
            num: NumSt::Zero,
            nbuf: Vec::new(),
            lit: b"",
            lit_pos: 0,
            seen: 0,
            counts: Counts(vec![0; mask.rules.len()]),
            failed: None,
            mask,
        }
    }

    /// Bytes the transformer holds on the heap right now (its buffers and open containers, by
    /// capacity): what the memory bound is about.
    pub fn retained_bytes(&self) -> usize {
        let frames: usize = self
            .frames
            .iter()
            .map(|f| {
                core::mem::size_of::<Frame>()
                    + f.states.capacity() * core::mem::size_of::<St>()
                    + f.keys.capacity() * (core::mem::size_of::<Vec<u8>>() + 1)
                    + f.keys.iter().map(Vec::capacity).sum::<usize>()
                    + f.names.capacity()
                    + f.spans.capacity() * core::mem::size_of::<(usize, usize)>()
            })
            .sum();
        frames + self.sbuf.capacity() + self.nbuf.capacity()
    }

    /// The rules.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// The values masked so far, per rule.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Transform the next chunk of the body, appending the output to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.seen = self.seen.saturating_add(input.len() as u64);
        let r = if self.seen > self.limits.max_input {
            Err(MaskError::BodyTooLarge)
        } else {
            self.run(input, out)
        };
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    /// The body ended: the document must be complete. Returns the counts.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<Counts, MaskError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        // A number at the top level ends with the body.
        if self.lex == Lex::Num && self.depth == 0 {
            if let Err(e) = self.end_number(out) {
                self.failed = Some(e);
                return Err(e);
            }
        }
        if self.lex != Lex::End {
            self.failed = Some(MaskError::Truncated);
            return Err(MaskError::Truncated);
        }
        Ok(self.counts.clone())
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            // Insignificant whitespace, between tokens (Str, Num and Lit are inside one).
            if ws(b) && (self.lex as u8) < (Lex::Str as u8) {
                i += 1;
                continue;
            }
            match self.lex {
                Lex::Str => {
                    i = self.string(input, i, out)?;
                    continue;
                }
                Lex::Num => {
                    i = self.number(input, i, i, out)?;
                    continue;
                }
                Lex::Lit => {
                    if self.lit.get(self.lit_pos) != Some(&b) {
                        return Err(MaskError::Syntax);
                    }
                    self.lit_pos += 1;
                    if self.lit_pos == self.lit.len() {
                        self.end_literal(out)?;
                    }
                }
                Lex::Value | Lex::Elem | Lex::ValueOrClose => {
                    if b == b']' && self.lex == Lex::ValueOrClose {
                        self.close(Kind::Array, out)?;
                    } else {
                        let elem = self.lex != Lex::Value;
                        self.begin_value(b, elem, out)?;
                        match self.lex {
                            Lex::Str => {
                                i = self.short_string(input, i + 1, out)?;
                                continue;
                            }
                            Lex::Num => {
                                i = self.number(input, i, i + 1, out)?;
                                continue;
                            }
                            _ => {}
                        }
                    }
                }
                Lex::KeyOrClose | Lex::Key => {
                    if b == b'}' && self.lex == Lex::KeyOrClose {
                        self.close(Kind::Object, out)?;
                    } else if b == b'"' {
                        // The common case: a plain ASCII name, all in this chunk, used from
                        // the input as it is.
                        let body = input.get(i + 1..).unwrap_or_default();
                        let n = plain_run(body);
                        if body.get(n) == Some(&b'"') && n <= self.limits.max_key {
                            let key = body.get(..n).unwrap_or_default();
                            if body.get(n + 1) == Some(&b':') {
                                // `"name":` as written, the colon taken with it.
                                self.member(key, input.get(i..i + n + 3), true, out)?;
                                self.lex = Lex::Value;
                                i += n + 3;
                            } else {
                                self.member(key, None, true, out)?;
                                i += n + 2;
                            }
                            continue;
                        }
                        self.begin_string(StrTo::Key);
                    } else {
                        return Err(MaskError::Syntax);
                    }
                }
                Lex::Colon => {
                    if b != b':' {
                        return Err(MaskError::Syntax);
                    }
                    self.lex = Lex::Value;
                }
                Lex::After => {
                    let kind = self
                        .depth
                        .checked_sub(1)
                        .and_then(|d| self.frames.get(d))
                        .map(|f| f.kind);
                    match (b, kind) {
                        (b',', Some(Kind::Object)) => self.lex = Lex::Key,
                        (b',', Some(Kind::Array)) => self.lex = Lex::Elem,
                        (b'}', Some(Kind::Object)) => self.close(Kind::Object, out)?,
                        (b']', Some(Kind::Array)) => self.close(Kind::Array, out)?,
                        _ => return Err(MaskError::Syntax),
                    }
                }
                Lex::End => return Err(MaskError::Syntax),
            }
            i += 1;
        }
        Ok(())
    }

    #[inline(always)]
    fn top(&mut self) -> Option<&mut Frame> {
        self.depth
            .checked_sub(1)
            .and_then(|d| self.frames.get_mut(d))
    }

    /// The fate of the child `key` (an object member) or `index` (an array element) of the
    /// current container: the rule that masks it (the strongest; the first listed among
    /// equals), if any. (Where a child that passes goes on in the paths is worked out only
    /// when it is a container: [`child_states`].)
    fn fate(&self, key: Option<&[u8]>, index: u64) -> Option<usize> {
        let rules = &self.mask.rules;
        let frame = self.frames.get(self.depth.checked_sub(1)?)?;
        // The common case: no rule ends at a child of this name's length, or at an element.
        if !frame.final_any && key.is_none_or(|k| frame.final_lens & len_bit(k.len()) == 0) {
            return None;
        }
        let mut best: Option<(usize, u8)> = None;
        for &(r, i) in &frame.states {
            let Some(rule) = rules.get(usize::from(r)) else {
                continue;
            };
            if usize::from(i) + 1 != rule.steps.len() {
                continue;
            }
            if !rule
                .steps
                .get(usize::from(i))
                .is_some_and(|step| step_matches(step, key, index))
            {
                continue;
            }
            let (r, strength) = (usize::from(r), rule.action.strength());
            if best.is_none_or(|(b, bs)| strength > bs || (strength == bs && r < b)) {
                best = Some((r, strength));
            }
        }
        best.map(|(r, _)| r)
    }

    /// Apply the fate of the child about to start; `Ok(true)`: it is written (a comma first
    /// where needed, the caller writes the member name).
    #[inline(always)]
    fn settle(&mut self, masked: Option<usize>, out: &mut Vec<u8>) -> bool {
        self.act = Act::Pass;
        if let Some(r) = masked {
            if let Some(c) = self.counts.0.get_mut(r) {
                *c = c.saturating_add(1);
            }
            self.rule = r;
            match self.mask.rules.get(r).map(|x| &x.action) {
                Some(MaskAction::Drop) | None => {
                    self.act = Act::Silent;
                    return false;
                }
                Some(MaskAction::Redact(_)) => self.act = Act::Silent,
                Some(MaskAction::Hash) => self.act = Act::Hash,
                Some(MaskAction::Last4) => self.act = Act::Last4,
            }
        }
        if let Some(f) = self.top() {
            if f.written > 0 {
                out.push(b',');
            }
            f.written += 1;
        }
        true
    }

    fn begin_value(&mut self, b: u8, elem: bool, out: &mut Vec<u8>) -> Result<(), MaskError> {
        if elem {
            let (silent, index, maybe) = match self.top() {
                Some(f) => {
                    f.index += 1;
                    (f.silent, f.index - 1, f.final_any)
                }
                None => (true, 0, false),
            };
            self.masked = None;
            if silent {
                self.act = Act::Silent;
            } else {
                // (Only `*` and `[n]` end at an element.)
                let masked = if maybe { self.fate(None, index) } else { None };
                if self.settle(masked, out) {
                    self.masked = masked;
                }
            }
        }
        if let Some(m) = self.masked.take() {
            self.write_replacement(m, b, out);
        }
        match b {
            b'{' | b'[' => {
                if self.depth >= self.limits.max_depth {
                    return Err(MaskError::TooDeep);
                }
                let kind = if b == b'{' { Kind::Object } else { Kind::Array };
                let silent = self.act != Act::Pass;
                if !silent {
                    out.push(b);
                }
                if self.frames.len() <= self.depth {
                    self.frames.push(Frame {
                        kind,
                        silent,
                        states: Vec::new(),
                        final_lens: 0,
                        final_any: false,
                        written: 0,
                        index: 0,
                        names: Vec::new(),
                        spans: Vec::new(),
                        keys: HashSet::new(),
                        key_bytes: 0,
                    });
                }
                // The paths' states in the new container: from the parent's and the member
                // name or the element's index (the parent's count of elements, less one) or,
                // at the top, every rule's first step.
                let (parents, rest) = self.frames.split_at_mut(self.depth);
                let sbuf = self.sbuf.as_slice();
                if let Some(f) = rest.first_mut() {
                    f.kind = kind;
                    f.silent = silent;
                    f.written = 0;
                    f.index = 0;
                    f.key_bytes = 0;
                    f.names.clear();
                    f.spans.clear();
                    f.keys.clear();
                    if f.keys.capacity() > 256 {
                        f.keys = HashSet::new();
                    }
                    f.states.clear();
                    if !silent {
                        match parents.last() {
                            None => f
                                .states
                                .extend((0..self.mask.rules.len()).map(|r| (r as u16, 0))),
                            Some(p) => {
                                // A member's name: the last one kept for the duplicate check
                                // (in a large object: in `sbuf`).
                                let child = if elem {
                                    None
                                } else if p.keys.is_empty() {
                                    p.spans
                                        .last()
                                        .and_then(|&(at, len)| p.names.get(at..at + len))
                                } else {
                                    Some(sbuf)
                                };
                                child_states(
                                    &self.mask.rules,
                                    &p.states,
                                    child,
                                    p.index.saturating_sub(1),
                                    &mut f.states,
                                )
                            }
                        }
                    }
                    (f.final_lens, f.final_any) = (0, false);
                    for &(r, i) in &f.states {
                        let Some(rule) = self.mask.rules.get(usize::from(r)) else {
                            continue;
                        };
                        if usize::from(i) + 1 != rule.steps.len() {
                            continue;
                        }
                        match rule.steps.get(usize::from(i)) {
                            Some(PathStep::Child(n) | PathStep::Descendant(n)) => {
                                f.final_lens |= len_bit(n.len());
                            }
                            Some(PathStep::Any | PathStep::Index(_)) => f.final_any = true,
                            None => {}
                        }
                    }
                }
                self.depth += 1;
                self.silent_top = silent;
                self.lex = if kind == Kind::Object {
                    Lex::KeyOrClose
                } else {
                    Lex::ValueOrClose
                };
            }
            b'"' => {
                let to = match self.act {
                    Act::Pass => StrTo::Emit,
                    Act::Silent => StrTo::Silent,
                    Act::Hash | Act::Last4 => StrTo::Collect,
                };
                self.begin_string(to);
            }
            b'-' | b'0'..=b'9' => {
                // (Its bytes are taken from the input by [`Transformer::number`].)
                self.nbuf.clear();
                self.num = match b {
                    b'-' => NumSt::Minus,
                    b'0' => NumSt::Zero,
                    _ => NumSt::Int,
                };
                self.lex = Lex::Num;
            }
            b't' | b'f' | b'n' => {
                self.lit = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.lit_pos = 1;
                self.lex = Lex::Lit;
            }
            _ => return Err(MaskError::Syntax),
        }
        Ok(())
    }

    /// A `redact` writes its replacement, and a container at a `hash`/`last4` path the default
    /// redaction, as the value starts.
    fn write_replacement(&mut self, masked: usize, first: u8, out: &mut Vec<u8>) {
        let Some(rule) = self.mask.rules.get(masked) else {
            return;
        };
        match &rule.action {
            MaskAction::Redact(text) => out.extend_from_slice(text.as_bytes()),
            MaskAction::Hash | MaskAction::Last4 if matches!(first, b'{' | b'[') => {
                out.extend_from_slice(crate::policy::compile::mask::DEFAULT_REDACTION.as_bytes());
                self.act = Act::Silent;
            }
            _ => {}
        }
    }

    /// A string begins (its opening quote read). A written one's quote is written by
    /// [`Transformer::short_string`], with the text where it can.
    fn begin_string(&mut self, to: StrTo) {
        self.str_to = to;
        self.str_len = 0;
        self.str_raw = true;
        self.esc = Esc::No;
        self.utf8_need = 0;
        self.sbuf.clear();
        self.lex = Lex::Str;
    }

    fn push_char(&mut self, c: u32) -> Result<(), MaskError> {
        if matches!(self.str_to, StrTo::Key | StrTo::Collect) {
            let c = char::from_u32(c).ok_or(MaskError::BadString)?;
            let mut buf = [0u8; 4];
            self.sbuf
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        Ok(())
    }

    /// Bytes of a string from `input[i..]`; returns where it stopped.
    fn string(
        &mut self,
        input: &[u8],
        mut i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, MaskError> {
        let limit = if self.str_to == StrTo::Key {
            self.limits.max_key
        } else {
            self.limits.max_string
        };
        while let Some(&b) = input.get(i) {
            // The common case: a run of plain ASCII.
            if self.esc == Esc::No && self.utf8_need == 0 {
                let run = plain_run(input.get(i..).unwrap_or_default());
                if run > 0 {
                    self.str_len += run;
                    if self.str_len > limit {
                        return Err(MaskError::ValueTooLarge);
                    }
                    let bytes = input.get(i..i + run).unwrap_or_default();
                    match self.str_to {
                        StrTo::Emit => out.extend_from_slice(bytes),
                        StrTo::Key | StrTo::Collect => self.sbuf.extend_from_slice(bytes),
                        StrTo::Silent => {}
                    }
                    i += run;
                    continue;
                }
            }
            i += 1;
            self.str_len += 1;
            if self.str_len > limit + 1 {
                return Err(MaskError::ValueTooLarge);
            }
            if self.str_to == StrTo::Emit {
                out.push(b);
            }
            if self.utf8_need > 0 {
                if b < self.utf8_lo || b > self.utf8_hi {
                    return Err(MaskError::InvalidUtf8);
                }
                self.utf8_lo = 0x80;
                self.utf8_hi = 0xBF;
                self.utf8_cp = (self.utf8_cp << 6) | u32::from(b & 0x3F);
                self.utf8_need -= 1;
                if self.utf8_need == 0 {
                    self.push_char(self.utf8_cp)?;
                }
                continue;
            }
            match self.esc {
                Esc::No => match b {
                    b'"' => {
                        self.end_string(out)?;
                        return Ok(i);
                    }
                    b'\\' => {
                        self.esc = Esc::Backslash;
                        self.str_raw = false;
                    }
                    0..=0x1F => return Err(MaskError::BadString),
                    0x20..=0x7F => self.push_char(u32::from(b))?,
                    _ => {
                        let (need, lo, hi, cp) = match b {
                            0xC2..=0xDF => (1, 0x80, 0xBF, b & 0x1F),
                            0xE0 => (2, 0xA0, 0xBF, b & 0x0F),
                            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF, b & 0x0F),
                            0xED => (2, 0x80, 0x9F, b & 0x0F),
                            0xF0 => (3, 0x90, 0xBF, b & 0x07),
                            0xF1..=0xF3 => (3, 0x80, 0xBF, b & 0x07),
                            0xF4 => (3, 0x80, 0x8F, b & 0x07),
                            _ => return Err(MaskError::InvalidUtf8),
                        };
                        self.utf8_need = need;
                        self.utf8_lo = lo;
                        self.utf8_hi = hi;
                        self.utf8_cp = u32::from(cp);
                    }
                },
                Esc::Backslash => {
                    let c = match b {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0C,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.esc = Esc::Hex {
                                n: 0,
                                v: 0,
                                low: false,
                            };
                            continue;
                        }
                        _ => return Err(MaskError::BadString),
                    };
                    self.esc = Esc::No;
                    self.push_char(u32::from(c))?;
                }
                Esc::Hex { n, v, low } => {
                    let d = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => return Err(MaskError::BadString),
                    };
                    let v = (v << 4) | u32::from(d);
                    if n < 3 {
                        self.esc = Esc::Hex { n: n + 1, v, low };
                        continue;
                    }
                    match (low, v) {
                        (false, 0xD800..=0xDBFF) => {
                            self.hi = v;
                            self.esc = Esc::PairBackslash;
                        }
                        (false, 0xDC00..=0xDFFF) => return Err(MaskError::BadString),
                        (false, _) => {
                            self.esc = Esc::No;
                            self.push_char(v)?;
                        }
                        (true, 0xDC00..=0xDFFF) => {
                            self.esc = Esc::No;
                            let c = 0x10000 + ((self.hi - 0xD800) << 10) + (v - 0xDC00);
                            self.push_char(c)?;
                        }
                        (true, _) => return Err(MaskError::BadString),
                    }
                }
                Esc::PairBackslash => {
                    if b != b'\\' {
                        return Err(MaskError::BadString);
                    }
                    self.esc = Esc::PairU;
                }
                Esc::PairU => {
                    if b != b'u' {
                        return Err(MaskError::BadString);
                    }
                    self.esc = Esc::Hex {
                        n: 0,
                        v: 0,
                        low: true,
                    };
                }
            }
        }
        Ok(i)
    }

    fn end_string(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        match self.str_to {
            StrTo::Key => return self.end_key(out),
            StrTo::Collect => {
                let text = core::str::from_utf8(&self.sbuf).map_err(|_| MaskError::InvalidUtf8)?;
                match self.act {
                    Act::Hash => write_json_str(out, &self.hash(b's', text.as_bytes())?),
                    _ => write_last4(out, text),
                }
            }
            StrTo::Emit | StrTo::Silent => {}
        }
        self.end_value();
        Ok(())
    }

    fn hash(&self, tag: u8, value: &[u8]) -> Result<String, MaskError> {
        // The executor refuses the request before forwarding when the key is missing; a
        // transformer without one fails the document rather than pass the value.
        self.key
            .as_ref()
            .map(|k| k.token(tag, value))
            .ok_or(MaskError::Syntax)
    }

    fn end_key(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        let key = std::mem::take(&mut self.sbuf);
        let r = self.member(&key, None, self.str_raw, out);
        // The buffer is reused for the next string (and holds the name until its value
        // starts: a container's path states in a large object need it).
        self.sbuf = key;
        r
    }

    /// A member name `key` (decoded) ended: the duplicate check, its value's fate, the name
    /// written when the member is. `quoted`: what to write then, the name as written with its
    /// quotes and the colon, when it can be copied as is; `raw`: the name had no escape (its
    /// bytes are as written).
    fn member(
        &mut self,
        key: &[u8],
        quoted: Option<&[u8]>,
        raw: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), MaskError> {
        self.lex = Lex::Colon;
        self.masked = None;
        let open = self.key_bytes;
        let cost = key.len() + 32;
        let Some(f) = self
            .depth
            .checked_sub(1)
            .and_then(|d| self.frames.get_mut(d))
        else {
            return Err(MaskError::Syntax);
        };
        let duplicate = if f.keys.is_empty() {
            f.spans.iter().any(|&(at, len)| {
                len == key.len() && f.names.get(at..at + len).is_some_and(|n| n == key)
            })
        } else {
            f.keys.contains(key)
        };
        if duplicate {
            return Err(MaskError::DuplicateKey);
        }
        if open + cost > self.limits.max_key_bytes {
            return Err(MaskError::TooManyKeys);
        }
        f.key_bytes += cost;
        self.key_bytes = open + cost;
        // Kept for the duplicate check (and, the last one, for a container value's path states).
        if f.keys.is_empty() && f.spans.len() < SMALL_OBJECT {
            f.spans.push((f.names.len(), key.len()));
            f.names.extend_from_slice(key);
        } else {
            if f.keys.is_empty() {
                for &(at, len) in &f.spans {
                    f.keys
                        .insert(f.names.get(at..at + len).unwrap_or_default().to_vec());
                }
                f.spans.clear();
                f.names.clear();
            }
            f.keys.insert(key.to_vec());
            if quoted.is_some() {
                // (A name read by `end_key` is in `sbuf` already.)
                self.sbuf.clear();
                self.sbuf.extend_from_slice(key);
            }
        }
        if f.silent {
            self.act = Act::Silent;
            return Ok(());
        }
        // The common case: no rule ends at a name of this length here.
        let maybe = f.final_any || f.final_lens & len_bit(key.len()) != 0;
        let masked = if maybe { self.fate(Some(key), 0) } else { None };
        if self.settle(masked, out) {
            match quoted {
                Some(q) => out.extend_from_slice(q),
                None if raw => {
                    // As written: no quote, backslash or control character in it.
                    out.push(b'"');
                    out.extend_from_slice(key);
                    out.extend_from_slice(b"\":");
                }
                None => {
                    let text = core::str::from_utf8(key).map_err(|_| MaskError::InvalidUtf8)?;
                    write_json_str(out, text);
                    out.push(b':');
                }
            }
            // The replacement is written when the value starts (a container at a hash or
            // last4 path is redacted).
            self.masked = masked;
        }
        Ok(())
    }

    /// A string value just begun at `input[i..]`: the common case, plain ASCII up to its
    /// closing quote within this chunk, in one go; anything else goes on byte by byte
    /// ([`Transformer::string`]). Returns where it stopped.
    fn short_string(
        &mut self,
        input: &[u8],
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, MaskError> {
        let body = input.get(i..).unwrap_or_default();
        let n = plain_run(body);
        if body.get(n) != Some(&b'"') || n > self.limits.max_string {
            if self.str_to == StrTo::Emit {
                out.push(b'"');
            }
            return self.string(input, i, out);
        }
        match self.str_to {
            // The string as written, its quotes included (the opening one is `input[i - 1]`).
            StrTo::Emit => {
                out.extend_from_slice(input.get(i.saturating_sub(1)..=i + n).unwrap_or_default())
            }
            StrTo::Key | StrTo::Collect => self
                .sbuf
                .extend_from_slice(body.get(..n).unwrap_or_default()),
            StrTo::Silent => {}
        }
        if self.str_to == StrTo::Collect {
            self.end_string(out)?;
        } else {
            self.end_value();
        }
        Ok(i + n + 1)
    }

    /// A number's bytes from `input[i..]`: the literal began at `input[from..]` (`from <= i`)
    /// if it began in this chunk, else it is in `nbuf` so far. When it ends within the chunk
    /// it is finished (from the input as it is, when it all lies there); else what there is
    /// waits in `nbuf`. Returns where it stopped.
    fn number(
        &mut self,
        input: &[u8],
        from: usize,
        mut i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, MaskError> {
        let mut st = self.num;
        while let Some(next) = input.get(i).and_then(|&c| number_next(st, c)) {
            st = next;
            i += 1;
        }
        self.num = st;
        let run = input.get(from..i).unwrap_or_default();
        if self.nbuf.len() + run.len() > self.limits.max_number {
            return Err(MaskError::ValueTooLarge);
        }
        if i == input.len() {
            // It may go on in the next chunk.
            self.nbuf.extend_from_slice(run);
        } else if self.nbuf.is_empty() {
            // The delimiter is not part of the number: handled by the caller.
            self.number_done(run, out)?;
        } else {
            self.nbuf.extend_from_slice(run);
            self.end_number(out)?;
        }
        Ok(i)
    }

    /// The number in `nbuf` ended.
    fn end_number(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        let lit = std::mem::take(&mut self.nbuf);
        let r = self.number_done(&lit, out);
        self.nbuf = lit;
        self.nbuf.clear();
        r
    }

    /// The number literal `lit` ended (its grammar checked byte by byte, but for its end).
    fn number_done(&mut self, lit: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        if !matches!(
            self.num,
            NumSt::Zero | NumSt::Int | NumSt::Frac | NumSt::Exp
        ) {
            return Err(MaskError::Syntax);
        }
        // Without an exponent, a literal with at most 308 digits before its point is below
        // 1e308, a finite double: only an exponent can overflow (`1e400`, what serde_json
        // refuses). Such a number passes as written, unparsed.
        let finite = self.num != NumSt::Exp
            && (lit.len() <= 308 || lit.iter().take_while(|&&c| c != b'.').count() <= 308);
        let canonical = if finite && self.act != Act::Hash && self.act != Act::Last4 {
            None
        } else {
            // (The literal is ASCII: its grammar was checked byte by byte.)
            let text = core::str::from_utf8(lit).map_err(|_| MaskError::Syntax)?;
            let n: serde_json::Number =
                serde_json::from_str(text).map_err(|_| MaskError::NumberOverflow)?;
            // `Display`, as the policy's claim rules print numbers (one formatter in the Worker).
            Some(n.to_string())
        };
        match (self.act, canonical) {
            (Act::Pass, _) => out.extend_from_slice(lit),
            (Act::Hash, Some(c)) => write_json_str(out, &self.hash(b'n', c.as_bytes())?),
            (Act::Last4, Some(c)) => write_last4(out, &c),
            _ => {}
        }
        self.end_value();
        Ok(())
    }

    fn end_literal(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        let lit = self.lit;
        match self.act {
            Act::Pass => out.extend_from_slice(lit),
            Act::Hash => write_json_str(out, &self.hash(b'l', lit)?),
            Act::Last4 => write_last4(out, core::str::from_utf8(lit).unwrap_or("")),
            Act::Silent => {}
        }
        self.end_value();
        Ok(())
    }

    #[inline(always)]
    fn end_value(&mut self) {
        self.lex = if self.depth == 0 {
            Lex::End
        } else {
            Lex::After
        };
        // The next sibling starts from its container's fate.
        self.act = if self.silent_top {
            Act::Silent
        } else {
            Act::Pass
        };
    }

    fn close(&mut self, kind: Kind, out: &mut Vec<u8>) -> Result<(), MaskError> {
        let Some(f) = self.top() else {
            return Err(MaskError::Syntax);
        };
        if f.kind != kind {
            return Err(MaskError::Syntax);
        }
        let silent = f.silent;
        let kept = f.key_bytes;
        f.keys.clear();
        f.names.clear();
        f.spans.clear();
        f.key_bytes = 0;
        self.key_bytes = self.key_bytes.saturating_sub(kept);
        if !silent {
            out.push(if kind == Kind::Object { b'}' } else { b']' });
        }
        self.depth -= 1;
        self.silent_top = self
            .depth
            .checked_sub(1)
            .and_then(|d| self.frames.get(d))
            .is_some_and(|f| f.silent);
        self.end_value();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{last4, plain_ascii, plain_run, write_last4};

    #[test]
    fn write_last4_equals_last4_for_ascii_and_other_text() {
        let mut texts: Vec<String> = (0..12).map(|n| "0123456789ab"[..n].to_owned()).collect();
        // Every ASCII byte (controls and quotes escaped) in each of the last five places.
        for b in 0..0x80u8 {
            for at in 0..6 {
                let mut t = b"abcdef".to_vec();
                t[at] = b;
                texts.push(String::from_utf8(t).unwrap());
            }
        }
        texts.extend(
            [
                "caf\u{e9}s!",
                "\u{e9}\u{e9}\u{e9}\u{e9}",
                "x\u{1f600}\u{e9}\u{e9}\u{e9}",
                "\u{e9}abcd",
            ]
            .map(String::from),
        );
        for t in &texts {
            let mut out = Vec::new();
            write_last4(&mut out, t);
            let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(got, serde_json::Value::String(last4(t)), "{t:?}");
        }
    }

    #[test]
    fn the_word_at_a_time_scan_stops_where_the_byte_by_byte_one_does() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    let want = if plain_ascii(b) { len } else { at };
                    assert_eq!(plain_run(&s), want, "byte {b:#x} at {at} of {len}");
                    // A second stop further on changes nothing.
                    if at + 1 < len {
                        s[len - 1] = b'"';
                        let want = if plain_ascii(b) { len - 1 } else { at };
                        assert_eq!(
                            plain_run(&s),
                            want,
                            "byte {b:#x} at {at} of {len}, quote last"
                        );
                    }
                }
            }
        }
    }
}
