//! `intent = { ... }` of a route (issue 15 item 1): what the token's declared intent (RFC 9396
//! `authorization_details`) must say for the request to go through, compiled and checked at
//! build time. The evaluation is in the gateway core (`src/gate/intent/`).
//!
//! ```toml
//! [route.intent]
//! type = "payment_initiation"                 # the detail's `type`, exactly
//! actions = ["initiate"]                      # default: from the method (GET read, POST create, ...)
//! locations = true                            # the detail's `locations` contain the route's origin
//! [route.intent.bind]
//! "creditorAccount.iban" = "body.creditor.iban"                          # equality
//! "instructedAmount.amount" = { max = "body.amount", currency = "body.currency" }
//! "identifier" = "path.account"
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::{unknown_provider, Cx};
use crate::diag::Location;
use serde_json::Value;

use crate::model::{BindConfig, BudgetConfig, IntentConfig};
use crate::policy::{BodyRule, MemberPath};

/// The compiled intent rules of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The provider whose verified token declares the intent.
    pub provider: String,
    /// The detail `type` required (exact). A detail of any other type never covers.
    pub detail_type: String,
    /// Actions the detail's `actions` must include; `None`: the method's ([`method_action`]).
    pub actions: Option<Vec<String>>,
    /// URLs the detail's `locations` must each contain (empty: not checked).
    pub locations: Vec<String>,
    pub bindings: Vec<Bind>,
}

impl Intent {
    /// Whether some binding reads the body.
    pub fn reads_body(&self) -> bool {
        self.bindings.iter().any(|b| {
            matches!(b.source, Source::Body(_)) || matches!(b.currency, Some(Source::Body(_)))
        })
    }
}

/// One binding: the detail field at `field`, compared by `op` with the request part `source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// The detail member path (`instructedAmount.amount`).
    pub field: MemberPath,
    pub op: Op,
    pub source: Source,
    /// With `max`/`min`: the detail's `currency` next to `field` must equal this request part.
    pub currency: Option<Source>,
}

impl Bind {
    /// How logs and `explain` name it: `instructedAmount.amount max body.amount`.
    pub fn label(&self) -> String {
        let mut s = format!("{} {} {}", self.field, self.op.as_str(), self.source);
        if let Some(c) = &self.currency {
            s.push_str(&format!(" currency {c}"));
        }
        s
    }
}

/// How a detail field is compared with the request part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The same string (or the same decimal, or boolean).
    Equals,
    /// The detail field is an array with a member equal to the request part.
    Contains,
    /// The detail field is a glob (`*`: any run of characters) the request part matches.
    Glob,
    /// The detail field is a decimal the request part does not exceed.
    Max,
    /// The detail field is a decimal the request part is not below.
    Min,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equals => "equals",
            Op::Contains => "contains",
            Op::Glob => "glob",
            Op::Max => "max",
            Op::Min => "min",
        }
    }
}

/// A request part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// `path.NAME`: the route's `{NAME}` path parameter, percent-decoded.
    Path(String),
    /// `query.NAME`: the one query parameter `NAME`, decoded as a form value.
    Query(String),
    /// `body.a.b`: a member of the JSON body object.
    Body(MemberPath),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path(n) => write!(f, "path.{n}"),
            Source::Query(n) => write!(f, "query.{n}"),
            Source::Body(p) => write!(f, "body.{p}"),
        }
    }
}

/// The action a method implies when the rules name none (RFC 9396 leaves action names to the
/// type; these are the CRUD names most types use).
pub fn method_action(method: &str) -> Option<&'static str> {
    match method {
        "GET" | "HEAD" => Some("read"),
        "POST" => Some("create"),
        "PUT" | "PATCH" => Some("update"),
        "DELETE" => Some("delete"),
        _ => None,
    }
}

/// Most bindings a route may have (each is checked against every detail of every request).
pub const MAX_BINDINGS: usize = 32;

