//! attestgate route policies: the file model API owners write, its compiler, and the route index.
//!
//! - [`model`]: the TOML/JSON source structs of SPEC §2 (unknown fields refused).
//! - [`compile()`]: merges the files and checks everything checkable before deploy; errors name
//!   the file, route id or provider, and field.
//! - [`Policy`]: the compiled policy, with [`Policy::match_route`] (segment trie, most specific
//!   route wins) and [`Policy::evaluate`] (SPEC §3 step 8 and the header plan of step 10).
//! - [`Policy::to_json`] / [`Policy::from_embedded`]: the build embeds the validated model as JSON,
//!   the Worker re-compiles it once per isolate (no TOML parser in the Worker).
//! - `load_dir` / `parse_toml` (feature `toml`): read a policy folder, for `build.rs` and the CLI.
//!
//! Pure: no I/O except the optional folder loader, no clock, no randomness.
#![forbid(unsafe_code)]
// No unwrap, expect, panic or unchecked indexing in shipped code (root Cargo.toml,
// [workspace.lints]); test builds are exempt: there a failed unwrap is a failed test.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing
    )
)]

pub mod act;
pub mod alg;
pub mod compile;
pub mod diag;
mod embed;
// `glob_match` and `HeaderPlan::strips` index behind their own bounds checks.
#[allow(clippy::indexing_slicing)]
pub mod evaluate;
// The trie indexes its own node vector by ids it created, and `check_path` bytes behind `i < len`.
#[allow(clippy::indexing_slicing)]
pub mod matcher;
pub mod model;
// Route and provider indexes from the trie and from `binary_search` on the same vectors.
#[allow(clippy::indexing_slicing)]
mod policy;
pub mod typ;

#[cfg(feature = "toml")]
mod load;

pub use alg::{Alg, UnknownAlg};
pub use compile::compile;
pub use diag::{Location, PolicyError, Subject, Warning};
pub use evaluate::{Denial, Explanation, HeaderPlan, Step, VerifiedTokens, MAX_FORWARD_VALUE};
pub use matcher::{check_path, split_request_url, Allow, Miss, PathPattern, PathProblem, Segment};
pub use model::{PolicyFile, SourceFile};
pub use policy::{
    Access, Binding, ClaimPath, ClaimRule, Delegation, ForwardRule, Gateway, KeyOrigin, Matched,
    MemberPath, Policy, Provider, Route, Secret, TokenLocation, PASSABLE_HEADERS, ROUTE_HEADER,
    SET_FORWARDED,
};

#[cfg(feature = "toml")]
pub use load::{load_dir, parse_toml, policy_files};

#[cfg(test)]
mod tests {
    /// The Worker keeps one compiled policy per isolate in a `static OnceLock<Policy>`.
    #[test]
    fn policy_can_live_in_a_static() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<crate::Policy>();
    }
}
