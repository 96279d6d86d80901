//! One structured JSON log line per decision (SPEC §5).
//!
//! Only identifiers go in: request id, route id, verdict, reason code, issuer, subject, the agent
//! (`act.sub`) chain, device id, token `jti`s, latency. Never a token, a signature, a secret or a
//! header value. Values that come from verified claims are bounded in length; JSON encoding
//! escapes control characters, so a claim cannot forge or split a log line.

use serde::Serialize;

/// Longest claim-derived value written to the log.
const MAX_FIELD: usize = 256;
/// Most entries in a list field.
const MAX_LIST: usize = 8;

#[derive(Debug, Default, Clone, Serialize)]
pub struct DecisionLog {
    pub attestgate: &'static str,
    pub request_id: String,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// `allow`, `public`, `deny` or `challenge`.
    pub verdict: &'static str,
    /// The gateway's own answer. Absent when the request was forwarded: the line is written
    /// when the decision is made, and the origin's answer is the origin's to log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The precise [`crate::Error::reason`] for a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issuer: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jti: Vec<String>,
    pub latency_ms: f64,
    /// On a sampled allow or public line (`[gateway] log_allow_sample` = N > 1): N, so that
    /// whoever counts lines can scale them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<u32>,
    // ---- issue 15: the declared intent ----
    /// SHA-256 (base64url) of the canonical declared intent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent_hash: Option<String>,
    /// The index of the detail that covered the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent_detail: Option<usize>,
    /// Which check or binding failed (names from the policy, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent_failed: Option<String>,
    /// The session's divergence score (routes with a budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<u32>,
    /// Which session budget refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_spent: Option<&'static str>,
    /// Issue 16: the id of the deny entry that refused the request (never its content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_entry: Option<String>,
    /// Issue 18: what the response mask did (counts and rule paths).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<crate::gate::mask::MaskRecord>,
}

impl DecisionLog {
    pub fn new(request_id: &str, method: &str, path: &str) -> Self {
        Self {
            attestgate: "decision",
            request_id: request_id.to_owned(),
            method: bounded(method),
            // The path only, never the query (it may carry credentials).
            path: bounded(path.split('?').next().unwrap_or_default()),
            verdict: "deny",
            ..Self::default()
        }
    }

    /// Record identifiers from one verified token's claims.
    pub fn add_claims(&mut self, claims: &serde_json::Map<String, serde_json::Value>) {
        if let Some(iss) = claims.get("iss").and_then(|v| v.as_str()) {
            push_bounded(&mut self.issuer, iss);
        }
        if self.subject.is_none() {
            self.subject = claims.get("sub").and_then(|v| v.as_str()).map(bounded);
        }
        if self.device.is_none() {
            self.device = claims.get("did").and_then(|v| v.as_str()).map(bounded);
        }
        if let Some(jti) = claims.get("jti").and_then(|v| v.as_str()) {
            push_bounded(&mut self.jti, jti);
        }
        for level in crate::policy::act::chain(claims) {
            if self.agent.len() >= MAX_LIST {
                break;
            }
            if let Some(sub) = level.sub() {
                self.agent.push(bounded(sub));
            }
        }
    }

    /// The JSON line, ASCII only ([`ascii_json`]).
    pub fn to_line(&self) -> String {
        match serde_json::to_string(self) {
            Ok(json) => ascii_json(json),
            Err(_) => String::from("{\"attestgate\":\"decision\"}"),
        }
    }
}

/// Rewrites every non-ASCII character of a JSON text as a `\uXXXX` escape (UTF-16; surrogate
/// pairs above U+FFFF). serde_json writes non-ASCII only inside string literals, so the result is
/// valid JSON with the same value, and a log line can never carry U+2028, U+2029, U+0085 or other
/// characters that some log consumers treat as line breaks (verified claims such as `sub` end up
/// in the line).
pub fn ascii_json(json: String) -> String {
    use core::fmt::Write;
    if json.is_ascii() {
        return json; // the usual case: nothing to rewrite, no copy
    }
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// A string as a JSON string literal, escaped exactly as serde_json escapes it.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// A JSON array of strings.
pub fn json_strs<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let members: Vec<String> = items.into_iter().map(json_str).collect();
    format!("[{}]", members.join(","))
}

/// A JSON object's text from its members (a plain name, the JSON text of the value), written in
/// the order given: give them sorted by name for the text `serde_json::json!` makes (its `Map`
/// keeps members sorted). The gateway's other JSON lines are made with this rather than
/// building a `serde_json::Value` for each (less code in the Worker).
pub fn json_object(members: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        out.push_str(value);
    }
    out.push('}');
    out
}

/// The decision line written straight into one buffer (issue 19): the same text as
/// [`DecisionLog::to_line`] gives for the same record — members in the same order, the same
/// skipping, bounding and escaping (`serde_json`'s, string by string) — without building the
/// record's owned strings and lists first. [`crate::gate::phase::Decision::log_line`] uses it;
/// its tests check it against [`DecisionLog`].
pub(crate) struct LineWriter {
    out: Vec<u8>,
}

impl LineWriter {
    pub(crate) fn new(request_id: &str, method: &str, path: &str) -> Self {
        let mut w = LineWriter {
            out: Vec::with_capacity(320),
        };
        w.out
            .extend_from_slice(b"{\"attestgate\":\"decision\",\"request_id\":");
        w.string(request_id);
        w.member("method");
        w.bounded(method);
        w.member("path");
        // The path only, never the query (it may carry credentials).
        w.bounded(path.split('?').next().unwrap_or_default());
        w
    }

