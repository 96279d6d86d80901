//! The seams of the core, in one place: everything a decision needs from outside the pure code.
//! The Worker implements each on its runtime (`src/edge`); the native tests, the benches and the
//! command-line tool use in-memory ones.
//!
//! | seam | in the Worker | natively |
//! |---|---|---|
//! | [`KeySource`]: a provider's keys | `edge::keys::EdgeKeys` (JWKS fetch and caches, inline JWKS, HMAC keys from [`Secrets`]) | `api::StaticKeys` |
//! | [`SignatureVerifier`] | `edge::webcrypto::WebCrypto` | [`crate::jose::NativeVerifier`] |
//! | [`Signer`] | `edge::webcrypto::WebCryptoSigner` (non-extractable keys) | [`crate::jose::NativeSigner`] |
//! | [`ReplayGuard`]: single-use state | `edge::replay::DoReplay` (the nonce-store Durable Object) | `api::MemoryReplay` |
//! | [`NonceKeySource`]: the nonce MAC key | `edge::IsolateNonceKey` (from [`Secrets`], decoded once per isolate) | `Option<&NonceKey>` |
//! | [`Secrets`]: Worker secrets by name | `edge::secrets::WorkerSecrets` (read once per isolate) | [`MemorySecrets`] |
//! | [`Random`]: CSPRNG bytes for nonces | [`SystemRandom`] (`crypto.getRandomValues`) | [`SystemRandom`], or fixed bytes in tests |

use std::collections::HashMap;
use std::sync::Arc;

use crate::gate::compiled::{hmac_keys, ProviderRt, SecretFault};
use crate::gate::nonce::{NonceKey, NonceRef};
use crate::jose::KeySet;
use crate::policy::Secret;
use crate::Error;

pub use crate::jose::{SignatureVerifier, Signer};

/// Where the keys of a provider come from (JWKS cache, inline JWKS, Worker secret).
#[allow(async_fn_in_trait)]
pub trait KeySource {
    /// The provider's keys. With `refresh`, the cached keys lacked the token's `kid`: the source
    /// may refetch (it rate-limits that itself).
    async fn keys(&self, provider: &ProviderRt, refresh: bool) -> Result<Arc<KeySet>, Error>;
}

/// Single-use state: challenge nonces and first-seen ids. `Err` only when the store cannot be
/// reached (then the request fails closed with 503).
#[allow(async_fn_in_trait)]
pub trait ReplayGuard {
    /// Consume a nonce issued by this gateway: `Ok(true)` exactly once.
    async fn consume(&self, nonce: &NonceRef, now: i64) -> Result<bool, Error>;
    /// Record an id until `exp`: `Ok(true)` the first time it is seen.
    async fn first_seen(&self, shard: u8, id: &str, exp: i64, now: i64) -> Result<bool, Error>;
    /// Issue 15: charge one call to the session budget `session` ([`crate::gate::budget`]),
    /// strongly consistent (calls of one session are serialised). The default has no store:
    /// every budgeted route fails closed with 503.
    async fn charge_budget(
        &self,
        session: &str,
        ask: &crate::gate::budget::Ask,
    ) -> Result<crate::gate::budget::Answer, Error> {
        let _ = (session, ask);
        Err(Error::BudgetStoreUnavailable)
    }
}

/// Where the nonce MAC key comes from, asked for only by what issues or checks a nonce (the
/// Worker reads the secret lazily). `None` when `ATTESTGATE_NONCE_KEY` is missing or unusable.
pub trait NonceKeySource {
    fn nonce_key(&self) -> Option<&NonceKey>;
}

impl NonceKeySource for Option<&NonceKey> {
    fn nonce_key(&self) -> Option<&NonceKey> {
        *self
    }
}

/// The Worker secret that holds the nonce MAC key (and from which the JWKS copy key is derived).
pub const NONCE_KEY_SECRET: &str = "ATTESTGATE_NONCE_KEY";

/// Worker secrets by name: the one way the gateway reads them. In the Worker a secret (or, for
/// local development, a plain var of the same name) is read once per isolate: a changed secret
/// is a new deployment, hence new isolates.
pub trait Secrets {
    /// The text of secret `name`; `None` when it is not set or empty.
    fn secret(&self, name: &str) -> Option<String>;
}

/// Secrets held in memory (tests, the command-line tool).
#[derive(Debug, Default, Clone)]
pub struct MemorySecrets {
    values: HashMap<String, String>,
}

impl MemorySecrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set secret `name` to `text` (an empty text is the same as not set).
    pub fn insert(&mut self, name: &str, text: &str) {
        self.values.insert(name.to_owned(), text.to_owned());
    }
}

impl Secrets for MemorySecrets {
    fn secret(&self, name: &str) -> Option<String> {
        self.values.get(name).filter(|t| !t.is_empty()).cloned()
    }
}

/// The HMAC key set of a `secret`/`secrets` provider, read through [`Secrets`] (every listed
/// secret must be there and usable: [`hmac_keys`]).
pub fn secret_keys(secrets: &impl Secrets, list: &[Secret]) -> Result<KeySet, SecretFault> {
    let values: Vec<Option<String>> = list.iter().map(|s| secrets.secret(&s.name)).collect();
    let texts: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
    hmac_keys(list, &texts)
}

/// Random bytes from a CSPRNG, for nonces (time and randomness are parameters of the core).
pub trait Random {
    /// Fill `bytes`; `false` when no randomness could be had (the caller fails closed).
    fn fill(&self, bytes: &mut [u8]) -> bool;
}

/// The platform's CSPRNG: `crypto.getRandomValues` in the Worker, the OS natively.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRandom;

impl Random for SystemRandom {
    fn fill(&self, bytes: &mut [u8]) -> bool {
        getrandom::fill(bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_secrets_treat_empty_as_unset_and_feed_hmac_keys() {
        let mut s = MemorySecrets::new();
        s.insert("EMPTY", "");
        s.insert("K", &crate::jose::b64::encode(&[7u8; 32]));
        assert_eq!(s.secret("EMPTY"), None);
        assert_eq!(s.secret("NONE"), None);
        let one = |name: &str| Secret {
            name: name.into(),
            kid: None,
        };
        assert!(secret_keys(&s, &[one("K")]).is_ok());
        assert_eq!(
            secret_keys(&s, &[one("EMPTY")]).map(|_| ()),
            Err(SecretFault::Missing(0))
        );
    }
}
