//! The decision core: from a request to "forward it like this" or a typed [`crate::Error`], as a
//! [`phase::Decision`]. Pure: keys, replay state, secrets, time and randomness come in through
//! the [`seams`]. The map of the whole is `docs/architecture.md`.
//!
//! - [`phase`]: the phases in SPEC §3 order (request, authenticate, authorize, single use,
//!   forward, response, record), composed into [`phase::decide`];
//! - [`family`]: credential families behind one trait (the JWT family today);
//! - [`seams`]: `KeySource`, `ReplayGuard`, the nonce key, `Secrets`, `Random`, and the
//!   signature seams;
//! - [`compiled`]: the compiled policy as the phases use it, built once per isolate;
//! - [`extract`]: reading a credential header, duplicates refused;
//! - [`dpop`], [`binding`], [`nonce`]: proof-of-possession, token binding, challenge nonces;
//! - [`key_cache`]: when to fetch a JWKS, when stale keys may serve, when to answer 503;
//! - [`log`]: the one decision log line;
//! - [`url`]: the parts of the request URL, split without a second parse;
//! - [`rate_limit`]: the challenge endpoint's per-client token buckets;
//! - [`store`]: the nonce store's wire protocol and its checks, shared by Worker and object;
//! - [`signing`]: the gateway's signing key, its JWKS and `sign_jwt` (issue 14);
//! - [`digest`]: one length-prefixed SHA-256 of several parts (store keys, cache keys);
//! - [`token_cache`]: tokens whose signature verified, per isolate (only the signature check is skipped);
//! - [`inject`]: the credential an upstream gets (issue 14): what to fetch, cache keys, headers.

pub mod audit;
pub mod binding;
pub mod body;
pub mod budget;
pub mod compiled;
pub mod deny;
pub mod digest;
pub mod dpop;
pub mod extract;
pub mod family;
pub mod intent;
// Issue 14: credential injection (plans, token endpoint exchange, the token cache).
pub mod inject;
pub mod key_cache;
pub mod log;
pub mod mask;
// Fixed ranges of a fixed-size nonce array, after its length was checked.
#[allow(clippy::indexing_slicing)]
pub mod nonce;
pub mod operator;
pub mod phase;
pub mod rate_limit;
pub mod seams;
pub mod signing;
pub mod ssf;
pub mod status_list;
pub mod store;
pub mod token_cache;
pub mod url;

pub use compiled::{Gate, KeySpec, ProviderRt};