/// A printable-ASCII or Unicode name with no control characters, 1..=256 bytes.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

/// A route's compiled session budget (issue 15 item 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Routes of one group share a budget per session.
    pub group: String,
    /// The claim that names the session (else the group does).
    pub session_claim: Option<MemberPath>,
    /// The provider whose token names the agent, the user and the session.
    pub provider: String,
    pub calls: Option<u32>,
    pub writes: Option<u32>,
    pub window_secs: u64,
    pub identifiers: Option<u32>,
    pub identifier: Option<Source>,
    /// The index of the intent's `max` binding whose amounts add up.
    pub spend: Option<usize>,
    pub deadline_secs: Option<u64>,
}

/// The longest budget window and deadline (a day, a year).
pub const MAX_WINDOW_SECS: u64 = 86_400;
pub const MAX_DEADLINE_SECS: u64 = 366 * 86_400;
/// Most distinct identifiers a budget may allow.
pub const MAX_IDENTIFIERS: u32 = 1000;

impl Cx {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn budget(
        &mut self,
        file: &str,
        id: &str,
        c: &BudgetConfig,
        required: &[&str],
        intent: Option<&Intent>,
        captures: &[String],
        body: &mut BodyRule,
    ) -> Option<Budget> {
        let before = self.errors.len();
        let at = |field: &str| Location::route(file, id, &format!("budget.{field}"));
        let provider = match (intent, required) {
            (Some(i), _) => Some(i.provider.clone()),
            (None, [one]) => Some((*one).to_owned()),
            (None, []) => {
                self.error(
                    at("calls"),
                    "a public route has no session: a budget needs a verified token",
                );
                None
            }
            (None, _) => {
                self.error(at("calls"), "the route requires several providers: give it intent rules naming the provider");
                None
            }
        };
        if c.calls.is_none()
            && c.writes.is_none()
            && c.identifiers.is_none()
            && c.spend.is_none()
            && c.deadline_secs.is_none()
        {
            self.error(
                at("calls"),
                "a budget needs at least one of calls, writes, identifiers, spend or deadline_secs",
            );
        }
        for (field, v) in [("calls", c.calls), ("writes", c.writes)] {
            if v == Some(0) {
                self.error(at(field), "is 0 and would refuse every call");
            }
        }
        let window_secs = c.window_secs.unwrap_or(60);
        if window_secs == 0 || window_secs > MAX_WINDOW_SECS {
            self.error(
                at("window_secs"),
                format!("{window_secs} is not between 1 and {MAX_WINDOW_SECS}"),
            );
        }
        if let Some(d) = c.deadline_secs {
            if d == 0 || d > MAX_DEADLINE_SECS {
                self.error(
                    at("deadline_secs"),
                    format!("{d} is not between 1 and {MAX_DEADLINE_SECS}"),
                );
            }
        }
        match (c.identifiers, &c.identifier) {
            (Some(n), Some(_)) if n == 0 || n > MAX_IDENTIFIERS => {
                self.error(
                    at("identifiers"),
                    format!("{n} is not between 1 and {MAX_IDENTIFIERS}"),
                );
            }
            (Some(_), None) => self.error(
                at("identifier"),
                "identifiers needs the request part it counts: identifier = \"path.NAME\"",
            ),
            (None, Some(_)) => self.error(at("identifiers"), "identifier needs identifiers = N"),
            _ => {}
        }
        let identifier = c
            .identifier
            .as_ref()
            .and_then(|s| self.source(&at("identifier"), s, captures));
        if matches!(identifier, Some(Source::Body(_))) {
            body.read = true;
            body.json = true;
        }
        let spend = match &c.spend {
            None => None,
            Some(field) => {
                let found = intent.and_then(|i| {
                    i.bindings
                        .iter()
                        .position(|b| b.field.as_str() == field.as_str() && b.op == Op::Max)
                });
                if found.is_none() {
                    self.error(
                        at("spend"),
                        format!("{field:?} is not a max binding of this route's intent rules"),
                    );
                }
                found
            }
        };
        let session_claim = match &c.session_claim {
            None => None,
            Some(s) => match MemberPath::parse(s) {
                Ok(p) => Some(p),
                Err(m) => {
                    self.error(at("session_claim"), m);
                    None
                }
            },
        };
        let group = c.group.clone().unwrap_or_else(|| id.to_owned());
        if !is_name(&group) {
            self.error(at("group"), "must be a non-empty name");
        }
        if self.errors.len() != before {
            return None;
        }
        Some(Budget {
            group,
            session_claim,
            provider: provider?,
            calls: c.calls,
            writes: c.writes,
            window_secs,
            identifiers: c.identifiers,
            identifier,
            spend,
            deadline_secs: c.deadline_secs,
        })
    }

