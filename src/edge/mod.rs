//! The Worker runtime adapter (wasm32 only): the fetch handler and the I/O behind the core's
//! seams. Everything that decides lives in [`crate::gate`]; this module reads the request, runs
//! [`phase::decide`], executes its plans (forward, or the gateway's own answer), and hands the
//! final decision to its sinks.

mod audit_log;
mod body;
mod budget;
#[cfg(attestgate_deny)]
mod deny_store;
#[cfg(attestgate_selftest)]
mod fault_test;
mod forward;
mod inject;
mod keys;
mod mask;
mod nonce_store;
mod promise;
mod replay;
mod secrets;
#[cfg(attestgate_selftest)]
mod selftest;
mod signing;
#[cfg(attestgate_deny)]
mod status_list;
mod store_call;
mod task;
mod webcrypto;

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use worker::{web_sys, Env, Result};

use crate::gate::nonce::NonceKey;
use crate::gate::phase::record::Timings;
use crate::gate::phase::{self, Answer, Decision, DecisionSink, Outcome, ResponsePlan};
use crate::gate::rate_limit::RateLimiter;
use crate::gate::seams::{NonceKeySource, Secrets, SystemRandom, NONCE_KEY_SECRET};
use crate::gate::Gate;
use crate::Error;

/// Per-isolate state: the compiled policy and the caches, built on the first request.
struct Isolate {
    gate: Gate,
    keys: keys::EdgeKeyCache,
    crypto: webcrypto::WebCrypto,
    secrets: secrets::SecretCache,
    /// Decoded from `ATTESTGATE_NONCE_KEY` the first time a nonce is issued or checked.
    nonce_key: OnceCell<Option<NonceKey>>,
    /// Challenge requests per client address (`CF-Connecting-IP`), bounded.
    challenges: RefCell<RateLimiter>,
    /// Issue 17: the decision log's origin line and the policy hash its records carry.
    audit: AuditIdentity,
    /// Issue 14: the gateway's signing key, read on first use, and its WebCrypto signer.
    signing: signing::IsolateSigning,
    /// Issue 14: the upstreams' injected tokens.
    tokens: inject::TokenStore,
    /// Issue 16: this isolate's view of the deny store.
    #[cfg(attestgate_deny)]
    deny_view: crate::gate::deny::view::View,
    /// Issue 19: the headers read with the names in one call ([`forward::RuntimeHeaders`]).
    read_headers: Vec<String>,
}

/// What this isolate's decision records and checkpoints name (issue 17).
struct AuditIdentity {
    origin: String,
    policy_hash: String,
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
        let read_headers = forward::configure(&gate);
        let isolate = Rc::new(Isolate {
            keys: keys::EdgeKeyCache::new(),
            crypto: webcrypto::WebCrypto::new(),
            secrets: secrets::SecretCache::default(),
            nonce_key: OnceCell::new(),
            challenges: RefCell::new(RateLimiter::for_challenges()),
            audit: AuditIdentity {
                origin: format!("{}/attestgate/decisions", gate.realm),
                // The same value a receipt names, computed once.
                policy_hash: gate.policy_sha256().to_owned(),
            },
            signing: signing::IsolateSigning::new(),
            tokens: inject::TokenStore::default(),
            #[cfg(attestgate_deny)]
            deny_view: crate::gate::deny::view::View::new(gate.deny_bound_secs),
            read_headers,
            gate,
        });
        *cell.borrow_mut() = Some(isolate.clone());
        Ok(isolate)
    })
}

/// The isolate's nonce MAC key, read from the environment only if something asks for it: most
/// routes check no nonce.
struct IsolateNonceKey<'a, S> {
    isolate: &'a Isolate,
    secrets: &'a S,
}

impl<S: Secrets> NonceKeySource for IsolateNonceKey<'_, S> {
    fn nonce_key(&self) -> Option<&NonceKey> {
        self.isolate
            .nonce_key
            .get_or_init(|| {
                let text = self.secrets.secret(NONCE_KEY_SECRET)?;
                NonceKey::from_base64(&text).ok()
            })
            .as_ref()
    }
}

