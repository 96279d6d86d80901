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

use crate::gate::key_cache::{cache_control_max_age, CacheTimes, KeyCache, Plan};
use crate::gate::nonce::decode_any_base64;
use crate::gate::pipeline::KeySource;
use crate::gate::runtime::{KeySpec, ProviderRt};
use crate::jose::{JwksLimits, KeySet};
use crate::Error;

/// Largest JWKS document read (ATTACKS #43).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Time allowed for the whole JWKS fetch, body included.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(3);

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
            KeySpec::Secret(name) => self.secret_keys(name),
            KeySpec::Jwks { uri, times } => {
                let plan =
                    self.cache
                        .jwks
                        .borrow_mut()
                        .plan(&provider.name, times, self.now, refresh);
                match plan {
                    Plan::Use(keys) => Ok(keys),
                    Plan::Unavailable => Err(Error::KeysUnavailable),
                    Plan::Fetch { .. } => {
                        let fetched = fetch_jwks(uri, refresh, times).await;
                        let mut cache = self.cache.jwks.borrow_mut();
                        let keys = match fetched.and_then(|(body, max_age)| {
                            KeySet::from_jwks(&body, &JwksLimits::default())
                                .map(|(set, _)| (set, max_age))
                        }) {
                            Ok((set, max_age)) => {
                                let usable = !set.is_empty();
                                if !usable {
                                    worker::console_warn!(
                                        "{{\"attestgate\":\"jwks_empty\",\"provider\":{:?}}}",
                                        provider.name
                                    );
                                }
                                cache.fetched(&provider.name, times, self.now, set, usable, max_age)
                            }
                            Err(e) => {
                                worker::console_warn!(
                                    "{{\"attestgate\":\"jwks_fetch_failed\",\"provider\":{:?},\"reason\":\"{}\"}}",
                                    provider.name,
                                    e.reason()
                                );
                                cache.failed(&provider.name, times, self.now)
                            }
                        };
                        keys.ok_or(Error::KeysUnavailable)
                    }
                }
            }
        }
    }
}

impl EdgeKeys<'_> {
    /// HMAC keys from a Worker secret (base64), decoded once per value.
    fn secret_keys(&self, name: &str) -> Result<Arc<KeySet>, Error> {
        let Some(value) = super::read_secret(self.env, name) else {
            worker::console_error!(
                "{{\"attestgate\":\"secret_missing\",\"secret\":{:?}}}",
                name
            );
            return Err(Error::SecretUnavailable);
        };
        let mut secrets = self.cache.secrets.borrow_mut();
        if let Some((seen, set)) = secrets.get(name) {
            if *seen == value {
                return Ok(set.clone());
            }
        }
        let set = decode_any_base64(value.trim())
            .ok_or(Error::SecretUnavailable)
            .and_then(|bytes| KeySet::from_hmac_secret(&bytes, None))
            .map_err(|_| {
                worker::console_error!(
                    "{{\"attestgate\":\"secret_unusable\",\"secret\":{:?}}}",
                    name
                );
                Error::SecretUnavailable
            })?;
        let set = Arc::new(set);
        secrets.insert(name.to_owned(), (value, set.clone()));
        Ok(set)
    }
}

/// Fetch a JWKS document: the Cache API copy first (unless refreshing), else the network, with a
/// timeout over the whole exchange, no redirects, and a size cap. Returns the body and the
/// issuer's max-age. The Cache API copy lives no longer than the isolate's own freshness, so it
/// never hides an issuer outage beyond the configured times.
async fn fetch_jwks(
    uri: &str,
    refresh: bool,
    times: &CacheTimes,
) -> Result<(Vec<u8>, Option<i64>), Error> {
    let cache = Cache::default();
    if !refresh {
        if let Ok(Some(mut hit)) = cache.get(uri, false).await {
            let max_age = max_age_of(hit.headers());
            if let Ok(body) = read_capped(&mut hit).await {
                return Ok((body, max_age));
            }
        }
    }
    let exchange = async {
        let headers = Headers::new();
        let _ = headers.set("accept", "application/jwk-set+json, application/json");
        let req = super::new_request(uri, "GET", &headers, None, true)
            .map_err(|_| Error::KeysUnavailable)?;
        let mut resp = Fetch::Request(req)
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
    // Share with the other isolates of this location. Best effort.
    if let Ok(copy) = Response::from_bytes(body.clone()) {
        let headers = Headers::new();
        let _ = headers.set("content-type", "application/json");
        let _ = headers.set(
            "cache-control",
            &format!("max-age={}", times.effective_max_age(max_age)),
        );
        let _ = cache.put(uri, copy.with_headers(headers)).await;
    }
    Ok((body, max_age))
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
