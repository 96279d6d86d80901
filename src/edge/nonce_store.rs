//! The nonce-store Durable Object: the first use of each challenge / DPoP nonce, and first-seen
//! records (`(iss, jti)` of `replay = "jti"` providers, DPoP proof `jti`s), on the object's own
//! SQLite database. The protocol and its checks are in `src/gate/store.rs` (shared with the
//! Worker's side, `replay.rs`, and tested natively).
//!
//! Nothing is written when a nonce is issued (it is MACed): `consume` inserts the nonce's id if
//! absent and keeps it until the nonce's expiry, so only a request whose tokens all verified
//! can make the object write (the pipeline consumes last, `src/gate/phase/`).
//!
//! Exactly once: a Durable Object delivers one event at a time and only interleaves events at an
//! `await`; SQLite calls are synchronous. Each check-and-set below is a single SQL statement with
//! no `await` between the check and the write (`INSERT ... ON CONFLICT ... RETURNING`), so of any
//! number of concurrent users of one nonce exactly one wins. The runtime's output gate holds
//! each response until its write is durable.
//!
//! Bounded storage: every row has an end (`exp`, unix seconds, indexed), capped at
//! `store::MAX_RECORD_SECS` ahead, so the sweep alarm is always a valid time. An alarm, scheduled
//! for shortly after the earliest end (plus `store::CLOCK_MARGIN_SECS`), deletes ended rows in
//! batches and re-arms itself while rows remain.
//!
//! Anything malformed (unknown operation, a body that is not exactly a `store::Record`, an
//! implausible `now`, a past `exp`) is a 400 answer, which the Worker treats as "store
//! unavailable" and refuses with 503: never a default value.

use std::cell::Cell;

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::gate::store::{self, Answer, Op, Row};

/// How long after the earliest end the sweep runs (lets one alarm delete many rows).
const SWEEP_SLACK_MS: i64 = 5_000;
/// Rows deleted per table per alarm run; when a batch is full the alarm re-arms at once, so a
/// large backlog never blocks the object (and its consumers) for long.
const SWEEP_BATCH: i64 = 2_000;

#[durable_object]
pub struct NonceStore {
    state: State,
    sql: SqlStorage,
    /// The alarm time (ms) as this instance last set or read it: `None` not known yet,
    /// `Some(None)` no alarm. Only this object sets its alarm, so the copy stays exact.
    alarm_at: Cell<Option<Option<i64>>>,
}

#[derive(Deserialize)]
struct Count {
    #[allow(dead_code)]
    n: i64,
}

#[derive(Deserialize)]
struct NextExpiry {
    exp: Option<i64>,
}

const SCHEMA: [&str; 5] = [
    // Version 1 stored every issued nonce here (and deleted it at use); nothing reads it now.
    "DROP TABLE IF EXISTS nonces;",
    "CREATE TABLE IF NOT EXISTS used_nonces (id TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID;",
    "CREATE INDEX IF NOT EXISTS used_nonces_exp ON used_nonces (exp);",
    "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID;",
    "CREATE INDEX IF NOT EXISTS seen_exp ON seen (exp);",
];

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

impl DurableObject for NonceStore {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in SCHEMA {
            // An error here surfaces on the first operation (which then fails closed with 503).
            let _ = sql.exec(statement, None);
        }
        Self {
            state,
            sql,
            alarm_at: Cell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // Issue 16: the deny store's shards are objects of this class (`deny_store.rs`).
        #[cfg(attestgate_deny)]
        if let Some(op) = req.path().strip_prefix("/deny") {
            let op = op.to_owned();
            let body = req.text().await?;
            return super::deny_store::serve(&self.sql, &op, &body);
        }
        let Some(op) = Op::from_path(&req.path()) else {
            return Response::error("unknown operation", 404);
        };
        let body = req.text().await?;
        let row = match store::accept(&body, now_ms() / 1000) {
            Ok(row) => row,
            Err(_) => return Response::error("bad request", 400),
        };
        let ok = self.record(op, row).await?;
        let headers = worker::Headers::new();
        headers.set("content-type", "application/json")?;
        Ok(Response::ok(Answer { ok }.to_json())?.with_headers(headers))
    }

