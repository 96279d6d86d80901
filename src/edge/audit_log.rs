//! The decision log's sequencer Durable Object (issue 17), and the Worker's side of it.
//!
//! One object (`AUDIT_LOG`, named `decisions`) sequences every record: a Durable Object handles
//! one event at a time and each append runs without an `await` between reading the committed
//! size and writing the new one, so two isolates appending at once get distinct indexes. The
//! logic is the pure [`Sequencer`] (`src/gate/audit/sequencer.rs`): records, then tree tiles,
//! then the committed size last, so a batch cut short by a restart leaves nothing that counts
//! (and its caller, never answered, holds no index). The runtime's output gate holds each
//! answer until its writes are durable: an acknowledged record is stored.
//!
//! Tables (SQLite), the layout of `src/gate/audit/tiles.rs` (C2SP `tlog-tiles`' tiles, as rows):
//! `entries (first, records)` — one row per batch, its records one per line, `first` the index
//! of the first —, `tiles (level, idx, hashes)` — tile `(L, N)`: up to 256 hashes of tree level
//! `8·L`, 32 bytes each, as one blob; the right-most tile of each level is partial and
//! rewritten as it grows —, `meta (k, v)` (`size`, the commit marker, and `origin`) and
//! `checkpoints (size, note)`. Per batch: three statements (the records row, the tiles it
//! changed: one, and one more every 256 records, the size) and no reads (the right edge of the
//! tree is kept in memory): the cost per record does not grow with the log, and most of it is
//! per batch. A log written in the layout before this one (tables `records` and `nodes`) is not
//! read: its size is there but its tiles are not, so every append fails ("log unavailable")
//! and no index is ever reused.
//!
//! Checkpoints are signed here with the gateway key (`ATTESTGATE_SIGNING_KEY`, through WebCrypto)
//! at most [`CHECKPOINT_SECS`] after the first unsigned record (an alarm) and on demand (`POST
//! /sign`), each checked against the last signed one before signing.
//!
//! The Worker's side: [`append`] (one round trip; `audit = "sync"` routes wait for it), the
//! per-isolate queue of `audit = "async"` records ([`enqueue`], flushed through `waitUntil`),
//! and [`read`] for the operator API.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

use crate::gate::audit::batch::{self, MAX_BATCH_BYTES};
use crate::gate::audit::checkpoint::{self, TreeHead};
use crate::gate::audit::export;
use crate::gate::audit::merkle::{self, Hash, NodeSource};
use crate::gate::audit::read::LogRead;
use crate::gate::audit::sequencer::{LogStore, Nodes, SeqError, Sequencer, MAX_BATCH};
use crate::gate::audit::tiles::{TileSource, TileWrite};
use crate::gate::phase::Answer;
use crate::jose::b64;
use crate::Error;

pub const BINDING: &str = "AUDIT_LOG";
/// The one sequencer object's name.
const OBJECT: &str = "decisions";
/// A checkpoint is signed at most this long after the first record it does not cover.
pub const CHECKPOINT_SECS: i64 = 10;
/// Longest record accepted (the records are bounded well below it, `gate::audit::record`).
const MAX_RECORD: usize = 64 * 1024;

/// Time allowed for one call to the object, answer included.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(5);

#[durable_object]
pub struct AuditLog {
    state: State,
    env: Env,
    sql: SqlStorage,
    seq: RefCell<Sequencer>,
    signer: super::webcrypto::WebCryptoSigner,
    /// A checkpoint is being signed (one at a time).
    signing: Cell<bool>,
    /// Whether an alarm is set, as this instance knows it (`None`: not read yet).
    alarm: Cell<Option<bool>>,
    /// The log's origin as stored (`meta`), once this instance read or wrote it.
    origin: RefCell<Option<String>>,
    /// Test builds only: the object fails every operation until then (ms since the epoch), as a
    /// store that cannot be reached (`fault_test.rs`, `POST .../fault/audit-down?ms=N`).
    #[cfg(attestgate_selftest)]
    down_until: Cell<f64>,
}

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS entries (first INTEGER PRIMARY KEY, records TEXT NOT NULL);",
    "CREATE TABLE IF NOT EXISTS tiles (level INTEGER NOT NULL, idx INTEGER NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID;",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;",
    "CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, origin TEXT NOT NULL, root TEXT NOT NULL, note TEXT NOT NULL);",
];

