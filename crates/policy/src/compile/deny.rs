//! Issue 16: `[operator]` (who may use the operator API), `[deny]` (the deny list's store and
//! propagation bound) and each route's `deny_check`.
//!
//! - `[operator]`: at most one across all files; `provider` must be a provider of the policy
//!   with an `issuer` (the operator's identity recorded is `(iss, sub)`), `scopes` one or more
//!   OAuth scope tokens, each of which the operator's token must carry.
//! - `[deny]`: at most one; `shards` in 1..=64, `propagation_secs` in 1..=5 (the bound the
//!   README states: a revocation acknowledged by the store is enforced by every isolate for
//!   every request that starts at least this long after the acknowledgement).
//! - a route's `deny_check`: `"cached"` (the default on protected routes when `[deny]` is
//!   present, unless `[deny] default_check = "off"`), `"strict"` or `"off"`; `"cached"`/`"strict"` without `[deny]`, or any value on a
//!   public route, is an error.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::Cx;
use crate::diag::Location;
use crate::model::SourceFile;
use crate::policy::{Provider, Route};

/// `[operator]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub file: String,
    /// The provider whose tokens authenticate operators.
    pub provider: String,
    /// Every one must be in the token's `scope` / `scp`.
    pub scopes: Vec<String>,
}

/// `[deny]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deny {
    pub file: String,
    pub shards: u8,
    /// The propagation bound, in seconds (1..=5).
    pub propagation_secs: u8,
    /// The check of protected routes that do not name one.
    pub default_check: DenyCheck,
}

/// How a route checks the deny list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DenyCheck {
    /// Not checked (public routes; every route of a policy without `[deny]`).
    #[default]
    Off,
    /// Against the isolate's view of the store, at most `propagation_secs` old; a view that
    /// cannot be refreshed past that is 503.
    Cached,
    /// Against the store on every request; a store that cannot be reached is 503.
    Strict,
}

/// `status_list = {...}` of a provider, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusListRule {
    /// URI prefixes, each an absolute `https://` (or, with `allow_insecure_http`, `http://`) URL
    /// ending with `/`.
    pub uris: Vec<String>,
    pub max_stale_secs: u64,
    pub required: bool,
}

/// The longest staleness of a status list a policy may allow.
pub const MAX_STATUS_STALE_SECS: u64 = 86_400;

/// `[shared_signals]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedSignals {
    pub file: String,
    pub path: String,
    pub audience: String,
    pub transmitters: Vec<String>,
    pub iat_window_secs: u64,
}

/// The most shards the deny store may have.
pub const MAX_DENY_SHARDS: u32 = 64;
/// The largest propagation bound a policy may ask for.
pub const MAX_PROPAGATION_SECS: u64 = 5;

/// Whether the checks and their messages are compiled: not in the Worker, which re-compiles a
/// policy the build already checked (dead code there, removed with its texts).
const CHECKS: bool = cfg!(not(target_arch = "wasm32"));

fn section(file: &str, table: &str, field: &str) -> Location {
    Location::section(file, table, field)
}

/// An OAuth scope token (RFC 6749 §3.3): printable ASCII without space, `"` or `\`.
pub(super) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || ((0x23..=0x7e).contains(&b) && b != b'\\'))
}

