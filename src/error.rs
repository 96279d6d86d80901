//! The gateway's error type, nested by layer, and its one mapping to the wire (SPEC §4).
//!
//! The layers, lowest first:
//! * the JOSE layer's [`jose::Error`] (token form, header, key selection, signature, claims, and
//!   the key material the gateway supplies), nested as [`Error::Token`];
//! * the policy crate's route lookup, [`Miss`] (400 unnormalised path or protected variant, 404,
//!   405 with `Allow`), nested as [`Error::Route`], and its route checks, [`Denial`] (403
//!   `insufficient_scope`; a claim that cannot be forwarded is 401), nested as [`Error::Denied`];
//! * the gateway's own variants: the request, missing tokens, single use and bindings, DPoP,
//!   challenges, the rate limit, unavailable dependencies, the origin, internal failures.
//!
//! `From` nests each lower layer, so `?` converts. Where a lower layer's error means something
//! else in context, the call site maps it explicitly instead: a JWKS over its limits while the
//! keys are loaded is [`Error::KeysUnavailable`] (`src/edge/keys.rs`), any failure of a DPoP proof
//! is [`Error::DpopProofInvalid`] (`src/gate/dpop.rs`), a signer that cannot use its key is
//! [`Error::SecretUnavailable`].
//!
//! The mapping, all in this file and all exhaustive matches with no `_` arm (a variant added at
//! any layer does not compile until it is given its place):
//! * [`Error::reason`]: the stable snake_case code of the log line, each layer's own;
//! * `Error::mapping`: every variant's `Class` and fixed description (the JSON body's
//!   `error_description`);
//! * `Class::wire`: per class the status, the `error` code, the `WWW-Authenticate` challenge,
//!   the fresh nonce headers, `Retry-After` and `Allow`.
//!
//! Nothing from the token or the request is ever part of the wire form. The test
//! `every_variant_maps_as_spec_section_4_says` walks every variant, nested ones included.

use core::fmt;

use crate::jose;
use crate::policy::{Denial, Miss};

/// Why a request was refused. `#[non_exhaustive]` so that adding a precise reason is not a
/// breaking change for code that matches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    // ---- 400 invalid_request: the request itself is malformed -----------------------------
    /// The same credential is present more than once (two headers, or a list value).
    DuplicateCredential,
    /// The credential header is not of the form the provider expects (scheme, spacing).
    MalformedCredential,
    /// A header or URL the gateway must read is not valid (non-ASCII, too long).
    MalformedRequest,

    // ---- issue 15: request bodies (413, 415, 400) ----------------------------------------------
    /// The body is larger than the route's `max_body_bytes` (by `Content-Length`, or while read).
    BodyTooLarge,
    /// The route's rules read the body as JSON and it has a `Content-Encoding`.
    BodyEncoded,
    /// The route's rules read the body as JSON and its `Content-Type` is not JSON.
    BodyMediaType,
    /// The body is not one strict JSON object (syntax, duplicate member, too deep, not UTF-8).
    BodyNotJson,
    /// The body could not be read to its end (the stream failed: a truncated upload).
    BodyUnreadable,
    /// A request part an intent rule binds is missing, repeated or unusable (issue 15).
    IntentRequestField,

    // ---- issue 15: 401 insufficient_authorization (draft-ietf-oauth-rar-metadata-remediation) ----
    /// No detail of the token's declared intent covers the request; which check failed.
    IntentNotCovered(crate::gate::intent::Check),

    // ---- the route lookup: 400 (unnormalised path, protected variant), 404, 405 -----------
    /// No route takes the request ([`Miss`]); also the challenge endpoint's 405 (`Allow: POST`).
    Route(Miss),

    // ---- 401 missing_token -------------------------------------------------------------
    /// A token the route requires is absent.
    MissingToken,

    // ---- 401 invalid_token -------------------------------------------------------------
    /// The JOSE layer refused the token: its form, header, key, signature or claims.
    Token(jose::Error),
    /// The token's `(iss, jti)` was seen before.
    ReplayedToken,
    /// The provider requires `jti` (replay protection) and the token has none.
    JtiMissing,
    /// The token binding claim (`pay`) does not match the hash of the bound header.
    BindingMismatch,
    /// The token is sender-constrained (`cnf`) but was checked by a provider without
    /// `proof = "dpop"`: a bound token is never accepted as a bearer token (RFC 9449 §7.2).
    SenderConstrained,

    // ---- issue 16: the deny list and token status lists (401 invalid_token, 403 a fence) ----
    /// The principal, agent, device, key, client, issuer, session or token is on the deny list
    /// (the entry id is in the log, nothing of it in the response).
    Revoked,
    /// A time fence of the deny list has passed: the token is valid, the principal may no
    /// longer act (403).
    Fenced,
    /// The token's status list entry is INVALID (draft-ietf-oauth-status-list).
    StatusInvalid,
    /// The token's status list entry is SUSPENDED.
    StatusSuspended,
    /// The token's `status.status_list` is malformed, or its `idx` is outside the list.
    StatusReference,

    // ---- 401 DPoP (RFC 9449) ---------------------------------------------------------------
    /// The provider requires a DPoP proof and none was sent.
    DpopProofMissing,
    /// The DPoP proof is malformed, badly signed, or does not match the request or token.
    DpopProofInvalid,
    /// The DPoP proof has no nonce, or one that is unknown, expired or used.
    DpopNonceRequired,

    // ---- 401 attestation challenge ---------------------------------------------------------
    /// The token must carry a challenge nonce and has none.
    ChallengeMissing,
    /// The challenge nonce was not issued by this gateway (bad MAC, bad format).
    ChallengeUnknown,
    /// The challenge nonce is older than `challenge_ttl_secs`.
    ChallengeExpired,
    /// The challenge nonce was already used.
    ChallengeUsed,

    // ---- 403 insufficient_scope (and 401 for a claim that cannot be forwarded) ---------------
    /// Valid tokens that do not satisfy the route ([`Denial`]).
    Denied(Denial),

    // ---- 429 ----------------------------------------------------------------------------------
    /// The client address asked for more challenges than its budget allows.
    RateLimited,
    /// Issue 15: the session's rate budget (calls or writes per window) is spent.
    BudgetRate,
    /// Issue 15: the session's intent limit (identifiers, amount, deadline) is spent: 403.
    BudgetSpent,

    // ---- 5xx ----------------------------------------------------------------------------------
    /// The issuer's JWKS could not be fetched and no usable cached keys remain.
    KeysUnavailable,
    /// The nonce / replay store could not be reached.
    NonceStoreUnavailable,
    /// Issue 15: the session-budget store could not be reached.
    BudgetStoreUnavailable,
    /// Issue 16: the deny store could not be reached and the isolate's view is older than the
    /// propagation bound (or the route checks the store on every request).
    DenyStoreUnavailable,
    /// Issue 16: the token's status list could not be fetched or verified, and no copy within
    /// the route's maximum staleness is held.
    StatusListUnavailable,
    /// Issue 17: the decision log could not sequence the record of an `audit = "sync"` route
    /// (nothing is forwarded unrecorded), or answer an operator's read.
    AuditLogUnavailable,
    /// A Worker secret the route needs is missing or unusable.
    SecretUnavailable,
    /// Issue 14: the upstream's injected credential could not be obtained (its token endpoint
    /// down, slow, answering an error or garbage): never forwarded without it.
    CredentialUnavailable,
    /// The policy compiled into the Worker could not be loaded.
    PolicyUnavailable,
    /// Issue 14: the gateway's signing key (`ATTESTGATE_SIGNING_KEY`) is missing, malformed or
    /// refused by the runtime, on a route or endpoint that needs a signature.
    SigningKeyUnavailable,
    /// The origin could not be reached.
    OriginUnreachable,
    /// The origin sent no response headers within the gateway's origin timeout.
    OriginTimeout,
    /// Issue 18: on a masking route, the origin's answer is not JSON the gateway can mask
    /// (media type, encoding, syntax, limits): the gateway's own 502, never the answer.
    OriginUnmaskable,
    /// The gateway's WebAssembly instance trapped while this request was in flight; it is
    /// being reset (the answer is made by the JavaScript entry, `src/edge/task.js`).
    InstanceReset,
    /// A runtime failure the adapter has no better name for (fail closed, details only in the
    /// log).
    Internal,
}

