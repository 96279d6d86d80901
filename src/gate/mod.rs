//! The decision pipeline: from a request and a matched route to "forward with these headers"
//! or a typed [`crate::Error`]. Pure: keys, replay state, time and randomness come in through seams.
//!
//! - [`extract`]: where each provider's credential is, duplicates refused;
//! - [`phase`]: the authenticator (SPEC §3 steps 2–10) and its seams [`phase::KeySource`]
//!   and [`phase::ReplayGuard`];
//! - [`compiled`]: the compiled policy as the pipeline uses it, built once per isolate;
//! - [`dpop`], [`binding`], [`nonce`]: proof-of-possession, token binding, challenge nonces;
//! - [`phase::forward`]: which inbound headers the origin request loses and which it gets;
//! - [`key_cache`]: when to fetch a JWKS, when stale keys may serve, when to answer 503;
//! - [`log`]: the one decision log line;
//! - [`url`]: the parts of the request URL, split without a second parse;
//! - [`rate_limit`]: the challenge endpoint's per-client token buckets;
//! - [`store`]: the nonce store's wire protocol and its checks, shared by Worker and object.

pub mod binding;
pub mod compiled;
pub mod dpop;
pub mod extract;
pub mod key_cache;
pub mod log;
// Fixed ranges of a fixed-size nonce array, after its length was checked.
#[allow(clippy::indexing_slicing)]
pub mod nonce;
// `digest[0]` of a SHA-256 digest (32 bytes); the pipeline is being reworked (issue 13).
#[allow(clippy::indexing_slicing)]
pub mod phase;
pub mod rate_limit;
pub mod store;
pub mod url;

pub use compiled::{Gate, KeySpec, ProviderRt};
