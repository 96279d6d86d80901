//! The request phase (SPEC §3 steps 1–2): the request URL split ([`crate::gate::url`]), the
//! gateway's own endpoints (SPEC §5; the challenge endpoint today), and route lookup for
//! everything else.
//!
//! - `POST {challenge_path}`: a fresh nonce ([`challenge`]), rate-limited per client address;
//!   any other method there is 405 with `Allow: POST`. No route is consulted.
//! - `GET /.well-known/attestgate/jwks.json`: the gateway's public signing keys
//!   ([`crate::gate::signing`]); other methods 405 with `Allow: GET, HEAD`.
//! - anything else: the route the matcher gives, or its refusal: 400 (unnormalised path, or a
//!   case / trailing-slash variant of a more protected route), 404 (no route), 405 with the
//!   path's `Allow`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};

use crate::gate::extract::HeaderSource;
use crate::gate::nonce::{self, NonceKey};
use crate::gate::rate_limit::{ClientKey, RateLimiter, Verdict};
use crate::gate::seams::Random;
use crate::gate::Gate;
use crate::policy::{Allow, Route};
use crate::Error;

pub use crate::gate::url::{split, RequestUrl};

/// The request as the phases see it.
pub struct Request<'a, H: HeaderSource + ?Sized> {
    /// Exactly as received: routes match it exactly and it is forwarded unchanged.
    pub method: &'a str,
    pub url: RequestUrl<'a>,
    /// `url.host` in lowercase (borrowed when it already is, as the runtime sends it).
    pub host: Cow<'a, str>,
    pub headers: &'a H,
}

impl<'a, H: HeaderSource + ?Sized> Request<'a, H> {
    pub fn new(method: &'a str, url: RequestUrl<'a>, headers: &'a H) -> Self {
        let host = if url.host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(url.host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(url.host)
        };
        Request {
            method,
            url,
            host,
            headers,
        }
    }
}

/// The gateway's own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST {challenge_path}`: a single-use challenge nonce.
    Challenge,
    /// The operator API under `/.well-known/attestgate/` (issue 16, [`crate::gate::operator`]).
    Operator,
    /// Issue 14: `GET /.well-known/attestgate/jwks.json`, the gateway's public signing keys.
    Jwks,
}

impl Endpoint {
    /// The name the decision record gives it in place of a route id.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Challenge => "challenge",
            Endpoint::Operator => "operator",
            Endpoint::Jwks => "jwks",
        }
    }
}

/// What the request asks for.
#[derive(Debug)]
pub enum Plan<'g> {
    /// One of the gateway's own endpoints; `Err` when it does not take the method (405 with
    /// `Allow`).
    Endpoint(Endpoint, Result<(), Error>),
    /// The route the matcher gives, or its refusal.
    Route(Result<&'g Route, Error>),
}

/// Step 1 and 2: the gateway's own endpoints first, then route lookup (fail closed).
pub fn plan<'g, H: HeaderSource + ?Sized>(gate: &'g Gate, req: &Request<'_, H>) -> Plan<'g> {
    if req.url.path == gate.challenge_path {
        let allowed = if req.method == "POST" {
            Ok(())
        } else {
            Err(Error::Route(crate::policy::Miss::MethodNotAllowed(
                Allow::from_static("POST"),
            )))
        };
        return Plan::Endpoint(Endpoint::Challenge, allowed);
    }
    if req.url.path == crate::gate::signing::JWKS_PATH {
        let allowed = if req.method == "GET" || req.method == "HEAD" {
            Ok(())
        } else {
            Err(Error::Route(crate::policy::Miss::MethodNotAllowed(
                Allow::from_static("GET, HEAD"),
            )))
        };
        return Plan::Endpoint(Endpoint::Jwks, allowed);
    }
    if crate::gate::operator::is_operator_path(gate, req.url.path) {
        return Plan::Endpoint(Endpoint::Operator, Ok(()));
    }
    Plan::Route(gate.route(req.method, &req.host, req.url.path))
}

/// The challenge endpoint's per-client buckets, as the caller keeps them: in a `RefCell` per
/// isolate in the Worker, in a `Mutex` in a shareable `api::Gateway`.
pub trait Buckets {
    /// One challenge request of `client` at `now_ms`.
    fn check(&self, client: ClientKey, now_ms: i64) -> Verdict;
}

impl Buckets for RefCell<RateLimiter> {
    fn check(&self, client: ClientKey, now_ms: i64) -> Verdict {
        self.borrow_mut().check(client, now_ms)
    }
}

impl Buckets for Mutex<RateLimiter> {
    fn check(&self, client: ClientKey, now_ms: i64) -> Verdict {
        // `RateLimiter::check` does not panic, so the table is never left half-updated.
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(client, now_ms)
    }
}

/// Why one of the gateway's own endpoints gave no answer of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointRefusal {
    pub error: Error,
    /// For 429: the limiter's exact wait, in seconds (`Retry-After`).
    pub retry_after_secs: Option<u32>,
}

impl From<Error> for EndpointRefusal {
    fn from(error: Error) -> Self {
        EndpointRefusal {
            error,
            retry_after_secs: None,
        }
    }
}

/// The challenge endpoint: the client address (`CF-Connecting-IP`) must be within its rate
/// limit (`429 rate_limited` with the exact `Retry-After` otherwise), then a nonce is made.
/// Issuing is stateless: nothing is stored (the MAC proves the nonce is ours; the store records
/// it only when it is first used), so this costs no store call.
pub fn challenge<H: HeaderSource + ?Sized>(
    gate: &Gate,
    req: &Request<'_, H>,
    buckets: &dyn Buckets,
    now_ms: i64,
    key: Option<&NonceKey>,
    random: &dyn Random,
    now: i64,
) -> Result<String, EndpointRefusal> {
    let client = ClientKey::from_header(req.headers.header("cf-connecting-ip").as_deref());
    if let Verdict::Limited { retry_after_secs } = buckets.check(client, now_ms) {
        return Err(EndpointRefusal {
            error: Error::RateLimited,
            retry_after_secs: Some(retry_after_secs),
        });
    }
    Ok(issue_nonce(gate, key, random, now)?)
}

/// A fresh nonce's text (the challenge endpoint, the next `DPoP-Nonce`, the nonce of a
/// refusal that asks for one). Nothing is stored.
pub fn issue_nonce(
    gate: &Gate,
    key: Option<&NonceKey>,
    random: &dyn Random,
    now: i64,
) -> Result<String, Error> {
    let key = key.ok_or(Error::SecretUnavailable)?;
    let mut bytes = [0u8; 16];
    if !random.fill(&mut bytes) {
        return Err(Error::Internal);
    }
    let issued = nonce::issue(key, gate.nonce_shards, now, gate.challenge_ttl_secs, bytes)?;
    Ok(issued.text)
}
