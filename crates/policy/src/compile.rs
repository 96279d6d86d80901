//! The policy compiler: merges the files of the policy folder and checks everything that can be
//! checked before deploy. Every problem is reported (not only the first), each naming the file, the
//! route id or provider name and the field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::alg::Alg;
use crate::diag::{Location, PolicyError, Warning};
use crate::matcher::{check_path, PathPattern, RouteIndex, Segment};
use crate::model::{
    defaults, ConstraintConfig, GatewayConfig, ProviderConfig, RouteConfig, SecretConfig,
    SourceFile,
};
use crate::policy::{
    Access, Binding, ClaimPath, ClaimRule, Delegation, ForwardRule, Gateway, KeyOrigin, MemberPath,
    Policy, Provider, Route, Secret, TokenLocation, PASSABLE_HEADERS, ROUTE_HEADER, SET_FORWARDED,
};

/// Longest forwarded / token header name accepted.
const MAX_HEADER_NAME: usize = 128;
/// Deepest `act` chain a route may allow.
pub const MAX_DELEGATION_DEPTH: u32 = 16;
/// `max_lifetime_secs` of a provider that does not set it: one day. Without a bound, a token with
/// `exp` = i64::MAX would be valid forever.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 86_400;
/// The largest `max_lifetime_secs` a policy may set: 365 days.
pub const MAX_LIFETIME_SECS: u64 = 31_536_000;

/// Compile the merged policy. On success the policy carries its warnings
/// ([`Policy::warnings`]); on failure every error found is returned.
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
            if let Some(route) = cx.route(&f.name, config, &gateway, &known, &providers) {
                routes.push(route);
            }
        }
    }

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
        .collect();
    for p in providers.values() {
        if !used.contains(p.name.as_str()) {
            cx.warning(
                Location::provider(&p.file, &p.name, "name"),
                "no route requires this provider",
            );
        }
    }

    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    let protected: Vec<&Route> = routes.iter().filter(|r| !r.is_public()).collect();
    let folded = (!protected.is_empty()).then(|| {
        let patterns: Vec<PathPattern> = routes
            .iter()
            .map(|r| r.path.folded(!gateway.case_sensitive_paths))
            .collect();
        RouteIndex::build(&mut patterns.iter())
    });
    Ok(Policy {
        protected_upper_literal: protected.iter().any(|r| r.path.has_upper_literal()),
        protected_trailing_slash: protected.iter().any(|r| r.path.has_trailing_slash()),
        folded,
        gateway,
        providers: providers.into_values().collect(),
        routes,
        index,
        sources: files,
        warnings: cx.warnings,
    })
}

