//! The Worker runtime adapter (wasm32 only).

mod nonce_store;

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    let mut resp =
        Response::from_json(&serde_json::json!({"error": "not_found"}))?.with_status(404);
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}
