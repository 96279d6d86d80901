//! The deny store (issue 16): sharded, SQLite-backed Durable Objects (binding `DENY_STORE`, shard
//! `n` is the object named `deny-shard-n`), the Worker's client of them (the
//! [`view::DenyStore`] seam under the isolate's view), and the operator API's executor.
//!
//! The objects are of the nonce store's class (`NonceStore`, `nonce_store.rs`, which hands every
//! `/deny/<op>` request to [`serve`]): a second Durable Object class would add its runtime glue
//! (about 13 KB of wasm) to every Worker, for no gain in isolation, since a deny shard and a
//! nonce shard are different objects (different names) with their own SQLite databases anyway.
//! All of this is compiled only with `--cfg attestgate_deny` (a policy with `[deny]` or
//! `[operator]`, `build.rs`).
//!
//! The protocol and every check of its bodies are in `src/gate/deny/wire.rs` (tested
//! natively). The object's version (`<epoch>.<n>`, `epoch` random when its tables are first
//! made, `n` counting changes) changes with every put and delete, in the same synchronous
//! section as the write (no `await` between), so a snapshot at a version holds exactly the
//! changes acknowledged before it. The runtime's output gate holds each answer until its write
//! is durable: an acknowledged change is a committed one.
//!
//! Any failure to reach the store, an answer later than [`STORE_TIMEOUT`], or an answer that is
//! not the expected JSON is [`Error::DenyStoreUnavailable`] (503), never an allow.

use std::time::Duration;

use serde::Deserialize;
use worker::{Env, Headers, Response, Result, SqlStorage, SqlStorageValue};

use crate::gate::deny::api::{self, BadBody, DenyCall};
use crate::gate::deny::view::{self, Refresh};
use crate::gate::deny::wire::{self, Entry, Op, StoreRequest, MAX_SNAPSHOT};
use crate::gate::deny::{Hit, Pending};
use crate::gate::phase::{Answer, Decision, ResponsePlan};
use crate::gate::Gate;
use crate::Error;

pub const BINDING: &str = "DENY_STORE";

/// Time allowed for one store call, answer included.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(4);

// ---- the Worker's side ----------------------------------------------------------------------

/// The deny store as the Worker reaches it.
pub struct DoDenyStore<'a> {
    pub env: &'a Env,
}

impl DoDenyStore<'_> {
    async fn call(
        &self,
        shard: u8,
        op: Op,
        body: &StoreRequest,
    ) -> std::result::Result<String, Error> {
        super::store_call::post_json(
            self.env,
            BINDING,
            &format!("deny-shard-{shard}"),
            &op.url(),
            &body.to_json(),
            STORE_TIMEOUT,
            Error::DenyStoreUnavailable,
        )
        .await
    }

    async fn entry(&self, op: Op, id: &str) -> std::result::Result<Option<Entry>, Error> {
        let shard = Entry::shard_of(id).ok_or(Error::DenyStoreUnavailable)?;
        let req = match op {
            Op::Delete => StoreRequest::Delete { id: id.to_owned() },
            _ => StoreRequest::Get { id: id.to_owned() },
        };
        let text = self.call(shard, op, &req).await?;
        wire::parse_entry_answer(&text).ok_or(Error::DenyStoreUnavailable)
    }
}

impl view::DenyStore for DoDenyStore<'_> {
    fn snapshot<'a>(
        &'a self,
        shard: u8,
        have: Option<&'a str>,
    ) -> Pending<'a, std::result::Result<Refresh, Error>> {
        Box::pin(async move {
            let req = StoreRequest::Snapshot {
                have: have.map(str::to_owned),
            };
            let text = self.call(shard, Op::Snapshot, &req).await?;
            wire::parse_snapshot(&text).ok_or(Error::DenyStoreUnavailable)
        })
    }

    fn lookup<'a>(
        &'a self,
        shard: u8,
        keys: &'a [String],
    ) -> Pending<'a, std::result::Result<Vec<Hit>, Error>> {
        Box::pin(async move {
            let req = StoreRequest::Lookup {
                keys: keys.to_vec(),
            };
            let text = self.call(shard, Op::Lookup, &req).await?;
            wire::parse_lookup(&text).ok_or(Error::DenyStoreUnavailable)
        })
    }

    fn list_token<'a>(&'a self, uri: &'a str) -> Pending<'a, std::result::Result<String, Error>> {
        Box::pin(super::status_list::list_token(uri))
    }
}

