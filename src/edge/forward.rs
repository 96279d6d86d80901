//! Forwarding an allowed request to the origin (SPEC §3 step 10).
//!
//! Where it goes and what the outbound headers lose and gain is decided in the core
//! ([`crate::gate::phase::forward`]); this executes it: a copy of the inbound headers, the
//! plan's deletions, the plan's headers set, `fetch` to the plan's target. The body is streamed
//! through, never buffered, except on a route that reads it (issue 15): then the bytes read are
//! sent exactly. Origin redirects are passed back to the client, not followed.
//!
//! Every call between the wasm and the runtime costs (issue 19: a string passed from Rust is
//! decoded by the runtime's `TextDecoder`, a few µs each in workerd, and a `Headers.get` from
//! Rust about 8 µs; docs/performance.md, "Per-request overhead"), so the request's headers are
//! read in one call ([`RuntimeHeaders::read`]) and the whole forward is one more: the outbound
//! header edits are written into one string and applied by the forward's JavaScript.

use wasm_bindgen::prelude::*;
use worker::{web_sys, Headers};

use crate::error;
use crate::gate::extract::HeaderSource;
use crate::gate::family::CredentialFamily;
use crate::gate::phase::{crossing, ForwardPlan};
use crate::gate::Gate;
use crate::Error;

/// Request headers as the runtime exposes them (repeats joined by `", "`), read in one call
/// into the runtime: the names it lists (lower case, each once: the forward's deletions are
/// chosen among them) and the values of the headers the policy reads ([`configure`]'s list:
/// `cf-connecting-ip` and every provider's credential headers). Any other header is asked for
/// when asked ([`HeaderSource::header`] gives what `Headers.get` gives, either way).
pub struct RuntimeHeaders<'a> {
    headers: &'a Headers,
    /// The names of [`configure`]'s list, in its order, and their values (`None`: absent).
    wanted: &'a [String],
    values: Vec<Option<String>>,
    /// The names the runtime lists, joined by `\n`; `None` if the one-call read could not be
    /// parsed (then they are listed again, and every value asked for, as before).
    names: Option<String>,
}

impl<'a> RuntimeHeaders<'a> {
    /// The request headers `headers`, with the values of `wanted` ([`configure`]'s list) and
    /// the names, in one call.
    pub fn read(headers: &'a Headers, wanted: &'a [String]) -> Self {
        let text = read_headers(&headers.0);
        match crossing::parse_header_read(&text, wanted.len()) {
            Some((values, names)) => RuntimeHeaders {
                headers,
                wanted,
                values,
                names: Some(names.to_owned()),
            },
            None => RuntimeHeaders {
                headers,
                wanted: &[],
                values: Vec::new(),
                names: None,
            },
        }
    }

    /// The header names the runtime lists (lower case, each once), joined by `\n`.
    pub fn names(&self) -> std::borrow::Cow<'_, str> {
        match &self.names {
            Some(names) => names.as_str().into(),
            None => String::from(js_sys::Array::from(&self.headers.0.keys()).join("\n")).into(),
        }
    }
}

impl HeaderSource for RuntimeHeaders<'_> {
    fn header(&self, name: &str) -> Option<String> {
        if let Some(i) = self
            .wanted
            .iter()
            .position(|w| w.eq_ignore_ascii_case(name))
        {
            return self.values.get(i).cloned().flatten();
        }
        self.headers.get(name).ok().flatten()
    }
}

/// Forward `req` (with `method`, the method its route was matched on) as `plan` says and
/// return the promise of the origin's response, which the runtime hands back as it comes:
/// status, status text, headers and body stream untouched.
///
/// The outbound headers are one copy of the inbound ones (`new Headers(inbound)`), from which
/// the plan's deletions are deleted, then the plan's headers set: all of it in the forward's
/// JavaScript, from one string ([`crossing::ForwardText`]), in one call into the runtime.
pub fn send(
    req: &web_sys::Request,
    method: &str,
    inbound: &RuntimeHeaders<'_>,
    plan: &ForwardPlan<'_>,
    credential: Option<(&str, &str)>,
    id: &str,
) -> Result<js_sys::Promise, Error> {
    let failed = |_| Error::OriginUnreachable;
    let mut out = crossing::ForwardText::new(id, method, &plan.target).map_err(failed)?;
    // Header names as the runtime lists them: lower case, each once.
    let names = inbound.names();
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
    // Issue 15: a body the gateway read goes exactly as read; otherwise the stream goes through.
    let body: JsValue = match plan.body {
        // (An empty one is no body: a GET or HEAD may not carry one, even empty.)
        Some([]) => JsValue::NULL,
        Some(bytes) => js_sys::Uint8Array::from(bytes).into(),
        // The inbound stream, which the JavaScript takes from `req`.
        None => JsValue::UNDEFINED,
    };
    // (The JavaScript answers no promise only if the runtime refused an edit that passed the
    // checks of `ForwardText`: nothing is sent.)
    forward(req, &out.into_string(), &body)
        .dyn_into::<js_sys::Promise>()
        .map_err(|_| Error::OriginUnreachable)
}

