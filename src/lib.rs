//! attestgate: an edge gateway that verifies runtime-attestation and agent-identity tokens
//! against per-route policies before a request reaches the origin.
//!
//! The crate has two layers:
//! - a **pure core** that does no I/O and takes time and randomness as parameters:
//!   [`jose`] (token parsing, keys, signatures, claims), [`gate`] (the phases of a decision,
//!   the credential families, the seams, nonces) and [`error`] (the one error type and its wire
//!   mapping). Route policies come from the `attestgate-policy` crate. The core builds and
//!   tests natively; `docs/architecture.md` maps it.
//! - a **thin runtime adapter**, `edge`, compiled only for `wasm32`: the Worker's fetch handler
//!   (it executes the core's plans), WebCrypto, the JWKS cache, secrets, the nonce-store Durable
//!   Object and forwarding.
#![forbid(unsafe_code)]
// No unwrap, expect, panic or unchecked indexing in shipped code (Cargo.toml, [workspace.lints]);
// test builds are exempt: there a failed unwrap is a failed test.
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

pub mod api;
pub mod error;
pub mod first_poll;
pub mod gate;
pub mod jose;

#[cfg(target_arch = "wasm32")]
// One slice after a length check (`edge/mod.rs`); the adapter is being reworked (issue 13).
#[allow(clippy::indexing_slicing)]
mod edge;

pub use attestgate_policy as policy;
pub use error::Error;

pub const EMBEDDED_POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy.bin"));

#[cfg(test)]
mod build_cfg_tests {
    /// The test-only self-test endpoint (`src/edge/selftest.rs`) is compiled in exactly when the
    /// build ran with `ATTESTGATE_SELFTEST=1`, so any build without it (`scripts/build.sh`,
    /// `wrangler deploy`) has no such route.
    #[test]
    fn selftest_cfg_follows_the_env_var_and_is_off_by_default() {
        assert_eq!(
            cfg!(attestgate_selftest),
            option_env!("ATTESTGATE_SELFTEST") == Some("1")
        );
    }
}
