//! Session budgets (issue 15 item 5): what one session (agent, user, and the route group or the
//! session claim) may still do, and the divergence between what it declared and what it did.
//! Pure: the state and the one function that charges a call ([`charge`]); the Durable Object
//! (`src/edge/budget.rs`, one object per session, which serialises its calls) loads the state,
//! calls [`charge`] and stores the result with no `await` in between, so concurrent calls can
//! never overspend. Natively, [`crate::api::MemoryReplay`] does the same in memory.
//!
//! Per session:
//! - `calls` per `window_secs` (a fixed window from the first call of the window), and `writes`
//!   (calls with a method other than GET, HEAD, OPTIONS) per window: spent is 429 `rate_limited`
//!   with `Retry-After` (until the window ends);
//! - `identifiers`: the distinct values of the route's identifier part the session may touch;
//!   `spend`: the sum of the bound amounts may not exceed the limit the covering detail declared
//!   (exact decimals); `deadline_secs`: the session ends that long after its first call. Spent is
//!   403 (the declared intent's limit, not a rate).
//! - the divergence score: attempts outside the declared intent (intent refusals), new
//!   identifiers after the first, and calls refused by a rate budget. It is in every decision
//!   record of a route with a budget.

use serde_json::{Map, Value};

use crate::gate::log::{json_object, json_str, json_strs};

use crate::gate::intent::decimal::Decimal;

/// Most distinct identifiers a session remembers (a budget may allow at most this many).
pub const MAX_IDENTIFIERS: u32 = 1000;

/// The limits of one route's budget (from the policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub calls: Option<u32>,
    pub writes: Option<u32>,
    pub window_secs: i64,
    pub identifiers: Option<u32>,
    pub deadline_secs: Option<i64>,
}

/// One call to charge (the Worker sends it to the session's object as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ask {
    pub now: i64,
    pub limits: Limits,
    /// A method that writes.
    pub write: bool,
    /// The identifier the call touches.
    pub identifier: Option<String>,
    /// The amount it spends and the limit the covering detail declared (decimal text).
    pub amount: Option<String>,
    pub limit: Option<String>,
    /// Only record an attempt outside the declared intent (nothing is charged).
    pub refused: bool,
}

/// The session's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The session's first call (unix seconds); 0: none yet.
    pub first: i64,
    pub window_start: i64,
    pub calls: u32,
    pub writes: u32,
    /// The amount spent so far (decimal text).
    pub spent: String,
    pub identifiers: Vec<String>,
    pub divergence: u32,
}

/// Which budget refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Calls,
    Writes,
    Identifiers,
    Amount,
    Deadline,
}

impl Spent {
    /// The protocol's and the log line's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Spent::Calls => "calls",
            Spent::Writes => "writes",
            Spent::Identifiers => "identifiers",
            Spent::Amount => "amount",
            Spent::Deadline => "deadline",
        }
    }

    fn parse(s: &str) -> Option<Spent> {
        [
            Spent::Calls,
            Spent::Writes,
            Spent::Identifiers,
            Spent::Amount,
            Spent::Deadline,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Rate budgets are 429; the intent's limits 403.
    pub fn is_rate(self) -> bool {
        matches!(self, Spent::Calls | Spent::Writes)
    }
}

/// The object's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub spent: Option<Spent>,
    /// For a rate budget: seconds until the window ends.
    pub retry_after: Option<u32>,
    pub divergence: u32,
}

// ---- the wire form (JSON through serde_json::Value: no derive code in the Worker) -----------

fn object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Every member of `m` is one of `names`.
fn only(m: &Map<String, Value>, names: &[&str]) -> bool {
    m.keys().all(|k| names.contains(&k.as_str()))
}

fn int(m: &Map<String, Value>, k: &str) -> Option<i64> {
    m.get(k)?.as_i64()
}

fn opt_u32(m: &Map<String, Value>, k: &str) -> Result<Option<u32>, ()> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or(()),
    }
}

fn opt_str(m: &Map<String, Value>, k: &str) -> Result<Option<String>, ()> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

