//! One call to a Durable Object of the gateway's stores (nonce store, deny list shards, session
//! budgets, the decision log's sequencer): a request to a path of the object, within a time
//! limit, the answer read as text. Whatever goes wrong (no binding, no stub, a failed or slow
//! exchange) is the caller's one `unavailable` error: every store fails closed the same way.

use std::time::Duration;

use worker::{Env, Headers};

use crate::Error;

/// What one object answered: status, `Content-Type` (empty without one) and body.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

/// One request to a store object.
pub struct Call<'a> {
    pub binding: &'a str,
    /// The object's name (`id_from_name`).
    pub name: &'a str,
    pub url: &'a str,
    pub method: &'a str,
    /// The body and, if it says, its content type.
    pub body: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub timeout: Duration,
    pub unavailable: Error,
}

/// `call`'s answer, or `call.unavailable`.
pub async fn send(env: &Env, call: Call<'_>) -> Result<Reply, Error> {
    let unavailable = call.unavailable;
    let fail = |_| unavailable;
    let namespace = env.durable_object(call.binding).map_err(fail)?;
    let stub = namespace
        .id_from_name(call.name)
        .and_then(|id| id.get_stub())
        .map_err(fail)?;
    let headers = Headers::new();
    if let Some(kind) = call.content_type {
        headers.set("content-type", kind).map_err(fail)?;
    }
    let body = call.body.map(wasm_bindgen::JsValue::from_str);
    let req =
        super::new_request(call.url, call.method, &headers, body.as_ref(), false).map_err(fail)?;
    let exchange = async move {
        let mut resp = stub.fetch_with_request(req.into()).await.map_err(fail)?;
        let status = resp.status_code();
        let content_type = resp
            .headers()
            .get("content-type")
            .ok()
            .flatten()
            .unwrap_or_default();
        let text = resp.text().await.map_err(fail)?;
        Ok(Reply {
            status,
            content_type,
            text,
        })
    };
    super::task::within(call.timeout, exchange)
        .await
        .unwrap_or(Err(unavailable))
}

/// The text of the answer of `POST url` with `body` (JSON) to the object `name` of the
/// Durable Object `binding` when it is 200, else `unavailable`.
pub async fn post_json(
    env: &Env,
    binding: &str,
    name: &str,
    url: &str,
    body: &str,
    timeout: Duration,
    unavailable: Error,
) -> Result<String, Error> {
    let call = Call {
        binding,
        name,
        url,
        method: "POST",
        body: Some(body),
        content_type: Some("application/json"),
        timeout,
        unavailable,
    };
    let reply = send(env, call).await?;
    if reply.status != 200 {
        return Err(unavailable);
    }
    Ok(reply.text)
}
