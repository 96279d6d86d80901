//! The [`KeySource`] seam in the Worker: JWKS fetched from `jwks_uri` (with a timeout, a size cap,
//! no redirects) and cached in isolate memory and in the Cache API (copies sealed with a MAC,
//! [`verify_shared_copy`]); inline JWKS; HMAC keys from Worker secrets (through the [`Secrets`]
//! seam). When to fetch is decided by the pure [`KeyCache`].

use std::cell::{OnceCell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use worker::{Cache, Fetch, Headers, Response};

use super::task::{sleep, within};

use crate::gate::compiled::{KeySpec, ProviderRt, SecretFault};
use crate::gate::key_cache::{
    cache_control_max_age, seal_shared_copy, shared_copy_max_age, verify_shared_copy, CopyKey,
    KeyCache, Plan,
};
use crate::gate::log::{ascii_json, json_object, json_str, json_strs};
use crate::gate::seams::{secret_keys, KeySource, NonceKeySource, Secrets};
use crate::jose::{JwksLimits, JwksReport, KeyRejection, KeySet};
use crate::policy::Secret;
use crate::Error;

/// Largest JWKS document read (ATTACKS #43).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Time allowed for the whole JWKS fetch, body included.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for reading (body included) or writing a Cache API copy; past it, a read is a
/// miss and a write is abandoned.
pub const CACHE_API_TIMEOUT: Duration = Duration::from_secs(1);
/// While another request's fetch is in flight ([`Plan::Wait`]): poll the cache this often, for at
/// most [`WAIT_MAX`] (a little longer than the fetch timeout), then give up with 503.
const WAIT_STEP: Duration = Duration::from_millis(20);
const WAIT_MAX: Duration = Duration::from_millis(3500);

pub struct EdgeKeyCache {
    jwks: RefCell<KeyCache<KeySet>>,
    /// Each HMAC provider's key set, once its secrets loaded (a few providers at most: a
    /// scanned list, no hash table in the wasm for it).
    secrets: RefCell<Vec<(String, Arc<KeySet>)>>,
    /// The Cache API copy key, derived from `ATTESTGATE_NONCE_KEY` once per isolate.
    copy_key: OnceCell<Option<CopyKey>>,
}

impl EdgeKeyCache {
    pub fn new() -> Self {
        Self {
            jwks: RefCell::new(KeyCache::new()),
            secrets: RefCell::new(Vec::new()),
            copy_key: OnceCell::new(),
        }
    }
}

pub struct EdgeKeys<'a, S> {
    pub secrets: &'a S,
    pub nonce_key: &'a dyn NonceKeySource,
    pub cache: &'a EdgeKeyCache,
    pub now: i64,
}