fn flag(m: &Map<String, Value>, k: &str) -> Result<bool, ()> {
    match m.get(k) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(()),
    }
}

/// JSON text of the wire values (built by hand: `json!` would link serde_json's value
/// serializer into the Worker).
fn num<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_owned(), |n| n.to_string())
}

fn text(v: &Option<String>) -> String {
    v.as_deref().map_or_else(|| "null".to_owned(), json_str)
}

impl Limits {
    fn to_json(&self) -> String {
        json_object(&[
            ("calls", &num(self.calls)),
            ("writes", &num(self.writes)),
            ("window_secs", &self.window_secs.to_string()),
            ("identifiers", &num(self.identifiers)),
            ("deadline_secs", &num(self.deadline_secs)),
        ])
    }

    fn from_value(v: &Value) -> Option<Limits> {
        let m = v.as_object()?;
        if !only(
            m,
            &[
                "calls",
                "writes",
                "window_secs",
                "identifiers",
                "deadline_secs",
            ],
        ) {
            return None;
        }
        let deadline_secs = match m.get("deadline_secs") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64()?),
        };
        Some(Limits {
            calls: opt_u32(m, "calls").ok()?,
            writes: opt_u32(m, "writes").ok()?,
            window_secs: int(m, "window_secs")?,
            identifiers: opt_u32(m, "identifiers").ok()?,
            deadline_secs,
        })
    }
}

impl Ask {
    pub fn to_json(&self) -> String {
        json_object(&[
            ("now", &self.now.to_string()),
            ("limits", &self.limits.to_json()),
            ("write", if self.write { "true" } else { "false" }),
            ("identifier", &text(&self.identifier)),
            ("amount", &text(&self.amount)),
            ("limit", &text(&self.limit)),
            ("refused", if self.refused { "true" } else { "false" }),
        ])
    }

    /// Exactly an `Ask` (unknown members, wrong types: `None`).
    pub fn from_json(text: &str) -> Option<Ask> {
        let m = object(text)?;
        if !only(
            &m,
            &[
                "now",
                "limits",
                "write",
                "identifier",
                "amount",
                "limit",
                "refused",
            ],
        ) {
            return None;
        }
        Some(Ask {
            now: int(&m, "now")?,
            limits: Limits::from_value(m.get("limits")?)?,
            write: flag(&m, "write").ok()?,
            identifier: opt_str(&m, "identifier").ok()?,
            amount: opt_str(&m, "amount").ok()?,
            limit: opt_str(&m, "limit").ok()?,
            refused: flag(&m, "refused").ok()?,
        })
    }
}

impl State {
    pub fn to_json(&self) -> String {
        json_object(&[
            ("first", &self.first.to_string()),
            ("window_start", &self.window_start.to_string()),
            ("calls", &self.calls.to_string()),
            ("writes", &self.writes.to_string()),
            ("spent", &json_str(&self.spent)),
            (
                "identifiers",
                &json_strs(self.identifiers.iter().map(String::as_str)),
            ),
            ("divergence", &self.divergence.to_string()),
        ])
    }

    pub fn from_json(text: &str) -> Option<State> {
        let m = object(text)?;
        let ids = m.get("identifiers")?.as_array()?;
        Some(State {
            first: int(&m, "first")?,
            window_start: int(&m, "window_start")?,
            calls: opt_u32(&m, "calls").ok()??,
            writes: opt_u32(&m, "writes").ok()??,
            spent: opt_str(&m, "spent").ok()??,
            identifiers: ids
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
            divergence: opt_u32(&m, "divergence").ok()??,
        })
    }
}

impl Answer {
    pub fn to_json(&self) -> String {
        json_object(&[
            ("ok", if self.ok { "true" } else { "false" }),
            (
                "spent",
                &self
                    .spent
                    .map_or_else(|| "null".to_owned(), |s| json_str(s.as_str())),
            ),
            ("retry_after", &num(self.retry_after)),
            ("divergence", &self.divergence.to_string()),
        ])
    }

