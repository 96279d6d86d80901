//! Response masking in the Worker (issue 18): the origin's body through the core's streaming
//! transformer ([`crate::gate::mask`]), chunk by chunk, into the client's response.
//!
//! - Encodings: workerd hands a fetched body already decoded when the origin sent `gzip` or
//!   `br` (measured); `deflate` goes through the runtime's `DecompressionStream`. The masked
//!   answer has no `Content-Encoding` (the runtime may compress it for the client itself). The
//!   transformer's input cap ([`Limits::max_input`], 32 MiB of decoded JSON) bounds a
//!   compression bomb.
//! - Committing: the first [`COMMIT_BYTES`] of masked output are held back. A body that ends
//!   within them is answered only once it transformed cleanly, so any error (not JSON,
//!   truncated, a limit) is the gateway's own 502 and the exact count goes in the header. A
//!   longer body streams on after the headers; an error then aborts the stream (the client sees
//!   a broken body, never an unmasked value, since the transformer writes only masked output),
//!   and a `mask_error` line is logged; a clean end logs a `mask_end` line with the counts.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use worker::web_sys;

use crate::gate::mask::{
    self, BodyPlan, Counts, HashKey, Limits, MaskRecord, Transformer, COMMIT_BYTES, WHOLE_BYTES,
};
use crate::gate::phase::MaskPlan;
use crate::policy::Mask;
use crate::Error;

/// One response's transformer, driven from JavaScript chunk by chunk.
#[wasm_bindgen]
pub struct MaskStream {
    t: Transformer<'static>,
    /// The chunk being transformed and its output, reused from chunk to chunk.
    input: Vec<u8>,
    out: Vec<u8>,
    counts: Rc<RefCell<Counts>>,
    why: mask::MaskWhy,
    request_id: String,
}

#[wasm_bindgen]
impl MaskStream {
    /// The masked output of the next chunk (a `Uint8Array`), or the error's reason (a
    /// string). (Not a `Result` of a `Vec`: its multi-value shim costs 5 KB of wasm.) The chunk
    /// is copied into a buffer kept from chunk to chunk (no allocation per chunk).
    pub fn push(&mut self, chunk: &js_sys::Uint8Array) -> JsValue {
        self.input.resize(chunk.length() as usize, 0);
        chunk.copy_to(&mut self.input);
        self.out.clear();
        let r = self.t.feed(&self.input, &mut self.out);
        self.answer(r)
    }

    /// The body ended: the rest of the output, or the reason the document is incomplete.
    pub fn end(&mut self) -> JsValue {
        self.out.clear();
        let r = self.t.finish(&mut self.out);
        self.answer(r.map(|_| ()))
    }

    /// The `mask_end` log line of a body that streamed past the commit buffer.
    #[wasm_bindgen(js_name = endLine)]
    pub fn end_line(&self) -> JsValue {
        let record = MaskRecord::new(self.why, self.t.mask(), self.t.counts(), true);
        JsValue::from_str(&format!(
            "{{\"attestgate\":\"mask_end\",\"request_id\":{},\"mask\":{}}}",
            crate::gate::log::json_str(&self.request_id),
            serde_json::to_string(&record).unwrap_or_default()
        ))
    }
}

impl MaskStream {
    fn answer(&mut self, r: Result<(), crate::gate::mask::MaskError>) -> JsValue {
        self.counts
            .borrow_mut()
            .0
            .clone_from_slice(&self.t.counts().0);
        let answer = match r {
            Ok(()) => js_sys::Uint8Array::from(self.out.as_slice()).into(),
            Err(e) => JsValue::from_str(e.reason()),
        };
        // The buffers stay as large as the largest chunk the runtime handed over, within a
        // bound.
        if self.input.capacity() > 1 << 20 {
            self.input = Vec::new();
        }
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
        answer
    }
}

