//! The Worker runtime adapter (wasm32 only): the fetch handler and the I/O behind the core's
//! seams. Everything that decides lives in [`crate::gate`]; this module reads the request, calls
//! the pipeline, and turns its answer into a forwarded request or a refusal.

mod forward;
mod keys;
mod nonce_store;
mod replay;
#[cfg(attestgate_selftest)]
mod selftest;
mod webcrypto;

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use worker::{event, web_sys, Context, Date, Env, Method, Request, Result, Url};

use crate::error::{self, FreshNonce};
use crate::gate::log::DecisionLog;
use crate::gate::nonce::{self, NonceKey};
use crate::gate::pipeline::{self, NonceKeySource, RequestView};
use crate::gate::Gate;
use crate::Error;

/// Per-isolate state: the compiled policy and the caches, built on the first request.
struct Isolate {
    gate: Gate,
    keys: keys::EdgeKeyCache,
    crypto: webcrypto::WebCrypto,
    nonce_key: RefCell<Option<(String, Rc<NonceKey>)>>,
}

thread_local! {
    static ISOLATE: RefCell<Option<Rc<Isolate>>> = const { RefCell::new(None) };
}

fn isolate() -> std::result::Result<Rc<Isolate>, Error> {
    ISOLATE.with(|cell| {
        if let Some(isolate) = cell.borrow().as_ref() {
            return Ok(isolate.clone());
        }
        let gate = Gate::from_embedded()?;
        let isolate = Rc::new(Isolate {
            keys: keys::EdgeKeyCache::new(),
            crypto: webcrypto::WebCrypto::new(),
            nonce_key: RefCell::new(None),
            gate,
        });
        *cell.borrow_mut() = Some(isolate.clone());
        Ok(isolate)
    })
}

/// The nonce MAC key from the `ATTESTGATE_NONCE_KEY` secret, decoded once per isolate (and again
/// only if the secret's value changes).
fn nonce_key(isolate: &Isolate, env: &Env) -> Option<Rc<NonceKey>> {
    let text = read_secret(env, "ATTESTGATE_NONCE_KEY")?;
    let mut cached = isolate.nonce_key.borrow_mut();
    if let Some((seen, key)) = cached.as_ref() {
        if *seen == text {
            return Some(key.clone());
        }
    }
    let key = Rc::new(NonceKey::from_base64(&text).ok()?);
    *cached = Some((text, key.clone()));
    Some(key)
}

/// The nonce key for one request, read from the environment only if something asks for it:
/// most routes check no nonce, and each secret read crosses into JavaScript.
struct LazyNonceKey<'a> {
    isolate: &'a Isolate,
    env: &'a Env,
    key: OnceCell<Option<Rc<NonceKey>>>,
}

impl<'a> LazyNonceKey<'a> {
    fn new(isolate: &'a Isolate, env: &'a Env) -> Self {
        LazyNonceKey {
            isolate,
            env,
            key: OnceCell::new(),
        }
    }
}

impl NonceKeySource for LazyNonceKey<'_> {
    fn nonce_key(&self) -> Option<&NonceKey> {
        self.key
            .get_or_init(|| nonce_key(self.isolate, self.env))
            .as_deref()
    }
}

/// A `Request` made with the runtime's own `RequestInit`. `worker::RequestInit` would do the
/// same, but it links its `cf`-properties conversion into the wasm (about 12 KB) although the
/// gateway never sets `cf` (docs/performance.md, "Size").
pub(crate) fn new_request(
    url: &str,
    method: &str,
    headers: &worker::Headers,
    body: Option<&wasm_bindgen::JsValue>,
    manual_redirect: bool,
) -> Result<Request> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(headers.as_ref());
    if manual_redirect {
        init.set_redirect(web_sys::RequestRedirect::Manual);
    }
    if let Some(body) = body {
        init.set_body(body);
    }
    Ok(Request::from(web_sys::Request::new_with_str_and_init(
        url, &init,
    )?))
}

/// A Worker secret (or, for local development, a plain var of the same name).
pub(crate) fn read_secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}

fn now_secs() -> i64 {
    (Date::now().as_millis() / 1000) as i64
}

fn request_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        return String::from("unknown");
    }
    crate::jose::b64::encode(&bytes)
}

// The handler takes and returns the runtime's own Request and Response: `worker::Request`
// would parse the URL a second time, and returning a `worker::Response` rebuilds the origin's
// response (a new Response whose body is re-streamed through the wasm, without its
// Content-Length) instead of passing it through.
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, _ctx: Context) -> Result<web_sys::Response> {
    let started = Date::now().as_millis();
    let url = Url::parse(&req.url()).map_err(|e| worker::Error::RustError(e.to_string()))?;
    #[cfg(attestgate_selftest)]
    if url.path() == selftest::PATH {
        return selftest::handle(Request::from(req)).await.map(Into::into);
    }
    let id = request_id();
    // Through worker's Method: the method the route is matched on is the one forwarded.
    let method = Method::from(req.method());
    let mut log = DecisionLog::new(&id, method.as_ref(), url.path());

    let response = match isolate() {
        Err(e) => {
            log.reason = Some(e.reason());
            refusal(e, "attestgate", &id, None)
        }
        Ok(isolate) => handle(&isolate, &req, &method, &url, &env, &id, &mut log).await,
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            // A runtime error we did not map: fail closed, say nothing.
            worker::console_error!(
                "{{\"attestgate\":\"internal_error\",\"request_id\":\"{id}\",\"detail\":{:?}}}",
                e.to_string()
            );
            log.reason = Some("internal_error");
            respond(&Error::Internal.wire("attestgate"), &id, None)?
        }
    };
    log.status = response.status();
    log.latency_ms = (Date::now().as_millis().saturating_sub(started)) as f64;
    worker::console_log!("{}", log.to_line());
    Ok(response)
}

