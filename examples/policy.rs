//! The policy tool for API owners.
//!
//! ```text
//! cargo run --example policy -- check [DIR]
//! cargo run --example policy -- explain METHOD URL [--dir DIR] [--token NAME=JWT ...] [--now UNIX]
//! ```
//!
//! `check` compiles a policy folder (default `policies`) exactly as the build does and lists the
//! resolved routes and providers; on errors it prints them and exits with status 1.
//!
//! `explain` says which route a request matches (or why none), and, given tokens, decodes their
//! payloads WITHOUT verifying signatures and shows every requirement, scope, claim, delegation and
//! forward check with its reason, using the gateway's own evaluation code, plus `exp`/`nbf`/`iat`
//! against `--now`. It is a policy debugging aid, never a token validator.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use attestgate::policy::{
    load_dir, split_request_url, Access, Denial, HeaderPlan, KeySource, Miss, Policy, PolicyError,
    Provider, Route,
};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value};

const USAGE: &str = "usage:
  cargo run --example policy -- check [DIR]
  cargo run --example policy -- explain METHOD URL [--dir DIR] [--token NAME=JWT ...] [--now UNIX]

  check    compile the policy folder (default: policies) and list routes and providers
  explain  show which route METHOD URL matches and, with --token, every check of the route
           (token payloads are decoded, signatures are NOT verified)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("explain") => explain(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn load(dir: &str) -> Result<Policy, ExitCode> {
    match load_dir(dir) {
        Ok((policy, _)) => Ok(policy),
        Err(errors) => {
            print_errors(dir, &errors);
            Err(ExitCode::FAILURE)
        }
    }
}

fn print_errors(dir: &str, errors: &[PolicyError]) {
    eprintln!(
        "error: the policy in {dir} does not compile ({} error{}):",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        eprintln!("  {e}");
    }
}

// ---- check ---------------------------------------------------------------------------------------

fn check(args: &[String]) -> ExitCode {
    let dir = match args {
        [] => "policies",
        [dir] => dir.as_str(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let policy = match load(dir) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let g = policy.gateway();
    println!(
        "policy folder {dir}: {} file(s), OK",
        policy.sources().len()
    );
    println!();
    println!("gateway ({})", g.file);
    println!("  origin               {}", g.origin);
    println!("  realm                {}", g.realm);
    println!(
        "  challenge            POST {} (nonces valid {}s, {} shard(s))",
        g.challenge_path, g.challenge_ttl_secs, g.nonce_shards
    );
    println!(
        "  claims headers       {}* (inbound ones always stripped)",
        g.claims_header_prefix
    );
    println!("  clock skew           {}s", g.clock_skew_secs);
    println!(
        "  path variants        {}",
        if g.case_sensitive_paths {
            "trailing-slash variants of protected routes refused (case_sensitive_paths: case is the origin's)"
        } else {
            "case and trailing-slash variants of protected routes refused"
        }
    );
    println!(
        "  allow_insecure_http  {}",
        if g.allow_insecure_http {
            "true  (development only!)"
        } else {
            "false"
        }
    );
    println!();
    println!("providers");
    for p in policy.providers() {
        print_provider(p);
    }
    println!();
    println!("routes (most specific path wins; no match is 404)");
    let rows: Vec<[String; 6]> = policy
        .routes()
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.methods
                    .as_ref()
                    .map_or_else(|| "*".to_owned(), |m| m.join(",")),
                r.host.clone().unwrap_or_else(|| "*".to_owned()),
                r.path.to_string(),
                requirement(r),
                r.file.clone(),
            ]
        })
        .collect();
    print_table(["ID", "METHODS", "HOST", "PATH", "REQUIRES", "FILE"], &rows);
    let mut details_header = false;
    for r in policy.routes() {
        let mut extra = Vec::new();
        if !r.claims.is_empty() {
            let c: Vec<String> = r.claims.iter().map(rule_text).collect();
            extra.push(format!("claims {}", c.join("; ")));
        }
        if let Some(d) = &r.delegation {
            extra.push(format!(
                "delegation {} max_depth {}",
                d.provider, d.max_depth
            ));
        }
        if !r.forward.is_empty() {
            let f: Vec<String> = r
                .forward
                .iter()
                .map(|f| format!("{} = {}", f.header, f.claim))
                .collect();
            extra.push(format!("forward {}", f.join(", ")));
        }
        if r.forward_tokens {
            extra.push("forward_tokens".to_owned());
        }
        if r.origin != g.origin {
            extra.push(format!("origin {}", r.origin));
        }
        for e in extra {
            if !details_header {
                println!();
                println!("route details");
                details_header = true;
            }
            println!("  {:<16} {e}", r.id);
        }
    }
    if !policy.warnings().is_empty() {
        println!();
        println!("warnings");
        for w in policy.warnings() {
            println!("  {w}");
        }
    }
    println!();
    println!(
        "OK: {} route(s), {} provider(s)",
        policy.routes().len(),
        policy.providers().len()
    );
    ExitCode::SUCCESS
}

