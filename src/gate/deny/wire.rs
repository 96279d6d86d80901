//! The deny entries' JSON form (the operator API's and the store's) and the deny store's
//! protocol, shared by the Worker (`src/edge/deny_store.rs`, client side) and the Durable
//! Object (same file, object side). Every body is read with the strict JSON parser (no
//! duplicate member, exact member sets, exact types); anything else is refused, never
//! defaulted.
//!
//! `POST https://deny-store/deny/<op>` on shard object `deny-shard-<n>`:
//! - `snapshot` `{"have": "<version>" | null}` → `{"version", "unchanged": true}` or
//!   `{"version", "complete", "entries": [{"key", "id", "fence"}]}` (at most [`MAX_SNAPSHOT`]);
//! - `lookup` `{"keys": ["<digest>", ...]}` → `{"entries": [{"key", "id", "fence"}]}`;
//! - `put` `{"key": "<digest>", "entry": <entry>}` → `{"ok": true}`;
//! - `get` / `delete` `{"id"}` → `{"entry": <entry> | null}`;
//! - `list` `{"after": "<id>" | null, "limit": n}` → `{"entries": [<entry>...]}`, by id.

use serde_json::{Map, Value};

use super::view::Refresh;
use super::{Hit, Key, Kind, Source};
use crate::gate::log::{json_object, json_str};
use crate::gate::operator::OperatorId;

/// Most entries a snapshot carries: a shard with more is looked up per request.
pub const MAX_SNAPSHOT: usize = 5_000;
/// Most keys of one lookup (a request's keys: a few per credential and actor).
pub const MAX_LOOKUP: usize = 256;
/// Longest key value (`sub`, `jti`, agent, ...), in bytes.
pub const MAX_VALUE: usize = 1_024;
/// Longest reason.
pub const MAX_REASON: usize = 256;
/// Most entries of one list page.
pub const MAX_PAGE: u32 = 500;

/// A deny entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `<shard, two digits><random>`: the id says which shard holds it.
    pub id: String,
    pub kind: Kind,
    /// One per [`Kind::fields`], in order.
    pub values: Vec<String>,
    pub reason: String,
    pub source: Source,
    /// Unix seconds.
    pub created: i64,
    /// Allowed until this time (unix seconds), refused from it on; none: refused now.
    pub fence: Option<i64>,
    /// Who made it: the operator, or the transmitter (`iss`) and SET (`sub` = its `jti`).
    pub by: Option<OperatorId>,
}

impl Entry {
    /// Its key over `shards` shards.
    pub fn key(&self, shards: u8) -> Key {
        let values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        Key::new(self.kind, &values, shards)
    }

