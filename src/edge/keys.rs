//! The [`KeySource`] seam in the Worker: JWKS fetched from `jwks_uri` (with a timeout, a size cap,
//! no redirects) and cached in isolate memory and in the Cache API; inline JWKS; HMAC secrets from
//! Worker secrets. When to fetch is decided by the pure [`KeyCache`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::{Cache, Delay, Env, Fetch, Headers, Response};

use crate::gate::key_cache::{cache_control_max_age, shared_copy_max_age, KeyCache, Plan};
use crate::gate::log::ascii_json;
use crate::gate::pipeline::KeySource;
use crate::gate::runtime::{hmac_keys, KeySpec, ProviderRt, SecretFault};
use crate::jose::{JwksLimits, JwksReport, KeyRejection, KeySet};
use crate::policy::Secret;
use crate::Error;

/// Largest JWKS document read (ATTACKS #43).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Time allowed for the whole JWKS fetch, body included.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(3);
/// While another request's fetch is in flight ([`Plan::Wait`]): poll the cache this often, for at
/// most [`WAIT_MAX`] (a little longer than the fetch timeout), then give up with 503.
const WAIT_STEP: Duration = Duration::from_millis(20);
const WAIT_MAX: Duration = Duration::from_millis(3500);

pub struct EdgeKeyCache {
    jwks: RefCell<KeyCache<KeySet>>,
    secrets: RefCell<HashMap<String, (String, Arc<KeySet>)>>,
}

impl EdgeKeyCache {
    pub fn new() -> Self {
        Self {
            jwks: RefCell::new(KeyCache::new()),
            secrets: RefCell::new(HashMap::new()),
        }
    }
}

pub struct EdgeKeys<'a> {
    pub env: &'a Env,
    pub cache: &'a EdgeKeyCache,
    pub now: i64,
}

impl KeySource for EdgeKeys<'_> {
    async fn keys(&self, provider: &ProviderRt, refresh: bool) -> Result<Arc<KeySet>, Error> {
        match &provider.keys {
            KeySpec::Inline(set) => Ok(set.clone()),
            KeySpec::Secret(secrets) => self.secret_keys(&provider.name, secrets),
            KeySpec::Jwks { uri, times } => {
                let mut waited = Duration::ZERO;
                let plan = loop {
                    let plan =
                        self.cache
                            .jwks
                            .borrow_mut()
                            .plan(&provider.name, times, self.now, refresh);
                    if !matches!(plan, Plan::Wait) || waited >= WAIT_MAX {
                        break plan;
                    }
                    Delay::from(WAIT_STEP).await;
                    waited += WAIT_STEP;
                };
                match plan {
                    Plan::Use(keys) => Ok(keys),
                    Plan::Unavailable | Plan::Wait => Err(Error::KeysUnavailable),
                    Plan::Fetch { .. } => {
                        let parsed = fetch_jwks(uri, refresh, self.now).await.and_then(|doc| {
                            KeySet::from_jwks(&doc.body, &JwksLimits::default())
                                .map(|(set, report)| (doc, set, report))
                        });
                        match parsed {
                            Ok((doc, set, report)) => {
                                log_report(&provider.name, &report);
                                let usable = !set.is_empty();
                                let keys = self.cache.jwks.borrow_mut().fetched(
                                    &provider.name,
                                    times,
                                    self.now,
                                    set,
                                    usable,
                                    doc.max_age,
                                );
                                // Share with the other isolates of this location: only a document
                                // that gave usable keys, and no longer than it is fresh here.
                                if usable && !doc.from_cache {
                                    let max_age = times.effective_max_age(doc.max_age);
                                    share(uri, doc.body, max_age, self.now).await;
                                }
                                keys.ok_or(Error::KeysUnavailable)
                            }
                            Err(e) => {
                                log_line(
                                    "warn",
                                    serde_json::json!({
                                        "attestgate": "jwks_fetch_failed",
                                        "provider": provider.name,
                                        "reason": e.reason(),
                                    }),
                                );
                                self.cache
                                    .jwks
                                    .borrow_mut()
                                    .failed(&provider.name, times, self.now)
                                    .ok_or(Error::KeysUnavailable)
                            }
                        }
                    }
                }
            }
        }
    }
}

