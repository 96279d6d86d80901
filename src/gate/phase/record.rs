//! The decision as a value, and the sinks that consume it.
//!
//! [`crate::gate::phase::decide`] returns a [`Decision`]: the verdict and its typed reason, the
//! route, the verified principal, what the gateway does (the forward plan and the response
//! plan) and, once the executor has answered, the status of the gateway's own answer and the
//! timings. One or more [`DecisionSink`]s take it when it is final; today's one JSON log line
//! per decision (SPEC §6, [`crate::gate::log`]) is one of them ([`Decision::log_line`]; the
//! Worker writes it to the console).

use crate::gate::compiled::ProviderRt;
use crate::gate::log::{DecisionLog, LineWriter};
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
    /// Another of the gateway's own endpoints answered (RFC 9728 metadata, the JWKS).
    Endpoint,
    /// An authenticated operator used the operator API (issue 16).
    Operator,
}

impl Verdict {
    /// The log line's `verdict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Public => "public",
            Verdict::Deny => "deny",
            Verdict::Challenge => "challenge",
            Verdict::Endpoint => "endpoint",
            Verdict::Operator => "operator",
        }
    }
}

/// What the gateway does with the request.
// A forward is the common outcome and a decision is made once per request: boxing the plan
// would add an allocation to every allowed request to save stack on refusals (issue 14 and 15
// grew the plan: body, receipt, injected credential, further strips).
#[allow(clippy::large_enum_variant)]
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
    /// Issue 17 (decision log): on routes with `audit` on, each credential presented, verified
    /// or not: its provider and the SHA-256 of the credential (never the credential).
    pub presented: Vec<(&'a str, [u8; 32])>,
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
    // ---- issue 15: the declared intent (its hash, the covering detail or the failed check) ----
    pub intent: crate::gate::intent::Record,
    /// The session budget: divergence score, which budget refused.
    pub budget: crate::gate::budget::Record,
    // ---- issue 14: the receipt ------------------------------------------------------------
    /// The `jti` of the receipt signed for this request (its `request_id`), once signed.
    pub receipt: Option<&'a str>,
    // Issue 17 (decision log).
    /// The record's index in the decision log, once sequenced (`audit = "sync"` routes).
    pub log_index: Option<u64>,
    /// The matched route's `audit` mode (off for the gateway's own endpoints).
    pub audit: crate::policy::AuditMode,
    // ---- issue 16: the operator API and the deny list ----
    /// The authenticated operator of an operator API request (recorded with every change).
    pub operator: Option<crate::gate::operator::OperatorId>,
    /// What the operator asked for, for the executor to run against the stores.
    pub operator_call: Option<crate::gate::operator::Call>,
    /// The deny entry that refused the request (its id, never its content, in the log).
    pub deny_entry: Option<String>,
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
            intent: Default::default(),
            budget: Default::default(),
            receipt: None,
            log_index: None,
            audit: crate::policy::AuditMode::Off,
            operator: None,
            operator_call: None,
            deny_entry: None,
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
            Outcome::Endpoint(Endpoint::ResourceMetadata) => Verdict::Endpoint,
            Outcome::Endpoint(Endpoint::Jwks) => Verdict::Endpoint,
            Outcome::Endpoint(Endpoint::Operator | Endpoint::SharedSignals) => Verdict::Operator,
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
        // issue 15
        log.intent_hash = self.intent.hash.clone();
        log.intent_detail = self.intent.covered_by;
        log.intent_failed = self.intent.failed.as_deref().map(crate::gate::log::bounded);
        log.divergence = self.budget.divergence;
        log.budget_spent = self.budget.spent.map(crate::gate::budget::Spent::as_str);
        log.deny_entry = self.deny_entry.clone();
        log.mask = self.mask.clone();
        log
    }

    /// The one JSON log line (ASCII only): the text of [`Decision::log`]'s record
    /// ([`DecisionLog::to_line`]), written straight into one buffer (issue 19).
    pub fn log_line(&self) -> String {
        self.line(None)
    }

    /// The line of [`Decision::log`] with `sample`, written by [`LineWriter`].
    fn line(&self, sample: Option<u32>) -> String {
        fn text<'c>(
            c: &'c serde_json::Map<String, serde_json::Value>,
            name: &str,
        ) -> Option<&'c str> {
            c.get(name).and_then(|v| v.as_str())
        }
        let claims = || self.principal.tokens.iter().map(|(_, c)| c.map());
        let mut w = LineWriter::new(self.request_id, self.method, self.path);
        w.str_member("route", self.route);
        w.str_member("verdict", Some(self.verdict().as_str()));
        w.num_member("status", self.status);
        w.str_member("reason", self.error().map(Error::reason));
        w.str_member("provider", self.provider);
        w.list_member("issuer", claims().filter_map(|c| text(c, "iss")), true);
        w.bounded_member("subject", claims().find_map(|c| text(c, "sub")));
        let agents = claims().flat_map(|c| crate::policy::act::chain(c).filter_map(|l| l.sub()));
        w.list_member("agent", agents, false);
        w.bounded_member("device", claims().find_map(|c| text(c, "did")));
        w.list_member("jti", claims().filter_map(|c| text(c, "jti")), true);
        w.num_member("latency_ms", Some(self.timings.latency_ms));
        w.num_member("sample", sample);
        // issue 15
        w.str_member("intent_hash", self.intent.hash.as_deref());
        w.num_member("intent_detail", self.intent.covered_by);
        w.bounded_member("intent_failed", self.intent.failed.as_deref());
        w.num_member("divergence", self.budget.divergence);
        w.str_member(
            "budget_spent",
            self.budget.spent.map(crate::gate::budget::Spent::as_str),
        );
        w.str_member("deny_entry", self.deny_entry.as_deref());
        w.value_member("mask", self.mask.as_ref());
        w.finish()
    }

    /// The log line under `sampling`, or `None` when this decision's line is one sampling
    /// leaves out (nothing is serialised then).
    pub fn sampled_log_line(&self, sampling: &mut LogSampling) -> Option<String> {
        let verdict = self.verdict();
        if !sampling.keep(verdict) {
            return None;
        }
        let sampled = matches!(verdict, Verdict::Allow | Verdict::Public) && sampling.every > 1;
        Some(self.line(sampled.then_some(sampling.every)))
    }
}

