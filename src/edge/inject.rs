//! Credential injection in the Worker (issue 14 item 2): executes the core's
//! [`InjectPlan`](crate::gate::inject::InjectPlan): reads the Worker secret, or runs the token
//! request the core built against the upstream's token endpoint (timeout, size cap, no
//! redirects) and keeps the token in the isolate's [`TokenCache`] as the core decides (single
//! flight: concurrent requests for one key wait for one fetch).
//!
//! Any failure is a refusal (503), never a forward without the credential. The log line names
//! the upstream, the kind, the secret's name and the fault; never a secret, a token or the
//! token endpoint's body.

use std::cell::RefCell;
use std::time::Duration;

use futures_util::StreamExt;
use worker::{Fetch, Headers};

use super::signing::IsolateSigning;
use super::task::{sleep, within};
use crate::gate::inject::oauth::MAX_RESPONSE_BYTES;
use crate::gate::inject::{
    exchange_request, header_value, token_request, token_response, CacheKey, CachePlan, InjectPlan,
    Issued, Source, TokenCache, TokenFault, ACTOR_TYP, GATEWAY_JWT_TYP,
};
use crate::gate::log::{ascii_json, json_object, json_str};
use crate::gate::seams::Secrets;
use crate::policy::OauthClient;
use crate::Error;

/// While another request fetches the same token: ask the cache again this often.
const WAIT_STEP: Duration = Duration::from_millis(20);

/// The isolate's injected tokens.
#[derive(Default)]
pub struct TokenStore(pub RefCell<TokenCache>);

pub struct Injector<'a, S> {
    pub secrets: &'a S,
    pub store: &'a TokenStore,
    /// The gateway's signing key (`token_exchange` actor assertions, `gateway_jwt`).
    pub signing: &'a IsolateSigning,
    pub request_id: &'a str,
}

