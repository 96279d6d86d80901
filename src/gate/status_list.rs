//! Token Status Lists (issue 16 item 5, draft-ietf-oauth-status-list): a token whose provider
//! has `status_list = { uris = [...] }` may carry `status.status_list = {idx, uri}`; the gateway
//! fetches the Status List Token at `uri` (only under one of the provider's `uris` prefixes),
//! verifies it (JWS `typ` `statuslist+jwt`, the provider's algorithms and keys, `sub` equal to
//! `uri`, `iss` equal to the referenced token's when present, `exp` not passed, `iat` present),
//! decodes `status_list = {bits, lst}` (base64url, then zlib with any valid header: every
//! compression level and window size, the Adler-32 checked; at most [`MAX_LIST_BYTES`]
//! decompressed) and reads the token's status at `idx`: `bits` of 1, 2, 4 or 8 per token, the
//! first token in the least significant bits of the first byte.
//!
//! - VALID (0) passes; INVALID (1) is [`Error::StatusInvalid`], SUSPENDED (2)
//!   [`Error::StatusSuspended`]; any other value (application-specific or reserved: the gateway
//!   does not know what it means) is refused as INVALID. 401 `invalid_token`.
//! - A malformed reference, a `uri` outside the provider's prefixes, or an `idx` outside the list:
//!   [`Error::StatusReference`] (401). A list that cannot be fetched or does not verify:
//!   [`Error::StatusListUnavailable`] (503).
//! - Caching ([`ListCache`], per isolate): a list is used while it is younger than the smaller
//!   of its `ttl` and the route's (or provider's) maximum staleness, and never after its `exp`;
//!   past that it is fetched again, and if that fails the request is 503. Concurrent requests for
//!   the same list share one fetch (the Worker's seam, `src/edge/status_list.rs`).

use std::collections::HashMap;
use std::sync::{Arc as Rc, Mutex, PoisonError};

use serde_json::{Map, Value};

use crate::jose::{self, Claims};
use crate::Error;

/// Largest decompressed list: 2^22 bytes (4 Mi tokens at 8 bits, 32 Mi at 1 bit).
pub const MAX_LIST_BYTES: usize = 4 << 20;
/// Largest Status List Token accepted.
pub const MAX_LIST_TOKEN: usize = 6 << 20;
/// Most lists one isolate keeps.
pub const MAX_CACHED: usize = 64;

/// A token's reference into a status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRef {
    pub idx: u64,
    pub uri: String,
}

/// The token's `status.status_list`, if it has a `status` claim: `{idx: non-negative integer,
/// uri: string}` exactly (other members of `status_list` are refused; other members of
/// `status`, other status mechanisms, are ignored). `Err` for anything malformed.
pub fn reference(claims: &Claims) -> Result<Option<StatusRef>, Error> {
    let Some(status) = claims.get("status") else {
        return Ok(None);
    };
    let bad = Error::StatusReference;
    let Some(list) = status.as_object().ok_or(bad)?.get("status_list") else {
        return Ok(None);
    };
    let list = list.as_object().ok_or(bad)?;
    if list.len() != 2 {
        return Err(bad);
    }
    let idx = list.get("idx").and_then(Value::as_u64).ok_or(bad)?;
    let uri = list.get("uri").and_then(Value::as_str).ok_or(bad)?;
    Ok(Some(StatusRef {
        idx,
        uri: uri.to_owned(),
    }))
}

/// Whether `uri` is under one of `prefixes` (exact text, and an `https://` URL, or `http://`
/// where the gateway allows insecure URLs; no user info, fragment or whitespace).
pub fn allowed(uri: &str, prefixes: &[String], allow_http: bool) -> bool {
    let scheme_ok = uri.starts_with("https://") || (allow_http && uri.starts_with("http://"));
    scheme_ok
        && uri.len() <= 2048
        && !uri.contains(['@', '#', '\\'])
        && uri.bytes().all(|b| b.is_ascii_graphic())
        && prefixes.iter().any(|p| uri.starts_with(p.as_str()))
}

/// A decoded status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub bits: u8,
    pub bytes: Vec<u8>,
}

