//! The JWT family (`kind = "jwt"`): a compact JWS in one request header, after a scheme or not,
//! verified against the provider's keys and claim rules (SPEC §3 steps 3–7), with its bindings:
//! a DPoP proof (`proof = "dpop"`, RFC 9449), a token binding (`binding`, Approov `pay`), a
//! challenge nonce (`nonce_claim`), and first-seen `jti`s (`replay = "jti"`).

use std::sync::Arc;

use crate::gate::binding;
use crate::gate::compiled::ProviderRt;
use crate::gate::dpop;
use crate::gate::extract::{self, HeaderSource};
use crate::gate::family::{Credential, CredentialFamily, Location, Schemes};
use crate::gate::nonce;
use crate::gate::phase::request::Request;
use crate::gate::phase::single_use::{store_key, SingleUse};
use crate::gate::phase::Env;
use crate::gate::seams::{KeySource, SignatureVerifier};
use crate::gate::token_cache::VerifiedCache;
use crate::gate::Gate;
use crate::jose::{self, ClaimRules, Claims, KeySet, Limits, Profile};
use crate::policy::{Binding, MemberPath, Provider};
use crate::Error;

/// The header a DPoP proof is sent in (RFC 9449 §4.1).
pub const DPOP_HEADER: &str = "dpop";

/// One JWT provider, ready for verification.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub header: String,
    /// `DPoP` for a DPoP provider, else the configured scheme (usually `Bearer`), if any.
    pub scheme: Option<String>,
    pub dpop: bool,
    pub profile: Profile,
    pub binding: Option<Binding>,
    pub nonce_claim: Option<MemberPath>,
    pub replay_jti: bool,
    /// The token's header, and `dpop` for a DPoP provider.
    consumes: Vec<String>,
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Jwt {
    /// One token against one key set. The verified-token cache ([`VerifiedCache`], issue 19)
    /// may skip the signature check, and only that: parsing, the header rules, key selection
    /// and every claim check run every time.
    async fn verify_with<K, V: SignatureVerifier, R>(
        &self,
        gate: &Gate,
        provider: &ProviderRt,
        credential: &Credential,
        keys: &Arc<KeySet>,
        env: &Env<'_, K, V, R>,
    ) -> Result<Claims, Error> {
        let token = credential.as_str();
        let selected = jose::select(token, &self.profile, keys)?;
        let cache = gate.token_cache();
        let digest = VerifiedCache::worth_caching(selected.key())
            .then(|| VerifiedCache::digest(&provider.name, credential.sha256()));
        let cached = digest.as_ref().is_some_and(|d| cache.hit(d, keys, env.now));
        if !cached {
            selected.verify_signature(env.verifier).await?;
        }
        let claims = selected.claims(&self.profile.rules, env.now)?;
        if let (false, Some(d)) = (cached, digest) {
            cache.insert(d, keys, claims.exp(), token.len());
        }
        Ok(claims)
    }
}

impl CredentialFamily for Jwt {
    fn compile(p: &Provider, skew_secs: i64) -> Result<Self, Error> {
        let algs = p.algorithms.clone();
        if algs.is_empty() {
            return Err(Error::PolicyUnavailable);
        }
        let scheme = if p.dpop {
            Some(String::from("DPoP"))
        } else {
            p.from.scheme.clone()
        };
        let mut consumes = vec![p.from.header.clone()];
        if p.dpop && p.from.header != DPOP_HEADER {
            consumes.push(DPOP_HEADER.to_owned());
        }
        Ok(Jwt {
            header: p.from.header.clone(),
            scheme,
            dpop: p.dpop,
            profile: Profile {
                algs,
                token_types: p.token_types.clone(),
                rules: ClaimRules {
                    issuer: p.issuer.clone(),
                    audiences: p.audiences.clone(),
                    skew_secs,
                    max_lifetime_secs: Some(secs(p.max_lifetime_secs)),
                    required: p
                        .required_claims
                        .iter()
                        .map(|c| c.segments().to_vec())
                        .collect(),
                },
                limits: Limits::default(),
            },
            binding: p.binding.clone(),
            nonce_claim: p.nonce_claim.clone(),
            replay_jti: p.replay_jti,
            consumes,
        })
    }