/// The rows of a query as raw values (no per-row deserialiser: the Worker stays small).
fn rows(cursor: worker::SqlCursor) -> Result<Vec<Vec<SqlStorageValue>>> {
    let mut out = Vec::new();
    for row in cursor.raw() {
        out.push(row?);
    }
    Ok(out)
}

/// The first column of the first row, as text.
fn first_text(cursor: worker::SqlCursor) -> Result<Option<String>> {
    Ok(rows(cursor)?.into_iter().next().and_then(|row| {
        row.into_iter().next().and_then(|v| match v {
            SqlStorageValue::String(s) => Some(s),
            _ => None,
        })
    }))
}

/// The object's SQLite storage as the sequencer's [`LogStore`].
struct Sql<'a>(&'a SqlStorage);

fn int(v: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Sql<'_> {
    fn meta(&self, k: &str) -> Result<Option<String>> {
        first_text(
            self.0
                .exec("SELECT v FROM meta WHERE k = ?;", vec![k.into()])?,
        )
    }

    fn set_meta(&self, k: &str, v: &str) -> Result<()> {
        self.0.exec(
            "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?);",
            vec![k.into(), v.into()],
        )?;
        Ok(())
    }

    /// Record `index` (below the committed size): a line of the batch row it is in.
    fn record(&self, index: u64) -> Result<Option<String>> {
        let Some(end) = index.checked_add(1) else {
            return Ok(None);
        };
        Ok(self.records(index, end)?.and_then(|mut one| one.pop()))
    }

    /// Records `[start, end)` (below the committed size), from the batch rows that hold them,
    /// each row checked to start where the one before it ended. `None` if one is missing.
    fn records(&self, start: u64, end: u64) -> Result<Option<Vec<String>>> {
        let rows = rows(self.0.exec(
            "SELECT first, records FROM entries WHERE first >= (SELECT COALESCE(MAX(first), 0) FROM entries WHERE first <= ?) AND first < ? ORDER BY first;",
            vec![int(start), int(end)],
        )?)?;
        let mut out = Vec::new();
        let mut next: Option<u64> = None;
        for row in rows {
            let [SqlStorageValue::Integer(first), SqlStorageValue::String(records)] =
                row.as_slice()
            else {
                return Ok(None);
            };
            let Ok(mut index) = u64::try_from(*first) else {
                return Ok(None);
            };
            if next.is_some_and(|n| n != index) {
                return Ok(None);
            }
            for record in records.split('\n') {
                if (start..end).contains(&index) {
                    out.push(record.to_owned());
                }
                index += 1;
            }
            next = Some(index);
        }
        Ok((out.len() as u64 == end - start).then_some(out))
    }
}

impl TileSource for Sql<'_> {
    type Error = worker::Error;

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<Hash>>> {
        let row = rows(self.0.exec(
            "SELECT hashes FROM tiles WHERE level = ? AND idx = ?;",
            vec![i64::from(level).into(), int(index)],
        )?)?;
        Ok(match row.first().map(Vec::as_slice) {
            Some([SqlStorageValue::Blob(bytes)]) => Some(
                bytes
                    .chunks_exact(32)
                    .filter_map(|h| Hash::try_from(h).ok())
                    .collect(),
            ),
            _ => None,
        })
    }
}

