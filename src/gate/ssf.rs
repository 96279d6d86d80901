//! The Shared Signals receiver (issue 16 item 4): SSF 1.0 push delivery (RFC 8935) of Security
//! Event Tokens (RFC 8417) from the transmitters `[shared_signals] transmitters` names (each a
//! provider of the policy: its `issuer` is the allowed `iss`, its keys and algorithms verify).
//!
//! `POST {path}` with `Content-Type: application/secevent+jwt` and the SET as the body:
//! 1. the body is one compact JWS of at most [`MAX_SET`] bytes;
//! 2. its `iss` (read before verification only to pick the transmitter) must be one of the
//!    transmitters' issuers (`invalid_issuer`);
//! 3. the JWS: `typ` `secevent+jwt`, the transmitter's algorithms, its key by `kid`, the
//!    signature (`invalid_key` for an unknown key or a bad signature, `invalid_request` for the
//!    rest of the form);
//! 4. the claims: `aud` has `[shared_signals] audience` (`invalid_audience`), `iat` within
//!    `iat_window_secs` of now, `jti` a string, `events` a non-empty object, `exp` (rare in
//!    SETs) not passed (`invalid_request`);
//! 5. `(iss, jti)` first seen (the replay store, kept for the window): a replayed SET is
//!    `invalid_request`;
//! 6. each event this receiver knows becomes a deny entry ([`entries`], source `shared_signal`,
//!    `by` = the transmitter and the SET's `jti`); events it does not know are accepted and
//!    ignored (RFC 8935 §2.2: the SET was received).
//!
//! Answers: 202 with no body, or 400 `{"err", "description"}` with an RFC 8935 §2.4 code.
//!
//! Events and subjects: CAEP `session-revoked`, `credential-change`, `token-claims-change`,
//! RISC `credential-compromise`, `account-disabled`, `sessions-revoked`; the subject is the
//! event's `subject` or the SET's `sub_id`, in the formats `iss_sub` (a user entry), `jwt_id` (a
//! token entry), `email` (an e-mail entry), `opaque` (a user of the transmitter's issuer), and
//! `complex` (its `user`, its `session` as a session of the transmitter's issuer when opaque,
//! its `device` as a device id when opaque). A subject in another format is `invalid_request`.

use serde_json::{Map, Value};

use crate::gate::deny::wire::{Entry, MAX_VALUE};
use crate::gate::deny::{Key, Kind, Source};
use crate::gate::log::{json_object, json_str};
use crate::gate::operator::OperatorId;
use crate::jose;

/// Largest SET accepted.
pub const MAX_SET: usize = 64 * 1024;
/// Most events of one SET turned into entries.
pub const MAX_ENTRIES: usize = 16;

pub const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
pub const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";

/// The event types mapped to deny entries, with the reason they record.
pub const EVENTS: [(&str, &str, &str); 6] = [
    (CAEP, "session-revoked", "caep session-revoked"),
    (CAEP, "credential-change", "caep credential-change"),
    (CAEP, "token-claims-change", "caep token-claims-change"),
    (RISC, "credential-compromise", "risc credential-compromise"),
    (RISC, "account-disabled", "risc account-disabled"),
    (RISC, "sessions-revoked", "risc sessions-revoked"),
];

/// The subject identifier formats understood.
pub const FORMATS: [&str; 5] = ["iss_sub", "jwt_id", "email", "opaque", "complex"];

/// An RFC 8935 §2.4 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    InvalidRequest(&'static str),
    InvalidKey,
    InvalidIssuer,
    InvalidAudience,
}

impl SetError {
    pub fn code(self) -> &'static str {
        match self {
            SetError::InvalidRequest(_) => "invalid_request",
            SetError::InvalidKey => "invalid_key",
            SetError::InvalidIssuer => "invalid_issuer",
            SetError::InvalidAudience => "invalid_audience",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            SetError::InvalidRequest(d) => d,
            SetError::InvalidKey => "The SET's key is unknown or its signature does not verify.",
            SetError::InvalidIssuer => "The SET's issuer is not a configured transmitter.",
            SetError::InvalidAudience => "The SET's audience is not this receiver.",
        }
    }

    /// `{"err", "description"}` (RFC 8935 §2.3).
    pub fn body(self) -> String {
        json_object(&[
            ("description", &json_str(self.description())),
            ("err", &json_str(self.code())),
        ])
    }
}