impl<S: Secrets> KeySource for EdgeKeys<'_, S> {
    async fn keys(&self, provider: &ProviderRt, refresh: bool) -> Result<Arc<KeySet>, Error> {
        match &provider.keys {
            KeySpec::Inline(set) => Ok(set.clone()),
            KeySpec::Secret(list) => self.secret_keys(&provider.name, list),
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
                    sleep(WAIT_STEP).await;
                    waited += WAIT_STEP;
                };
                match plan {
                    Plan::Use(keys) => Ok(keys),
                    Plan::Unavailable | Plan::Wait => Err(Error::KeysUnavailable),
                    Plan::Fetch { .. } => {
                        let copy_key = self.copy_key();
                        let parsed =
                            fetch_jwks(uri, refresh, self.now, copy_key)
                                .await
                                .and_then(|doc| {
                                    KeySet::from_jwks(&doc.body, &JwksLimits::default())
                                        .map(|(set, report)| (doc, set, report))
                                        // A document over the limits: the issuer's keys are
                                        // unavailable (503); form errors keep their reason.
                                        .map_err(|e| match e {
                                            crate::jose::Error::JwksTooLarge => {
                                                Error::KeysUnavailable
                                            }
                                            e => Error::Token(e),
                                        })
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
                                if let (true, false, Some(key)) = (usable, doc.from_cache, copy_key)
                                {
                                    let max_age = times.effective_max_age(doc.max_age);
                                    share(uri, doc.body, max_age, self.now, key).await;
                                }
                                keys.ok_or(Error::KeysUnavailable)
                            }
                            Err(e) => {
                                log_line(
                                    "warn",
                                    &json_object(&[
                                        ("attestgate", "\"jwks_fetch_failed\""),
                                        ("provider", &json_str(&provider.name)),
                                        ("reason", &json_str(e.reason())),
                                    ]),
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

impl<S: Secrets> EdgeKeys<'_, S> {
    /// The key that seals Cache API copies, derived from `ATTESTGATE_NONCE_KEY`. `None` without
    /// a usable secret: then no copy is read or written (an unsealed copy could be planted by
    /// any Worker on the zone). Asked for only when a fetch is due, not per request.
    fn copy_key(&self) -> Option<&CopyKey> {
        self.cache
            .copy_key
            .get_or_init(|| self.nonce_key.nonce_key().map(CopyKey::derive))
            .as_ref()
    }

    /// A provider's HMAC keys from its Worker secrets (base64), decoded once (cached under the
    /// provider's name). Every listed secret must be there and usable
    /// ([`crate::gate::compiled::hmac_keys`]); otherwise 503, and the log names the secret
    /// (never its value).
    fn secret_keys(&self, provider: &str, list: &[Secret]) -> Result<Arc<KeySet>, Error> {
        if let Some((_, set)) = self
            .cache
            .secrets
            .borrow()
            .iter()
            .find(|(p, _)| p == provider)
        {
            return Ok(set.clone());
        }
        let set = secret_keys(self.secrets, list).map_err(|fault| {
            let (event, i) = match fault {
                SecretFault::Missing(i) => ("secret_missing", i),
                SecretFault::Unusable(i) => ("secret_unusable", i),
            };
            let name = list.get(i).map_or("", |s| s.name.as_str());
            worker::console_error!(
                "{{\"attestgate\":\"{event}\",\"provider\":{provider:?},\"secret\":{name:?}}}"
            );
            Error::SecretUnavailable
        })?;
        let set = Arc::new(set);
        self.cache
            .secrets
            .borrow_mut()
            .push((provider.to_owned(), set.clone()));
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
/// Header of a Cache API copy: its MAC ([`seal_shared_copy`]).
const COPY_MAC: &str = "x-attestgate-copy-mac";

/// A Cache API copy of `uri`'s document, if there is one that this gateway sealed (its MAC over
/// the uri, the stamp and the body verifies) and that is still fresh; else `None` (fetch from
/// the issuer).
async fn shared_copy(uri: &str, now: i64, key: &CopyKey) -> Option<Document> {
    let mut hit = Cache::default().get(uri, false).await.ok()??;
    let header = |name| hit.headers().get(name).ok().flatten();
    let fresh_until = header(FRESH_UNTIL).and_then(|v| v.parse::<i64>().ok())?;
    let tag = header(COPY_MAC);
    let max_age = shared_copy_max_age(Some(fresh_until), now)?;
    let body = read_capped(&mut hit).await.ok()?;
    if !verify_shared_copy(key, uri, fresh_until, &body, tag.as_deref()) {
        log_line(
            "warn",
            r#"{"attestgate":"jwks_copy_refused","reason":"copy_mac"}"#,
        );
        return None;
    }
    Some(Document {
        body,
        max_age: Some(max_age),
        from_cache: true,
    })
}

/// Fetch a JWKS document: the Cache API copy first (unless refreshing, or without a copy key),
/// else the network, with a timeout over the whole exchange, no redirects, and a size cap. A
/// Cache API copy is used only if its MAC verifies, and is fresh only for what remains of the
/// fetching isolate's freshness ([`shared_copy_max_age`]), so keys never outlive
/// `jwks_cache_secs` by being passed between isolates, and an issuer outage is never hidden
/// beyond the configured times.
async fn fetch_jwks(
    uri: &str,
    refresh: bool,
    now: i64,
    copy_key: Option<&CopyKey>,
) -> Result<Document, Error> {
    if let (false, Some(key)) = (refresh, copy_key) {
        if let Some(Some(doc)) = within(CACHE_API_TIMEOUT, shared_copy(uri, now, key)).await {
            return Ok(doc);
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
    let (body, max_age) = within(JWKS_TIMEOUT, exchange)
        .await
        .ok_or(Error::KeysUnavailable)??;
    Ok(Document {
        body,
        max_age,
        from_cache: false,
    })
}

/// Put a document that gave usable keys into the Cache API for `max_age` seconds, sealed with
/// its MAC. Best effort, and never longer than [`CACHE_API_TIMEOUT`].
async fn share(uri: &str, body: Vec<u8>, max_age: i64, now: i64, key: &CopyKey) {
    let fresh_until = now.saturating_add(max_age);
    let Some(tag) = seal_shared_copy(key, uri, fresh_until, &body) else {
        return;
    };
    if let Ok(copy) = Response::from_bytes(body) {
        let headers = Headers::new();
        let _ = headers.set("content-type", "application/json");
        let _ = headers.set("cache-control", &format!("max-age={max_age}"));
        let _ = headers.set(FRESH_UNTIL, &fresh_until.to_string());
        let _ = headers.set(COPY_MAC, &tag);
        let cache = Cache::default();
        let _ = within(
            CACHE_API_TIMEOUT,
            cache.put(uri, copy.with_headers(headers)),
        )
        .await;
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
            &json_object(&[
                ("attestgate", "\"jwks_private_key\""),
                ("kids", &json_strs(kids)),
                ("provider", &json_str(provider)),
            ]),
        );
    }
    if !report.skipped.is_empty() {
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .take(MAX_LOGGED_SKIPS)
            .map(|s| {
                json_object(&[
                    ("index", &s.index.to_string()),
                    (
                        "kid",
                        &s.kid.as_deref().map_or_else(|| "null".into(), json_str),
                    ),
                    ("reason", &json_str(s.reason.reason())),
                ])
            })
            .collect();
        log_line(
            "warn",
            &json_object(&[
                ("attestgate", "\"jwks_keys_skipped\""),
                ("loaded", &report.loaded.to_string()),
                ("provider", &json_str(provider)),
                ("skipped", &format!("[{}]", skipped.join(","))),
            ]),
        );
    }
    if !report.duplicate_kids.is_empty() {
        let kids = report.duplicate_kids.iter().take(MAX_LOGGED_SKIPS);
        log_line(
            "warn",
            &json_object(&[
                ("attestgate", "\"jwks_duplicate_kid\""),
                ("kids", &json_strs(kids.map(String::as_str))),
                ("provider", &json_str(provider)),
            ]),
        );
    }
    if report.loaded == 0 {
        log_line(
            "warn",
            &json_object(&[
                ("attestgate", "\"jwks_empty\""),
                ("provider", &json_str(provider)),
            ]),
        );
    }
}

/// One JSON log line, ASCII only: a `kid` from the document cannot split or forge a line.
fn log_line(level: &str, line: &str) {
    let line = ascii_json(line.to_owned());
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
