//! `[gateway]`: checks every field and applies the defaults.

use super::syntax::{is_lower_header_name, url_host};
use super::Cx;
use crate::diag::Location;
use crate::matcher::{check_path, PathPattern, Segment};
use crate::model::GatewayConfig;
use crate::policy::Gateway;

impl Cx {
    pub(super) fn gateway(&mut self, file: &str, g: &GatewayConfig) -> Gateway {
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
        // Issue 14: the issuer of the gateway's own signatures (no query, no fragment).
        if let Some(issuer) = &g.issuer {
            self.url(&|| at("issuer"), issuer, g.allow_insecure_http, false);
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
            issuer: g.issuer.clone(),
        }
    }
}