fn bad(description: &'static str) -> SetError {
    SetError::InvalidRequest(description)
}

/// The unverified `iss` of a compact JWS (only to pick the transmitter whose keys verify it).
pub fn unverified_issuer(token: &str) -> Result<String, SetError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("The body is not one compact JWS."));
    };
    let map = jose::claims::decode(payload)
        .map_err(|_| bad("The SET's payload is not a JSON object."))?;
    match map.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        _ => Err(SetError::InvalidIssuer),
    }
}

/// The checked claims of a SET whose signature verified: `(iss, jti, iat)`.
pub fn check_claims<'m>(
    map: &'m Map<String, Value>,
    audience: &str,
    window: i64,
    now: i64,
) -> Result<(&'m str, i64), SetError> {
    let aud_ok = match map.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(SetError::InvalidAudience);
    }
    let iat = map
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(bad("iat is missing or not an integer."))?;
    if iat.abs_diff(now) > window.unsigned_abs() {
        return Err(bad("iat is outside the receiver's window."));
    }
    if let Some(exp) = map.get("exp") {
        if exp.as_i64().is_none_or(|e| e <= now) {
            return Err(bad("The SET has expired."));
        }
    }
    let jti = map
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(bad("jti is missing or malformed."))?;
    match map.get("events") {
        Some(Value::Object(e)) if !e.is_empty() => {}
        _ => return Err(bad("events must be a non-empty object.")),
    }
    Ok((jti, iat))
}

/// The deny keys a subject identifier names (`iss` is the transmitter's, for opaque ids).
fn subject_keys(
    sub: &Value,
    iss: &str,
    depth: u8,
    out: &mut Vec<(Kind, Vec<String>)>,
) -> Result<(), SetError> {
    let o = sub
        .as_object()
        .ok_or(bad("A subject identifier is not an object."))?;
    let s = |name: &str| -> Result<String, SetError> {
        o.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && v.len() <= MAX_VALUE && !v.chars().any(char::is_control))
            .map(str::to_owned)
            .ok_or(bad(
                "A subject identifier lacks a member its format requires.",
            ))
    };
    match o.get("format").and_then(Value::as_str) {
        Some("iss_sub") => out.push((Kind::User, vec![s("iss")?, s("sub")?])),
        Some("jwt_id") => out.push((Kind::Token, vec![s("iss")?, s("jti")?])),
        Some("email") => out.push((Kind::Email, vec![s("email")?])),
        Some("opaque") => out.push((Kind::User, vec![iss.to_owned(), s("id")?])),
        Some("complex") if depth == 0 => {
            let mut any = false;
            if let Some(user) = o.get("user") {
                subject_keys(user, iss, 1, out)?;
                any = true;
            }
            if let Some(session) = o.get("session") {
                match session.get("format").and_then(Value::as_str) {
                    Some("opaque") => {
                        let id = session
                            .get("id")
                            .and_then(Value::as_str)
                            .filter(|v| !v.is_empty() && v.len() <= MAX_VALUE)
                            .ok_or(bad(
                                "A subject identifier lacks a member its format requires.",
                            ))?;
                        out.push((Kind::Session, vec![iss.to_owned(), id.to_owned()]));
                    }
                    _ => subject_keys(session, iss, 1, out)?,
                }
                any = true;
            }
            if let Some(device) = o.get("device") {
                match device.get("format").and_then(Value::as_str) {
                    Some("opaque") => {
                        let id = device
                            .get("id")
                            .and_then(Value::as_str)
                            .filter(|v| !v.is_empty() && v.len() <= MAX_VALUE)
                            .ok_or(bad(
                                "A subject identifier lacks a member its format requires.",
                            ))?;
                        out.push((Kind::Device, vec![id.to_owned()]));
                    }
                    _ => subject_keys(device, iss, 1, out)?,
                }
                any = true;
            }
            if !any {
                return Err(bad("A complex subject names no user, session or device."));
            }
        }
        _ => return Err(bad("A subject identifier's format is not supported.")),
    }
    Ok(())
}

