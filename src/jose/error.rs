//! The JOSE layer's own failures: what parsing, key selection, signature checks, claim
//! validation and the key and signing seams can say. Every function of [`crate::jose`] returns
//! this type; none knows about HTTP.
//!
//! The gateway nests it (`crate::Error::Token`) and maps it to the wire in `src/error.rs`: a
//! failure of the token itself is 401 `invalid_token`. The key-material variants at the end
//! (a JWKS over its limits, an unusable HMAC secret or signing key, a DPoP proof without a usable
//! `jwk`, RS256 without a native verifier, a seam that had to wait) are failures of what the
//! gateway supplied rather than of a token: each caller that can meet one maps it explicitly
//! (503 keys unavailable, 503 secret unavailable, 401 `invalid_dpop_proof`, ...), never through
//! the blanket conversion.
//!
//! [`Error::reason`] is the stable snake_case code of the log line and metrics; the codes of the
//! token variants are the ones the gateway has always logged.

use core::fmt;

/// Why the JOSE layer refused. `Copy`, no payload: nothing from the token is kept.
/// `#[non_exhaustive]` so that adding a precise reason is not a breaking change.
///
/// `repr(u32)`, like the policy crate's `Denial` and `PathProblem`: the gateway's `Error` nests
/// all three, and rustc keeps an enum's tag a whole word only when every variant's payload is
/// word-aligned. With byte-sized payloads every copy and test of a gateway error in the Worker
/// worked on single bytes, about 1.6 KB more wasm (docs/performance.md, "Size").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum Error {
    // ---- the token's form -----------------------------------------------------------------
    /// The token is longer than the configured limit.
    TokenTooLarge,
    /// The compact form does not have exactly three segments (JWE, JSON serialisation, ...).
    SegmentCount,
    /// A segment is empty, or the token has characters outside the base64url alphabet and `.`.
    MalformedSegment,
    /// A segment is not strict base64url (padding, standard alphabet, non-canonical bits).
    Base64,
    /// A decoded segment is not UTF-8.
    Utf8,
    /// A decoded segment is not a JSON object (syntax, trailing data, nesting too deep, not an object).
    Json,
    /// A JSON object has the same member twice (at any depth).
    DuplicateMember,

    // ---- the JOSE header ------------------------------------------------------------------
    /// A JOSE header member has the wrong JSON type.
    HeaderType,
    /// `alg` is absent.
    AlgMissing,
    /// `alg` is not one this provider allows (includes `none` and every case variant).
    AlgNotAllowed,
    /// `typ` is absent, or not one the provider accepts.
    TypNotAccepted,
    /// `crit` is present: the gateway implements no JWS extensions.
    CritUnsupported,
    /// `b64` is present (RFC 7797 unencoded payloads are not JWTs).
    B64Unsupported,
    /// `enc`, `zip` or `cty` is present (JWE, compression, nested JWT), or a key-locating member
    /// (`jwk`, `jku`, `x5u`, `x5c`) in an access token.
    UnsupportedHeader,

    // ---- key selection ----------------------------------------------------------------------
    /// No `kid` and the provider has more than one key for the algorithm.
    KidMissing,
    /// No key with this `kid` (after the one allowed refresh).
    UnknownKey,
    /// The selected key is bound to another algorithm or key type.
    KeyAlgMismatch,
    /// More than one key matches the `kid`.
    AmbiguousKey,

    // ---- the signature ----------------------------------------------------------------------
    /// The signature has the wrong length for the algorithm or key.
    SignatureLength,
    /// The signature does not verify.
    BadSignature,

    // ---- the claims ---------------------------------------------------------------------------
    /// A registered claim has the wrong type or is out of range (`exp` as a string, 1e400, ...).
    ClaimType,
    /// `iss` is absent or does not equal the provider's issuer exactly.
    IssuerMismatch,
    /// `aud` is absent or has none of the provider's audiences.
    AudienceMismatch,
    /// `exp` is absent.
    ExpMissing,
    /// `exp` is past (beyond the skew).
    Expired,
    /// `nbf` is in the future (beyond the skew).
    NotYetValid,
    /// `iat` is in the future (beyond the skew).
    IssuedInFuture,
    /// `exp - iat` (or `exp - now` without `iat`) exceeds `max_lifetime_secs`.
    LifetimeTooLong,
    /// A claim listed in `required_claims` is absent.
    RequiredClaimMissing,

    // ---- key material and seams (each caller maps these explicitly) -------------------------
    /// A JWK Set document larger than `JwksLimits::max_bytes` or with more than
    /// `JwksLimits::max_keys` entries: refused whole (the gateway: keys unavailable, 503).
    JwksTooLarge,
    /// A configured HMAC secret shorter than 32 bytes (or with a `kid` over 256 bytes): never a
    /// key (the gateway: secret unavailable, 503).
    HmacSecretUnusable,
    /// A DPoP proof without a `jwk`, or with one that is not a usable public key for its `alg`
    /// (the gateway: 401 `invalid_dpop_proof`, like every other failure of a proof).
    DpopJwkUnusable,
    /// RS256 through the pure-Rust verifier on wasm32, which does not carry it (the Worker
    /// verifies RS256 in WebCrypto).
    AlgUnavailable,
    /// A signer could not use a signing key (its halves do not match, the runtime refused it).
    /// The gateway: secret unavailable, 503; nothing is ever sent unsigned.
    SigningKeyUnusable,
    /// A seam's future had to wait where its caller cannot ([`super::block_on_ready`], which
    /// polls once): fail closed.
    NotReady,
}

impl Error {
    /// A stable snake_case reason code for logs and metrics (never sent to the client).
    pub fn reason(self) -> &'static str {
        use Error::*;
        match self {
            TokenTooLarge => "token_too_large",
            SegmentCount => "segment_count",
            MalformedSegment => "malformed_segment",
            Base64 => "base64",
            Utf8 => "utf8",
            Json => "json",
            DuplicateMember => "duplicate_member",
            HeaderType => "header_type",
            AlgMissing => "alg_missing",
            AlgNotAllowed => "alg_not_allowed",
            TypNotAccepted => "typ_not_accepted",
            CritUnsupported => "crit_unsupported",
            B64Unsupported => "b64_unsupported",
            UnsupportedHeader => "unsupported_header",
            KidMissing => "kid_missing",
            UnknownKey => "unknown_key",
            KeyAlgMismatch => "key_alg_mismatch",
            AmbiguousKey => "ambiguous_key",
            SignatureLength => "signature_length",
            BadSignature => "bad_signature",
            ClaimType => "claim_type",
            IssuerMismatch => "issuer_mismatch",
            AudienceMismatch => "audience_mismatch",
            ExpMissing => "exp_missing",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            IssuedInFuture => "issued_in_future",
            LifetimeTooLong => "lifetime_too_long",
            RequiredClaimMissing => "required_claim_missing",
            JwksTooLarge => "jwks_too_large",
            HmacSecretUnusable => "hmac_secret_unusable",
            DpopJwkUnusable => "dpop_jwk_unusable",
            AlgUnavailable => "alg_unavailable",
            SigningKeyUnusable => "signing_key_unusable",
            NotReady => "not_ready",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Error {}