fn print_provider(p: &Provider) {
    let algs: Vec<&str> = p.algorithms.iter().map(|a| a.as_str()).collect();
    println!("  {} ({})", p.name, p.file);
    println!("    algorithms  {}", algs.join(", "));
    match &p.issuer {
        Some(i) => println!("    issuer      {i}"),
        None => println!("    issuer      (not checked: secret provider)"),
    }
    if !p.audiences.is_empty() {
        println!("    audiences   {}", p.audiences.join(", "));
    }
    println!("    token_types {}", p.token_types.join(", "));
    println!(
        "    token in    {}{}",
        p.from.header,
        p.from
            .scheme
            .as_ref()
            .map(|s| format!(" ({s} scheme)"))
            .unwrap_or_default()
    );
    match &p.keys {
        KeySource::JwksUri(u) => println!("    keys        {u} (cached {}s)", p.jwks_cache_secs),
        KeySource::Jwks(_) => println!("    keys        inline jwks"),
        KeySource::Secrets(list) => {
            let names: Vec<String> = list
                .iter()
                .map(|s| match &s.kid {
                    Some(kid) => format!("{} (kid {kid})", s.name),
                    None => s.name.clone(),
                })
                .collect();
            println!("    keys        Worker secret {}", names.join(", "));
        }
    }
    let mut extra = Vec::new();
    extra.push(format!("max lifetime {}s", p.max_lifetime_secs));
    if !p.required_claims.is_empty() {
        let names: Vec<&str> = p.required_claims.iter().map(|c| c.as_str()).collect();
        extra.push(format!("required claims {}", names.join(", ")));
    }
    if p.replay_jti {
        extra.push("jti single use".to_owned());
    }
    if p.dpop {
        extra.push("DPoP proof".to_owned());
    }
    if let Some(b) = &p.binding {
        extra.push(format!("binding {} = hash of {}", b.claim, b.header));
    }
    if let Some(n) = &p.nonce_claim {
        extra.push(format!("challenge nonce in {n}"));
    }
    if !extra.is_empty() {
        println!("    checks      {}", extra.join("; "));
    }
    if !p.weakens.is_empty() {
        println!(
            "    WEAKENS     {} (accepts their tokens without all of their checks)",
            p.weakens.join(", ")
        );
    }
}

fn requirement(r: &Route) -> String {
    let mut s = r.access.to_string();
    if !r.scopes.is_empty() {
        s.push_str(&format!(" scopes {}", r.scopes.join(" ")));
    }
    s
}

fn rule_text(c: &attestgate::policy::ClaimRule) -> String {
    let mut ops = Vec::new();
    if let Some(v) = &c.equals {
        ops.push(format!("equals {v}"));
    }
    if let Some(v) = &c.one_of {
        ops.push(format!("one_of {v:?}"));
    }
    if let Some(v) = &c.contains {
        ops.push(format!("contains {v:?}"));
    }
    format!("{} {}", c.claim, ops.join(" and "))
}