/// The Worker's decision sinks: the log line on the console. It keeps the request's `ctx`, so
/// a sink can hand work to `waitUntil` (an audit log, metrics) without holding the response.
struct WorkerSinks<'a> {
    ctx: &'a JsValue,
    /// `[gateway] log_allow_sample` (1 until the policy is known: a policy failure is logged).
    log_allow_sample: u32,
    /// Issue 17: the decision log (records of `audit` routes not yet sequenced, and operator
    /// requests), once the isolate is known.
    audit: Option<AuditSink<'a>>,
}

struct AuditSink<'a> {
    env: &'a Env,
    identity: &'a AuditIdentity,
    url: phase::request::RequestUrl<'a>,
}

thread_local! {
    /// The isolate's count of sampled (allowed and public) decisions.
    static LOG_SAMPLING: core::cell::Cell<phase::record::LogSampling> =
        core::cell::Cell::new(phase::record::LogSampling::new(1));
}

impl DecisionSink for WorkerSinks<'_> {
    fn record(&mut self, decision: &Decision<'_>) {
        if self.log_allow_sample <= 1 {
            console_line(&decision.log_line());
        } else {
            let mut sampling = LOG_SAMPLING.with(core::cell::Cell::get);
            if sampling.every() != self.log_allow_sample {
                sampling = phase::record::LogSampling::new(self.log_allow_sample);
            }
            let line = decision.sampled_log_line(&mut sampling);
            LOG_SAMPLING.with(|c| c.set(sampling));
            if let Some(line) = line {
                console_line(&line);
            }
        }
        // The decision log records every decision of an audited route, sampled lines or not.
        if let Some(audit) = &self.audit {
            let wanted = decision.audit.is_on() || decision.operator.is_some();
            if wanted && decision.log_index.is_none() {
                let record = audit_record(decision, &audit.url, audit.identity);
                audit_log::enqueue(audit.env, self.ctx, &audit.identity.origin, record);
            }
        }
    }
}

/// One decision line on the console, as it is (`worker::console_log!` would copy it through
/// `format!` first).
fn console_line(line: &str) {
    web_sys::console::log_1(&JsValue::from_str(line));
}