/// The Worker's clock for the view.
pub struct WorkerClock;

impl view::Clock for WorkerClock {
    fn now_ms(&self) -> i64 {
        js_sys::Date::now() as i64
    }
}

/// The request body of an operator call, at most [`api::MAX_BODY`] bytes: a declared length over
/// it is refused before anything is read.
async fn body(req: &worker::web_sys::Request) -> std::result::Result<Vec<u8>, BadBody> {
    body_capped(req, api::MAX_BODY).await
}

async fn body_capped(
    req: &worker::web_sys::Request,
    cap: usize,
) -> std::result::Result<Vec<u8>, BadBody> {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(BadBody::TooLarge);
    }
    let promise = req.text().map_err(|_| BadBody::NotJson)?;
    let text = super::task::Settled::new(promise)
        .await
        .map_err(|_| BadBody::NotJson)?;
    let text = text.as_string().ok_or(BadBody::NotJson)?;
    if text.len() > cap {
        return Err(BadBody::TooLarge);
    }
    Ok(text.into_bytes())
}

/// Run an operator's deny-list call and put its answer in the decision (keeping the headers the
/// core planned, such as the next `DPoP-Nonce`). Every change names its entry in the decision
/// (the log line is the change's record).
pub async fn run_call(
    req: &worker::web_sys::Request,
    env: &Env,
    gate: &Gate,
    d: &mut Decision<'_>,
    call: DenyCall,
    now: i64,
) {
    let store = DoDenyStore { env };
    let planned = match &d.response {
        ResponsePlan::Own(a) => a.headers.clone(),
        ResponsePlan::Origin { .. } => Vec::new(),
    };
    let answer = match answer(req, &store, gate, d, call, now).await {
        Ok(answer) => answer,
        Err(e) => {
            let answer = Answer::refusal(&e.wire(&gate.realm), d.request_id, None);
            d.refuse(e, Some(answer));
            return;
        }
    };
    let mut answer = answer;
    answer.headers.extend(planned);
    d.status = Some(answer.status);
    d.response = ResponsePlan::Own(answer);
}

