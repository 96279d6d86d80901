//! The compiled policy in the form the pipeline uses: built once per isolate from the policy the
//! build embedded, never per request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::gate::key_cache::CacheTimes;
use crate::gate::nonce::MAX_SHARDS;
use crate::jose::{ClaimRules, JwksLimits, KeySet, Limits, Profile};
use crate::policy::{
    Access, Binding, Denial, HeaderPlan, KeySource, Policy, Provider, Route, VerifiedTokens,
};
use crate::Error;

/// Where a provider's keys come from, resolved for the runtime.
#[derive(Debug, Clone)]
pub enum KeySpec {
    /// Fetched from `jwks_uri` and cached.
    Jwks { uri: String, times: CacheTimes },
    /// An inline JWKS, parsed once.
    Inline(Arc<KeySet>),
    /// An HMAC key in the named Worker secret.
    Secret(String),
}

/// One provider, ready for verification.
#[derive(Debug, Clone)]
pub struct ProviderRt {
    pub name: String,
    pub header: String,
    pub scheme: Option<String>,
    pub dpop: bool,
    pub profile: Profile,
    /// An unknown `kid` may trigger a JWKS refresh.
    pub refreshable: bool,
    pub binding: Option<Binding>,
    pub nonce_claim: Option<String>,
    pub replay_jti: bool,
    pub keys: KeySpec,
}

/// The gateway: policy, providers and the gateway-wide settings.
#[derive(Debug)]
pub struct Gate {
    policy: Policy,
    providers: HashMap<String, ProviderRt>,
    pub realm: String,
    pub skew_secs: i64,
    pub challenge_path: String,
    pub challenge_ttl_secs: i64,
    pub nonce_shards: u8,
    pub claims_header_prefix: String,
    /// Seconds the origin has to send its response headers.
    pub origin_timeout_secs: u32,
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Gate {
    /// The policy compiled into this build (`$OUT_DIR/policy.json`).
    pub fn from_embedded() -> Result<Self, Error> {
        let policy = Policy::from_embedded(crate::EMBEDDED_POLICY_JSON)
            .map_err(|_| Error::PolicyUnavailable)?;
        Self::new(policy)
    }

    pub fn new(policy: Policy) -> Result<Self, Error> {
        let gw = policy.gateway();
        let skew_secs = secs(gw.clock_skew_secs);
        let providers = policy
            .providers()
            .iter()
            .map(|p| Ok((p.name.clone(), provider_rt(p, skew_secs)?)))
            .collect::<Result<HashMap<_, _>, Error>>()?;
        Ok(Self {
            realm: gw.realm.clone(),
            skew_secs,
            challenge_path: gw.challenge_path.clone(),
            challenge_ttl_secs: secs(gw.challenge_ttl_secs),
            nonce_shards: u8::try_from(gw.nonce_shards)
                .unwrap_or(MAX_SHARDS)
                .clamp(1, MAX_SHARDS),
            claims_header_prefix: gw.claims_header_prefix.clone(),
            origin_timeout_secs: u32::try_from(gw.origin_timeout_secs).unwrap_or(900),
            providers,
            policy,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderRt> {
        self.providers.get(name)
    }

    /// Step 2: the route for a request, or 400 (unnormalised path) / 404 (no route).
    pub fn route(&self, method: &str, host: &str, raw_path: &str) -> Result<&Route, Error> {
        match self.policy.match_route(method, host, raw_path) {
            Ok(m) => Ok(m.route),
            Err(crate::policy::Miss::Unnormalised(_)) => Err(Error::UnnormalisedPath),
            Err(crate::policy::Miss::NoRoute) => Err(Error::NoRoute),
        }
    }

    /// The providers a route reads, in the order it names them.
    pub fn route_providers<'a>(&'a self, route: &'a Route) -> impl Iterator<Item = &'a ProviderRt> {
        route
            .access
            .providers()
            .iter()
            .filter_map(|name| self.providers.get(name))
    }

    pub fn requires_all(route: &Route) -> bool {
        matches!(route.access, Access::All(_))
    }

    /// Step 8 and the header plan of step 10.
    pub fn evaluate<T: VerifiedTokens + ?Sized>(
        &self,
        route: &Route,
        tokens: &T,
    ) -> Result<HeaderPlan, Denial> {
        self.policy.evaluate(route, tokens)
    }
}

fn provider_rt(p: &Provider, skew_secs: i64) -> Result<ProviderRt, Error> {
    let algs = p.algorithms.clone();
    if algs.is_empty() {
        return Err(Error::PolicyUnavailable);
    }
    let keys = match &p.keys {
        KeySource::JwksUri(uri) => KeySpec::Jwks {
            uri: uri.clone(),
            times: CacheTimes {
                stale_window: secs(p.jwks_max_stale_secs),
                ..CacheTimes::for_provider(secs(p.jwks_cache_secs))
            },
        },
        KeySource::Jwks(json) => {
            let (set, _) = KeySet::from_jwks(json.as_bytes(), &JwksLimits::default())
                .map_err(|_| Error::PolicyUnavailable)?;
            KeySpec::Inline(Arc::new(set))
        }
        KeySource::Secret(name) => KeySpec::Secret(name.clone()),
    };
    let scheme = if p.dpop {
        Some(String::from("DPoP"))
    } else {
        p.from.scheme.clone()
    };
    Ok(ProviderRt {
        name: p.name.clone(),
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
                max_lifetime_secs: p.max_lifetime_secs.map(secs),
                required: p.required_claims.clone(),
            },
            limits: Limits::default(),
        },
        refreshable: matches!(p.keys, KeySource::JwksUri(_)),
        binding: p.binding.clone(),
        nonce_claim: p.nonce_claim.clone(),
        replay_jti: p.replay_jti,
        keys,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::policy::{compile, parse_toml};

    fn gate(provider_extra: &str) -> Gate {
        let text = format!(
            r#"
[gateway]
origin = "https://api.example.com"
[provider.agent]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"
{provider_extra}
[[route]]
id = "r"
path = "/r"
require = {{ all = ["agent"] }}
"#
        );
        let file = parse_toml("p.toml", &text).expect("toml");
        Gate::new(compile(vec![file]).expect("policy")).expect("gate")
    }

    fn times(g: &Gate) -> CacheTimes {
        match g.provider("agent").map(|p| &p.keys) {
            Some(KeySpec::Jwks { times, .. }) => *times,
            other => panic!("not a JWKS provider: {other:?}"),
        }
    }

    #[test]
    fn origin_timeout_defaults_to_100_seconds() {
        assert_eq!(gate("").origin_timeout_secs, 100);
    }

    #[test]
    fn jwks_cache_and_stale_window_come_from_the_policy() {
        let t = times(&gate(""));
        assert_eq!((t.max_age, t.stale_window), (600, 3600));
        let t = times(&gate("jwks_cache_secs = 2\njwks_max_stale_secs = 4"));
        assert_eq!((t.max_age, t.stale_window), (2, 4));
        assert_eq!(times(&gate("jwks_max_stale_secs = 0")).stale_window, 0);
    }
}