/// Which fresh nonce headers a refusal must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshNonce {
    /// None.
    No,
    /// `DPoP-Nonce` (RFC 9449 §8).
    Dpop,
    /// `DPoP-Nonce` and `OAuth-Client-Attestation-Challenge`.
    Attestation,
}

/// The wire form of a refusal. Built only by [`Error::wire`] / [`Error::wire_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    pub status: u16,
    /// RFC 6750 / RFC 9449 error code, also the `error` member of the JSON body.
    pub code: &'static str,
    /// Fixed text: never derived from the request.
    pub description: &'static str,
    /// The `WWW-Authenticate` value, if any.
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds, for 503 and 429.
    pub retry_after: Option<u32>,
    /// The `Allow` value, for 405.
    pub allow: Option<&'static str>,
    /// Which fresh nonce headers to add.
    pub fresh_nonce: FreshNonce,
}

impl Error {
    /// A stable snake_case reason code for logs and metrics (never sent to the client). The
    /// lower layers name their own ([`jose::Error::reason`], [`Denial::reason`]); the codes are
    /// unique across every variant of every layer.
    pub fn reason(self) -> &'static str {
        match self {
            Error::DuplicateCredential => "duplicate_credential",
            Error::MalformedCredential => "malformed_credential",
            Error::MalformedRequest => "malformed_request",
            Error::BodyTooLarge => "body_too_large",
            Error::BodyEncoded => "body_encoded",
            Error::BodyMediaType => "body_media_type",
            Error::BodyNotJson => "body_not_json",
            Error::BodyUnreadable => "body_unreadable",
            Error::IntentRequestField => "intent_request_field",
            Error::IntentNotCovered(check) => match check {
                crate::gate::intent::Check::NoIntent => "intent_missing",
                crate::gate::intent::Check::Malformed => "intent_malformed",
                crate::gate::intent::Check::Type => "intent_type",
                crate::gate::intent::Check::Action => "intent_action",
                crate::gate::intent::Check::Location => "intent_location",
                crate::gate::intent::Check::Binding => "intent_binding",
            },
            Error::Route(miss) => match miss {
                // Which normal-form rule the path breaks is not part of the code.
                Miss::Unnormalised(_) => "unnormalised_path",
                Miss::NoRoute => "no_route",
                Miss::MethodNotAllowed(_) => "method_not_allowed",
                Miss::ProtectedVariant => "path_variant",
            },
            Error::MissingToken => "missing_token",
            Error::Token(e) => e.reason(),
            Error::ReplayedToken => "replayed_token",
            Error::JtiMissing => "jti_missing",
            Error::BindingMismatch => "binding_mismatch",
            Error::SenderConstrained => "sender_constrained_token",
            Error::Revoked => "revoked",
            Error::Fenced => "fenced",
            Error::StatusInvalid => "token_status_invalid",
            Error::StatusSuspended => "token_status_suspended",
            Error::StatusReference => "token_status_reference",
            Error::DpopProofMissing => "dpop_proof_missing",
            Error::DpopProofInvalid => "dpop_proof_invalid",
            Error::DpopNonceRequired => "dpop_nonce_required",
            Error::ChallengeMissing => "challenge_missing",
            Error::ChallengeUnknown => "challenge_unknown",
            Error::ChallengeExpired => "challenge_expired",
            Error::ChallengeUsed => "challenge_used",
            Error::Denied(denial) => denial.reason(),
            Error::RateLimited => "rate_limited",
            Error::BudgetRate => "budget_rate",
            Error::BudgetSpent => "budget_spent",
            Error::BudgetStoreUnavailable => "budget_store_unavailable",
            Error::KeysUnavailable => "keys_unavailable",
            Error::NonceStoreUnavailable => "nonce_store_unavailable",
            Error::DenyStoreUnavailable => "deny_store_unavailable",
            Error::StatusListUnavailable => "status_list_unavailable",
            Error::AuditLogUnavailable => "audit_log_unavailable",
            Error::SecretUnavailable => "secret_unavailable",
            Error::SigningKeyUnavailable => "signing_key_unavailable",
            Error::CredentialUnavailable => "credential_unavailable",
            Error::PolicyUnavailable => "policy_unavailable",
            Error::OriginUnreachable => "origin_unreachable",
            Error::OriginTimeout => "origin_timeout",
            Error::OriginUnmaskable => "origin_unmaskable",
            Error::InstanceReset => "instance_reset",
            Error::Internal => "internal_error",
        }
    }

    /// The one mapping: every variant, nested ones included, to its class on the wire and its
    /// fixed, client-safe description. Generic on purpose where the detail would help an
    /// attacker (the log line has the precise [`Error::reason`]).
    fn mapping(self) -> (Class, &'static str) {
        use jose::Error as J;
        use Class::*;
        const NOT_NORMAL: &str = "The request path is not in normal form.";
        const INVALID_TOKEN: &str = "The token is invalid.";
        const NOT_YET_VALID: &str = "The token is not valid yet.";
        const CHALLENGE: &str = "A fresh attestation challenge is required.";
        const NO_ACCESS: &str = "The token does not grant access to this resource.";
        const NOT_CONFIGURED: &str = "The gateway is not fully configured.";
        match self {
            Error::DuplicateCredential => (InvalidRequest, "A credential was sent more than once."),
            Error::MalformedCredential => (InvalidRequest, "A credential header is malformed."),
            Error::MalformedRequest => (InvalidRequest, "The request is malformed."),
            Error::BodyTooLarge => (TooLarge, "The request body is too large."),
            Error::BodyEncoded => (
                UnsupportedMediaType,
                "The request body must not have a content encoding here.",
            ),
            Error::BodyMediaType => (UnsupportedMediaType, "The request body must be JSON here."),
            Error::BodyNotJson => (
                InvalidRequest,
                "The request body is not a valid JSON object.",
            ),
            Error::BodyUnreadable => (InvalidRequest, "The request body could not be read."),
            Error::IntentRequestField => (
                InvalidRequest,
                "The request lacks a value the route's intent rules read.",
            ),
            Error::IntentNotCovered(_) => (
                InsufficientAuthorization,
                "The token's authorization details do not cover this request.",
            ),
            Error::Route(Miss::Unnormalised(_) | Miss::ProtectedVariant) => {
                (InvalidRequest, NOT_NORMAL)
            }
            Error::Route(Miss::NoRoute) => (NotFound, "No route matches the request."),
            Error::Route(Miss::MethodNotAllowed(allow)) => {
                (MethodNotAllowed(allow), "Method not allowed.")
            }
            Error::MissingToken => (MissingToken, "A required token is missing."),

            // Every JOSE failure that reaches the wire is the token's: 401 invalid_token. The
            // key-material variants are mapped in context by the callers that can meet them
            // (see the module docs); should one ever arrive here, it still fails closed, as a
            // bad token.
            Error::Token(J::Expired) => (InvalidToken, "The token has expired."),
            Error::Token(J::NotYetValid | J::IssuedInFuture) => (InvalidToken, NOT_YET_VALID),
            Error::Token(
                J::TokenTooLarge
                | J::SegmentCount
                | J::MalformedSegment
                | J::Base64
                | J::Utf8
                | J::Json
                | J::DuplicateMember
                | J::HeaderType
                | J::AlgMissing
                | J::AlgNotAllowed
                | J::TypNotAccepted
                | J::CritUnsupported
                | J::B64Unsupported
                | J::UnsupportedHeader
                | J::KidMissing
                | J::UnknownKey
                | J::KeyAlgMismatch
                | J::AmbiguousKey
                | J::SignatureLength
                | J::BadSignature
                | J::ClaimType
                | J::IssuerMismatch
                | J::AudienceMismatch
                | J::ExpMissing
                | J::LifetimeTooLong
                | J::RequiredClaimMissing
                | J::JwksTooLarge
                | J::HmacSecretUnusable
                | J::DpopJwkUnusable
                | J::AlgUnavailable
                | J::SigningKeyUnusable
                | J::NotReady,
            ) => (InvalidToken, INVALID_TOKEN),
            Error::ReplayedToken => (InvalidToken, "The token was already used."),
            Error::JtiMissing | Error::BindingMismatch | Error::SenderConstrained => {
                (InvalidToken, INVALID_TOKEN)
            }
            // Issue 16: one fixed text for every deny-list and status-list refusal.
            Error::Revoked
            | Error::StatusInvalid
            | Error::StatusSuspended
            | Error::StatusReference => (InvalidToken, "The token is no longer accepted."),
            Error::Fenced => (
                Fenced,
                "The token is no longer accepted for this principal.",
            ),
            // A claim the route forwards that no header may carry: the token's fault, 401.
            Error::Denied(Denial::UnforwardableClaim) => (InvalidToken, INVALID_TOKEN),

            Error::DpopProofMissing => (InvalidDpopProof, "A DPoP proof is required."),
            Error::DpopProofInvalid => (InvalidDpopProof, "The DPoP proof is invalid."),
            Error::DpopNonceRequired => (UseDpopNonce, "A fresh DPoP nonce is required."),
            Error::ChallengeMissing
            | Error::ChallengeUnknown
            | Error::ChallengeExpired
            | Error::ChallengeUsed => (UseAttestationChallenge, CHALLENGE),
            Error::Denied(
                Denial::RequirementUnmet
                | Denial::ScopeMissing
                | Denial::ClaimConstraint
                | Denial::DelegationTooDeep,
            ) => (InsufficientScope, NO_ACCESS),

            Error::RateLimited => (RateLimited, "Too many requests; retry later."),
            Error::BudgetRate => (
                RateLimited,
                "The session's rate budget is spent; retry later.",
            ),
            Error::BudgetSpent => (
                InsufficientAuthorizationLimit,
                "The session has spent what its authorization allows.",
            ),
            Error::BudgetStoreUnavailable => (
                Unavailable,
                "The session budget store is temporarily unavailable.",
            ),
            Error::KeysUnavailable => (
                Unavailable,
                "The token issuer's keys are temporarily unavailable.",
            ),
            Error::NonceStoreUnavailable => {
                (Unavailable, "The nonce store is temporarily unavailable.")
            }
            Error::DenyStoreUnavailable => {
                (Unavailable, "The deny list is temporarily unavailable.")
            }
            Error::StatusListUnavailable => (
                Unavailable,
                "The token status list is temporarily unavailable.",
            ),
            Error::AuditLogUnavailable => {
                (Unavailable, "The decision log is temporarily unavailable.")
            }
            Error::SecretUnavailable | Error::PolicyUnavailable | Error::SigningKeyUnavailable => {
                (Unavailable, NOT_CONFIGURED)
            }
            Error::CredentialUnavailable => (
                Unavailable,
                "The upstream's credential is temporarily unavailable.",
            ),
            Error::InstanceReset => (Unavailable, "The gateway is restarting; retry shortly."),
            Error::OriginUnreachable => (BadGateway, "The origin could not be reached."),
            Error::OriginTimeout => (GatewayTimeout, "The origin did not answer in time."),
            Error::OriginUnmaskable => (BadGateway, "The origin's answer could not be masked."),
            Error::Internal => (ServerError, "Internal error."),
        }
    }

    /// The fixed, client-safe description (the body's `error_description`).
    pub fn description(self) -> &'static str {
        self.mapping().1
    }

    /// The complete wire form for a route whose providers take only `Bearer` (or no scheme):
    /// [`Error::wire_for`] with [`Challenge::bearer`]. `realm` comes from the policy, never from
    /// the request.
    pub fn wire(self, realm: &str) -> Wire {
        self.wire_for(&Challenge::bearer(realm))
    }

    /// The complete wire form, with the `WWW-Authenticate` challenges of the route that refused
    /// (SPEC §4): one challenge per scheme the route accepts, with the error code except for
    /// `missing_token` (RFC 6750 §3.1); DPoP proof and nonce errors only in a `DPoP` challenge.
    pub fn wire_for(self, challenge: &Challenge) -> Wire {
        let (class, description) = self.mapping();
        class.wire(description, challenge, None)
    }

    /// [`Error::wire_for`] for a request the gateway received at `origin` (`scheme://authority`,
    /// the gateway's own URL as the runtime gives it): every challenge also carries
    /// `resource_metadata="<origin><the route's metadata path>"` (RFC 9728 §5.1, SPEC §4), and
    /// `insufficient_scope` carries `scope="<what the route needs>"` (RFC 6750 §3) where the
    /// route needs scopes.
    pub fn wire_at(self, challenge: &Challenge, origin: &str) -> Wire {
        let (class, description) = self.mapping();
        class.wire(description, challenge, Some(origin))
    }
}

