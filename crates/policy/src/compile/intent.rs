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

use std::collections::BTreeSet;

use super::{unknown_provider, Cx};
use crate::diag::Location;
use crate::model::{BindConfig, IntentConfig, LocationsConfig};
use crate::policy::{BodyRule, MemberPath};

/// The compiled intent rules of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Cx {
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
            None | Some(LocationsConfig::Origin(false)) => Vec::new(),
            Some(LocationsConfig::Origin(true)) => vec![origin.trim_end_matches('/').to_owned()],
            Some(LocationsConfig::List(list)) => {
                if list.is_empty() {
                    self.error(at("locations"), "is empty; omit it or set it to true");
                }
                for l in list {
                    if let Err(m) = super::syntax::check_url(l, true) {
                        self.error(at("locations"), format!("{l:?}: {m}"));
                    }
                }
                list.clone()
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
            let (op, source, currency) = match rule {
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
