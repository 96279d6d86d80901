//! Test-only endpoints that make this Worker trap or wait, to check end to end what happens to
//! requests in flight when the WebAssembly instance traps (`src/edge/task.js`,
//! `scripts/plain_entry.py`, `tests/e2e/test_hardening_state.py`). Compiled only with
//! `--cfg attestgate_selftest`, like `selftest.rs`: a production build has no such routes.
//!
//! - `POST /__attestgate/selftest/fault/trap`: traps within the request's first poll (the entry
//!   sees the exception);
//! - `POST /__attestgate/selftest/fault/trap-later`: waits 50 ms, then traps inside the executor
//!   (a microtask: only `task.js` sees it);
//! - `GET /__attestgate/selftest/fault/wait?ms=N`: answers 200 after N ms (at most 20 s);
//! - `POST /__attestgate/selftest/fault/audit-down?ms=N`: the decision log's sequencer fails
//!   every operation for N ms (issue 17: a store that cannot be reached);
//! - `POST /__attestgate/selftest/fault/plant-cache` with `{"url", "body", "headers"}`: puts a
//!   response into the Cache API under `url`, as another Worker on the same zone could (the
//!   JWKS copy scenarios of `src/edge/keys.rs`).

use std::time::Duration;

use std::collections::HashMap;

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{Cache, Headers, Response};

use super::task::sleep;

use crate::gate::url::RequestUrl;

pub const PREFIX: &str = "/__attestgate/selftest/fault/";

#[derive(Deserialize)]
struct Plant {
    url: String,
    body: String,
    headers: HashMap<String, String>,
}

/// `Some(answer)` for a fault path, `None` for any other path.
pub async fn handle(
    req: &worker::web_sys::Request,
    method: &str,
    url: &RequestUrl<'_>,
    env: &worker::Env,
) -> Option<Result<JsValue, JsValue>> {
    let op = url.path.strip_prefix(PREFIX)?;
    match (method, op) {
        ("POST", "trap") => trap(),
        ("POST", "trap-later") => {
            sleep(Duration::from_millis(50)).await;
            trap()
        }
        ("GET", "wait") => {
            let ms = url
                .query
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                .min(20_000);
            // In slices, like the key cache's wait for another request's fetch (20 ms polls).
            let mut left = ms;
            while left > 0 {
                let step = left.min(100);
                sleep(Duration::from_millis(step)).await;
                left -= step;
            }
            Some(text("waited"))
        }
        ("POST", "plant-cache") => Some(plant(req).await),
        // Issue 17: the decision log's sequencer fails for `ms` milliseconds.
        ("POST", "audit-down") => {
            let ms = url
                .query
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            Some(if super::audit_log::fault_down(env, ms).await {
                text("down")
            } else {
                text("not down")
            })
        }
        _ => Some(text("unknown fault")),
    }
}

/// A WebAssembly trap (`unreachable`), as a Rust panic makes one (`panic = "abort"`).
fn trap() -> ! {
    panic!("attestgate fault test: trap on purpose")
}

async fn plant(req: &worker::web_sys::Request) -> Result<JsValue, JsValue> {
    let body = super::task::Settled::new(req.text()?).await?;
    let plant: Plant = serde_json::from_str(&body.as_string().unwrap_or_default())
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let headers = Headers::new();
    for (name, value) in &plant.headers {
        headers.set(name, value)?;
    }
    let copy = Response::ok(plant.body)?.with_headers(headers);
    Cache::default().put(&plant.url, copy).await?;
    text("planted")
}

fn text(body: &str) -> Result<JsValue, JsValue> {
    worker::web_sys::Response::new_with_opt_str(Some(body)).map(JsValue::from)
}
