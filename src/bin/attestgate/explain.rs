//! `attestgate explain METHOD URL ...`: which route a request matches and what the gateway
//! decides, with the gateway's own code.
//!
//! With keys for every provider whose token is given (inline in the policy, `--jwks`, or
//! `--secret`), the request goes through [`api::Gateway::decide`], the Worker's pipeline: the
//! verdict printed is the gateway's, mapped to the wire by its one error mapping. Without keys
//! for some provider, its token is checked by the core's parser and claim validation (every
//! check but the signature, said so in the output), the route's checks by the policy's own
//! evaluation, and the verdict follows from the first failing check.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use attestgate::api::{
    self, block_on_ready, ForwardPlan, Gateway, KeySet, KeySpec, MemoryReplay, NativeVerifier,
    Outcome, Request, Seams, StaticKeys,
};
use attestgate::gate::compiled::hmac_keys;
use attestgate::gate::phase::request::Endpoint;
use attestgate::gate::phase::ResponsePlan;
use attestgate::jose::{self, JwksLimits};
use attestgate::policy::{Route, ROUTE_HEADER};
use attestgate::Error;
use serde_json::{Map, Value};

use crate::check::{load, requirement};
use crate::usage;

/// The host used when URL is a bare path: no host-specific route matches it.
const NO_HOST: &str = "https://explain.invalid";

struct Args {
    method: String,
    url: String,
    dir: String,
    tokens: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    jwks: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
    now: i64,
    /// `--body FILE` (issue 15).
    body: Vec<u8>,
}

fn parse_args(args: &[String]) -> Result<Args, ExitCode> {
    let mut positional = Vec::new();
    let mut out = Args {
        method: String::new(),
        url: String::new(),
        dir: "policies".to_owned(),
        tokens: Vec::new(),
        headers: Vec::new(),
        jwks: Vec::new(),
        secrets: Vec::new(),
        body: Vec::new(),
        now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut pair = |what: &str| {
            it.next()
                .and_then(|v| v.split_once('='))
                .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
                .ok_or_else(|| usage(&format!("{a} needs {what}")))
        };
        match a.as_str() {
            "--token" => out.tokens.push(pair("NAME=JWT")?),
            "--header" => {
                let (n, v) = pair("NAME=VALUE")?;
                out.headers.push((n.to_ascii_lowercase(), v));
            }
            "--jwks" => out.jwks.push(pair("NAME=FILE")?),
            "--secret" => out.secrets.push(pair("NAME=BASE64")?),
            "--body" => match it.next().map(std::fs::read) {
                Some(Ok(b)) => out.body = b,
                Some(Err(e)) => return Err(usage(&format!("--body: {e}"))),
                None => return Err(usage("--body needs a file")),
            },
            "--dir" => match it.next() {
                Some(d) => out.dir = d.clone(),
                None => return Err(usage("--dir needs a folder")),
            },
            "--now" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => out.now = n,
                None => return Err(usage("--now needs a UNIX time in seconds")),
            },
            other if other.starts_with("--") => {
                return Err(usage(&format!("unknown option {other}")))
            }
            _ => positional.push(a.clone()),
        }
    }
    let [method, url] = positional.as_slice() else {
        return Err(usage("explain needs METHOD and URL"));
    };
    out.method = method.clone();
    out.url = if url.starts_with('/') {
        format!("{NO_HOST}{url}")
    } else {
        url.clone()
    };
    Ok(out)
}

