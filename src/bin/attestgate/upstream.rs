//! What `explain` says about a route's upstream (issue 14): where the request goes, what the
//! gateway injects there (kind, header, scheme, the names of the secrets it reads: never a
//! value) and what it strips before.

use attestgate::api::Gate;
use attestgate::policy::{Auth, Policy, Route};

/// One line per fact about the upstream of `route`, for `explain` (empty: a route with
/// `origin`, the implicit upstream that injects nothing).
pub fn lines(policy: &Policy, gate: &Gate, route: &Route) -> Vec<String> {
    let Some(u) = policy.route_upstream(route) else {
        return Vec::new();
    };
    let mut out = vec![format!("upstream  {} ({}): {}", u.name, u.file, u.url)];
    match &u.auth {
        None => out.push("  inject  nothing (no auth)".to_owned()),
        Some(auth) => {
            let at = auth.header();
            let value = match auth {
                Auth::Static { .. } => "the secret's value".to_owned(),
                Auth::ClientCredentials { client, .. } => format!(
                    "an access token from {} (client_credentials{}), cached until expires_in - {} s",
                    client.token_url,
                    client.scope.as_deref().map(|s| format!(", scope {s}")).unwrap_or_default(),
                    client.refresh_margin_secs
                ),
                Auth::TokenExchange { client, subject, .. } => format!(
                    "an access token from {} (RFC 8693: {subject}'s verified token as subject_token, the gateway's assertion as actor_token{}{}), cached per principal, act chain and scopes",
                    client.token_url,
                    client.audience.as_deref().map(|a| format!(", audience {a}")).unwrap_or_default(),
                    client.scope.as_deref().map(|s| format!(", scope {s}")).unwrap_or_default(),
                ),
                Auth::GatewayJwt {
                    audience,
                    subject,
                    lifetime_secs,
                    ..
                } => format!(
                    "a JWT signed with the gateway key (aud {audience}, {subject}'s sub and act chain, {lifetime_secs} s)"
                ),
            };
            let header = match &at.scheme {
                Some(s) => format!("{}: {s} <{value}>", at.header),
                None => format!("{}: <{value}>", at.header),
            };
            out.push(format!("  inject  {} into {header}", auth.kind()));
            let secrets = auth.secrets();
            if !secrets.is_empty() {
                out.push(format!(
                    "          Worker secrets read: {} (values never shown)",
                    secrets.join(", ")
                ));
            }
        }
    }
    let strips: Vec<&str> = gate
        .consumed(route)
        .iter()
        .chain(gate.strips(route))
        .map(String::as_str)
        .collect();
    if !strips.is_empty() {
        out.push(format!(
            "  strip   {} (every _/- spelling)",
            strips.join(", ")
        ));
    }
    out
}