/// Nesting: a JOSE failure is the token's (401 `invalid_token`). A caller for whom a JOSE error
/// means something else (a JWKS over its limits, a DPoP proof) maps it itself, explicitly.
impl From<jose::Error> for Error {
    fn from(e: jose::Error) -> Self {
        Error::Token(e)
    }
}

/// Nesting: a route check that failed (SPEC §3 step 8), the one place where the policy crate's
/// denials meet the wire mapping.
impl From<Denial> for Error {
    fn from(denial: Denial) -> Self {
        Error::Denied(denial)
    }
}

/// Nesting: the route lookup found no route to take the request (SPEC §2, §3 step 2).
impl From<Miss> for Error {
    fn from(miss: Miss) -> Self {
        Error::Route(miss)
    }
}

/// A decision driven by [`jose::block_on_ready`] that had to wait: fail closed as an
/// unavailable dependency (503), as the seams that can wait are the key, store and crypto ones.
impl From<jose::Pending> for Error {
    fn from(_: jose::Pending) -> Self {
        Error::KeysUnavailable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Error {}

/// The `WWW-Authenticate` schemes of one route (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9449 §7.1):
/// `Bearer` when some provider it requires takes Bearer tokens, `DPoP` (with `algs`, every
/// accepted proof algorithm name) when some takes DPoP, both when both. A route whose providers
/// read their tokens from other headers gets `Bearer`: a 401 always carries a challenge. Built
/// once per route when the gateway is built, never per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The realm, escaped for a quoted-string.
    realm: String,
    bearer: bool,
    dpop: bool,
    /// The path of the route's RFC 9728 metadata (`resource_metadata` is the request's origin
    /// plus this path); the gateway-wide document's by default.
    metadata_path: String,
    /// The route's scopes, space-separated and escaped (`scope` on `insufficient_scope`);
    /// `None` when it needs none.
    scope: Option<String>,
    /// Issue 15: the route's `authorization_remediation` (base64url JSON of the authorization
    /// details the route needs, built from the policy only), on intent refusals.
    remediation: Option<String>,
}

impl Challenge {
    pub fn new(realm: &str, bearer: bool, dpop: bool) -> Self {
        Challenge {
            realm: escape_quoted(realm),
            bearer: bearer || !dpop,
            dpop,
            metadata_path: crate::gate::phase::metadata::WELL_KNOWN.to_owned(),
            scope: None,
            remediation: None,
        }
    }

