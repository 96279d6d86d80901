//! The one error type of a gateway decision, and its mapping to the wire (SPEC §4).
//!
//! Every refusal the gateway can make is a variant of [`Error`]. The variant names the failure
//! precisely (for the log line, via [`Error::reason`]); [`Error::wire`] maps it, in this one place,
//! to the HTTP status, the RFC 6750 `error` code, a fixed description and the `WWW-Authenticate`
//! challenge. Nothing from the token or the request is ever part of the wire form.

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

    // ---- 5xx ----------------------------------------------------------------------------------
    /// The issuer's JWKS could not be fetched and no usable cached keys remain.
    KeysUnavailable,
    /// The nonce / replay store could not be reached.
    NonceStoreUnavailable,
    /// A Worker secret the route needs is missing or unusable.
    SecretUnavailable,
    /// The policy compiled into the Worker could not be loaded.
    PolicyUnavailable,
    /// The origin could not be reached.
    OriginUnreachable,
    /// The origin sent no response headers within the gateway's origin timeout.
    OriginTimeout,
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

/// The wire form of a refusal. Built only by [`Error::wire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    pub status: u16,
    /// RFC 6750 / RFC 9449 error code, also the `error` member of the JSON body.
    pub code: &'static str,
    /// Fixed text: never derived from the request.
    pub description: &'static str,
    /// The `WWW-Authenticate` value, if any.
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds, for 503.
    pub retry_after: Option<u32>,
    /// The `Allow` value, for 405.
    pub allow: Option<&'static str>,
    /// Which fresh nonce headers to add.
    pub fresh_nonce: FreshNonce,
}

