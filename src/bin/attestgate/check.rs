//! `attestgate check [DIR]`: compile a policy folder exactly as the Worker's build does and list
//! the resolved gateway, providers and routes; on errors print them and exit with status 1.

use std::process::ExitCode;

use attestgate::api;
use attestgate::policy::{KeyOrigin, Policy, PolicyError, Provider, Route};

use crate::usage;

/// Compile `dir`, printing the errors when it does not compile.
pub fn load(dir: &str) -> Result<Policy, ExitCode> {
    match api::compile_dir(dir) {
        Ok(policy) => Ok(policy),
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

pub fn check(args: &[String]) -> ExitCode {
    let dir = match args {
        [] => "policies",
        [dir] => dir.as_str(),
        _ => return usage("check takes at most one folder"),
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
        KeyOrigin::JwksUri(u) => println!("    keys        {u} (cached {}s)", p.jwks_cache_secs),
        KeyOrigin::Jwks(_) => println!("    keys        inline jwks"),
        KeyOrigin::Secrets(list) => {
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

pub fn requirement(r: &Route) -> String {
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
