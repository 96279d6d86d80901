//! The two embeddable forms of a policy.
//!
//! - The **source form** ([`Policy::to_json`] / [`Policy::from_json`]): the validated source
//!   model; reading it means compiling it again (it sits on the compiler's side).
//! - The **compiled form** ([`Policy::to_compiled`] / [`Policy::from_compiled`], issue 19): the
//!   compiled policy itself in a compact binary form (`crate::compact`), what `build.rs` embeds
//!   in the Worker (`$OUT_DIR/policy.bin`). The Worker reads it once per isolate without the
//!   compiler: no checks run again (the build ran them), only the route indexes are rebuilt
//!   ([`Policy::index_routes`]). The compiler, its messages and the source model's
//!   deserialisers are then not linked into the Worker at all, so a fresh isolate has that much
//!   less WebAssembly to compile on its first request (docs/performance.md, "Cold start: the
//!   compiled policy embedded"). The form is deterministic (no map is serialised), so its
//!   SHA-256 names the policy (`Gate::policy_sha256`).

use serde::{Deserialize, Serialize};

use crate::compile::compile;
use crate::diag::{Location, PolicyError};
use crate::model::SourceFile;
use crate::policy::Policy;

/// The source form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Embedded {
    format: String,
    files: Vec<SourceFile>,
}

const EMBEDDED_FORMAT: &str = "attestgate-policy/1";

/// The compiled form's first value: a Worker reads only the form its own build wrote.
const COMPILED_FORMAT: &str = "attestgate-compiled-policy/1";

use crate::compact::CompactError as CompiledFormError;

impl Policy {
    /// The source form: the validated source model as JSON (not TOML).
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
    /// `Policy::from_embedded(attestgate::EMBEDDED_POLICY)`, its compiled form. Same as
    /// [`Policy::from_compiled`].
    pub fn from_embedded(bytes: &[u8]) -> Result<Policy, CompiledFormError> {
        Self::from_compiled(bytes)
    }

    /// The compiled form (module docs): what `build.rs` embeds in the Worker, in the compact
    /// binary form of `crate::compact`. Without the source files and the warnings (the Worker
    /// reads neither); the route indexes are derived.
    pub fn to_compiled(&self) -> Vec<u8> {
        // Plain structs, strings, integers and the JSON text of `equals`: no float, no map, so
        // writing cannot fail.
        crate::compact::to_bytes(&(COMPILED_FORMAT, self)).unwrap_or_default()
    }

    /// Read the compiled form ([`Policy::to_compiled`]) without compiling: the checks ran when
    /// it was written. Only the route indexes are rebuilt.
    pub fn from_compiled(bytes: &[u8]) -> Result<Policy, CompiledFormError> {
        let (format, mut policy): (&str, Policy) = crate::compact::from_bytes(bytes)?;
        if format != COMPILED_FORMAT {
            return Err(CompiledFormError);
        }
        policy.index_routes();
        Ok(policy)
    }
}
