//! The policy file model: what API owners write in `policies/*.toml` (SPEC §2).
//!
//! These structs are the *source* form. They are deliberately loose in their types (strings for
//! algorithms, methods, paths, claim paths, ...) so that the compiler ([`crate::compile()`]) can
//! check every value and name the file, the route or provider and the field in its message.
//! Unknown fields are refused everywhere (`deny_unknown_fields`): a typo is a build error, never a
//! silently ignored rule.
//!
//! The same structs are the source form (`Policy::to_json` / `from_json`: the validated model as
//! JSON, compiled again when read). The Worker embeds the compiled form instead (`embed.rs`).

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
    /// `[upstreams.NAME]` (issue 14): where routes send requests and how the gateway
    /// authenticates to it. Names are unique across all files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    // ---- issue 16: the operator API and the deny list -----------------------------------------
    /// `[operator]`: who may use the operator API (at most one across all files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorConfig>,
    /// `[deny]`: the deny list, checked on every protected route (at most one across all files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<DenyConfig>,
    /// `[shared_signals]`: the SSF push receiver (at most one across all files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_signals: Option<SharedSignalsConfig>,
}

/// `[upstreams.NAME]` (issue 14 item 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `https://host[:port][/prefix]`, the same rules as `[gateway] origin`.
    pub url: String,
    /// How the gateway authenticates to it (issue 14 item 2). Absent: it injects nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
}

/// `auth = { kind = "...", ... }`: one table for every kind; the compiler refuses a field the
/// kind does not take and names a missing one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `static`, `client_credentials`, `token_exchange` or `gateway_jwt`.
    pub kind: String,
    /// The header the credential goes into (lowercase). Default `authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The scheme before the credential. Default `Bearer` in `authorization`, none elsewhere;
    /// `""` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// `static`: the name of the Worker secret holding the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `client_credentials`, `token_exchange`: the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// `client_credentials`, `token_exchange`: the Worker secrets holding the client id and
    /// secret (`client_secret_basic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<ClientSecretsConfig>,
    /// `client_credentials`, `token_exchange`: the scope asked for (space-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `client_credentials`, `token_exchange`, `gateway_jwt`: the audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `client_credentials`, `token_exchange`: RFC 8707 / RFC 8693 `resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `token_exchange`, `gateway_jwt`: the provider whose verified token is the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `client_credentials`, `token_exchange`: seconds before `expires_in` runs out at which a
    /// cached token is no longer used. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_margin_secs: Option<u64>,
    /// `client_credentials`, `token_exchange`: seconds the token endpoint has to answer.
    /// Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// `gateway_jwt`: the minted token's lifetime. Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u64>,
}

/// `secrets = { client_id = "NAME", client_secret = "NAME" }`: Worker secret names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSecretsConfig {
    pub client_id: String,
    pub client_secret: String,
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
    /// Write the decision line of 1 in N allowed and public decisions (1..=10000); refusals,
    /// challenges and errors are always written. Default 1: every decision (SPEC §6).
    #[serde(default = "defaults::log_allow_sample")]
    pub log_allow_sample: u32,
    /// Issue 14: the `iss` of everything the gateway signs (receipts, JWTs it mints), an
    /// `https://` URL. Default: the origin (scheme and authority) the request was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
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
    /// Issue 14 item 5 (RFC 9728): the authorization servers that issue this provider's tokens,
    /// listed in the protected-resource metadata after the provider's `issuer` (which is listed
    /// by itself when the provider takes OAuth access tokens, see `policies/README.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// Issue 16: check `status.status_list` of this provider's tokens against Token Status Lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_list: Option<StatusListConfig>,
}

/// `status_list = { uris = ["https://status.example.com/"], max_stale_secs = 300, required = false }`
/// (issue 16).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusListConfig {
    /// The only URI prefixes a token's `status_list.uri` may have (the gateway fetches nothing else).
    pub uris: Vec<String>,
    /// Longest a fetched list is used (its `ttl` may shorten it, `exp` ends it); 1..=86400.
    #[serde(default = "defaults::status_max_stale_secs")]
    pub max_stale_secs: u64,
    /// A token without `status.status_list` is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
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
    /// Issue 14 item 5 (RFC 9728): the path of the protected resource this route belongs to
    /// (its resource identifier is the gateway's origin plus this path). Default: the route
    /// path's literal segments before the first parameter or wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    // ---- issue 15: request bodies and intent rules ----------------------------------------
    /// The largest request body the gateway reads on this route (bytes; default
    /// [`crate::compile::DEFAULT_MAX_BODY_BYTES`]). Setting it makes the gateway read (and cap)
    /// the body even without intent rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// The intent the token's `authorization_details` must declare for this request
    /// ([`IntentConfig`], read by the compiler from this value: serde derives for the nested
    /// tables would cost the Worker several KB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Value>,
    /// Session budgets (issue 15 item 5; [`BudgetConfig`], read by the compiler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Value>,
    // ---- issue 14: the request receipt -------------------------------------------------------
    /// Sign a request receipt (`Attestgate-Receipt`, bound to method, URL and body digest) on
    /// every request forwarded on this route. The body is then read (and capped) by the gateway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub receipt: bool,
    /// The receipt's lifetime in seconds (1..=300; default 60). Only with `receipt = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_ttl_secs: Option<u64>,
    /// Issue 14: the `[upstreams.NAME]` this route sends requests to (instead of `origin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Issue 14: delete the client's `Cookie` header before forwarding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_cookies: bool,
    /// Issue 17: `"sync"`, `"async"` or `"off"` (default): the decision log
    /// (`compile/audit.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<String>,
    /// Issue 16: `"cached"` (the default where `[deny]` is present: the isolate's view, at most
    /// `[deny] propagation_secs` old), `"strict"` (the store on every request) or `"off"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_check: Option<String>,
    /// Issue 16: the longest a token status list may be used on this route (overrides the
    /// provider's `status_list.max_stale_secs`; 1..=86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_max_stale_secs: Option<u64>,
    /// Issue 18: response masking (`[route.mask]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskConfig>,
}