    async fn alarm(&self) -> Result<Response> {
        let now_ms = now_ms();
        let before = store::sweep_before(now_ms / 1000);
        let mut full = false;
        for op in [Op::Consume, Op::Seen] {
            let deleted = self.sweep(op.table(), before)?;
            full |= deleted >= SWEEP_BATCH;
        }
        let next = if full {
            Some(now_ms)
        } else {
            let rows: Vec<NextExpiry> = self
                .sql
                .exec(
                    "SELECT MIN(exp) AS exp FROM (SELECT MIN(exp) AS exp FROM used_nonces UNION ALL SELECT MIN(exp) AS exp FROM seen);",
                    None,
                )?
                .to_array()?;
            rows.first()
                .and_then(|r| r.exp)
                .map(|exp| store::sweep_at_ms(exp, SWEEP_SLACK_MS))
        };
        match next {
            Some(at) => {
                let offset = at.saturating_sub(now_ms).max(0);
                self.state.storage().set_alarm(offset).await?;
                self.alarm_at.set(Some(Some(at)));
            }
            None => self.alarm_at.set(Some(None)),
        }
        Response::ok("swept")
    }
}

impl NonceStore {
    /// Record `row` in the operation's table: true the first time. A record that has ended at
    /// the Worker's `now` (expired, not yet swept) does not count: it is overwritten in the same
    /// statement. (A nonce reaches the store only while it is live, so for nonces this is plain
    /// "insert if absent".)
    async fn record(&self, op: Op, row: Row) -> Result<bool> {
        let table = op.table();
        let first = !self
            .sql
            .exec(
                &format!(
                    "INSERT INTO {table} (id, exp) VALUES (?, ?) \
                     ON CONFLICT (id) DO UPDATE SET exp = excluded.exp WHERE {table}.exp < ? \
                     RETURNING 1 AS n;"
                ),
                vec![row.id.into(), row.exp.into(), row.now.into()],
            )?
            .to_array::<Count>()?
            .is_empty();
        if first {
            self.ensure_alarm(row.exp).await?;
        }
        Ok(first)
    }

    /// Delete at most [`SWEEP_BATCH`] rows of `table` that ended before `before`, oldest first;
    /// returns how many.
    fn sweep(&self, table: &str, before: i64) -> Result<i64> {
        let deleted = self
            .sql
            .exec(
                &format!(
                    "DELETE FROM {table} WHERE id IN \
                     (SELECT id FROM {table} WHERE exp < ? ORDER BY exp LIMIT ?) RETURNING 1 AS n;"
                ),
                vec![before.into(), SWEEP_BATCH.into()],
            )?
            .to_array::<Count>()?
            .len();
        Ok(i64::try_from(deleted).unwrap_or(i64::MAX))
    }

    /// Make sure an alarm will sweep a row ending at `exp` (unix seconds, already capped): set
    /// one when there is none, or when the one set is later than this row needs. No storage call
    /// in the common case (an earlier alarm is already set).
    async fn ensure_alarm(&self, exp: i64) -> Result<()> {
        let want = store::sweep_at_ms(exp, SWEEP_SLACK_MS);
        let storage = self.state.storage();
        let current = match self.alarm_at.get() {
            Some(known) => known,
            None => {
                let read = storage.get_alarm().await?;
                self.alarm_at.set(Some(read));
                read
            }
        };
        if current.is_some_and(|at| at <= want) {
            return Ok(());
        }
        storage
            .set_alarm(want.saturating_sub(now_ms()).max(0))
            .await?;
        self.alarm_at.set(Some(Some(want)));
        Ok(())
    }
}
