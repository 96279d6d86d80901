//! The nonce-store Durable Object: single-use challenge nonces and `(iss, jti)` first-seen
//! records, on the object's own SQLite database.
//!
//! A Durable Object runs one event at a time and SQLite calls are synchronous, so each operation
//! below is an atomic check-and-set: of 200 concurrent consumers of one nonce exactly one wins.
//! Expired rows are swept by an alarm, so storage stays bounded by the live rows.
//!
//! Wire protocol (internal, Worker -> object): `POST https://nonce-store/<op>` with a JSON body.
//! - `issue`   `{"id": "...", "exp": unix}`              -> `{"ok": true}`
//! - `consume` `{"id": "...", "now": unix}`              -> `{"ok": bool}` (true exactly once)
//! - `seen`    `{"id": "...", "exp": unix, "now": unix}` -> `{"ok": bool}` (true the first time)

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

/// How long after the earliest expiry the sweep runs (batches deletions).
const SWEEP_SLACK_MS: i64 = 5_000;

#[durable_object]
pub struct NonceStore {
    state: State,
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct Op {
    id: String,
    #[serde(default)]
    exp: i64,
    #[serde(default)]
    now: i64,
}

#[derive(Serialize)]
struct Outcome {
    ok: bool,
}

#[derive(Deserialize)]
struct NextExpiry {
    exp: Option<i64>,
}

impl DurableObject for NonceStore {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // Errors here surface on the first operation (which then fails closed with 503).
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS nonces (id TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID;",
            None,
        );
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID;",
            None,
        );
        Self { state, sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let op_name = req.path();
        let op: Op = req.json().await?;
        if op.id.is_empty() || op.id.len() > 512 {
            return Response::error("bad id", 400);
        }
        let ok = match op_name.as_str() {
            "/issue" => {
                self.sql.exec(
                    "INSERT OR IGNORE INTO nonces (id, exp) VALUES (?, ?);",
                    vec![op.id.into(), op.exp.into()],
                )?;
                self.ensure_alarm(op.exp).await?;
                true
            }
            "/consume" => {
                let rows: Vec<serde::de::IgnoredAny> = self
                    .sql
                    .exec(
                        "DELETE FROM nonces WHERE id = ? AND exp >= ? RETURNING 1 AS n;",
                        vec![op.id.into(), op.now.into()],
                    )?
                    .to_array()?;
                !rows.is_empty()
            }
            "/seen" => {
                // A stale record (expired, not yet swept) must not count as "seen".
                self.sql.exec(
                    "DELETE FROM seen WHERE id = ? AND exp < ?;",
                    vec![op.id.clone().into(), op.now.into()],
                )?;
                let rows: Vec<serde::de::IgnoredAny> = self
                    .sql
                    .exec(
                        "INSERT OR IGNORE INTO seen (id, exp) VALUES (?, ?) RETURNING 1 AS n;",
                        vec![op.id.into(), op.exp.into()],
                    )?
                    .to_array()?;
                if !rows.is_empty() {
                    self.ensure_alarm(op.exp).await?;
                }
                !rows.is_empty()
            }
            _ => return Response::error("unknown operation", 404),
        };
        Response::from_json(&Outcome { ok })
    }

    async fn alarm(&self) -> Result<Response> {
        let now_ms = worker::Date::now().as_millis() as i64;
        let now = now_ms / 1000;
        self.sql
            .exec("DELETE FROM nonces WHERE exp < ?;", vec![now.into()])?;
        self.sql
            .exec("DELETE FROM seen WHERE exp < ?;", vec![now.into()])?;
        let next: Vec<NextExpiry> = self
            .sql
            .exec(
                "SELECT MIN(exp) AS exp FROM (SELECT exp FROM nonces UNION ALL SELECT exp FROM seen);",
                None,
            )?
            .to_array()?;
        if let Some(exp) = next.first().and_then(|n| n.exp) {
            let offset = (exp + 1).saturating_mul(1000).saturating_sub(now_ms) + SWEEP_SLACK_MS;
            self.state
                .storage()
                .set_alarm(offset.max(SWEEP_SLACK_MS))
                .await?;
        }
        Response::ok("swept")
    }
}

impl NonceStore {
    /// Make sure an alarm will sweep a row expiring at `exp` (unix seconds).
    async fn ensure_alarm(&self, exp: i64) -> Result<()> {
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            let now_ms = worker::Date::now().as_millis() as i64;
            let offset = (exp + 1).saturating_mul(1000).saturating_sub(now_ms) + SWEEP_SLACK_MS;
            storage.set_alarm(offset.max(SWEEP_SLACK_MS)).await?;
        }
        Ok(())
    }
}