/// Issue 12 item 6: a token's state (DPoP binding, single use, `pay` binding, challenge nonce)
/// belongs to the token, not to the provider that happened to check it. Two providers that may
/// accept the same tokens ([`Provider::may_accept_same_tokens`]) but differ in `proof`, `replay`,
/// `binding` or `nonce_claim` are an error on the provider that lacks the other's setting,
/// unless it lists the other in `weakens` (both, when both have the check with different
/// values). `weakens` naming an unknown provider is an error; one with nothing to acknowledge, a
/// warning.
#[cfg(not(target_arch = "wasm32"))]
fn token_state_conflicts(
    cx: &mut Cx,
    providers: &BTreeMap<String, Provider>,
    files: &[SourceFile],
) {
    let checks = |p: &Provider| -> [(&'static str, Option<String>); 4] {
        [
            ("proof", p.dpop.then(|| "proof = \"dpop\"".to_owned())),
            (
                "replay",
                p.replay_jti.then(|| "replay = \"jti\"".to_owned()),
            ),
            (
                "binding",
                p.binding.as_ref().map(|b| {
                    format!(
                        "binding = {{ claim = {:?}, header = {:?} }}",
                        b.claim.as_str(),
                        b.header
                    )
                }),
            ),
            (
                "nonce_claim",
                p.nonce_claim
                    .as_ref()
                    .map(|n| format!("nonce_claim = {:?}", n.as_str())),
            ),
        ]
    };
    for weak in providers.values() {
        let at = |field: &str| Location::provider(&weak.file, &weak.name, field);
        for listed in &weak.weakens {
            match providers.get(listed) {
                None if !files.iter().any(|f| f.model.provider.contains_key(listed)) => {
                    let known: BTreeSet<&str> = providers.keys().map(String::as_str).collect();
                    cx.error(at("weakens"), unknown_provider(listed, &known));
                }
                None => {}
                Some(p) if p.name == weak.name => {
                    cx.error(at("weakens"), "a provider cannot weaken itself")
                }
                Some(strong) => {
                    let differs = checks(weak)
                        .iter()
                        .zip(checks(strong).iter())
                        .any(|((_, w), (_, s))| s.is_some() && w != s);
                    if !weak.may_accept_same_tokens(strong) || !differs {
                        cx.warning(
                            at("weakens"),
                            format!("lists {listed:?}, but no token accepted by both lacks a check of {listed:?}: nothing to acknowledge"),
                        );
                    }
                }
            }
        }
        for strong in providers.values() {
            if strong.name == weak.name || !weak.may_accept_same_tokens(strong) {
                continue;
            }
            if weak.weakens.contains(&strong.name) {
                continue;
            }
            for ((field, w), (_, s)) in checks(weak).iter().zip(checks(strong).iter()) {
                let Some(stronger) = s else { continue };
                if w == s {
                    continue;
                }
                let own = match w {
                    Some(w) => format!("has {w} instead"),
                    None => "does not".to_owned(),
                };
                cx.error(
                    at(field),
                    format!(
                        "providers {:?} and {:?} can accept the same tokens (same {}, overlapping audiences, algorithms and token types), but {:?} checks {stronger} and {:?} {own}: a token refused by {:?} would pass through {:?}; make the issuers, audiences or token types disjoint, give both the same check, or acknowledge the weakening with weakens = [{:?}] on provider {:?}",
                        weak.name,
                        strong.name,
                        if weak.secrets().is_empty() { "issuer" } else { "HMAC secret" },
                        strong.name,
                        weak.name,
                        strong.name,
                        weak.name,
                        strong.name,
                        weak.name
                    ),
                );
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// SPEC §2: a request that differs from a more protected route only by ASCII case or a trailing
/// slash is never routed to a less protected one. The lookup refuses such requests; the compiler
/// says where a weaker route would otherwise catch them (`public /**` next to `/admin/**`).
fn variant_warnings(cx: &mut Cx, routes: &[Route], index: &RouteIndex, fold_case: bool) {
    for p in routes.iter().filter(|r| !r.is_public()) {
        for q in index.candidates(&p.path, fold_case) {
            let q = &routes[q as usize];
            if std::ptr::eq(p, q) || q.covers(p) || !hosts_overlap(p, q) {
                continue;
            }
            let (case, slash) = crate::matcher::variants(&p.path, &q.path, fold_case);
            let what = match (case, slash) {
                (true, true) => "ASCII case or a trailing slash",
                (true, false) => "ASCII case",
                (false, true) => "a trailing slash",
                (false, false) => continue,
            };
            let hint = if case {
                " (if the origin compares paths case-sensitively, set case_sensitive_paths = true in [gateway])"
            } else {
                ""
            };
            cx.warning(
                Location::route(&p.file, &p.id, "path"),
                format!(
                    "requests that differ from {} only by {what} match the less protected route {} ({}); the gateway refuses them with 400 invalid_request, since an origin that ignores {what} would serve this route's resource{hint}",
                    p.path,
                    q.qualified_name(),
                    q.path
                ),
            );
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Issue 12 item 3: the origin only sees the path (the gateway replaces `Host`), so routes for
/// different hosts that send overlapping paths to one origin look the same to it.
fn host_warnings(cx: &mut Cx, routes: &[Route], index: &RouteIndex) {
    for (ai, a) in routes.iter().enumerate() {
        let Some(host) = &a.host else { continue };
        for qi in index.candidates(&a.path, false) {
            let q = &routes[qi as usize];
            let other_host = match &q.host {
                Some(h) if h == host => continue,
                // a pair of host-specific routes is reported once
                Some(_) if (qi as usize) < ai => continue,
                Some(h) => format!("host {h}"),
                None => "every host".to_owned(),
            };
            if q.origin != a.origin
                || methods_overlap(a, q).is_none()
                || !crate::matcher::meet(a.path.segments(), q.path.segments(), false, false, false)
            {
                continue;
            }
            cx.warning(
                Location::route(&a.file, &a.id, "host"),
                format!(
                    "routes {} (host {host}, {}) and {} ({other_host}, {}) send overlapping paths to the same origin {}, which cannot tell which host was authorised except by the X-Forwarded-Host header the gateway sets; give host-specific routes their own origin, or make the origin check X-Forwarded-Host",
                    a.qualified_name(),
                    a.path,
                    q.qualified_name(),
                    q.path,
                    a.origin
                ),
            );
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn hosts_overlap(a: &Route, b: &Route) -> bool {
    match (&a.host, &b.host) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

/// The methods two routes both take (GET implies HEAD), `None` if disjoint; `Some("every
/// method")` when neither lists methods.
fn methods_overlap(a: &Route, b: &Route) -> Option<String> {
    let expand = |m: &Vec<String>| {
        let mut out = m.clone();
        if out.iter().any(|m| m == "GET") && !out.iter().any(|m| m == "HEAD") {
            out.push("HEAD".to_owned());
        }
        out
    };
    match (&a.methods, &b.methods) {
        (None, None) => Some("every method".to_owned()),
        (Some(m), None) | (None, Some(m)) => Some(expand(m).join(", ")),
        (Some(x), Some(y)) => {
            let y = expand(y);
            let common: Vec<String> = expand(x).into_iter().filter(|m| y.contains(m)).collect();
            (!common.is_empty()).then(|| common.join(", "))
        }
    }
}

/// What two routes of the same shape both match, if anything: `GET, POST on every host` (GET
/// implies HEAD).
fn overlap(a: &Route, b: &Route) -> Option<String> {
    let methods = methods_overlap(a, b)?;
    let hosts = match (&a.host, &b.host) {
        (None, None) => "every host".to_owned(),
        (Some(h), None) | (None, Some(h)) => format!("host {h}"),
        (Some(x), Some(y)) if x == y => format!("host {x}"),
        _ => return None,
    };
    Some(format!("{methods} on {hosts}"))
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

    fn gateway(&mut self, file: &str, g: &GatewayConfig) -> Gateway {
        let at = |field: &str| Location::gateway(file, field);
        if g.allow_insecure_http {
            self.warning(
                at("allow_insecure_http"),
                "allow_insecure_http = true: http:// JWKS and origin URLs are accepted; for local development and tests only, never deploy this",
            );
        }
        self.url(&|| at("origin"), &g.origin, g.allow_insecure_http, false);
        let realm = match &g.realm {
            Some(r) => r.clone(),
            None => url_host(&g.origin).unwrap_or_default().to_owned(),
        };
        if realm.is_empty()
            || realm.len() > 256
            || !realm
                .bytes()
                .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        {
            self.error(
                at("realm"),
                format!(
                    "{realm:?} must be 1 to 256 printable ASCII characters without '\"' or '\\'"
                ),
            );
        }
        if g.clock_skew_secs > 600 {
            self.error(
                at("clock_skew_secs"),
                format!("{} is more than 600 seconds", g.clock_skew_secs),
            );
        }
        let prefix = &g.claims_header_prefix;
        if !is_lower_header_name(prefix) || !prefix.ends_with('-') || prefix.len() < 3 {
            self.error(
                at("claims_header_prefix"),
                format!("{prefix:?} must be a lowercase header-name prefix of at least 3 characters ending with \"-\" (like \"x-verified-\")"),
            );
        }
        let cp = &g.challenge_path;
        match (check_path(cp), PathPattern::parse(cp)) {
            (Ok(()), Ok(p))
                if p.segments()
                    .iter()
                    .all(|s| matches!(s, Segment::Literal(_))) =>
            {
                if cp == "/" || cp.ends_with('/') {
                    self.error(
                        at("challenge_path"),
                        format!("{cp:?} must name a resource, not \"/\" or a folder (no trailing \"/\")"),
                    );
                }
            }
            (Err(problem), _) => self.error(
                at("challenge_path"),
                format!("{cp:?} is not a normalised absolute path: {problem}"),
            ),
            _ => self.error(
                at("challenge_path"),
                format!("{cp:?} must be a literal path (no parameters or wildcards)"),
            ),
        }
        if !(1..=3600).contains(&g.challenge_ttl_secs) {
            self.error(
                at("challenge_ttl_secs"),
                format!("{} is not in 1..=3600", g.challenge_ttl_secs),
            );
        }
        if !(1..=64).contains(&g.nonce_shards) {
            self.error(
                at("nonce_shards"),
                format!("{} is not in 1..=64", g.nonce_shards),
            );
        }
        if !(1..=900).contains(&g.origin_timeout_secs) {
            self.error(
                at("origin_timeout_secs"),
                format!("{} is not in 1..=900", g.origin_timeout_secs),
            );
        }
        Gateway {
            file: file.to_owned(),
            origin: g.origin.clone(),
            realm,
            clock_skew_secs: g.clock_skew_secs,
            claims_header_prefix: prefix.clone(),
            challenge_path: cp.clone(),
            challenge_ttl_secs: g.challenge_ttl_secs,
            allow_insecure_http: g.allow_insecure_http,
            nonce_shards: g.nonce_shards,
            case_sensitive_paths: g.case_sensitive_paths,
            origin_timeout_secs: g.origin_timeout_secs,
        }
    }

    fn provider(
        &mut self,
        file: &str,
        name: &str,
        p: &ProviderConfig,
        gateway: &Gateway,
    ) -> Option<Provider> {
        let before = self.errors.len();
        let at = |field: &str| Location::provider(file, name, field);

        if !is_identifier(name) {
            self.error(
                at("name"),
                format!("provider name {name:?} must be letters, digits, '_' or '-', starting with a letter, at most 64 characters"),
            );
        }
        if p.kind != "jwt" {
            self.error(
                at("kind"),
                format!("{:?} is not a known kind (only \"jwt\")", p.kind),
            );
        }

        // algorithms
        let mut algorithms: Vec<Alg> = Vec::new();
        if p.algorithms.is_empty() {
            self.error(at("algorithms"), "is empty: list the algorithms the issuer signs with (ES256, EdDSA, RS256 or HS256)");
        }
        for a in &p.algorithms {
            match Alg::from_header(a) {
                Some(alg) => {
                    if !algorithms.contains(&alg) {
                        algorithms.push(alg);
                    }
                }
                None => {
                    let hint = if Alg::from_header(&a.to_ascii_uppercase()).is_some()
                        || a.eq_ignore_ascii_case("eddsa")
                        || a.eq_ignore_ascii_case("ed25519")
                    {
                        " (names are case-sensitive)"
                    } else {
                        ""
                    };
                    self.error(
                        at("algorithms"),
                        format!("{a:?} is not a supported algorithm{hint}; use ES256, EdDSA (or Ed25519), RS256 or HS256"),
                    );
                }
            }
        }
        let hmac = algorithms.iter().any(|a| a.is_hmac());
        if hmac && algorithms.iter().any(|a| !a.is_hmac()) {
            self.error(
                at("algorithms"),
                "HS256 cannot be mixed with public-key algorithms in one provider (make two providers)",
            );
        }

        // key source: exactly one
        let with_secret = p.secret.is_some() || !p.secrets.is_empty();
        let sources = [
            p.jwks_uri.is_some(),
            p.jwks.is_some(),
            p.secret.is_some(),
            !p.secrets.is_empty(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        let mut keys = None;
        if sources != 1 {
            self.error(
                at("jwks_uri"),
                format!("exactly one key source is required: jwks_uri, jwks, secret or secrets ({sources} given)"),
            );
        } else if let Some(uri) = &p.jwks_uri {
            if self.url(&|| at("jwks_uri"), uri, gateway.allow_insecure_http, true) {
                keys = Some(KeyOrigin::JwksUri(uri.clone()));
            }
        } else if let Some(jwks) = &p.jwks {
            match check_inline_jwks(jwks) {
                Ok(()) => keys = Some(KeyOrigin::Jwks(jwks.clone())),
                Err(m) => self.error(at("jwks"), m),
            }
        } else if let Some(secret) = &p.secret {
            if is_secret_name(secret) {
                keys = Some(KeyOrigin::Secrets(vec![Secret {
                    name: secret.clone(),
                    kid: None,
                }]));
            } else {
                self.error(
                    at("secret"),
                    format!("{secret:?} is not a Worker secret name (letters, digits and '_', not starting with a digit)"),
                );
            }
        } else {
            keys = self
                .secrets(&at("secrets"), &p.secrets)
                .map(KeyOrigin::Secrets);
        }
        if hmac && !with_secret && sources == 1 {
            self.error(
                at("secret"),
                "HS256 needs secret = \"NAME\" or secrets = [{ name = \"NAME\", kid = \"...\" }, ...] (Worker secrets holding the HMAC keys); HMAC keys never come from a JWKS",
            );
        }
        if with_secret && sources == 1 && !algorithms.is_empty() && !hmac {
            self.error(
                at("algorithms"),
                "a provider with a secret only allows HS256 (public-key algorithms need jwks_uri or jwks)",
            );
        }

        // issuer and audiences: required for public-key providers
        let asymmetric = !with_secret;
        match &p.issuer {
            Some(iss) if iss.is_empty() || !is_printable(iss) => self.error(
                at("issuer"),
                "must be a non-empty printable ASCII string (compared exactly with `iss`)",
            ),
            None if asymmetric => self.error(
                at("issuer"),
                "is required for a provider with public keys (jwks_uri or jwks); only secret (HMAC) providers may omit it",
            ),
            _ => {}
        }
        if p.audiences.is_empty() && asymmetric {
            self.error(
                at("audiences"),
                "is required for a provider with public keys: list the `aud` values this gateway accepts",
            );
        }
        for a in &p.audiences {
            if a.is_empty() || !is_printable(a) {
                self.error(
                    at("audiences"),
                    format!("{a:?} must be a non-empty printable ASCII string"),
                );
            }
        }

        if p.token_types.is_empty() {
            self.error(
                at("token_types"),
                "is empty: omit it for the default [\"JWT\", \"at+jwt\"]",
            );
        }
        for t in &p.token_types {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                self.error(
                    at("token_types"),
                    format!("{t:?} is not a media type like \"at+jwt\""),
                );
            }
        }

        let header = p.from.header.to_ascii_lowercase();
        if !is_header_name(&p.from.header) {
            self.error(
                at("from"),
                format!("header {:?} is not a valid HTTP header name", p.from.header),
            );
        } else if header.starts_with(&gateway.claims_header_prefix) || header == ROUTE_HEADER {
            self.error(
                at("from"),
                format!(
                    "header {header:?} starts with the claims_header_prefix {:?}: those inbound headers are always stripped",
                    gateway.claims_header_prefix
                ),
            );
        }
        if let Some(s) = &p.from.scheme {
            if !is_token(s) {
                self.error(
                    at("from"),
                    format!("scheme {s:?} is not a valid authentication scheme (like \"Bearer\" or \"DPoP\")"),
                );
            }
        }

        if !(1..=86_400).contains(&p.jwks_cache_secs) {
            self.error(
                at("jwks_cache_secs"),
                format!("{} is not in 1..=86400", p.jwks_cache_secs),
            );
        }
        if p.jwks_max_stale_secs > 86_400 {
            self.error(
                at("jwks_max_stale_secs"),
                format!("{} is not in 0..=86400", p.jwks_max_stale_secs),
            );
        }
        let max_lifetime_secs = p.max_lifetime_secs.unwrap_or(DEFAULT_MAX_LIFETIME_SECS);
        if max_lifetime_secs == 0 {
            self.error(
                at("max_lifetime_secs"),
                format!("0 would refuse every token; omit it for the default of {DEFAULT_MAX_LIFETIME_SECS} s (one day)"),
            );
        } else if max_lifetime_secs > MAX_LIFETIME_SECS {
            self.error(
                at("max_lifetime_secs"),
                format!("{max_lifetime_secs} is more than {MAX_LIFETIME_SECS} s (365 days)"),
            );
        }
        let mut required_claims: Vec<MemberPath> = Vec::new();
        for c in &p.required_claims {
            match MemberPath::parse(c) {
                Err(m) => self.error(at("required_claims"), m),
                Ok(path)
                    if required_claims
                        .iter()
                        .any(|r| r.segments() == path.segments()) =>
                {
                    self.error(at("required_claims"), format!("{c:?} is listed twice"))
                }
                Ok(path) => required_claims.push(path),
            }
        }
        let replay_jti = match p.replay.as_deref() {
            None => false,
            Some("jti") => true,
            Some(other) => {
                self.error(
                    at("replay"),
                    format!("{other:?} is not supported (only \"jti\")"),
                );
                false
            }
        };
        let dpop = match p.proof.as_deref() {
            None => false,
            Some("dpop") => true,
            Some(other) => {
                self.error(
                    at("proof"),
                    format!("{other:?} is not supported (only \"dpop\")"),
                );
                false
            }
        };
        let mut binding = None;
        if let Some(b) = &p.binding {
            match MemberPath::parse(&b.claim) {
                Ok(claim) => {
                    binding = Some(Binding {
                        claim,
                        header: b.header.to_ascii_lowercase(),
                    })
                }
                Err(m) => self.error(at("binding"), format!("claim: {m}")),
            }
            if !is_header_name(&b.header) {
                self.error(
                    at("binding"),
                    format!("header {:?} is not a valid HTTP header name", b.header),
                );
            }
        }
        let nonce_claim = match p.nonce_claim.as_deref().map(MemberPath::parse) {
            None => None,
            Some(Ok(path)) => Some(path),
            Some(Err(m)) => {
                self.error(at("nonce_claim"), m);
                None
            }
        };

        if self.errors.len() != before {
            return None;
        }
        Some(Provider {
            name: name.to_owned(),
            file: file.to_owned(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            algorithms,
            token_types: p.token_types.clone(),
            from: TokenLocation {
                header,
                scheme: p.from.scheme.clone(),
            },
            keys: keys?,
            jwks_cache_secs: p.jwks_cache_secs,
            jwks_max_stale_secs: p.jwks_max_stale_secs,
            max_lifetime_secs,
            required_claims,
            replay_jti,
            dpop,
            binding,
            nonce_claim,
            weakens: p.weakens.clone(),
        })
    }

    fn route(
        &mut self,
        file: &str,
        r: &RouteConfig,
        gateway: &Gateway,
        known: &BTreeSet<&str>,
        providers: &BTreeMap<String, Provider>,
    ) -> Option<Route> {
        let before = self.errors.len();
        let id = r.id.as_str();
        let at = |field: &str| Location::route(file, id, field);

        if !is_route_id(id) {
            self.error(
                at("id"),
                format!("{id:?} must be 1 to 128 characters: letters, digits, '-', '_', '.' or ':', starting with a letter or digit"),
            );
        }

        // methods
        let methods = match &r.methods {
            None => None,
            Some(list) if list.is_empty() => {
                self.error(
                    at("methods"),
                    "is empty and would match nothing; omit it to allow every method",
                );
                None
            }
            Some(list) => {
                let mut out: Vec<String> = Vec::new();
                for m in list {
                    if !is_token(m) || m.bytes().any(|b| b.is_ascii_lowercase()) {
                        self.error(
                            at("methods"),
                            format!("{m:?} is not an uppercase HTTP method token (like \"GET\")"),
                        );
                    } else if out.contains(m) {
                        self.error(at("methods"), format!("{m:?} is listed twice"));
                    } else {
                        out.push(m.clone());
                    }
                }
                Some(out)
            }
        };

        // host
        let host = r.host.as_ref().map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            if let Err(m) = check_host(h) {
                self.error(at("host"), format!("{h:?} {m}"));
            }
        }

        // path
        let path = match PathPattern::parse(&r.path) {
            Ok(p) => Some(p),
            Err(m) => {
                self.error(at("path"), m);
                None
            }
        };

        // require / public
        let public = r.public.unwrap_or(false);
        let access = match (&r.require, public) {
            (Some(_), true) => {
                self.error(
                    at("public"),
                    "a route is either public = true or has require, not both",
                );
                None
            }
            (None, false) => {
                let why = if r.public == Some(false) {
                    "public = false needs a require table"
                } else {
                    "is missing"
                };
                self.error(
                    at("require"),
                    format!("{why}: set require = {{ all = [...] }} or {{ any = [...] }}, or public = true"),
                );
                None
            }
            (None, true) => Some(Access::Public),
            (Some(req), false) => match (&req.all, &req.any) {
                (Some(_), Some(_)) | (None, None) => {
                    self.error(
                        at("require"),
                        "needs exactly one of all = [...] or any = [...]",
                    );
                    None
                }
                (Some(list), None) | (None, Some(list)) => {
                    let mut ok = true;
                    let mut out: Vec<String> = Vec::new();
                    if list.is_empty() {
                        self.error(at("require"), "lists no provider");
                        ok = false;
                    }
                    for p in list {
                        if !known.contains(p.as_str()) {
                            self.error(at("require"), unknown_provider(p, known));
                            ok = false;
                        } else if out.contains(p) {
                            self.error(at("require"), format!("provider {p:?} is listed twice"));
                            ok = false;
                        } else {
                            out.push(p.clone());
                        }
                    }
                    ok.then(|| {
                        if req.all.is_some() {
                            Access::All(out)
                        } else {
                            Access::Any(out)
                        }
                    })
                }
            },
        };
        let required: Vec<&str> = access
            .as_ref()
            .map(|a| a.providers().iter().map(String::as_str).collect())
            .unwrap_or_default();

        if public {
            for (field, present) in [
                ("scopes", !r.scopes.is_empty()),
                ("claims", !r.claims.is_empty()),
                ("forward", !r.forward.is_empty()),
                ("delegation", r.delegation.is_some()),
            ] {
                if present {
                    self.error(
                        at(field),
                        format!("a public route verifies no token, so it cannot have {field}"),
                    );
                }
            }
        }

        // Two required providers reading the same header (and scheme) cannot be told apart.
        for (i, a) in required.iter().enumerate() {
            for b in &required[i + 1..] {
                if let (Some(pa), Some(pb)) = (providers.get(*a), providers.get(*b)) {
                    let same_scheme = match (&pa.from.scheme, &pb.from.scheme) {
                        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                        // One reads the whole value, the other a scheme in it: still the same header.
                        _ => true,
                    };
                    if pa.from.header == pb.from.header && same_scheme {
                        self.error(
                            at("require"),
                            format!(
                                "providers {a:?} and {b:?} both read their token from header {:?}: a route cannot require both",
                                pa.from.header
                            ),
                        );
                    }
                }
            }
        }

        // scopes
        let mut scopes: Vec<String> = Vec::new();
        for s in &r.scopes {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b == 0x21 || ((0x23..=0x7e).contains(&b) && b != b'\\'))
            {
                self.error(
                    at("scopes"),
                    format!("{s:?} is not an OAuth scope token (printable ASCII, no space, '\"' or '\\')"),
                );
            } else if scopes.contains(s) {
                self.error(at("scopes"), format!("{s:?} is listed twice"));
            } else {
                scopes.push(s.clone());
            }
        }

        // claims
        let mut claims = Vec::new();
        for (key, c) in &r.claims {
            let field = format!("claims.{key}");
            match self.claim_path(&at("claims"), key, known, &required) {
                None => {}
                Some(path) => {
                    if let Some(rule) = self.constraint(&at(&field), path, c) {
                        claims.push(rule);
                    }
                }
            }
        }

        // delegation
        let delegation = r.delegation.as_ref().and_then(|d| {
            let mut ok = true;
            if !known.contains(d.provider.as_str()) {
                self.error(at("delegation"), unknown_provider(&d.provider, known));
                ok = false;
            } else if !public && access.is_some() && !required.contains(&d.provider.as_str()) {
                self.error(
                    at("delegation"),
                    format!(
                        "provider {:?} is not in this route's require list",
                        d.provider
                    ),
                );
                ok = false;
            }
            if d.max_depth > MAX_DELEGATION_DEPTH {
                self.error(
                    at("delegation"),
                    format!(
                        "max_depth {} is more than {MAX_DELEGATION_DEPTH}",
                        d.max_depth
                    ),
                );
                ok = false;
            }
            ok.then(|| Delegation {
                provider: d.provider.clone(),
                max_depth: d.max_depth,
            })
        });

        // forward
        let mut forward = Vec::new();
        let prefix = gateway.claims_header_prefix.as_str();
        for (header, value) in &r.forward {
            let mut ok = true;
            if !is_header_name(header) {
                self.error(
                    at("forward"),
                    format!("{header:?} is not a valid HTTP header name"),
                );
                ok = false;
            } else if header.bytes().any(|b| b.is_ascii_uppercase()) {
                self.error(
                    at("forward"),
                    format!(
                        "header {header:?} must be lowercase (write {:?})",
                        header.to_ascii_lowercase()
                    ),
                );
                ok = false;
            } else if header == ROUTE_HEADER {
                self.error(
                    at("forward"),
                    format!("header {ROUTE_HEADER:?} is reserved: the gateway always sets it to the route id"),
                );
                ok = false;
            } else if !header.starts_with(prefix) || header.len() == prefix.len() {
                self.error(
                    at("forward"),
                    format!("header {header:?} must start with the claims_header_prefix {prefix:?} (so that clients can never supply it)"),
                );
                ok = false;
            }
            let claim = self.claim_path(&at("forward"), value, known, &required);
            if let (true, Some(claim)) = (ok, claim) {
                forward.push(ForwardRule {
                    header: header.clone(),
                    claim,
                });
            }
        }

        // pass_headers: opt back in to an override header the gateway strips by default.
        let mut pass_headers: Vec<String> = Vec::new();
        for name in &r.pass_headers {
            let lower = name.to_ascii_lowercase();
            let passable = PASSABLE_HEADERS.contains(&lower.as_str())
                || (lower.starts_with("x-forwarded-") && is_header_name(&lower));
            if SET_FORWARDED.contains(&lower.as_str()) {
                self.error(at("pass_headers"), format!("{name:?} is always set by the gateway itself (from what it saw), never passed from the client"));
            } else if !passable {
                self.error(at("pass_headers"), format!("{name:?} is not an override header the gateway strips; only {} and x-forwarded-* can be listed", PASSABLE_HEADERS.join(", ")));
            } else if *name != lower {
                self.error(
                    at("pass_headers"),
                    format!("header {name:?} must be lowercase (write {lower:?})"),
                );
            } else if pass_headers.contains(&lower) {
                self.error(at("pass_headers"), format!("{name:?} is listed twice"));
            } else {
                self.warning(at("pass_headers"), format!("{name:?} from the client reaches the origin: dangerous, the origin may act on a method, path, host or client the gateway never authorised"));
                pass_headers.push(lower);
            }
        }

        // origin override
        let origin = match &r.origin {
            Some(o) => {
                self.url(&|| at("origin"), o, gateway.allow_insecure_http, false);
                o.clone()
            }
            None => gateway.origin.clone(),
        };

        if self.errors.len() != before {
            return None;
        }
        let path = path?;
        Some(Route {
            id: id.to_owned(),
            file: file.to_owned(),
            methods,
            host,
            capture_names: path.capture_names(),
            path,
            access: access?,
            scopes,
            claims,
            delegation,
            forward,
            forward_tokens: r.forward_tokens,
            pass_headers,
            origin,
        })
    }

    /// `secrets = [{ name, kid }, ...]`: valid names and kids, no name or kid twice, and a `kid`
    /// on every entry when there are several (a token then names its key).
    fn secrets(&mut self, at: &Location, list: &[SecretConfig]) -> Option<Vec<Secret>> {
        let before = self.errors.len();
        let mut out: Vec<Secret> = Vec::new();
        for s in list {
            if !is_secret_name(&s.name) {
                self.error(
                    at.clone(),
                    format!("{:?} is not a Worker secret name (letters, digits and '_', not starting with a digit)", s.name),
                );
            } else if out.iter().any(|o| o.name == s.name) {
                self.error(at.clone(), format!("secret {:?} is listed twice", s.name));
            }
            match &s.kid {
                Some(kid) if kid.is_empty() || kid.len() > 256 || !is_printable(kid) => self.error(
                    at.clone(),
                    format!("kid {kid:?} of secret {:?} must be 1 to 256 printable ASCII characters", s.name),
                ),
                Some(kid) if out.iter().any(|o| o.kid.as_deref() == Some(kid)) => self.error(
                    at.clone(),
                    format!("kid {kid:?} is given to two secrets: a token could not name its key"),
                ),
                None if list.len() > 1 => self.error(
                    at.clone(),
                    format!("secret {:?} has no kid: with several secrets every one needs the kid of the tokens it signs", s.name),
                ),
                _ => {}
            }
            out.push(Secret {
                name: s.name.clone(),
                kid: s.kid.clone(),
            });
        }
        (self.errors.len() == before).then_some(out)
    }

    /// Parse a claim path and check that its provider is required by the route.
    fn claim_path(
        &mut self,
        at: &Location,
        source: &str,
        known: &BTreeSet<&str>,
        required: &[&str],
    ) -> Option<ClaimPath> {
        let path = match ClaimPath::parse(source) {
            Ok(p) => p,
            Err(m) => {
                self.error(at.clone(), m);
                return None;
            }
        };
        if !known.contains(path.provider.as_str()) {
            self.error(
                at.clone(),
                format!("{source:?}: {}", unknown_provider(&path.provider, known)),
            );
            return None;
        }
        if !required.is_empty() && !required.contains(&path.provider.as_str()) {
            self.error(
                at.clone(),
                format!(
                    "{source:?}: provider {:?} is not in this route's require list, so it has no verified claims here",
                    path.provider
                ),
            );
            return None;
        }
        Some(path)
    }

    fn constraint(
        &mut self,
        at: &Location,
        claim: ClaimPath,
        c: &ConstraintConfig,
    ) -> Option<ClaimRule> {
        let before = self.errors.len();
        if c.equals.is_none() && c.one_of.is_none() && c.contains.is_none() {
            self.error(
                at.clone(),
                "needs at least one of equals, one_of or contains",
            );
        }
        if let Some(v) = &c.equals {
            if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                self.error(at.clone(), "equals must be a string, number or boolean");
            }
        }
        if let Some(list) = &c.one_of {
            if list.is_empty() {
                self.error(at.clone(), "one_of is empty and would refuse every token");
            }
            if list.iter().any(|g| g.is_empty()) {
                self.error(at.clone(), "one_of has an empty pattern");
            }
        }
        if c.contains.as_deref() == Some("") {
            self.error(at.clone(), "contains is empty");
        }
        (self.errors.len() == before).then(|| ClaimRule {
            claim,
            equals: c.equals.clone(),
            one_of: c.one_of.clone(),
            contains: c.contains.clone(),
        })
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

/// `https://host[:port][/path][?query]`, ASCII, no userinfo, no fragment.
fn check_url(url: &str, allow_query: bool) -> Result<Scheme, String> {
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{url:?} has spaces, control or non-ASCII characters"
        ));
    }
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(format!("{url:?} must be an https:// URL"));
    };
    if url.contains('#') {
        return Err(format!("{url:?} must not have a fragment"));
    }
    if !allow_query && url.contains('?') {
        return Err(format!("{url:?} must not have a query"));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(format!(
            "{url:?} must not carry credentials (use a Worker secret)"
        ));
    }
    let host = url_host(url).unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    check_host(host).map_err(|m| format!("{url:?}: host {m}"))?;
    let after_host = &authority[host.len()..];
    if let Some(port) = after_host.strip_prefix(':') {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('0') => {}
            _ => return Err(format!("{url:?} has an invalid port")),
        }
    } else if !after_host.is_empty() {
        return Err(format!("{url:?} has an invalid authority"));
    }
    Ok(scheme)
}

/// The host of an `http(s)://` URL (lowercase is not enforced here).
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.starts_with('[') {
        return authority.find(']').map(|i| &authority[..=i]);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// A host name (`api.example.com`), IPv4 address or bracketed IPv6 address; no port.
fn check_host(h: &str) -> Result<(), &'static str> {
    if let Some(inner) = h.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(a)
                if !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                Ok(())
            }
            _ => Err("is not a valid bracketed IPv6 address"),
        };
    }
    if h.is_empty() || h.len() > 253 {
        return Err("must be a host name of 1 to 253 characters");
    }
    if h.contains(':') {
        return Err("must not have a port (ports are ignored when matching)");
    }
    for label in h.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("is not a valid host name (letters, digits, '-' and '.', no empty label)");
        }
    }
    Ok(())
}

/// `{"keys":[{...}, ...]}` with public keys only.
fn check_inline_jwks(jwks: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(jwks).map_err(|e| format!("is not valid JSON: {e}"))?;
    let keys = value
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or_else(|| "must be a JSON object {\"keys\": [...]}".to_owned())?;
    if keys.is_empty() {
        return Err("has no keys".to_owned());
    }
    for (i, k) in keys.iter().enumerate() {
        let Some(k) = k.as_object() else {
            return Err(format!("key {i} is not a JSON object"));
        };
        match k.get("kty").and_then(Value::as_str) {
            Some("EC" | "OKP" | "RSA") => {}
            Some("oct") => {
                return Err(format!(
                    "key {i} is a symmetric (oct) key: HMAC keys belong in a Worker secret, never in a policy file"
                ))
            }
            _ => return Err(format!("key {i} has no supported kty (EC, OKP or RSA)")),
        }
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            if k.contains_key(private) {
                return Err(format!(
                    "key {i} contains private key material ({private:?}): publish only public keys"
                ));
            }
        }
    }
    Ok(())
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn is_header_name(s: &str) -> bool {
    is_token(s) && s.len() <= MAX_HEADER_NAME
}

fn is_lower_header_name(s: &str) -> bool {
    is_header_name(s) && !s.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fn is_identifier(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_secret_name(s: &str) -> bool {
    s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_route_id(s: &str) -> bool {
    s.len() <= 128
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(check_url("https://a.example", false), Ok(Scheme::Https));
        assert_eq!(
            check_url("https://a.example:8443/x", false),
            Ok(Scheme::Https)
        );
        assert_eq!(check_url("http://127.0.0.1:8788", false), Ok(Scheme::Http));
        assert_eq!(check_url("https://[::1]:8443/", false), Ok(Scheme::Https));
        assert_eq!(
            check_url("https://i.example/jwks?v=1", true),
            Ok(Scheme::Https)
        );
        for bad in [
            "ftp://a",
            "https://",
            "https://u:p@a.example",
            "https://a.example#f",
            "https://a b",
            "https://a.example:0",
            "https://a.example:99999",
            "https://a.example?x",
            "//a.example",
            "HTTPS://a.example",
            "https://a..example",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn inline_jwks() {
        assert!(check_inline_jwks(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"abc"}]}"#).is_ok());
        assert!(check_inline_jwks(r#"{"keys":[{"kty":"EC","d":"x"}]}"#)
            .unwrap_err()
            .contains("private"));
        assert!(check_inline_jwks(r#"{"keys":[{"kty":"oct","k":"x"}]}"#).is_err());
        assert!(check_inline_jwks(r#"{"keys":[]}"#).is_err());
        assert!(check_inline_jwks("[").is_err());
    }
}