impl<S: Secrets> Injector<'_, S> {
    /// The value of the injected header of `plan`, or the refusal.
    pub async fn credential(&self, plan: &InjectPlan<'_>) -> Result<String, Error> {
        match &plan.source {
            Source::Secret(name) => {
                let text = self.secret(plan, name)?;
                header_value(plan.at, &text).ok_or_else(|| {
                    self.log(plan, "secret_unusable", Some(name));
                    Error::SecretUnavailable
                })
            }
            Source::GatewayJwt { claims } => {
                let jwt = self
                    .signing
                    .sign_jwt(self.secrets, GATEWAY_JWT_TYP, claims)
                    .await?;
                header_value(plan.at, &jwt).ok_or(Error::SigningKeyUnavailable)
            }
            Source::ClientCredentials { client, key } => self.token(plan, client, *key, None).await,
            Source::TokenExchange {
                client,
                key,
                subject_exp,
                ..
            } => self.token(plan, client, *key, Some(*subject_exp)).await,
        }
    }

    /// A token of the upstream's token endpoint: from the cache, or fetched once for every
    /// request that asks for it meanwhile (single flight). `cap`: never cached past it.
    async fn token(
        &self,
        plan: &InjectPlan<'_>,
        client: &OauthClient,
        key: CacheKey,
        cap: Option<i64>,
    ) -> Result<String, Error> {
        let timeout_ms = i64::try_from(client.timeout_secs)
            .unwrap_or(30)
            .saturating_mul(1000);
        let waited_max = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(30_000) + 1500);
        let mut waited = Duration::ZERO;
        let mut ticket = None;
        loop {
            let now_ms = js_sys::Date::now() as i64;
            let step = self
                .store
                .0
                .borrow_mut()
                .plan(key, now_ms, ticket, timeout_ms);
            match step {
                CachePlan::Use(token) => {
                    return header_value(plan.at, &token).ok_or(Error::CredentialUnavailable)
                }
                CachePlan::Failed => {
                    self.log(plan, "token_fetch_failed_while_waiting", None);
                    return Err(Error::CredentialUnavailable);
                }
                CachePlan::Wait(t) if waited < waited_max => {
                    ticket = Some(t);
                    sleep(WAIT_STEP).await;
                    waited += WAIT_STEP;
                }
                CachePlan::Wait(_) => {
                    self.log(plan, "token_wait_timeout", None);
                    return Err(Error::CredentialUnavailable);
                }
                CachePlan::Fetch => break,
            }
        }
        // This request holds the key's flight: report back whatever happens.
        let fetched = self.fetch(plan, client, cap).await;
        let mut store = self.store.0.borrow_mut();
        match fetched {
            Ok(issued) => {
                let token = store.fetched(key, &issued.token, issued.cache_until);
                header_value(plan.at, &token).ok_or(Error::CredentialUnavailable)
            }
            Err(e) => {
                store.failed(key);
                Err(e)
            }
        }
    }

    /// Build, send and read one token request.
    async fn fetch(
        &self,
        plan: &InjectPlan<'_>,
        client: &OauthClient,
        cap: Option<i64>,
    ) -> Result<Issued, Error> {
        let id = self.secret(plan, &client.client_id_secret)?;
        let secret = self.secret(plan, &client.client_secret_secret)?;
        let request = match &plan.source {
            Source::TokenExchange {
                subject_token,
                actor,
                ..
            } => {
                let actor_token = self
                    .signing
                    .sign_jwt(self.secrets, ACTOR_TYP, actor)
                    .await?;
                exchange_request(client, &id, &secret, &subject_token.0, &actor_token)
            }
            _ => token_request(client, &id, &secret),
        };
        let limit = Duration::from_secs(client.timeout_secs);
        let answer = match within(limit, fetch_token(&request)).await {
            Some(answer) => answer,
            None => Err(TokenFault::Timeout),
        };
        let now = (js_sys::Date::now() / 1000.0) as i64;
        let issued = answer.and_then(|(status, body)| {
            token_response(status, &body, now, client.refresh_margin_secs)
        });
        match issued {
            Ok(mut issued) => {
                // An exchanged token is never used past the subject token's expiry.
                if let Some(cap) = cap {
                    issued.cache_until =
                        issued.cache_until.map(|u| u.min(cap)).filter(|&u| u > now);
                }
                Ok(issued)
            }
            Err(fault) => {
                self.log(plan, &format!("token_endpoint_{}", fault.reason()), None);
                Err(Error::CredentialUnavailable)
            }
        }
    }

    /// A Worker secret the plan needs; a missing one is 503, logged by name.
    fn secret(&self, plan: &InjectPlan<'_>, name: &str) -> Result<String, Error> {
        self.secrets.secret(name).ok_or_else(|| {
            self.log(plan, "secret_missing", Some(name));
            Error::SecretUnavailable
        })
    }

    fn log(&self, plan: &InjectPlan<'_>, reason: &str, secret: Option<&str>) {
        let mut fields = vec![
            ("attestgate", "\"inject_failed\"".to_owned()),
            ("request_id", json_str(self.request_id)),
            ("upstream", json_str(&plan.upstream.name)),
            ("kind", json_str(plan.kind())),
            ("reason", json_str(reason)),
        ];
        if let Some(name) = secret {
            fields.push(("secret", json_str(name)));
        }
        let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        worker::console_error!("{}", ascii_json(json_object(&refs)));
    }
}

/// POST the token request; the status and the body (at most [`MAX_RESPONSE_BYTES`]).
async fn fetch_token(
    request: &crate::gate::inject::TokenRequest,
) -> Result<(u16, Vec<u8>), TokenFault> {
    let headers = Headers::new();
    let set = |n: &str, v: &str| headers.set(n, v).map_err(|_| TokenFault::Unreachable);
    set("content-type", "application/x-www-form-urlencoded")?;
    set("accept", "application/json")?;
    set("authorization", &request.authorization)?;
    let body = wasm_bindgen::JsValue::from_str(&request.body);
    let req = super::new_request(&request.url, "POST", &headers, Some(&body), true)
        .map_err(|_| TokenFault::Unreachable)?;
    let mut resp = Fetch::Request(req.into())
        .send()
        .await
        .map_err(|_| TokenFault::Unreachable)?;
    let status = resp.status_code();
    if let Ok(Some(len)) = resp.headers().get("content-length") {
        if len
            .parse::<usize>()
            .map_or(true, |n| n > MAX_RESPONSE_BYTES)
        {
            return Err(TokenFault::TooLarge);
        }
    }
    let mut stream = resp.stream().map_err(|_| TokenFault::Unreachable)?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| TokenFault::Unreachable)?;
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(TokenFault::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}
