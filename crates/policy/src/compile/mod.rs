//! The policy compiler: merges the files of the policy folder and checks everything that can be
//! checked before deploy. Every problem is reported (not only the first), each naming the file, the
//! route id or provider name and the field.
//!
//! Split by concern:
//! - `gateway.rs`: the one `[gateway]` table.
//! - `provider.rs`: each `[provider.NAME]`, and the provider conflicts (issue 12 item 6).
//! - `route.rs`: each `[[route]]`, its claim rules, and the route overlap, variant and host
//!   analyses.
//! - `syntax.rs`: the value validators (URL, host, header name, token, identifiers).
//!
//! This module merges the files, picks the one `[gateway]`, keeps provider names and route ids
//! unique, runs the cross checks and builds the [`Policy`].

mod audit;
pub mod deny;
mod gateway;
pub mod intent;
pub mod mask;
mod provider;
mod receipt;
// Routes by the ids the route index gave out, and `&required[i + 1..]` after `enumerate`.
#[allow(clippy::indexing_slicing)]
mod route;
mod syntax;
mod upstream;

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Location, PolicyError, Warning};
use crate::matcher::{RouteIndex, Segment};
use crate::model::{defaults, GatewayConfig, SourceFile};
use crate::policy::{Policy, Provider, Route, Upstream};

pub use audit::AuditMode;
#[cfg(not(target_arch = "wasm32"))]
use provider::token_state_conflicts;
pub use provider::{DEFAULT_MAX_LIFETIME_SECS, MAX_LIFETIME_SECS};
pub use receipt::{DEFAULT_RECEIPT_TTL_SECS, MAX_RECEIPT_TTL_SECS};
use route::overlap;
pub use route::MAX_DELEGATION_DEPTH;
#[cfg(not(target_arch = "wasm32"))]
use route::{host_warnings, variant_warnings};
pub use route::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BODY_DEPTH, MAX_BODY_BYTES, MAX_BODY_DEPTH};
use syntax::{check_url, Scheme};
pub use upstream::{
    DEFAULT_GATEWAY_JWT_SECS, DEFAULT_REFRESH_MARGIN_SECS, DEFAULT_TOKEN_TIMEOUT_SECS,
    MAX_GATEWAY_JWT_SECS,
};