    pub fn from_json(text: &str) -> Option<Answer> {
        let m = object(text)?;
        let spent = match opt_str(&m, "spent").ok()? {
            None => None,
            Some(s) => Some(Spent::parse(&s)?),
        };
        Some(Answer {
            ok: m.get("ok")?.as_bool()?,
            spent,
            retry_after: opt_u32(&m, "retry_after").ok()?,
            divergence: opt_u32(&m, "divergence").ok()??,
        })
    }
}

/// Charge one call: the new state (to store) and the answer. A refused call changes nothing but
/// the divergence score.
pub fn charge(state: &State, ask: &Ask) -> (State, Answer) {
    let mut s = state.clone();
    let l = &ask.limits;
    let refuse = |mut s: State, spent: Spent, retry_after: Option<u32>| {
        if spent.is_rate() {
            s.divergence = s.divergence.saturating_add(1);
        }
        let divergence = s.divergence;
        (
            s,
            Answer {
                ok: false,
                spent: Some(spent),
                retry_after,
                divergence,
            },
        )
    };
    if ask.refused {
        s.divergence = s.divergence.saturating_add(1);
        let divergence = s.divergence;
        return (
            s,
            Answer {
                ok: false,
                spent: None,
                retry_after: None,
                divergence,
            },
        );
    }
    if s.first == 0 {
        s.first = ask.now;
    }
    if let Some(d) = l.deadline_secs {
        if ask.now >= s.first.saturating_add(d) {
            return refuse(state.clone(), Spent::Deadline, None);
        }
    }
    let window = l.window_secs.max(1);
    if ask.now >= s.window_start.saturating_add(window) || ask.now < s.window_start {
        s.window_start = ask.now;
        s.calls = 0;
        s.writes = 0;
    }
    let retry = u32::try_from((s.window_start + window - ask.now).clamp(1, i64::from(u32::MAX)))
        .unwrap_or(1);
    if l.calls.is_some_and(|max| s.calls >= max) {
        return refuse(state.clone(), Spent::Calls, Some(retry));
    }
    if ask.write && l.writes.is_some_and(|max| s.writes >= max) {
        return refuse(state.clone(), Spent::Writes, Some(retry));
    }
    let mut new_identifier = false;
    if let Some(id) = &ask.identifier {
        if !s.identifiers.contains(id) {
            let max = l
                .identifiers
                .unwrap_or(MAX_IDENTIFIERS)
                .min(MAX_IDENTIFIERS);
            if s.identifiers.len() as u32 >= max {
                return refuse(state.clone(), Spent::Identifiers, None);
            }
            new_identifier = !s.identifiers.is_empty();
            s.identifiers.push(id.clone());
        }
    }
    if let (Some(amount), Some(limit)) = (&ask.amount, &ask.limit) {
        let (Some(a), Some(lim)) = (Decimal::parse(amount), Decimal::parse(limit)) else {
            return refuse(state.clone(), Spent::Amount, None);
        };
        let spent = Decimal::parse(&s.spent).unwrap_or_default();
        let Some(total) = spent.checked_add(&a) else {
            return refuse(state.clone(), Spent::Amount, None);
        };
        if total > lim {
            return refuse(state.clone(), Spent::Amount, None);
        }
        s.spent = total.to_string();
    }
    s.calls += 1;
    if ask.write {
        s.writes += 1;
    }
    if new_identifier {
        s.divergence = s.divergence.saturating_add(1);
    }
    let divergence = s.divergence;
    (
        s,
        Answer {
            ok: true,
            spent: None,
            retry_after: None,
            divergence,
        },
    )
}

/// What the decision records of the session (issue 15 item 5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The session's divergence score after this call.
    pub divergence: Option<u32>,
    /// Which budget refused the call.
    pub spent: Option<Spent>,
    /// For a rate budget: the exact `Retry-After`.
    pub retry_after: Option<u32>,
}

