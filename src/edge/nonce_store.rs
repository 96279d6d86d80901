//! The nonce-store Durable Object: single-use challenge nonces and first-seen records (`(iss,
//! jti)` of `replay = "jti"` providers, DPoP proof `jti`s), on the object's own SQLite database.
//!
//! Exactly once: a Durable Object delivers one event at a time and only interleaves events at an
//! `await`; SQLite calls are synchronous. Each check-and-set below is a single SQL statement with
//! no `await` between the check and the write (`DELETE ... RETURNING`, `INSERT ... ON CONFLICT
//! ... RETURNING`), so of any number of concurrent consumers of one nonce exactly one wins. The
//! runtime's output gate holds each response until its write is durable.
//!
//! Bounded storage: every row has an expiry (`exp`, unix seconds, indexed). An alarm, scheduled
//! for shortly after the earliest expiry, deletes expired rows in batches and re-arms itself while
//! rows remain. Independently of the sweep, the number of live issued nonces per shard is capped
//! ([`MAX_LIVE_NONCES`]): the challenge endpoint is unauthenticated, so a flood of `issue` calls
//! is refused (503) rather than allowed to grow the table without limit.
//!
//! Wire protocol (internal, Worker -> object): `POST https://nonce-store/<op>` with a JSON body.
//! - `issue`   `{"id": "...", "exp": unix}`              -> `{"ok": bool}` (false: shard full)
//! - `consume` `{"id": "...", "now": unix}`              -> `{"ok": bool}` (true exactly once)
//! - `seen`    `{"id": "...", "exp": unix, "now": unix}` -> `{"ok": bool}` (true the first time)
//!
//! Anything else (unknown operation, bad body) is a non-200 answer, which the Worker treats as
//! "store unavailable" and refuses with 503.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

/// How long after the earliest expiry the sweep runs (lets one alarm delete many rows).
const SWEEP_SLACK_MS: i64 = 5_000;
/// Rows deleted per table per alarm run; when a batch is full the alarm re-arms at once, so a
/// large backlog never blocks the object (and its consumers) for long.
const SWEEP_BATCH: i64 = 2_000;
/// Most live issued nonces in one shard. At 120 s TTL that is over 8,000 challenges per second
/// per shard; beyond it `issue` answers `{"ok": false}` and the challenge endpoint 503.
pub const MAX_LIVE_NONCES: i64 = 1_000_000;
/// Longest store key accepted (nonce ids are 22 characters, replay ids 43).
const MAX_ID: usize = 128;

