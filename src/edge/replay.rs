//! The [`ReplayGuard`] seam on the nonce-store Durable Object (see `nonce_store.rs`).
//!
//! Shard `n` is the object named `nonce-shard-n`. Any failure to reach it, or an answer that is
//! not the expected JSON, is [`Error::NonceStoreUnavailable`]: fail closed with 503.

use serde::Deserialize;
use serde_json::json;
use worker::{Env, Headers};

use crate::gate::nonce::NonceRef;
use crate::gate::pipeline::ReplayGuard;
use crate::Error;

pub const BINDING: &str = "NONCE_STORE";

pub struct DoReplay<'a> {
    pub env: &'a Env,
}

#[derive(Deserialize)]
struct Outcome {
    ok: bool,
}

impl DoReplay<'_> {
    async fn call(&self, shard: u8, op: &str, body: serde_json::Value) -> Result<bool, Error> {
        let unavailable = |_| Error::NonceStoreUnavailable;
        let namespace = self.env.durable_object(BINDING).map_err(unavailable)?;
        let stub = namespace
            .id_from_name(&format!("nonce-shard-{shard}"))
            .and_then(|id| id.get_stub())
            .map_err(unavailable)?;
        let headers = Headers::new();
        headers
            .set("content-type", "application/json")
            .map_err(unavailable)?;
        let body = wasm_bindgen::JsValue::from_str(&body.to_string());
        let req = super::new_request(
            &format!("https://nonce-store/{op}"),
            "POST",
            &headers,
            Some(&body),
            false,
        )
        .map_err(unavailable)?;
        let mut resp = stub
            .fetch_with_request(req.into())
            .await
            .map_err(unavailable)?;
        if resp.status_code() != 200 {
            return Err(Error::NonceStoreUnavailable);
        }
        let outcome: Outcome = resp.json().await.map_err(unavailable)?;
        Ok(outcome.ok)
    }

    /// Record a freshly issued nonce in its shard. A full shard (`{"ok": false}`, see
    /// `nonce_store::MAX_LIVE_NONCES`) is 503 like an unreachable one: no nonce is handed out
    /// that the store could not make single use.
    pub async fn issue(&self, nonce: &NonceRef) -> Result<(), Error> {
        let recorded = self
            .call(
                nonce.shard,
                "issue",
                json!({"id": nonce.id, "exp": nonce.exp}),
            )
            .await?;
        if recorded {
            Ok(())
        } else {
            Err(Error::NonceStoreUnavailable)
        }
    }
}

impl ReplayGuard for DoReplay<'_> {
    async fn consume(&self, nonce: &NonceRef, now: i64) -> Result<bool, Error> {
        self.call(nonce.shard, "consume", json!({"id": nonce.id, "now": now}))
            .await
    }

    async fn first_seen(&self, shard: u8, id: &str, exp: i64, now: i64) -> Result<bool, Error> {
        self.call(shard, "seen", json!({"id": id, "exp": exp, "now": now}))
            .await
    }
}
