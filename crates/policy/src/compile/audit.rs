//! A route's `audit` field (issue 17): whether and how its decisions go into the tamper-evident
//! decision log.
//!
//! - `"off"` (the default): only the log line;
//! - `"sync"`: the decision's record is sequenced in the log before the request is forwarded;
//!   when the log cannot be reached the request is refused with 503 and nothing is forwarded;
//! - `"async"`: the record is queued in the isolate and sequenced after the response (batched,
//!   through `waitUntil`): no added latency, a bounded loss window (an isolate that dies with
//!   records queued loses them).

use serde::{Deserialize, Serialize};

use super::Cx;
use crate::diag::Location;

/// How a route's decisions reach the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    #[default]
    Off,
    Sync,
    Async,
}

impl AuditMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditMode::Off => "off",
            AuditMode::Sync => "sync",
            AuditMode::Async => "async",
        }
    }

    /// Whether decisions of the route are recorded at all.
    pub fn is_on(self) -> bool {
        self != AuditMode::Off
    }
}

impl Cx {
    /// The route's `audit` value; an unknown one is an error naming the field.
    pub(super) fn audit_mode(&mut self, at: Location, value: Option<&str>) -> AuditMode {
        match value {
            None | Some("off") => AuditMode::Off,
            Some("sync") => AuditMode::Sync,
            Some("async") => AuditMode::Async,
            Some(other) => {
                self.error(
                    at,
                    format!("{other:?} is not an audit mode: write \"sync\", \"async\" or \"off\""),
                );
                AuditMode::Off
            }
        }
    }
}