#[durable_object]
pub struct NonceStore {
    state: State,
    sql: SqlStorage,
    /// The alarm time (ms) as this instance last set or read it: `None` not known yet,
    /// `Some(None)` no alarm. Only this object sets its alarm, so the copy stays exact.
    alarm_at: Cell<Option<Option<i64>>>,
    /// Live rows in `nonces`, counted once per instance and then kept up to date.
    live_nonces: Cell<Option<i64>>,
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
struct Count {
    n: i64,
}

#[derive(Deserialize)]
struct NextExpiry {
    exp: Option<i64>,
}

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS nonces (id TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID;",
    "CREATE INDEX IF NOT EXISTS nonces_exp ON nonces (exp);",
    "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID;",
    "CREATE INDEX IF NOT EXISTS seen_exp ON seen (exp);",
];

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
            live_nonces: Cell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let op_name = req.path();
        let op: Op = req.json().await?;
        if op.id.is_empty() || op.id.len() > MAX_ID {
            return Response::error("bad id", 400);
        }
        let ok = match op_name.as_str() {
            "/issue" => self.issue(op).await?,
            "/consume" => self.consume(op)?,
            "/seen" => self.seen(op).await?,
            _ => return Response::error("unknown operation", 404),
        };
        Response::from_json(&Outcome { ok })
    }

    async fn alarm(&self) -> Result<Response> {
        let now_ms = worker::Date::now().as_millis() as i64;
        let now = now_ms / 1000;
        let mut full = false;
        for table in ["nonces", "seen"] {
            let deleted = self.sweep(table, now)?;
            full |= deleted >= SWEEP_BATCH;
        }
        // Re-count while here: keeps the cap exact whatever happened before.
        self.live_nonces.set(Some(self.count_nonces()?));
        let next = if full {
            Some(now_ms)
        } else {
            let rows: Vec<NextExpiry> = self
                .sql
                .exec(
                    "SELECT MIN(exp) AS exp FROM (SELECT MIN(exp) AS exp FROM nonces UNION ALL SELECT MIN(exp) AS exp FROM seen);",
                    None,
                )?
                .to_array()?;
            rows.first().and_then(|r| r.exp).map(sweep_time)
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

/// When to sweep a row that expires at `exp` (unix seconds): just after it, plus the slack.
fn sweep_time(exp: i64) -> i64 {
    exp.saturating_add(1)
        .saturating_mul(1000)
        .saturating_add(SWEEP_SLACK_MS)
}

impl NonceStore {
    /// Record a freshly issued nonce, unless the shard is full.
    async fn issue(&self, op: Op) -> Result<bool> {
        let live = match self.live_nonces.get() {
            Some(n) => n,
            None => self.count_nonces()?,
        };
        if live >= MAX_LIVE_NONCES {
            self.live_nonces.set(Some(live));
            return Ok(false);
        }
        let inserted = !self
            .sql
            .exec(
                "INSERT INTO nonces (id, exp) VALUES (?, ?) ON CONFLICT (id) DO NOTHING RETURNING 1 AS n;",
                vec![op.id.into(), op.exp.into()],
            )?
            .to_array::<Count>()?
            .is_empty();
        self.live_nonces.set(Some(live + i64::from(inserted)));
        self.ensure_alarm(op.exp).await?;
        Ok(true)
    }

    /// Delete a live nonce: true exactly once. An expired row is left to the sweep.
    fn consume(&self, op: Op) -> Result<bool> {
        let consumed = !self
            .sql
            .exec(
                "DELETE FROM nonces WHERE id = ? AND exp >= ? RETURNING 1 AS n;",
                vec![op.id.into(), op.now.into()],
            )?
            .to_array::<Count>()?
            .is_empty();
        if consumed {
            if let Some(n) = self.live_nonces.get() {
                self.live_nonces.set(Some((n - 1).max(0)));
            }
        }
        Ok(consumed)
    }

    /// Record an id until `exp`: true the first time. A stale record (expired, not yet swept)
    /// does not count: it is overwritten in the same statement.
    async fn seen(&self, op: Op) -> Result<bool> {
        let first = !self
            .sql
            .exec(
                "INSERT INTO seen (id, exp) VALUES (?, ?) \
                 ON CONFLICT (id) DO UPDATE SET exp = excluded.exp WHERE seen.exp < ? \
                 RETURNING 1 AS n;",
                vec![op.id.into(), op.exp.into(), op.now.into()],
            )?
            .to_array::<Count>()?
            .is_empty();
        if first {
            self.ensure_alarm(op.exp).await?;
        }
        Ok(first)
    }

    /// Delete at most [`SWEEP_BATCH`] expired rows of `table`, oldest first; returns how many.
    fn sweep(&self, table: &str, now: i64) -> Result<i64> {
        let deleted = self
            .sql
            .exec(
                &format!(
                    "DELETE FROM {table} WHERE id IN \
                     (SELECT id FROM {table} WHERE exp < ? ORDER BY exp LIMIT ?) RETURNING 1 AS n;"
                ),
                vec![now.into(), SWEEP_BATCH.into()],
            )?
            .to_array::<Count>()?
            .len();
        Ok(i64::try_from(deleted).unwrap_or(i64::MAX))
    }

    fn count_nonces(&self) -> Result<i64> {
        Ok(self
            .sql
            .exec("SELECT COUNT(*) AS n FROM nonces;", None)?
            .one::<Count>()?
            .n)
    }

    /// Make sure an alarm will sweep a row expiring at `exp` (unix seconds): set one when there is
    /// none, or when the one set is later than this row needs. No storage call in the common case
    /// (an earlier alarm is already set).
    async fn ensure_alarm(&self, exp: i64) -> Result<()> {
        let want = sweep_time(exp);
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
        let now_ms = worker::Date::now().as_millis() as i64;
        storage
            .set_alarm(want.saturating_sub(now_ms).max(0))
            .await?;
        self.alarm_at.set(Some(Some(want)));
        Ok(())
    }
}
