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
//!   present), `"strict"` or `"off"`; `"cached"`/`"strict"` without `[deny]`, or any value on a
//!   public route, is an error.

use std::collections::{BTreeMap, BTreeSet};

use super::Cx;
use crate::diag::Location;
use crate::model::SourceFile;
use crate::policy::{Provider, Route};

/// `[operator]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub file: String,
    /// The provider whose tokens authenticate operators.
    pub provider: String,
    /// Every one must be in the token's `scope` / `scp`.
    pub scopes: Vec<String>,
}

/// `[deny]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub file: String,
    pub shards: u8,
    /// The propagation bound, in seconds (1..=5).
    pub propagation_secs: u8,
}

/// How a route checks the deny list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// The most shards the deny store may have.
pub const MAX_DENY_SHARDS: u32 = 64;
/// The largest propagation bound a policy may ask for.
pub const MAX_PROPAGATION_SECS: u64 = 5;

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

    /// The one `[deny]` table, if any.
    pub(super) fn deny(&mut self, files: &[SourceFile]) -> Option<Deny> {
        let (file, d) = self.one_table(files, "deny", |f| f.model.deny.as_ref())?;
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
        (self.errors.len() == before).then(|| Deny {
            file: file.to_owned(),
            shards: u8::try_from(d.shards).unwrap_or(1),
            propagation_secs: u8::try_from(d.propagation_secs).unwrap_or(1),
        })
    }

    /// Each route's `deny_check`, from its own field and whether `[deny]` is present.
    pub(super) fn deny_checks(&mut self, files: &[SourceFile], routes: &mut [Route], deny: bool) {
        let written: BTreeMap<&str, Option<&str>> = files
            .iter()
            .flat_map(|f| f.model.route.iter())
            .map(|r| (r.id.as_str(), r.deny_check.as_deref()))
            .collect();
        for route in routes.iter_mut() {
            let at = || Location::route(&route.file, &route.id, "deny_check");
            let value = written.get(route.id.as_str()).copied().flatten();
            let check = match value {
                None => DenyCheck::Cached,
                Some("cached") => DenyCheck::Cached,
                Some("strict") => DenyCheck::Strict,
                Some("off") => DenyCheck::Off,
                Some(other) => {
                    self.error(
                        at(),
                        format!("{other:?} is not one of \"cached\", \"strict\", \"off\""),
                    );
                    continue;
                }
            };
            if route.is_public() {
                if value.is_some() {
                    self.error(
                        at(),
                        "a public route verifies no token, so there is nothing to check against the deny list",
                    );
                }
                continue;
            }
            if !deny && matches!(value, Some("cached" | "strict")) {
                self.error(
                    at(),
                    "no [deny] table in the policy: add one to use the deny list",
                );
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
        let mut found: Option<(&str, &T)> = None;
        for f in files {
            if let Some(t) = get(f) {
                match found {
                    None => found = Some((&f.name, t)),
                    Some((first, _)) => self.error(
                        Location::section(&f.name, name, "table"),
                        format!("second [{name}] table (the first is in {first}); at most one is allowed across all files"),
                    ),
                }
            }
        }
        found
    }
}
