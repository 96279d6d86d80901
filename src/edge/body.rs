//! Reading a request body under a cap (issue 15 item 2), for the routes that need it
//! ([`crate::policy::Route::needs_body`]). What is allowed is decided in the core
//! ([`crate::gate::body::admit`]: `Content-Length` over the cap, `Content-Encoding`,
//! `Content-Type`); this reads the stream chunk by chunk and stops as soon as the bytes cross
//! the cap (413), so a chunked upload with no `Content-Length` can never make the isolate hold
//! more than the cap plus one chunk. The bytes read go to the core and are forwarded as read.

use wasm_bindgen::prelude::*;
use worker::web_sys;

use crate::gate::body::{self, Body};
use crate::gate::extract::HeaderSource;
use crate::gate::Gate;
use crate::Error;

/// The body of `req` as the core takes it: unread on a route that does not need it (and on a
/// request no route takes: the core refuses it anyway), else the bytes or the refusal.
pub async fn read<H: HeaderSource + ?Sized>(
    gate: &Gate,
    req: &web_sys::Request,
    method: &str,
    host: &str,
    path: &str,
    headers: &H,
) -> Option<Result<Vec<u8>, Error>> {
    let route = gate.route(method, host, path).ok()?;
    let cap = match body::admit(route, headers) {
        Ok(None) => return None,
        Ok(Some(cap)) => cap,
        Err(e) => return Some(Err(e)),
    };
    let Some(stream) = req.body() else {
        return Some(Ok(Vec::new()));
    };
    let read = crate::edge::task::Settled::new(read_capped(&stream, cap as f64)).await;
    Some(match read {
        Ok(v) => match v.dyn_into::<js_sys::Uint8Array>() {
            Ok(bytes) => Ok(bytes.to_vec()),
            // The reader answers a number only when the stream crossed the cap.
            Err(_) => Err(Error::BodyTooLarge),
        },
        Err(_) => Err(Error::BodyUnreadable),
    })
}

/// The core's view of what [`read`] gave.
pub fn view(read: &Option<Result<Vec<u8>, Error>>) -> Body<'_> {
    match read {
        None => Body::Unread,
        Some(Ok(bytes)) => Body::Bytes(bytes),
        Some(Err(e)) => Body::Refused(*e),
    }
}

// The stream is read with its own reader: chunks are collected until done, or until their
// total crosses `cap` (then the stream is cancelled and the answer is -1). A stream error
// rejects. The chunks are joined once, into one Uint8Array.
#[wasm_bindgen(inline_js = r#"
export async function readCapped(stream, cap) {
  const reader = stream.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      reader.cancel().catch(() => {});
      return -1;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = readCapped)]
    fn read_capped(stream: &web_sys::ReadableStream, cap: f64) -> js_sys::Promise;
}