fn print_table<const N: usize>(head: [&str; N], rows: &[[String; N]]) {
    let mut width = head.map(str::len);
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(head.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

// ---- explain -------------------------------------------------------------------------------------

struct Token {
    provider: String,
    header: Option<Map<String, Value>>,
    claims: Option<Map<String, Value>>,
    problem: Option<String>,
}

fn explain(args: &[String]) -> ExitCode {
    let mut positional = Vec::new();
    let mut dir = "policies".to_owned();
    let mut raw_tokens: Vec<(String, String)> = Vec::new();
    let mut now: Option<i64> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => match it.next() {
                Some(d) => dir = d.clone(),
                None => return usage("--dir needs a folder"),
            },
            "--token" => match it.next().and_then(|t| t.split_once('=')) {
                Some((name, jwt)) => raw_tokens.push((name.to_owned(), jwt.trim().to_owned())),
                None => return usage("--token needs NAME=JWT"),
            },
            "--now" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => now = Some(n),
                None => return usage("--now needs a UNIX time in seconds"),
            },
            other if other.starts_with("--") => return usage(&format!("unknown option {other}")),
            _ => positional.push(a.clone()),
        }
    }
    let [method, url] = positional.as_slice() else {
        return usage("explain needs METHOD and URL");
    };
    let now = now.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let policy = match load(&dir) {
        Ok(p) => p,
        Err(code) => return code,
    };

    let (host, path) = split_url(url);
    println!("request   {method} {url}");
    println!(
        "          host {:?}, raw path {:?}{}",
        host,
        path,
        if host.is_empty() {
            " (no host in URL: only routes without host match)"
        } else {
            ""
        }
    );
    let g = policy.gateway();
    if path == g.challenge_path {
        println!(
            "verdict   challenge endpoint: POST {} issues a nonce (other methods: 405); no route is consulted",
            g.challenge_path
        );
        return ExitCode::SUCCESS;
    }

    let matched = match policy.match_route(method, &host, &path) {
        Ok(m) => m,
        Err(Miss::Unnormalised(problem)) => {
            println!("route     none: {problem}");
            println!("verdict   400 invalid_request (unnormalised_path)");
            return ExitCode::SUCCESS;
        }
        Err(Miss::NoRoute) => {
            println!("route     none matches");
            for r in policy.routes() {
                if r.path.matches(&path).is_some() {
                    let mut why = Vec::new();
                    if !r.accepts_method(method) {
                        why.push(format!(
                            "method {method} not in [{}]",
                            r.methods.as_deref().unwrap_or_default().join(", ")
                        ));
                    }
                    if !r.accepts_host(&host) {
                        why.push(format!(
                            "host {host:?} is not {}",
                            r.host.as_deref().unwrap_or("")
                        ));
                    }
                    println!(
                        "          {} ({}) has a matching path {} but: {}",
                        r.id,
                        r.file,
                        r.path,
                        why.join(", ")
                    );
                }
            }
            println!("verdict   404 not_found (no_route)");
            return ExitCode::SUCCESS;
        }
        Err(Miss::MethodNotAllowed(allow)) => {
            println!("route     none: the most specific routes of this path do not take {method}");
            println!("verdict   405 method_not_allowed, Allow: {allow}");
            return ExitCode::SUCCESS;
        }
        Err(Miss::ProtectedVariant) => {
            println!(
                "route     none: the path differs only by case or a trailing slash from a more protected route"
            );
            println!("verdict   400 invalid_request (path_variant)");
            return ExitCode::SUCCESS;
        }
    };
    let route = matched.route;
    println!(
        "route     {} ({}): {} {}{}",
        route.id,
        route.file,
        route
            .methods
            .as_ref()
            .map_or_else(|| "*".to_owned(), |m| m.join(",")),
        route.host.as_deref().unwrap_or(""),
        route.path
    );
    for (name, value) in &matched.params {
        println!("          param {name} = {value:?} (raw, percent-encoded as sent)");
    }
    println!("requires  {}", requirement(route));

    // Decode the tokens.
    let mut tokens: Vec<Token> = Vec::new();
    if !raw_tokens.is_empty() {
        println!();
        println!("!!! signature NOT verified by explain: payloads are only decoded !!!");
    }
    for (name, jwt) in &raw_tokens {
        let Some(provider) = policy.provider(name) else {
            println!();
            println!(
                "token {name}: no provider {name:?} in the policy (providers: {})",
                policy
                    .providers()
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            continue;
        };
        println!();
        println!(
            "token {name} (from header {}{}), signature NOT verified by explain",
            provider.from.header,
            provider
                .from
                .scheme
                .as_ref()
                .map(|s| format!(", scheme {s}"))
                .unwrap_or_default()
        );
        let mut token = decode_token(name, jwt);
        if let Some(problem) = &token.problem {
            println!("  [FAIL] {problem}: the gateway would refuse it (401 invalid_token)");
        } else if let (Some(header), Some(claims)) = (&token.header, &token.claims) {
            token.problem = token_checks(provider, header, claims, now, g.clock_skew_secs as i64);
        }
        if !route.access.providers().contains(&token.provider) {
            println!("  (the route does not require provider {name}: this token is not consumed)");
        }
        tokens.push(token);
    }

    // Verdict, in the gateway's order: missing token, invalid token, route checks.
    let required = route.access.providers();
    let decoded: BTreeMap<String, Map<String, Value>> = tokens
        .iter()
        .filter(|t| required.contains(&t.provider))
        .filter_map(|t| t.claims.clone().map(|c| (t.provider.clone(), c)))
        .collect();
    let presented: Vec<&str> = tokens
        .iter()
        .filter(|t| required.contains(&t.provider))
        .map(|t| t.provider.as_str())
        .collect();
    let missing: Vec<&str> = match &route.access {
        Access::Public => vec![],
        Access::All(p) => p
            .iter()
            .map(String::as_str)
            .filter(|p| !presented.contains(p))
            .collect(),
        Access::Any(p) if presented.is_empty() => p.iter().map(String::as_str).collect(),
        Access::Any(_) => vec![],
    };
    let invalid: Vec<String> = tokens
        .iter()
        .filter(|t| required.contains(&t.provider))
        .filter_map(|t| t.problem.as_ref().map(|p| format!("{}: {p}", t.provider)))
        .collect();

    println!();
    println!("route checks (the gateway's evaluation code; token claims as decoded)");
    let explanation = policy.explain(route, &decoded);
    for step in &explanation.steps {
        println!(
            "  [{}] {}: {}",
            if step.passed { "ok" } else { "FAIL" },
            step.check,
            step.detail
        );
    }

    println!();
    if !missing.is_empty() {
        println!(
            "verdict   401 missing_token: no token for {} (pass --token NAME=JWT)",
            missing.join(", ")
        );
    } else if !invalid.is_empty() {
        println!("verdict   401 invalid_token: {}", invalid.join("; "));
    } else {
        match &explanation.outcome {
            Ok(plan) => print_allow(route, &path, plan, !raw_tokens.is_empty()),
            Err(Denial::UnforwardableClaim) => println!(
                "verdict   401 invalid_token (unforwardable_claim): a forwarded claim is not printable ASCII within 1 KiB"
            ),
            Err(d) => println!("verdict   403 insufficient_scope ({d})"),
        }
    }
    ExitCode::SUCCESS
}