/// `budget = { calls = 10, window_secs = 60, ... }`: what one session (agent, user, and the
/// route group or the session claim) may do; at least one limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetConfig {
    /// Routes with the same group share one budget per session (default: the route id).
    pub group: Option<String>,
    /// A claim of the token that names the session (`sid`); absent: the group.
    pub session_claim: Option<String>,
    /// Calls per window.
    pub calls: Option<u32>,
    /// Calls with a method other than GET, HEAD, OPTIONS per window.
    pub writes: Option<u32>,
    /// The window of `calls` and `writes` (default 60, 1..=86400).
    pub window_secs: Option<u64>,
    /// Distinct values of `identifier` a session may touch.
    pub identifiers: Option<u32>,
    /// The request part counted by `identifiers` (`path.account`).
    pub identifier: Option<String>,
    /// The intent binding (its detail field, a `max` binding) whose request amounts add up
    /// against the covering detail's limit: `"instructedAmount.amount"`.
    pub spend: Option<String>,
    /// The session ends this long after its first call.
    pub deadline_secs: Option<u64>,
}

/// `intent = { type = "payment_initiation", actions = [...], locations = true, bind = {...} }`
/// (issue 15 item 1): at least one detail of the token must cover the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntentConfig {
    /// The provider whose token carries the declared intent (default: the route's only
    /// required provider).
    pub provider: Option<String>,
    /// The detail `type` required (exact).
    pub detail_type: String,
    /// Actions the detail's `actions` must include. Absent: derived from the method (GET/HEAD
    /// `read`, POST `create`, PUT/PATCH `update`, DELETE `delete`).
    pub actions: Option<Vec<String>>,
    /// The detail's `locations` must contain this route's origin (`true`) or these URLs (a
    /// list). Kept as a JSON value (checked by the compiler): an untagged enum would link
    /// serde's buffering deserializer into the Worker.
    pub locations: Option<Value>,
    /// `"detail.field.path" = "request part"` or `{ equals | contains | glob | max | min = "part",
    /// currency = "part" }` (read by the compiler, [`BindConfig::from_value`]).
    pub bind: BTreeMap<String, Value>,
    /// The deepest nesting of the JSON body (default 32, at most 64).
    pub max_body_depth: Option<u32>,
}

/// One binding: a request part (`path.NAME`, `query.NAME`, `body.a.b`) the detail field must
/// equal, or a table with one operator.
#[derive(Debug, Clone, PartialEq)]
pub enum BindConfig {
    Equals(String),
    Rule(BindRule),
}

impl BindConfig {
    /// Read one `bind` entry: a string, or a table of string members among `equals`,
    /// `contains`, `glob`, `max`, `min`, `currency` (anything else is the error message).
    pub fn from_value(v: &Value) -> Result<BindConfig, String> {
        match v {
            Value::String(s) => Ok(BindConfig::Equals(s.clone())),
            Value::Object(m) => {
                let mut r = BindRule::default();
                for (k, v) in m {
                    let Some(s) = v.as_str().map(str::to_owned) else {
                        return Err(format!("{k} must be a string (a request part)"));
                    };
                    let slot = match k.as_str() {
                        "equals" => &mut r.equals,
                        "contains" => &mut r.contains,
                        "glob" => &mut r.glob,
                        "max" => &mut r.max,
                        "min" => &mut r.min,
                        "currency" => &mut r.currency,
                        other => {
                            return Err(format!("unknown field {other:?} (expected equals, contains, glob, max, min or currency)"))
                        }
                    };
                    *slot = Some(s);
                }
                Ok(BindConfig::Rule(r))
            }
            _ => Err("must be a request part (a string) or a table with one operator".to_owned()),
        }
    }
}