async fn handle(
    isolate: &Isolate,
    req: &web_sys::Request,
    method: &Method,
    url: &Url,
    env: &Env,
    id: &str,
    log: &mut DecisionLog,
) -> Result<web_sys::Response> {
    let gate = &isolate.gate;
    let now = now_secs();
    let nonce_key = LazyNonceKey::new(isolate, env);
    let replay = replay::DoReplay { env };

    // Step 1: the challenge endpoint.
    if url.path() == gate.challenge_path {
        log.route = Some(String::from("challenge"));
        if *method != Method::Post {
            log.reason = Some(Error::MethodNotAllowed.reason());
            let r = refusal(Error::MethodNotAllowed, &gate.realm, id, None)?;
            r.headers().set("allow", "POST")?;
            return Ok(r);
        }
        return match issue_nonce(gate, nonce_key.nonce_key(), &replay, now).await {
            Ok(text) => {
                log.verdict = "challenge";
                let body = format!(
                    "{{\"nonce\":\"{text}\",\"expires_in\":{}}}",
                    gate.challenge_ttl_secs
                );
                let r = json_response(&body, 200)?;
                r.headers().set("dpop-nonce", &text)?;
                Ok(r)
            }
            Err(e) => {
                log.reason = Some(e.reason());
                refusal(e, &gate.realm, id, None)
            }
        };
    }

    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let inbound = worker::Headers(req.headers());
    let headers = forward::RuntimeHeaders(&inbound);
    let htu = format!("{}{}", url.origin().ascii_serialization(), url.path());
    let view = RequestView {
        method: method.as_ref(),
        host: &host,
        raw_path: url.path(),
        htu: &htu,
        headers: &headers,
    };
    let keys = keys::EdgeKeys {
        env,
        cache: &isolate.keys,
        now,
    };
    let seams = pipeline::Env {
        keys: &keys,
        verifier: &isolate.crypto,
        replay: &replay,
        nonce_key: &nonce_key,
        now,
    };
    match pipeline::decide(gate, &view, &seams, log).await {
        Ok(plan) => match forward::send(req, method, &inbound, url, gate, &plan).await {
            Ok(resp) if plan.dpop => {
                // RFC 9449 §8.2: the proof's nonce is spent; hand out the next one.
                let fresh = issue_nonce(gate, nonce_key.nonce_key(), &replay, now).await;
                with_header(resp, "dpop-nonce", fresh.ok().as_deref())
            }
            Ok(resp) => Ok(resp),
            Err(e) => {
                log.verdict = "deny";
                log.reason = Some(e.reason());
                refusal(e, &gate.realm, id, None)
            }
        },
        Err(e) => {
            log.reason = Some(e.reason());
            let fresh = match e.wire(&gate.realm).fresh_nonce {
                FreshNonce::No => None,
                _ => issue_nonce(gate, nonce_key.nonce_key(), &replay, now)
                    .await
                    .ok(),
            };
            refusal(e, &gate.realm, id, fresh)
        }
    }
}

/// Make a nonce and record it in its shard.
async fn issue_nonce(
    gate: &Gate,
    key: Option<&NonceKey>,
    replay: &replay::DoReplay<'_>,
    now: i64,
) -> std::result::Result<String, Error> {
    let key = key.ok_or(Error::SecretUnavailable)?;
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|_| Error::NonceStoreUnavailable)?;
    let issued = nonce::issue(key, gate.nonce_shards, now, gate.challenge_ttl_secs, random)?;
    replay.issue(&issued.nonce).await?;
    Ok(issued.text)
}

/// The origin's response with one header added. A fetched response's headers are immutable, so
/// this makes a new Response around the same body stream, status, status text and headers.
fn with_header(
    resp: web_sys::Response,
    name: &str,
    value: Option<&str>,
) -> Result<web_sys::Response> {
    let Some(value) = value else {
        return Ok(resp);
    };
    let headers = web_sys::Headers::new_with_headers(&resp.headers())?;
    headers.set(name, value)?;
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status());
    init.set_status_text(&resp.status_text());
    init.set_headers(&headers);
    Ok(web_sys::Response::new_with_opt_readable_stream_and_init(
        resp.body().as_ref(),
        &init,
    )?)
}

/// A JSON response that no cache keeps.
fn json_response(body: &str, status: u16) -> Result<web_sys::Response> {
    let headers = web_sys::Headers::new()?;
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers);
    Ok(web_sys::Response::new_with_opt_str_and_init(
        Some(body),
        &init,
    )?)
}

fn refusal(e: Error, realm: &str, id: &str, fresh: Option<String>) -> Result<web_sys::Response> {
    respond(&e.wire(realm), id, fresh)
}

fn respond(wire: &error::Wire, id: &str, fresh: Option<String>) -> Result<web_sys::Response> {
    let r = json_response(&error::body(wire, id), wire.status)?;
    let h = r.headers();
    if let Some(value) = &wire.www_authenticate {
        h.set("www-authenticate", value)?;
    }
    if let Some(secs) = wire.retry_after {
        h.set("retry-after", &secs.to_string())?;
    }
    if let Some(nonce) = fresh {
        match wire.fresh_nonce {
            FreshNonce::Dpop => h.set("dpop-nonce", &nonce)?,
            FreshNonce::Attestation => {
                h.set("dpop-nonce", &nonce)?;
                h.set("oauth-client-attestation-challenge", &nonce)?;
            }
            FreshNonce::No => {}
        }
    }
    Ok(r)
}
