//! One call to a Durable Object of the gateway's stores (nonce store, deny list shards, session
//! budgets): `POST` a JSON body to a path of the object, within a time limit, and read the answer
//! as text. Whatever goes wrong (no binding, no stub, a failed or slow exchange, a status other
//! than 200) is the caller's one `unavailable` error: every store fails closed the same way.

use std::time::Duration;

use worker::{Env, Headers};

use crate::Error;

/// The text of the answer of `POST url` with `body` (JSON) to the object `name` of the
/// Durable Object `binding`, or `unavailable`.
pub async fn post_json(
    env: &Env,
    binding: &str,
    name: &str,
    url: &str,
    body: &str,
    timeout: Duration,
    unavailable: Error,
) -> Result<String, Error> {
    let fail = |_| unavailable;
    let namespace = env.durable_object(binding).map_err(fail)?;
    let stub = namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(fail)?;
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(fail)?;
    let body = wasm_bindgen::JsValue::from_str(body);
    let req = super::new_request(url, "POST", &headers, Some(&body), false).map_err(fail)?;
    let exchange = async move {
        let mut resp = stub.fetch_with_request(req.into()).await.map_err(fail)?;
        if resp.status_code() != 200 {
            return Err(unavailable);
        }
        resp.text().await.map_err(fail)
    };
    super::task::within(timeout, exchange)
        .await
        .unwrap_or(Err(unavailable))
}