/// The deny entries of a checked SET's events, made at `now` with ids from `random` (one per
/// entry, 16 bytes each). Unknown event types are skipped.
pub fn entries(
    map: &Map<String, Value>,
    iss: &str,
    jti: &str,
    shards: u8,
    now: i64,
    random: &mut dyn FnMut() -> [u8; 16],
) -> Result<Vec<(Key, Entry)>, SetError> {
    let events = map
        .get("events")
        .and_then(Value::as_object)
        .ok_or(bad("events must be a non-empty object."))?;
    let mut out = Vec::new();
    for (uri, event) in events {
        let Some((_, _, reason)) = EVENTS
            .iter()
            .find(|(base, name, _)| uri.strip_prefix(base) == Some(name))
        else {
            continue;
        };
        let subject = event
            .get("subject")
            .or_else(|| map.get("sub_id"))
            .ok_or(bad("An event has no subject (subject or sub_id)."))?;
        let mut keys = Vec::new();
        subject_keys(subject, iss, 0, &mut keys)?;
        for (kind, values) in keys {
            if out.len() >= MAX_ENTRIES {
                return Err(bad("The SET names too many subjects."));
            }
            let mut entry = Entry {
                id: String::new(),
                kind,
                values,
                reason: (*reason).to_owned(),
                source: Source::SharedSignal,
                created: now,
                fence: None,
                by: Some(OperatorId {
                    iss: iss.to_owned(),
                    sub: jti.to_owned(),
                }),
            };
            let key = entry.key(shards);
            entry.id = format!("{:02}{}", key.shard, jose::b64::encode(&random()));
            out.push((key, entry));
        }
    }
    Ok(out)
}

/// Why a SET was not accepted: an RFC 8935 error (400), or a gateway failure (the replay store
/// or the transmitter's keys cannot be reached: 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Set(SetError),
    Gateway(crate::Error),
}

impl From<SetError> for Refused {
    fn from(e: SetError) -> Self {
        Refused::Set(e)
    }
}

/// Receive one pushed SET (see the module docs): the deny entries it makes.
#[allow(clippy::too_many_arguments)]
pub async fn receive<K, V, R>(
    gate: &crate::gate::Gate,
    content_type: Option<&str>,
    body: &[u8],
    keys: &K,
    verifier: &V,
    replay: &R,
    now: i64,
    random: &mut dyn FnMut() -> [u8; 16],
) -> Result<Vec<(Key, Entry)>, Refused>
where
    K: crate::gate::seams::KeySource,
    V: crate::gate::seams::SignatureVerifier,
    R: crate::gate::seams::ReplayGuard,
{
    let Some(config) = gate.policy().shared_signals() else {
        return Err(Refused::Gateway(crate::Error::Route(
            crate::policy::Miss::NoRoute,
        )));
    };
    let ct = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if ct != "application/secevent+jwt" {
        return Err(bad("Content-Type must be application/secevent+jwt.").into());
    }
    if body.len() > MAX_SET {
        return Err(bad("The SET is too large.").into());
    }
    let token = core::str::from_utf8(body)
        .map_err(|_| bad("The body is not one compact JWS."))?
        .trim();
    let iss = unverified_issuer(token)?;
    let provider = config
        .transmitters
        .iter()
        .filter_map(|t| gate.provider(t))
        .find(|p| {
            gate.policy()
                .provider(&p.name)
                .and_then(|c| c.issuer.as_deref())
                == Some(iss.as_str())
        })
        .ok_or(SetError::InvalidIssuer)?;
    let key_set = keys.keys(provider, false).await.map_err(Refused::Gateway)?;
    let profile = jose::Profile {
        token_types: vec!["secevent+jwt".to_owned()],
        limits: jose::Limits {
            max_token_len: MAX_SET,
            max_payload_len: MAX_SET,
            ..jose::Limits::default()
        },
        ..provider
            .jwt()
            .map(|j| j.profile.clone())
            .unwrap_or_default()
    };
    let selected = jose::select(token, &profile, &key_set).map_err(|e| match e {
        jose::Error::UnknownKey | jose::Error::KidMissing | jose::Error::AmbiguousKey => {
            SetError::InvalidKey
        }
        jose::Error::TypNotAccepted => bad("typ must be secevent+jwt."),
        jose::Error::AlgNotAllowed | jose::Error::AlgMissing => {
            bad("The SET's alg is not accepted.")
        }
        _ => bad("The body is not a well-formed SET."),
    })?;
    selected
        .verify_signature(verifier)
        .await
        .map_err(|_| SetError::InvalidKey)?;
    let map = selected
        .payload()
        .map_err(|_| bad("The SET's payload is not a JSON object."))?;
    let window = i64::try_from(config.iat_window_secs).unwrap_or(3600);
    let (jti, iat) = check_claims(&map, &config.audience, window, now)?;
    let made = entries(&map, &iss, jti, gate.deny_shards, now, random)?;
    let (shard, id) =
        crate::gate::phase::single_use::store_key(gate.nonce_shards, "set", &iss, jti);
    let until = iat
        .max(now)
        .saturating_add(window)
        .saturating_add(gate.skew_secs);
    if !replay
        .first_seen(shard, &id, until, now)
        .await
        .map_err(Refused::Gateway)?
    {
        return Err(bad("This SET (iss, jti) was already received.").into());
    }
    Ok(made)
}