/// Which decision lines are written (`[gateway] log_allow_sample`, issue 19): every refusal,
/// challenge and internal error; of allowed and public decisions the first and then 1 in
/// `every`, counted per isolate (deterministic: no randomness an attacker could steer around,
/// and every refusal is always there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSampling {
    every: u32,
    seen: u64,
}

impl LogSampling {
    pub fn new(every: u32) -> Self {
        LogSampling {
            every: every.max(1),
            seen: 0,
        }
    }

    /// 1 in how many allowed and public lines is written.
    pub fn every(&self) -> u32 {
        self.every
    }

    /// Whether the line of a decision with `verdict` is written; counts the sampled kinds.
    pub fn keep(&mut self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Allow | Verdict::Public => {
                let keep = self.seen % u64::from(self.every) == 0;
                self.seen = self.seen.wrapping_add(1);
                keep
            }
            Verdict::Deny | Verdict::Challenge | Verdict::Endpoint | Verdict::Operator => true,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::Claims;

    #[test]
    fn sampling_writes_every_refusal_and_one_in_n_allowed_lines() {
        let mut s = LogSampling::new(4);
        let allowed: Vec<bool> = (0..12).map(|_| s.keep(Verdict::Allow)).collect();
        assert_eq!(allowed.iter().filter(|k| **k).count(), 3);
        assert!(allowed[0], "the first allowed decision is written");
        for _ in 0..10 {
            assert!(s.keep(Verdict::Deny));
            assert!(s.keep(Verdict::Challenge));
        }
        // Public decisions share the allowed count.
        let public = (0..8).filter(|_| s.keep(Verdict::Public)).count();
        assert_eq!(public, 2);
        // 1 (the default) and 0 (never compiled) write everything.
        for every in [0, 1] {
            let mut all = LogSampling::new(every);
            assert!((0..50).all(|_| all.keep(Verdict::Allow)));
        }
    }

    /// Claims as the JOSE validation makes them (no `aud`, default rules, valid at 1000).
    fn claims(v: serde_json::Value) -> Claims {
        use base64ct::{Base64UrlUnpadded, Encoding};
        let b64 = Base64UrlUnpadded::encode_string(v.to_string().as_bytes());
        crate::jose::claims::validate(&b64, &Default::default(), 1000).expect("claims")
    }

    fn gate() -> crate::gate::Gate {
        let text = r#"
[gateway]
origin = "https://api.example.com"
[provider.agent]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"
[provider.device]
issuer = "https://dev.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://dev.example.com/jwks.json"
[[route]]
id = "r"
path = "/r"
require = { all = ["agent"] }
"#;
        let file = crate::policy::parse_toml("p.toml", text).expect("toml");
        crate::gate::Gate::new(crate::policy::compile(vec![file]).expect("policy")).expect("gate")
    }

    /// The line written straight into one buffer is exactly the text of the record
    /// (`Decision::log` and `DecisionLog::to_line`, serde's serialisation) for every member:
    /// bounding, de-duplication, list limits, escaping, non-ASCII, the optional members.
    #[test]
    fn the_line_written_directly_is_the_records_serialisation() {
        use serde_json::json;
        let g = gate();
        let (agent, device) = (g.provider("agent").unwrap(), g.provider("device").unwrap());
        let long = "é".repeat(200); // 400 bytes: bounded
        let chain = |n: usize, tag: &str| {
            let mut act = json!({"sub": format!("agent:{tag}{n}")});
            for i in (0..n).rev() {
                act = json!({"sub": format!("agent:{tag}{i}\u{2028}"), "act": act});
            }
            act
        };
        let first = claims(json!({
            "exp": 2000, "iss": long.clone(), "sub": "user\r\n{\"forged\":1}\u{85}😀",
            "jti": "j1", "act": chain(5, "a"),
        }));
        let second = claims(json!({
            "exp": 2000, "iss": long.clone(), "sub": "ignored", "did": long.clone(),
            "jti": "j1", "act": chain(6, "b"),
        }));
        let third = claims(json!({"exp": 2000, "iss": "https://dev.example.com", "jti": "j\"2"}));
        let mut cases = Vec::new();
        cases.push(Decision::refused(
            "r1",
            "GET",
            "/x?token=secret",
            Error::MissingToken,
            "realm",
        ));
        let mut d = Decision::new("r2", "pAtCh", "/é/\u{0}?q");
        d.outcome = Outcome::Endpoint(Endpoint::Challenge);
        d.route = Some("r\"oute");
        d.provider = Some("device");
        d.status = Some(200);
        d.principal.tokens = vec![(agent, first), (device, second), (device, third)];
        d.timings.latency_ms = 12.0;
        d.intent = crate::gate::intent::Record {
            hash: Some("h4sh".into()),
            covered_by: Some(2),
            failed: Some(long.clone()),
        };
        d.budget = crate::gate::budget::Record {
            divergence: Some(7),
            spent: Some(crate::gate::budget::Spent::Amount),
            retry_after: None,
        };
        d.deny_entry = Some("e-1".into());
        d.mask = Some(crate::gate::mask::MaskRecord {
            why: "scope",
            masked: 3,
            paths: vec![("$.a".into(), 2), ("$.b\"".into(), 1)],
            complete: true,
        });
        cases.push(d.clone());
        d.outcome = Outcome::Refused(Error::BudgetSpent);
        d.principal.tokens.truncate(1);
        d.mask = None;
        d.timings.latency_ms = 0.0;
        cases.push(d);
        let long_path = format!("/{}", "p".repeat(400));
        cases.push(Decision::new("r3", &long_path, &long_path));
        for d in &cases {
            assert_eq!(d.log_line(), d.log().to_line());
            let mut s = LogSampling::new(5);
            let mut want = d.log();
            if matches!(d.verdict(), Verdict::Allow | Verdict::Public) {
                want.sample = Some(5);
            }
            assert_eq!(d.sampled_log_line(&mut s), Some(want.to_line()));
        }
        let line = cases[1].log_line();
        // Every member is there (the lists limited to 8), and the line is one ASCII line.
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["agent"].as_array().unwrap().len(), 8, "{line}");
        // (A bounded issuer is compared as the record keeps it, bounded: the long one repeats,
        // in the record and in the line alike.)
        assert_eq!(v["issuer"].as_array().unwrap().len(), 3, "{line}");
        assert_eq!(v["jti"], json!(["j1", "j\"2"]), "{line}");
        assert!(line.is_ascii() && !line.contains('\n'), "{line}");
        for member in [
            "mask",
            "deny_entry",
            "budget_spent",
            "divergence",
            "intent_failed",
            "device",
        ] {
            assert!(v.get(member).is_some(), "{member}: {line}");
        }
    }

    #[test]
    fn a_refusal_line_is_never_sampled_and_carries_no_sample_field() {
        let d = Decision::refused("r1", "GET", "/x", Error::MissingToken, "realm");
        let mut s = LogSampling::new(1000);
        for _ in 0..5 {
            let line = d
                .sampled_log_line(&mut s)
                .expect("refusals are always written");
            assert!(line.contains("\"verdict\":\"deny\""), "{line}");
            assert!(!line.contains("\"sample\""), "{line}");
        }
    }
}