impl Cx {
    /// The one `[operator]` table, if any.
    pub(super) fn operator(
        &mut self,
        files: &[SourceFile],
        providers: &BTreeMap<String, Provider>,
        known: &BTreeSet<&str>,
    ) -> Option<Operator> {
        let (file, o) = self.one_table(files, "operator", |f| f.model.operator.as_ref())?;
        // The Worker re-compiles the policy the build already checked: no checks, no messages
        // in the wasm (as for the warnings, `compile/mod.rs`).
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (providers, known);
            return Some(Operator {
                file: file.to_owned(),
                provider: o.provider.clone(),
                scopes: o.scopes.clone(),
            });
        }
        #[allow(unreachable_code)]
        let at = |field: &str| section(file, "operator", field);
        let before = self.errors.len();
        match providers.get(&o.provider) {
            Some(p) if p.issuer.is_none() => self.error(
                at("provider"),
                format!(
                    "provider {:?} has no issuer: the operator's identity recorded is (iss, sub), give the provider an issuer",
                    o.provider
                ),
            ),
            Some(_) => {}
            None if known.contains(o.provider.as_str()) => {} // its own error is reported
            None => self.error(at("provider"), super::unknown_provider(&o.provider, known)),
        }
        if o.scopes.is_empty() {
            self.error(
                at("scopes"),
                "at least one scope is required (e.g. [\"attestgate:admin\"]): any token of the provider would otherwise be an operator",
            );
        }
        let mut scopes: Vec<String> = Vec::new();
        for s in &o.scopes {
            if !is_scope_token(s) {
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
        (self.errors.len() == before).then(|| Operator {
            file: file.to_owned(),
            provider: o.provider.clone(),
            scopes,
        })
    }

    /// A provider's `status_list`.
    pub(super) fn status_list_rule(
        &mut self,
        file: &str,
        name: &str,
        config: Option<&crate::model::StatusListConfig>,
        gateway: &crate::policy::Gateway,
    ) -> Option<StatusListRule> {
        let c = config?;
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (file, name, gateway);
            return Some(StatusListRule {
                uris: c.uris.clone(),
                max_stale_secs: c.max_stale_secs,
                required: c.required,
            });
        }
        #[allow(unreachable_code)]
        let at = || Location::provider(file, name, "status_list");
        if c.uris.is_empty() {
            self.error(at(), "uris: at least one URI prefix is required (the gateway fetches status lists only under these)");
        }
        for u in &c.uris {
            let ok = self.url(&at, u, gateway.allow_insecure_http, false);
            if ok && !u.ends_with('/') {
                self.error(
                    at(),
                    format!("uris: {u:?} must end with \"/\" (a prefix of the status list URIs, never a host prefix)"),
                );
            }
        }
        if !(1..=MAX_STATUS_STALE_SECS).contains(&c.max_stale_secs) {
            self.error(
                at(),
                format!(
                    "max_stale_secs: {} is not in 1..={MAX_STATUS_STALE_SECS}",
                    c.max_stale_secs
                ),
            );
        }
        Some(StatusListRule {
            uris: c.uris.clone(),
            max_stale_secs: c.max_stale_secs,
            required: c.required,
        })
    }

    /// The one `[shared_signals]` table, if any.
    pub(super) fn shared_signals(
        &mut self,
        files: &[SourceFile],
        providers: &BTreeMap<String, Provider>,
        known: &BTreeSet<&str>,
        challenge_path: &str,
    ) -> Option<SharedSignals> {
        let (file, c) =
            self.one_table(files, "shared_signals", |f| f.model.shared_signals.as_ref())?;
        let at = |field: &str| section(file, "shared_signals", field);
        let before = self.errors.len();
        let literal = crate::matcher::PathPattern::parse(&c.path).is_ok_and(|p| {
            p.segments()
                .iter()
                .all(|s| matches!(s, crate::matcher::Segment::Literal(_)))
        });
        if crate::matcher::check_path(&c.path).is_err()
            || !literal
            || c.path == "/"
            || c.path == challenge_path
        {
            self.error(
                at("path"),
                format!("{:?} must be a normalised literal path other than \"/\" and the challenge path", c.path),
            );
        }
        if c.audience.is_empty()
            || c.audience.len() > 512
            || !c.audience.bytes().all(|b| b.is_ascii_graphic())
        {
            self.error(
                at("audience"),
                "must be 1 to 512 printable ASCII characters without spaces",
            );
        }
        if c.transmitters.is_empty() {
            self.error(
                at("transmitters"),
                "at least one transmitter provider is required",
            );
        }
        for t in &c.transmitters {
            match providers.get(t) {
                Some(p) if p.issuer.is_none() => self.error(
                    at("transmitters"),
                    format!("provider {t:?} has no issuer: a transmitter is named by its iss"),
                ),
                Some(_) => {}
                None if known.contains(t.as_str()) => {}
                None => self.error(at("transmitters"), super::unknown_provider(t, known)),
            }
        }
        if !(1..=3600).contains(&c.iat_window_secs) {
            self.error(
                at("iat_window_secs"),
                format!("{} is not in 1..=3600", c.iat_window_secs),
            );
        }
        (self.errors.len() == before).then(|| SharedSignals {
            file: file.to_owned(),
            path: c.path.clone(),
            audience: c.audience.clone(),
            transmitters: c.transmitters.clone(),
            iat_window_secs: c.iat_window_secs,
        })
    }

