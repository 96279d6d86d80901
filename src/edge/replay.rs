//! The [`ReplayGuard`] seam on the nonce-store Durable Object (see `nonce_store.rs`; the protocol
//! is `src/gate/store.rs`, the same types on both sides).
//!
//! Shard `n` is the object named `nonce-shard-n`. Any failure to reach it, an answer later than
//! [`STORE_TIMEOUT`], or an answer that is not the expected JSON, is
//! [`Error::NonceStoreUnavailable`]: fail closed with 503.

use std::time::Duration;

use worker::Env;

use crate::gate::nonce::NonceRef;
use crate::gate::seams::ReplayGuard;
use crate::gate::store::{Answer, Op, Record};
use crate::Error;

pub const BINDING: &str = "NONCE_STORE";

/// Time allowed for one store call, answer included. A store operation is one SQLite statement
/// (milliseconds, plus the object's start when it was idle); past this the request is 503
/// rather than held open.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct DoReplay<'a> {
    pub env: &'a Env,
}

impl DoReplay<'_> {
    async fn call(&self, shard: u8, op: Op, record: &Record) -> Result<bool, Error> {
        let text = super::store_call::post_json(
            self.env,
            BINDING,
            &format!("nonce-shard-{shard}"),
            op.url(),
            &record.to_json(),
            STORE_TIMEOUT,
            Error::NonceStoreUnavailable,
        )
        .await?;
        Answer::from_json(&text)
            .map(|answer| answer.ok)
            .ok_or(Error::NonceStoreUnavailable)
    }
}

impl ReplayGuard for DoReplay<'_> {
    async fn consume(&self, nonce: &NonceRef, now: i64) -> Result<bool, Error> {
        let record = Record {
            id: nonce.id.clone(),
            exp: nonce.exp,
            now,
        };
        self.call(nonce.shard, Op::Consume, &record).await
    }

    /// Issue 15: the session's own Durable Object (`src/edge/budget.rs`).
    async fn charge_budget(
        &self,
        session: &str,
        ask: &crate::gate::budget::Ask,
    ) -> Result<crate::gate::budget::Answer, Error> {
        super::budget::charge(self.env, session, ask).await
    }

    async fn first_seen(&self, shard: u8, id: &str, exp: i64, now: i64) -> Result<bool, Error> {
        let record = Record {
            id: id.to_owned(),
            exp,
            now,
        };
        self.call(shard, Op::Seen, &record).await
    }
}
