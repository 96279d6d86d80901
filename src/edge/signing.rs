//! The gateway's signing key in the Worker (issue 14 item 3): read from the Worker secrets the
//! first time something signs or publishes it, once per isolate ([`GatewayKeys::from_secrets`]);
//! a missing or malformed key is logged once (names and reasons only, never key material) and
//! makes those routes answer 503. Signatures are made by [`WebCryptoSigner`]: the private key is
//! imported once per isolate as a non-extractable `CryptoKey` and checked with a probe signature.

use std::cell::OnceCell;

use serde_json::Value;

use super::webcrypto::WebCryptoSigner;
use crate::gate::seams::Secrets;
use crate::gate::signing::{self, GatewayKeys, SigningFault, SigningKeySource};
use crate::Error;

/// Per isolate: the keys (or why not) and the signer with its imported `CryptoKey`.
pub struct IsolateSigning {
    keys: OnceCell<Result<GatewayKeys, SigningFault>>,
    #[allow(dead_code)] // until the receipt signer (next commit) calls `sign_jwt`
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
    #[allow(dead_code)] // until the receipt signer (next commit) calls it
    pub async fn sign_jwt(
        &self,
        secrets: &impl Secrets,
        typ: &str,
        claims: &Value,
    ) -> Result<String, Error> {
        let keys = self.keys(secrets)?;
        let signed = signing::sign_jwt(keys, &self.signer, typ, claims).await;
        if signed.is_err() {
            worker::console_error!(
                "{{\"attestgate\":\"signing_key_unavailable\",\"reason\":\"signing_key_refused_by_runtime\",\"secret\":\"{}\"}}",
                signing::SIGNING_KEY_SECRET
            );
        }
        signed
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