    /// The one `[deny]` table, if any.
    pub(super) fn deny(&mut self, files: &[SourceFile]) -> Option<Deny> {
        let (file, d) = self.one_table(files, "deny", |f| f.model.deny.as_ref())?;
        #[cfg(target_arch = "wasm32")]
        {
            return Some(Deny {
                file: file.to_owned(),
                shards: u8::try_from(d.shards).unwrap_or(1),
                propagation_secs: u8::try_from(d.propagation_secs).unwrap_or(1),
                default_check: match d.default_check.as_deref() {
                    Some("off") => DenyCheck::Off,
                    _ => DenyCheck::Cached,
                },
            });
        }
        #[allow(unreachable_code)]
        let at = |field: &str| section(file, "deny", field);
        let before = self.errors.len();
        if !(1..=MAX_DENY_SHARDS).contains(&d.shards) {
            self.error(
                at("shards"),
                format!("{} is not in 1..={MAX_DENY_SHARDS}", d.shards),
            );
        }
        if !(1..=MAX_PROPAGATION_SECS).contains(&d.propagation_secs) {
            self.error(
                at("propagation_secs"),
                format!(
                    "{} is not in 1..={MAX_PROPAGATION_SECS} (the propagation bound is at most 5 seconds)",
                    d.propagation_secs
                ),
            );
        }
        let default_check = match d.default_check.as_deref() {
            None | Some("cached") => DenyCheck::Cached,
            Some("off") => DenyCheck::Off,
            Some(other) => {
                self.error(
                    at("default_check"),
                    format!("{other:?} is not one of \"cached\", \"off\""),
                );
                DenyCheck::Off
            }
        };
        (self.errors.len() == before).then(|| Deny {
            default_check,
            file: file.to_owned(),
            shards: u8::try_from(d.shards).unwrap_or(1),
            propagation_secs: u8::try_from(d.propagation_secs).unwrap_or(1),
        })
    }

    /// Each route's `deny_check`, from its own field and whether `[deny]` is present.
    // `if CHECKS` blocks stay separate from the conditions they report.
    #[allow(clippy::collapsible_if)]
    pub(super) fn deny_checks(
        &mut self,
        files: &[SourceFile],
        routes: &mut [Route],
        deny: Option<&Deny>,
    ) {
        let default = deny.map_or(DenyCheck::Off, |d| d.default_check);
        let deny = deny.is_some();
        for route in routes.iter_mut() {
            let at = || Location::route(&route.file, &route.id, "deny_check");
            // Route ids are unique across files (checked before this runs).
            let config = files
                .iter()
                .flat_map(|f| f.model.route.iter())
                .find(|r| r.id == route.id);
            let value = config.and_then(|r| r.deny_check.as_deref());
            if let Some(secs) = config.and_then(|r| r.status_max_stale_secs) {
                if !(1..=MAX_STATUS_STALE_SECS).contains(&secs) {
                    if CHECKS {
                        self.error(
                            Location::route(&route.file, &route.id, "status_max_stale_secs"),
                            format!("{secs} is not in 1..={MAX_STATUS_STALE_SECS}"),
                        );
                    }
                }
                route.status_max_stale_secs = Some(secs);
            }
            let check = match value {
                None => default,
                Some("cached") => DenyCheck::Cached,
                Some("strict") => DenyCheck::Strict,
                Some("off") => DenyCheck::Off,
                Some(other) => {
                    if CHECKS {
                        self.error(
                            at(),
                            format!("{other:?} is not one of \"cached\", \"strict\", \"off\""),
                        );
                    }
                    continue;
                }
            };
            if route.is_public() {
                if value.is_some() {
                    if CHECKS {
                        self.error(
                        at(),
                        "a public route verifies no token, so there is nothing to check against the deny list",
                    );
                    }
                }
                continue;
            }
            if !deny && matches!(value, Some("cached" | "strict")) {
                if CHECKS {
                    self.error(
                        at(),
                        "no [deny] table in the policy: add one to use the deny list",
                    );
                }
                continue;
            }
            route.deny_check = if deny { check } else { DenyCheck::Off };
        }
    }

    /// The table `name` of at most one file: its file and content.
    fn one_table<'f, T>(
        &mut self,
        files: &'f [SourceFile],
        name: &str,
        get: impl Fn(&'f SourceFile) -> Option<&'f T>,
    ) -> Option<(&'f str, &'f T)> {
        #[cfg(target_arch = "wasm32")]
        let _ = name;
        let mut found: Option<(&str, &T)> = None;
        for f in files {
            if let Some(t) = get(f) {
                match found {
                    None => found = Some((&f.name, t)),
                    #[cfg(not(target_arch = "wasm32"))]
                    Some((first, _)) => self.error(
                        Location::section(&f.name, name, "table"),
                        format!("second [{name}] table (the first is in {first}); at most one is allowed across all files"),
                    ),
                    #[cfg(target_arch = "wasm32")]
                    Some(_) => {}
                }
            }
        }
        found
    }
}