/// `{ equals | contains | glob | max | min = "request part", currency = "request part" }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BindRule {
    /// The detail field equals the request part.
    pub equals: Option<String>,
    /// The detail field is an array that contains the request part.
    pub contains: Option<String>,
    /// The detail field is a glob (`*` any run) that matches the request part.
    pub glob: Option<String>,
    /// The detail field is a decimal limit the request part may not exceed (`>=`).
    pub max: Option<String>,
    /// The detail field is a decimal floor the request part may not go under (`<=`).
    pub min: Option<String>,
    /// With `max`/`min`: the request part the detail's `currency` member (next to the bound
    /// amount: `instructedAmount.currency`) must equal, as RFC 9396's `instructedAmount` has it.
    pub currency: Option<String>,
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

/// `[operator]` (issue 16): the operator API under `/.well-known/attestgate/` is authenticated
/// by a token of this provider carrying every one of `scopes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    pub provider: String,
    pub scopes: Vec<String>,
}

/// `[shared_signals]` (issue 16): RFC 8935 push of SETs from the named transmitter providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSignalsConfig {
    /// The receiver's path (literal): `POST` a SET, `GET` the receiver's metadata.
    pub path: String,
    /// The `aud` SETs must carry.
    pub audience: String,
    /// Providers whose `issuer`, keys and algorithms verify SETs.
    pub transmitters: Vec<String>,
    /// `iat` at most this far from now (1..=3600); the `jti` is remembered as long.
    #[serde(default = "defaults::ssf_iat_window_secs")]
    pub iat_window_secs: u64,
}

/// `[deny]` (issue 16).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyConfig {
    /// Deny-store Durable Object shards (1..=64).
    #[serde(default = "defaults::deny_shards")]
    pub shards: u32,
    /// The propagation bound: an isolate's view of a shard is used for at most this long
    /// (1..=5 seconds).
    #[serde(default = "defaults::deny_propagation_secs")]
    pub propagation_secs: u64,
    /// The `deny_check` of protected routes that do not set one: `"cached"` (default) or
    /// `"off"` (routes opt in one by one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_check: Option<String>,
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
    pub fn log_allow_sample() -> u32 {
        1
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
    pub fn status_max_stale_secs() -> u64 {
        300
    }
    pub fn ssf_iat_window_secs() -> u64 {
        300
    }
    pub fn deny_shards() -> u32 {
        4
    }
    pub fn deny_propagation_secs() -> u64 {
        2
    }
}

// ---- issue 15: the intent and budget tables, read from their JSON value ----------------------

/// The members of a table, each name one of `known` (else the error names it).
fn table<'v>(
    v: &'v Value,
    what: &str,
    known: &[&str],
) -> Result<&'v serde_json::Map<String, Value>, String> {
    let m = v
        .as_object()
        .ok_or_else(|| format!("{what} must be a table"))?;
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {k:?} in {what} (expected {})",
            known.join(", ")
        ));
    }
    Ok(m)
}

fn string(m: &serde_json::Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{k} must be a string")),
    }
}

fn integer<T: TryFrom<u64>>(
    m: &serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<T>, String> {
    match m.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{k} must be a non-negative integer in range")),
    }
}

impl IntentConfig {
    /// Read `intent = { ... }` (unknown fields and wrong types are errors).
    pub fn from_value(v: &Value) -> Result<IntentConfig, String> {
        let m = table(
            v,
            "intent",
            &[
                "provider",
                "type",
                "actions",
                "locations",
                "bind",
                "max_body_depth",
            ],
        )?;
        let actions = match m.get("actions") {
            None => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .ok_or("actions must be strings")
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err("actions must be a list of strings".to_owned()),
        };
        let bind = match m.get("bind") {
            None => BTreeMap::new(),
            Some(Value::Object(b)) => b.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(_) => return Err("bind must be a table".to_owned()),
        };
        Ok(IntentConfig {
            provider: string(m, "provider")?,
            detail_type: string(m, "type")?
                .ok_or("intent needs type = \"...\" (the detail type)")?,
            actions,
            locations: m.get("locations").cloned(),
            bind,
            max_body_depth: integer(m, "max_body_depth")?,
        })
    }
}

impl BudgetConfig {
    /// Read `budget = { ... }` (unknown fields and wrong types are errors).
    pub fn from_value(v: &Value) -> Result<BudgetConfig, String> {
        let m = table(
            v,
            "budget",
            &[
                "group",
                "session_claim",
                "calls",
                "writes",
                "window_secs",
                "identifiers",
                "identifier",
                "spend",
                "deadline_secs",
            ],
        )?;
        Ok(BudgetConfig {
            group: string(m, "group")?,
            session_claim: string(m, "session_claim")?,
            calls: integer(m, "calls")?,
            writes: integer(m, "writes")?,
            window_secs: integer(m, "window_secs")?,
            identifiers: integer(m, "identifiers")?,
            identifier: string(m, "identifier")?,
            spend: string(m, "spend")?,
            deadline_secs: integer(m, "deadline_secs")?,
        })
    }
}