pub fn explain(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let policy = match load(&args.dir) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let gateway = match Gateway::new(policy) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: the compiled policy cannot be prepared: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gate = gateway.gate();
    let policy = gateway.policy();

    let (host, path, query) = match attestgate::gate::url::split(&args.url) {
        Some(u) => (
            u.host.to_ascii_lowercase(),
            u.path.to_owned(),
            u.query.map(str::to_owned),
        ),
        None => return usage("URL must be http(s)://host/path or /path"),
    };
    println!("request   {} {}", args.method, args.url);
    if args.url.starts_with(NO_HOST) {
        println!("          (no host given: only routes without `host` match)");
    }
    if path == gate.challenge_path {
        println!(
            "verdict   challenge endpoint: POST {} issues a nonce (other methods: 405); no route is consulted",
            gate.challenge_path
        );
        return ExitCode::SUCCESS;
    }
    if path == attestgate::gate::signing::JWKS_PATH {
        println!("verdict   JWKS endpoint: GET {path} serves the gateway's public signing keys (ATTESTGATE_SIGNING_KEY, _PREVIOUS); no route is consulted");
        return ExitCode::SUCCESS;
    }
    let route = match policy.match_route(&args.method, &host, &path) {
        Ok(m) => {
            let r = m.route;
            println!(
                "route     {} ({}): {} {}{}",
                r.id,
                r.file,
                r.methods
                    .as_ref()
                    .map_or_else(|| "*".to_owned(), |m| m.join(",")),
                r.host.as_deref().unwrap_or(""),
                r.path
            );
            for (name, value) in &m.params {
                println!("          param {name} = {value:?} (raw, percent-encoded as sent)");
            }
            println!("requires  {}", requirement(r));
            crate::receipt::print_rule(gate, r);
            for line in crate::upstream::lines(policy, gate, r) {
                println!("{line}");
            }
            crate::mask::print_rules(r);
            Some(r)
        }
        Err(miss) => {
            println!("route     none: {miss}");
            None
        }
    };

    // Keys: inline ones from the policy, then the files and secrets given.
    let mut keys = StaticKeys::new();
    for (name, file) in &args.jwks {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) => return usage(&format!("--jwks {name}={file}: {e}")),
        };
        match KeySet::from_jwks(&text, &JwksLimits::default()) {
            Ok((set, _)) => keys.insert(name, set),
            Err(e) => return usage(&format!("--jwks {name}={file}: not a usable JWKS ({e})")),
        }
    }
    // HMAC providers: their Worker secrets by name, as the Worker reads them.
    for p in policy.providers() {
        let Some(rt) = gate.provider(&p.name) else {
            continue;
        };
        let KeySpec::Secret(list) = &rt.keys else {
            continue;
        };
        let values: Vec<Option<&str>> = list
            .iter()
            .map(|s| {
                args.secrets
                    .iter()
                    .find(|(n, _)| *n == s.name)
                    .map(|(_, v)| v.as_str())
            })
            .collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        match hmac_keys(list, &values) {
            Ok(set) => keys.insert(&p.name, set),
            Err(fault) => {
                return usage(&format!(
                    "--secret: provider {} needs every secret it lists, usable ({fault:?})",
                    p.name
                ))
            }
        }
    }

    // The request headers: each token where its provider reads it, then the others.
    let mut headers = args.headers.clone();
    let mut unverified = Vec::new();
    let mut first_failure: Option<Error> = None;
    let mut decoded: Vec<(String, Map<String, Value>)> = Vec::new();
    for (name, jwt) in &args.tokens {
        let Some(p) = gate.provider(name) else {
            return usage(&format!(
                "--token {name}: no provider {name:?} in the policy (providers: {})",
                policy
                    .providers()
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let Some(family) = p.jwt() else {
            return usage(&format!(
                "--token {name}: provider {name:?} does not take JWTs"
            ));
        };
        let value = match &family.scheme {
            Some(s) => format!("{s} {jwt}"),
            None => jwt.clone(),
        };
        headers.push((family.header.clone(), value));
        println!();
        println!(
            "token {name} (sent in {}{})",
            family.header,
            family
                .scheme
                .as_ref()
                .map(|s| format!(", scheme {s}"))
                .unwrap_or_default()
        );
        let verified_here = keys.has(p);
        if !verified_here {
            unverified.push(name.clone());
        }
        // The core's own checks, in the gateway's order: form and header, then claims.
        let checked = jose::jws::parse(
            jwt,
            &family.profile.algs,
            &family.profile.token_types,
            &family.profile.limits,
        )
        .and_then(|jws| {
            println!(
                "  [ok] form and header (alg {}, typ accepted)",
                jws.header.alg.as_str()
            );
            if let Ok(claims) = jose::claims::decode(jws.claims_b64) {
                println!("  payload {}", Value::Object(claims.clone()));
                decoded.push((name.clone(), claims));
            }
            jose::claims::validate(jws.claims_b64, &family.profile.rules, args.now)
        });
        match checked {
            Ok(_) => println!(
                "  [ok] claims: iss, aud, exp, nbf, iat, lifetime, required claims (at --now {})",
                args.now
            ),
            Err(e) => {
                let e = Error::from(e);
                println!("  [FAIL] {}: {}", e.reason(), e.description());
                first_failure.get_or_insert(e);
            }
        }
        if verified_here {
            println!(
                "  signature, bindings and single use: checked below by the gateway's pipeline"
            );
        } else {
            println!(
                "  [--] signature NOT verified: no keys for {name} (pass --jwks {name}=FILE, or --secret SECRET_NAME=BASE64 for HMAC providers)"
            );
        }
        if let Some(r) = route {
            if !r.access.providers().contains(name) {
                println!(
                    "  (the route does not require provider {name}: this token is not consumed)"
                );
            }
        }
    }

    if let Some(r) = route {
        route_checks(gateway.policy(), r, &decoded);
        crate::intent::explain(
            gateway.policy(),
            r,
            &args.method,
            &host,
            &path,
            query.as_deref(),
            &args.body,
            &decoded,
        );
    }

    println!();
    let realm = &gate.realm;
    if unverified.is_empty() || route.is_none() {
        // The gateway's own decision.
        let replay = MemoryReplay::new();
        let signing_keys = crate::receipt::throwaway_keys();
        let seams = Seams {
            keys: &keys,
            verifier: &NativeVerifier,
            replay: &replay,
            nonce_key: None,
            signing_keys: signing_keys.as_ref(),
            deny: None,
        };
        let req = Request {
            method: &args.method,
            url: &args.url,
            headers: &headers,
        };
        // Every seam here is in memory: the decision never waits.
        let decision = block_on_ready(async {
            Ok(gateway
                .decide_with_body(&req, &args.body, &seams, args.now, "explain")
                .await)
        });
        println!("decision  the gateway's pipeline, at --now {}", args.now);
        if let Ok(d) = &decision {
            if let Some(i) = d.intent.covered_by {
                println!("  intent  covered by detail {i}");
            }
            if let Some(f) = &d.intent.failed {
                println!("  intent  failed: {f}");
            }
        }
        match decision.as_ref().map(|d| &d.outcome) {
            Ok(Outcome::Forward(fwd)) => {
                print_allow(fwd, &path, fwd.is_public());
                if let (Some(m), Ok(d)) = (&fwd.route.mask, &decision) {
                    let tokens: Vec<_> = d
                        .principal
                        .tokens
                        .iter()
                        .map(|(p, c)| (p.name.as_str(), c.map()))
                        .collect();
                    crate::mask::print_decision(m, &tokens);
                }
            }
            Ok(Outcome::Refused(e)) => {
                print_refusal(*e, realm, decision.as_ref().ok().map(|d| &d.response))
            }
            Err(e) => print_refusal(*e, realm, None),
            Ok(Outcome::Endpoint(Endpoint::Challenge)) => println!(
                "verdict   challenge endpoint: POST {} issues a nonce",
                gate.challenge_path
            ),
            // Issue 14 item 5: the RFC 9728 document the gateway answers with.
            Ok(Outcome::Endpoint(Endpoint::ResourceMetadata)) => {
                if let Some(ResponsePlan::Own(a)) = decision.as_ref().ok().map(|d| &d.response) {
                    println!(
                        "verdict   {} RFC 9728 protected-resource metadata",
                        a.status
                    );
                    println!("  {}", a.body);
                }
            }
            // Issue 16: the operator API and the Shared Signals receiver (their stores are the
            // Worker's; explain shows who was authenticated).
            Ok(Outcome::Endpoint(Endpoint::Operator)) => println!(
                "verdict   operator API: {}",
                decision
                    .as_ref()
                    .ok()
                    .and_then(|d| d.operator.as_ref())
                    .map_or("not authenticated".to_owned(), |o| format!(
                        "authenticated operator iss={} sub={}",
                        o.iss, o.sub
                    ))
            ),
            Ok(Outcome::Endpoint(Endpoint::SharedSignals)) => {
                println!("verdict   the Shared Signals receiver (SETs are verified by the Worker)")
            }
            // Issue 14: the gateway's public signing keys.
            Ok(Outcome::Endpoint(Endpoint::Jwks)) => println!(
                "verdict   the gateway's JWKS ({}): the public halves of ATTESTGATE_SIGNING_KEY and ATTESTGATE_SIGNING_KEY_PREVIOUS",
                attestgate::gate::signing::JWKS_PATH
            ),
        }
    } else {
        println!(
            "decision  derived from the checks above; signatures of {} NOT verified",
            unverified.join(", ")
        );
        let missing = route
            .map(|r| {
                let given: Vec<&str> = args.tokens.iter().map(|(n, _)| n.as_str()).collect();
                let named = r.access.providers();
                let absent = named
                    .iter()
                    .filter(|p| !given.contains(&p.as_str()))
                    .count();
                !r.is_public()
                    && (absent == named.len()
                        || (matches!(r.access, attestgate::policy::Access::All(_)) && absent > 0))
            })
            .unwrap_or(false);
        if missing {
            print_refusal(Error::MissingToken, realm, None);
        } else if let Some(e) = first_failure {
            print_refusal(e, realm, None);
        } else if let Some(r) = route {
            let tokens: Vec<(&str, &Map<String, Value>)> =
                decoded.iter().map(|(n, c)| (n.as_str(), c)).collect();
            match gate.evaluate(r, tokens.as_slice()) {
                Ok(plan) => {
                    println!("verdict   ALLOW if the signatures and bindings verify");
                    println!("  forward to {}{path}", r.origin.trim_end_matches('/'));
                    for (name, value) in &plan.set {
                        println!("  set     {name}: {value}");
                    }
                    if let Some(m) = &r.mask {
                        let tokens: Vec<(&str, &Map<String, Value>)> =
                            decoded.iter().map(|(n, c)| (n.as_str(), c)).collect();
                        crate::mask::print_decision(m, &tokens);
                    }
                }
                Err(denial) => print_refusal(Error::from(denial), realm, None),
            }
        }
    }
    ExitCode::SUCCESS
}

fn route_checks(policy: &api::Policy, route: &Route, decoded: &[(String, Map<String, Value>)]) {
    if route.is_public() {
        return;
    }
    let tokens: Vec<(&str, &Map<String, Value>)> = decoded
        .iter()
        .filter(|(n, _)| route.access.providers().contains(n))
        .map(|(n, c)| (n.as_str(), c))
        .collect();
    println!();
    println!("route checks (the gateway's evaluation code; token claims as decoded)");
    for step in policy.explain(route, tokens.as_slice()).steps {
        println!(
            "  [{}] {}: {}",
            if step.passed { "ok" } else { "FAIL" },
            step.check,
            step.detail
        );
    }
}

/// The refusal; its `WWW-Authenticate` is the gateway's own answer's when the pipeline made one
/// (the route's schemes and RFC 9728 `resource_metadata`), else the Bearer challenge of `realm`.
fn print_refusal(e: Error, realm: &str, answered: Option<&ResponsePlan>) {
    let wire = e.wire(realm);
    println!(
        "verdict   {} {} ({}): {}",
        wire.status,
        wire.code,
        e.reason(),
        wire.description
    );
    let own = match answered {
        Some(ResponsePlan::Own(a)) => a
            .headers
            .iter()
            .find(|(n, _)| *n == "www-authenticate")
            .map(|(_, v)| v.clone()),
        _ => wire.www_authenticate,
    };
    if let Some(h) = own {
        println!("  WWW-Authenticate: {h}");
    }
}

fn print_allow(fwd: &ForwardPlan<'_>, path: &str, public: bool) {
    println!(
        "verdict   ALLOW{}: forward to {}{path}",
        if public {
            " (public route, no token verified)"
        } else {
            ""
        },
        fwd.route.origin.trim_end_matches('/')
    );
    // x-verified-route (set by the gateway, so any spelling of it is deleted) and the
    // credential headers the route's families consumed.
    let strip: Vec<&str> = std::iter::once(ROUTE_HEADER)
        .chain(fwd.headers.consumed().iter().map(String::as_str))
        .chain(fwd.headers.strips().iter().map(String::as_str))
        .collect();
    let claims = fwd.headers.claims();
    println!(
        "  strip   every inbound {}* header, and {}",
        claims.strip_prefix,
        strip.join(", ")
    );
    for (name, value) in &claims.set {
        println!("  set     {name}: {value}");
    }
    crate::receipt::print_planned(fwd);
    if let Some(inject) = &fwd.inject {
        println!(
            "  inject  {} into {} (obtained by the Worker; never shown)",
            inject.kind(),
            inject.at.header
        );
    }
}