/// The session a request belongs to: the object name for (the token's issuer and `sub`, its
/// agents, and the route group or the session claim), hashed. A session claim the token lacks
/// (or that is not a string) fails closed: 401 `invalid_token`.
pub fn session_key(
    budget: &crate::policy::Budget,
    principal: &crate::gate::phase::Principal<'_>,
) -> Result<String, crate::Error> {
    let claims = principal
        .tokens
        .iter()
        .find(|(p, _)| p.name == budget.provider)
        .map(|(_, c)| c)
        .ok_or(crate::Error::MissingToken)?;
    let session = match &budget.session_claim {
        None => format!("group:{}", budget.group),
        Some(path) => {
            let mut v = claims
                .map()
                .get(path.segments().first().map_or("", String::as_str));
            for seg in path.segments().iter().skip(1) {
                v = v.and_then(|x| x.get(seg));
            }
            match v.and_then(serde_json::Value::as_str) {
                Some(s) => format!("session:{}:{s}", budget.group),
                None => {
                    return Err(crate::Error::Token(
                        crate::jose::Error::RequiredClaimMissing,
                    ))
                }
            }
        }
    };
    let agents = claims.act_chain().join(" ");
    let digest = crate::gate::digest::parts(&[
        "attestgate-budget",
        claims.iss().unwrap_or(""),
        claims.sub().unwrap_or(""),
        &agents,
        &session,
    ]);
    Ok(format!("budget-{}", crate::jose::b64::encode(&digest)))
}

/// The call to charge for a request on `route` with `budget`.
pub fn ask(
    budget: &crate::policy::Budget,
    method: &str,
    checked: &crate::gate::intent::Checked,
    now: i64,
) -> Ask {
    Ask {
        now,
        limits: limits(budget),
        write: !matches!(method, "GET" | "HEAD" | "OPTIONS"),
        identifier: checked.identifier.clone(),
        amount: checked.amount.clone(),
        limit: checked
            .amount
            .as_ref()
            .map(|_| checked.limit.clone().unwrap_or_default()),
        refused: false,
    }
}

/// The budget's limits, as the store takes them.
pub fn limits(budget: &crate::policy::Budget) -> Limits {
    Limits {
        calls: budget.calls,
        writes: budget.writes,
        window_secs: i64::try_from(budget.window_secs).unwrap_or(i64::MAX),
        identifiers: budget.identifiers,
        deadline_secs: budget.deadline_secs.and_then(|d| i64::try_from(d).ok()),
    }
}

/// When the object may forget the session (unix seconds): a minute after its window ends, and
/// with a deadline a day after the deadline (a session that ended stays ended that long; a
/// session claim, `session_claim`, names a new session for good).
pub fn forget_at(state: &State, limits: &Limits) -> i64 {
    let window_end = state
        .window_start
        .saturating_add(limits.window_secs.max(1))
        .saturating_add(60);
    let deadline = limits
        .deadline_secs
        .map_or(0, |d| state.first.saturating_add(d).saturating_add(86_400));
    window_end.max(deadline)
}

/// How much later than [`forget_at`] the object's alarm is set, so that the calls of the next
/// windows find it already far enough and need no alarm write of their own (one alarm write
/// every few windows instead of one per call). Forgetting later is always safe; forgetting
/// earlier than `forget_at` never happens.
pub const ALARM_SLACK_SECS: i64 = 300;