    /// The same challenges, with `authorization_remediation="<b64url>"` on intent refusals
    /// (`remediation` is base64url: nothing to escape).
    pub fn with_remediation(mut self, remediation: Option<String>) -> Self {
        self.remediation = remediation.map(|r| escape_quoted(&r));
        self
    }

    /// The challenges of an intent refusal: each with the error code and the route's
    /// `authorization_remediation`.
    fn render_remediation(&self, code: &str, origin: Option<&str>) -> String {
        match &self.remediation {
            None => self.render(Some(code), false, false, origin),
            Some(r) => self.render(
                Some(&format!("{code}\", authorization_remediation=\"{r}")),
                false,
                false,
                origin,
            ),
        }
    }

    /// The same challenges for a route whose resource's metadata is at `metadata_path` and
    /// which needs `scopes` (RFC 9728 §5.1, RFC 6750 §3).
    pub fn with_resource(mut self, metadata_path: &str, scopes: &[String]) -> Self {
        self.metadata_path = metadata_path.to_owned();
        self.scope = (!scopes.is_empty()).then(|| escape_quoted(&scopes.join(" ")));
        self
    }

    /// A route that takes Bearer tokens only.
    pub fn bearer(realm: &str) -> Self {
        Self::new(realm, true, false)
    }

    /// The header value: `Bearer realm="r"[, error="e"]` and/or
    /// `DPoP realm="r"[, error="e"], algs="..."`, joined by `, `. `dpop_only`: the error is about
    /// the DPoP proof or nonce, so only the DPoP challenge is given.
    /// With `origin` (the request's, `scheme://authority`), each challenge ends with
    /// `resource_metadata="..."`; with `scope`, an error challenge names the route's scopes
    /// after the error (`scope="a b"`). Every value is a quoted-string, escaped.
    fn render(
        &self,
        error: Option<&str>,
        dpop_only: bool,
        scope: bool,
        origin: Option<&str>,
    ) -> String {
        let realm = &self.realm;
        let mut error = error
            .map(|e| format!(", error=\"{e}\""))
            .unwrap_or_default();
        if let Some(s) = self.scope.as_deref().filter(|_| scope) {
            error.push_str(&format!(", scope=\"{s}\""));
        }
        let metadata = origin
            .map(|o| {
                let url = escape_quoted(&format!("{o}{}", self.metadata_path));
                format!(", resource_metadata=\"{url}\"")
            })
            .unwrap_or_default();
        let mut out = String::new();
        if self.bearer && !dpop_only {
            out.push_str(&format!("Bearer realm=\"{realm}\"{error}{metadata}"));
        }
        if self.dpop || dpop_only {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let algs = crate::gate::dpop::PROOF_ALG_NAMES;
            out.push_str(&format!(
                "DPoP realm=\"{realm}\"{error}, algs=\"{algs}\"{metadata}"
            ));
        }
        out
    }
}

/// What a refusal is on the wire: one class per row of SPEC §4's table (plus 500 and 504).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    InvalidRequest,
    /// 413 (issue 15).
    TooLarge,
    /// 415 (issue 15).
    UnsupportedMediaType,
    MissingToken,
    InvalidToken,
    InvalidDpopProof,
    UseDpopNonce,
    UseAttestationChallenge,
    InsufficientScope,
    /// 401 with `authorization_remediation` (issue 15).
    InsufficientAuthorization,
    /// 403: the declared intent's limit is spent (issue 15).
    InsufficientAuthorizationLimit,
    /// Issue 16: a valid token whose principal is past a deny-list time fence (403
    /// `invalid_token`, SPEC §4).
    Fenced,
    NotFound,
    /// With the `Allow` value the matcher (or the challenge endpoint) computed.
    MethodNotAllowed(crate::policy::Allow),
    RateLimited,
    Unavailable,
    BadGateway,
    GatewayTimeout,
    ServerError,
}

/// Which `WWW-Authenticate` challenge a class carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// None (not an authentication failure).
    No,
    /// The route's challenges without an `error` attribute (RFC 6750 §3.1: no credentials).
    Bare,
    /// The route's challenges with `error="<code>"`.
    Error,
    /// Only the `DPoP` challenge, with `error="<code>"` (RFC 9449 §7.1: proof and nonce errors).
    Dpop,
    /// The route's challenges with `error="<code>"` and the route's `authorization_remediation`.
    Remediation,
}