fn print_allow(route: &Route, path: &str, plan: &HeaderPlan, had_tokens: bool) {
    let note = if route.is_public() {
        "public route, no token verified"
    } else if had_tokens {
        "if the signatures and bindings verify"
    } else {
        ""
    };
    println!(
        "verdict   ALLOW{}: forward to {}{path}",
        if note.is_empty() {
            String::new()
        } else {
            format!(" ({note})")
        },
        route.origin.trim_end_matches('/')
    );
    println!(
        "  strip   every inbound {}* header{}",
        plan.strip_prefix,
        if plan.strip.is_empty() {
            String::new()
        } else {
            format!(", and {}", plan.strip.join(", "))
        }
    );
    for (name, value) in &plan.set {
        println!("  set     {name}: {value}");
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}\n{USAGE}");
    ExitCode::FAILURE
}

/// `https://host:port/path?query` -> (host:port, /path), exactly as the gateway splits it; a bare
/// `/path` has no host.
fn split_url(url: &str) -> (String, String) {
    match split_request_url(url) {
        Some((host, path)) => (host.to_owned(), path.to_owned()),
        None => {
            let path = url.split(['?', '#']).next().unwrap_or("");
            (String::new(), path.to_owned())
        }
    }
}

fn decode_part(part: &str) -> Result<Map<String, Value>, String> {
    let bytes =
        Base64UrlUnpadded::decode_vec(part).map_err(|_| "not strict base64url".to_owned())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".to_owned()),
        Err(e) => Err(format!("not JSON ({e})")),
    }
}

