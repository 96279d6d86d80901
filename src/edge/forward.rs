//! Forwarding an allowed request to the origin (SPEC §3 step 10).
//!
//! The outbound headers are built from scratch: every inbound header is copied except those with
//! the reserved claims prefix (always, also on public routes), the consumed token headers (unless
//! the route keeps them) and hop-by-hop headers; then the route's verified-claims headers and
//! `x-verified-route` are added. The body is streamed through, never buffered. Origin redirects
//! are passed back to the client, not followed.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Headers, Method, Url};

use crate::gate::extract::HeaderSource;
use crate::gate::pipeline::Forward;
use crate::gate::Gate;
use crate::Error;

/// Request headers as the runtime exposes them (repeats joined by `", "`).
pub struct RuntimeHeaders<'a>(pub &'a Headers);

impl HeaderSource for RuntimeHeaders<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.0.get(name).ok().flatten()
    }
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Forward `req` (with `method`, the method its route was matched on) and return the origin's
/// response as it came: status, status text, headers and body stream untouched.
pub async fn send(
    req: &web_sys::Request,
    method: &Method,
    inbound: &Headers,
    url: &Url,
    gate: &Gate,
    fwd: &Forward,
) -> Result<web_sys::Response, Error> {
    let failed = |_| Error::OriginUnreachable;
    let out = Headers::new();
    for (name, value) in inbound.entries() {
        let name = name.to_ascii_lowercase();
        if name.starts_with(&gate.claims_header_prefix)
            || name == "host"
            || HOP_BY_HOP.contains(&name.as_str())
            || fwd.plan.strips(&name)
        {
            continue;
        }
        out.append(&name, &value).map_err(failed)?;
    }
    for (name, value) in &fwd.plan.set {
        out.set(name, value)
            .map_err(|_| Error::UnforwardableClaim)?;
    }

    let mut target = format!("{}{}", fwd.origin.trim_end_matches('/'), url.path());
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let body = req.body().map(wasm_bindgen::JsValue::from);
    let outbound =
        super::new_request(&target, method.as_ref(), &out, body.as_ref(), true).map_err(failed)?;
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response = JsFuture::from(global.fetch_with_request(outbound.inner()))
        .await
        .map_err(|_| Error::OriginUnreachable)?;
    response
        .dyn_into::<web_sys::Response>()
        .map_err(|_| Error::OriginUnreachable)
}
