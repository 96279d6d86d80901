//! Credential families: what a provider's credential is, where it is read from, which request
//! headers it consumes, how it is verified and what it adds to the verified principal. A
//! provider's `kind` names its family; the authenticate phase
//! ([`crate::gate::phase::authenticate`]) and the forward plan only go through [`CredentialFamily`].
//!
//! The families are registered in one list, [`families!`] below: it makes the [`Family`] enum (one
//! variant per family) and implements the trait for it with one `match` arm per family. `async fn`
//! in a trait is not object-safe, so there is no `dyn CredentialFamily`; the enum keeps the calls
//! static (no box, no vtable, one instantiation per family in the Worker).
//!
//! Adding a family: a new module next to [`jwt`] with a type implementing [`CredentialFamily`],
//! and one line in the `families!` list (its variant, its type and the policy `kind` that names
//! it).

pub mod jwt;

use std::cell::OnceCell;

use crate::gate::compiled::ProviderRt;
use crate::gate::extract::HeaderSource;
use crate::gate::phase::request::Request;
use crate::gate::phase::single_use::SingleUse;
use crate::gate::phase::Env;
use crate::gate::seams::{KeySource, SignatureVerifier};
use crate::gate::Gate;
use crate::jose::Claims;
use crate::policy::Provider;
use crate::Error;

/// Where a family reads its credential from: the header and, when it has one, the
/// authentication scheme before the credential (`Authorization: Bearer ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    pub header: &'a str,
    pub scheme: Option<&'a str>,
}

/// Which `WWW-Authenticate` schemes a route that requires the provider names (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schemes {
    pub bearer: bool,
    pub dpop: bool,
}

/// A credential as presented, and its SHA-256, computed at most once per request and shared by
/// everything that needs it: the verified-token cache key, the decision record's token hash
/// (issue 17) and the DPoP proof's `ath` (RFC 9449 §4.3).
#[derive(Debug)]
pub struct Credential {
    text: String,
    sha256: OnceCell<[u8; 32]>,
}

impl Credential {
    pub fn new(text: String) -> Self {
        Credential {
            text,
            sha256: OnceCell::new(),
        }
    }

    /// The credential's text, exactly as presented.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// SHA-256 of the credential's bytes.
    pub fn sha256(&self) -> &[u8; 32] {
        self.sha256.get_or_init(|| {
            use sha2::Digest as _;
            sha2::Sha256::digest(self.text.as_bytes()).into()
        })
    }
}

/// One credential family. Every method is pure but `verify` and `bind`, which reach the seams
/// through the decision's [`Env`].
#[allow(async_fn_in_trait)]
pub trait CredentialFamily: Sized {
    /// The family's part of a compiled provider, once per isolate.
    fn compile(provider: &Provider, skew_secs: i64) -> Result<Self, Error>;

    /// Where the credential is read from.
    fn location(&self) -> Location<'_>;

    /// Every request header the credential occupies (lowercase): deleted before forwarding,
    /// unless the route says `forward_tokens = true`. The forward plan strips exactly these.
    fn consumes(&self) -> &[String];

    /// The challenge schemes of a route that requires this provider.
    fn schemes(&self) -> Schemes;

    /// Whether the response to a request it authenticated carries the next `DPoP-Nonce`
    /// (RFC 9449 §8.2: its proof spent the last one).
    fn needs_next_nonce(&self) -> bool;

    /// The credential in the request: `Ok(None)` when absent, or the refusal (a repeated or
    /// malformed credential). `sibling` tells whether another provider of the route reads the
    /// same header with the scheme the request uses there (asked only when it matters).
    fn extract<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        sibling: impl FnOnce() -> bool,
    ) -> Result<Option<String>, Error>;

    /// Verify the credential: its claims, which is what it adds to the principal. `gate` is the
    /// compiled policy (gateway-wide settings and per-isolate state such as caches).
    async fn verify<K: KeySource, V: SignatureVerifier, R>(
        &self,
        gate: &Gate,
        provider: &ProviderRt,
        credential: &Credential,
        env: &Env<'_, K, V, R>,
    ) -> Result<Claims, Error>;

    /// The checks that bind the verified credential to this request (proof of possession,
    /// token binding, nonces), queueing in `single_use` what may be used once: the single-use
    /// phase runs those only after every other check passed.
    async fn bind<H: HeaderSource + ?Sized, K, V: SignatureVerifier, R>(
        &self,
        gate: &Gate,
        credential: &Credential,
        claims: &Claims,
        req: &Request<'_, H>,
        env: &Env<'_, K, V, R>,
        single_use: &mut Vec<SingleUse>,
    ) -> Result<(), Error>;
}

