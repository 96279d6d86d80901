//! The nonce store's wire protocol and its pure rules, shared by both sides: the Worker
//! (`src/edge/replay.rs`) writes requests with these types, the Durable Object
//! (`src/edge/nonce_store.rs`) reads them with the same types and [`accept`].
//!
//! `POST https://nonce-store/<op>` with a JSON body [`Record`], answered with [`Answer`]:
//! - `consume`: a challenge or DPoP nonce was used. Recorded in `used_nonces` until its expiry;
//!   `ok` is true only the first time (insert if absent). Nonces are not stored when issued
//!   (they are MACed, `src/gate/nonce.rs`), only when first used.
//! - `seen`: a replay id (`(iss, jti)` of a `replay = "jti"` provider, a DPoP proof `jti`);
//!   `ok` is true the first time it is seen until `exp`.
//!
//! All three fields are required, with exactly these JSON types: a missing, malformed or
//! implausible field is refused (400 from the store, 503 at the Worker), never read as 0. What is
//! stored is capped ([`keep_until`]), so the sweep alarm is always a valid time whatever `exp`
//! says.

#[cfg(test)]
use serde::Serialize;

/// The object's base URL (its host is never resolved: a stub's fetch goes to the object).
pub const BASE_URL: &str = "https://nonce-store/";

/// Longest a record is kept: 400 days. Challenge and DPoP nonces live at most an hour
/// (`challenge_ttl_secs` ≤ 3600), DPoP proof `jti`s as long; a `replay = "jti"` token whose
/// `exp` (plus skew) lies further ahead than this is refused by the pipeline
/// (`lifetime_too_long`), so capping never shortens a record a token still needs.
pub const MAX_RECORD_SECS: i64 = 400 * 86_400;

/// Most the Worker's `now` may differ from the store's clock. Both run on Cloudflare's
/// synchronised clocks; the Worker's `now` is taken when its request starts, so it may be a few
/// seconds old (a key fetch, WebCrypto) by the time the store sees it.
pub const MAX_CLOCK_DIFF_SECS: i64 = 120;

/// Rows are swept this long after their expiry, by the store's clock: covers a store clock
/// ahead of a Worker's (which accepts a nonce until its expiry by its own clock).
pub const CLOCK_MARGIN_SECS: i64 = 10;

/// Longest store key accepted (nonce ids are 22 characters, replay ids 43).
pub const MAX_ID: usize = 128;

/// The two operations, and the table each one writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Record a nonce's first use.
    Consume,
    /// Record a replay id's first sighting.
    Seen,
}

impl Op {
    /// From the request path (`/consume`, `/seen`).
    pub fn from_path(path: &str) -> Option<Op> {
        match path {
            "/consume" => Some(Op::Consume),
            "/seen" => Some(Op::Seen),
            _ => None,
        }
    }

    /// The URL the Worker calls.
    pub fn url(self) -> &'static str {
        match self {
            Op::Consume => "https://nonce-store/consume",
            Op::Seen => "https://nonce-store/seen",
        }
    }

    /// The SQL table of its records.
    pub fn table(self) -> &'static str {
        match self {
            Op::Consume => "used_nonces",
            Op::Seen => "seen",
        }
    }
}

/// One request: record `id` until `exp`; `now` is the Worker's time (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
pub struct Record {
    pub id: String,
    pub exp: i64,
    pub now: i64,
}

impl Record {
    /// The JSON body (what serde would write; written by hand to keep another serializer out of
    /// the wasm). `id` is written as it is: the Worker's ids are base64url, and [`accept`]
    /// refuses anything else.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"id\":\"{}\",\"exp\":{},\"now\":{}}}",
            self.id, self.exp, self.now
        )
    }
}

/// The answer: `ok` is true the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
}

impl Answer {
    /// `{"ok":true}` or `{"ok":false}`.
    pub fn to_json(self) -> &'static str {
        if self.ok {
            r#"{"ok":true}"#
        } else {
            r#"{"ok":false}"#
        }
    }

    /// Exactly `{"ok": <bool>}` (strict JSON, any spacing); anything else is `None`.
    pub fn from_json(body: &str) -> Option<Answer> {
        let map = crate::jose::json::parse_object(body.as_bytes()).ok()?;
        let ok = map.get("ok")?.as_bool()?;
        (map.len() == 1).then_some(Answer { ok })
    }
}