impl LogStore for Sql<'_> {
    fn size(&self) -> Result<u64> {
        Ok(self.meta("size")?.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Three statements whatever the batch: its records as one row (`first`, the records one
    /// per line), the tiles it changed, the size. Rows at or beyond the committed size are
    /// overwritten: they are what a batch cut short left behind (at the same `first`, the
    /// committed size), never part of the log.
    fn commit(&self, first: u64, records: &[&str], tiles: &[TileWrite], size: u64) -> Result<()> {
        self.0.exec(
            "INSERT OR REPLACE INTO entries (first, records) VALUES (?, ?);",
            vec![int(first), records.join("\n").into()],
        )?;
        for chunk in tiles.chunks(33) {
            let sql = format!(
                "INSERT OR REPLACE INTO tiles (level, idx, hashes) VALUES {};",
                vec!["(?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut args = Vec::with_capacity(chunk.len() * 3);
            for (level, index, hashes) in chunk {
                args.push(i64::from(*level).into());
                args.push(int(*index));
                args.push(SqlStorageValue::Blob(hashes.concat()));
            }
            self.0.exec(&sql, args)?;
        }
        // The commit marker, last.
        self.set_meta("size", &size.to_string())
    }

    fn last_checkpoint(&self) -> Result<Option<(TreeHead, String)>> {
        let row = rows(self.0.exec(
            "SELECT size, origin, root, note FROM checkpoints ORDER BY size DESC LIMIT 1;",
            None,
        )?)?
        .into_iter()
        .next();
        Ok(match row.as_deref() {
            Some(
                [SqlStorageValue::Integer(size), SqlStorageValue::String(origin), SqlStorageValue::String(root), SqlStorageValue::String(note)],
            ) => {
                let root: Option<Hash> = b64::decode(root).ok().and_then(|b| b.try_into().ok());
                match (u64::try_from(*size), root) {
                    (Ok(size), Some(root)) => Some((
                        TreeHead {
                            origin: origin.clone(),
                            size,
                            root,
                        },
                        note.clone(),
                    )),
                    _ => None,
                }
            }
            _ => None,
        })
    }

    fn put_checkpoint(&self, head: &TreeHead, note: &str) -> Result<()> {
        self.0.exec(
            "INSERT OR REPLACE INTO checkpoints (size, origin, root, note) VALUES (?, ?, ?, ?);",
            vec![
                int(head.size),
                head.origin.as_str().into(),
                b64::encode(&head.root).into(),
                note.into(),
            ],
        )?;
        Ok(())
    }
}

fn json_response(body: String) -> Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(body)?.with_headers(headers))
}

/// A JSON array of standard-base64 hashes.
fn b64_list(hashes: &[Hash]) -> String {
    let items: Vec<String> = hashes
        .iter()
        .map(|h| format!("\"{}\"", crate::gate::audit::std_b64(h)))
        .collect();
    format!("[{}]", items.join(","))
}

impl DurableObject for AuditLog {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in SCHEMA {
            // An error here surfaces on the first operation (which then fails closed).
            let _ = sql.exec(statement, None);
        }
        Self {
            state,
            env,
            sql,
            seq: RefCell::new(Sequencer::new()),
            signer: super::webcrypto::WebCryptoSigner::new(),
            signing: Cell::new(false),
            alarm: Cell::new(None),
            origin: RefCell::new(None),
            #[cfg(attestgate_selftest)]
            down_until: Cell::new(0.0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        #[cfg(attestgate_selftest)]
        {
            let now = js_sys::Date::now();
            if path == "/fault/down" {
                let ms: f64 = req.text().await?.parse().unwrap_or(0.0);
                self.down_until.set(now + ms.min(60_000.0));
                return Response::ok("down");
            }
            if now < self.down_until.get() {
                return Err(worker::Error::RustError(
                    "audit log down (fault test)".into(),
                ));
            }
        }
        if path == "/append" {
            let body = req.text().await?;
            return self.append(&body).await;
        }
        if path == "/sign" {
            let origin = req.text().await?;
            if !origin.is_empty() {
                self.remember_origin(&origin)?;
            }
        }
        match LogRead::from_object_path(&path) {
            Some(read) => self.read(read).await,
            None => Response::error("unknown operation", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm.set(Some(false));
        self.sign_checkpoint().await?;
        Response::ok("checkpoint")
    }
}

impl AuditLog {
    fn store(&self) -> Sql<'_> {
        Sql(&self.sql)
    }

    fn remember_origin(&self, origin: &str) -> Result<()> {
        if self.origin.borrow().as_deref() == Some(origin) {
            return Ok(());
        }
        let store = self.store();
        if store.meta("origin")?.as_deref() != Some(origin) {
            store.set_meta("origin", origin)?;
        }
        *self.origin.borrow_mut() = Some(origin.to_owned());
        Ok(())
    }

    /// `origin\nrecord\nrecord...`: canonical records never hold a raw newline (JSON escapes
    /// control characters), so one line is one record. At most [`MAX_BATCH`] records and
    /// [`MAX_BATCH_BYTES`] bytes: the batch is one row.
    async fn append(&self, body: &str) -> Result<Response> {
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        let records: Vec<&str> = lines.collect();
        let valid = !origin.is_empty()
            && body.len() <= MAX_BATCH_BYTES
            && !records.is_empty()
            && records.len() <= MAX_BATCH
            && records
                .iter()
                .all(|r| r.starts_with('{') && r.ends_with('}') && r.len() <= MAX_RECORD);
        if !valid {
            return Response::error("bad request", 400);
        }
        self.remember_origin(origin)?;
        // No await from here to the commit: one event at a time, so indexes are distinct.
        let appended = self.seq.borrow_mut().append(&self.store(), &records);
        let appended = match appended {
            Ok(a) => a,
            Err(SeqError::Store(e)) => return Err(e),
            Err(_) => return Response::error("log unavailable", 500),
        };
        self.ensure_alarm().await?;
        Response::ok(format!("{} {}", appended.first, appended.size))
    }

    /// An alarm will sign a checkpoint within [`CHECKPOINT_SECS`].
    async fn ensure_alarm(&self) -> Result<()> {
        let storage = self.state.storage();
        let set = match self.alarm.get() {
            Some(known) => known,
            None => storage.get_alarm().await?.is_some(),
        };
        if !set {
            storage
                .set_alarm(Duration::from_secs(CHECKPOINT_SECS as u64))
                .await?;
        }
        self.alarm.set(Some(true));
        Ok(())
    }

    /// Sign a checkpoint of the current tree if it grew since the last one. `Ok(false)` when
    /// it could not be signed now (no key, or another signing in progress).
    async fn sign_checkpoint(&self) -> Result<bool> {
        if self.signing.get() {
            return Ok(false);
        }
        let store = self.store();
        let Some(origin) = store.meta("origin")? else {
            return Ok(true); // nothing appended yet
        };
        let head = match self.seq.borrow_mut().prepare_checkpoint(&store, &origin) {
            Ok(None) => return Ok(true),
            Ok(Some(head)) => head,
            Err(SeqError::Store(e)) => return Err(e),
            Err(_) => {
                worker::console_error!(
                    "{{\"attestgate\":\"audit_log\",\"error\":\"inconsistent tree: checkpoint not signed\"}}"
                );
                return Ok(false);
            }
        };
        // The gateway key as the Worker reads it (`gate::signing`), read again at each
        // checkpoint: a checkpoint is rare, and a rotated key is used from the next one.
        let secrets = super::secrets::WorkerSecrets {
            env: &self.env,
            cache: &super::secrets::SecretCache::default(),
        };
        let keys = crate::gate::signing::GatewayKeys::from_secrets(&secrets).ok();
        let Some(key) = keys.as_ref().map(|k| k.current()) else {
            worker::console_error!(
                "{{\"attestgate\":\"audit_log\",\"error\":\"ATTESTGATE_SIGNING_KEY missing or unusable: checkpoint not signed\"}}"
            );
            return Ok(false);
        };
        self.signing.set(true);
        let note = checkpoint::sign(&head, key, &self.signer).await;
        self.signing.set(false);
        let Ok(note) = note else {
            return Ok(false);
        };
        match self
            .seq
            .borrow_mut()
            .accept_checkpoint(&store, &head, &note)
        {
            Ok(()) => Ok(true),
            Err(SeqError::Store(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    async fn read(&self, read: LogRead) -> Result<Response> {
        let store = self.store();
        let size = store.size()?;
        let nodes = Nodes::new(&store);
        let not_found = || Response::error("not found", 404);
        match read {
            LogRead::Checkpoint { sign } => {
                if sign && !self.sign_checkpoint().await? {
                    return Response::error("checkpoint not signed", 503);
                }
                match store.last_checkpoint()? {
                    Some((_, note)) => {
                        let headers = worker::Headers::new();
                        headers.set("content-type", "text/plain; charset=utf-8")?;
                        Ok(Response::ok(note)?.with_headers(headers))
                    }
                    None => not_found(),
                }
            }
            LogRead::Record(index) if index < size => match store.record(index)? {
                Some(record) => {
                    let headers = worker::Headers::new();
                    headers.set("content-type", "application/json")?;
                    Ok(Response::ok(export::line(index, &record))?.with_headers(headers))
                }
                None => not_found(),
            },
            LogRead::Inclusion { index, size: at } if at <= size => {
                let proof = merkle::inclusion_proof(&nodes, index, at);
                let leaf = nodes.node(0, index)?;
                match (proof, leaf) {
                    (Ok(proof), Some(leaf)) => json_response(format!(
                        "{{\"index\":{index},\"size\":{at},\"leaf_hash\":{},\"proof\":{}}}",
                        b64_list(&[leaf]).trim_matches(['[', ']']),
                        b64_list(&proof)
                    )),
                    _ => Response::error("log unavailable", 500),
                }
            }
            LogRead::Consistency { old, new } if new <= size => {
                match merkle::consistency_proof(&nodes, old, new) {
                    Ok(proof) => json_response(format!(
                        "{{\"old\":{old},\"new\":{new},\"proof\":{}}}",
                        b64_list(&proof)
                    )),
                    Err(_) => Response::error("log unavailable", 500),
                }
            }
            LogRead::Export { start, end } => {
                let Some((head, _)) = store.last_checkpoint()? else {
                    return not_found();
                };
                if end > head.size {
                    return not_found();
                }
                let Ok(mut out) = export::header(&nodes, start, end, head.size) else {
                    return Response::error("log unavailable", 500);
                };
                out.push('\n');
                let Some(records) = store.records(start, end)? else {
                    return Response::error("log unavailable", 500);
                };
                for (index, record) in (start..).zip(records) {
                    out.push_str(&export::line(index, &record));
                    out.push('\n');
                }
                let headers = worker::Headers::new();
                headers.set("content-type", "application/x-ndjson")?;
                headers.set(
                    "content-disposition",
                    &format!("attachment; filename=\"decisions-{start}-{end}.ndjson\""),
                )?;
                Ok(Response::ok(out)?.with_headers(headers))
            }
            _ => not_found(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The Worker's side.

/// One call to the sequencer object: its status, content type and body. Any failure to reach
/// it, or an answer later than [`LOG_TIMEOUT`], is [`Error::AuditLogUnavailable`].
async fn call(
    env: &Env,
    url: &str,
    method: &str,
    body: Option<String>,
) -> std::result::Result<(u16, String, String), Error> {
    let call = super::store_call::Call {
        binding: BINDING,
        name: OBJECT,
        url,
        method,
        body: body.as_deref(),
        content_type: None,
        timeout: LOG_TIMEOUT,
        unavailable: Error::AuditLogUnavailable,
    };
    let reply = super::store_call::send(env, call).await?;
    Ok((reply.status, reply.content_type, reply.text))
}

/// Test builds only: make the sequencer fail every operation for `ms` milliseconds.
#[cfg(attestgate_selftest)]
pub async fn fault_down(env: &Env, ms: u64) -> bool {
    matches!(
        call(
            env,
            "https://audit-log/fault/down",
            "POST",
            Some(ms.to_string())
        )
        .await,
        Ok((200, _, _))
    )
}

/// Sequence `records`: the first one's index.
pub async fn append(
    env: &Env,
    origin: &str,
    records: &[String],
) -> std::result::Result<u64, Error> {
    let mut body = origin.to_owned();
    for record in records {
        body.push('\n');
        body.push_str(record);
    }
    let (status, _, text) = call(env, "https://audit-log/append", "POST", Some(body)).await?;
    if status != 200 {
        return Err(Error::AuditLogUnavailable);
    }
    text.split(' ')
        .next()
        .and_then(|first| first.parse().ok())
        .ok_or(Error::AuditLogUnavailable)
}

/// An operator's read of the log, as the gateway's answer (404 for what the log does not have).
pub async fn read(env: &Env, origin: &str, read: LogRead) -> std::result::Result<Answer, Error> {
    let (method, body) = match read {
        LogRead::Checkpoint { sign: true } => ("POST", Some(origin.to_owned())),
        _ => ("GET", None),
    };
    let (status, kind, text) = call(env, &read.object_url(), method, body).await?;
    match status {
        200 => {
            let mut answer = Answer::json(200, text);
            answer.headers.push(("content-type", kind));
            if let LogRead::Export { start, end } = read {
                answer.headers.push((
                    "content-disposition",
                    format!("attachment; filename=\"decisions-{start}-{end}.ndjson\""),
                ));
            }
            Ok(answer)
        }
        404 => Err(Error::Route(crate::policy::Miss::NoRoute)),
        _ => Err(Error::AuditLogUnavailable),
    }
}

// ---- async mode: the per-isolate queue ----------------------------------------------------------

/// Most records an isolate holds (queued, or taken and not yet acknowledged); beyond
/// it a record is dropped (and the drop logged): the memory of an isolate whose log is down
/// stays bounded.
pub const MAX_QUEUE: usize = 4096;

/// How long a send keeps trying what it took (each try bounded by [`LOG_TIMEOUT`]); what is
/// left then is dropped (logged).
const SEND_BUDGET_MS: f64 = 20_000.0;

thread_local! {
    static QUEUE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// A flush is waiting to take the queue.
    static WAITING: Cell<bool> = const { Cell::new(false) };
    /// Records taken from the queue and not yet acknowledged by the log or dropped.
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// Queue a record of an `audit = "async"` decision. The queue is sent (through this request's
/// `waitUntil`, which keeps the isolate alive until it is) right away once it holds
/// [`batch::TARGET`] records, and otherwise by the flush waiting for it, started by the first
/// record queued after the last take: [`batch::MAX_WAIT`] later. Either way one timer per
/// flush at most, and a record waits at most `MAX_WAIT` before it is sent.
pub fn enqueue(env: &Env, ctx: &wasm_bindgen::JsValue, origin: &str, record: String) {
    let held = IN_FLIGHT.with(Cell::get);
    let queued = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        if q.len() + held >= MAX_QUEUE {
            return None;
        }
        q.push(record);
        Some(q.len())
    });
    let Some(queued) = queued else {
        worker::console_error!(
            "{{\"attestgate\":\"audit_log\",\"error\":\"queue full: record dropped\"}}"
        );
        return;
    };
    // Most records join the flush already waiting: nothing is cloned for them.
    let task = if batch::send_now(queued) {
        let taken = take();
        let (env, origin) = (env.clone(), origin.to_owned());
        wasm_bindgen_futures::future_to_promise(async move {
            send(&env, &origin, taken).await;
            Ok(wasm_bindgen::JsValue::UNDEFINED)
        })
    } else if !WAITING.with(Cell::get) {
        WAITING.with(|w| w.set(true));
        let (env, origin) = (env.clone(), origin.to_owned());
        wasm_bindgen_futures::future_to_promise(async move {
            super::task::sleep(batch::MAX_WAIT).await;
            WAITING.with(|w| w.set(false));
            let taken = take();
            send(&env, &origin, taken).await;
            Ok(wasm_bindgen::JsValue::UNDEFINED)
        })
    } else {
        return; // the flush waiting takes this record too
    };
    wait_until(ctx, &task);
}

/// The whole queue, now counted as in flight.
fn take() -> Vec<String> {
    let taken = QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
    IN_FLIGHT.with(|n| n.set(n.get() + taken.len()));
    taken
}

/// Append what was taken in batches ([`batch::split`]). A batch the log did not take is tried
/// once more, then dropped (logged): async mode never holds a request.
async fn send(env: &Env, origin: &str, taken: Vec<String>) {
    // Within the runtime's `waitUntil` limit (30 s), so that what was taken is always
    // accounted for (acknowledged or dropped) before the isolate may stop running this.
    let started = js_sys::Date::now();
    for records in batch::split(taken, origin.len()) {
        let mut sent = false;
        for _ in 0..2 {
            if js_sys::Date::now() - started < SEND_BUDGET_MS
                && append(env, origin, &records).await.is_ok()
            {
                sent = true;
                break;
            }
        }
        if !sent {
            worker::console_error!(
                "{{\"attestgate\":\"audit_log\",\"error\":\"log unavailable: {} records dropped\"}}",
                records.len()
            );
        }
        IN_FLIGHT.with(|n| n.set(n.get().saturating_sub(records.len())));
    }
}

/// `ctx.waitUntil(promise)`.
fn wait_until(ctx: &wasm_bindgen::JsValue, promise: &js_sys::Promise) {
    use wasm_bindgen::JsCast;
    let f = js_sys::Reflect::get(ctx, &"waitUntil".into()).ok();
    if let Some(f) = f.and_then(|f| f.dyn_into::<js_sys::Function>().ok()) {
        let _ = f.call1(ctx, promise);
    }
}