    /// The shard its id names.
    pub fn shard_of(id: &str) -> Option<u8> {
        let digits = id.get(..2)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// A well-formed id: two digits, then 1..=64 base64url characters.
    pub fn valid_id(id: &str) -> bool {
        Entry::shard_of(id).is_some()
            && id.len() > 2
            && id.len() <= 66
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// The JSON text (members in a fixed order).
    pub fn to_json(&self) -> String {
        let mut members: Vec<(&str, String)> = vec![
            ("id", json_str(&self.id)),
            ("kind", json_str(self.kind.as_str())),
        ];
        for (name, value) in self.kind.fields().iter().zip(&self.values) {
            members.push((name, json_str(value)));
        }
        members.push(("reason", json_str(&self.reason)));
        members.push(("source", json_str(self.source.as_str())));
        members.push(("created", self.created.to_string()));
        members.push((
            "fence",
            self.fence
                .map_or_else(|| "null".to_owned(), |f| f.to_string()),
        ));
        let by = self.by.as_ref().map_or_else(
            || "null".to_owned(),
            |o| json_object(&[("iss", &json_str(&o.iss)), ("sub", &json_str(&o.sub))]),
        );
        members.push(("by", by));
        let refs: Vec<(&str, &str)> = members.iter().map(|(n, v)| (*n, v.as_str())).collect();
        json_object(&refs)
    }

    /// An entry from its JSON object (exactly the members [`Entry::to_json`] writes).
    pub fn from_map(map: &Map<String, Value>) -> Option<Entry> {
        let kind = Kind::parse(map.get("kind")?.as_str()?)?;
        if map.len() != 7 + kind.fields().len() {
            return None;
        }
        let id = map.get("id")?.as_str()?.to_owned();
        let values = key_values(map, kind)?;
        let reason = reason(map.get("reason")?)?;
        let source = Source::parse(map.get("source")?.as_str()?)?;
        let created = map.get("created")?.as_i64()?;
        let fence = optional_time(map.get("fence")?)?;
        let by = match map.get("by")? {
            Value::Null => None,
            Value::Object(o) if o.len() == 2 => Some(OperatorId {
                iss: o.get("iss")?.as_str()?.to_owned(),
                sub: o.get("sub")?.as_str()?.to_owned(),
            }),
            _ => return None,
        };
        (Entry::valid_id(&id) && created > 0).then_some(Entry {
            id,
            kind,
            values,
            reason,
            source,
            created,
            fence,
            by,
        })
    }

    pub fn from_json(text: &str) -> Option<Entry> {
        Entry::from_map(&crate::jose::json::parse_object(text.as_bytes()).ok()?)
    }
}

/// The key's values of `kind` from `map`: each a non-empty string of at most [`MAX_VALUE`]
/// bytes without control characters.
pub fn key_values(map: &Map<String, Value>, kind: Kind) -> Option<Vec<String>> {
    kind.fields()
        .iter()
        .map(|name| {
            let v = map.get(*name)?.as_str()?;
            (!v.is_empty() && v.len() <= MAX_VALUE && !v.chars().any(char::is_control))
                .then(|| v.to_owned())
        })
        .collect()
}

/// A reason: a string of 1..=[`MAX_REASON`] bytes without control characters.
pub fn reason(v: &Value) -> Option<String> {
    let r = v.as_str()?;
    (!r.is_empty() && r.len() <= MAX_REASON && !r.chars().any(char::is_control))
        .then(|| r.to_owned())
}

/// `null` or a positive integer of unix seconds; `None` for anything else.
pub fn optional_time(v: &Value) -> Option<Option<i64>> {
    match v {
        Value::Null => Some(None),
        other => other.as_i64().filter(|t| *t > 0).map(Some),
    }
}

/// A hit's JSON: `{"key","id","fence"}`.
pub fn hit_json(key: &str, hit: &Hit) -> String {
    let fence = hit
        .fence
        .map_or_else(|| "null".to_owned(), |f| f.to_string());
    json_object(&[
        ("key", &json_str(key)),
        ("id", &json_str(&hit.id)),
        ("fence", &fence),
    ])
}

fn hit_of(v: &Value) -> Option<(String, Hit)> {
    let o = v.as_object()?;
    if o.len() != 3 {
        return None;
    }
    let key = o.get("key")?.as_str()?.to_owned();
    let id = o.get("id")?.as_str()?.to_owned();
    let fence = optional_time(o.get("fence")?)?;
    Some((key, Hit { id, fence }))
}

/// A digest as [`Key::new`] writes it: 43 base64url characters.
pub fn valid_digest(d: &str) -> bool {
    d.len() == 43
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn object(text: &str) -> Option<Map<String, Value>> {
    crate::jose::json::parse_object(text.as_bytes()).ok()
}

/// The operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Snapshot,
    Lookup,
    Put,
    Get,
    Delete,
    List,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Snapshot => "snapshot",
            Op::Lookup => "lookup",
            Op::Put => "put",
            Op::Get => "get",
            Op::Delete => "delete",
            Op::List => "list",
        }
    }

    pub fn from_path(path: &str) -> Option<Op> {
        let name = path.strip_prefix('/')?;
        [
            Op::Snapshot,
            Op::Lookup,
            Op::Put,
            Op::Get,
            Op::Delete,
            Op::List,
        ]
        .into_iter()
        .find(|op| op.name() == name)
    }

    /// The URL the Worker calls (the object hands `/deny/...` to the deny store).
    pub fn url(self) -> String {
        format!("https://deny-store/deny/{}", self.name())
    }
}

