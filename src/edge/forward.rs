//! Forwarding an allowed request to the origin (SPEC §3 step 10).
//!
//! Where it goes and what the outbound headers lose and gain is decided in the core
//! ([`crate::gate::phase::forward`]); this executes it: a copy of the inbound headers, the
//! plan's deletions, the plan's headers set, `fetch` to the plan's target. The body is streamed
//! through, never buffered, except on a route that reads it (issue 15): then the bytes read are
//! sent exactly. Origin redirects are passed back to the client, not followed.

use wasm_bindgen::prelude::*;
use worker::{web_sys, Headers};

use crate::error;
use crate::gate::extract::HeaderSource;
use crate::gate::phase::ForwardPlan;
use crate::gate::Gate;
use crate::Error;

/// Request headers as the runtime exposes them (repeats joined by `", "`).
pub struct RuntimeHeaders<'a>(pub &'a Headers);

impl HeaderSource for RuntimeHeaders<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.0.get(name).ok().flatten()
    }
}

/// Forward `req` (with `method`, the method its route was matched on) as `plan` says and
/// return the promise of the origin's response, which the runtime hands back as it comes:
/// status, status text, headers and body stream untouched.
///
/// The outbound headers are one copy of the inbound ones (`new Headers(inbound)`), from which
/// the plan's deletions are deleted, then the plan's headers set: a few calls into the runtime
/// plus one per header removed or added, instead of a round trip per inbound header.
pub fn send(
    req: &web_sys::Request,
    method: &str,
    inbound: &Headers,
    plan: &ForwardPlan<'_>,
    credential: Option<(&str, &str)>,
    realm: &str,
    id: &str,
) -> Result<js_sys::Promise, Error> {
    let failed = |_| Error::OriginUnreachable;
    let out = web_sys::Headers::new_with_headers(&inbound.0).map_err(failed)?;
    // Header names as the runtime lists them: lower case, each once.
    let names: String = js_sys::Array::from(&inbound.0.keys()).join("\n").into();
    // (The injected credential's header is replaced by its set below, not deleted first.)
    let set_after = credential.map(|(name, _)| name);
    for name in plan.headers.deletes_before(names.split('\n'), set_after) {
        out.delete(name).map_err(failed)?;
    }
    for (name, value) in plan.headers.sets() {
        out.set(name, value)
            .map_err(|_| Error::Denied(crate::policy::Denial::UnforwardableClaim))?;
    }
    // Issue 14: the upstream's injected credential, after every delete (its header among them).
    if let Some((name, value)) = credential {
        out.set(name, value)
            .map_err(|_| Error::CredentialUnavailable)?;
    }
    let bad_gateway = error::body(&Error::OriginUnreachable.wire(realm), id);
    // Issue 15: a body the gateway read goes exactly as read; otherwise the stream goes through.
    let body: JsValue = match plan.body {
        // (An empty one is no body: a GET or HEAD may not carry one, even empty.)
        Some([]) => JsValue::NULL,
        Some(bytes) => js_sys::Uint8Array::from(bytes).into(),
        None => req.body().map_or(JsValue::NULL, JsValue::from),
    };
    Ok(forward(&plan.target, method, &out, &body, &bad_gateway))
}

/// Set once per isolate: the origin timeout and the wire form of its 504 (`src/error.rs`).
pub fn configure(gate: &Gate) {
    let wire = Error::OriginTimeout.wire(&gate.realm);
    configure_timeout(
        f64::from(gate.origin_timeout_secs) * 1000.0,
        wire.status,
        wire.code,
        wire.description,
    );
}

// The subrequest itself, in a few lines of JavaScript: `fetch(url, init)` with no Request object
// in between, and an unreachable origin turned into the gateway's own 502 (and an error line
// in the log) instead of the runtime's bare 500, without a Rust closure per request. The
// response headers must arrive within the origin timeout (`origin_timeout_secs`), else the
// subrequest is aborted and the answer is the gateway's 504; the body streams with no limit.
#[wasm_bindgen(inline_js = r#"
let timeout = { ms: 100000, status: 504, code: "gateway_timeout", description: "" };
export function configureTimeout(ms, status, code, description) {
  timeout = { ms, status, code, description };
}
export function forward(url, method, headers, body, badGateway) {
  const abort = new AbortController();
  const init = { method, headers, redirect: "manual", signal: abort.signal };
  if (body) init.body = body;
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; abort.abort(); }, timeout.ms);
  return fetch(url, init).then((r) => { clearTimeout(timer); return r; }, (e) => {
    clearTimeout(timer);
    const { request_id } = JSON.parse(badGateway);
    console.error(JSON.stringify(timedOut
      ? { attestgate: "origin_timeout", request_id, reason: "origin_timeout", timeout_ms: timeout.ms }
      : { attestgate: "origin_error", request_id, reason: "origin_unreachable", detail: String(e) }));
    const answer = timedOut
      ? JSON.stringify({ error: timeout.code, error_description: timeout.description, request_id })
      : badGateway;
    return new Response(answer, {
      status: timedOut ? timeout.status : 502,
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    });
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = configureTimeout)]
    fn configure_timeout(ms: f64, status: u16, code: &str, description: &str);

    fn forward(
        url: &str,
        method: &str,
        headers: &web_sys::Headers,
        body: &JsValue,
        bad_gateway: &str,
    ) -> js_sys::Promise;
}