    fn member(&mut self, name: &str) {
        self.out.push(b',');
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, s: &str) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, s);
    }

    fn bounded(&mut self, s: &str) {
        if s.len() <= MAX_FIELD {
            self.string(s);
        } else {
            self.string(&bounded(s));
        }
    }

    pub(crate) fn str_member(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.member(name);
            self.string(v);
        }
    }

    pub(crate) fn bounded_member(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.member(name);
            self.bounded(v);
        }
    }

    pub(crate) fn num_member<T: Serialize>(&mut self, name: &str, value: Option<T>) {
        if let Some(v) = value {
            self.member(name);
            let _ = serde_json::to_writer(&mut self.out, &v);
        }
    }

    /// A list member of at most [`MAX_LIST`] bounded values, without repeats where `dedupe`
    /// (as [`DecisionLog::add_claims`] makes `issuer` and `jti`), skipped when empty.
    pub(crate) fn list_member<'v>(
        &mut self,
        name: &str,
        values: impl Iterator<Item = &'v str>,
        dedupe: bool,
    ) {
        let mut seen: Vec<&str> = Vec::new();
        for v in values {
            if seen.len() >= MAX_LIST {
                break;
            }
            // `push_bounded` compares the value with the bounded values already kept.
            if dedupe && seen.iter().any(|s| bounded_eq(s, v)) {
                continue;
            }
            if seen.is_empty() {
                self.member(name);
                self.out.push(b'[');
            } else {
                self.out.push(b',');
            }
            self.bounded(v);
            seen.push(v);
        }
        if !seen.is_empty() {
            self.out.push(b']');
        }
    }

    pub(crate) fn value_member<T: Serialize>(&mut self, name: &str, value: Option<&T>) {
        if let Some(v) = value {
            self.member(name);
            let _ = serde_json::to_writer(&mut self.out, v);
        }
    }

    /// The line, ASCII only ([`ascii_json`]).
    pub(crate) fn finish(mut self) -> String {
        self.out.push(b'}');
        match String::from_utf8(self.out) {
            Ok(json) => ascii_json(json),
            Err(_) => String::from("{\"attestgate\":\"decision\"}"),
        }
    }
}

/// Whether [`bounded`]`(kept)` equals `value`, without allocating in the usual case.
fn bounded_eq(kept: &str, value: &str) -> bool {
    if kept.len() <= MAX_FIELD {
        kept == value
    } else {
        bounded(kept) == value
    }
}

fn push_bounded(list: &mut Vec<String>, value: &str) {
    if list.len() < MAX_LIST && !list.iter().any(|v| v == value) {
        list.push(bounded(value));
    }
}

pub fn bounded(value: &str) -> String {
    if value.len() <= MAX_FIELD {
        return value.to_owned();
    }
    let mut end = MAX_FIELD;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_only_and_escaped() {
        let mut log = DecisionLog::new("r1", "GET", "/v1/x?token=secret");
        let claims = json!({
            "iss": "https://idp", "sub": "user-1\r\n{\"forged\":1}", "jti": "j1", "did": "dev-9",
            "act": {"sub": "agent:planner", "act": {"sub": "agent:root"}}
        });
        log.add_claims(claims.as_object().unwrap());
        let line = log.to_line();
        assert!(!line.contains('\n') && !line.contains('\r'));
        assert!(!line.contains("secret"), "query must not be logged: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/v1/x");
        assert_eq!(v["agent"], json!(["agent:planner", "agent:root"]));
        assert_eq!(v["device"], "dev-9");
        assert_eq!(v["jti"], json!(["j1"]));
    }

    #[test]
    fn line_is_ascii_so_unicode_line_breaks_cannot_split_it() {
        let mut log = DecisionLog::new("r", "GET", "/é");
        let sub =
            "user\u{2028}{\"attestgate\":\"decision\",\"verdict\":\"allow\"}\u{2029}\u{85}é😀";
        let claims = json!({ "sub": sub });
        log.add_claims(claims.as_object().unwrap());
        let line = log.to_line();
        assert!(line.is_ascii(), "{line}");
        assert_eq!(line.lines().count(), 1);
        assert!(
            line.contains("\\u2028") && line.contains("\\ud83d\\ude00"),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["subject"], sub);
        assert_eq!(v["path"], "/é");
    }

    #[test]
    fn json_texts_are_the_ones_serde_json_makes() {
        let tricky = "q\"b\\s/\u{0}\u{1f}\n\r\t\u{7f}é\u{2028}😀";
        for s in ["", "plain", tricky] {
            assert_eq!(json_str(s), serde_json::Value::from(s).to_string());
        }
        assert_eq!(json_strs([]), json!([]).to_string());
        assert_eq!(json_strs(["a", tricky]), json!(["a", tricky]).to_string());
        let made = json_object(&[
            ("attestgate", &json_str("e")),
            ("index", "7"),
            ("kid", "null"),
            ("kids", &json_strs([tricky])),
            ("provider", &json_str(tricky)),
        ]);
        let want = json!({
            "provider": tricky, "kids": [tricky], "attestgate": "e", "index": 7, "kid": null
        });
        assert_eq!(made, want.to_string());
        assert_eq!(json_object(&[]), json!({}).to_string());
    }

    #[test]
    fn long_values_are_bounded() {
        let mut log = DecisionLog::new("r", "GET", "/");
        let claims = json!({"sub": "é".repeat(1000)});
        log.add_claims(claims.as_object().unwrap());
        assert!(log.subject.unwrap().len() <= MAX_FIELD + 3);
    }
}
