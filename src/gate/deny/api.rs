//! The deny list's operator API (issue 16 item 3; `docs/openapi/operator.yaml`), under
//! [`BASE`], for an operator [`crate::gate::operator::authenticate`] accepted:
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST {BASE}` | `{"kind", <key fields>, "reason", "fence"?}` | 201 the entry |
//! | `GET {BASE}?after=<id>&limit=<n>` | – | 200 `{"entries": [...], "next": <id> \| null}` |
//! | `POST {BASE}/lookup` | `{"kind", <key fields>}` | 200 `{"entries": [...]}` |
//! | `GET {BASE}/{id}` | – | 200 the entry, or 404 |
//! | `DELETE {BASE}/{id}` | – | 200 the entry removed, or 404 |
//!
//! Key fields by kind ([`Kind::fields`]): `user` `iss` + `sub`, `token` `iss` + `jti`, `session`
//! `iss` + `sid`, every other kind `value`. The entry records the operator (`by`), the time
//! (`created`) and `source = "operator"`. Bodies are read strictly (no duplicate member, no
//! unknown member, exact types, at most [`MAX_BODY`] bytes); a bad one is 400
//! `invalid_request` with a fixed description naming what is wrong.

use serde_json::{Map, Value};

use super::wire::{self, Entry, MAX_PAGE};
use super::{Key, Kind, Source};
use crate::gate::log::{json_object, json_str};
use crate::gate::operator::OperatorId;
use crate::gate::phase::response::Answer;
use crate::policy::{Allow, Miss};
use crate::Error;

/// The deny list's path.
pub const BASE: &str = "/.well-known/attestgate/deny";
/// Largest request body.
pub const MAX_BODY: usize = 8 * 1024;
/// The default page size of a list.
pub const DEFAULT_PAGE: u32 = 100;

/// An operator call on the deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyCall {
    Add,
    List { after: Option<String>, limit: u32 },
    Lookup,
    Get { id: String },
    Remove { id: String },
}

impl DenyCall {
    /// Whether the call reads the request body.
    pub fn needs_body(&self) -> bool {
        matches!(self, DenyCall::Add | DenyCall::Lookup)
    }
}

fn method_not_allowed(allow: &'static str) -> Error {
    Error::Route(Miss::MethodNotAllowed(Allow::from_static(allow)))
}

/// The call `method` on `path` (under [`BASE`]) with `query` is; `None` when the path is not the
/// deny list's.
pub fn route(method: &str, path: &str, query: Option<&str>) -> Option<Result<DenyCall, Error>> {
    let rest = path.strip_prefix(BASE)?;
    Some(match rest {
        "" => match method {
            "POST" => Ok(DenyCall::Add),
            "GET" | "HEAD" => list_query(query),
            _ => Err(method_not_allowed("GET, HEAD, POST")),
        },
        "/lookup" => match method {
            "POST" => Ok(DenyCall::Lookup),
            _ => Err(method_not_allowed("POST")),
        },
        _ => {
            let id = rest.strip_prefix('/')?;
            if !Entry::valid_id(id) {
                return Some(Err(Error::Route(Miss::NoRoute)));
            }
            match method {
                "GET" | "HEAD" => Ok(DenyCall::Get { id: id.to_owned() }),
                "DELETE" => Ok(DenyCall::Remove { id: id.to_owned() }),
                _ => Err(method_not_allowed("GET, HEAD, DELETE")),
            }
        }
    })
}

/// `after=<id>&limit=<n>`, each at most once, nothing else.
fn list_query(query: Option<&str>) -> Result<DenyCall, Error> {
    let (mut after, mut limit) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or(Error::MalformedRequest)?;
        match name {
            "after" if after.is_none() && Entry::valid_id(value) => after = Some(value.to_owned()),
            "limit" if limit.is_none() => {
                let n: u32 = value.parse().map_err(|_| Error::MalformedRequest)?;
                if !(1..=MAX_PAGE).contains(&n) || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::MalformedRequest);
                }
                limit = Some(n);
            }
            _ => return Err(Error::MalformedRequest),
        }
    }
    Ok(DenyCall::List {
        after,
        limit: limit.unwrap_or(DEFAULT_PAGE),
    })
}

/// A refusal of the operator API that says what is wrong (the operator is authenticated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBody {
    TooLarge,
    NotJson,
    Kind,
    KeyFields,
    Reason,
    Fence,
    Members,
}

impl BadBody {
    pub fn description(self) -> &'static str {
        match self {
            BadBody::TooLarge => "The request body is too large.",
            BadBody::NotJson => "The body is not one JSON object without duplicate members.",
            BadBody::Kind => "kind must be one of agent, user, device, token, jkt, client, issuer, session, email.",
            BadBody::KeyFields => "The key fields of this kind are missing or malformed (non-empty strings of at most 1024 bytes).",
            BadBody::Reason => "reason must be a string of 1 to 256 bytes without control characters.",
            BadBody::Fence => "fence must be a positive integer (unix seconds) or null.",
            BadBody::Members => "The body has a member that this request does not take.",
        }
    }

    /// The 400 (413 for a body too large) answer.
    pub fn answer(self, request_id: &str) -> Answer {
        let (status, code) = match self {
            BadBody::TooLarge => (413, "request_too_large"),
            _ => (400, "invalid_request"),
        };
        Answer::json(
            status,
            json_object(&[
                ("error", &json_str(code)),
                ("error_description", &json_str(self.description())),
                ("request_id", &json_str(request_id)),
            ]),
        )
    }
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, BadBody> {
    if body.len() > MAX_BODY {
        return Err(BadBody::TooLarge);
    }
    crate::jose::json::parse_object(body).map_err(|_| BadBody::NotJson)
}

fn key_of(map: &Map<String, Value>) -> Result<(Kind, Vec<String>), BadBody> {
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::parse)
        .ok_or(BadBody::Kind)?;
    let values = wire::key_values(map, kind).ok_or(BadBody::KeyFields)?;
    Ok((kind, values))
}

fn only(map: &Map<String, Value>, kind: Kind, extra: &[&str]) -> Result<(), BadBody> {
    let allowed =
        |name: &str| name == "kind" || kind.fields().contains(&name) || extra.contains(&name);
    if map.keys().all(|k| allowed(k)) {
        Ok(())
    } else {
        Err(BadBody::Members)
    }
}

/// A new entry from an add request: its key over `shards` shards and the entry, with an id
/// from `random` (its shard's two digits first), made at `now` by `by`.
pub fn new_entry(
    body: &[u8],
    shards: u8,
    random: &[u8; 16],
    now: i64,
    by: &OperatorId,
) -> Result<(Key, Entry), BadBody> {
    let map = body_object(body)?;
    let (kind, values) = key_of(&map)?;
    only(&map, kind, &["reason", "fence"])?;
    let reason = map
        .get("reason")
        .and_then(wire::reason)
        .ok_or(BadBody::Reason)?;
    let fence = match map.get("fence") {
        None => None,
        Some(v) => wire::optional_time(v).ok_or(BadBody::Fence)?,
    };
    let mut entry = Entry {
        id: String::new(),
        kind,
        values,
        reason,
        source: Source::Operator,
        created: now,
        fence,
        by: Some(by.clone()),
    };
    let key = entry.key(shards);
    entry.id = format!("{:02}{}", key.shard, crate::jose::b64::encode(random));
    Ok((key, entry))
}

/// The key of a lookup request.
pub fn lookup_key(body: &[u8], shards: u8) -> Result<Key, BadBody> {
    let map = body_object(body)?;
    let (kind, values) = key_of(&map)?;
    only(&map, kind, &[])?;
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    Ok(Key::new(kind, &values, shards))
}

/// The list answer: `{"entries": [...], "next": <id> | null}`.
pub fn list_answer(entries: &[Entry], next: Option<&str>) -> Answer {
    let list: Vec<String> = entries.iter().map(Entry::to_json).collect();
    Answer::json(
        200,
        json_object(&[
            ("entries", &format!("[{}]", list.join(","))),
            ("next", &next.map_or_else(|| "null".to_owned(), json_str)),
        ]),
    )
}

/// One entry's answer (`status` 200 or 201).
pub fn entry_answer(status: u16, entry: &Entry) -> Answer {
    Answer::json(status, entry.to_json())
}

/// The list of entries of a lookup.
pub fn entries_answer(entries: &[Entry]) -> Answer {
    let list: Vec<String> = entries.iter().map(Entry::to_json).collect();
    Answer::json(
        200,
        json_object(&[("entries", &format!("[{}]", list.join(",")))]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> OperatorId {
        OperatorId {
            iss: "https://idp".into(),
            sub: "ops".into(),
        }
    }

    #[test]
    fn routes_of_the_deny_list() {
        assert_eq!(route("POST", BASE, None), Some(Ok(DenyCall::Add)));
        assert_eq!(
            route("GET", BASE, Some("limit=5&after=01abc")),
            Some(Ok(DenyCall::List {
                after: Some("01abc".into()),
                limit: 5
            }))
        );
        assert_eq!(
            route("GET", BASE, None),
            Some(Ok(DenyCall::List {
                after: None,
                limit: DEFAULT_PAGE
            }))
        );
        for q in [
            "limit=0",
            "limit=501",
            "limit=x",
            "limit=+5",
            "limit=1&limit=2",
            "x=1",
            "after=../",
            "limit",
        ] {
            assert_eq!(
                route("GET", BASE, Some(q)),
                Some(Err(Error::MalformedRequest)),
                "{q}"
            );
        }
        assert_eq!(
            route("DELETE", &format!("{BASE}/02xyz"), None),
            Some(Ok(DenyCall::Remove { id: "02xyz".into() }))
        );
        assert_eq!(
            route("GET", &format!("{BASE}/02xyz"), None),
            Some(Ok(DenyCall::Get { id: "02xyz".into() }))
        );
        assert_eq!(
            route("GET", &format!("{BASE}/x"), None),
            Some(Err(Error::Route(Miss::NoRoute)))
        );
        assert!(matches!(
            route("PUT", BASE, None),
            Some(Err(Error::Route(Miss::MethodNotAllowed(_))))
        ));
        assert_eq!(route("GET", "/.well-known/attestgate/denylist", None), None);
        assert_eq!(
            route("POST", &format!("{BASE}/lookup"), None),
            Some(Ok(DenyCall::Lookup))
        );
    }

    #[test]
    fn an_add_request_makes_an_entry_with_its_shard_in_the_id() {
        let body = br#"{"kind":"user","iss":"https://idp","sub":"alice","reason":"left","fence":1800003600}"#;
        let (key, e) = new_entry(body, 8, &[1u8; 16], 1_800_000_000, &op()).unwrap();
        assert_eq!(key, Key::new(Kind::User, &["https://idp", "alice"], 8));
        assert_eq!(Entry::shard_of(&e.id), Some(key.shard));
        assert!(Entry::valid_id(&e.id));
        assert_eq!(e.fence, Some(1_800_003_600));
        assert_eq!(e.by, Some(op()));
        assert_eq!(e.source, Source::Operator);
        assert_eq!(Entry::from_json(&e.to_json()), Some(e.clone()));
        let (_, e) = new_entry(
            br#"{"kind":"agent","value":"agent:x","reason":"r"}"#,
            8,
            &[1u8; 16],
            1,
            &op(),
        )
        .unwrap();
        assert_eq!(e.fence, None);
    }

    #[test]
    fn bad_add_requests_say_what_is_wrong() {
        let cases: Vec<(Vec<u8>, BadBody)> = vec![
            (b"".to_vec(), BadBody::NotJson),
            (b"[]".to_vec(), BadBody::NotJson),
            (
                br#"{"kind":"agent","kind":"agent"}"#.to_vec(),
                BadBody::NotJson,
            ),
            (
                br#"{"kind":"agent","value":"a","reason":"r""#.to_vec(),
                BadBody::NotJson,
            ),
            (
                format!("{}1{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
                BadBody::NotJson,
            ),
            (vec![b' '; MAX_BODY + 1], BadBody::TooLarge),
            (
                br#"{"kind":"root","value":"a","reason":"r"}"#.to_vec(),
                BadBody::Kind,
            ),
            (
                br#"{"kind":7,"value":"a","reason":"r"}"#.to_vec(),
                BadBody::Kind,
            ),
            (br#"{"value":"a","reason":"r"}"#.to_vec(), BadBody::Kind),
            (
                br#"{"kind":"user","sub":"a","reason":"r"}"#.to_vec(),
                BadBody::KeyFields,
            ),
            (
                br#"{"kind":"agent","value":["a"],"reason":"r"}"#.to_vec(),
                BadBody::KeyFields,
            ),
            (
                br#"{"kind":"agent","value":"","reason":"r"}"#.to_vec(),
                BadBody::KeyFields,
            ),
            (br#"{"kind":"agent","value":"a"}"#.to_vec(), BadBody::Reason),
            (
                br#"{"kind":"agent","value":"a","reason":{"x":1}}"#.to_vec(),
                BadBody::Reason,
            ),
            (
                br#"{"kind":"agent","value":"a","reason":"r","fence":"18:00"}"#.to_vec(),
                BadBody::Fence,
            ),
            (
                br#"{"kind":"agent","value":"a","reason":"r","fence":0}"#.to_vec(),
                BadBody::Fence,
            ),
            (
                br#"{"kind":"agent","value":"a","reason":"r","id":"01x"}"#.to_vec(),
                BadBody::Members,
            ),
            (
                br#"{"kind":"agent","value":"a","reason":"r","source":"status_list"}"#.to_vec(),
                BadBody::Members,
            ),
            (
                br#"{"kind":"agent","value":"a","sub":"x","reason":"r"}"#.to_vec(),
                BadBody::Members,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                new_entry(&body, 4, &[0; 16], 1, &op()).map(|_| ()),
                Err(want),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        let a = BadBody::Kind.answer("rid");
        assert_eq!(a.status, 400);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert_eq!(BadBody::TooLarge.answer("r").status, 413);
    }

    #[test]
    fn a_lookup_names_exactly_one_key() {
        assert_eq!(
            lookup_key(br#"{"kind":"token","iss":"i","jti":"j"}"#, 4),
            Ok(Key::new(Kind::Token, &["i", "j"], 4))
        );
        assert_eq!(
            lookup_key(br#"{"kind":"token","iss":"i","jti":"j","reason":"r"}"#, 4),
            Err(BadBody::Members)
        );
    }
}
