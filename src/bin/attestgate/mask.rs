//! `attestgate explain`: the response mask a request would get (issue 18).

use attestgate::gate::mask::{applies_to, MaskWhy};
use attestgate::policy::{Mask, MaskAction, Route};
use serde_json::{Map, Value};

fn why(w: MaskWhy) -> &'static str {
    match w {
        MaskWhy::Always => "always = true",
        MaskWhy::Agent => "a token carries an act chain (an agent caller)",
        MaskWhy::AgentProvider => "a token of an agent_providers provider",
        MaskWhy::Unattested => "no token of the unattested providers (attestation missing)",
    }
}

/// The route's mask rules, under the route.
pub fn print_rules(route: &Route) {
    let Some(m) = &route.mask else { return };
    let w = &m.when;
    let mut when = Vec::new();
    if w.always {
        when.push("always".to_owned());
    }
    if w.agent {
        when.push("agent (act)".to_owned());
    }
    if !w.agent_providers.is_empty() {
        when.push(format!("agent_providers {}", w.agent_providers.join(",")));
    }
    if !w.unattested.is_empty() {
        when.push(format!("unattested {}", w.unattested.join(",")));
    }
    println!("mask      when {}", when.join(" or "));
    for r in &m.rules {
        let action = match &r.action {
            MaskAction::Redact(with) => format!("redact -> {with}"),
            MaskAction::Hash => format!(
                "hash -> \"h:...\" (HMAC-SHA-256, secret {})",
                m.secret.as_deref().unwrap_or("?")
            ),
            MaskAction::Last4 => "last4 -> \"****1234\"".to_owned(),
            MaskAction::Drop => "drop".to_owned(),
        };
        println!("  rule    {}  {action}", r.path);
    }
}

/// Whether the mask applies to a caller with these (provider, claims) tokens.
pub fn print_decision(mask: &Mask, tokens: &[(&str, &Map<String, Value>)]) {
    match applies_to(mask, tokens) {
        Some(w) => println!(
            "  mask    APPLIES: {}; the JSON answer is masked by the rules above (Attestgate-Masked: count)",
            why(w)
        ),
        None => println!("  mask    does not apply to this caller: the answer passes unmasked (with Vary)"),
    }
}
