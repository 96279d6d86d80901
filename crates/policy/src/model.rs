//! The policy file model: what API owners write in `policies/*.toml` (SPEC §2).
//!
//! These structs are the *source* form. They are deliberately loose in their types (strings for
//! algorithms, methods, paths, claim paths, ...) so that the compiler ([`crate::compile()`]) can
//! check every value and name the file, the route or provider and the field in its message.
//! Unknown fields are refused everywhere (`deny_unknown_fields`): a typo is a build error, never a
//! silently ignored rule.
//!
//! The same structs are the embedded form: the build serialises the validated model to JSON and
//! the Worker re-compiles it once per isolate (no TOML parser in the Worker).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One policy file. All files of the policy folder are merged by the compiler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// `[gateway]`: exactly one across all files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayConfig>,
    /// `[provider.NAME]`: names are unique across all files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provider: BTreeMap<String, ProviderConfig>,
    /// `[[route]]`: ids are unique across all files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteConfig>,
}

/// A named policy file, as read from the folder (the name is used in every message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Display name, normally the path as given (`policies/routes.toml`).
    pub name: String,
    /// The parsed content.
    pub model: PolicyFile,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, model: PolicyFile) -> Self {
        SourceFile {
            name: name.into(),
            model,
        }
    }
}

/// `[gateway]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where allowed requests go (`https://host[:port][/prefix]`); a route may override it.
    pub origin: String,
    /// For `WWW-Authenticate`. Default: the host of `origin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default = "defaults::clock_skew_secs")]
    pub clock_skew_secs: u64,
    #[serde(default = "defaults::claims_header_prefix")]
    pub claims_header_prefix: String,
    #[serde(default = "defaults::challenge_path")]
    pub challenge_path: String,
    #[serde(default = "defaults::challenge_ttl_secs")]
    pub challenge_ttl_secs: u64,
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Number of nonce-store Durable Object shards (1..=64).
    #[serde(default = "defaults::nonce_shards")]
    pub nonce_shards: u32,
    /// The origin compares paths case-sensitively, so a request that differs from a protected
    /// route only by ASCII case is not refused. Default false: assume an origin that may ignore
    /// case (Express, ASP.NET, IIS, ...).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub case_sensitive_paths: bool,
    /// Seconds the origin has to send its response headers (1..=900); then 504.
    #[serde(default = "defaults::origin_timeout_secs")]
    pub origin_timeout_secs: u64,
}

/// `[provider.NAME]`: a JWT issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Only `"jwt"`.
    #[serde(default = "defaults::kind")]
    pub kind: String,
    /// Exact match on `iss`. Required unless the provider uses a `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `aud` must contain one of these. Required unless the provider uses a `secret`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Allowlist: `ES256`, `EdDSA` (alias `Ed25519`), `RS256`, `HS256`.
    pub algorithms: Vec<String>,
    /// Accepted `typ` values, case-insensitive. Default `["JWT", "at+jwt"]`.
    #[serde(default = "defaults::token_types")]
    pub token_types: Vec<String>,
    /// Where the token is. Default `{ header = "authorization", scheme = "Bearer" }`.
    #[serde(default = "defaults::from")]
    pub from: FromConfig,
    /// Key source (exactly one of `jwks_uri`, `jwks`, `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Inline JWKS as a JSON string: `'{"keys":[...]}'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Name of the Worker secret holding the base64 HMAC key (HS256 only); the key has no `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Several HMAC keys, each in its Worker secret and with its `kid` (HS256 only; key
    /// rotation): `secrets = [{ name = "APPROOV_SECRET_2026", kid = "k2" }, ...]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretConfig>,
    #[serde(default = "defaults::jwks_cache_secs")]
    pub jwks_cache_secs: u64,
    /// How long past their freshness cached JWKS keys may still serve while the issuer is
    /// unreachable; after that, 503. `0`: never serve stale keys.
    #[serde(default = "defaults::jwks_max_stale_secs")]
    pub jwks_max_stale_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<String>,
    /// Only `"jti"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// Only `"dpop"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_claim: Option<String>,
    /// **Weakening, acknowledged**: providers whose tokens this provider may also accept with
    /// fewer of `proof`, `replay`, `binding`, `nonce_claim` (same issuer or HMAC secret,
    /// overlapping audiences, algorithms and token types). Without it that overlap is a build
    /// error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weakens: Vec<String>,
}

/// One entry of `secrets = [...]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// Name of the Worker secret holding the base64 HMAC key.
    pub name: String,
    /// The `kid` of tokens signed with this key. Required when a provider lists several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// `from = { header = "...", scheme = "..." }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromConfig {
    pub header: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// `binding = { claim = "pay", header = "authorization" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub claim: String,
    pub header: String,
}

/// `[[route]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub id: String,
    /// Absent: every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Absent: every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<RequireConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `"provider.claim.path" = { equals | one_of | contains }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, ConstraintConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<DelegationConfig>,
    /// `"x-verified-name" = "provider.claim.path"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forward: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_tokens: bool,
    /// Override and forwarding headers (`x-http-method-override`, `forwarded`, `x-forwarded-*`,
    /// ...) the client may still send to the origin. Stripped by default; each one is dangerous.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_headers: Vec<String>,
    /// Overrides `[gateway] origin` for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Issue 18: response masking (`[route.mask]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskConfig>,
}