impl List {
    /// `{"bits", "lst"}`: `bits` 1, 2, 4 or 8; `lst` base64url (no padding) of the zlib stream.
    pub fn decode(bits: u8, lst: &str) -> Option<List> {
        if !matches!(bits, 1 | 2 | 4 | 8) {
            return None;
        }
        let compressed = jose::b64::decode(lst).ok()?;
        let bytes = inflate_zlib(&compressed)?;
        Some(List { bits, bytes })
    }

    /// The status of token `idx`; `None` outside the list.
    pub fn status(&self, idx: u64) -> Option<u8> {
        let per_byte = u64::from(8 / self.bits);
        let byte = usize::try_from(idx / per_byte).ok()?;
        let shift = u32::try_from((idx % per_byte) * u64::from(self.bits)).ok()?;
        let mask = u8::MAX >> (8 - self.bits);
        self.bytes
            .get(byte)
            .map(|b| b.checked_shr(shift).unwrap_or(0) & mask)
    }
}

/// A zlib stream (RFC 1950) with any valid header (CM 8, CINFO at most 7, FCHECK, no preset
/// dictionary), its Adler-32 checked, at most [`MAX_LIST_BYTES`] out. Nothing after the stream.
pub fn inflate_zlib(data: &[u8]) -> Option<Vec<u8>> {
    let (&cmf, &flg) = (data.first()?, data.get(1)?);
    let header_ok = cmf & 0x0f == 8
        && cmf >> 4 <= 7
        && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
        && flg & 0x20 == 0;
    if !header_ok {
        return None;
    }
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, MAX_LIST_BYTES).ok()
}

/// The verdict on a token's status value.
pub fn verdict(status: u8) -> Result<(), Error> {
    match status {
        0 => Ok(()),
        2 => Err(Error::StatusSuspended),
        _ => Err(Error::StatusInvalid),
    }
}

/// A verified Status List Token: its list and its times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub list: Rc<List>,
    /// When the fetch was asked for (unix seconds).
    pub fetched_at: i64,
    pub exp: Option<i64>,
    pub ttl: Option<i64>,
}

impl Fetched {
    /// Whether it may answer at `now` for a route that accepts lists at most `max_stale`
    /// seconds old.
    pub fn usable(&self, now: i64, max_stale: i64) -> bool {
        let age_limit = self.ttl.map_or(max_stale, |ttl| ttl.min(max_stale));
        now.saturating_sub(self.fetched_at) < age_limit && self.exp.is_none_or(|exp| now < exp)
    }
}

/// The claims of a Status List Token whose signature verified (`payload`), checked for `uri`,
/// the referenced token's `iss`, at `now`.
pub fn accept(
    payload: &Map<String, Value>,
    uri: &str,
    iss: Option<&str>,
    now: i64,
    skew: i64,
    fetched_at: i64,
) -> Option<Fetched> {
    if payload.get("sub")?.as_str()? != uri {
        return None;
    }
    if let Some(list_iss) = payload.get("iss") {
        if Some(list_iss.as_str()?) != iss {
            return None;
        }
    }
    let iat = payload.get("iat")?.as_i64()?;
    if iat > now.saturating_add(skew) {
        return None;
    }
    let exp = match payload.get("exp") {
        None => None,
        Some(v) => Some(v.as_i64().filter(|exp| *exp > now.saturating_sub(skew))?),
    };
    let ttl = match payload.get("ttl") {
        None => None,
        Some(v) => Some(v.as_i64().filter(|t| *t > 0)?),
    };
    let sl = payload.get("status_list")?.as_object()?;
    let bits = u8::try_from(sl.get("bits")?.as_u64()?).ok()?;
    let lst = sl.get("lst")?.as_str()?;
    let list = List::decode(bits, lst)?;
    Some(Fetched {
        list: Rc::new(list),
        fetched_at,
        exp,
        ttl,
    })
}