/// The canonical decision record (issue 17, `gate::audit::record`).
fn audit_record(
    d: &Decision<'_>,
    url: &phase::request::RequestUrl<'_>,
    id: &AuditIdentity,
) -> String {
    let cx = crate::gate::audit::record::Context {
        policy_hash: &id.policy_hash,
        url: url.htu,
        query: url.query,
        body_sha256: None,
    };
    crate::gate::audit::record::canonical(d, &cx)
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

/// Milliseconds since the epoch. `js_sys::Date::now` is one call; `worker::Date::now` makes a
/// Date object and asks it for the time (two).
fn now_ms() -> f64 {
    js_sys::Date::now()
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
/// ([`task`]). An allowed request resolves to the origin's own `fetch` promise, not awaited in
/// Rust: the runtime passes the origin's response through untouched.
#[wasm_bindgen]
pub fn fetch(req: web_sys::Request, env: Env, ctx: JsValue) -> js_sys::Promise {
    promise::promise(run(req, env, ctx))
}

/// One request: a Response, or (for a forwarded request) the origin's response promise.
async fn run(
    req: web_sys::Request,
    env: Env,
    ctx: JsValue,
) -> std::result::Result<JsValue, JsValue> {
    let started = now_ms();
    let url_text = req.url();
    let Some(url) = phase::request::split(&url_text) else {
        // The runtime always hands the Worker an absolute http(s) URL; anything else is refused.
        let wire = Error::MalformedRequest.wire("attestgate");
        return Ok(respond(&Answer::refusal(&wire, &request_id(), None))?.into());
    };
    #[cfg(attestgate_selftest)]
    if let Some(answer) = fault_test::handle(&req, &req.method(), &url, &env).await {
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
    let mut sinks = WorkerSinks {
        ctx: &ctx,
        log_allow_sample: 1,
        audit: None,
    };

    let isolate = match isolate() {
        Ok(isolate) => isolate,
        Err(e) => {
            let mut decision = Decision::refused(&id, &method, url.path, e, "attestgate");
            let answer = execute_own(&mut decision);
            return finish(decision, answer, started, &mut sinks);
        }
    };
    let gate = &isolate.gate;
    sinks.log_allow_sample = gate.log_allow_sample;
    #[cfg(all(attestgate_selftest, attestgate_deny))]
    if let Some(answer) = deny_store::fault(&method, url.path, &env, gate.deny_shards).await {
        return answer;
    }
    let inbound = worker::Headers(req.headers());
    let headers = forward::RuntimeHeaders::read(&inbound, &isolate.read_headers);
    let request = phase::Request::new(&method, url, &headers);
    // Issue 15: the body, read under its cap, only on a route that needs it.
    let body_read = body::read(gate, &req, &method, &request.host, url.path, &headers).await;
    let request = request.with_body(body::view(&body_read));
    // One clock reading: workerd's clock moves only between I/O events.
    let now = (started / 1000.0) as i64;
    let secrets = secrets::WorkerSecrets {
        env: &env,
        cache: &isolate.secrets,
    };
    let nonce_key = IsolateNonceKey {
        isolate: &isolate,
        secrets: &secrets,
    };
    let keys = keys::EdgeKeys {
        secrets: &secrets,
        nonce_key: &nonce_key,
        cache: &isolate.keys,
        now,
    };
    let replay = replay::DoReplay { env: &env };
    let signing_keys = signing::IsolateSigningKeys {
        state: &isolate.signing,
        secrets: &secrets,
    };
    #[cfg(attestgate_deny)]
    let deny_store = deny_store::DoDenyStore { env: &env };
    #[cfg(attestgate_deny)]
    let deny = crate::gate::deny::view::ViewSource {
        view: &isolate.deny_view,
        store: &deny_store,
        clock: &deny_store::WorkerClock,
    };
    #[cfg(not(attestgate_deny))]
    let deny = crate::gate::deny::NoDenyStore;
    let seams = phase::Env {
        keys: &keys,
        verifier: &isolate.crypto,
        replay: &replay,
        nonce_key: &nonce_key,
        random: &SystemRandom,
        challenges: &isolate.challenges,
        signing: &signing_keys,
        deny: &deny,
        now,
        now_ms: started as i64,
    };
    let mut decision = phase::decide(gate, &request, &seams, &id).await;
    // Issue 16: an operator's call on a store, after the core authenticated it.
    #[cfg(attestgate_deny)]
    match decision.operator_call.take() {
        Some(crate::gate::operator::Call::Deny(call)) => {
            deny_store::run_call(&req, &env, gate, &mut decision, call, now).await;
        }
        Some(crate::gate::operator::Call::Signals) => {
            let seams = (&keys, &isolate.crypto, &replay);
            deny_store::run_signals(&req, &env, gate, &mut decision, seams, now).await;
        }
        // Not the deny store's (the decision log's reads, below): left for its executor.
        other => decision.operator_call = other,
    }
    // Issue 17: the decision log.
    let identity = &isolate.audit;
    sinks.audit = Some(AuditSink {
        env: &env,
        identity,
        url,
    });
    if let Some(crate::gate::operator::Call::AuditLog(read)) = decision.operator_call.clone() {
        operator_log_read(&env, gate, identity, read, &mut decision).await;
    }
    if decision.audit == crate::policy::AuditMode::Sync && decision.forward().is_some() {
        // Sequenced before anything is forwarded: the log down is a 503, never a request
        // forwarded unrecorded.
        decision.timings.started_ms = started;
        let record = audit_record(&decision, &url, identity);
        match audit_log::append(&env, &identity.origin, &[record]).await {
            Ok(index) => {
                decision.log_index = Some(index);
                // The client learns where its decision is (to ask for its inclusion proof).
                if let ResponsePlan::Origin { headers, .. } = &mut decision.response {
                    headers.push((LOG_INDEX_HEADER, index.to_string()));
                }
            }
            Err(e) => {
                let wire = e.wire_for(gate.challenge(decision.route));
                decision.refuse(e, Some(Answer::refusal(&wire, decision.request_id, None)));
            }
        }
    }
    // Issue 14: the receipt the forward plan asks for, signed in WebCrypto.
    isolate
        .signing
        .sign_receipt(&secrets, gate, &mut decision)
        .await;
    let injector = inject::Injector {
        secrets: &secrets,
        store: &isolate.tokens,
        signing: &isolate.signing,
        request_id: &id,
    };
    let answer = execute(&req, &headers, gate, &injector, &mut decision).await;
    finish(decision, answer, started, &mut sinks)
}

/// Issue 17: the response header with the index of the decision's record in the log
/// (`audit = "sync"` routes).
const LOG_INDEX_HEADER: &str = "attestgate-log-index";

/// An operator's read of the decision log (issue 17): the sequencer's answer, with the headers
/// the core planned (a next DPoP nonce); 404 for what the log does not hold, 503 when it cannot
/// be reached.
async fn operator_log_read(
    env: &Env,
    gate: &Gate,
    identity: &AuditIdentity,
    read: crate::gate::audit::read::LogRead,
    d: &mut Decision<'_>,
) {
    let planned = match &d.response {
        ResponsePlan::Own(a) => a.headers.clone(),
        ResponsePlan::Origin { .. } => Vec::new(),
    };
    match audit_log::read(env, &identity.origin, read).await {
        Ok(mut answer) => {
            answer.headers.extend(planned);
            d.status = Some(answer.status);
            d.response = ResponsePlan::Own(answer);
        }
        Err(e) => {
            let wire = e.wire(&gate.realm);
            d.refuse(e, Some(Answer::refusal(&wire, d.request_id, None)));
        }
    }
}

/// Run the decision's plans: forward the request (and add the response headers the response
/// plan names), or answer with the gateway's own response. A forward that cannot be sent
/// becomes a refusal.
async fn execute<S: Secrets>(
    req: &web_sys::Request,
    inbound: &forward::RuntimeHeaders<'_>,
    gate: &Gate,
    injector: &inject::Injector<'_, S>,
    d: &mut Decision<'_>,
) -> Result<JsValue> {
    // Issue 18: the hash key of a mask that applies, before anything is forwarded (a missing
    // secret is a 503 the origin never sees).
    let mut hash_key = None;
    if let (Some(plan), Some(fwd)) = (d.response.mask(), d.forward()) {
        if let (Some(_), Some(rules)) = (plan.why, &fwd.route.mask) {
            match crate::gate::mask::hash_key(rules, injector.secrets) {
                Ok(k) => hash_key = k,
                Err(e) => {
                    let wire = e.wire_for(gate.challenge(d.route));
                    d.refuse(e, Some(Answer::refusal(&wire, d.request_id, None)));
                }
            }
        }
    }
    let sent = match &d.outcome {
        Outcome::Forward(plan) => {
            // Issue 14: the upstream's credential first; without it nothing is sent.
            let injected = match &plan.inject {
                Some(p) => Some(
                    injector
                        .credential(p)
                        .await
                        .map(|v| (p.at.header.as_str(), v)),
                ),
                None => None,
            };
            match injected {
                Some(Err(e)) => Some(Err(e)),
                injected => {
                    let credential = injected.and_then(|r| r.ok());
                    Some(forward::send(
                        req,
                        d.method,
                        inbound,
                        plan,
                        credential.as_ref().map(|(n, v)| (*n, v.as_str())),
                        d.request_id,
                    ))
                }
            }
        }
        Outcome::Endpoint(_) | Outcome::Refused(_) => None,
    };
    match sent {
        None => {}
        Some(Err(e)) => {
            // The challenges of the route that refused (SPEC §4).
            let wire = e.wire_for(gate.challenge(d.route));
            d.refuse(e, Some(Answer::refusal(&wire, d.request_id, None)));
        }
        Some(Ok(sent)) => {
            let ResponsePlan::Origin { headers, mask } = &d.response else {
                return Ok(sent.into());
            };
            if headers.is_empty() && mask.is_none() {
                return Ok(sent.into());
            }
            // (An unreachable origin is already the gateway's 502; it gets the headers too.)
            let resp: web_sys::Response = task::Settled::new(sent).await?.unchecked_into();
            let rules = d.forward().and_then(|f| f.route.mask.as_ref());
            let (Some(plan), Some(rules)) = (mask, rules) else {
                let r = with_headers(resp, headers)?;
                d.status = Some(r.status());
                return Ok(r.into());
            };
            let masked =
                mask::respond(resp, d.method, plan, rules, hash_key, headers, d.request_id).await;
            match masked {
                Ok((r, record)) => {
                    d.mask = record;
                    return Ok(r.into());
                }
                Err(e) => {
                    let wire = e.wire_for(gate.challenge(d.route));
                    d.refuse(e, Some(Answer::refusal(&wire, d.request_id, None)));
                }
            }
        }
    }
    execute_own(d)
}

/// Answer with the decision's own response (a refusal, the challenge endpoint).
fn execute_own(d: &mut Decision<'_>) -> Result<JsValue> {
    let ResponsePlan::Own(answer) = &d.response else {
        return Err(worker::Error::RustError("no answer planned".into()));
    };
    let r = respond(answer)?;
    d.status = Some(r.status());
    Ok(r.into())
}

/// The decision is final: an execution error becomes the gateway's 500 (fail closed, say
/// nothing), the timings are taken, and the sinks get the decision.
fn finish(
    mut decision: Decision<'_>,
    answer: Result<JsValue>,
    started: f64,
    sinks: &mut impl DecisionSink,
) -> std::result::Result<JsValue, JsValue> {
    let value = answer.unwrap_or_else(|e| {
        // A runtime error we did not map: fail closed, say nothing.
        let id = decision.request_id;
        worker::console_error!(
            "{{\"attestgate\":\"internal_error\",\"request_id\":\"{id}\",\"detail\":{:?}}}",
            e.to_string()
        );
        let answer = Answer::refusal(&Error::Internal.wire("attestgate"), id, None);
        let r = respond(&answer).unwrap_or_else(|_| web_sys::Response::error());
        decision.refuse(Error::Internal, None);
        decision.status = Some(r.status());
        r.into()
    });
    decision.timings = Timings {
        started_ms: started,
        latency_ms: (now_ms() - started).max(0.0).round(),
    };
    sinks.record(&decision);
    Ok(value)
}

/// The origin's response with `headers` set. A fetched response's headers are immutable, so
/// this makes a new Response around the same body stream, status, status text and headers.
pub(crate) fn with_headers(
    resp: web_sys::Response,
    set: &[(&'static str, String)],
) -> Result<web_sys::Response> {
    let headers = web_sys::Headers::new_with_headers(&resp.headers())?;
    for (name, value) in set {
        headers.set(name, value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status());
    init.set_status_text(&resp.status_text());
    init.set_headers(&headers);
    Ok(web_sys::Response::new_with_opt_readable_stream_and_init(
        resp.body().as_ref(),
        &init,
    )?)
}

/// One of the gateway's own answers: JSON that no cache keeps, with the planned headers.
pub(crate) fn respond(answer: &Answer) -> Result<web_sys::Response> {
    let headers = web_sys::Headers::new()?;
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    for (name, value) in &answer.headers {
        headers.set(name, value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(answer.status);
    init.set_headers(&headers);
    Ok(web_sys::Response::new_with_opt_str_and_init(
        Some(&answer.body),
        &init,
    )?)
}