/// A request to the store, as the object reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRequest {
    Snapshot { have: Option<String> },
    Lookup { keys: Vec<String> },
    Put { key: String, entry: Entry },
    Get { id: String },
    Delete { id: String },
    List { after: Option<String>, limit: u32 },
}

impl StoreRequest {
    /// The body the Worker sends.
    pub fn to_json(&self) -> String {
        let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "null".to_owned(), json_str);
        match self {
            StoreRequest::Snapshot { have } => json_object(&[("have", &opt(have))]),
            StoreRequest::Lookup { keys } => json_object(&[(
                "keys",
                &crate::gate::log::json_strs(keys.iter().map(String::as_str)),
            )]),
            StoreRequest::Put { key, entry } => {
                json_object(&[("entry", &entry.to_json()), ("key", &json_str(key))])
            }
            StoreRequest::Get { id } | StoreRequest::Delete { id } => {
                json_object(&[("id", &json_str(id))])
            }
            StoreRequest::List { after, limit } => {
                json_object(&[("after", &opt(after)), ("limit", &limit.to_string())])
            }
        }
    }

    /// The object's reading of `body` for `op`: `None` for anything malformed (answered 400,
    /// which the Worker treats as the store being unavailable).
    pub fn parse(op: Op, body: &str) -> Option<StoreRequest> {
        let map = object(body)?;
        let id = || {
            let id = map.get("id")?.as_str()?;
            (map.len() == 1 && Entry::valid_id(id)).then(|| id.to_owned())
        };
        let opt_str = |v: &Value| -> Option<Option<String>> {
            match v {
                Value::Null => Some(None),
                Value::String(s) if s.len() <= 128 => Some(Some(s.clone())),
                _ => None,
            }
        };
        match op {
            Op::Snapshot if map.len() == 1 => Some(StoreRequest::Snapshot {
                have: opt_str(map.get("have")?)?,
            }),
            Op::Lookup if map.len() == 1 => {
                let keys: Vec<String> = map
                    .get("keys")?
                    .as_array()?
                    .iter()
                    .map(|k| k.as_str().filter(|d| valid_digest(d)).map(str::to_owned))
                    .collect::<Option<_>>()?;
                (!keys.is_empty() && keys.len() <= MAX_LOOKUP)
                    .then_some(StoreRequest::Lookup { keys })
            }
            Op::Put if map.len() == 2 => {
                let key = map.get("key")?.as_str()?;
                let entry = Entry::from_map(map.get("entry")?.as_object()?)?;
                valid_digest(key).then(|| StoreRequest::Put {
                    key: key.to_owned(),
                    entry,
                })
            }
            Op::Get => Some(StoreRequest::Get { id: id()? }),
            Op::Delete => Some(StoreRequest::Delete { id: id()? }),
            Op::List if map.len() == 2 => {
                let after = opt_str(map.get("after")?)?;
                let limit = u32::try_from(map.get("limit")?.as_u64()?).ok()?;
                ((1..=MAX_PAGE).contains(&limit)).then_some(StoreRequest::List { after, limit })
            }
            _ => None,
        }
    }
}

/// The snapshot answer's JSON.
pub fn snapshot_json(version: &str, refresh: Option<(bool, &[(String, Hit)])>) -> String {
    match refresh {
        None => json_object(&[("unchanged", "true"), ("version", &json_str(version))]),
        Some((complete, entries)) => {
            let list: Vec<String> = entries.iter().map(|(k, h)| hit_json(k, h)).collect();
            json_object(&[
                ("complete", if complete { "true" } else { "false" }),
                ("entries", &format!("[{}]", list.join(","))),
                ("version", &json_str(version)),
            ])
        }
    }
}

/// The Worker's reading of a snapshot answer.
pub fn parse_snapshot(text: &str) -> Option<Refresh> {
    let map = object(text)?;
    let version = map.get("version")?.as_str()?.to_owned();
    if map.len() == 2 && map.get("unchanged")?.as_bool()? {
        return Some(Refresh::Unchanged { version });
    }
    if map.len() != 3 {
        return None;
    }
    let complete = map.get("complete")?.as_bool()?;
    let entries = map
        .get("entries")?
        .as_array()?
        .iter()
        .map(hit_of)
        .collect::<Option<Vec<_>>>()?;
    Some(Refresh::Full {
        version,
        complete,
        entries,
    })
}

