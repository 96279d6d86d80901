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

pub mod alg;
pub mod compile;
pub mod diag;
pub mod evaluate;
pub mod matcher;
pub mod model;
mod policy;

#[cfg(feature = "toml")]
mod load;

pub use alg::{Alg, UnknownAlg};
pub use compile::compile;
pub use diag::{Location, PolicyError, Subject, Warning};
pub use evaluate::{
    evaluate, explain, Denial, Explanation, HeaderPlan, Step, VerifiedTokens, MAX_FORWARD_VALUE,
};
pub use matcher::{
    check_path, host_without_port, split_request_url, Allow, Miss, PathPattern, PathProblem,
    Segment,
};
pub use model::{PolicyFile, SourceFile};
pub use policy::{
    Access, Binding, ClaimPath, ClaimRule, Delegation, Forward, Gateway, KeySource, Matched,
    MemberPath, Policy, Provider, Route, Secret, TokenLocation, ROUTE_HEADER,
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