impl EdgeKeys<'_> {
    /// A provider's HMAC keys from its Worker secrets (base64), decoded once per set of values
    /// (cached under the provider's name). Every listed secret must be there and usable
    /// ([`hmac_keys`]); otherwise 503, and the log names the secret (never its value).
    fn secret_keys(&self, provider: &str, secrets: &[Secret]) -> Result<Arc<KeySet>, Error> {
        let values: Vec<Option<String>> = secrets
            .iter()
            .map(|s| super::read_secret(self.env, &s.name))
            .collect();
        // Change detection only: the values, length-prefixed so no two lists look alike.
        let seen_key: String = values
            .iter()
            .map(|v| {
                v.as_deref()
                    .map_or_else(|| "-".to_owned(), |v| format!("{}:{v}", v.len()))
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut cache = self.cache.secrets.borrow_mut();
        if let Some((seen, set)) = cache.get(provider) {
            if *seen == seen_key {
                return Ok(set.clone());
            }
        }
        let texts: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
        let set = hmac_keys(secrets, &texts).map_err(|fault| {
            let (event, i) = match fault {
                SecretFault::Missing(i) => ("secret_missing", i),
                SecretFault::Unusable(i) => ("secret_unusable", i),
            };
            let name = secrets.get(i).map_or("", |s| s.name.as_str());
            worker::console_error!(
                "{{\"attestgate\":\"{event}\",\"provider\":{provider:?},\"secret\":{name:?}}}"
            );
            Error::SecretUnavailable
        })?;
        let set = Arc::new(set);
        cache.insert(provider.to_owned(), (seen_key, set.clone()));
        Ok(set)
    }
}

/// One JWKS document as read.
struct Document {
    body: Vec<u8>,
    /// The issuer's `Cache-Control: max-age`; for a Cache API copy, its remaining freshness.
    max_age: Option<i64>,
    from_cache: bool,
}

/// Header of a Cache API copy: when the fetching isolate's freshness ends (unix seconds).
const FRESH_UNTIL: &str = "x-attestgate-fresh-until";

/// Fetch a JWKS document: the Cache API copy first (unless refreshing), else the network, with a
/// timeout over the whole exchange, no redirects, and a size cap. A Cache API copy is fresh only
/// for what remains of the fetching isolate's freshness ([`shared_copy_max_age`]), so keys never
/// outlive `jwks_cache_secs` by being passed between isolates, and an issuer outage is never
/// hidden beyond the configured times.
async fn fetch_jwks(uri: &str, refresh: bool, now: i64) -> Result<Document, Error> {
    if !refresh {
        if let Ok(Some(mut hit)) = Cache::default().get(uri, false).await {
            let fresh_until = hit
                .headers()
                .get(FRESH_UNTIL)
                .ok()
                .flatten()
                .and_then(|v| v.parse::<i64>().ok());
            if let Some(max_age) = shared_copy_max_age(fresh_until, now) {
                if let Ok(body) = read_capped(&mut hit).await {
                    return Ok(Document {
                        body,
                        max_age: Some(max_age),
                        from_cache: true,
                    });
                }
            }
        }
    }
    let exchange = async {
        let headers = Headers::new();
        let _ = headers.set("accept", "application/jwk-set+json, application/json");
        let req = super::new_request(uri, "GET", &headers, None, true)
            .map_err(|_| Error::KeysUnavailable)?;
        let mut resp = Fetch::Request(req.into())
            .send()
            .await
            .map_err(|_| Error::KeysUnavailable)?;
        if resp.status_code() != 200 {
            return Err(Error::KeysUnavailable);
        }
        let max_age = max_age_of(resp.headers());
        let body = read_capped(&mut resp).await?;
        Ok((body, max_age))
    };
    let timeout = Delay::from(JWKS_TIMEOUT);
    let (body, max_age) = match select(Box::pin(exchange), timeout).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => return Err(Error::KeysUnavailable),
    };
    Ok(Document {
        body,
        max_age,
        from_cache: false,
    })
}