/// The receiver's metadata (`GET {path}`): delivery method, endpoint, audience, transmitters,
/// events and subject formats understood.
pub fn metadata(endpoint: &str, audience: &str, issuers: &[&str]) -> String {
    let events: Vec<String> = EVENTS.iter().map(|(b, n, _)| format!("{b}{n}")).collect();
    json_object(&[
        ("aud", &json_str(audience)),
        ("delivery_method", &json_str("urn:ietf:rfc:8935")),
        ("endpoint_url", &json_str(endpoint)),
        (
            "events_supported",
            &crate::gate::log::json_strs(events.iter().map(String::as_str)),
        ),
        (
            "issuers",
            &crate::gate::log::json_strs(issuers.iter().copied()),
        ),
        ("subject_formats", &crate::gate::log::json_strs(FORMATS)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const AUD: &str = "https://gateway.example.com";

    fn set(extra: Value) -> Map<String, Value> {
        let mut m = json!({
            "iss": "https://tx", "aud": AUD, "iat": NOW, "jti": "set-1",
            "events": {format!("{RISC}account-disabled"): {"subject": {"format": "iss_sub", "iss": "https://idp", "sub": "alice"}}},
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                m.as_object_mut().unwrap().remove(k);
            } else {
                m[k] = v.clone();
            }
        }
        m.as_object().unwrap().clone()
    }

    fn zero() -> [u8; 16] {
        [0; 16]
    }

    #[test]
    fn claims_are_checked() {
        assert_eq!(
            check_claims(&set(json!({})), AUD, 300, NOW),
            Ok(("set-1", NOW))
        );
        assert_eq!(
            check_claims(&set(json!({"aud": [AUD, "x"]})), AUD, 300, NOW).map(|_| ()),
            Ok(())
        );
        for (extra, want) in [
            (json!({"aud": "https://other"}), SetError::InvalidAudience),
            (json!({"aud": null}), SetError::InvalidAudience),
            (
                json!({"iat": NOW - 301}),
                bad("iat is outside the receiver's window."),
            ),
            (
                json!({"iat": NOW + 301}),
                bad("iat is outside the receiver's window."),
            ),
            (
                json!({"iat": "now"}),
                bad("iat is missing or not an integer."),
            ),
            (json!({"jti": null}), bad("jti is missing or malformed.")),
            (json!({"jti": ""}), bad("jti is missing or malformed.")),
            (
                json!({"events": {}}),
                bad("events must be a non-empty object."),
            ),
            (
                json!({"events": []}),
                bad("events must be a non-empty object."),
            ),
            (json!({"exp": NOW - 1}), bad("The SET has expired.")),
        ] {
            assert_eq!(
                check_claims(&set(extra.clone()), AUD, 300, NOW).map(|_| ()),
                Err(want),
                "{extra}"
            );
        }
    }

    #[test]
    fn every_event_and_subject_format_maps_to_its_entry() {
        let subject =
            |s: Value| json!({"events": {format!("{CAEP}session-revoked"): {"subject": s}}});
        let one = |m: Map<String, Value>| {
            entries(&m, "https://tx", "set-1", 4, NOW, &mut zero)
                .unwrap()
                .into_iter()
                .map(|(_, e)| (e.kind, e.values))
                .collect::<Vec<_>>()
        };
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            one(set(subject(
                json!({"format": "iss_sub", "iss": "https://idp", "sub": "a"})
            ))),
            vec![(Kind::User, v(&["https://idp", "a"]))]
        );
        assert_eq!(
            one(set(subject(
                json!({"format": "jwt_id", "iss": "https://idp", "jti": "t"})
            ))),
            vec![(Kind::Token, v(&["https://idp", "t"]))]
        );
        assert_eq!(
            one(set(subject(json!({"format": "email", "email": "A@x.io"})))),
            vec![(Kind::Email, v(&["A@x.io"]))]
        );
        assert_eq!(
            one(set(subject(json!({"format": "opaque", "id": "u1"})))),
            vec![(Kind::User, v(&["https://tx", "u1"]))]
        );
        assert_eq!(
            one(set(subject(json!({"format": "complex",
                "user": {"format": "email", "email": "b@x.io"},
                "session": {"format": "opaque", "id": "s1"},
                "device": {"format": "opaque", "id": "d1"}})))),
            vec![
                (Kind::Email, v(&["b@x.io"])),
                (Kind::Session, v(&["https://tx", "s1"])),
                (Kind::Device, v(&["d1"]))
            ]
        );
        // every event type
        for (base, name, reason) in EVENTS {
            let m = set(
                json!({"events": {format!("{base}{name}"): {}}, "sub_id": {"format": "opaque", "id": "u"}}),
            );
            let out = entries(&m, "https://tx", "set-9", 4, NOW, &mut zero).unwrap();
            assert_eq!(out.len(), 1, "{name}");
            let e = &out[0].1;
            assert_eq!(
                (e.reason.as_str(), e.source, e.fence),
                (reason, Source::SharedSignal, None)
            );
            assert_eq!(
                e.by,
                Some(OperatorId {
                    iss: "https://tx".into(),
                    sub: "set-9".into()
                })
            );
            assert_eq!(Entry::shard_of(&e.id), Some(out[0].0.shard));
        }
        // an event this receiver does not know: nothing, no error
        let m = set(json!({"events": {"https://example.com/other": {}}}));
        assert_eq!(
            entries(&m, "https://tx", "j", 4, NOW, &mut zero).unwrap(),
            vec![]
        );
        for bad_subject in [
            json!({"format": "phone_number", "phone_number": "+1"}),
            json!({"format": "iss_sub", "iss": "i"}),
            json!({"format": "email", "email": 5}),
            json!("alice"),
            json!({"format": "complex"}),
            json!({"format": "complex", "user": {"format": "complex", "user": {"format": "opaque", "id": "x"}}}),
        ] {
            assert!(
                entries(
                    &set(subject(bad_subject.clone())),
                    "https://tx",
                    "j",
                    4,
                    NOW,
                    &mut zero
                )
                .is_err(),
                "{bad_subject}"
            );
        }
        // no subject at all
        let m = set(json!({"events": {format!("{RISC}sessions-revoked"): {}}}));
        assert!(entries(&m, "https://tx", "j", 4, NOW, &mut zero).is_err());
    }

    #[test]
    fn errors_are_rfc_8935_bodies_and_issuers_are_read_before_verification() {
        let b: Value = serde_json::from_str(&SetError::InvalidAudience.body()).unwrap();
        assert_eq!(
            b,
            json!({"err": "invalid_audience", "description": "The SET's audience is not this receiver."})
        );
        let payload = jose::b64::encode(br#"{"iss":"https://tx"}"#);
        assert_eq!(
            unverified_issuer(&format!("e30.{payload}.sig")),
            Ok("https://tx".into())
        );
        assert!(unverified_issuer("a.b").is_err());
        assert!(unverified_issuer(&format!("e30.{payload}.s.x")).is_err());
        let no_iss = jose::b64::encode(br#"{"jti":"x"}"#);
        assert_eq!(
            unverified_issuer(&format!("e30.{no_iss}.s")),
            Err(SetError::InvalidIssuer)
        );
        let m: Value =
            serde_json::from_str(&metadata("https://gw/ssf", AUD, &["https://tx"])).unwrap();
        assert_eq!(m["delivery_method"], "urn:ietf:rfc:8935");
        assert_eq!(m["events_supported"].as_array().unwrap().len(), 6);
    }
}