fn decode_token(provider: &str, jwt: &str) -> Token {
    let mut token = Token {
        provider: provider.to_owned(),
        header: None,
        claims: None,
        problem: None,
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        token.problem = Some(format!(
            "not a compact JWS ({} segments, need 3)",
            parts.len()
        ));
        return token;
    }
    match (decode_part(parts[0]), decode_part(parts[1])) {
        (Ok(h), Ok(c)) => {
            println!("  header  {}", Value::Object(h.clone()));
            println!("  payload {}", Value::Object(c.clone()));
            token.header = Some(h);
            token.claims = Some(c);
        }
        (Err(e), _) => token.problem = Some(format!("header {e}")),
        (_, Err(e)) => token.problem = Some(format!("payload {e}")),
    }
    token
}

/// The provider's token checks that explain can do without keys; prints each, returns the first
/// failure.
fn token_checks(
    p: &Provider,
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    now: i64,
    skew: i64,
) -> Option<String> {
    let mut first: Option<String> = None;
    let mut report = |ok: bool, what: String| {
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok && first.is_none() {
            first = Some(what);
        }
    };
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    report(
        p.allows_alg(alg),
        format!(
            "alg {alg:?} in [{}]",
            p.algorithms
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let typ = header.get("typ").and_then(Value::as_str);
    report(
        typ.is_some_and(|t| p.accepts_typ(t)),
        format!(
            "typ {} in [{}]",
            typ.map_or_else(|| "absent".to_owned(), |t| format!("{t:?}")),
            p.token_types.join(", ")
        ),
    );
    if let Some(iss) = &p.issuer {
        let got = claims.get("iss").and_then(Value::as_str);
        report(
            got == Some(iss.as_str()),
            format!(
                "iss {} = {iss:?}",
                got.map_or_else(|| "absent".to_owned(), |t| format!("{t:?}"))
            ),
        );
    }
    if !p.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => p.audiences.contains(a),
            Some(Value::Array(list)) => list.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| p.audiences.iter().any(|x| x == a))
            }),
            _ => false,
        };
        report(
            ok,
            format!(
                "aud {} has one of [{}]",
                claims
                    .get("aud")
                    .map_or("absent".to_owned(), Value::to_string),
                p.audiences.join(", ")
            ),
        );
    }
    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    match time("exp") {
        Some(exp) => report(
            now <= exp + skew,
            format!(
                "exp {exp} vs now {now} (skew {skew}s): {}",
                relative(exp - now)
            ),
        ),
        None => report(
            false,
            "exp is required (absent or not an integer)".to_owned(),
        ),
    }
    if let Some(nbf) = time("nbf") {
        report(
            nbf <= now + skew,
            format!("nbf {nbf} vs now {now}: {}", relative(nbf - now)),
        );
    }
    if let Some(iat) = time("iat") {
        report(
            iat <= now + skew,
            format!("iat {iat} vs now {now}: {}", relative(iat - now)),
        );
    }
    if let (max, Some(exp)) = (p.max_lifetime_secs, time("exp")) {
        let start = time("iat").unwrap_or(now);
        let life = exp - start;
        report(
            life <= max as i64,
            format!("lifetime {life}s <= max_lifetime_secs {max}"),
        );
    }
    for c in &p.required_claims {
        report(
            c.lookup(claims).is_some_and(|v| !v.is_null()),
            format!("required claim {} present", c.as_str()),
        );
    }
    if p.replay_jti {
        report(
            claims.contains_key("jti"),
            "jti present (replay = \"jti\")".to_owned(),
        );
    }
    let mut not_checked = vec!["signature".to_owned()];
    if p.dpop {
        not_checked.push("DPoP proof".to_owned());
    }
    if let Some(b) = &p.binding {
        not_checked.push(format!("binding {} to header {}", b.claim, b.header));
    }
    if let Some(n) = &p.nonce_claim {
        not_checked.push(format!("challenge nonce in {n}"));
    }
    if p.replay_jti {
        not_checked.push("jti first use".to_owned());
    }
    println!("  [--] not checked by explain: {}", not_checked.join(", "));
    first
}

fn relative(delta: i64) -> String {
    if delta >= 0 {
        format!("in {delta}s")
    } else {
        format!("{}s ago", -delta)
    }
}