/// Put a document that gave usable keys into the Cache API for `max_age` seconds. Best effort.
async fn share(uri: &str, body: Vec<u8>, max_age: i64, now: i64) {
    if let Ok(copy) = Response::from_bytes(body) {
        let headers = Headers::new();
        let _ = headers.set("content-type", "application/json");
        let _ = headers.set("cache-control", &format!("max-age={max_age}"));
        let _ = headers.set(FRESH_UNTIL, &now.saturating_add(max_age).to_string());
        let _ = Cache::default().put(uri, copy.with_headers(headers)).await;
    }
}

/// Most skipped keys listed in one log line.
const MAX_LOGGED_SKIPS: usize = 16;

/// Log what loading a JWKS skipped. A private key in a public JWKS means the issuer's key is
/// exposed: that is an error-level alert (ATTACKS #42). Never logs key material.
fn log_report(provider: &str, report: &JwksReport) {
    if report.private_key_found() {
        let kids: Vec<&str> = report
            .skipped
            .iter()
            .filter(|s| s.reason == KeyRejection::PrivateKey)
            .filter_map(|s| s.kid.as_deref())
            .take(MAX_LOGGED_SKIPS)
            .collect();
        log_line(
            "error",
            serde_json::json!({
                "attestgate": "jwks_private_key",
                "provider": provider,
                "kids": kids,
            }),
        );
    }
    if !report.skipped.is_empty() {
        let skipped: Vec<serde_json::Value> = report
            .skipped
            .iter()
            .take(MAX_LOGGED_SKIPS)
            .map(|s| serde_json::json!({"index": s.index, "kid": s.kid, "reason": s.reason.reason()}))
            .collect();
        log_line(
            "warn",
            serde_json::json!({
                "attestgate": "jwks_keys_skipped",
                "provider": provider,
                "loaded": report.loaded,
                "skipped": skipped,
            }),
        );
    }
    if !report.duplicate_kids.is_empty() {
        log_line(
            "warn",
            serde_json::json!({
                "attestgate": "jwks_duplicate_kid",
                "provider": provider,
                "kids": report.duplicate_kids.iter().take(MAX_LOGGED_SKIPS).collect::<Vec<_>>(),
            }),
        );
    }
    if report.loaded == 0 {
        log_line(
            "warn",
            serde_json::json!({"attestgate": "jwks_empty", "provider": provider}),
        );
    }
}

/// One JSON log line, ASCII only: a `kid` from the document cannot split or forge a line.
fn log_line(level: &str, line: serde_json::Value) {
    let line = ascii_json(line.to_string());
    match level {
        "error" => worker::console_error!("{line}"),
        _ => worker::console_warn!("{line}"),
    }
}

fn max_age_of(headers: &Headers) -> Option<i64> {
    headers
        .get("cache-control")
        .ok()
        .flatten()
        .and_then(|v| cache_control_max_age(&v))
}

/// Read a body, refusing anything larger than [`MAX_JWKS_BYTES`] (checked on the declared length
/// first, then while streaming, so an endless body is cut off).
async fn read_capped(resp: &mut Response) -> Result<Vec<u8>, Error> {
    if let Ok(Some(len)) = resp.headers().get("content-length") {
        if len.parse::<usize>().map_or(true, |n| n > MAX_JWKS_BYTES) {
            return Err(Error::KeysUnavailable);
        }
    }
    let mut stream = resp.stream().map_err(|_| Error::KeysUnavailable)?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Error::KeysUnavailable)?;
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(Error::KeysUnavailable);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