/// Why the store refused a request (answered 400; the Worker then fails closed with 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not the JSON object of [`Record`] (missing field, wrong type, unknown field, syntax).
    Body,
    /// Empty, too long, or not base64url.
    Id,
    /// Not within [`MAX_CLOCK_DIFF_SECS`] of the store's clock.
    Now,
    /// Already past at `now`.
    Exp,
}

/// What the store writes for an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    /// When the record ends (unix seconds), capped by [`keep_until`].
    pub exp: i64,
    /// The Worker's time, for telling an ended record (overwritten) from a live one.
    pub now: i64,
}

/// The body as a [`Record`]: a JSON object with exactly the three members, no duplicate, `id` a
/// string and `exp`, `now` integers within i64 (read with the strict parser of the JOSE core,
/// so no second JSON deserializer is compiled into the wasm).
fn record(body: &str) -> Option<Record> {
    let map = crate::jose::json::parse_object(body.as_bytes()).ok()?;
    if map.len() != 3 {
        return None;
    }
    Some(Record {
        id: map.get("id")?.as_str()?.to_owned(),
        exp: map.get("exp")?.as_i64()?,
        now: map.get("now")?.as_i64()?,
    })
}

/// Check a request body against the store's clock (`store_now`, unix seconds).
pub fn accept(body: &str, store_now: i64) -> Result<Row, Refusal> {
    let record = record(body).ok_or(Refusal::Body)?;
    let id_ok = !record.id.is_empty()
        && record.id.len() <= MAX_ID
        && record
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err(Refusal::Id);
    }
    if record.now <= 0 || record.now.abs_diff(store_now) > MAX_CLOCK_DIFF_SECS.unsigned_abs() {
        return Err(Refusal::Now);
    }
    if record.exp < record.now {
        return Err(Refusal::Exp);
    }
    Ok(Row {
        exp: keep_until(record.exp, record.now),
        id: record.id,
        now: record.now,
    })
}

/// How long a record requested until `exp` at `now` is kept: `exp`, but never more than
/// [`MAX_RECORD_SECS`] ahead.
pub fn keep_until(exp: i64, now: i64) -> i64 {
    exp.min(now.saturating_add(MAX_RECORD_SECS))
}

/// When the sweep should run for a row ending at `exp` (unix seconds), in unix milliseconds:
/// after the clock margin, plus `slack_ms` so one alarm deletes many rows.
pub fn sweep_at_ms(exp: i64, slack_ms: i64) -> i64 {
    exp.saturating_add(CLOCK_MARGIN_SECS)
        .saturating_add(1)
        .saturating_mul(1000)
        .saturating_add(slack_ms)
}

