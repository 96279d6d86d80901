//! The Worker's side of [`crate::handoff`]: a request's future as a JavaScript promise, already
//! settled when the future finished within its first poll, else driven by [`super::task`].

use std::future::Future;

use wasm_bindgen::JsValue;

use crate::handoff::first_poll;

pub fn promise(run: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> js_sys::Promise {
    match first_poll(run) {
        Ok(Ok(v)) => js_sys::Promise::resolve(&v),
        Ok(Err(e)) => js_sys::Promise::reject(&e),
        Err(rest) => super::task::spawn(rest),
    }
}