#[wasm_bindgen(inline_js = r#"
// A trap in the transformer marks the instance for re-initialisation, as task.js does. (Not
// written `e instanceof WebAssembly.RuntimeError && ...`: scripts/plain_entry.py finds the
// shim's handleMaybeCritical by that shape.)
const MARK = Symbol.for("attestgate.markCritical");
function trap(e) {
  if (!(e instanceof WebAssembly.RuntimeError)) return;
  const mark = globalThis[MARK];
  if (typeof mark === "function") mark(e);
}
// The transformer answers its output, or the reason it failed (a string).
function ok(r) {
  if (typeof r === "string") throw new Error(r);
  return r;
}
function concat(parts, size) {
  const all = new Uint8Array(size);
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  return all;
}
// The body in reads of `size` bytes (the last one shorter) where it is a byte stream (workerd's
// readAtLeast on a BYOB reader), else as it comes. A fetched body comes in 4 KB chunks, and
// each chunk through JavaScript and into the answer costs (1 MB: +16 ms CPU in 4 KB chunks,
// +2 ms in 64 KB reads; docs/performance.md). One buffer, reused: the transformer copies each
// read before the next.
function readerOf(src, size) {
  let byob = null;
  try { byob = src.getReader({ mode: "byob" }); } catch (e) { byob = null; }
  if (!byob || typeof byob.readAtLeast !== "function") {
    if (byob) byob.releaseLock();
    return src.getReader();
  }
  let buf = new ArrayBuffer(size);
  let ended = false;
  return {
    async read() {
      while (!ended) {
        const { done, value } = await byob.readAtLeast(size, new Uint8Array(buf, 0, size));
        if (done || !value) ended = true;
        if (value) buf = value.buffer;
        if (value && value.byteLength) return { done: false, value };
      }
      return { done: true, value: undefined };
    },
    cancel(reason) { return byob.cancel(reason); },
  };
}
// Resolves to [body, complete]: the whole masked body (complete) or a stream that starts with
// the held-back output and continues with the rest; rejects with the reason of an error
// before the commit.
export async function maskBody(body, inflate, m, commit, read, requestId) {
  let freed = false;
  const free = () => { if (!freed) { freed = true; try { m.free(); } catch (e) { trap(e); } } };
  const src = inflate ? body.pipeThrough(new DecompressionStream("deflate")) : body;
  const reader = readerOf(src, read);
  const head = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        const tail = ok(m.end());
        if (tail.length) { head.push(tail); size += tail.length; }
        free();
        return [concat(head, size), true];
      }
      const out = ok(m.push(value));
      if (out.length) { head.push(out); size += out.length; }
      if (size >= commit) break;
    }
  } catch (e) {
    trap(e);
    free();
    reader.cancel().catch(() => {});
    throw String(e && e.message || e);
  }
  const stream = new ReadableStream({
    async pull(c) {
      if (head.length) { c.enqueue(head.shift()); return; }
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            const tail = ok(m.end());
            console.log(m.endLine());
            free();
            if (tail.length) c.enqueue(tail);
            c.close();
            return;
          }
          const out = ok(m.push(value));
          if (out.length) { c.enqueue(out); return; }
        }
      } catch (e) {
        trap(e);
        free();
        console.error(JSON.stringify({ attestgate: "mask_error", request_id: requestId, reason: String(e && e.message || e) }));
        reader.cancel().catch(() => {});
        c.error(new Error("masking failed"));
      }
    },
    cancel(reason) { free(); return reader.cancel(reason); },
  });
  return [stream, false];
}
// The origin's headers the masking reads (READ, in order) and its status, in one call: each
// `-` (absent) or the value's length, `:` and the value (`crossing::parse_header_read`'s form,
// without names).
const READ = ["vary", "content-type", "content-encoding", "content-length", "cache-control"];
export function originRead(resp) {
  const h = resp.headers;
  const out = [];
  for (const name of READ) {
    const v = h.get(name);
    if (v === null) out.push("-");
    else out.push(v.length, ":", v);
  }
  const s = String(resp.status);
  out.push(s.length, ":", s);
  return out.join("");
}
// The client's response: the origin's status and headers (`new Response(body, resp)` copies
// them into headers of its own), less `deletes` (newline-separated, split once per isolate:
// the same string every time; none for a response that is not masked), with `sets`
// (newline-separated: name, value, name, value, ...).
let deleting = null;
let deleteList = [];
export function maskedResponse(resp, body, sets, deletes) {
  const r = new Response(body, resp);
  const h = r.headers;
  if (deletes) {
    if (deletes !== deleting) { deleting = deletes; deleteList = deletes.split("\n"); }
    for (const name of deleteList) h.delete(name);
  }
  const s = sets.split("\n");
  for (let i = 0; i + 1 < s.length; i += 2) h.set(s[i], s[i + 1]);
  return r;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = maskBody)]
    fn mask_body(
        body: &web_sys::ReadableStream,
        inflate: bool,
        m: MaskStream,
        commit: usize,
        read: usize,
        request_id: &str,
    ) -> js_sys::Promise;

    #[wasm_bindgen(js_name = originRead)]
    fn origin_read(resp: &web_sys::Response) -> String;

    #[wasm_bindgen(js_name = maskedResponse, catch)]
    fn masked_response(
        resp: &web_sys::Response,
        body: &JsValue,
        sets: &str,
        deletes: &JsValue,
    ) -> Result<web_sys::Response, JsValue>;
}

thread_local! {
    /// [`mask::MASKED_DELETES`] as a JavaScript string, made once per isolate (a `&str` would
    /// be decoded by the runtime on every call).
    static DELETES: JsValue = JsValue::from_str(mask::MASKED_DELETES);
}

