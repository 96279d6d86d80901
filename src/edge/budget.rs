//! Session budgets (issue 15 item 5): the `SessionBudget` Durable Object (binding
//! `SESSION_BUDGET`, its own SQLite migration `h-intent-v1`), one object per session (the name
//! is `gate::budget::session_key`), and the Worker's side of the call.
//!
//! Strongly consistent: a Durable Object delivers one event at a time and interleaves them only
//! at an `await`. The state is read, charged ([`crate::gate::budget::charge`], pure) and
//! written back by synchronous SQLite calls with no `await` in between, so concurrent calls of
//! one session are charged one after the other: 200 concurrent payments against a budget of 10
//! give exactly 10 successes. The runtime's output gate holds each answer until its write is
//! durable.
//!
//! Bounded storage: one row per session, forgotten by an alarm a minute after its window and
//! its deadline have passed (set with a few minutes' slack, so most calls write no alarm:
//! `gate::budget::alarm_to_set`). Anything malformed (a body that is not exactly an `Ask`, an
//! implausible `now`, a stored state that does not parse) is an error answer, which the Worker
//! turns into 503 (fail closed), never a default.

use std::time::Duration;

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::gate::budget::{self, Answer, Ask};
use crate::Error;

pub const BINDING: &str = "SESSION_BUDGET";

/// Time allowed for one budget call, answer included; past it the request is 503.
const BUDGET_TIMEOUT: Duration = Duration::from_secs(5);

/// How far the Worker's clock may be from the object's.
const CLOCK_MARGIN_SECS: i64 = 300;

/// Charge one call to the session `key` (the Worker's side).
pub async fn charge(env: &Env, key: &str, ask: &Ask) -> std::result::Result<Answer, Error> {
    let text = super::store_call::post_json(
        env,
        BINDING,
        key,
        "https://budget/charge",
        &ask.to_json(),
        BUDGET_TIMEOUT,
        Error::BudgetStoreUnavailable,
    )
    .await?;
    Answer::from_json(&text).ok_or(Error::BudgetStoreUnavailable)
}

#[durable_object]
pub struct SessionBudget {
    state: State,
    sql: SqlStorage,
    /// What the alarm this instance set covers (`budget::alarm_to_set`); `None` until it sets
    /// one and again once it fired. Memory only: a new instance sets the alarm on its first call.
    alarm_covers: std::cell::Cell<Option<i64>>,
}

#[derive(Deserialize)]
struct Stored {
    state: String,
}

fn now_secs() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

impl DurableObject for SessionBudget {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // An error here surfaces on the first call (which then fails closed with 503).
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS budget (k INTEGER PRIMARY KEY, state TEXT NOT NULL);",
            None,
        );
        Self {
            state,
            sql,
            alarm_covers: std::cell::Cell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let body = req.text().await?;
        let Some(ask) = Ask::from_json(&body) else {
            return Response::error("bad request", 400);
        };
        if (ask.now - now_secs()).abs() > CLOCK_MARGIN_SECS {
            return Response::error("bad request", 400);
        }
        // From here to the write: no await (the object's calls cannot interleave).
        let rows: Vec<Stored> = self
            .sql
            .exec("SELECT state FROM budget WHERE k = 1;", None)?
            .to_array()?;
        let state = match rows.first() {
            None => budget::State::default(),
            Some(row) => match budget::State::from_json(&row.state) {
                Some(s) => s,
                None => return Response::error("corrupt state", 500),
            },
        };
        let (next, answer) = budget::charge(&state, &ask);
        if next != state {
            let text = next.to_json();
            self.sql.exec(
                "INSERT INTO budget (k, state) VALUES (1, ?) ON CONFLICT (k) DO UPDATE SET state = excluded.state;",
                vec![text.into()],
            )?;
        }
        // The alarm is written only when the one set before would fire too early: most calls
        // answer without a second storage write (an alarm set later than needed only keeps the
        // row longer; one set earlier would forget a live session, so that never happens).
        if let Some(covers) = budget::alarm_to_set(
            self.alarm_covers.get(),
            budget::forget_at(&next, &ask.limits),
        ) {
            let in_ms = covers.saturating_sub(ask.now).saturating_mul(1000);
            self.state.storage().set_alarm(in_ms.max(0)).await?;
            self.alarm_covers.set(Some(covers));
        }
        let headers = worker::Headers::new();
        headers.set("content-type", "application/json")?;
        Ok(Response::ok(answer.to_json())?.with_headers(headers))
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm_covers.set(None);
        self.sql.exec("DELETE FROM budget;", None)?;
        Response::ok("forgotten")
    }
}
