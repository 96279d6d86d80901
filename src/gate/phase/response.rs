//! The response phase: what the client gets back. Pure; `src/edge` executes it.
//!
//! - A forwarded request gets the origin's response as it is (status, status text, headers, body
//!   stream untouched), plus the headers the gateway adds. Today that is one: after a request
//!   whose proof spent a DPoP nonce, the next `DPoP-Nonce` (RFC 9449 §8.2). Other response
//!   headers go here.
//! - On a route with a `mask` (issue 18) the plan carries a [`MaskPlan`]: whether the mask
//!   applies to this caller (then the executor pipes the body through the streaming
//!   transformer, [`crate::gate::mask`]) and the `Vary` every response of the route gets.
//! - The gateway's own answers (a refusal, the challenge endpoint) are an [`Answer`]: always JSON
//!   with `Cache-Control: no-store`, and the headers SPEC §4 asks for.

use crate::error::{self, FreshNonce, Wire};

/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub const DPOP_NONCE: &str = "dpop-nonce";
/// The attestation challenge response header (OAuth attestation-based client authentication).
pub const ATTESTATION_CHALLENGE: &str = "oauth-client-attestation-challenge";

/// What the client gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsePlan {
    /// The origin's response. With no headers it is passed through untouched; otherwise these
    /// are set on it (the executor waits for the origin's headers, since a fetched response's
    /// headers are immutable, and answers with a new response around the same body stream).
    Origin {
        headers: Vec<(&'static str, String)>,
        /// Issue 18: the route masks responses.
        mask: Option<MaskPlan>,
    },
    /// The gateway's own answer.
    Own(Answer),
}

impl ResponsePlan {
    /// The origin's response, plus a fresh `DPoP-Nonce` when one is given.
    pub fn origin(dpop_nonce: Option<String>) -> Self {
        ResponsePlan::Origin {
            headers: dpop_nonce.map(|n| (DPOP_NONCE, n)).into_iter().collect(),
            mask: None,
        }
    }

    /// The mask plan of a forwarded request, if its route masks.
    pub fn mask(&self) -> Option<&MaskPlan> {
        match self {
            ResponsePlan::Origin { mask, .. } => mask.as_ref(),
            ResponsePlan::Own(_) => None,
        }
    }
}

/// Issue 18: the mask decision of a request on a route with a `mask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskPlan {
    /// Why the mask applies to this caller; `None`: it does not (the origin's body passes,
    /// with `vary`).
    pub why: Option<crate::gate::mask::MaskWhy>,
    /// The credential headers that decide it, for `Vary`.
    pub vary: String,
}

/// One of the gateway's own answers: `status`, the JSON `body`, `Content-Type:
/// application/json`, `Cache-Control: no-store`, then `headers` in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    /// The challenge endpoint's answer: `{"nonce", "expires_in"}` and the nonce in `DPoP-Nonce`.
    pub fn challenge(nonce: String, expires_in: i64) -> Self {
        Answer {
            status: 200,
            body: format!("{{\"nonce\":\"{nonce}\",\"expires_in\":{expires_in}}}"),
            headers: vec![(DPOP_NONCE, nonce)],
        }
    }

    /// A JSON answer of one of the gateway's own endpoints (the operator API, issue 16).
    pub fn json(status: u16, body: String) -> Self {
        Answer {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// A refusal in its wire form (SPEC §4): the JSON error body with the request id, then
    /// `WWW-Authenticate`, `Retry-After` (503, 429), `Allow` (405), and the fresh nonce headers
    /// the wire form asks for when a nonce is given.
    pub fn refusal(wire: &Wire, request_id: &str, fresh: Option<String>) -> Self {
        let mut headers = Vec::new();
        if let Some(value) = &wire.www_authenticate {
            headers.push(("www-authenticate", value.clone()));
        }
        if let Some(secs) = wire.retry_after {
            headers.push(("retry-after", secs.to_string()));
        }
        if let Some(allow) = wire.allow {
            headers.push(("allow", allow.to_owned()));
        }
        if let Some(nonce) = fresh {
            match wire.fresh_nonce {
                FreshNonce::Dpop => headers.push((DPOP_NONCE, nonce)),
                FreshNonce::Attestation => {
                    headers.push((DPOP_NONCE, nonce.clone()));
                    headers.push((ATTESTATION_CHALLENGE, nonce));
                }
                FreshNonce::No => {}
            }
        }
        Answer {
            status: wire.status,
            body: error::body(wire, request_id),
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Challenge;
    use crate::Error;

    #[test]
    fn a_refusal_carries_the_headers_of_its_wire_form() {
        let wire = Error::ChallengeMissing.wire_for(&Challenge::bearer("r"));
        let a = Answer::refusal(&wire, "id-1", Some("n1".into()));
        assert_eq!(a.status, 401);
        assert_eq!(
            a.headers,
            [
                ("www-authenticate", wire.www_authenticate.clone().unwrap()),
                (DPOP_NONCE, "n1".to_owned()),
                (ATTESTATION_CHALLENGE, "n1".to_owned()),
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["request_id"], "id-1");
        // A refusal that asks for no nonce never carries one.
        let a = Answer::refusal(
            &Error::Token(crate::jose::Error::BadSignature).wire("r"),
            "id",
            Some("n".into()),
        );
        assert!(a.headers.iter().all(|(n, _)| *n == "www-authenticate"));
        let a = Answer::refusal(&Error::NonceStoreUnavailable.wire("r"), "id", None);
        assert_eq!(
            (a.status, a.headers.clone()),
            (503, vec![("retry-after", "5".into())])
        );
    }

    #[test]
    fn only_a_dpop_request_adds_a_header_to_the_origins_response() {
        assert_eq!(
            ResponsePlan::origin(None),
            ResponsePlan::Origin {
                headers: vec![],
                mask: None
            }
        );
        assert_eq!(
            ResponsePlan::origin(Some("n".into())),
            ResponsePlan::Origin {
                headers: vec![(DPOP_NONCE, "n".into())],
                mask: None
            }
        );
        let a = Answer::challenge("abc".into(), 120);
        assert_eq!(a.body, r#"{"nonce":"abc","expires_in":120}"#);
        assert_eq!(a.headers, [(DPOP_NONCE, "abc".to_owned())]);
    }
}
