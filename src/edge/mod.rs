//! The Worker runtime adapter (wasm32 only): the fetch handler and the I/O behind the core's
//! seams. Everything that decides lives in [`crate::gate`]; this module reads the request, calls
//! the pipeline, and turns its answer into a forwarded request or a refusal.

#[cfg(attestgate_selftest)]
mod fault_test;
mod forward;
mod handoff;
mod keys;
mod nonce_store;
mod replay;
#[cfg(attestgate_selftest)]
mod selftest;
mod task;
mod webcrypto;

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use worker::{web_sys, Env, Result};

use crate::error::{self, FreshNonce};
use crate::gate::log::DecisionLog;
use crate::gate::nonce::{self, NonceKey};
use crate::gate::pipeline::{self, NonceKeySource, RequestView};
use crate::gate::rate_limit::{ClientKey, RateLimiter, Verdict};
use crate::gate::url::{self, RequestUrl};
use crate::gate::Gate;
use crate::Error;

/// Per-isolate state: the compiled policy and the caches, built on the first request.
struct Isolate {
    gate: Gate,
    keys: keys::EdgeKeyCache,
    crypto: webcrypto::WebCrypto,
    nonce_key: RefCell<Option<(String, Rc<NonceKey>)>>,
    /// Challenge requests per client address (`CF-Connecting-IP`), bounded.
    challenges: RefCell<RateLimiter>,
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
        forward::configure(&gate);
        let isolate = Rc::new(Isolate {
            keys: keys::EdgeKeyCache::new(),
            crypto: webcrypto::WebCrypto::new(),
            nonce_key: RefCell::new(None),
            challenges: RefCell::new(RateLimiter::for_challenges()),
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
) -> Result<web_sys::Request> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(headers.as_ref());
    if manual_redirect {
        init.set_redirect(web_sys::RequestRedirect::Manual);
    }
    if let Some(body) = body {
        init.set_body(body);
    }
    Ok(web_sys::Request::new_with_str_and_init(url, &init)?)
}

/// A Worker secret (or, for local development, a plain var of the same name).
pub(crate) fn read_secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}

/// Milliseconds since the epoch. `js_sys::Date::now` is one call; `worker::Date::now` makes a
/// Date object and asks it for the time (two).
fn now_ms() -> f64 {
    js_sys::Date::now()
}

fn now_secs() -> i64 {
    (now_ms() / 1000.0) as i64
}

/// A request id: 12 random bytes, base64url. The random bytes are drawn 64 ids at a time (one
/// call into the runtime's CSPRNG instead of one per request), each byte used once.
fn request_id() -> String {
    const ID: usize = 12;
    const BATCH: usize = 64;
    thread_local! {
        static POOL: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }
    POOL.with(|pool| {
        let (bytes, used) = &mut *pool.borrow_mut();
        if *used + ID > bytes.len() {
            bytes.resize(ID * BATCH, 0);
            if getrandom::fill(bytes).is_err() {
                bytes.clear();
                return String::from("unknown");
            }
            *used = 0;
        }
        let id = crate::jose::b64::encode(&bytes[*used..*used + ID]);
        *used += ID;
        id
    })
}

/// The Worker's `fetch` export (what `#[event(fetch)]` would generate, without its per-request
/// cost). The request's future is polled once right here: a refusal or a public route is
/// decided without ever reaching the JavaScript promise machinery, and only a request that
/// really waits (WebCrypto, a key fetch, the nonce store) is handed to the executor
/// ([`task`]). An
/// allowed request resolves to the origin's own `fetch` promise, not awaited in Rust: the
/// runtime passes the origin's response through untouched.
#[wasm_bindgen]
pub fn fetch(req: web_sys::Request, env: Env, _ctx: JsValue) -> js_sys::Promise {
    handoff::promise(run(req, env))
}

/// One request: a Response, or (for a forwarded request) the origin's response promise.
async fn run(req: web_sys::Request, env: Env) -> std::result::Result<JsValue, JsValue> {
    let started = now_ms();
    let url_text = req.url();
    let Some(url) = url::split(&url_text) else {
        // The runtime always hands the Worker an absolute http(s) URL; anything else is refused.
        return Ok(respond(
            &Error::MalformedRequest.wire("attestgate"),
            &request_id(),
            None,
        )?
        .into());
    };
    #[cfg(attestgate_selftest)]
    if let Some(answer) = fault_test::handle(&req, &req.method(), &url).await {
        return answer;
    }
    #[cfg(attestgate_selftest)]
    if selftest::handles(url.path) {
        let r = selftest::handle(worker::Request::from(req)).await?;
        return Ok(web_sys::Response::from(r).into());
    }
    let id = request_id();
    // The method exactly as received: routes match it exactly (case-sensitive, as policies
    // write them) and it is forwarded unchanged. (worker::Method would turn an unknown method
    // into GET and a lowercase `patch` into PATCH.)
    let method = req.method();
    let mut log = DecisionLog::new(&id, &method, url.path);

    let outcome = match isolate() {
        Err(e) => {
            log.reason = Some(e.reason());
            refusal(e, "attestgate", &id, None).map(Outcome::Answer)
        }
        Ok(isolate) => handle(&isolate, &req, &method, &url, &env, &id, &mut log).await,
    };
    let outcome = outcome.unwrap_or_else(|e| {
        // A runtime error we did not map: fail closed, say nothing.
        worker::console_error!(
            "{{\"attestgate\":\"internal_error\",\"request_id\":\"{id}\",\"detail\":{:?}}}",
            e.to_string()
        );
        log.verdict = "deny";
        log.reason = Some(Error::Internal.reason());
        match respond(&Error::Internal.wire("attestgate"), &id, None) {
            Ok(r) => Outcome::Answer(r),
            Err(_) => Outcome::Answer(web_sys::Response::error()),
        }
    });
    if let Outcome::Answer(r) = &outcome {
        log.status = Some(r.status());
    }
    log.latency_ms = (now_ms() - started).max(0.0).round();
    worker::console_log!("{}", log.to_line());
    Ok(match outcome {
        Outcome::Answer(r) => r.into(),
        Outcome::Forwarded(p) => p.into(),
    })
}

