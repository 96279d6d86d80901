//! `receipt` and `receipt_ttl_secs` of a `[[route]]` (issue 14 item 4): the gateway signs an
//! `Attestgate-Receipt` for every request it forwards on the route. The receipt binds the
//! digest of the body forwarded, so a receipt route reads its body under the cap
//! (`max_body_bytes`, or the default).

use super::Cx;
use crate::diag::Location;
use crate::model::RouteConfig;
use crate::policy::{BodyRule, ReceiptRule};

/// The receipt's lifetime when the route does not say (seconds).
pub const DEFAULT_RECEIPT_TTL_SECS: u64 = 60;
/// The longest receipt lifetime a route may set: a receipt proves one request, now; an origin
/// remembers its `jti` for at most this long.
pub const MAX_RECEIPT_TTL_SECS: u64 = 300;

impl Cx {
    pub(super) fn receipt(
        &mut self,
        file: &str,
        r: &RouteConfig,
        body: &mut BodyRule,
    ) -> Option<ReceiptRule> {
        let at = |field: &str| Location::route(file, &r.id, field);
        if !r.receipt {
            if r.receipt_ttl_secs.is_some() {
                self.error(
                    at("receipt_ttl_secs"),
                    "is set but the route signs no receipt (set receipt = true, or remove it)",
                );
            }
            return None;
        }
        let ttl_secs = r.receipt_ttl_secs.unwrap_or(DEFAULT_RECEIPT_TTL_SECS);
        if !(1..=MAX_RECEIPT_TTL_SECS).contains(&ttl_secs) {
            self.error(
                at("receipt_ttl_secs"),
                format!("{ttl_secs} is not in 1..={MAX_RECEIPT_TTL_SECS} seconds (a receipt proves one request, now)"),
            );
        }
        body.read = true;
        Some(ReceiptRule { ttl_secs })
    }
}