impl Error {
    /// A stable snake_case reason code for logs and metrics (never sent to the client).
    pub fn reason(self) -> &'static str {
        use Error::*;
        match self {
            DuplicateCredential => "duplicate_credential",
            MalformedCredential => "malformed_credential",
            MalformedRequest => "malformed_request",
            Route(miss) => match miss {
                // Which normal-form rule the path breaks is not part of the code.
                Miss::Unnormalised(_) => "unnormalised_path",
                Miss::NoRoute => "no_route",
                Miss::MethodNotAllowed(_) => "method_not_allowed",
                Miss::ProtectedVariant => "path_variant",
            },
            MissingToken => "missing_token",
            Token(e) => e.reason(),
            ReplayedToken => "replayed_token",
            JtiMissing => "jti_missing",
            BindingMismatch => "binding_mismatch",
            SenderConstrained => "sender_constrained_token",
            DpopProofMissing => "dpop_proof_missing",
            DpopProofInvalid => "dpop_proof_invalid",
            DpopNonceRequired => "dpop_nonce_required",
            ChallengeMissing => "challenge_missing",
            ChallengeUnknown => "challenge_unknown",
            ChallengeExpired => "challenge_expired",
            ChallengeUsed => "challenge_used",
            Denied(denial) => denial.reason(),
            RateLimited => "rate_limited",
            KeysUnavailable => "keys_unavailable",
            NonceStoreUnavailable => "nonce_store_unavailable",
            SecretUnavailable => "secret_unavailable",
            PolicyUnavailable => "policy_unavailable",
            OriginUnreachable => "origin_unreachable",
            OriginTimeout => "origin_timeout",
            InstanceReset => "instance_reset",
            Internal => "internal_error",
        }
    }

    /// The class of the error on the wire.
    fn class(self) -> Class {
        use Error::*;
        match self {
            DuplicateCredential | MalformedCredential | MalformedRequest => Class::InvalidRequest,
            Route(Miss::Unnormalised(_) | Miss::ProtectedVariant) => Class::InvalidRequest,
            Route(Miss::NoRoute) => Class::NotFound,
            Route(Miss::MethodNotAllowed(_)) => Class::MethodNotAllowed,
            MissingToken => Class::MissingToken,
            Token(_)
            | ReplayedToken
            | JtiMissing
            | BindingMismatch
            | SenderConstrained
            | Denied(Denial::UnforwardableClaim) => Class::InvalidToken,
            DpopProofMissing | DpopProofInvalid => Class::InvalidDpopProof,
            DpopNonceRequired => Class::UseDpopNonce,
            ChallengeMissing | ChallengeUnknown | ChallengeExpired | ChallengeUsed => {
                Class::UseAttestationChallenge
            }
            Denied(
                Denial::RequirementUnmet
                | Denial::ScopeMissing
                | Denial::ClaimConstraint
                | Denial::DelegationTooDeep,
            ) => Class::InsufficientScope,
            RateLimited => Class::RateLimited,
            KeysUnavailable
            | NonceStoreUnavailable
            | SecretUnavailable
            | PolicyUnavailable
            | InstanceReset => Class::Unavailable,
            OriginUnreachable => Class::BadGateway,
            OriginTimeout => Class::GatewayTimeout,
            Internal => Class::ServerError,
        }
    }

    /// The fixed, client-safe description. Generic on purpose where the detail would help an
    /// attacker (the log line has the precise [`Error::reason`]).
    pub fn description(self) -> &'static str {
        use Error::*;
        match self {
            Route(Miss::Unnormalised(_) | Miss::ProtectedVariant) => {
                "The request path is not in normal form."
            }
            DuplicateCredential => "A credential was sent more than once.",
            MalformedCredential => "A credential header is malformed.",
            MalformedRequest => "The request is malformed.",
            MissingToken => "A required token is missing.",
            Token(jose::Error::Expired) => "The token has expired.",
            Token(jose::Error::NotYetValid | jose::Error::IssuedInFuture) => {
                "The token is not valid yet."
            }
            ReplayedToken => "The token was already used.",
            DpopProofMissing => "A DPoP proof is required.",
            DpopProofInvalid => "The DPoP proof is invalid.",
            DpopNonceRequired => "A fresh DPoP nonce is required.",
            ChallengeMissing | ChallengeUnknown | ChallengeExpired | ChallengeUsed => {
                "A fresh attestation challenge is required."
            }
            Denied(
                Denial::RequirementUnmet
                | Denial::ScopeMissing
                | Denial::ClaimConstraint
                | Denial::DelegationTooDeep,
            ) => "The token does not grant access to this resource.",
            Route(Miss::NoRoute) => "No route matches the request.",
            Route(Miss::MethodNotAllowed(_)) => "Method not allowed.",
            RateLimited => "Too many requests; retry later.",
            KeysUnavailable => "The token issuer's keys are temporarily unavailable.",
            NonceStoreUnavailable => "The nonce store is temporarily unavailable.",
            SecretUnavailable | PolicyUnavailable => "The gateway is not fully configured.",
            OriginUnreachable => "The origin could not be reached.",
            OriginTimeout => "The origin did not answer in time.",
            InstanceReset => "The gateway is restarting; retry shortly.",
            Internal => "Internal error.",
            _ => "The token is invalid.",
        }
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
        let class = self.class();
        let (status, code) = class.status_code();
        let www_authenticate = match class {
            Class::MissingToken => Some(challenge.render(None, false)),
            Class::InvalidToken | Class::InsufficientScope | Class::UseAttestationChallenge => {
                Some(challenge.render(Some(code), false))
            }
            Class::InvalidDpopProof | Class::UseDpopNonce => {
                Some(challenge.render(Some(code), true))
            }
            _ => None,
        };
        let fresh_nonce = match class {
            Class::InvalidDpopProof | Class::UseDpopNonce => FreshNonce::Dpop,
            Class::UseAttestationChallenge => FreshNonce::Attestation,
            _ => FreshNonce::No,
        };
        // 429: the caller replaces this with the limiter's exact wait.
        let retry_after = match class {
            Class::Unavailable => Some(5),
            Class::RateLimited => Some(1),
            _ => None,
        };
        Wire {
            status,
            code,
            description: self.description(),
            www_authenticate,
            retry_after,
            fresh_nonce,
            allow: match self {
                Error::Route(Miss::MethodNotAllowed(allow)) => Some(allow.as_str()),
                _ => None,
            },
        }
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
}