/// What the handler hands back.
enum Outcome {
    /// The gateway's own answer (a refusal, the challenge endpoint, a DPoP response).
    Answer(web_sys::Response),
    /// The origin's response, still on its way.
    Forwarded(js_sys::Promise),
}

async fn handle(
    isolate: &Isolate,
    req: &web_sys::Request,
    method: &str,
    url: &RequestUrl<'_>,
    env: &Env,
    id: &str,
    log: &mut DecisionLog,
) -> Result<Outcome> {
    let gate = &isolate.gate;
    let now = now_secs();
    let nonce_key = LazyNonceKey::new(isolate, env);
    let replay = replay::DoReplay { env };

    // Step 1: the challenge endpoint. Issuing is stateless (the nonce is MACed; it is recorded
    // only when first used), so this costs no store call; it is rate-limited per client.
    if url.path == gate.challenge_path {
        log.route = Some(String::from("challenge"));
        if method != "POST" {
            let e = Error::Route(crate::policy::Miss::MethodNotAllowed(
                crate::policy::Allow::from_static("POST"),
            ));
            log.reason = Some(e.reason());
            return refusal(e, &gate.realm, id, None).map(Outcome::Answer);
        }
        let client = ClientKey::from_header(req.headers().get("cf-connecting-ip")?.as_deref());
        let verdict = isolate
            .challenges
            .borrow_mut()
            .check(client, now_ms() as i64);
        if let Verdict::Limited { retry_after_secs } = verdict {
            log.reason = Some(Error::RateLimited.reason());
            let mut wire = Error::RateLimited.wire(&gate.realm);
            wire.retry_after = Some(retry_after_secs);
            return respond(&wire, id, None).map(Outcome::Answer);
        }
        return match issue_nonce(gate, nonce_key.nonce_key(), now) {
            Ok(text) => {
                log.verdict = "challenge";
                let body = format!(
                    "{{\"nonce\":\"{text}\",\"expires_in\":{}}}",
                    gate.challenge_ttl_secs
                );
                let r = json_response(&body, 200)?;
                r.headers().set("dpop-nonce", &text)?;
                Ok(Outcome::Answer(r))
            }
            Err(e) => {
                log.reason = Some(e.reason());
                refusal(e, &gate.realm, id, None).map(Outcome::Answer)
            }
        };
    }

    let host = url.host.to_ascii_lowercase();
    let inbound = worker::Headers(req.headers());
    let headers = forward::RuntimeHeaders(&inbound);
    let htu = format!("{}{}", url.origin, url.path);
    let view = RequestView {
        method,
        host: &host,
        raw_path: url.path,
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
        Ok(plan) => {
            let sent = match forward::send(req, method, &inbound, url, gate, &plan, id) {
                Ok(sent) => sent,
                Err(e) => {
                    log.verdict = "deny";
                    log.reason = Some(e.reason());
                    let wire = e.wire_for(gate.challenge(Some(&plan.route_id)));
                    return respond(&wire, id, None).map(Outcome::Answer);
                }
            };
            if !plan.dpop {
                return Ok(Outcome::Forwarded(sent));
            }
            // RFC 9449 §8.2: the proof's nonce is spent; the response carries the next one.
            // (An unreachable origin is already the gateway's 502; it gets the nonce too.)
            let resp: web_sys::Response = task::Settled::new(sent).await?.unchecked_into();
            let fresh = issue_nonce(gate, nonce_key.nonce_key(), now);
            with_header(resp, "dpop-nonce", fresh.ok().as_deref()).map(Outcome::Answer)
        }
        Err(e) => {
            log.reason = Some(e.reason());
            // The challenges of the route that refused (SPEC §4).
            let wire = e.wire_for(gate.challenge(log.route.as_deref()));
            let fresh = match wire.fresh_nonce {
                FreshNonce::No => None,
                _ => issue_nonce(gate, nonce_key.nonce_key(), now).ok(),
            };
            respond(&wire, id, fresh).map(Outcome::Answer)
        }
    }
}

/// Make a nonce. Nothing is stored: the MAC proves it is ours, and the store records it only
/// when it is first used (`src/gate/store.rs`).
fn issue_nonce(
    gate: &Gate,
    key: Option<&NonceKey>,
    now: i64,
) -> std::result::Result<String, Error> {
    let key = key.ok_or(Error::SecretUnavailable)?;
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|_| Error::Internal)?;
    let issued = nonce::issue(key, gate.nonce_shards, now, gate.challenge_ttl_secs, random)?;
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

pub(crate) fn respond(
    wire: &error::Wire,
    id: &str,
    fresh: Option<String>,
) -> Result<web_sys::Response> {
    let r = json_response(&error::body(wire, id), wire.status)?;
    let h = r.headers();
    if let Some(value) = &wire.www_authenticate {
        h.set("www-authenticate", value)?;
    }
    if let Some(secs) = wire.retry_after {
        h.set("retry-after", &secs.to_string())?;
    }
    if let Some(allow) = wire.allow {
        h.set("allow", allow)?;
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
