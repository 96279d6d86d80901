//! The compiled policy in the form the pipeline uses: built once per isolate from the policy the
//! build embedded, never per request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Challenge;
use crate::gate::key_cache::CacheTimes;
use crate::gate::nonce::{decode_any_base64, MAX_SHARDS};
use crate::jose::{ClaimRules, JwksLimits, Key, KeySet, Limits, Profile};
use crate::policy::{
    Access, Binding, Denial, HeaderPlan, KeySource, MemberPath, Policy, Provider, Route, Secret,
    VerifiedTokens,
};
use crate::Error;

/// Where a provider's keys come from, resolved for the runtime.
#[derive(Debug, Clone)]
pub enum KeySpec {
    /// Fetched from `jwks_uri` and cached.
    Jwks { uri: String, times: CacheTimes },
    /// An inline JWKS, parsed once.
    Inline(Arc<KeySet>),
    /// HMAC keys in Worker secrets, each with its `kid` (see [`hmac_keys`]).
    Secret(Vec<Secret>),
}

/// Why a provider's HMAC keys cannot be used: which listed secret (its index), and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFault {
    /// The Worker secret is not set (or empty).
    Missing(usize),
    /// Not base64, or shorter than 32 bytes once decoded.
    Unusable(usize),
}

/// The HMAC key set of a `secret`/`secrets` provider from the values of its Worker secrets, in
/// the order the policy lists them (`values[i]` is the text of `secrets[i]`, `None` when it is not
/// set). Every listed secret must be present and usable, or the whole provider is unavailable
/// (its routes answer 503 `temporarily_unavailable`): a half-loaded rotation is a configuration
/// error to fix, never a reason to accept or refuse tokens by which secret happened to load.
/// Each key carries its secret's `kid`; [`KeySet::select`] then picks by `(alg, kid)` exactly.
pub fn hmac_keys(secrets: &[Secret], values: &[Option<&str>]) -> Result<KeySet, SecretFault> {
    let mut keys = Vec::with_capacity(secrets.len());
    for (i, secret) in secrets.iter().enumerate() {
        let text = values
            .get(i)
            .copied()
            .flatten()
            .filter(|t| !t.trim().is_empty())
            .ok_or(SecretFault::Missing(i))?;
        let bytes = decode_any_base64(text.trim()).ok_or(SecretFault::Unusable(i))?;
        keys.push(Key::hs256(secret.kid.clone(), &bytes).map_err(|_| SecretFault::Unusable(i))?);
    }
    if keys.is_empty() {
        return Err(SecretFault::Missing(0));
    }
    Ok(KeySet::from_keys(keys))
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
    pub nonce_claim: Option<MemberPath>,
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
    /// Each route's `WWW-Authenticate` schemes, by route id (and the gateway-wide Bearer one).
    challenges: HashMap<String, Challenge>,
    default_challenge: Challenge,
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
        let challenges = policy
            .routes()
            .iter()
            .map(|r| (r.id.clone(), route_challenge(&gw.realm, r, &providers)))
            .collect();
        Ok(Self {
            challenges,
            default_challenge: Challenge::bearer(&gw.realm),
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

    /// Step 2: the route for a request, or 400 (unnormalised path, or a case / trailing-slash
    /// variant of a more protected route), 404 (no route), 405 (the path's routes do not take
    /// the method; the error carries their `Allow`).
    pub fn route(&self, method: &str, host: &str, raw_path: &str) -> Result<&Route, Error> {
        self.policy
            .match_route(method, host, raw_path)
            .map(|m| m.route)
            .map_err(Error::Route)
    }

    /// The providers a route reads, in the order it names them.
    pub fn route_providers<'a>(&'a self, route: &'a Route) -> impl Iterator<Item = &'a ProviderRt> {
        route
            .access
            .providers()
            .iter()
            .filter_map(|name| self.providers.get(name))
    }

    /// The `WWW-Authenticate` challenges for a refusal on the route `route_id` (the Bearer one
    /// for anything else).
    pub fn challenge(&self, route_id: Option<&str>) -> &Challenge {
        route_id
            .and_then(|id| self.challenges.get(id))
            .unwrap_or(&self.default_challenge)
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

/// The schemes a route's challenges name: `DPoP` if some required provider takes DPoP, `Bearer`
/// if some takes Bearer (or none takes either).
fn route_challenge(
    realm: &str,
    route: &Route,
    providers: &HashMap<String, ProviderRt>,
) -> Challenge {
    let (mut bearer, mut dpop) = (false, false);
    for p in route
        .access
        .providers()
        .iter()
        .filter_map(|n| providers.get(n))
    {
        if p.dpop {
            dpop = true;
        } else if p
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Bearer"))
        {
            bearer = true;
        }
    }
    Challenge::new(realm, bearer, dpop)
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
        KeySource::Secrets(list) => KeySpec::Secret(list.clone()),
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
                max_lifetime_secs: Some(secs(p.max_lifetime_secs)),
                required: p
                    .required_claims
                    .iter()
                    .map(|c| c.segments().to_vec())
                    .collect(),
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
    fn hmac_keys_carry_their_kids_and_need_every_secret() {
        use crate::jose::Alg;
        let secrets = [
            Secret {
                name: "NEW".into(),
                kid: Some("k2".into()),
            },
            Secret {
                name: "OLD".into(),
                kid: Some("k1".into()),
            },
        ];
        let new = crate::jose::b64::encode(&[2u8; 32]);
        let old = crate::jose::b64::encode(&[1u8; 32]);
        let set = hmac_keys(&secrets, &[Some(&new), Some(&old)]).expect("keys");
        let secret_of = |kid| match set.select(Alg::Hs256, Some(kid)).map(|k| k.material()) {
            Ok(crate::jose::KeyMaterial::Hmac { secret }) => Ok(secret.clone()),
            Ok(_) => panic!("not an HMAC key"),
            Err(e) => Err(e),
        };
        assert_eq!(secret_of("k2"), Ok(vec![2u8; 32]));
        assert_eq!(secret_of("k1"), Ok(vec![1u8; 32]));
        assert_eq!(secret_of("k3"), Err(crate::jose::Error::UnknownKey));
        // two keys: a token must name its key
        assert_eq!(
            set.select(Alg::Hs256, None).map(|_| ()),
            Err(crate::jose::Error::KidMissing)
        );
        // one missing or unusable of several: the provider is unavailable, naming which
        assert_eq!(
            hmac_keys(&secrets, &[Some(&new), None]).map(|_| ()),
            Err(SecretFault::Missing(1))
        );
        assert_eq!(
            hmac_keys(&secrets, &[Some(" "), Some(&old)]).map(|_| ()),
            Err(SecretFault::Missing(0))
        );
        let short = crate::jose::b64::encode(&[1u8; 16]);
        assert_eq!(
            hmac_keys(&secrets, &[Some(&new), Some(&short)]).map(|_| ()),
            Err(SecretFault::Unusable(1))
        );
        assert_eq!(
            hmac_keys(&secrets, &[Some("not base64!"), Some(&old)]).map(|_| ()),
            Err(SecretFault::Unusable(0))
        );
        // `secret = "NAME"`: one key without kid, for tokens without kid
        let one = [Secret {
            name: "S".into(),
            kid: None,
        }];
        let set = hmac_keys(&one, &[Some(&old)]).expect("keys");
        assert!(set.select(Alg::Hs256, None).is_ok());
        assert_eq!(
            set.select(Alg::Hs256, Some("k1")).map(|_| ()),
            Err(crate::jose::Error::UnknownKey)
        );
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