/// The lookup answer's JSON.
pub fn lookup_json(hits: &[(String, Hit)]) -> String {
    let list: Vec<String> = hits.iter().map(|(k, h)| hit_json(k, h)).collect();
    json_object(&[("entries", &format!("[{}]", list.join(",")))])
}

/// The Worker's reading of a lookup answer.
pub fn parse_lookup(text: &str) -> Option<Vec<Hit>> {
    let map = object(text)?;
    if map.len() != 1 {
        return None;
    }
    map.get("entries")?
        .as_array()?
        .iter()
        .map(|v| hit_of(v).map(|(_, h)| h))
        .collect()
}

/// `{"entry": <entry> | null}` (get, delete).
pub fn entry_answer_json(entry: Option<&str>) -> String {
    json_object(&[("entry", entry.unwrap_or("null"))])
}

/// The Worker's reading of a get / delete answer.
pub fn parse_entry_answer(text: &str) -> Option<Option<Entry>> {
    let map = object(text)?;
    if map.len() != 1 {
        return None;
    }
    match map.get("entry")? {
        Value::Null => Some(None),
        Value::Object(o) => Entry::from_map(o).map(Some),
        _ => None,
    }
}

/// `{"entries": [<entry>...]}` (list), from the stored entry texts.
pub fn list_json(entries: &[String]) -> String {
    json_object(&[("entries", &format!("[{}]", entries.join(",")))])
}