/// The registry: `Variant(module::Type) = "kind",` for each family.
macro_rules! families {
    ($($variant:ident($($ty:ident)::+) = $kind:literal,)+) => {
        /// A provider's credential family: one variant per registered family.
        #[derive(Debug, Clone)]
        pub enum Family {
            $($variant($($ty)::+),)+
        }

        impl Family {
            /// The family a policy `kind` names.
            pub fn for_kind(kind: &str, provider: &Provider, skew_secs: i64) -> Result<Self, Error> {
                match kind {
                    $($kind => Ok(Family::$variant(<$($ty)::+>::compile(provider, skew_secs)?)),)+
                    _ => Err(Error::PolicyUnavailable),
                }
            }
        }

        impl CredentialFamily for Family {
            fn compile(provider: &Provider, skew_secs: i64) -> Result<Self, Error> {
                Family::for_kind(kind_of(provider), provider, skew_secs)
            }

            fn location(&self) -> Location<'_> {
                match self {
                    $(Family::$variant(f) => f.location(),)+
                }
            }

            fn consumes(&self) -> &[String] {
                match self {
                    $(Family::$variant(f) => f.consumes(),)+
                }
            }

            fn schemes(&self) -> Schemes {
                match self {
                    $(Family::$variant(f) => f.schemes(),)+
                }
            }

            fn needs_next_nonce(&self) -> bool {
                match self {
                    $(Family::$variant(f) => f.needs_next_nonce(),)+
                }
            }

            fn extract<H: HeaderSource + ?Sized>(
                &self,
                headers: &H,
                sibling: impl FnOnce() -> bool,
            ) -> Result<Option<String>, Error> {
                match self {
                    $(Family::$variant(f) => f.extract(headers, sibling),)+
                }
            }

            async fn verify<K: KeySource, V: SignatureVerifier, R>(
                &self,
                gate: &Gate,
                provider: &ProviderRt,
                credential: &Credential,
                env: &Env<'_, K, V, R>,
            ) -> Result<Claims, Error> {
                match self {
                    $(Family::$variant(f) => f.verify(gate, provider, credential, env).await,)+
                }
            }

            async fn bind<H: HeaderSource + ?Sized, K, V: SignatureVerifier, R>(
                &self,
                gate: &Gate,
                credential: &Credential,
                claims: &Claims,
                req: &Request<'_, H>,
                env: &Env<'_, K, V, R>,
                single_use: &mut Vec<SingleUse>,
            ) -> Result<(), Error> {
                match self {
                    $(Family::$variant(f) => {
                        f.bind(gate, credential, claims, req, env, single_use).await
                    })+
                }
            }
        }
    };
}

families! {
    Jwt(jwt::Jwt) = "jwt",
}

/// The `kind` of a compiled provider. The policy compiler accepts only `kind = "jwt"` today and
/// the compiled form does not carry it yet; a second family adds the field there and reads it
/// here.
fn kind_of(_provider: &Provider) -> &'static str {
    "jwt"
}

#[cfg(test)]
mod tests {
    use super::Credential;

    /// FIPS 180-2's `abc` example, and the same digest on a second call.
    #[test]
    fn a_credential_hashes_its_exact_bytes() {
        let c = Credential::new("abc".to_owned());
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = c.sha256().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
        assert_eq!(c.sha256(), c.sha256());
        assert_eq!(c.as_str(), "abc");
        assert_ne!(Credential::new("abd".to_owned()).sha256(), c.sha256());
    }
}