/// `sets` as [`masked_response`] takes them: name, value, ... each followed by `\n`.
fn set_list(sets: &[(&'static str, String)]) -> String {
    let mut list = String::new();
    for (name, value) in sets {
        list.push_str(name);
        list.push('\n');
        list.push_str(value);
        list.push('\n');
    }
    list
}

/// The message of a rejection (an `Error`'s, else the value as a string).
fn js_error_text(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "mask_read".to_owned())
}

/// The origin's response `resp` on a masking route, as the client gets it: masked when the
/// plan says the mask applies, else the origin's with `Vary`; `extra` are the response plan's
/// other headers. Returns the mask record for the decision. A response that cannot be masked
/// is `Err` (the caller answers with the gateway's 502).
pub async fn respond(
    resp: web_sys::Response,
    method: &str,
    plan: &MaskPlan,
    rules: &Mask,
    key: Option<HashKey>,
    extra: &[(&'static str, String)],
    request_id: &str,
) -> Result<(web_sys::Response, Option<MaskRecord>), Error> {
    // The origin's headers the masking reads, and its status, in one call into the runtime
    // (each `Headers.get` from Rust is a crossing of its own: docs/performance.md).
    let read = origin_read(&resp);
    let Some((values, _)) = crate::gate::phase::crossing::parse_header_read(&read, 6) else {
        return Err(Error::Internal);
    };
    let get = |i: usize| values.get(i).and_then(|v| v.as_deref());
    let (vary, content_type, encoding, length, cache_control) =
        (get(0), get(1), get(2), get(3), get(4));
    let Some(status) = get(5).and_then(|s| s.parse::<u16>().ok()) else {
        return Err(Error::Internal);
    };
    let mut sets = vec![("vary", mask::vary(vary, &plan.vary))];
    sets.extend(extra.iter().cloned());
    let Some(why) = plan.why else {
        let body = resp.body().map_or(JsValue::NULL, JsValue::from);
        let r = masked_response(&resp, &body, &set_list(&sets), &JsValue::NULL)
            .map_err(|_| Error::Internal)?;
        return Ok((r, None));
    };
    let checked = mask::check_response(method, status, content_type, encoding);
    let body_plan = match checked {
        Ok(p) => p,
        Err(e) => {
            if let Some(b) = resp.body() {
                let _ = b.cancel();
            }
            return Err(e);
        }
    };
    sets.push(("cache-control", mask::masked_cache_control(cache_control)));
    let counts = Rc::new(RefCell::new(Counts(vec![0; rules.rules.len()])));
    // A body of a known length up to WHOLE_BYTES, as sent (no content coding the runtime
    // decodes): read whole by the runtime (`arrayBuffer`, one promise) and masked in one call,
    // instead of chunk by chunk through a reader (a promise per chunk: measured,
    // docs/performance.md).
    let whole = body_plan == BodyPlan::Plain
        && encoding.is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"))
        && length
            .and_then(|n| n.trim().parse::<usize>().ok())
            .is_some_and(|n| n <= WHOLE_BYTES);
    let (body, complete) = match (body_plan, resp.body()) {
        (BodyPlan::None, b) => {
            if let Some(b) = b {
                let _ = b.cancel();
            }
            (JsValue::NULL, true)
        }
        // A JSON answer with no body at all is not a document.
        (_, None) => return Err(Error::OriginUnmaskable),
        (_, Some(_)) if whole => {
            let fail = |reason: &str| {
                worker::console_error!(
                    "{{\"attestgate\":\"mask_error\",\"request_id\":{},\"reason\":{}}}",
                    crate::gate::log::json_str(request_id),
                    crate::gate::log::json_str(reason)
                );
                Error::OriginUnmaskable
            };
            let read = resp.array_buffer().map_err(|_| fail("mask_read"))?;
            let buf = crate::edge::task::Settled::new(read)
                .await
                .map_err(|e| fail(&js_error_text(&e)))?;
            let input = js_sys::Uint8Array::new(&buf).to_vec();
            let mut t = Transformer::new(rules, key, Limits::default());
            let mut out = Vec::with_capacity(input.len());
            let done = t.feed(&input, &mut out).and_then(|()| t.finish(&mut out));
            let n = done.map_err(|e| fail(e.reason()))?;
            *counts.borrow_mut() = n;
            (js_sys::Uint8Array::from(out.as_slice()).into(), true)
        }
        (body_plan, Some(stream)) => {
            let m = MaskStream {
                t: Transformer::owned(rules.clone(), key, Limits::default()),
                input: Vec::new(),
                out: Vec::new(),
                counts: counts.clone(),
                why,
                request_id: request_id.to_owned(),
            };
            let inflate = body_plan == BodyPlan::Inflate;
            let p = mask_body(&stream, inflate, m, COMMIT_BYTES, WHOLE_BYTES, request_id);
            let done = crate::edge::task::Settled::new(p).await.map_err(|reason| {
                worker::console_error!(
                    "{{\"attestgate\":\"mask_error\",\"request_id\":{},\"reason\":{}}}",
                    crate::gate::log::json_str(request_id),
                    crate::gate::log::json_str(&reason.as_string().unwrap_or_default())
                );
                Error::OriginUnmaskable
            })?;
            let pair = js_sys::Array::from(&done);
            (pair.get(0), pair.get(1).is_truthy())
        }
    };
    let counts = counts.borrow().clone();
    sets.push((
        mask::MASKED_HEADER,
        mask::masked_count(counts.total(), complete),
    ));
    let r = DELETES
        .with(|deletes| masked_response(&resp, &body, &set_list(&sets), deletes))
        .map_err(|_| Error::Internal)?;
    Ok((r, Some(MaskRecord::new(why, rules, &counts, complete))))
}