/// The rows a sweep at `store_now` deletes: those that ended before this (exclusive).
pub fn sweep_before(store_now: i64) -> i64 {
    store_now.saturating_sub(CLOCK_MARGIN_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn body(id: &str, exp: i64, now: i64) -> String {
        let record = Record {
            id: id.into(),
            exp,
            now,
        };
        // The hand-written form is exactly serde's.
        assert_eq!(record.to_json(), serde_json::to_string(&record).unwrap());
        record.to_json()
    }

    #[test]
    fn a_well_formed_request_is_accepted_as_is() {
        let row = accept(&body("abc-_Z09", NOW + 120, NOW), NOW).unwrap();
        assert_eq!(
            row,
            Row {
                id: "abc-_Z09".into(),
                exp: NOW + 120,
                now: NOW
            }
        );
        // The Worker's clock may lag or lead the store's a little.
        assert!(accept(&body("a", NOW + 1, NOW), NOW + MAX_CLOCK_DIFF_SECS).is_ok());
        assert!(accept(&body("a", NOW + 1, NOW), NOW - MAX_CLOCK_DIFF_SECS).is_ok());
        // exp == now is still live (a nonce is accepted up to its expiry second).
        assert!(accept(&body("a", NOW, NOW), NOW).is_ok());
    }

    #[test]
    fn missing_or_malformed_fields_are_refused_never_zero() {
        for text in [
            r#"{"id":"a","exp":1700000100}"#,
            r#"{"id":"a","now":1700000000}"#,
            r#"{"exp":1700000100,"now":1700000000}"#,
            r#"{"id":"a","exp":"1700000100","now":1700000000}"#,
            r#"{"id":"a","exp":1700000100,"now":1700000000.5}"#,
            r#"{"id":"a","exp":1700000100,"now":null}"#,
            r#"{"id":"a","exp":1e30,"now":1700000000}"#,
            r#"{"id":"a","exp":1700000100,"now":1700000000,"extra":1}"#,
            r#"{"id":1,"exp":1700000100,"now":1700000000}"#,
            r#"{"id":"a","exp":1700000100,"now":1700000000,"now":1700000000}"#,
            r#"{"id":"a","exp":18446744073709551615,"now":1700000000}"#,
            r#"{"id":"a","exp":1700000100,"now":1700000000} x"#,
            r#"[]"#,
            "",
            "not json",
        ] {
            assert_eq!(accept(text, NOW), Err(Refusal::Body), "{text}");
        }
    }

    #[test]
    fn ids_clocks_and_past_expiries_are_checked() {
        for id in ["", "a b", "a.b", "a/b", "é", &"a".repeat(MAX_ID + 1)] {
            assert_eq!(
                accept(&body(id, NOW + 1, NOW), NOW),
                Err(Refusal::Id),
                "{id:?}"
            );
        }
        assert!(accept(&body(&"a".repeat(MAX_ID), NOW + 1, NOW), NOW).is_ok());
        for now in [
            0,
            -5,
            NOW - MAX_CLOCK_DIFF_SECS - 1,
            NOW + MAX_CLOCK_DIFF_SECS + 1,
            i64::MAX,
        ] {
            assert_eq!(
                accept(&body("a", i64::MAX, now), NOW),
                Err(Refusal::Now),
                "{now}"
            );
        }
        assert_eq!(accept(&body("a", NOW - 1, NOW), NOW), Err(Refusal::Exp));
        assert_eq!(accept(&body("a", i64::MIN, NOW), NOW), Err(Refusal::Exp));
    }

    #[test]
    fn what_is_stored_is_capped_so_the_alarm_is_always_valid() {
        // The largest time a JavaScript Date (and so a Durable Object alarm) can hold.
        const MAX_DATE_MS: i64 = 8_640_000_000_000_000;
        for exp in [
            i64::MAX,
            i64::MAX - 1,
            NOW + MAX_RECORD_SECS + 1,
            253_402_300_800,
        ] {
            let row = accept(&body("a", exp, NOW), NOW).unwrap();
            assert_eq!(row.exp, NOW + MAX_RECORD_SECS, "{exp}");
            let at = sweep_at_ms(row.exp, 5_000);
            assert!(at > NOW * 1000 && at < MAX_DATE_MS, "{at}");
        }
        // Below the cap nothing changes.
        assert_eq!(keep_until(NOW + 3600, NOW), NOW + 3600);
        assert_eq!(
            keep_until(NOW + MAX_RECORD_SECS, NOW),
            NOW + MAX_RECORD_SECS
        );
        // Even a store clock far in the future cannot overflow the alarm arithmetic.
        assert_eq!(sweep_at_ms(i64::MAX, 5_000), i64::MAX);
    }

    #[test]
    fn the_sweep_keeps_a_margin_past_expiry() {
        // A row ending at NOW is swept no earlier than CLOCK_MARGIN_SECS later.
        assert!(sweep_at_ms(NOW, 0) >= (NOW + CLOCK_MARGIN_SECS) * 1000);
        assert_eq!(sweep_before(NOW + CLOCK_MARGIN_SECS), NOW);
        // A sweep at the alarm time deletes the row (exp < sweep_before(alarm time)).
        let alarm_secs = sweep_at_ms(NOW, 5_000) / 1000;
        assert!(NOW < sweep_before(alarm_secs));
    }

    #[test]
    fn answers_round_trip_and_nothing_else_is_one() {
        for ok in [true, false] {
            let text = Answer { ok }.to_json();
            assert_eq!(Answer::from_json(text), Some(Answer { ok }));
            assert_eq!(text, serde_json::json!({ "ok": ok }).to_string());
        }
        assert_eq!(
            Answer::from_json(r#"{ "ok" : true }"#),
            Some(Answer { ok: true })
        );
        for bad in [
            "",
            "true",
            r#"{"ok":1}"#,
            r#"{"ok":"true"}"#,
            r#"{"ok":true,"x":1}"#,
            r#"{"ok":true,"ok":false}"#,
            r#"{}"#,
        ] {
            assert_eq!(Answer::from_json(bad), None, "{bad}");
        }
    }

    #[test]
    fn ops_and_paths() {
        for op in [Op::Consume, Op::Seen] {
            let path = op
                .url()
                .strip_prefix(BASE_URL.trim_end_matches('/'))
                .unwrap();
            assert_eq!(Op::from_path(path), Some(op));
        }
        assert_eq!(Op::from_path("/issue"), None);
        assert_ne!(Op::Consume.table(), Op::Seen.table());
    }
}