/// The status-list phase on a route: every verified credential whose provider has
/// `status_list` is checked (see the module docs). `source` fetches a list's token text.
pub async fn enforce<K: crate::gate::seams::KeySource, V: crate::gate::seams::SignatureVerifier>(
    gate: &crate::gate::Gate,
    route: &crate::policy::Route,
    principal: &crate::gate::phase::Principal<'_>,
    keys: &K,
    verifier: &V,
    source: &dyn crate::gate::deny::DenySource,
    now: i64,
) -> Result<(), Error> {
    for (provider, claims) in &principal.tokens {
        let Some(rule) = gate
            .policy()
            .provider(&provider.name)
            .and_then(|p| p.status_list.as_ref())
        else {
            continue;
        };
        let Some(r) = reference(claims)? else {
            if rule.required {
                return Err(Error::StatusReference);
            }
            continue;
        };
        let allow_http = gate.policy().gateway().allow_insecure_http;
        if !allowed(&r.uri, &rule.uris, allow_http) {
            return Err(Error::StatusReference);
        }
        let max_stale = i64::try_from(route.status_max_stale_secs.unwrap_or(rule.max_stale_secs))
            .unwrap_or(i64::MAX);
        let cache = gate.status_lists();
        let list = match cache.get(&r.uri, now, max_stale) {
            Some(list) => list,
            None => {
                fn unavailable<E>(_: E) -> Error {
                    Error::StatusListUnavailable
                }
                let text = source.list_token(&r.uri).await?;
                let keys = keys.keys(provider, false).await.map_err(unavailable)?;
                let profile = jose::Profile {
                    token_types: vec!["statuslist+jwt".to_owned()],
                    limits: jose::Limits {
                        max_token_len: MAX_LIST_TOKEN,
                        max_payload_len: MAX_LIST_TOKEN,
                        ..jose::Limits::default()
                    },
                    ..provider
                        .jwt()
                        .map(|j| j.profile.clone())
                        .unwrap_or_default()
                };
                let selected = jose::select(&text, &profile, &keys).map_err(unavailable)?;
                selected
                    .verify_signature(verifier)
                    .await
                    .map_err(unavailable)?;
                let payload = selected.payload().map_err(unavailable)?;
                let fetched = accept(&payload, &r.uri, claims.iss(), now, gate.skew_secs, now)
                    .ok_or(Error::StatusListUnavailable)?;
                let list = fetched.list.clone();
                cache.put(&r.uri, fetched);
                list
            }
        };
        verdict(list.status(r.idx).ok_or(Error::StatusReference)?)?;
    }
    Ok(())
}

/// The lists this isolate holds, by URI.
#[derive(Debug, Default)]
pub struct ListCache {
    /// A mutex so a gateway stays `Send + Sync` for embedders; uncontended in the Worker.
    lists: Mutex<HashMap<String, Fetched>>,
}