impl Class {
    /// The class's wire form: status, `error` code, challenge, fresh nonce headers,
    /// `Retry-After` (429: the caller replaces it with the limiter's exact wait) and `Allow`.
    fn wire(self, description: &'static str, challenge: &Challenge, origin: Option<&str>) -> Wire {
        use FreshNonce as N;
        let (status, code, auth, fresh_nonce, retry_after, allow) = match self {
            Class::InvalidRequest => (400, "invalid_request", Auth::No, N::No, None, None),
            Class::TooLarge => (413, "request_too_large", Auth::No, N::No, None, None),
            Class::UnsupportedMediaType => {
                (415, "unsupported_media_type", Auth::No, N::No, None, None)
            }
            Class::MissingToken => (401, "missing_token", Auth::Bare, N::No, None, None),
            Class::InvalidToken => (401, "invalid_token", Auth::Error, N::No, None, None),
            Class::InvalidDpopProof => (401, "invalid_dpop_proof", Auth::Dpop, N::Dpop, None, None),
            Class::UseDpopNonce => (401, "use_dpop_nonce", Auth::Dpop, N::Dpop, None, None),
            Class::UseAttestationChallenge => (
                401,
                "use_attestation_challenge",
                Auth::Error,
                N::Attestation,
                None,
                None,
            ),
            Class::InsufficientScope => (403, "insufficient_scope", Auth::Error, N::No, None, None),
            Class::InsufficientAuthorizationLimit => (
                403,
                "insufficient_authorization",
                Auth::Error,
                N::No,
                None,
                None,
            ),
            Class::InsufficientAuthorization => (
                401,
                "insufficient_authorization",
                Auth::Remediation,
                N::No,
                None,
                None,
            ),
            Class::Fenced => (403, "invalid_token", Auth::Error, N::No, None, None),
            Class::NotFound => (404, "not_found", Auth::No, N::No, None, None),
            Class::MethodNotAllowed(allow) => (
                405,
                "method_not_allowed",
                Auth::No,
                N::No,
                None,
                Some(allow.as_str()),
            ),
            Class::RateLimited => (429, "rate_limited", Auth::No, N::No, Some(1), None),
            Class::Unavailable => (
                503,
                "temporarily_unavailable",
                Auth::No,
                N::No,
                Some(5),
                None,
            ),
            Class::BadGateway => (502, "bad_gateway", Auth::No, N::No, None, None),
            Class::GatewayTimeout => (504, "gateway_timeout", Auth::No, N::No, None, None),
            Class::ServerError => (500, "server_error", Auth::No, N::No, None, None),
        };
        let scope = matches!(self, Class::InsufficientScope);
        let www_authenticate = match auth {
            Auth::No => None,
            Auth::Bare => Some(challenge.render(None, false, false, origin)),
            Auth::Error => Some(challenge.render(Some(code), false, scope, origin)),
            Auth::Dpop => Some(challenge.render(Some(code), true, false, origin)),
            Auth::Remediation => Some(challenge.render_remediation(code, origin)),
        };
        Wire {
            status,
            code,
            description,
            www_authenticate,
            retry_after,
            allow,
            fresh_nonce,
        }
    }
}

/// Escape a value for an RFC 9110 quoted-string (the realm is configuration, but be exact).
fn escape_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    // Byte by byte: what is kept is printable ASCII, and every byte of a non-ASCII character is
    // dropped with it.
    for b in value.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b' '..=b'~' => out.push(char::from(b)),
            _ => {}
        }
    }
    out
}