async fn answer(
    req: &worker::web_sys::Request,
    store: &DoDenyStore<'_>,
    gate: &Gate,
    d: &mut Decision<'_>,
    call: DenyCall,
    now: i64,
) -> std::result::Result<Answer, Error> {
    let shards = gate.deny_shards;
    let Some(by) = d.operator.clone() else {
        return Err(Error::Internal);
    };
    let not_found = || Err(Error::Route(crate::policy::Miss::NoRoute));
    if gate.policy().deny().is_none() {
        return not_found();
    }
    if let DenyCall::Get { id } | DenyCall::Remove { id } = &call {
        if !in_range(id, shards) {
            return not_found();
        }
    }
    let body = if call.needs_body() {
        match body(req).await {
            Ok(b) => b,
            Err(bad) => return Ok(bad.answer(d.request_id)),
        }
    } else {
        Vec::new()
    };
    match call {
        DenyCall::Add => {
            let mut random = [0u8; 16];
            if getrandom::fill(&mut random).is_err() {
                return Err(Error::Internal);
            }
            let (key, entry) = match api::new_entry(&body, shards, &random, now, &by) {
                Ok(made) => made,
                Err(bad) => return Ok(bad.answer(d.request_id)),
            };
            let put = StoreRequest::Put {
                key: key.digest(),
                entry: entry.clone(),
            };
            store.call(key.shard, Op::Put, &put).await?;
            d.deny_entry = Some(entry.id.clone());
            Ok(api::entry_answer(201, &entry))
        }
        DenyCall::Lookup => {
            let key = match api::lookup_key(&body, shards) {
                Ok(key) => key,
                Err(bad) => return Ok(bad.answer(d.request_id)),
            };
            let digest = [key.digest()];
            let hits = view::DenyStore::lookup(store, key.shard, &digest).await?;
            let mut entries = Vec::new();
            for hit in hits {
                if let Some(e) = store.entry(Op::Get, &hit.id).await? {
                    entries.push(e);
                }
            }
            Ok(api::entries_answer(&entries))
        }
        DenyCall::Get { id } => match store.entry(Op::Get, &id).await? {
            Some(e) => Ok(api::entry_answer(200, &e)),
            None => not_found(),
        },
        DenyCall::Remove { id } => match store.entry(Op::Delete, &id).await? {
            Some(e) => {
                d.deny_entry = Some(e.id.clone());
                Ok(api::entry_answer(200, &e))
            }
            None => not_found(),
        },
        DenyCall::List { after, limit } => {
            let first = after.as_deref().and_then(Entry::shard_of).unwrap_or(0);
            let mut entries: Vec<Entry> = Vec::new();
            let mut full = false;
            for shard in first..shards {
                let want = limit.saturating_sub(u32::try_from(entries.len()).unwrap_or(u32::MAX));
                if want == 0 {
                    full = true;
                    break;
                }
                let req = StoreRequest::List {
                    after: if shard == first { after.clone() } else { None },
                    limit: want,
                };
                let text = store.call(shard, Op::List, &req).await?;
                let page = wire::parse_list(&text).ok_or(Error::DenyStoreUnavailable)?;
                entries.extend(page);
            }
            let full = full || entries.len() >= limit as usize;
            let next = full.then(|| entries.last().map(|e| e.id.clone())).flatten();
            Ok(api::list_answer(&entries, next.as_deref()))
        }
    }
}

/// The Shared Signals receiver's `POST`: read the SET (at most [`ssf::MAX_SET`] bytes), let the
/// core receive it, store the entries it makes; 202, or 400 `{"err", "description"}`, or 503
/// (the replay store, the transmitter's keys or the deny store cannot be reached).
pub async fn run_signals<K, V, R>(
    req: &worker::web_sys::Request,
    env: &Env,
    gate: &Gate,
    d: &mut Decision<'_>,
    (keys, verifier, replay): (&K, &V, &R),
    now: i64,
) where
    K: crate::gate::seams::KeySource,
    V: crate::gate::seams::SignatureVerifier,
    R: crate::gate::seams::ReplayGuard,
{
    use crate::gate::ssf::{self, Refused, SetError};
    let set_error = |e: SetError| Answer {
        status: 400,
        body: e.body(),
        headers: Vec::new(),
    };
    let content_type = req.headers().get("content-type").ok().flatten();
    let answer = match body_capped(req, ssf::MAX_SET).await {
        Err(_) => Ok(set_error(SetError::InvalidRequest("The SET is too large."))),
        Ok(body) => {
            let mut random = || {
                let mut r = [0u8; 16];
                let _ = getrandom::fill(&mut r);
                r
            };
            match ssf::receive(
                gate,
                content_type.as_deref(),
                &body,
                keys,
                verifier,
                replay,
                now,
                &mut random,
            )
            .await
            {
                Err(Refused::Set(e)) => Ok(set_error(e)),
                Err(Refused::Gateway(e)) => Err(e),
                Ok(entries) => {
                    let store = DoDenyStore { env };
                    let mut stored = Ok(());
                    for (key, entry) in entries {
                        let id = entry.id.clone();
                        let put = StoreRequest::Put {
                            key: key.digest(),
                            entry,
                        };
                        if let Err(e) = store.call(key.shard, Op::Put, &put).await {
                            stored = Err(e);
                            break;
                        }
                        d.deny_entry = Some(id);
                    }
                    stored.map(|()| Answer::json(202, String::new()))
                }
            }
        }
    };
    match answer {
        Ok(a) => {
            d.status = Some(a.status);
            d.response = ResponsePlan::Own(a);
        }
        Err(e) => {
            let a = Answer::refusal(&e.wire(&gate.realm), d.request_id, None);
            d.refuse(e, Some(a));
        }
    }
}

