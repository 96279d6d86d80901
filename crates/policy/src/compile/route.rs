//! `[[route]]`: methods, host, path, access, scopes, claim rules, delegation, forward rules,
//! `pass_headers` and origin; and the analyses between routes: ambiguous overlaps, case and
//! trailing-slash variants, hosts sharing an origin.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::syntax::{check_host, is_header_name, is_route_id, is_token};
use super::{unknown_provider, Cx};
use crate::diag::Location;
#[cfg(not(target_arch = "wasm32"))]
use crate::matcher::RouteIndex;
use crate::matcher::{check_path, PathPattern, Segment};
use crate::model::{ConstraintConfig, RouteConfig};
use crate::policy::{
    Access, ClaimPath, ClaimRule, Delegation, ForwardRule, Gateway, Provider, Route,
    PASSABLE_HEADERS, ROUTE_HEADER, SET_FORWARDED,
};

/// Deepest `act` chain a route may allow: the deepest a token may carry ([`crate::act::MAX_DEPTH`]).
pub const MAX_DELEGATION_DEPTH: u32 = crate::act::MAX_DEPTH as u32;

/// Issue 15: the body cap of a route that reads its body and sets no `max_body_bytes` (64 KiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024;
/// The largest `max_body_bytes` a route may set (1 MiB): the body is held in the isolate's
/// memory (128 MB, shared by every request in flight) while the request is decided.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// The default and the largest nesting of a JSON body the rules read.
pub const DEFAULT_MAX_BODY_DEPTH: u32 = 32;
pub const MAX_BODY_DEPTH: u32 = 64;

#[cfg(not(target_arch = "wasm32"))]
/// SPEC §2: a request that differs from a more protected route only by ASCII case or a trailing
/// slash is never routed to a less protected one. The lookup refuses such requests; the compiler
/// says where a weaker route would otherwise catch them (`public /**` next to `/admin/**`).
pub(super) fn variant_warnings(cx: &mut Cx, routes: &[Route], index: &RouteIndex, fold_case: bool) {
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
pub(super) fn host_warnings(cx: &mut Cx, routes: &[Route], index: &RouteIndex) {
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
pub(super) fn overlap(a: &Route, b: &Route) -> Option<String> {
    let methods = methods_overlap(a, b)?;
    let hosts = match (&a.host, &b.host) {
        (None, None) => "every host".to_owned(),
        (Some(h), None) | (None, Some(h)) => format!("host {h}"),
        (Some(x), Some(y)) if x == y => format!("host {x}"),
        _ => return None,
    };
    Some(format!("{methods} on {hosts}"))
}

impl Cx {
    pub(super) fn route(
        &mut self,
        file: &str,
        r: &RouteConfig,
        gateway: &Gateway,
        known: &BTreeSet<&str>,
        providers: &BTreeMap<String, Provider>,
        upstreams: &BTreeMap<String, crate::policy::Upstream>,
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

        // origin override, or the upstream (issue 14)
        let (origin, upstream) = self.route_upstream(file, r, access.as_ref(), gateway, upstreams);

        // RFC 9728 resource (issue 14 item 5): the route's literal prefix, or the path it names,
        // which must contain the route (a client checks that the URL it calls lies within the
        // resource the metadata names).
        let literal: Vec<&str> = path
            .as_ref()
            .map(|p| {
                p.segments()
                    .iter()
                    .map_while(|s| match s {
                        Segment::Literal(l) if !l.is_empty() => Some(l.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let resource = match (&r.resource, public) {
            (Some(_), true) => {
                self.error(
                    at("resource"),
                    "a public route protects nothing, so it belongs to no protected resource",
                );
                None
            }
            (None, true) => None,
            (None, false) => Some(literal.iter().map(|l| format!("/{l}")).collect::<String>()),
            (Some(res), false) => {
                let named: Vec<&str> = res
                    .strip_prefix('/')
                    .unwrap_or(res)
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .collect();
                let literal_path = res == "/"
                    || (check_path(res).is_ok()
                        && !res.ends_with('/')
                        && named.iter().all(|s| !s.contains(['{', '}', '*'])));
                if !literal_path {
                    self.error(
                        at("resource"),
                        format!("{res:?} must be \"/\" or a normalised literal path without a trailing \"/\" (like \"/mcp\")"),
                    );
                    None
                } else if !literal.starts_with(&named) {
                    self.error(
                        at("resource"),
                        format!(
                            "{res:?} does not contain the route's path {}: a resource must be a prefix of the literal segments of every path it covers",
                            r.path
                        ),
                    );
                    None
                } else {
                    Some(named.iter().map(|l| format!("/{l}")).collect::<String>())
                }
            }
        };
        // max_body_bytes (issue 15): setting it makes the gateway read and cap the body.
        let mut body = crate::policy::BodyRule::UNREAD;
        if let Some(n) = r.max_body_bytes {
            if n == 0 || n > MAX_BODY_BYTES {
                self.error(
                    at("max_body_bytes"),
                    format!("{n} is not between 1 and {MAX_BODY_BYTES} bytes (the body is held in memory while the request is decided)"),
                );
            }
            body.read = true;
            body.max_bytes = n;
        }

        // intent (issue 15 item 1)
        let intent_config = r.intent.as_ref().and_then(|v| {
            crate::model::IntentConfig::from_value(v)
                .map_err(|m| self.error(at("intent"), m))
                .ok()
        });
        let budget_config = r.budget.as_ref().and_then(|v| {
            crate::model::BudgetConfig::from_value(v)
                .map_err(|m| self.error(at("budget"), m))
                .ok()
        });
        let intent = intent_config.as_ref().and_then(|c| {
            let captures: Vec<String> = path
                .as_ref()
                .map(|p| p.capture_names().into_iter().flatten().collect())
                .unwrap_or_default();
            self.intent(
                file,
                id,
                c,
                known,
                &required,
                &captures,
                methods.as_deref(),
                &origin,
                &mut body,
            )
        });

        let budget = budget_config.as_ref().and_then(|c| {
            let captures: Vec<String> = path
                .as_ref()
                .map(|p| p.capture_names().into_iter().flatten().collect())
                .unwrap_or_default();
            self.budget(
                file,
                id,
                c,
                &required,
                intent.as_ref(),
                &captures,
                &mut body,
            )
        });
        // receipt (issue 14): a receipt binds the body's digest, so the body is read.
        let receipt = self.receipt(file, r, &mut body);

        let audit = self.audit_mode(at("audit"), r.audit.as_deref());

        // mask (issue 18)
        let mask = r.mask.as_ref().and_then(|m| {
            let any = matches!(access, Some(Access::Any(_)));
            self.mask(file, id, m, known, &required, any)
        });

        if self.errors.len() != before {
            return None;
        }
        let path = path?;
        Some(Route {
            receipt,
            body,
            intent,
            budget,
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
            resource,
            upstream,
            strip_cookies: r.strip_cookies,
            audit,
            deny_check: Default::default(),
            status_max_stale_secs: None,
            mask,
        })
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
