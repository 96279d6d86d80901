//! The decision as a value, and the sinks that consume it.
//!
//! [`crate::gate::phase::decide`] returns a [`Decision`]: the verdict and its typed reason, the
//! route, the verified principal, what the gateway does (the forward plan and the response
//! plan) and, once the executor has answered, the status of the gateway's own answer and the
//! timings. One or more [`DecisionSink`]s take it when it is final; today's one JSON log line
//! per decision (SPEC §6, [`crate::gate::log`]) is one of them ([`Decision::log_line`]; the
//! Worker writes it to the console).

use crate::gate::compiled::ProviderRt;
use crate::gate::log::DecisionLog;
use crate::gate::phase::forward::ForwardPlan;
use crate::gate::phase::request::Endpoint;
use crate::gate::phase::response::{Answer, ResponsePlan};
use crate::jose::Claims;
use crate::{error::Wire, Error};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Verified and forwarded.
    Allow,
    /// A public route: forwarded after header sanitising, no token verified.
    Public,
    /// Refused.
    Deny,
    /// The challenge endpoint issued a nonce.
    Challenge,
}

impl Verdict {
    /// The log line's `verdict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Public => "public",
            Verdict::Deny => "deny",
            Verdict::Challenge => "challenge",
        }
    }
}

/// What the gateway does with the request.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// Forward it to the origin.
    Forward(ForwardPlan<'a>),
    /// One of the gateway's own endpoints answered it.
    Endpoint(Endpoint),
    /// Refuse it, for this reason.
    Refused(Error),
}

/// Who the request was verified as: each verified credential's provider and claims, in the
/// order the route names the providers. A credential is added when it verifies, before its
/// bindings are checked, so a refusal by a binding still records whose credential it was.
#[derive(Debug, Default, Clone)]
pub struct Principal<'a> {
    pub tokens: Vec<(&'a ProviderRt, Claims)>,
}

impl Principal<'_> {
    /// The providers whose credentials verified.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(|(p, _)| p.name.as_str())
    }

    /// Each credential's `iss`, in order, without repeats.
    pub fn issuers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for iss in self.tokens.iter().filter_map(|(_, c)| c.iss()) {
            if !out.contains(&iss) {
                out.push(iss);
            }
        }
        out
    }

    /// The first credential's `sub` (the first that has one).
    pub fn subject(&self) -> Option<&str> {
        self.tokens.iter().find_map(|(_, c)| c.sub())
    }

    /// The agents the subject delegated to (`act.sub`, outermost first), over every credential.
    pub fn agents(&self) -> Vec<String> {
        self.tokens
            .iter()
            .flat_map(|(_, c)| c.act_chain())
            .collect()
    }

    /// The first device id (`did`).
    pub fn device(&self) -> Option<&str> {
        self.tokens
            .iter()
            .find_map(|(_, c)| c.get("did").and_then(|v| v.as_str()))
    }

    /// Each credential's `jti`, in order.
    pub fn jtis(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().filter_map(|(_, c)| c.jti())
    }
}

/// When the decision was made, from the executor's clock.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Timings {
    /// The request's start, milliseconds since the epoch.
    pub started_ms: f64,
    /// From the start until the decision was final (for a DPoP request, once the origin's
    /// headers arrived, since its response carries the next nonce), rounded.
    pub latency_ms: f64,
}

/// One request's decision.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub request_id: &'a str,
    /// Exactly as received.
    pub method: &'a str,
    /// The path, without the query (it may carry credentials).
    pub path: &'a str,
    /// The matched route's id, or the endpoint's label (`challenge`).
    pub route: Option<&'a str>,
    pub outcome: Outcome<'a>,
    /// The provider whose credential failed its verification or bindings.
    pub provider: Option<&'a str>,
    pub principal: Principal<'a>,
    /// What the client gets back.
    pub response: ResponsePlan,
    /// The status of the gateway's own answer (absent for a forwarded request: that status is
    /// the origin's).
    pub status: Option<u16>,
    pub timings: Timings,
    // ---- issue 18: response masking ----
    /// What the mask did to the response (counts, never values), once the executor knows.
    pub mask: Option<crate::gate::mask::MaskRecord>,
}