fn in_range(id: &str, shards: u8) -> bool {
    Entry::shard_of(id).is_some_and(|s| s < shards)
}

// ---- the Durable Object's side ----------------------------------------------------------------

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS deny_entries (id TEXT PRIMARY KEY, key TEXT NOT NULL, fence INTEGER, body TEXT NOT NULL) WITHOUT ROWID;",
    "CREATE INDEX IF NOT EXISTS deny_entries_key ON deny_entries (key);",
    "CREATE TABLE IF NOT EXISTS deny_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
];

#[derive(Deserialize)]
struct HitRow {
    key: String,
    id: String,
    fence: Option<i64>,
}

#[derive(Deserialize)]
struct TextRow {
    v: String,
}

#[cfg(attestgate_selftest)]
thread_local! {
    /// Test builds only: answer every deny operation with 500, as an unreachable store.
    static DOWN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Test builds only (`--cfg attestgate_selftest`): `POST /__attestgate/selftest/deny-store/{down,up}`
/// makes every shard of the deny store fail (or work again), to check end to end that the gateway
/// answers 503 (`tests/e2e/test_deny.py`).
#[cfg(attestgate_selftest)]
pub async fn fault(
    method: &str,
    path: &str,
    env: &Env,
    shards: u8,
) -> Option<std::result::Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue>> {
    let op = path.strip_prefix("/__attestgate/selftest/deny-store/")?;
    if method != "POST" || !matches!(op, "down" | "up") {
        return None;
    }
    let text = |t: &str| {
        worker::web_sys::Response::new_with_opt_str(Some(t)).map(wasm_bindgen::JsValue::from)
    };
    for shard in 0..shards {
        let call = async {
            let stub = env
                .durable_object(BINDING)?
                .id_from_name(&format!("deny-shard-{shard}"))?
                .get_stub()?;
            let req = super::new_request(
                &format!("https://deny-store/deny/fault-{op}"),
                "POST",
                &Headers::new(),
                None,
                false,
            )?;
            stub.fetch_with_request(req.into()).await
        };
        if call.await.is_err() {
            return Some(text("failed"));
        }
    }
    Some(text(op))
}

/// One deny-store request on an object's SQLite database: `op` is the path after `/deny`
/// (`/snapshot`, ...). Anything malformed is 400, which the Worker treats as unavailable. No
/// `await`: each operation is one synchronous section.
pub fn serve(sql: &SqlStorage, op: &str, body: &str) -> Result<Response> {
    #[cfg(attestgate_selftest)]
    {
        match op {
            "/fault-down" => DOWN.with(|d| d.set(true)),
            "/fault-up" => DOWN.with(|d| d.set(false)),
            _ if DOWN.with(std::cell::Cell::get) => return Response::error("down", 500),
            _ => {}
        }
        if op.starts_with("/fault-") {
            return Response::ok("ok");
        }
    }
    let Some(op) = Op::from_path(op) else {
        return Response::error("unknown operation", 404);
    };
    let Some(request) = StoreRequest::parse(op, body) else {
        return Response::error("bad request", 400);
    };
    for statement in SCHEMA {
        sql.exec(statement, None)?;
    }
    let text = Shard { sql }.run(request)?;
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(text)?.with_headers(headers))
}

struct Shard<'a> {
    sql: &'a SqlStorage,
}