/// `[route.mask]` (issue 18): what of the origin's JSON answer is masked, and for whom.
///
/// Read through a `serde_json::Value` and [`TryFrom`] (unknown fields refused there too): the
/// derived deserializers of these three structs would add about 9 KB to the Worker, which
/// reads the embedded policy with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value")]
pub struct MaskConfig {
    /// When the mask applies (any condition that holds). Default `{ agent = true }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<MaskWhenConfig>,
    /// Name of the Worker secret (base64, at least 32 bytes) keying the `hash` action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `[[route.mask.rules]]`: a JSON path and its action.
    pub rules: Vec<MaskRuleConfig>,
}

/// `when = { agent = true, agent_providers = [...], unattested = [...], always = false }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MaskWhenConfig {
    /// A verified credential carries an `act` claim (RFC 8693: an agent acts for the subject).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent: bool,
    /// A credential of one of these providers verified (their tokens are agents' tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_providers: Vec<String>,
    /// No credential of any of these (attestation) providers verified on the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unattested: Vec<String>,
    /// Every caller.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always: bool,
}

/// One `[[route.mask.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskRuleConfig {
    /// `$.a.b`, `$.items[*].ssn`, `$..email`, ... (policies/README.md, "Response masking").
    pub path: String,
    /// `drop`, `redact`, `hash` or `last4`.
    pub action: String,
    /// `redact` only: the replacement (a string, number, boolean or null); default `"[redacted]"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
}

type Table = serde_json::Map<String, Value>;

/// A field of table `what` other than `known`: an error (unknown fields are refused).
fn only(o: &Table, what: &str, known: &[&str]) -> Result<(), String> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown field `{k}` in {what}")),
        None => Ok(()),
    }
}

fn bad(what: &str, name: &str, kind: &str) -> String {
    format!("{what}.{name} must be {kind}")
}

fn take_bool(o: &Table, what: &str, name: &str) -> Result<bool, String> {
    match o.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(what, name, "a boolean")),
    }
}

fn take_strings(o: &Table, what: &str, name: &str) -> Result<Vec<String>, String> {
    let list = match o.get(name) {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad(what, name, "a list of strings")),
    };
    let mut out = Vec::new();
    for v in list {
        out.push(
            v.as_str()
                .ok_or_else(|| bad(what, name, "a list of strings"))?
                .to_owned(),
        );
    }
    Ok(out)
}

fn take_string(o: &Table, what: &str, name: &str) -> Result<Option<String>, String> {
    match o.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(what, name, "a string")),
    }
}

impl TryFrom<Value> for MaskConfig {
    type Error = String;

    fn try_from(v: Value) -> Result<Self, String> {
        const RULE: &str = "mask.rules[]";
        let Value::Object(o) = v else {
            return Err("mask must be a table".to_owned());
        };
        only(&o, "mask", &["when", "secret", "rules"])?;
        let when = match o.get("when") {
            None => None,
            Some(Value::Object(w)) => {
                only(
                    w,
                    "mask.when",
                    &["agent", "agent_providers", "unattested", "always"],
                )?;
                Some(MaskWhenConfig {
                    agent: take_bool(w, "mask.when", "agent")?,
                    agent_providers: take_strings(w, "mask.when", "agent_providers")?,
                    unattested: take_strings(w, "mask.when", "unattested")?,
                    always: take_bool(w, "mask.when", "always")?,
                })
            }
            Some(_) => return Err("mask.when must be a table".to_owned()),
        };
        let Some(Value::Array(list)) = o.get("rules") else {
            return Err("mask.rules must be a list of tables".to_owned());
        };
        let mut rules = Vec::new();
        for r in list {
            let Value::Object(r) = r else {
                return Err("mask.rules must be a list of tables".to_owned());
            };
            only(r, RULE, &["path", "action", "with"])?;
            let field = |name: &str| {
                take_string(r, RULE, name)?
                    .ok_or_else(|| format!("missing field `{name}` in {RULE}"))
            };
            rules.push(MaskRuleConfig {
                path: field("path")?,
                action: field("action")?,
                with: r.get("with").cloned(),
            });
        }
        Ok(MaskConfig {
            when,
            secret: take_string(&o, "mask", "secret")?,
            rules,
        })
    }
}

/// `require = { all = [...] }` or `require = { any = [...] }` (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<String>>,
}

/// A claim constraint. Every operator given must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintConfig {
    /// Exact equality with a string, number or boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The claim is a string equal to one of these (`*` matches any run of characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// The claim is an array containing this string, or a space-separated string with this word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

/// `delegation = { provider = "agent", max_depth = 2 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationConfig {
    pub provider: String,
    pub max_depth: u32,
}

/// Defaults of SPEC §2.
pub mod defaults {
    use super::FromConfig;

    pub fn clock_skew_secs() -> u64 {
        60
    }
    pub fn claims_header_prefix() -> String {
        "x-verified-".to_owned()
    }
    pub fn challenge_path() -> String {
        "/.well-known/attestgate/challenge".to_owned()
    }
    pub fn challenge_ttl_secs() -> u64 {
        120
    }
    pub fn nonce_shards() -> u32 {
        4
    }
    pub fn origin_timeout_secs() -> u64 {
        100
    }
    pub fn kind() -> String {
        "jwt".to_owned()
    }
    pub fn token_types() -> Vec<String> {
        vec!["JWT".to_owned(), "at+jwt".to_owned()]
    }
    pub fn from() -> FromConfig {
        FromConfig {
            header: "authorization".to_owned(),
            scheme: Some("Bearer".to_owned()),
        }
    }
    pub fn jwks_cache_secs() -> u64 {
        600
    }
    pub fn jwks_max_stale_secs() -> u64 {
        3600
    }
}
