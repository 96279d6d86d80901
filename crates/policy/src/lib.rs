//! attestgate route policies: the file model API owners write, its compiler, the compiled policy
//! with its route index, and the evaluation of a matched route against verified tokens.
//!
//! Modules, each using only those listed before it:
//! - leaves: [`alg`] (the JWS algorithm names, shared with the JOSE code), [`diag`] (errors and
//!   warnings naming file, route or provider, and field), [`typ`] (the one `typ` comparison) and
//!   [`act`] (the one `act`-chain walker and its depth limit); the JOSE code and the decision
//!   log use the last two as well.
//! - [`model`]: the TOML/JSON source structs of SPEC §2 (unknown fields refused).
//! - [`matcher`]: path patterns, the raw-path check ([`check_path`]) and the route trie.
//! - `policy` (private, its types re-exported here): the compiled types ([`Policy`],
//!   [`Gateway`], [`Provider`], [`Route`], ...) and [`Policy::match_route`] (segment trie, most
//!   specific route wins). A [`Policy`] keeps its source model only to embed it again; nothing
//!   here calls the compiler.
//! - [`evaluate`]: [`Policy::evaluate`] and [`Policy::explain`] (SPEC §3 step 8 and the header
//!   plan of step 10), on the compiled types only.
//! - [`compile`](mod@compile) (`compile/`: `mod.rs` merges the files and runs the cross checks, `gateway.rs`,
//!   `provider.rs`, `route.rs`, `syntax.rs`): [`compile()`] turns the model into the compiled
//!   types, checking everything checkable before deploy. The only code that builds a [`Policy`].
//! - `embed` (private): the source form ([`Policy::to_json`] / [`Policy::from_json`]: the
//!   validated model as JSON, read by compiling it again) and the compiled form
//!   ([`Policy::to_compiled`] / [`Policy::from_compiled`] = [`Policy::from_embedded`]:
//!   what the build embeds in the Worker, read without the compiler, which the Worker then does
//!   not link).
//! - `load` (feature `toml`): `load_dir` / `parse_toml` / `policy_files` read a policy
//!   folder, for `build.rs` and the CLI.
//!
//! The dependency is one way: the model ← the compiler → the compiled types. The compiled types
//! and the evaluation never call the compiler; reading the source form or a folder (`embed`,
//! `load`) is on the compiler's side, reading the compiled form (`embed`, `compact`) is not.
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
mod compact;
pub mod compile;
pub mod diag;
mod embed;
pub use compact::CompactError as CompiledFormError;
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
pub use compile::intent::{Bind, Budget, Intent, Op, Source};
pub use compile::mask::{Mask, MaskAction, MaskRule, MaskWhen, PathStep};
pub use compile::{compile, AuditMode};
pub use diag::{Location, PolicyError, Subject, Warning};
pub use evaluate::{Denial, Explanation, HeaderPlan, Step, VerifiedTokens, MAX_FORWARD_VALUE};
pub use matcher::{check_path, split_request_url, Allow, Miss, PathPattern, PathProblem, Segment};
pub use model::{PolicyFile, SourceFile};
pub use policy::{
    Access, Auth, Binding, BodyRule, ClaimPath, ClaimRule, Delegation, ForwardRule, Gateway,
    InjectHeader, KeyOrigin, Matched, MemberPath, OauthClient, Policy, Provider, ReceiptRule,
    Route, Secret, TokenLocation, Upstream, PASSABLE_HEADERS, ROUTE_HEADER, SET_FORWARDED,
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