    /// Compile `intent`. `required`: the route's providers; `captures`: its path parameter names;
    /// `methods`: its methods (None: every one); `origin`: its resolved origin.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn intent(
        &mut self,
        file: &str,
        id: &str,
        c: &IntentConfig,
        known: &BTreeSet<&str>,
        required: &[&str],
        captures: &[String],
        methods: Option<&[String]>,
        origin: &str,
        body: &mut BodyRule,
    ) -> Option<Intent> {
        let before = self.errors.len();
        let at = |field: &str| Location::route(file, id, &format!("intent.{field}"));

        let provider = match (&c.provider, required) {
            (Some(p), _) if !known.contains(p.as_str()) => {
                self.error(at("provider"), unknown_provider(p, known));
                None
            }
            (Some(p), _) if !required.contains(&p.as_str()) => {
                self.error(
                    at("provider"),
                    format!("provider {p:?} is not in this route's require list"),
                );
                None
            }
            (Some(p), _) => Some(p.clone()),
            (None, [one]) => Some((*one).to_owned()),
            (None, []) => {
                self.error(
                    at("provider"),
                    "a public route verifies no token, so it cannot have intent rules",
                );
                None
            }
            (None, _) => {
                self.error(
                    at("provider"),
                    "the route requires several providers: name the one whose token declares the intent",
                );
                None
            }
        };

        if !is_name(&c.detail_type) {
            self.error(
                at("type"),
                "must be a non-empty detail type (at most 256 bytes, no control characters)",
            );
        }

        let actions = match &c.actions {
            Some(list) if list.is_empty() => {
                self.error(
                    at("actions"),
                    "is empty; omit it to derive the action from the method",
                );
                None
            }
            Some(list) => {
                for a in list {
                    if !is_name(a) {
                        self.error(at("actions"), format!("{a:?} is not an action name"));
                    }
                }
                Some(list.clone())
            }
            None => {
                match methods {
                    None => self.error(
                        at("actions"),
                        "the route takes every method: list the actions (or the route's methods), so no method goes unchecked",
                    ),
                    Some(ms) => {
                        for m in ms {
                            if method_action(m).is_none() {
                                self.error(
                                    at("actions"),
                                    format!("method {m:?} implies no action (only GET, HEAD, POST, PUT, PATCH, DELETE do): list the actions"),
                                );
                            }
                        }
                    }
                }
                None
            }
        };

        let locations = match &c.locations {
            None | Some(Value::Bool(false)) => Vec::new(),
            Some(Value::Bool(true)) => vec![origin.trim_end_matches('/').to_owned()],
            Some(Value::Array(list)) => {
                if list.is_empty() {
                    self.error(at("locations"), "is empty; omit it or set it to true");
                }
                let mut out = Vec::new();
                for l in list {
                    match l.as_str() {
                        Some(l) => {
                            if let Err(m) = super::syntax::check_url(l, true) {
                                self.error(at("locations"), format!("{l:?}: {m}"));
                            }
                            out.push(l.to_owned());
                        }
                        None => self.error(at("locations"), "must list URLs (strings)"),
                    }
                }
                out
            }
            Some(_) => {
                self.error(at("locations"), "must be true or a list of URLs");
                Vec::new()
            }
        };

        if c.bind.len() > MAX_BINDINGS {
            self.error(
                at("bind"),
                format!("has {} bindings; at most {MAX_BINDINGS}", c.bind.len()),
            );
        }
        let mut bindings = Vec::new();
        for (field, rule) in &c.bind {
            let at_field = at(&format!("bind.{field}"));
            let path = match MemberPath::parse(field) {
                Ok(p) => p,
                Err(m) => {
                    self.error(at_field, m);
                    continue;
                }
            };
            let rule = match BindConfig::from_value(rule) {
                Ok(r) => r,
                Err(m) => {
                    self.error(at_field, m);
                    continue;
                }
            };
            let (op, source, currency) = match &rule {
                BindConfig::Equals(s) => (Op::Equals, s.as_str(), None),
                BindConfig::Rule(r) => {
                    let ops: Vec<(Op, &String)> = [
                        (Op::Equals, &r.equals),
                        (Op::Contains, &r.contains),
                        (Op::Glob, &r.glob),
                        (Op::Max, &r.max),
                        (Op::Min, &r.min),
                    ]
                    .into_iter()
                    .filter_map(|(op, v)| v.as_ref().map(|v| (op, v)))
                    .collect();
                    let [(op, source)] = ops.as_slice() else {
                        self.error(
                            at_field,
                            "needs exactly one of equals, contains, glob, max or min",
                        );
                        continue;
                    };
                    if r.currency.is_some() && !matches!(op, Op::Max | Op::Min) {
                        self.error(at_field.clone(), "currency goes with max or min only");
                    }
                    (*op, source.as_str(), r.currency.as_deref())
                }
            };
            let source = self.source(&at_field, source, captures);
            let currency = currency.and_then(|c| self.source(&at_field, c, captures));
            if let Some(source) = source {
                bindings.push(Bind {
                    field: path,
                    op,
                    source,
                    currency,
                });
            }
        }

        let depth = c.max_body_depth.unwrap_or(super::DEFAULT_MAX_BODY_DEPTH);
        if depth == 0 || depth > super::MAX_BODY_DEPTH {
            self.error(
                at("max_body_depth"),
                format!("{depth} is not between 1 and {}", super::MAX_BODY_DEPTH),
            );
        }

        if self.errors.len() != before {
            return None;
        }
        let intent = Intent {
            provider: provider?,
            detail_type: c.detail_type.clone(),
            actions,
            locations,
            bindings,
        };
        if intent.reads_body() {
            body.read = true;
            body.json = true;
            body.max_depth = depth;
        }
        Some(intent)
    }

    fn source(&mut self, at: &Location, s: &str, captures: &[String]) -> Option<Source> {
        let bad = |cx: &mut Cx, m: String| {
            cx.error(at.clone(), m);
            None
        };
        if let Some(name) = s.strip_prefix("path.") {
            if !captures.iter().any(|c| c == name) {
                return bad(
                    self,
                    format!(
                        "{s:?}: the route's path has no {{{name}}} parameter (it has: {})",
                        if captures.is_empty() {
                            "none".to_owned()
                        } else {
                            captures.join(", ")
                        }
                    ),
                );
            }
            Some(Source::Path(name.to_owned()))
        } else if let Some(name) = s.strip_prefix("query.") {
            if !is_name(name) {
                return bad(self, format!("{s:?}: the query parameter name is empty"));
            }
            Some(Source::Query(name.to_owned()))
        } else if let Some(rest) = s.strip_prefix("body.") {
            match MemberPath::parse(rest) {
                Ok(p) => Some(Source::Body(p)),
                Err(m) => bad(self, format!("{s:?}: {m}")),
            }
        } else {
            bad(
                self,
                format!(
                    "{s:?} is not a request part: write path.NAME, query.NAME or body.member.path"
                ),
            )
        }
    }
}