impl<'a> Decision<'a> {
    /// A decision about to be made: nothing learned yet.
    pub fn new(request_id: &'a str, method: &'a str, path: &'a str) -> Self {
        Decision {
            request_id,
            method,
            path,
            route: None,
            outcome: Outcome::Refused(Error::Internal),
            provider: None,
            principal: Principal::default(),
            response: ResponsePlan::origin(None),
            status: None,
            timings: Timings::default(),
            mask: None,
        }
    }

    /// A decision refused before any route or endpoint was consulted (the policy could not be
    /// prepared, a request URL the runtime should never hand over), answered with `error`'s
    /// wire form under `realm`.
    pub fn refused(
        request_id: &'a str,
        method: &'a str,
        path: &'a str,
        error: Error,
        realm: &str,
    ) -> Self {
        let mut d = Decision::new(request_id, method, path);
        let answer = Answer::refusal(&error.wire(realm), request_id, None);
        d.refuse(error, Some(answer));
        d
    }

    /// A refusal's wire form (status, code, fixed description, `WWW-Authenticate`) with the
    /// Bearer challenge of `realm`, through the gateway's one mapping; `None` when the request
    /// was not refused.
    pub fn wire(&self, realm: &str) -> Option<Wire> {
        self.error().map(|e| e.wire(realm))
    }

    pub fn verdict(&self) -> Verdict {
        match &self.outcome {
            Outcome::Forward(plan) if plan.is_public() => Verdict::Public,
            Outcome::Forward(_) => Verdict::Allow,
            Outcome::Endpoint(Endpoint::Challenge) => Verdict::Challenge,
            Outcome::Refused(_) => Verdict::Deny,
        }
    }

    /// The typed reason of a refusal.
    pub fn error(&self) -> Option<Error> {
        match self.outcome {
            Outcome::Refused(e) => Some(e),
            _ => None,
        }
    }

    /// The forward plan of an allowed request.
    pub fn forward(&self) -> Option<&ForwardPlan<'a>> {
        match &self.outcome {
            Outcome::Forward(plan) => Some(plan),
            _ => None,
        }
    }

    /// Refuse the request with `error`, answered with `answer` when given. The status recorded
    /// is the answer's (a refusal's own wire status without one).
    pub fn refuse(&mut self, error: Error, answer: Option<Answer>) {
        self.outcome = Outcome::Refused(error);
        self.status = Some(answer.as_ref().map_or(error.wire("").status, |a| a.status));
        if let Some(answer) = answer {
            self.response = ResponsePlan::Own(answer);
        }
    }

    /// The log line's record (SPEC §6): identifiers only, bounded ([`DecisionLog`]).
    pub fn log(&self) -> DecisionLog {
        let mut log = DecisionLog::new(self.request_id, self.method, self.path);
        log.route = self.route.map(str::to_owned);
        log.verdict = self.verdict().as_str();
        log.status = self.status;
        log.reason = self.error().map(Error::reason);
        log.provider = self.provider.map(str::to_owned);
        for (_, claims) in &self.principal.tokens {
            log.add_claims(claims.map());
        }
        log.latency_ms = self.timings.latency_ms;
        log.mask = self.mask.clone();
        log
    }

    /// The one JSON log line (ASCII only).
    pub fn log_line(&self) -> String {
        self.log().to_line()
    }
}

/// Something that takes each final decision: the log line today; later an audit log, metrics,
/// a receipt. The Worker keeps the request's `ctx`, so a sink may hand work to `waitUntil`.
pub trait DecisionSink {
    fn record(&mut self, decision: &Decision<'_>);
}

impl<S: DecisionSink + ?Sized> DecisionSink for &mut S {
    fn record(&mut self, decision: &Decision<'_>) {
        (**self).record(decision);
    }
}

/// Both sinks, in order.
impl<A: DecisionSink, B: DecisionSink> DecisionSink for (A, B) {
    fn record(&mut self, decision: &Decision<'_>) {
        self.0.record(decision);
        self.1.record(decision);
    }
}

/// The log lines of the decisions it took, in memory (the Worker's sink writes each to the
/// console instead).
#[derive(Debug, Default, Clone)]
pub struct LogLines(pub Vec<String>);

impl DecisionSink for LogLines {
    fn record(&mut self, decision: &Decision<'_>) {
        self.0.push(decision.log_line());
    }
}