impl Shard<'_> {
    fn text(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<String>> {
        let rows: Vec<TextRow> = self.sql.exec(query, bindings)?.to_array()?;
        Ok(rows.into_iter().map(|r| r.v).collect())
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .text(
                "SELECT value AS v FROM deny_meta WHERE name = ?;",
                vec![name.into()],
            )?
            .into_iter()
            .next())
    }

    fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.sql.exec(
            "INSERT INTO deny_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value;",
            vec![name.into(), value.into()],
        )?;
        Ok(())
    }

    /// The version: `<epoch>.<changes>`; the epoch is random, made with the tables.
    fn version(&self) -> Result<String> {
        let epoch = match self.meta("epoch")? {
            Some(e) => e,
            None => {
                let mut random = [0u8; 9];
                getrandom::fill(&mut random)
                    .map_err(|_| worker::Error::RustError("no randomness".into()))?;
                let e = crate::jose::b64::encode(&random);
                self.set_meta("epoch", &e)?;
                e
            }
        };
        let n = self.meta("n")?.unwrap_or_else(|| "0".to_owned());
        Ok(format!("{epoch}.{n}"))
    }

    fn changed(&self) -> Result<()> {
        self.version()?;
        let n: u64 = self.meta("n")?.and_then(|n| n.parse().ok()).unwrap_or(0);
        self.set_meta("n", &n.saturating_add(1).to_string())
    }

    fn hits(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<(String, Hit)>> {
        let rows: Vec<HitRow> = self.sql.exec(query, bindings)?.to_array()?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.key,
                    Hit {
                        id: r.id,
                        fence: r.fence,
                    },
                )
            })
            .collect())
    }

    fn body_of(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .text(
                "SELECT body AS v FROM deny_entries WHERE id = ?;",
                vec![id.into()],
            )?
            .into_iter()
            .next())
    }

    fn run(&self, request: StoreRequest) -> Result<String> {
        Ok(match request {
            StoreRequest::Snapshot { have } => {
                let version = self.version()?;
                if have.as_deref() == Some(version.as_str()) {
                    wire::snapshot_json(&version, None)
                } else {
                    let limit = i64::try_from(MAX_SNAPSHOT).unwrap_or(i64::MAX) + 1;
                    let mut hits = self.hits(
                        "SELECT key, id, fence FROM deny_entries ORDER BY id LIMIT ?;",
                        vec![limit.into()],
                    )?;
                    let complete = hits.len() <= MAX_SNAPSHOT;
                    hits.truncate(MAX_SNAPSHOT);
                    wire::snapshot_json(&version, Some((complete, &hits)))
                }
            }
            StoreRequest::Lookup { keys } => {
                let marks = vec!["?"; keys.len()].join(",");
                let hits = self.hits(
                    &format!("SELECT key, id, fence FROM deny_entries WHERE key IN ({marks});"),
                    keys.into_iter().map(SqlStorageValue::from).collect(),
                )?;
                wire::lookup_json(&hits)
            }
            StoreRequest::Put { key, entry } => {
                let fence = entry
                    .fence
                    .map_or(SqlStorageValue::Null, SqlStorageValue::from);
                self.sql.exec(
                    "INSERT INTO deny_entries (id, key, fence, body) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET key = excluded.key, fence = excluded.fence, body = excluded.body;",
                    vec![entry.id.clone().into(), key.into(), fence, entry.to_json().into()],
                )?;
                self.changed()?;
                r#"{"ok":true}"#.to_owned()
            }
            StoreRequest::Get { id } => wire::entry_answer_json(self.body_of(&id)?.as_deref()),
            StoreRequest::Delete { id } => {
                let body = self.body_of(&id)?;
                if body.is_some() {
                    self.sql
                        .exec("DELETE FROM deny_entries WHERE id = ?;", vec![id.into()])?;
                    self.changed()?;
                }
                wire::entry_answer_json(body.as_deref())
            }
            StoreRequest::List { after, limit } => {
                let bodies = self.text(
                    "SELECT body AS v FROM deny_entries WHERE id > ? ORDER BY id LIMIT ?;",
                    vec![after.unwrap_or_default().into(), i64::from(limit).into()],
                )?;
                wire::list_json(&bodies)
            }
        })
    }
}
