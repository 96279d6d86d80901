//! The gateway's signing key in the Worker (issue 14 item 3): read from the Worker secrets the
//! first time something signs or publishes it, once per isolate ([`GatewayKeys::from_secrets`]);
//! a missing or malformed key is logged once (names and reasons only, never key material) and
//! makes those routes answer 503. Signatures are made by [`WebCryptoSigner`]: the private key is
//! imported once per isolate as a non-extractable `CryptoKey` and checked with a probe signature.

use std::cell::OnceCell;

use serde_json::Value;

use super::webcrypto::WebCryptoSigner;
use crate::gate::phase::receipt::RECEIPT_TYP;
use crate::gate::phase::{Answer, Decision, ForwardPlan, Outcome};
use crate::gate::seams::Secrets;
use crate::gate::signing::{self, GatewayKeys, SigningFault, SigningKeySource};
use crate::gate::Gate;
use crate::Error;

/// Per isolate: the keys (or why not) and the signer with its imported `CryptoKey`.
pub struct IsolateSigning {
    keys: OnceCell<Result<GatewayKeys, SigningFault>>,
    signer: WebCryptoSigner,
}

impl IsolateSigning {
    pub fn new() -> Self {
        IsolateSigning {
            keys: OnceCell::new(),
            signer: WebCryptoSigner::new(),
        }
    }

    /// The keys, read from `secrets` on first use.
    pub fn keys(&self, secrets: &impl Secrets) -> Result<&GatewayKeys, Error> {
        self.keys
            .get_or_init(|| {
                let keys = GatewayKeys::from_secrets(secrets);
                if let Err(fault) = &keys {
                    worker::console_error!("{}", fault.log_line());
                }
                keys
            })
            .signing_keys()
    }

    /// [`signing::sign_jwt`] with the isolate's key in WebCrypto: the core API the Worker's
    /// signers (receipts, minted JWTs) call.
    #[allow(dead_code)] // the API for JWTs the gateway mints from a `Value` (issue 14 item 2)
    pub async fn sign_jwt(
        &self,
        secrets: &impl Secrets,
        typ: &str,
        claims: &Value,
    ) -> Result<String, Error> {
        self.sign_jwt_json(secrets, typ, &claims.to_string()).await
    }

    /// [`signing::sign_jwt_json`]: claims given as the text of a JSON object.
    pub async fn sign_jwt_json(
        &self,
        secrets: &impl Secrets,
        typ: &str,
        claims_json: &str,
    ) -> Result<String, Error> {
        let keys = self.keys(secrets)?;
        let signed = signing::sign_jwt_json(keys, &self.signer, typ, claims_json).await;
        if signed.is_err() {
            worker::console_error!(
                "{{\"attestgate\":\"signing_key_unavailable\",\"reason\":\"signing_key_refused_by_runtime\",\"secret\":\"{}\"}}",
                signing::SIGNING_KEY_SECRET
            );
        }
        signed
    }
}

impl IsolateSigning {
    /// Issue 14: sign the receipt of a forwarded request (`receipt = true`) and put it in the
    /// plan's headers; a key that cannot sign refuses the request (503), before anything is
    /// sent.
    pub async fn sign_receipt(&self, secrets: &impl Secrets, gate: &Gate, d: &mut Decision<'_>) {
        let log_index = d.log_index;
        let Outcome::Forward(ForwardPlan {
            receipt: Some(receipt),
            ..
        }) = &mut d.outcome
        else {
            return;
        };
        // Issue 17 item 6: sequenced before forwarding, the record's index is in the receipt.
        if let Some(index) = log_index {
            crate::gate::phase::receipt::with_log_index(receipt, index);
        }
        let signed = self
            .sign_jwt_json(secrets, RECEIPT_TYP, &receipt.claims)
            .await;
        match signed {
            Ok(jws) => {
                if let Outcome::Forward(plan) = &mut d.outcome {
                    plan.headers.set_receipt(jws);
                }
                d.receipt = Some(d.request_id);
            }
            Err(e) => {
                let wire = e.wire_for(gate.challenge(d.route));
                d.refuse(e, Some(Answer::refusal(&wire, d.request_id, None)));
            }
        }
    }
}

/// The [`SigningKeySource`] seam of one request: the isolate's keys, read through its secrets.
pub struct IsolateSigningKeys<'a, S> {
    pub state: &'a IsolateSigning,
    pub secrets: &'a S,
}

impl<S: Secrets> SigningKeySource for IsolateSigningKeys<'_, S> {
    fn signing_keys(&self) -> Result<&GatewayKeys, Error> {
        self.state.keys(self.secrets)
    }
}
