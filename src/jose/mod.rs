//! JOSE for the gateway: compact JWS parsing, JWK/JWKS, signature verification, JWT claims.
//!
//! Pure: no I/O, time comes in as `now` (unix seconds). Key *fetching* and caching are the
//! gateway's job; this module only turns bytes into a [`KeySet`] and picks one key from it.
//!
//! The single-token check, [`verify_token`], runs in the order that keeps attacker-controlled
//! bytes away from the expensive and dangerous parts for as long as possible (fail closed at every
//! step): size limits → segments → strict base64url → strict JSON header → `alg`/`typ`/`crit`/...
//! → one key by `(alg, kid)` → signature over the received `header.payload` bytes → only then
//! decode and validate the claims. The decisions are written down in `docs/verification.md`.
//!
//! Every function here fails with this layer's own [`Error`] (`src/jose/error.rs`); the gateway
//! nests it and maps it to the wire in `src/error.rs`.

pub mod alg;
// A [u8; 256] table indexed by a u8 and 4-byte `chunks_exact` windows: never out of bounds,
// and `.get()` would add a branch to the hottest loop of a request (docs/performance.md).
#[allow(clippy::indexing_slicing)]
pub mod b64;
pub mod claims;
// Only the compile-time construction of the small-order point table indexes (const evaluation:
// out of bounds would be a build error, not a panic).
#[allow(clippy::indexing_slicing)]
pub mod crypto;
pub mod error;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod sign;

pub use alg::{Alg, UnknownAlg};
pub use claims::{ClaimRules, Claims};
pub use crypto::{block_on_ready, verify_native, NativeVerifier, Pending, SignatureVerifier};
pub use error::Error;
pub use jwk::{JwksLimits, JwksReport, Key, KeyMaterial, KeyRejection, KeySet, SkippedKey};
pub use jws::{Header, Jws, Limits};
#[cfg(not(target_arch = "wasm32"))]
pub use sign::NativeSigner;
pub use sign::{sign_compact, sign_compact_json, Signer, SigningKey};

use serde_json::{Map, Value};

/// Everything one provider requires of its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Allowed `alg` values (the allowlist; never empty in a valid configuration).
    pub algs: Vec<Alg>,
    /// Accepted `typ` values (case-insensitive, `application/` optional).
    pub token_types: Vec<String>,
    pub rules: ClaimRules,
    pub limits: Limits,
}

impl Default for Profile {
    /// ES256 and EdDSA, `typ` `JWT` or `at+jwt` (SPEC default), default rules and limits.
    fn default() -> Self {
        Profile {
            algs: vec![Alg::Es256, Alg::EdDsa],
            token_types: vec!["JWT".to_owned(), "at+jwt".to_owned()],
            rules: ClaimRules::default(),
            limits: Limits::default(),
        }
    }
}

/// Verifies one compact JWS token against a provider's profile and key set at time `now`, and
/// returns its validated claims. `verifier` is the signature seam: [`NativeVerifier`] natively,
/// a WebCrypto verifier in the Worker.
pub async fn verify_token<V: SignatureVerifier>(
    token: &str,
    profile: &Profile,
    keys: &KeySet,
    verifier: &V,
    now: i64,
) -> Result<Claims, Error> {
    let selected = select(token, profile, keys)?;
    selected.verify_signature(verifier).await?;
    selected.claims(&profile.rules, now)
}

/// A token parsed under the profile's rules, with the one key that may verify it: what
/// [`verify_token`] does before the signature. A caller that knows this exact token already
/// verified with this exact key set (the verified-token cache) may skip
/// [`Selected::verify_signature`]; it never skips [`select`] or [`Selected::claims`].
pub struct Selected<'t, 'k> {
    jws: Jws<'t>,
    key: &'k Key,
}

/// Parse `token` (size limits, segments, strict base64url and JSON, header rules) and select
/// its key by `(alg, kid)`.
pub fn select<'t, 'k>(
    token: &'t str,
    profile: &Profile,
    keys: &'k KeySet,
) -> Result<Selected<'t, 'k>, Error> {
    let jws = jws::parse(token, &profile.algs, &profile.token_types, &profile.limits)?;
    let key = keys.select(jws.header.alg, jws.header.kid.as_deref())?;
    // `select` only returns keys bound to this alg; kept as a second, independent guard so a
    // future change to key selection cannot route a key to another algorithm.
    if key.alg() != jws.header.alg {
        return Err(Error::KeyAlgMismatch);
    }
    Ok(Selected { jws, key })
}

impl Selected<'_, '_> {
    /// The key that must verify the signature.
    pub fn key(&self) -> &Key {
        self.key
    }

    /// The signature over the received `header.payload` bytes, with the selected key.
    pub async fn verify_signature<V: SignatureVerifier>(&self, verifier: &V) -> Result<(), Error> {
        verifier
            .verify(
                self.key,
                self.jws.signing_input.as_bytes(),
                &self.jws.signature,
            )
            .await
    }

    /// The payload as a JSON object, without the JWT claim rules (for tokens that are not access
    /// tokens: Status List Tokens and Security Event Tokens have no required `exp`); only after
    /// the signature verified.
    pub fn payload(&self) -> Result<Map<String, Value>, Error> {
        claims::decode(self.jws.claims_b64)
    }

    /// Decode and validate the claims (only after the signature verified, or a cache says this
    /// exact token verified with this exact key set).
    pub fn claims(&self, rules: &ClaimRules, now: i64) -> Result<Claims, Error> {
        claims::validate(self.jws.claims_b64, rules, now)
    }
}

/// A DPoP proof (RFC 9449) whose signature verified with its own embedded key.
#[derive(Debug, Clone)]
pub struct DpopProof {
    /// The header; `header.jwk` is the proof key (its thumbprint is what `cnf.jkt` must equal).
    pub header: Header,
    /// The proof's claims (strict JSON object), for the caller's `htm`, `htu`, `iat`, `jti`,
    /// `ath` and `nonce` checks.
    pub claims: Map<String, Value>,
}

impl DpopProof {
    /// The RFC 7638 thumbprint of the proof key.
    pub fn jkt(&self) -> Option<&str> {
        self.header.jwk.as_ref().and_then(Key::thumbprint)
    }
}

/// Parses a DPoP proof ([`jws::parse_dpop`]) and verifies its signature with the embedded key.
/// This proves possession only; it never authenticates an issuer. Errors stay precise for the
/// log line (e.g. [`Error::TypNotAccepted`], [`Error::BadSignature`], [`Error::DpopJwkUnusable`]
/// for a missing or unusable `jwk`); the gateway reports any of them as `invalid_dpop_proof`.
pub async fn verify_dpop_proof<V: SignatureVerifier>(
    proof: &str,
    algs: &[Alg],
    limits: &Limits,
    verifier: &V,
) -> Result<DpopProof, Error> {
    let jws = jws::parse_dpop(proof, algs, limits)?;
    let key = jws.header.jwk.as_ref().ok_or(Error::DpopJwkUnusable)?;
    verifier
        .verify(key, jws.signing_input.as_bytes(), &jws.signature)
        .await?;
    let claims = claims::decode(jws.claims_b64)?;
    Ok(DpopProof {
        header: jws.header,
        claims,
    })
}