/// The Worker's reading of a list answer.
pub fn parse_list(text: &str) -> Option<Vec<Entry>> {
    let map = object(text)?;
    if map.len() != 1 {
        return None;
    }
    map.get("entries")?
        .as_array()?
        .iter()
        .map(|v| Entry::from_map(v.as_object()?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, values: &[&str], fence: Option<i64>) -> Entry {
        Entry {
            id: "03abcDEF_-9".into(),
            kind,
            values: values.iter().map(|v| v.to_string()).collect(),
            reason: "compromised \"runtime\" \u{e9}".into(),
            source: Source::Operator,
            created: 1_800_000_000,
            fence,
            by: Some(OperatorId {
                iss: "https://idp".into(),
                sub: "ops".into(),
            }),
        }
    }

    #[test]
    fn entries_round_trip_and_are_serde_json() {
        for e in [
            entry(Kind::Agent, &["agent:x"], None),
            entry(Kind::User, &["https://idp", "alice"], Some(1_800_003_600)),
            entry(Kind::Token, &["https://idp", "t-1"], None),
            entry(Kind::Session, &["https://idp", "s"], None),
            Entry {
                by: None,
                source: Source::SharedSignal,
                ..entry(Kind::Email, &["a@b.c"], None)
            },
        ] {
            let text = e.to_json();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["kind"], e.kind.as_str());
            assert_eq!(Entry::from_json(&text), Some(e.clone()), "{text}");
        }
        assert_eq!(Entry::shard_of("03abc"), Some(3));
        assert_eq!(Entry::shard_of("x3abc"), None);
        assert!(!Entry::valid_id("03"));
        assert!(!Entry::valid_id("03a/b"));
    }

    #[test]
    fn malformed_entries_are_refused() {
        let good = entry(Kind::User, &["i", "s"], None).to_json();
        let v: serde_json::Value = serde_json::from_str(&good).unwrap();
        let with = |name: &str, value: serde_json::Value| {
            let mut v = v.clone();
            v[name] = value;
            v.to_string()
        };
        for bad in [
            with("kind", "agent".into()),
            with("kind", "root".into()),
            with("sub", 5.into()),
            with("sub", "".into()),
            with("sub", "a\nb".into()),
            with("sub", "x".repeat(MAX_VALUE + 1).into()),
            with("reason", "".into()),
            with("reason", "r".repeat(MAX_REASON + 1).into()),
            with("source", "admin".into()),
            with("fence", "soon".into()),
            with("fence", (-1).into()),
            with("fence", 1.5.into()),
            with("created", 0.into()),
            with("id", "nope".into()),
            with("by", serde_json::json!({"iss": "a"})),
            with("extra", 1.into()),
            good.replacen("{", "{\"id\":\"01x\",", 1),
            good[..good.len() - 1].to_owned(),
        ] {
            assert_eq!(Entry::from_json(&bad), None, "{bad}");
        }
    }

    #[test]
    fn store_requests_round_trip_and_bad_bodies_are_refused() {
        let key = Key::new(Kind::Agent, &["a"], 4).digest();
        let e = entry(Kind::Agent, &["a"], None);
        for (op, req) in [
            (
                Op::Snapshot,
                StoreRequest::Snapshot {
                    have: Some("v1".into()),
                },
            ),
            (Op::Snapshot, StoreRequest::Snapshot { have: None }),
            (
                Op::Lookup,
                StoreRequest::Lookup {
                    keys: vec![key.clone()],
                },
            ),
            (
                Op::Put,
                StoreRequest::Put {
                    key: key.clone(),
                    entry: e.clone(),
                },
            ),
            (Op::Get, StoreRequest::Get { id: e.id.clone() }),
            (Op::Delete, StoreRequest::Delete { id: e.id.clone() }),
            (
                Op::List,
                StoreRequest::List {
                    after: None,
                    limit: 10,
                },
            ),
        ] {
            assert_eq!(StoreRequest::parse(op, &req.to_json()), Some(req.clone()));
            assert_eq!(Op::from_path(&format!("/{}", op.name())), Some(op));
        }
        for (op, bad) in [
            (Op::Lookup, r#"{"keys":[]}"#.to_owned()),
            (Op::Lookup, r#"{"keys":["short"]}"#.to_owned()),
            (
                Op::Lookup,
                format!(
                    r#"{{"keys":[{}]}}"#,
                    vec![format!("\"{key}\""); 300].join(",")
                ),
            ),
            (Op::List, r#"{"after":null,"limit":0}"#.to_owned()),
            (Op::List, r#"{"after":null,"limit":501}"#.to_owned()),
            (Op::List, r#"{"after":null}"#.to_owned()),
            (Op::Get, r#"{"id":"../x"}"#.to_owned()),
            (Op::Get, r#"{"id":"01x","id":"01y"}"#.to_owned()),
            (Op::Snapshot, r#"{"have":1}"#.to_owned()),
            (Op::Put, format!(r#"{{"key":"{key}","entry":{{}}}}"#)),
            (Op::Put, "[]".to_owned()),
        ] {
            assert_eq!(StoreRequest::parse(op, &bad), None, "{bad}");
        }
        assert_eq!(Op::from_path("/drop"), None);
    }

    #[test]
    fn answers_round_trip() {
        let hits = vec![
            (
                "k1".to_owned(),
                Hit {
                    id: "00a".into(),
                    fence: None,
                },
            ),
            (
                "k2".to_owned(),
                Hit {
                    id: "00b".into(),
                    fence: Some(5),
                },
            ),
        ];
        assert_eq!(
            parse_snapshot(&snapshot_json("v", Some((true, &hits)))),
            Some(Refresh::Full {
                version: "v".into(),
                complete: true,
                entries: hits.clone()
            })
        );
        assert_eq!(
            parse_snapshot(&snapshot_json("v", None)),
            Some(Refresh::Unchanged {
                version: "v".into()
            })
        );
        assert_eq!(
            parse_lookup(&lookup_json(&hits)),
            Some(hits.iter().map(|(_, h)| h.clone()).collect())
        );
        let e = entry(Kind::Device, &["d"], None);
        assert_eq!(
            parse_entry_answer(&entry_answer_json(Some(&e.to_json()))),
            Some(Some(e.clone()))
        );
        assert_eq!(parse_entry_answer(&entry_answer_json(None)), Some(None));
        assert_eq!(parse_list(&list_json(&[e.to_json()])), Some(vec![e]));
        for bad in [
            "",
            "{}",
            r#"{"version":"v","unchanged":false}"#,
            r#"{"entries":[1]}"#,
        ] {
            assert_eq!(parse_snapshot(bad), None);
            assert_eq!(parse_lookup(bad), None);
        }
    }
}