/// The JSON body of a refusal: `{"error", "error_description", "request_id"}`, compact, members
/// in that order (what `serde_json` writes for the same object). The code and the description
/// are fixed printable ASCII without `"` or `\` (the walk test checks every variant), so only the
/// request id is escaped.
pub fn body(wire: &Wire, request_id: &str) -> String {
    use crate::gate::log::{json_object, json_str};
    json_object(&[
        ("error", &json_str(wire.code)),
        ("error_description", &json_str(wire.description)),
        ("request_id", &json_str(request_id)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::Error as J;
    use crate::policy::{Allow, PathProblem};
    use std::collections::HashSet;

    const GET: Allow = Allow::from_static("GET, HEAD");

    /// Lists every variant of every layer once, with the status and `error` code SPEC §4's table
    /// gives it, and makes the list provably complete. It expands to `ALL` (the values walked),
    /// `PATTERNS` (entry `i`'s pattern, as a test) and `covered`, one `match` with an arm per
    /// entry and no `_` arm: a variant added at any layer and not listed here does not compile,
    /// and one listed twice is an unreachable arm (a warning; clippy's `-D warnings` refuses
    /// it). Each entry is `[pattern] [value] status "code"`; the value defaults to the pattern,
    /// and is given only where a payload does not change the mapping (which `PathProblem`,
    /// which `Allow`): the pattern takes `_` for it and one value is walked.
    macro_rules! walk {
        ($( [$($pat:tt)+] $([$($value:tt)+])? $status:literal $code:literal, )*) => {
            const ALL: &[(Error, u16, &str)] = &[
                $( (walk!(@value [$($pat)+] $([$($value)+])?), $status, $code), )*
            ];
            const PATTERNS: &[fn(Error) -> bool] = &[$( |e| matches!(e, $($pat)+), )*];
            #[allow(dead_code)]
            fn covered(e: Error) {
                match e {
                    $( $($pat)+ => {} )*
                }
            }
        };
        (@value [$($pat:tt)+]) => { $($pat)+ };
        (@value [$($pat:tt)+] [$($value:tt)+]) => { $($value)+ };
    }

    walk! {
        // 400: the request
        [Error::DuplicateCredential] 400 "invalid_request",
        [Error::MalformedCredential] 400 "invalid_request",
        [Error::MalformedRequest] 400 "invalid_request",
        [Error::IntentRequestField] 400 "invalid_request",
        [Error::IntentNotCovered(crate::gate::intent::Check::NoIntent)] 401 "insufficient_authorization",
        [Error::IntentNotCovered(crate::gate::intent::Check::Malformed)] 401 "insufficient_authorization",
        [Error::IntentNotCovered(crate::gate::intent::Check::Type)] 401 "insufficient_authorization",
        [Error::IntentNotCovered(crate::gate::intent::Check::Action)] 401 "insufficient_authorization",
        [Error::IntentNotCovered(crate::gate::intent::Check::Location)] 401 "insufficient_authorization",
        [Error::IntentNotCovered(crate::gate::intent::Check::Binding)] 401 "insufficient_authorization",
        // issue 15: request bodies
        [Error::BodyTooLarge] 413 "request_too_large",
        [Error::BodyEncoded] 415 "unsupported_media_type",
        [Error::BodyMediaType] 415 "unsupported_media_type",
        [Error::BodyNotJson] 400 "invalid_request",
        [Error::BodyUnreadable] 400 "invalid_request",
        // the route lookup
        [Error::Route(Miss::Unnormalised(_))] [Error::Route(Miss::Unnormalised(PathProblem::DotSegment))] 400 "invalid_request",
        [Error::Route(Miss::ProtectedVariant)] 400 "invalid_request",
        [Error::Route(Miss::NoRoute)] 404 "not_found",
        [Error::Route(Miss::MethodNotAllowed(_))] [Error::Route(Miss::MethodNotAllowed(GET))] 405 "method_not_allowed",
        // 401
        [Error::MissingToken] 401 "missing_token",
        // the JOSE layer, every variant
        [Error::Token(J::TokenTooLarge)] 401 "invalid_token",
        [Error::Token(J::SegmentCount)] 401 "invalid_token",
        [Error::Token(J::MalformedSegment)] 401 "invalid_token",
        [Error::Token(J::Base64)] 401 "invalid_token",
        [Error::Token(J::Utf8)] 401 "invalid_token",
        [Error::Token(J::Json)] 401 "invalid_token",
        [Error::Token(J::DuplicateMember)] 401 "invalid_token",
        [Error::Token(J::HeaderType)] 401 "invalid_token",
        [Error::Token(J::AlgMissing)] 401 "invalid_token",
        [Error::Token(J::AlgNotAllowed)] 401 "invalid_token",
        [Error::Token(J::TypNotAccepted)] 401 "invalid_token",
        [Error::Token(J::CritUnsupported)] 401 "invalid_token",
        [Error::Token(J::B64Unsupported)] 401 "invalid_token",
        [Error::Token(J::UnsupportedHeader)] 401 "invalid_token",
        [Error::Token(J::KidMissing)] 401 "invalid_token",
        [Error::Token(J::UnknownKey)] 401 "invalid_token",
        [Error::Token(J::KeyAlgMismatch)] 401 "invalid_token",
        [Error::Token(J::AmbiguousKey)] 401 "invalid_token",
        [Error::Token(J::SignatureLength)] 401 "invalid_token",
        [Error::Token(J::BadSignature)] 401 "invalid_token",
        [Error::Token(J::ClaimType)] 401 "invalid_token",
        [Error::Token(J::IssuerMismatch)] 401 "invalid_token",
        [Error::Token(J::AudienceMismatch)] 401 "invalid_token",
        [Error::Token(J::ExpMissing)] 401 "invalid_token",
        [Error::Token(J::Expired)] 401 "invalid_token",
        [Error::Token(J::NotYetValid)] 401 "invalid_token",
        [Error::Token(J::IssuedInFuture)] 401 "invalid_token",
        [Error::Token(J::LifetimeTooLong)] 401 "invalid_token",
        [Error::Token(J::RequiredClaimMissing)] 401 "invalid_token",
        [Error::Token(J::JwksTooLarge)] 401 "invalid_token",
        [Error::Token(J::HmacSecretUnusable)] 401 "invalid_token",
        [Error::Token(J::DpopJwkUnusable)] 401 "invalid_token",
        [Error::Token(J::AlgUnavailable)] 401 "invalid_token",
        [Error::Token(J::SigningKeyUnusable)] 401 "invalid_token",
        [Error::Token(J::NotReady)] 401 "invalid_token",
        // the gateway's own token checks, and the policy's one 401
        [Error::ReplayedToken] 401 "invalid_token",
        [Error::JtiMissing] 401 "invalid_token",
        [Error::BindingMismatch] 401 "invalid_token",
        [Error::SenderConstrained] 401 "invalid_token",
        // issue 16: the deny list and token status lists
        [Error::Revoked] 401 "invalid_token",
        [Error::Fenced] 403 "invalid_token",
        [Error::StatusInvalid] 401 "invalid_token",
        [Error::StatusSuspended] 401 "invalid_token",
        [Error::StatusReference] 401 "invalid_token",
        [Error::Denied(Denial::UnforwardableClaim)] 401 "invalid_token",
        // DPoP and the attestation challenge
        [Error::DpopProofMissing] 401 "invalid_dpop_proof",
        [Error::DpopProofInvalid] 401 "invalid_dpop_proof",
        [Error::DpopNonceRequired] 401 "use_dpop_nonce",
        [Error::ChallengeMissing] 401 "use_attestation_challenge",
        [Error::ChallengeUnknown] 401 "use_attestation_challenge",
        [Error::ChallengeExpired] 401 "use_attestation_challenge",
        [Error::ChallengeUsed] 401 "use_attestation_challenge",
        // 403: the policy's route checks
        [Error::Denied(Denial::RequirementUnmet)] 403 "insufficient_scope",
        [Error::Denied(Denial::ScopeMissing)] 403 "insufficient_scope",
        [Error::Denied(Denial::ClaimConstraint)] 403 "insufficient_scope",
        [Error::Denied(Denial::DelegationTooDeep)] 403 "insufficient_scope",
        // 429, 5xx
        [Error::RateLimited] 429 "rate_limited",
        [Error::BudgetRate] 429 "rate_limited",
        [Error::BudgetSpent] 403 "insufficient_authorization",
        [Error::BudgetStoreUnavailable] 503 "temporarily_unavailable",
        [Error::KeysUnavailable] 503 "temporarily_unavailable",
        [Error::NonceStoreUnavailable] 503 "temporarily_unavailable",
        [Error::DenyStoreUnavailable] 503 "temporarily_unavailable",
        [Error::StatusListUnavailable] 503 "temporarily_unavailable",
        [Error::AuditLogUnavailable] 503 "temporarily_unavailable",
        [Error::SecretUnavailable] 503 "temporarily_unavailable",
        [Error::CredentialUnavailable] 503 "temporarily_unavailable",
        [Error::PolicyUnavailable] 503 "temporarily_unavailable",
        [Error::SigningKeyUnavailable] 503 "temporarily_unavailable",
        [Error::InstanceReset] 503 "temporarily_unavailable",
        [Error::OriginUnreachable] 502 "bad_gateway",
        [Error::OriginTimeout] 504 "gateway_timeout",
        [Error::OriginUnmaskable] 502 "bad_gateway",
        [Error::Internal] 500 "server_error",
    }

    fn is_snake_case(code: &str) -> bool {
        code.starts_with(|c: char| c.is_ascii_lowercase())
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !code.contains("__")
            && !code.ends_with('_')
    }

    /// The walk (issue 13 item 5): for every variant of every layer, the status and `error`
    /// code of SPEC §4, a fixed description, a unique snake_case reason, `WWW-Authenticate`
    /// exactly for 401 and 403, `Retry-After` exactly for 503 and 429, `Allow` exactly for 405.
    #[test]
    fn every_variant_maps_as_spec_section_4_says() {
        const REALM: &str = "realm-of-the-policy";
        const REQUEST_ID: &str = "id-of-the-request";
        const ORIGIN: &str = "https://gw.example";
        let algs = crate::gate::dpop::PROOF_ALG_NAMES;
        let route = Challenge::new(REALM, true, true).with_resource(
            "/.well-known/oauth-protected-resource/mcp",
            &["mcp:tools".to_owned(), "mcp:admin".to_owned()],
        );
        let metadata =
            ", resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource/mcp\"";
        let mut reasons = HashSet::new();
        assert_eq!(ALL.len(), PATTERNS.len());
        for (i, &(e, status, code)) in ALL.iter().enumerate() {
            assert!(PATTERNS[i](e), "entry {i}: {e:?} is not its own pattern");
            let w = e.wire_at(&route, ORIGIN);
            // The same, without the request's origin, but for the resource_metadata parameter.
            let bare = e.wire_for(&route);
            assert_eq!(
                bare.www_authenticate,
                w.www_authenticate.as_ref().map(|h| h.replace(metadata, "")),
                "{e:?}"
            );
            assert_eq!((w.status, w.code), (status, code), "{e:?}");

            // A fixed description: the same whatever the realm, printable ASCII without
            // quotes or backslashes, a sentence; nothing from the request is in the body.
            let d = e.description();
            assert_eq!(w.description, d, "{e:?}");
            assert_eq!(e.wire("another realm").description, d, "{e:?}");
            assert!(
                d.len() > 1
                    && d.ends_with('.')
                    && d.bytes().all(|b| (b' '..=b'~').contains(&b))
                    && !d.contains(['"', '\\'])
                    && !d.contains(REALM)
                    && !d.contains(REQUEST_ID),
                "{e:?}: {d:?}"
            );
            let json: serde_json::Value =
                serde_json::from_str(&body(&w, REQUEST_ID)).expect("body is JSON");
            assert_eq!(
                json,
                serde_json::json!({"error": code, "error_description": d, "request_id": REQUEST_ID}),
                "{e:?}"
            );

            // The log line's reason: snake_case, one per variant across every layer.
            let reason = e.reason();
            assert!(is_snake_case(reason), "{e:?}: {reason:?}");
            assert!(reasons.insert(reason), "{e:?}: reason {reason:?} twice");
            assert_eq!(e.to_string(), reason);

            // WWW-Authenticate exactly for 401 and 403, naming the route's realm; the error
            // attribute except for missing_token; DPoP proof and nonce errors only as DPoP;
            // each challenge names the route's RFC 9728 metadata, and insufficient_scope the
            // scopes the route needs.
            assert_eq!(
                w.www_authenticate.is_some(),
                matches!(status, 401 | 403),
                "{e:?}"
            );
            if let Some(h) = &w.www_authenticate {
                let mut error = format!(", error=\"{code}\"");
                if code == "insufficient_scope" {
                    error.push_str(", scope=\"mcp:tools mcp:admin\"");
                }
                let want = match code {
                    "missing_token" => {
                        format!("Bearer realm=\"{REALM}\"{metadata}, DPoP realm=\"{REALM}\", algs=\"{algs}\"{metadata}")
                    }
                    "invalid_dpop_proof" | "use_dpop_nonce" => {
                        format!("DPoP realm=\"{REALM}\"{error}, algs=\"{algs}\"{metadata}")
                    }
                    _ => format!(
                        "Bearer realm=\"{REALM}\"{error}{metadata}, DPoP realm=\"{REALM}\"{error}, algs=\"{algs}\"{metadata}"
                    ),
                };
                assert_eq!(h, &want, "{e:?}");
            }
            let fresh = match code {
                "invalid_dpop_proof" | "use_dpop_nonce" => FreshNonce::Dpop,
                "use_attestation_challenge" => FreshNonce::Attestation,
                _ => FreshNonce::No,
            };
            assert_eq!(w.fresh_nonce, fresh, "{e:?}");

            // Retry-After exactly for 503 (5 s) and 429 (1 s, replaced by the limiter's wait).
            let retry = match status {
                503 => Some(5),
                429 => Some(1),
                _ => None,
            };
            assert_eq!(w.retry_after, retry, "{e:?}");
            assert_eq!(w.allow.is_some(), status == 405, "{e:?}");
        }
    }

    #[test]
    fn lower_layers_nest_and_keep_their_reasons() {
        assert_eq!(Error::from(J::Expired), Error::Token(J::Expired));
        assert_eq!(
            Error::from(J::BadSignature).reason(),
            J::BadSignature.reason()
        );
        assert_eq!(
            Error::from(Denial::ScopeMissing),
            Error::Denied(Denial::ScopeMissing)
        );
        assert_eq!(
            Error::from(Denial::DelegationTooDeep).reason(),
            Denial::DelegationTooDeep.reason()
        );
        assert_eq!(Error::from(Miss::NoRoute), Error::Route(Miss::NoRoute));
        // Which normal-form rule a path breaks is kept, and changes nothing on the wire.
        let a = Error::from(Miss::Unnormalised(PathProblem::EmptySegment));
        let b = Error::from(Miss::Unnormalised(PathProblem::PathParameter));
        assert_ne!(a, b);
        assert_eq!((a.reason(), a.wire("r")), (b.reason(), b.wire("r")));
        // A decision that had to wait where it cannot: 503, as before.
        assert_eq!(Error::from(crate::jose::Pending), Error::KeysUnavailable);
        assert_eq!(J::from(crate::jose::Pending), J::NotReady);
    }

    #[test]
    fn missing_token_has_no_error_attribute() {
        let w = Error::MissingToken.wire("api.example.com");
        assert_eq!(w.status, 401);
        assert_eq!(w.code, "missing_token");
        assert_eq!(
            w.www_authenticate.as_deref(),
            Some("Bearer realm=\"api.example.com\"")
        );
    }

    #[test]
    fn statuses_follow_the_spec_table() {
        let cases = [
            (
                Error::Route(Miss::Unnormalised(PathProblem::DotSegment)),
                400,
                "invalid_request",
                false,
            ),
            (Error::DuplicateCredential, 400, "invalid_request", false),
            (Error::Token(J::BadSignature), 401, "invalid_token", true),
            (Error::ReplayedToken, 401, "invalid_token", true),
            (Error::DpopProofInvalid, 401, "invalid_dpop_proof", true),
            (Error::DpopNonceRequired, 401, "use_dpop_nonce", true),
            (Error::ChallengeUsed, 401, "use_attestation_challenge", true),
            (
                Error::Denied(Denial::ScopeMissing),
                403,
                "insufficient_scope",
                true,
            ),
            (Error::Route(Miss::NoRoute), 404, "not_found", false),
            (
                Error::KeysUnavailable,
                503,
                "temporarily_unavailable",
                false,
            ),
            (
                Error::NonceStoreUnavailable,
                503,
                "temporarily_unavailable",
                false,
            ),
            (Error::OriginUnreachable, 502, "bad_gateway", false),
            (Error::RateLimited, 429, "rate_limited", false),
            (Error::OriginTimeout, 504, "gateway_timeout", false),
            (Error::InstanceReset, 503, "temporarily_unavailable", false),
            (Error::Internal, 500, "server_error", false),
        ];
        for (e, status, code, challenge) in cases {
            let w = e.wire("r");
            assert_eq!((w.status, w.code), (status, code), "{e:?}");
            assert_eq!(w.www_authenticate.is_some(), challenge, "{e:?}");
            if let Some(h) = &w.www_authenticate {
                if status != 401 || code != "missing_token" {
                    assert!(h.contains(&format!("error=\"{code}\"")), "{h}");
                }
            }
        }
        assert_eq!(Error::KeysUnavailable.wire("r").retry_after, Some(5));
        let w = Error::Route(Miss::MethodNotAllowed(GET)).wire("r");
        assert_eq!((w.status, w.code), (405, "method_not_allowed"));
        assert_eq!((w.allow, w.www_authenticate), (Some("GET, HEAD"), None));
        assert_eq!(Error::Route(Miss::NoRoute).wire("r").allow, None);
        let w = Error::Route(Miss::ProtectedVariant).wire("r");
        assert_eq!((w.status, w.code, w.allow), (400, "invalid_request", None));
        assert_eq!(Error::InstanceReset.wire("r").retry_after, Some(5));
        assert_eq!(Error::RateLimited.wire("r").retry_after, Some(1));
        assert_eq!(Error::OriginTimeout.wire("r").retry_after, None);
        assert_eq!(
            Error::ChallengeUnknown.wire("r").fresh_nonce,
            FreshNonce::Attestation
        );
        assert_eq!(
            Error::DpopNonceRequired.wire("r").fresh_nonce,
            FreshNonce::Dpop
        );
        assert!(Error::DpopProofInvalid
            .wire("r")
            .www_authenticate
            .unwrap_or_default()
            .starts_with("DPoP "));
    }

    #[test]
    fn realm_is_escaped() {
        let w = Error::MissingToken.wire("a\"b\\c\r\n");
        assert_eq!(
            w.www_authenticate.as_deref(),
            Some("Bearer realm=\"a\\\"b\\\\c\"")
        );
        // Only printable ASCII is kept: a non-ASCII character goes whole, never a byte of it.
        let w = Error::MissingToken.wire("caf\u{e9}\u{2028}\u{1f600}\tr\u{7f}");
        assert_eq!(w.www_authenticate.as_deref(), Some("Bearer realm=\"cafr\""));
    }

    /// Issue 14 item 5: `resource_metadata` (RFC 9728 §5.1) on every challenge, `scope` (RFC
    /// 6750 §3) only on insufficient_scope and only where the route needs scopes; both
    /// quoted-strings, escaped, and nothing from the request but the gateway's own origin.
    #[test]
    fn challenges_name_the_metadata_url_and_the_scopes() {
        let c = Challenge::bearer("r").with_resource(
            "/.well-known/oauth-protected-resource/mcp",
            &["a".to_owned(), "b:c".to_owned()],
        );
        let at = |e: Error| e.wire_at(&c, "http://127.0.0.1:8787").www_authenticate;
        let url = "http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp";
        assert_eq!(
            at(Error::MissingToken).as_deref(),
            Some(format!("Bearer realm=\"r\", resource_metadata=\"{url}\"").as_str())
        );
        assert_eq!(
            at(Error::Denied(Denial::ScopeMissing)).as_deref(),
            Some(
                format!("Bearer realm=\"r\", error=\"insufficient_scope\", scope=\"a b:c\", resource_metadata=\"{url}\"")
                    .as_str()
            )
        );
        assert_eq!(
            at(Error::Token(J::Expired)).as_deref(),
            Some(
                format!("Bearer realm=\"r\", error=\"invalid_token\", resource_metadata=\"{url}\"")
                    .as_str()
            )
        );
        // No scopes: no scope parameter, even on insufficient_scope; the gateway-wide document
        // by default.
        let plain = Challenge::bearer("r");
        assert_eq!(
            Error::Denied(Denial::ClaimConstraint)
                .wire_at(&plain, "https://gw")
                .www_authenticate
                .as_deref(),
            Some("Bearer realm=\"r\", error=\"insufficient_scope\", resource_metadata=\"https://gw/.well-known/oauth-protected-resource\"")
        );
        // The origin is escaped like the realm (the runtime never sends such a host, but be exact).
        assert_eq!(
            Error::MissingToken
                .wire_at(&plain, "https://a\"b\\c\r\n")
                .www_authenticate
                .as_deref(),
            Some("Bearer realm=\"r\", resource_metadata=\"https://a\\\"b\\\\c/.well-known/oauth-protected-resource\"")
        );
        // Refusals without a challenge stay without one.
        assert_eq!(
            Error::Route(Miss::NoRoute)
                .wire_at(&c, "https://gw")
                .www_authenticate,
            None
        );
    }

    #[test]
    fn route_challenges_name_each_scheme_once_with_an_escaped_realm() {
        let algs = crate::gate::dpop::PROOF_ALG_NAMES;
        let dpop = Challenge::new("a\"b", false, true);
        assert_eq!(
            Error::MissingToken
                .wire_for(&dpop)
                .www_authenticate
                .as_deref(),
            Some(format!("DPoP realm=\"a\\\"b\", algs=\"{algs}\"").as_str())
        );
        let both = Challenge::new("r", true, true);
        assert_eq!(
            Error::MissingToken
                .wire_for(&both)
                .www_authenticate
                .as_deref(),
            Some(format!("Bearer realm=\"r\", DPoP realm=\"r\", algs=\"{algs}\"").as_str())
        );
        // No scheme at all (tokens in custom headers): Bearer, a 401 always has a challenge.
        assert_eq!(Challenge::new("r", false, false), Challenge::bearer("r"));
        assert_eq!(
            Error::Token(J::Expired).wire_for(&Challenge::bearer("r")),
            Error::Token(J::Expired).wire("r")
        );
    }

    /// The hand-written body is byte for byte what `serde_json` writes for the same object,
    /// whatever the request id holds.
    #[test]
    fn body_bytes_are_serde_jsons() {
        for id in [
            "lU3bx9_EEpAdtP-4",
            "unknown",
            "",
            "explain",
            "a\"b\\c",
            "line\nbreak\ttab\u{1}\u{7f}",
            "caf\u{e9} \u{2028} \u{1f600}",
        ] {
            for &(e, ..) in ALL {
                let w = e.wire("r");
                let want = serde_json::json!({
                    "error": w.code,
                    "error_description": w.description,
                    "request_id": id,
                })
                .to_string();
                assert_eq!(body(&w, id), want, "{e:?} {id:?}");
            }
        }
    }

    #[test]
    fn body_is_fixed_json() {
        let w = Error::Token(J::Expired).wire("r");
        let v: serde_json::Value = serde_json::from_str(&body(&w, "req-1")).unwrap();
        assert_eq!(v["error"], "invalid_token");
        assert_eq!(v["error_description"], "The token has expired.");
        assert_eq!(v["request_id"], "req-1");
    }

    #[test]
    fn body_is_the_text_serde_json_makes() {
        use Error::*;
        for e in [
            Token(J::Expired),
            MissingToken,
            Route(Miss::NoRoute),
            Internal,
            RateLimited,
            DpopProofMissing,
        ] {
            let w = e.wire("r");
            for id in ["req-1", "unknown", "q\"\\\n"] {
                let want = serde_json::json!({
                    "error": w.code, "error_description": w.description, "request_id": id,
                });
                assert_eq!(body(&w, id), want.to_string(), "{e:?}");
            }
        }
    }
}