/// Set once per isolate: the origin timeout and the wire form of its 504 and of the 502
/// (`src/error.rs`), and the headers [`RuntimeHeaders::read`] reads with the names (returned, in
/// the order its answer gives them).
pub fn configure(gate: &Gate) -> Vec<String> {
    let wire = Error::OriginTimeout.wire(&gate.realm);
    // The 502's body up to its request id (`"request_id":`), which the JavaScript completes.
    let bad = error::body(&Error::OriginUnreachable.wire(&gate.realm), "");
    configure_timeout(
        f64::from(gate.origin_timeout_secs) * 1000.0,
        wire.status,
        wire.code,
        wire.description,
        bad.strip_suffix("\"\"}").unwrap_or(&bad),
    );
    let mut wanted = vec![String::from("cf-connecting-ip")];
    for p in gate.policy().providers() {
        for name in gate
            .provider(&p.name)
            .map_or(&[][..], |rt| rt.family.consumes())
        {
            let name = name.to_ascii_lowercase();
            if !wanted.contains(&name) {
                wanted.push(name);
            }
        }
    }
    configure_headers(&wanted.join("\n"));
    wanted
}

// The subrequest itself, in a few lines of JavaScript: `fetch(url, init)` with no Request object
// in between, and an unreachable origin turned into the gateway's own 502 (and an error line
// in the log) instead of the runtime's bare 500, without a Rust closure per request. The
// response headers must arrive within the origin timeout (`origin_timeout_secs`), else the
// subrequest is aborted and the answer is the gateway's 504; the body streams with no limit.
// `readHeaders` is `RuntimeHeaders::read`'s one call (`crossing::parse_header_read` reads its
// answer).
#[wasm_bindgen(inline_js = r#"
let timeout = { ms: 100000, status: 504, code: "gateway_timeout", description: "", badGateway: "" };
let wanted = [];
export function configureTimeout(ms, status, code, description, badGateway) {
  timeout = { ms, status, code, description, badGateway };
}
export function configureHeaders(names) {
  wanted = names.split("\n");
}
export function readHeaders(headers) {
  const out = [];
  for (const name of wanted) {
    const v = headers.get(name);
    if (v === null) out.push("-");
    else out.push(v.length, ":", v);
  }
  out.push(Array.from(headers.keys()).join("\n"));
  return out.join("");
}
export function forward(req, plan, body) {
  const parts = plan.split("\n");
  const request_id = parts[0];
  const headers = new Headers(req.headers);
  try {
    for (let i = 3; i < parts.length; i++) {
      const p = parts[i];
      if (p[0] === "d") headers.delete(p.slice(1));
      else headers.set(p.slice(1), parts[++i]);
    }
  } catch {
    return null;
  }
  const abort = new AbortController();
  const init = { method: parts[1], headers, redirect: "manual", signal: abort.signal };
  const b = body === undefined ? req.body : body;
  if (b) init.body = b;
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; abort.abort(); }, timeout.ms);
  return fetch(parts[2], init).then((r) => { clearTimeout(timer); return r; }, (e) => {
    clearTimeout(timer);
    console.error(JSON.stringify(timedOut
      ? { attestgate: "origin_timeout", request_id, reason: "origin_timeout", timeout_ms: timeout.ms }
      : { attestgate: "origin_error", request_id, reason: "origin_unreachable", detail: String(e) }));
    const answer = timedOut
      ? JSON.stringify({ error: timeout.code, error_description: timeout.description, request_id })
      : timeout.badGateway + JSON.stringify(request_id) + "}";
    return new Response(answer, {
      status: timedOut ? timeout.status : 502,
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    });
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = configureTimeout)]
    fn configure_timeout(ms: f64, status: u16, code: &str, description: &str, bad_gateway: &str);

    #[wasm_bindgen(js_name = configureHeaders)]
    fn configure_headers(names: &str);

    #[wasm_bindgen(js_name = readHeaders)]
    fn read_headers(headers: &web_sys::Headers) -> String;

    fn forward(req: &web_sys::Request, plan: &str, body: &JsValue) -> JsValue;
}