/// Compile the merged policy. On success the policy carries its warnings
/// ([`Policy::warnings`]); on failure every error found is returned.
// The overlap check indexes routes by the ids the route index gave out, and each group after
// `enumerate`.
#[allow(clippy::indexing_slicing)]
pub fn compile(files: Vec<SourceFile>) -> Result<Policy, Vec<PolicyError>> {
    let mut cx = Cx::default();

    // ---- [gateway]: exactly one ---------------------------------------------------------------
    let gateways: Vec<(&str, &GatewayConfig)> = files
        .iter()
        .filter_map(|f| f.model.gateway.as_ref().map(|g| (f.name.as_str(), g)))
        .collect();
    let fallback = GatewayConfig {
        origin: "https://origin.invalid".to_owned(),
        realm: None,
        clock_skew_secs: defaults::clock_skew_secs(),
        claims_header_prefix: defaults::claims_header_prefix(),
        challenge_path: defaults::challenge_path(),
        challenge_ttl_secs: defaults::challenge_ttl_secs(),
        allow_insecure_http: false,
        nonce_shards: defaults::nonce_shards(),
        case_sensitive_paths: false,
        origin_timeout_secs: defaults::origin_timeout_secs(),
        log_allow_sample: defaults::log_allow_sample(),
        issuer: None,
    };
    let (gateway_file, gateway_config) = match gateways.as_slice() {
        [] => {
            let file = files.first().map_or("<policy>", |f| f.name.as_str());
            cx.error(
                Location::file(file),
                "no [gateway] table in any policy file (exactly one is required)",
            );
            (file, &fallback)
        }
        [one] => *one,
        [first, rest @ ..] => {
            for (file, _) in rest {
                cx.error(
                    Location::file(file),
                    format!(
                        "second [gateway] table (the first is in {}); exactly one is allowed across all files",
                        first.0
                    ),
                );
            }
            *first
        }
    };
    let gateway = cx.gateway(gateway_file, gateway_config);

    // ---- providers: unique names across files ------------------------------------------------
    let mut providers: BTreeMap<String, Provider> = BTreeMap::new();
    let mut provider_files: BTreeMap<&str, &str> = BTreeMap::new();
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for f in &files {
        for name in f.model.provider.keys() {
            if let Some(first) = provider_files.get(name.as_str()) {
                cx.error(
                    Location::provider(&f.name, name, "name"),
                    format!("provider {name:?} is also defined in {first}; names are unique across files"),
                );
            } else {
                provider_files.insert(name, &f.name);
                known.insert(name);
            }
        }
    }
    for f in &files {
        for (name, config) in &f.model.provider {
            if provider_files.get(name.as_str()) != Some(&f.name.as_str()) {
                continue;
            }
            if let Some(p) = cx.provider(&f.name, name, config, &gateway) {
                providers.insert(name.clone(), p);
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    token_state_conflicts(&mut cx, &providers, &files);

    // ---- upstreams (issue 14): unique names across files ------------------------------------
    let mut upstreams: BTreeMap<String, Upstream> = BTreeMap::new();
    let mut upstream_files: BTreeMap<&str, &str> = BTreeMap::new();
    for f in &files {
        for (name, config) in &f.model.upstreams {
            if let Some(first) = upstream_files.get(name.as_str()) {
                cx.error(
                    Location::upstream(&f.name, name, "name"),
                    format!("upstream {name:?} is also defined in {first}; names are unique across files"),
                );
                continue;
            }
            upstream_files.insert(name, &f.name);
            if let Some(u) = cx.upstream(&f.name, name, config, &gateway, &known) {
                upstreams.insert(name.clone(), u);
            }
        }
    }

    // ---- routes: unique ids across files -------------------------------------------------------
    let mut routes: Vec<Route> = Vec::new();
    let mut route_files: BTreeMap<&str, &str> = BTreeMap::new();
    for f in &files {
        for config in &f.model.route {
            if let Some(first) = route_files.get(config.id.as_str()) {
                cx.error(
                    Location::route(&f.name, &config.id, "id"),
                    format!(
                        "route id {:?} is already used by {first}#{}; ids are unique across files",
                        config.id, config.id
                    ),
                );
                continue;
            }
            route_files.insert(&config.id, &f.name);
            if let Some(route) = cx.route(&f.name, config, &gateway, &known, &providers, &upstreams)
            {
                routes.push(route);
            }
        }
    }

    // ---- issue 16: [operator], [deny], each route's deny_check ---------------------------------
    let operator = cx.operator(&files, &providers, &known);
    let deny = cx.deny(&files);
    let shared_signals = cx.shared_signals(&files, &providers, &known, &gateway.challenge_path);
    cx.deny_checks(&files, &mut routes, deny.as_ref());

    // ---- cross checks ---------------------------------------------------------------------------
    let index = RouteIndex::build(&mut routes.iter().map(|r| &r.path));
    for group in index.groups() {
        for (i, &a) in group.iter().enumerate() {
            for &b in &group[i + 1..] {
                let (ra, rb) = (&routes[a as usize], &routes[b as usize]);
                if let Some(overlap) = overlap(ra, rb) {
                    cx.error(
                        Location::route(&rb.file, &rb.id, "path"),
                        format!(
                            "routes {} and {} are ambiguous: both match {overlap} with the same specificity (pattern {}); change a path, or make methods or hosts disjoint",
                            ra.qualified_name(),
                            rb.qualified_name(),
                            rb.path.shape()
                        ),
                    );
                }
            }
        }
    }
    // Build-time diagnostics only: the Worker re-compiles a policy the build already checked,
    // and never shows warnings (keeps the analysis out of the wasm).
    #[cfg(not(target_arch = "wasm32"))]
    {
        variant_warnings(&mut cx, &routes, &index, !gateway.case_sensitive_paths);
        host_warnings(&mut cx, &routes, &index);
    }
    for r in &routes {
        let literal_only = r
            .path
            .segments()
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)));
        if literal_only && r.path.as_str() == gateway.challenge_path {
            cx.warning(
                Location::route(&r.file, &r.id, "path"),
                format!(
                    "{} is the challenge_path: the challenge endpoint answers it first, this route never sees a request",
                    r.path
                ),
            );
        }
    }
    let used: BTreeSet<&str> = routes
        .iter()
        .flat_map(|r| r.access.providers().iter().map(String::as_str))
        .chain(operator.as_ref().map(|o| o.provider.as_str()))
        .chain(
            shared_signals
                .iter()
                .flat_map(|s| s.transmitters.iter().map(String::as_str)),
        )
        .collect();
    for p in providers.values() {
        if !used.contains(p.name.as_str()) {
            cx.warning(
                Location::provider(&p.file, &p.name, "name"),
                "no route requires this provider",
            );
        }
    }

    for u in upstreams.values() {
        if !routes
            .iter()
            .any(|r| r.upstream.as_deref() == Some(u.name.as_str()))
        {
            cx.warning(
                Location::upstream(&u.file, &u.name, "name"),
                "no route uses this upstream",
            );
        }
    }

    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    let mut policy = Policy {
        protected_upper_literal: false,
        protected_trailing_slash: false,
        folded: None,
        gateway,
        providers: providers.into_values().collect(),
        upstreams: upstreams.into_values().collect(),
        routes,
        index: RouteIndex::default(),
        sources: files,
        warnings: cx.warnings,
        operator,
        deny,
        shared_signals,
    };
    policy.index_routes();
    Ok(policy)
}

#[derive(Default)]
struct Cx {
    errors: Vec<PolicyError>,
    warnings: Vec<Warning>,
}

impl Cx {
    fn error(&mut self, location: Location, message: impl Into<String>) {
        self.errors.push(PolicyError::new(location, message));
    }

    fn warning(&mut self, location: Location, message: impl Into<String>) {
        self.warnings.push(Warning::new(location, message));
    }

    /// Check a URL field; `at` builds the location. Returns false on error.
    fn url(
        &mut self,
        at: &dyn Fn() -> Location,
        url: &str,
        allow_insecure: bool,
        allow_query: bool,
    ) -> bool {
        match check_url(url, allow_query) {
            Err(m) => {
                self.error(at(), m);
                false
            }
            Ok(Scheme::Https) => true,
            Ok(Scheme::Http) if allow_insecure => {
                self.warning(
                    at(),
                    format!("{url:?} is plain http:// (allowed by allow_insecure_http; never in production)"),
                );
                true
            }
            Ok(Scheme::Http) => {
                self.error(
                    at(),
                    format!("{url:?} is http://, which is refused: use https:// (allow_insecure_http = true in [gateway] is for local development only)"),
                );
                false
            }
        }
    }
}

fn unknown_provider(name: &str, known: &BTreeSet<&str>) -> String {
    let list: Vec<&str> = known.iter().copied().collect();
    format!(
        "unknown provider {name:?} (defined: {})",
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    )
}
