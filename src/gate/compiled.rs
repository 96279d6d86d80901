//! The compiled policy in the form the phases use: built once per isolate from the policy the
//! build embedded, never per request. Each provider's credential family
//! ([`crate::gate::family`]) and each route's challenges and consumed credential headers are
//! resolved here.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Challenge;
use crate::gate::family::{CredentialFamily, Family};
use crate::gate::key_cache::CacheTimes;
use crate::gate::nonce::{decode_any_base64, MAX_SHARDS};
use crate::gate::token_cache::VerifiedCache;
use crate::jose::{JwksLimits, Key, KeySet};
use crate::policy::{Access, Denial, HeaderPlan, Policy, Provider, Route, Secret, VerifiedTokens};
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

/// One provider, ready for verification: its keys and its credential family.
#[derive(Debug, Clone)]
pub struct ProviderRt {
    pub name: String,
    pub keys: KeySpec,
    /// An unknown `kid` may trigger a JWKS refresh.
    pub refreshable: bool,
    /// What its credential is and how it is checked.
    pub family: Family,
}

impl ProviderRt {
    /// The provider's JWT family settings, when it is a JWT provider.
    pub fn jwt(&self) -> Option<&crate::gate::family::jwt::Jwt> {
        match &self.family {
            Family::Jwt(jwt) => Some(jwt),
        }
    }
}

