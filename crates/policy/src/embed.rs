//! The embedded form of a policy (`$OUT_DIR/policy.json`): the build writes the validated source
//! model as JSON ([`Policy::to_json`]) and the Worker re-compiles it once per isolate
//! ([`Policy::from_json`], no TOML parser in the Worker). It sits on the compiler's side: reading
//! the embedded form means compiling it, and the compiled types ([`crate::policy`]) never call the
//! compiler.

use serde::{Deserialize, Serialize};

use crate::compile::compile;
use crate::diag::{Location, PolicyError};
use crate::model::SourceFile;
use crate::policy::Policy;

/// The embedded form (`$OUT_DIR/policy.json`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Embedded {
    format: String,
    files: Vec<SourceFile>,
}

const EMBEDDED_FORMAT: &str = "attestgate-policy/1";

impl Policy {
    /// The JSON form embedded in the Worker: the validated source model (not TOML).
    pub fn to_json(&self) -> String {
        let embedded = Embedded {
            format: EMBEDDED_FORMAT.to_owned(),
            files: self.sources.clone(),
        };
        // Serialising plain structs, strings and JSON values into a String cannot fail.
        serde_json::to_string(&embedded).unwrap_or_default()
    }

    /// Re-compile a policy from its JSON form ([`Policy::to_json`]). Pure and cheap: the Worker
    /// does it once per isolate.
    pub fn from_json(json: &str) -> Result<Policy, Vec<PolicyError>> {
        let embedded: Embedded = serde_json::from_str(json).map_err(|e| {
            vec![PolicyError::new(
                Location::file("<embedded policy>"),
                format!("not a policy JSON document: {e}"),
            )]
        })?;
        if embedded.format != EMBEDDED_FORMAT {
            return Err(vec![PolicyError::new(
                Location::file("<embedded policy>"),
                format!(
                    "format {:?} is not {EMBEDDED_FORMAT:?} (rebuild the Worker)",
                    embedded.format
                ),
            )]);
        }
        compile(embedded.files)
    }

    /// The policy compiled into the Worker by `build.rs`:
    /// `Policy::from_embedded(attestgate::EMBEDDED_POLICY_JSON)`. Same as [`Policy::from_json`].
    pub fn from_embedded(json: &str) -> Result<Policy, Vec<PolicyError>> {
        Self::from_json(json)
    }
}