impl Challenge {
    pub fn new(realm: &str, bearer: bool, dpop: bool) -> Self {
        Challenge {
            realm: escape_quoted(realm),
            bearer: bearer || !dpop,
            dpop,
        }
    }

    /// A route that takes Bearer tokens only.
    pub fn bearer(realm: &str) -> Self {
        Self::new(realm, true, false)
    }

    /// The header value: `Bearer realm="r"[, error="e"]` and/or
    /// `DPoP realm="r"[, error="e"], algs="..."`, joined by `, `. `dpop_only`: the error is about
    /// the DPoP proof or nonce, so only the DPoP challenge is given.
    fn render(&self, error: Option<&str>, dpop_only: bool) -> String {
        let realm = &self.realm;
        let error = error
            .map(|e| format!(", error=\"{e}\""))
            .unwrap_or_default();
        let mut out = String::new();
        if self.bearer && !dpop_only {
            out.push_str(&format!("Bearer realm=\"{realm}\"{error}"));
        }
        if self.dpop || dpop_only {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let algs = crate::gate::dpop::PROOF_ALG_NAMES;
            out.push_str(&format!("DPoP realm=\"{realm}\"{error}, algs=\"{algs}\""));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    InvalidRequest,
    MissingToken,
    InvalidToken,
    InvalidDpopProof,
    UseDpopNonce,
    UseAttestationChallenge,
    InsufficientScope,
    NotFound,
    MethodNotAllowed,
    RateLimited,
    Unavailable,
    BadGateway,
    GatewayTimeout,
    ServerError,
}

impl Class {
    fn status_code(self) -> (u16, &'static str) {
        match self {
            Class::InvalidRequest => (400, "invalid_request"),
            Class::MissingToken => (401, "missing_token"),
            Class::InvalidToken => (401, "invalid_token"),
            Class::InvalidDpopProof => (401, "invalid_dpop_proof"),
            Class::UseDpopNonce => (401, "use_dpop_nonce"),
            Class::UseAttestationChallenge => (401, "use_attestation_challenge"),
            Class::InsufficientScope => (403, "insufficient_scope"),
            Class::NotFound => (404, "not_found"),
            Class::MethodNotAllowed => (405, "method_not_allowed"),
            Class::RateLimited => (429, "rate_limited"),
            Class::Unavailable => (503, "temporarily_unavailable"),
            Class::BadGateway => (502, "bad_gateway"),
            Class::GatewayTimeout => (504, "gateway_timeout"),
            Class::ServerError => (500, "server_error"),
        }
    }
}

/// Escape a value for an RFC 9110 quoted-string (the realm is configuration, but be exact).
fn escape_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            _ => {}
        }
    }
    out
}

/// The JSON body of a refusal: `{"error", "error_description", "request_id"}`.
pub fn body(wire: &Wire, request_id: &str) -> String {
    serde_json::json!({
        "error": wire.code,
        "error_description": wire.description,
        "request_id": request_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::Error as J;
    use crate::policy::{Allow, PathProblem};

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
        let w = Error::Route(Miss::MethodNotAllowed(Allow::from_static("GET, HEAD"))).wire("r");
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

    #[test]
    fn body_is_fixed_json() {
        let w = Error::Token(J::Expired).wire("r");
        let v: serde_json::Value = serde_json::from_str(&body(&w, "req-1")).unwrap();
        assert_eq!(v["error"], "invalid_token");
        assert_eq!(v["error_description"], "The token has expired.");
        assert_eq!(v["request_id"], "req-1");
    }
}