/// What the phases need of a route beyond the policy's own description.
#[derive(Debug)]
struct RouteRt {
    /// Its `WWW-Authenticate` schemes.
    challenge: Challenge,
    /// The request headers its providers' credentials occupy, deleted before forwarding
    /// (none with `forward_tokens = true`).
    consumed: Vec<String>,
    /// Issue 14: the other headers deleted before forwarding ([`route_strips`]).
    strips: Vec<String>,
    /// Issue 18: on a masking route, the `Vary` of its responses ([`mask_vary`]).
    mask_vary: String,
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
    /// Each route's challenges and consumed headers, by route id (and the gateway-wide Bearer
    /// challenge).
    routes: HashMap<String, RouteRt>,
    default_challenge: Challenge,
    /// RFC 9728 metadata of the protected resources (issue 14 item 5).
    resources: crate::gate::phase::metadata::Resources,
    /// Seconds the origin has to send its response headers.
    pub origin_timeout_secs: u32,
    /// `[gateway] log_allow_sample`: 1 in N allowed and public decision lines written.
    pub log_allow_sample: u32,
    /// Tokens whose signature verified in this isolate ([`VerifiedCache`]).
    verified: VerifiedCache,
    /// Issue 14: SHA-256 of the compiled policy's embedded form, made on first use (receipts).
    policy_sha256: std::sync::OnceLock<String>,
    /// Issue 16: the deny store's shards and propagation bound (1 and 0 without `[deny]`).
    pub deny_shards: u8,
    pub deny_bound_secs: u8,
    /// Issue 16: the token status lists this isolate holds.
    status_lists: crate::gate::status_list::ListCache,
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Gate {
    /// The policy compiled into this build (`$OUT_DIR/policy.json`).
    pub fn from_embedded() -> Result<Self, Error> {
        let policy =
            Policy::from_embedded(crate::EMBEDDED_POLICY).map_err(|_| Error::PolicyUnavailable)?;
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
        let routes = policy
            .routes()
            .iter()
            .map(|r| {
                let mut rt = route_rt(&gw.realm, r, &providers);
                rt.strips = route_strips(&policy, r, &providers, &rt.consumed);
                if r.mask.is_some() {
                    rt.mask_vary = mask_vary(&policy, r);
                }
                (r.id.clone(), rt)
            })
            .collect();
        let resources = crate::gate::phase::metadata::Resources::new(&policy, &providers);
        let (deny_shards, deny_bound_secs) = policy
            .deny()
            .map_or((1, 0), |d| (d.shards.max(1), d.propagation_secs));
        Ok(Self {
            resources,
            policy_sha256: std::sync::OnceLock::new(),
            status_lists: Default::default(),
            deny_shards,
            deny_bound_secs,
            verified: VerifiedCache::default(),
            routes,
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
            log_allow_sample: gw.log_allow_sample.max(1),
            providers,
            policy,
        })
    }

    /// The isolate's token status lists (issue 16).
    pub fn status_lists(&self) -> &crate::gate::status_list::ListCache {
        &self.status_lists
    }

    /// The isolate's verified-token cache.
    pub fn token_cache(&self) -> &VerifiedCache {
        &self.verified
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Issue 14: the SHA-256 (base64url) of the compiled policy in its embedded form
    /// ([`Policy::to_compiled`], what `build.rs` embeds), computed once: a receipt names the exact
    /// policy that decided, and `attestgate explain` shows the same value.
    pub fn policy_sha256(&self) -> &str {
        self.policy_sha256.get_or_init(|| {
            #[cfg(not(target_arch = "wasm32"))]
            let form = &self.policy.to_compiled();
            // The Worker's one policy is the embedded one (`from_embedded`), whose form this is
            // (the same bytes, tested natively): the wasm links no policy serialiser.
            #[cfg(target_arch = "wasm32")]
            let form = crate::EMBEDDED_POLICY;
            crate::gate::audit::record::policy_hash(form)
        })
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

    /// The RFC 9728 metadata of the policy's protected resources.
    pub fn resources(&self) -> &crate::gate::phase::metadata::Resources {
        &self.resources
    }

    /// The `WWW-Authenticate` challenges for a refusal on the route `route_id` (the Bearer one
    /// for anything else).
    pub fn challenge(&self, route_id: Option<&str>) -> &Challenge {
        route_id
            .and_then(|id| self.routes.get(id))
            .map_or(&self.default_challenge, |r| &r.challenge)
    }

    /// The request headers the credential families of `route`'s providers consume: what the
    /// forward plan deletes besides the claims prefix and the override and hop-by-hop headers.
    pub fn consumed(&self, route: &Route) -> &[String] {
        self.routes
            .get(&route.id)
            .map_or(&[][..], |r| r.consumed.as_slice())
    }

    /// Issue 14: the headers the forward plan deletes besides [`Gate::consumed`], the claims
    /// prefix and the override and hop-by-hop headers ([`route_strips`]).
    pub fn strips(&self, route: &Route) -> &[String] {
        self.routes
            .get(&route.id)
            .map_or(&[][..], |r| r.strips.as_slice())
    }

    /// Issue 18: the `Vary` of every response on a masking route ([`mask_vary`], made once
    /// per isolate).
    pub fn mask_vary(&self, route: &Route) -> &str {
        self.routes
            .get(&route.id)
            .map_or("", |r| r.mask_vary.as_str())
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

/// A route's challenges and consumed headers. The challenges name `DPoP` if some required
/// provider takes DPoP, `Bearer` if some takes Bearer (or none takes either), and the route's
/// RFC 9728 metadata URL and scopes. The consumed
/// headers are its providers' families' ([`CredentialFamily::consumes`]), each once, in the
/// order the route names the providers.
fn route_rt(realm: &str, route: &Route, providers: &HashMap<String, ProviderRt>) -> RouteRt {
    let (mut bearer, mut dpop) = (false, false);
    let mut consumed: Vec<String> = Vec::new();
    for p in route
        .access
        .providers()
        .iter()
        .filter_map(|n| providers.get(n))
    {
        let schemes = p.family.schemes();
        bearer |= schemes.bearer;
        dpop |= schemes.dpop;
        if !route.forward_tokens {
            for header in p.family.consumes() {
                if !consumed.contains(header) {
                    consumed.push(header.clone());
                }
            }
        }
    }
    // Issue 14 item 5: the challenges name the route's RFC 9728 metadata and its scopes.
    let metadata =
        crate::gate::phase::metadata::metadata_path(route.resource.as_deref().unwrap_or_default());
    RouteRt {
        challenge: Challenge::new(realm, bearer, dpop)
            .with_resource(&metadata, &route.scopes)
            .with_remediation(crate::gate::intent::remediation(route)),
        consumed,
        strips: Vec::new(),
        mask_vary: String::new(),
    }
}

/// The credential headers of `route`'s providers, lowercase, each once, joined: what a masked
/// response varies on (a masked body must never reach a human from a shared cache).
fn mask_vary(policy: &Policy, route: &Route) -> String {
    let mut names: Vec<String> = Vec::new();
    for name in route.access.providers() {
        if let Some(p) = policy.provider(name) {
            let h = p.from.header.to_ascii_lowercase();
            if !names.contains(&h) {
                names.push(h);
            }
        }
    }
    names.join(", ")
}

/// Issue 14 item 1: what a route's forward deletes besides the credentials it consumed.
///
/// - Every route: a client-sent `Attestgate-Receipt` (only the gateway signs receipts), and
///   `Cookie` where the route says `strip_cookies = true`.
/// - A route with an `upstream`: every header family the gateway owns
///   ([`crate::gate::phase::forward::GATEWAY_OWNED`]: `Authorization`, `DPoP`,
///   `Approov-Token`, the attestation and signature headers) and the credential header of every
///   provider of the policy, whether this route reads it or not; and the header every upstream's
///   injected credential goes into (this one's and the others'), so that nothing the client sent
///   there reaches the upstream.
///   With `forward_tokens = true` (only on an upstream that injects nothing), the route's own
///   consumed headers stay.
fn route_strips(
    policy: &Policy,
    route: &Route,
    providers: &HashMap<String, ProviderRt>,
    consumed: &[String],
) -> Vec<String> {
    use crate::gate::phase::forward::{GATEWAY_OWNED, RECEIPT_HEADER};
    let mut out: Vec<String> = vec![RECEIPT_HEADER.to_owned()];
    let add = |h: &str, out: &mut Vec<String>| {
        let h = h.to_ascii_lowercase();
        if !out.contains(&h) && !consumed.contains(&h) {
            out.push(h);
        }
    };
    if route.strip_cookies {
        add("cookie", &mut out);
    }
    if policy.route_upstream(route).is_some() {
        // The route's own credential headers when it forwards its tokens.
        let kept: Vec<String> = if route.forward_tokens {
            route
                .access
                .providers()
                .iter()
                .filter_map(|n| providers.get(n))
                .flat_map(|p| p.family.consumes().iter().cloned())
                .collect()
        } else {
            Vec::new()
        };
        let mut names: Vec<&str> = GATEWAY_OWNED.to_vec();
        // In the policy's order (sorted by name): the same list in every isolate.
        for p in policy
            .providers()
            .iter()
            .filter_map(|p| providers.get(&p.name))
        {
            names.extend(p.family.consumes().iter().map(String::as_str));
        }
        // The header of this upstream's credential, and of every other upstream's: a client
        // that holds one upstream's credential cannot hand it to another through the gateway.
        for u in policy.upstreams() {
            if let Some(auth) = &u.auth {
                names.push(auth.header().header.as_str());
            }
        }
        for h in names {
            if !kept.iter().any(|k| k.eq_ignore_ascii_case(h)) {
                add(h, &mut out);
            }
        }
    }
    out
}

fn provider_rt(p: &Provider, skew_secs: i64) -> Result<ProviderRt, Error> {
    use crate::policy::KeyOrigin;
    let family = Family::compile(p, skew_secs)?;
    let keys = match &p.keys {
        KeyOrigin::JwksUri(uri) => KeySpec::Jwks {
            uri: uri.clone(),
            times: CacheTimes {
                stale_window: secs(p.jwks_max_stale_secs),
                ..CacheTimes::for_provider(secs(p.jwks_cache_secs))
            },
        },
        KeyOrigin::Jwks(json) => {
            let (set, _) = KeySet::from_jwks(json.as_bytes(), &JwksLimits::default())
                .map_err(|_| Error::PolicyUnavailable)?;
            KeySpec::Inline(Arc::new(set))
        }
        KeyOrigin::Secrets(list) => KeySpec::Secret(list.clone()),
    };
    Ok(ProviderRt {
        name: p.name.clone(),
        refreshable: matches!(p.keys, KeyOrigin::JwksUri(_)),
        keys,
        family,
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