impl ListCache {
    /// The list at `uri` if it may answer at `now` under `max_stale`.
    pub fn get(&self, uri: &str, now: i64, max_stale: i64) -> Option<Rc<List>> {
        self.lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uri)
            .filter(|f| f.usable(now, max_stale))
            .map(|f| f.list.clone())
    }

    pub fn put(&self, uri: &str, fetched: Fetched) {
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        if lists.len() >= MAX_CACHED && !lists.contains_key(uri) {
            // Drop the oldest.
            if let Some(oldest) = lists
                .iter()
                .min_by_key(|(_, f)| f.fetched_at)
                .map(|(k, _)| k.clone())
            {
                lists.remove(&oldest);
            }
        }
        lists.insert(uri.to_owned(), fetched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(bits: u8, lst: &str) -> List {
        List::decode(bits, lst).unwrap()
    }

    /// draft-ietf-oauth-status-list §4.1 and Appendix C: the 1-bit example `[b9 a3]`.
    #[test]
    fn the_drafts_1_bit_example() {
        let l = list(1, "eNrbuRgAAhcBXQ");
        assert_eq!(l.bytes, [0xb9, 0xa3]);
        let want = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        for (i, s) in want.iter().enumerate() {
            assert_eq!(l.status(i as u64), Some(*s), "{i}");
        }
        assert_eq!(l.status(16), None);
        assert_eq!(l.status(u64::MAX), None);
    }

    /// The 2-bit example `[c9 44 f9]`.
    #[test]
    fn the_drafts_2_bit_example() {
        let l = list(2, "eNo76fITAAPfAgc");
        assert_eq!(l.bytes, [0xc9, 0x44, 0xf9]);
        let want = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        for (i, s) in want.iter().enumerate() {
            assert_eq!(l.status(i as u64), Some(*s), "{i}");
        }
        assert_eq!(l.status(12), None);
    }

    fn check_vector(bits: u8, lst: &str, want: &[(u64, u8)]) {
        let l = list(bits, lst);
        assert_eq!(l.bytes.len(), (1usize << 20) * usize::from(bits) / 8);
        let mut nonzero = 0;
        for idx in 0..(1u64 << 20) {
            let s = l.status(idx).unwrap();
            let expected = want.iter().find(|(i, _)| *i == idx).map_or(0, |(_, s)| *s);
            assert_eq!(s, expected, "bits {bits} idx {idx}");
            nonzero += usize::from(s != 0);
        }
        assert_eq!(nonzero, want.iter().filter(|(_, s)| *s != 0).count());
        assert_eq!(l.status(1 << 20), None);
    }

    /// Appendix C.1: 2^20 one-bit statuses.
    #[test]
    fn appendix_c_1_bit() {
        let lst = "eNrt3AENwCAMAEGogklACtKQPg9LugC9k_ACvreiogEAAKkeCQAAAAAAAAAAAAAAAAAAAIBylgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAXG9IAAAAAAAAAPwsJAAAAAAAAAAAAAAAvhsSAAAAAAAAAAAA7KpLAAAAAAAAAAAAAAAAAAAAAJsLCQAAAAAAAAAAADjelAAAAAAAAAAAKjDMAQAAAACAZC8L2AEb";
        let want: Vec<(u64, u8)> = [
            0, 1993, 25460, 159495, 495669, 554353, 645645, 723232, 854545, 934534, 1000345,
        ]
        .iter()
        .map(|i| (*i, 1))
        .collect();
        check_vector(1, lst, &want);
    }

    /// Appendix C.2: 2^20 two-bit statuses.
    #[test]
    fn appendix_c_2_bit() {
        let lst = "eNrt2zENACEQAEEuoaBABP5VIO01fCjIHTMStt9ovGVIAAAAAABAbiEBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEB5WwIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAID0ugQAAAAAAAAAAAAAAAAAQG12SgAAAAAAAAAAAAAAAAAAAAAAAAAAAOCSIQEAAAAAAAAAAAAAAAAAAAAAAAD8ExIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwJEuAQAAAAAAAAAAAAAAAAAAAAAAAMB9SwIAAAAAAAAAAAAAAAAAAACoYUoAAAAAAAAAAAAAAEBqH81gAQw";
        let want = [
            (0, 1),
            (1993, 2),
            (25460, 1),
            (159495, 3),
            (495669, 1),
            (554353, 1),
            (645645, 2),
            (723232, 1),
            (854545, 1),
            (934534, 2),
            (1000345, 3),
        ];
        check_vector(2, lst, &want);
    }

    /// Appendix C.3: 2^20 four-bit statuses.
    #[test]
    fn appendix_c_4_bit() {
        let want = [
            (0, 1),
            (1993, 2),
            (35460, 3),
            (459495, 4),
            (595669, 5),
            (754353, 6),
            (845645, 7),
            (923232, 8),
            (924445, 9),
            (934534, 10),
            (1004534, 11),
            (1000345, 12),
            (1030203, 13),
            (1030204, 14),
            (1030205, 15),
        ];
        check_vector(4, include_str!("status_list/c3.txt").trim(), &want);
    }

    /// Appendix C.4: 2^20 eight-bit statuses, every value 0..=255 once (at these indices).
    #[test]
    fn appendix_c_8_bit() {
        let want: Vec<(u64, u8)> = include_str!("status_list/c4.txt")
            .lines()
            .skip(1)
            .map(|l| {
                let (i, s) = l.split_once(' ').unwrap();
                (i.parse().unwrap(), s.parse().unwrap())
            })
            .collect();
        assert_eq!(want.len(), 256);
        let lst = include_str!("status_list/c4.txt").lines().next().unwrap();
        check_vector(8, lst, &want);
    }

    #[test]
    fn any_valid_zlib_header_decodes_and_bad_ones_do_not() {
        // [b9 a3] compressed by Python's zlib at levels 0, 1, 6 (default, 78 9c), 9 and with
        // small windows (wbits 9..15), each a different header.
        for lst in include_str!("status_list/levels.txt").lines() {
            assert_eq!(list(1, lst).bytes, [0xb9, 0xa3], "{lst}");
        }
        let good = jose::b64::decode("eNrbuRgAAhcBXQ").unwrap();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            inflate_zlib(&b)
        };
        assert!(with(&|_| {}).is_some());
        assert!(with(&|b| b[0] = 0x79).is_none(), "CM 9");
        assert!(with(&|b| b[0] = 0x88).is_none(), "CINFO 8");
        assert!(with(&|b| b[1] ^= 1).is_none(), "FCHECK");
        assert!(with(&|b| b[1] = 0xbb).is_none(), "FDICT (FCHECK valid)");
        assert!(with(&|b| *b.last_mut().unwrap() ^= 1).is_none(), "Adler-32");
        assert!(with(&|b| b.truncate(b.len() - 1)).is_none(), "truncated");
        assert!(inflate_zlib(&[]).is_none());
        assert!(inflate_zlib(&[0x78]).is_none());
        assert_eq!(List::decode(3, "eNrbuRgAAhcBXQ"), None);
        assert_eq!(List::decode(1, "eNrbuRgAAhcBXQ=="), None);
        assert_eq!(List::decode(1, "not base64!"), None);
    }

    #[test]
    fn a_zip_bomb_is_refused() {
        // 16 MiB of zeros compresses to about 16 KB.
        let bomb = include_str!("status_list/bomb.txt").trim();
        assert_eq!(List::decode(1, bomb), None);
    }

    #[test]
    fn statuses_map_to_verdicts() {
        assert_eq!(verdict(0), Ok(()));
        assert_eq!(verdict(1), Err(Error::StatusInvalid));
        assert_eq!(verdict(2), Err(Error::StatusSuspended));
        assert_eq!(verdict(3), Err(Error::StatusInvalid));
        assert_eq!(verdict(255), Err(Error::StatusInvalid));
    }

    #[test]
    fn references_are_read_strictly() {
        let claims = |status: Value| {
            let mut m = serde_json::json!({"iss": "i", "exp": 2_000_000_000});
            if !status.is_null() {
                m["status"] = status;
            }
            jose::claims::validate(
                &jose::b64::encode(m.to_string().as_bytes()),
                &jose::ClaimRules::default(),
                1_900_000_000,
            )
            .unwrap()
        };
        let uri = "https://status.example.com/1";
        assert_eq!(reference(&claims(Value::Null)), Ok(None));
        assert_eq!(
            reference(&claims(serde_json::json!({"other": 1}))),
            Ok(None)
        );
        assert_eq!(
            reference(&claims(
                serde_json::json!({"status_list": {"idx": 7, "uri": uri}})
            )),
            Ok(Some(StatusRef {
                idx: 7,
                uri: uri.into()
            }))
        );
        for bad in [
            serde_json::json!("x"),
            serde_json::json!({"status_list": 1}),
            serde_json::json!({"status_list": {"idx": -1, "uri": uri}}),
            serde_json::json!({"status_list": {"idx": 1.5, "uri": uri}}),
            serde_json::json!({"status_list": {"idx": "1", "uri": uri}}),
            serde_json::json!({"status_list": {"idx": 1}}),
            serde_json::json!({"status_list": {"idx": 1, "uri": 5}}),
            serde_json::json!({"status_list": {"idx": 1, "uri": uri, "x": 1}}),
        ] {
            assert_eq!(
                reference(&claims(bad.clone())),
                Err(Error::StatusReference),
                "{bad}"
            );
        }
        let prefixes = vec!["https://status.example.com/".to_owned()];
        assert!(allowed(uri, &prefixes, false));
        assert!(!allowed("https://evil.example/1", &prefixes, false));
        assert!(!allowed(
            "http://status.example.com/1",
            &["http://status.example.com/".into()],
            false
        ));
        assert!(allowed(
            "http://status.example.com/1",
            &["http://status.example.com/".into()],
            true
        ));
        assert!(!allowed("https://status.example.com/1#x", &prefixes, false));
        assert!(!allowed("https://status.example.com/ 1", &prefixes, false));
        assert!(!allowed(
            "https://u@status.example.com/1",
            &["https://u@status.example.com/".into()],
            false
        ));
    }

    #[test]
    fn a_list_token_is_accepted_for_its_uri_issuer_and_times() {
        let uri = "https://status.example.com/1";
        let payload = |extra: Value| {
            let mut m = serde_json::json!({
                "sub": uri, "iat": 1000, "exp": 5000, "ttl": 60, "iss": "https://idp",
                "status_list": {"bits": 1, "lst": "eNrbuRgAAhcBXQ"},
            });
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    m.as_object_mut().unwrap().remove(k);
                } else {
                    m[k] = v.clone();
                }
            }
            m.as_object().unwrap().clone()
        };
        let ok = accept(
            &payload(serde_json::json!({})),
            uri,
            Some("https://idp"),
            2000,
            60,
            2000,
        )
        .unwrap();
        assert_eq!((ok.exp, ok.ttl, ok.list.bits), (Some(5000), Some(60), 1));
        for (extra, why) in [
            (
                serde_json::json!({"sub": "https://status.example.com/2"}),
                "sub",
            ),
            (serde_json::json!({"iss": "https://other"}), "iss"),
            (serde_json::json!({"iat": null}), "iat"),
            (serde_json::json!({"iat": 9000}), "iat future"),
            (serde_json::json!({"exp": 1900}), "expired"),
            (serde_json::json!({"ttl": 0}), "ttl"),
            (serde_json::json!({"ttl": "60"}), "ttl type"),
            (
                serde_json::json!({"status_list": {"bits": 3, "lst": "eNrbuRgAAhcBXQ"}}),
                "bits",
            ),
            (serde_json::json!({"status_list": {"bits": 1}}), "lst"),
        ] {
            assert_eq!(
                accept(&payload(extra), uri, Some("https://idp"), 2000, 60, 2000),
                None,
                "{why}"
            );
        }
        // no iss in the list: fine; no exp: fine
        assert!(accept(
            &payload(serde_json::json!({"iss": null, "exp": null})),
            uri,
            Some("https://idp"),
            2000,
            60,
            2000
        )
        .is_some());
    }

    #[test]
    fn freshness_follows_ttl_exp_and_the_routes_maximum_staleness() {
        let f = |exp, ttl| Fetched {
            list: Rc::new(List {
                bits: 1,
                bytes: vec![0],
            }),
            fetched_at: 1000,
            exp,
            ttl,
        };
        // ttl 60 under a max staleness of 300: 60 s
        assert!(f(None, Some(60)).usable(1059, 300));
        assert!(!f(None, Some(60)).usable(1060, 300));
        // ttl 600 under a max staleness of 300: 300 s
        assert!(f(None, Some(600)).usable(1299, 300));
        assert!(!f(None, Some(600)).usable(1300, 300));
        // no ttl: the maximum staleness
        assert!(!f(None, None).usable(1300, 300));
        // never after exp
        assert!(!f(Some(1100), Some(600)).usable(1100, 300));
        assert!(f(Some(1100), Some(600)).usable(1099, 300));
        let cache = ListCache::default();
        cache.put("u", f(None, Some(60)));
        assert!(cache.get("u", 1010, 300).is_some());
        assert!(
            cache.get("u", 1010, 5).is_none(),
            "a stricter route refetches"
        );
        assert!(cache.get("u", 2000, 300).is_none());
        for i in 0..(MAX_CACHED + 5) {
            cache.put(&format!("u{i}"), f(None, Some(60)));
        }
        assert!(cache.lists.lock().unwrap().len() <= MAX_CACHED);
    }
}