    fn location(&self) -> Location<'_> {
        Location {
            header: &self.header,
            scheme: self.scheme.as_deref(),
        }
    }

    fn consumes(&self) -> &[String] {
        &self.consumes
    }

    fn schemes(&self) -> Schemes {
        Schemes {
            dpop: self.dpop,
            bearer: !self.dpop
                && self
                    .scheme
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("Bearer")),
        }
    }

    fn needs_next_nonce(&self) -> bool {
        self.dpop
    }

    /// Step 3: the token after the scheme. A repeated header, or `", "` in the value as the
    /// runtime joins repeated headers, is 400; so is a wrong scheme, except where another
    /// provider of the route takes that scheme in the same header (then this one has no token)
    /// and a Bearer token for a DPoP provider: RFC 9449 §7.1, a DPoP challenge (401
    /// `invalid_dpop_proof` and a fresh nonce), so the client learns what to send.
    fn extract<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        sibling: impl FnOnce() -> bool,
    ) -> Result<Option<String>, Error> {
        match extract::credential(headers, &self.header, self.scheme.as_deref()) {
            Err(Error::MalformedCredential) if sibling() => Ok(None),
            Err(Error::MalformedCredential)
                if self.dpop && extract::has_scheme(headers, &self.header, "Bearer") =>
            {
                Err(Error::DpopProofMissing)
            }
            other => other,
        }
    }

    /// Steps 4–6: parse, select the key (one refresh on an unknown `kid`), verify, validate
    /// the claims.
    async fn verify<K: KeySource, V: SignatureVerifier, R>(
        &self,
        gate: &Gate,
        provider: &ProviderRt,
        token: &Credential,
        env: &Env<'_, K, V, R>,
    ) -> Result<Claims, Error> {
        let keys = env.keys.keys(provider, false).await?;
        match self.verify_with(gate, provider, token, &keys, env).await {
            Err(Error::Token(jose::Error::UnknownKey)) if provider.refreshable => {
                let keys = env.keys.keys(provider, true).await?;
                self.verify_with(gate, provider, token, &keys, env).await
            }
            other => other,
        }
    }

    /// Step 7: a sender-constrained token only where the proof is checked, then the DPoP
    /// proof, the token binding, the challenge nonce, and the `jti` replay rule.
    async fn bind<H: HeaderSource + ?Sized, K, V: SignatureVerifier, R>(
        &self,
        gate: &Gate,
        token: &Credential,
        claims: &Claims,
        req: &Request<'_, H>,
        env: &Env<'_, K, V, R>,
        single_use: &mut Vec<SingleUse>,
    ) -> Result<(), Error> {
        // RFC 9449 §7.2: a sender-constrained token (`cnf`: DPoP `jkt`, mTLS `x5t#S256`, ...)
        // is refused by a provider that cannot check the proof, never taken as a bearer token.
        if !self.dpop && claims.map().contains_key("cnf") {
            return Err(Error::SenderConstrained);
        }
        if self.dpop {
            let proof = match extract::credential(req.headers, DPOP_HEADER, None) {
                Ok(Some(proof)) => proof,
                Ok(None) => return Err(Error::DpopProofMissing),
                Err(Error::DuplicateCredential) => return Err(Error::DuplicateCredential),
                Err(_) => return Err(Error::DpopProofInvalid),
            };
            let checked = dpop::verify(
                &proof,
                &dpop::Expect {
                    method: req.method,
                    htu: req.url.htu,
                    access_token_sha256: token.sha256(),
                    jkt: claims.get_path(&["cnf", "jkt"]).and_then(|v| v.as_str()),
                    skew_secs: gate.skew_secs,
                    now: env.now,
                },
                env.verifier,
            )
            .await?;
            let key = env.nonce_key.nonce_key().ok_or(Error::SecretUnavailable)?;
            let nonce_text = checked.nonce.as_deref().ok_or(Error::DpopNonceRequired)?;
            let nonce = nonce::verify(
                key,
                gate.nonce_shards,
                nonce_text,
                env.now,
                gate.challenge_ttl_secs,
                gate.skew_secs,
            )
            .map_err(|_| Error::DpopNonceRequired)?;
            single_use.push(SingleUse::DpopNonce(nonce));
            let (shard, id) = store_key(gate.nonce_shards, "dpop", &checked.jkt, &checked.jti);
            single_use.push(SingleUse::DpopJti {
                shard,
                id,
                exp: env
                    .now
                    .saturating_add(gate.challenge_ttl_secs.max(gate.skew_secs * 2)),
            });
        }
        if let Some(bind) = &self.binding {
            binding::check(
                claims.get_path(bind.claim.segments()),
                req.headers.header(&bind.header).as_deref(),
            )?;
        }
        if let Some(claim) = &self.nonce_claim {
            let key = env.nonce_key.nonce_key().ok_or(Error::SecretUnavailable)?;
            let text = claims
                .get_path(claim.segments())
                .and_then(|v| v.as_str())
                .ok_or(Error::ChallengeMissing)?;
            let nonce = nonce::verify(
                key,
                gate.nonce_shards,
                text,
                env.now,
                gate.challenge_ttl_secs,
                gate.skew_secs,
            )?;
            single_use.push(SingleUse::Challenge(nonce));
        }
        if self.replay_jti {
            let jti = claims.jti().ok_or(Error::JtiMissing)?;
            let iss = claims
                .map()
                .get("iss")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let (shard, id) = store_key(gate.nonce_shards, "jti", iss, jti);
            let exp = claims.exp().saturating_add(gate.skew_secs);
            // The store keeps a record at most MAX_RECORD_SECS: a token that outlives it could be
            // replayed afterwards, so it is refused.
            if exp > env.now.saturating_add(crate::gate::store::MAX_RECORD_SECS) {
                return Err(Error::Token(jose::Error::LifetimeTooLong));
            }
            single_use.push(SingleUse::Jti { shard, id, exp });
        }
        Ok(())
    }
}
