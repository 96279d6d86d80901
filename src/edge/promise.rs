//! The Worker's side of [`crate::first_poll`]: a request's future as a JavaScript promise, already
//! settled when the future finished within its first poll, else driven by [`super::task`]
//! (under the task id its first poll ran as, so that `task.js` knows which request waits on
//! what the first poll started).

use std::future::Future;

use wasm_bindgen::JsValue;

use crate::first_poll::first_poll;

pub fn promise(run: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> js_sys::Promise {
    match super::task::first_poll_as_task(|| first_poll(run)) {
        (_, Ok(Ok(v))) => js_sys::Promise::resolve(&v),
        (_, Ok(Err(e))) => js_sys::Promise::reject(&e),
        (id, Err(rest)) => super::task::spawn(id, rest),
    }
}