/// The alarm a call must set, given the time the object's current alarm covers (`covered`,
/// unix seconds on the Worker's clock; `None` when the object does not know of one, e.g. after
/// it was evicted or the alarm fired) and the session's [`forget_at`]: `None` when the current
/// alarm already fires no earlier than `forget_at`, else the time to cover (with the slack).
pub fn alarm_to_set(covered: Option<i64>, forget_at: i64) -> Option<i64> {
    match covered {
        Some(c) if c >= forget_at => None,
        _ => Some(forget_at.saturating_add(ALARM_SLACK_SECS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_is_set_only_when_it_would_fire_before_the_session_may_be_forgotten() {
        // Unknown alarm: always set, with the slack.
        assert_eq!(alarm_to_set(None, 1_000), Some(1_000 + ALARM_SLACK_SECS));
        // Covered: no write, however close.
        assert_eq!(alarm_to_set(Some(1_300), 1_000), None);
        assert_eq!(alarm_to_set(Some(1_000), 1_000), None);
        // One second short: set again, never left to fire early.
        assert_eq!(
            alarm_to_set(Some(999), 1_000),
            Some(1_000 + ALARM_SLACK_SECS)
        );
        // The calls of a 60 s window charged over ten minutes write the alarm about every five.
        let limits = Limits {
            calls: None,
            writes: None,
            window_secs: 60,
            identifiers: None,
            deadline_secs: None,
        };
        let (mut covered, mut writes) = (None, 0);
        for window in 0..10i64 {
            let state = State {
                window_start: 10_000 + window * 60,
                ..State::default()
            };
            let f = forget_at(&state, &limits);
            if let Some(c) = alarm_to_set(covered, f) {
                writes += 1;
                covered = Some(c);
            }
            assert!(
                covered.is_some_and(|c| c >= f),
                "the alarm would fire before {f}"
            );
        }
        assert_eq!(writes, 2);
    }

    fn limits() -> Limits {
        Limits {
            calls: Some(3),
            writes: Some(2),
            window_secs: 60,
            identifiers: Some(2),
            deadline_secs: Some(600),
        }
    }

    fn ask(now: i64) -> Ask {
        Ask {
            now,
            limits: limits(),
            ..Ask::default()
        }
    }

    fn run(state: &mut State, a: &Ask) -> Answer {
        let (s, answer) = charge(state, a);
        *state = s;
        answer
    }

    #[test]
    fn calls_per_window_then_429_until_the_window_ends() {
        let mut s = State::default();
        for _ in 0..3 {
            assert!(run(&mut s, &ask(1000)).ok);
        }
        let a = run(&mut s, &ask(1010));
        assert_eq!(
            (a.ok, a.spent, a.retry_after),
            (false, Some(Spent::Calls), Some(50))
        );
        assert_eq!(a.divergence, 1, "a rate spike diverges");
        assert!(run(&mut s, &ask(1060)).ok, "a new window");
    }

    #[test]
    fn writes_are_counted_apart() {
        let mut s = State::default();
        let w = Ask {
            write: true,
            ..ask(0)
        };
        assert!(
            run(
                &mut s,
                &Ask {
                    now: 1,
                    ..w.clone()
                }
            )
            .ok
        );
        assert!(
            run(
                &mut s,
                &Ask {
                    now: 1,
                    ..w.clone()
                }
            )
            .ok
        );
        assert_eq!(
            run(
                &mut s,
                &Ask {
                    now: 1,
                    ..w.clone()
                }
            )
            .spent,
            Some(Spent::Writes)
        );
        assert!(
            run(&mut s, &ask(1)).ok,
            "a read still fits the calls budget"
        );
    }

    #[test]
    fn distinct_identifiers_are_bounded_and_new_ones_diverge() {
        let mut s = State::default();
        let id = |i: &str, now| Ask {
            identifier: Some(i.into()),
            ..ask(now)
        };
        assert_eq!(run(&mut s, &id("a", 1)).divergence, 0);
        assert_eq!(run(&mut s, &id("a", 2)).divergence, 0);
        let a = run(&mut s, &id("b", 3));
        assert!(a.ok);
        assert_eq!(a.divergence, 1);
        let a = run(&mut s, &id("c", 100));
        assert_eq!(
            (a.ok, a.spent, a.retry_after),
            (false, Some(Spent::Identifiers), None)
        );
        assert!(run(&mut s, &id("b", 101)).ok);
    }

    #[test]
    fn the_cumulative_amount_stays_within_the_declared_limit_exactly() {
        let mut s = State::default();
        let pay = |amount: &str, now| Ask {
            amount: Some(amount.into()),
            limit: Some("100.00".into()),
            limits: Limits {
                calls: None,
                writes: None,
                identifiers: None,
                ..limits()
            },
            now,
            ..Ask::default()
        };
        assert!(run(&mut s, &pay("33.33", 1)).ok);
        assert!(run(&mut s, &pay("33.33", 2)).ok);
        assert!(run(&mut s, &pay("33.34", 3)).ok);
        assert_eq!(s.spent, "100");
        let a = run(&mut s, &pay("0.01", 4));
        assert_eq!((a.ok, a.spent), (false, Some(Spent::Amount)));
        assert_eq!(s.spent, "100", "a refused call spends nothing");
        assert_eq!(run(&mut s, &pay("1e2", 5)).spent, Some(Spent::Amount));
    }

    #[test]
    fn the_deadline_ends_the_session() {
        let mut s = State::default();
        assert!(run(&mut s, &ask(1000)).ok);
        assert!(run(&mut s, &ask(1599)).ok);
        assert_eq!(run(&mut s, &ask(1600)).spent, Some(Spent::Deadline));
        // Ended at 1600: remembered for a day after the deadline.
        assert_eq!(forget_at(&s, &limits()), 1600 + 86_400);
        let no_deadline = Limits {
            deadline_secs: None,
            ..limits()
        };
        assert_eq!(forget_at(&s, &no_deadline), 1599 + 60 + 60);
    }

    #[test]
    fn refused_attempts_count_as_divergence_only() {
        let mut s = State::default();
        let a = run(
            &mut s,
            &Ask {
                refused: true,
                ..ask(5)
            },
        );
        assert_eq!((a.ok, a.divergence), (false, 1));
        assert_eq!((s.calls, s.first), (0, 0));
    }

    #[test]
    fn the_protocol_round_trips_and_refuses_anything_else() {
        assert_eq!(
            Ask::from_json(r#"{"now":1,"limits":{"window_secs":1},"x":1}"#),
            None
        );
        assert_eq!(
            Ask::from_json(r#"{"now":"1","limits":{"window_secs":1}}"#),
            None
        );
        assert_eq!(
            Ask::from_json(r#"{"now":1,"limits":{"window_secs":1,"calls":-1}}"#),
            None
        );
        assert_eq!(Ask::from_json("[]"), None);
        let a = Ask {
            identifier: Some("acc".into()),
            amount: Some("1.5".into()),
            limit: Some("2".into()),
            write: true,
            ..ask(7)
        };
        assert_eq!(Ask::from_json(&a.to_json()), Some(a));
        assert_eq!(Ask::from_json(&ask(7).to_json()), Some(ask(7)));
        let mut s = State::default();
        run(
            &mut s,
            &Ask {
                identifier: Some("x".into()),
                ..ask(3)
            },
        );
        assert_eq!(State::from_json(&s.to_json()), Some(s));
        for answer in [
            charge(&State::default(), &ask(1)).1,
            Answer {
                ok: false,
                spent: Some(Spent::Calls),
                retry_after: Some(9),
                divergence: 2,
            },
        ] {
            assert_eq!(Answer::from_json(&answer.to_json()), Some(answer));
        }
        assert_eq!(
            Answer::from_json(r#"{"ok":true,"spent":"everything","divergence":0}"#),
            None
        );
    }
}

/// The budget phase end to end through the native API (the Worker's Durable Object is tested
/// in tests/e2e/test_intent.py).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod pipeline {
    use hmac::{KeyInit, Mac};
    use serde_json::json;

    use crate::api::{compile_toml, Gateway, MemoryReplay, Request, Seams, StaticKeys};
    use crate::gate::nonce::NonceRef;
    use crate::gate::seams::ReplayGuard;
    use crate::jose::{block_on_ready, NativeVerifier};
    use crate::Error;

    const SECRET: [u8; 32] = [7; 32];
    const NOW: i64 = 1_800_000_000;
    const POLICY: &str = r#"
[gateway]
origin = "https://bank.example"
[provider.a]
algorithms = ["HS256"]
secret = "S"
[[route]]
id = "pay"
methods = ["POST"]
path = "/pay/{account}"
require = { all = ["a"] }
[route.intent]
type = "payment_initiation"
actions = ["initiate"]
[route.intent.bind]
"identifier" = "path.account"
"instructedAmount.amount" = { max = "body.amount", currency = "body.currency" }
[route.budget]
calls = 2
window_secs = 30
spend = "instructedAmount.amount"
"#;

    /// An HS256 token, signed here with the `hmac` crate (not the gateway's signer).
    fn token(sub: &str) -> String {
        use base64ct::{Base64UrlUnpadded, Encoding};
        let header = Base64UrlUnpadded::encode_string(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({"sub": sub, "iat": NOW, "exp": NOW + 300, "authorization_details": [
            {"type": "payment_initiation", "actions": ["initiate"], "identifier": "acc",
             "instructedAmount": {"currency": "EUR", "amount": "10.00"}}]});
        let payload = Base64UrlUnpadded::encode_string(claims.to_string().as_bytes());
        let input = format!("{header}.{payload}");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&SECRET).unwrap();
        mac.update(input.as_bytes());
        let sig = Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes());
        format!("{input}.{sig}")
    }

    /// A replay store without a budget store (the trait's default: unreachable).
    struct NoBudgetStore;
    impl ReplayGuard for NoBudgetStore {
        async fn consume(&self, _: &NonceRef, _: i64) -> Result<bool, Error> {
            Ok(true)
        }
        async fn first_seen(&self, _: u8, _: &str, _: i64, _: i64) -> Result<bool, Error> {
            Ok(true)
        }
    }

    fn decide<R: ReplayGuard>(
        gw: &Gateway,
        replay: &R,
        sub: &str,
        amount: &str,
        now: i64,
    ) -> (Option<Error>, Vec<(&'static str, String)>, Option<u32>) {
        let policy = gw.policy();
        let provider = policy.provider("a").unwrap();
        let secret = crate::gate::compiled::hmac_keys(
            provider.secrets(),
            &[Some("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=")],
        )
        .unwrap();
        let mut keys = StaticKeys::new();
        keys.insert("a", secret);
        let headers = vec![
            ("authorization".to_owned(), format!("Bearer {}", token(sub))),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        let body = format!(r#"{{"amount":"{amount}","currency":"EUR"}}"#);
        let req = Request {
            method: "POST",
            url: "https://bank.example/pay/acc",
            headers: &headers,
        };
        let seams = Seams {
            keys: &keys,
            verifier: &NativeVerifier,
            replay,
            nonce_key: None,
            signing_keys: None,
            deny: None,
        };
        block_on_ready(async {
            let d = gw
                .decide_with_body(&req, body.as_bytes(), &seams, now, "id")
                .await;
            let headers = match &d.response {
                crate::gate::phase::ResponsePlan::Own(a) => a.headers.clone(),
                _ => Vec::new(),
            };
            Ok::<_, Error>((d.error(), headers, d.budget.divergence))
        })
        .unwrap()
    }

    #[test]
    fn calls_then_429_with_the_windows_retry_after_and_the_amount_limit() {
        let gw = Gateway::new(compile_toml("t.toml", POLICY).unwrap()).unwrap();
        let replay = MemoryReplay::new();
        assert_eq!(decide(&gw, &replay, "u1", "4.00", NOW).0, None);
        assert_eq!(decide(&gw, &replay, "u1", "4.00", NOW + 5).0, None);
        let (e, headers, divergence) = decide(&gw, &replay, "u1", "1.00", NOW + 10);
        assert_eq!(e, Some(Error::BudgetRate));
        assert!(
            headers.contains(&("retry-after", "20".to_owned())),
            "{headers:?}"
        );
        assert_eq!(divergence, Some(1));
        // A new window: the amount still adds up against the declared 10.00.
        assert_eq!(decide(&gw, &replay, "u1", "2.00", NOW + 31).0, None);
        assert_eq!(
            decide(&gw, &replay, "u1", "0.01", NOW + 32).0,
            Some(Error::BudgetSpent)
        );
        // Another user is another session.
        assert_eq!(decide(&gw, &replay, "u2", "10.00", NOW + 32).0, None);
    }

    #[test]
    fn no_budget_store_is_503() {
        let gw = Gateway::new(compile_toml("t.toml", POLICY).unwrap()).unwrap();
        let (e, headers, _) = decide(&gw, &NoBudgetStore, "u1", "1.00", NOW);
        assert_eq!(e, Some(Error::BudgetStoreUnavailable));
        assert!(headers.iter().any(|(n, _)| *n == "retry-after"));
    }
}
