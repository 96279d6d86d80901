//! The compiled policy: checked, resolved and indexed. Built by the compiler
//! ([`crate::compile()`], also behind [`Policy::from_json`] in `embed.rs`), or read back from
//! the compiled form the compiler wrote ([`Policy::from_compiled`]); nothing here calls the
//! compiler.

use serde::{Deserialize, Serialize};
use std::fmt;

use serde_json::Value;

use crate::alg::Alg;
use crate::diag::Warning;
use crate::matcher::{
    check_path, fold_path, host_without_port, Allow, Miss, PathPattern, RouteIndex,
};
use crate::model::SourceFile;

/// The header that always carries the matched route id to the origin.
pub const ROUTE_HEADER: &str = "x-verified-route";

/// Method and URL override headers, and `forwarded`: stripped before forwarding unless a route
/// lists one in `pass_headers` (so does every `x-forwarded-*` header, see [`SET_FORWARDED`]).
pub const PASSABLE_HEADERS: [&str; 6] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "forwarded",
];

/// The `x-forwarded-*` headers the gateway always sets itself (never passed from the client).
pub const SET_FORWARDED: [&str; 3] = ["x-forwarded-host", "x-forwarded-proto", "x-forwarded-for"];

/// The `[gateway]` table with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// The file that defines `[gateway]`.
    pub file: String,
    pub origin: String,
    pub realm: String,
    pub clock_skew_secs: u64,
    /// Lowercase. Inbound headers with this prefix are always stripped.
    pub claims_header_prefix: String,
    pub challenge_path: String,
    pub challenge_ttl_secs: u64,
    pub allow_insecure_http: bool,
    pub nonce_shards: u32,
    /// The origin compares paths case-sensitively: case variants of a route are not refused.
    pub case_sensitive_paths: bool,
    pub origin_timeout_secs: u64,
    /// The decision line of 1 in N allowed and public decisions is written (1: all).
    pub log_allow_sample: u32,
    /// Issue 14: the `iss` of what the gateway signs; None: the request's origin.
    pub issuer: Option<String>,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOrigin {
    /// Fetched and cached (`jwks_cache_secs`).
    JwksUri(String),
    /// Inline JWKS JSON text (checked to be `{"keys":[...]}` with public keys only).
    Jwks(String),
    /// HMAC keys in Worker secrets (`secret = "NAME"`: one, without `kid`; `secrets = [...]`:
    /// one or more, each with its `kid` when there are several). Never empty.
    Secrets(Vec<Secret>),
}

/// One HMAC key of a provider: the Worker secret that holds it (base64) and the `kid` of the
/// tokens it signs. A token's key is selected by `(alg, kid)` exactly (`jose::KeySet::select`):
/// a token with a `kid` needs a secret with that `kid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    pub kid: Option<String>,
}

/// Where a provider's token is in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLocation {
    /// Lowercase header name.
    pub header: String,
    /// Authorization scheme (`Bearer`, `DPoP`), compared case-insensitively; None: the whole
    /// header value is the token.
    pub scheme: Option<String>,
}

/// `binding = { claim, header }`: `claim` = base64url(SHA-256(value of `header`)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub claim: MemberPath,
    /// Lowercase header name.
    pub header: String,
}

/// A compiled `[provider.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    pub name: String,
    pub file: String,
    /// None only for `secret` (HMAC) providers: then `iss` is not checked.
    pub issuer: Option<String>,
    /// Empty only for `secret` (HMAC) providers: then `aud` is not checked.
    pub audiences: Vec<String>,
    /// Deduplicated, in the order written (`Ed25519` is [`Alg::EdDsa`]).
    pub algorithms: Vec<Alg>,
    /// As written; compare with [`Provider::accepts_typ`].
    pub token_types: Vec<String>,
    pub from: TokenLocation,
    pub keys: KeyOrigin,
    pub jwks_cache_secs: u64,
    /// Stale window of the JWKS cache during an issuer outage (`0`: none).
    pub jwks_max_stale_secs: u64,
    /// `exp - iat` (or `exp - now`) at most this; [`crate::compile::DEFAULT_MAX_LIFETIME_SECS`]
    /// when the policy does not say.
    pub max_lifetime_secs: u64,
    pub required_claims: Vec<MemberPath>,
    /// `replay = "jti"`.
    pub replay_jti: bool,
    /// `proof = "dpop"`.
    pub dpop: bool,
    pub binding: Option<Binding>,
    pub nonce_claim: Option<MemberPath>,
    /// `weakens = [...]`: the providers whose stricter checks this one is allowed to lack for
    /// tokens both accept (checked by the compiler, see [`Provider::may_accept_same_tokens`]).
    pub weakens: Vec<String>,
    /// RFC 9728 `authorization_servers` for this provider's tokens, in order: the `issuer` when
    /// the provider takes OAuth access tokens (the `Authorization` header with a scheme) and it
    /// is an http(s) URL, then the policy's `authorization_servers`; each once.
    pub authorization_servers: Vec<String>,
    /// Issue 16: `status_list = {...}`.
    pub status_list: Option<crate::compile::deny::StatusListRule>,
}

impl Provider {
    /// Whether some token could be accepted by both providers, as far as the policy can tell:
    /// the same `issuer` (public keys), or a shared HMAC secret with compatible issuers (an
    /// HMAC provider without `issuer` does not check `iss`); overlapping audiences (two providers
    /// without audiences both take tokens without `aud`); a common algorithm; a common token
    /// type. Signatures are not considered: an issuer may sign for several providers.
    pub fn may_accept_same_tokens(&self, other: &Provider) -> bool {
        let keys = match (&self.keys, &other.keys) {
            (KeyOrigin::Secrets(a), KeyOrigin::Secrets(b)) => {
                a.iter().any(|s| b.iter().any(|t| t.name == s.name))
                    && match (&self.issuer, &other.issuer) {
                        (Some(x), Some(y)) => x == y,
                        _ => true,
                    }
            }
            (KeyOrigin::Secrets(_), _) | (_, KeyOrigin::Secrets(_)) => false,
            _ => self.issuer.is_some() && self.issuer == other.issuer,
        };
        let audiences = if self.audiences.is_empty() || other.audiences.is_empty() {
            self.audiences.is_empty() && other.audiences.is_empty()
        } else {
            self.audiences.iter().any(|a| other.audiences.contains(a))
        };
        keys && audiences
            && self.algorithms.iter().any(|a| other.algorithms.contains(a))
            && self.token_types.iter().any(|t| other.accepts_typ(t))
    }

    /// Whether a JWS `alg` header value is allowed (exact, case-sensitive; `Ed25519` and `EdDSA`
    /// are the same algorithm).
    pub fn allows_alg(&self, alg: &str) -> bool {
        Alg::from_header(alg).is_some_and(|a| self.algorithms.contains(&a))
    }

    /// Whether a JWS `typ` value is accepted: it [`crate::typ::matches`] one of `token_types`
    /// (case-insensitive, `application/` optional on either side), exactly as the JOSE parser
    /// checks it.
    pub fn accepts_typ(&self, typ: &str) -> bool {
        self.token_types.iter().any(|t| crate::typ::matches(t, typ))
    }

    /// The HMAC secrets, if this is a `secret`/`secrets` provider (else empty).
    pub fn secrets(&self) -> &[Secret] {
        match &self.keys {
            KeyOrigin::Secrets(s) => s,
            _ => &[],
        }
    }
}

/// What a route requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// `public = true`: forwarded unverified (after header sanitising).
    Public,
    /// `require = { all = [...] }`: every provider's token must be present and valid.
    All(Vec<String>),
    /// `require = { any = [...] }`: at least one; every token presented must be valid.
    Any(Vec<String>),
}

impl Access {
    /// The providers whose tokens the route reads (empty for public routes).
    pub fn providers(&self) -> &[String] {
        match self {
            Access::Public => &[],
            Access::All(p) | Access::Any(p) => p,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Public => f.write_str("public"),
            Access::All(p) => write!(f, "all({})", p.join(", ")),
            Access::Any(p) => write!(f, "any({})", p.join(", ")),
        }
    }
}

/// `provider.claim.path`: a claim of a provider's verified token. Segments with dots can be
/// quoted: `agent."https://example.com/roles"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClaimPath {
    pub provider: String,
    /// At least one segment, none empty.
    pub path: Vec<String>,
    source: String,
}

impl ClaimPath {
    pub fn parse(source: &str) -> Result<ClaimPath, String> {
        let mut segments = split_claim_path(source)?;
        if segments.len() < 2 {
            return Err(format!(
                "claim path {source:?} must be provider.claim (e.g. \"agent.sub\")"
            ));
        }
        let provider = segments.remove(0);
        Ok(ClaimPath {
            provider,
            path: segments,
            source: source.to_owned(),
        })
    }

    /// The claim in a verified token's claims, following object members.
    pub fn lookup<'a>(&self, claims: &'a serde_json::Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.path.split_first()?;
        let mut v = claims.get(first)?;
        for seg in rest {
            v = v.as_object()?.get(seg)?;
        }
        Some(v)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Split a claim path on the dots between segments; a segment in double quotes is taken as it is
/// (`"https://example.com/roles"`, dots and all). No segment is empty.
fn split_claim_path(source: &str) -> Result<Vec<String>, String> {
    let mut segments: Vec<String> = Vec::new();
    let mut rest = source;
    loop {
        let seg;
        if let Some(r) = rest.strip_prefix('"') {
            let Some(end) = r.find('"') else {
                return Err(format!("claim path {source:?} has an unterminated quote"));
            };
            seg = &r[..end];
            rest = &r[end + 1..];
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            seg = &rest[..end];
            rest = &rest[end..];
            if seg.contains('"') {
                return Err(format!(
                    "claim path {source:?}: a quote may only enclose a whole segment"
                ));
            }
        }
        if seg.is_empty() {
            return Err(format!(
                "claim path {source:?} has an empty segment (quote a name that has dots: \"https://example.com/roles\")"
            ));
        }
        segments.push(seg.to_owned());
        if rest.is_empty() {
            return Ok(segments);
        }
        match rest.strip_prefix('.') {
            Some(r) if !r.is_empty() => rest = r,
            Some(_) => return Err(format!("claim path {source:?} ends with \".\"")),
            None => {
                return Err(format!(
                    "claim path {source:?}: expected \".\" after a quoted segment"
                ))
            }
        }
    }
}

/// A claim of one token (no provider prefix): `required_claims`, `binding.claim`,
/// `nonce_claim`. The same dialect as route claim paths ([`ClaimPath`]): dots separate object
/// members, and a member whose name has dots is quoted: `"https://example.com/roles"` is one
/// top-level claim, `ext."https://example.com/tenant".id` three levels. Parsed once by the
/// compiler; the JOSE code only ever sees the segments, never splits text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberPath {
    segments: Vec<String>,
    source: String,
}

impl MemberPath {
    pub fn parse(source: &str) -> Result<MemberPath, String> {
        Ok(MemberPath {
            segments: split_claim_path(source)?,
            source: source.to_owned(),
        })
    }

    /// At least one, none empty.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for MemberPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A claim constraint of a route. Every operator present must hold; a missing claim fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRule {
    pub claim: ClaimPath,
    /// A string, number or boolean.
    #[serde(with = "crate::compact::json_text")]
    pub equals: Option<Value>,
    /// Globs: `*` matches any run of characters; everything else is exact.
    pub one_of: Option<Vec<String>>,
    pub contains: Option<String>,
}

/// `delegation = { provider, max_depth }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub provider: String,
    pub max_depth: u32,
}

/// One `forward` entry: header name (lowercase, with the claims prefix) and claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardRule {
    pub header: String,
    pub claim: ClaimPath,
}

/// A compiled `[[route]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub id: String,
    pub file: String,
    /// None: every method. Uppercase, compared exactly.
    pub methods: Option<Vec<String>>,
    /// None: every host. Lowercase, without port.
    pub host: Option<String>,
    pub path: PathPattern,
    pub access: Access,
    pub scopes: Vec<String>,
    pub claims: Vec<ClaimRule>,
    pub delegation: Option<Delegation>,
    /// Sorted by header name.
    pub forward: Vec<ForwardRule>,
    pub forward_tokens: bool,
    /// Lowercase names from [`PASSABLE_HEADERS`] (or `x-forwarded-*` other than the three the
    /// gateway sets) that the client's request may still carry to the origin.
    pub pass_headers: Vec<String>,
    /// Resolved: the upstream's `url`, the route's `origin`, or the gateway's.
    pub origin: String,
    /// RFC 9728: the path of the protected resource the route belongs to (`""`: the origin
    /// itself), without a trailing `/`; `None` for a public route (it protects nothing).
    pub resource: Option<String>,
    /// Issue 15: what the gateway does with the request body on this route.
    pub body: BodyRule,
    /// Issue 15: the intent the token must declare for the request (`intent = {...}`).
    pub intent: Option<crate::compile::intent::Intent>,
    /// Issue 15: the session budget (`budget = {...}`).
    pub budget: Option<crate::compile::intent::Budget>,
    /// Issue 14: the request receipt the gateway signs on every forward (`receipt = true`).
    pub receipt: Option<ReceiptRule>,
    /// Issue 14: the `[upstreams.NAME]` the route sends requests to (None: an `origin`, the
    /// implicit upstream that injects nothing).
    pub upstream: Option<String>,
    /// Issue 14: delete the client's `Cookie` before forwarding.
    pub strip_cookies: bool,
    /// Issue 17: how the route's decisions reach the decision log.
    pub audit: crate::AuditMode,
    /// Issue 18: the response mask, if the route has one.
    pub mask: Option<crate::compile::mask::Mask>,
    pub(crate) capture_names: Vec<Option<String>>,
    /// Issue 16: how the route checks the deny list.
    pub deny_check: crate::compile::deny::DenyCheck,
    /// Issue 16: the route's maximum status-list staleness, if it sets one.
    pub status_max_stale_secs: Option<u64>,
}

/// `receipt = true` (issue 14 item 4): the gateway signs an `Attestgate-Receipt` for every
/// request it forwards on the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRule {
    /// The receipt's lifetime (`exp - iat`), 1..=[`crate::compile::MAX_RECEIPT_TTL_SECS`].
    pub ttl_secs: u64,
}

/// How a route treats the request body (issue 15 item 2, the `h-body` foundation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyRule {
    /// The gateway reads the body before deciding (intent rules read it, a receipt binds its
    /// digest, or the route sets `max_body_bytes`) and forwards exactly the bytes it read.
    /// False: the body streams through unread.
    pub read: bool,
    /// The largest body read, in bytes (`max_body_bytes`, or the default): a `Content-Length`
    /// above it, or a stream that crosses it, is 413 `request_too_large`.
    pub max_bytes: u64,
    /// Rules read the body as JSON: it must be `application/json` (or `+json`), without
    /// `Content-Encoding`, and one strict JSON object.
    pub json: bool,
    /// The deepest nesting of a JSON body.
    pub max_depth: u32,
}

impl BodyRule {
    /// A route that does not read its body.
    pub const UNREAD: BodyRule = BodyRule {
        read: false,
        max_bytes: crate::compile::DEFAULT_MAX_BODY_BYTES,
        json: false,
        max_depth: crate::compile::DEFAULT_MAX_BODY_DEPTH,
    };
}

impl Route {
    /// Whether the gateway must read the request body before deciding (issue 15): the adapter
    /// buffers it under [`BodyRule::max_bytes`] and hands the bytes to the core.
    pub fn needs_body(&self) -> bool {
        self.body.read
    }

    pub fn is_public(&self) -> bool {
        self.access == Access::Public
    }

    /// Exact, case-sensitive; a route that lists `GET` also takes `HEAD` (origins answer HEAD
    /// with the GET handler).
    pub fn accepts_method(&self, method: &str) -> bool {
        match &self.methods {
            None => true,
            Some(m) => m
                .iter()
                .any(|m| m == method || (m == "GET" && method == "HEAD")),
        }
    }

    /// Whether this route protects at least as much as `other`: `other` is public, or both
    /// require the same providers the same way and this route asks for every scope, claim rule
    /// and delegation limit `other` asks for. Anything else counts as weaker (fail closed): a
    /// request that differs from `other`'s path only by case or a trailing slash is then never
    /// given to this route.
    pub fn covers(&self, other: &Route) -> bool {
        let same_providers =
            |a: &[String], b: &[String]| a.len() == b.len() && a.iter().all(|p| b.contains(p));
        let access = match (&self.access, &other.access) {
            (_, Access::Public) => return true,
            (Access::All(a), Access::All(b)) | (Access::Any(a), Access::Any(b)) => {
                same_providers(a, b)
            }
            _ => false,
        };
        let delegation = match (&self.delegation, &other.delegation) {
            (_, None) => true,
            (Some(s), Some(o)) => s.provider == o.provider && s.max_depth <= o.max_depth,
            (None, Some(_)) => false,
        };
        access
            && delegation
            && other.scopes.iter().all(|s| self.scopes.contains(s))
            && other.claims.iter().all(|c| self.claims.contains(c))
            && (other.intent.is_none() || self.intent == other.intent)
    }

    /// `host` is a `Host` value: case-insensitive, port ignored.
    pub fn accepts_host(&self, host: &str) -> bool {
        match &self.host {
            None => true,
            Some(h) => host_without_port(host).eq_ignore_ascii_case(h),
        }
    }

    /// `file#id`, how messages name a route.
    pub fn qualified_name(&self) -> String {
        format!("{}#{}", self.file, self.id)
    }
}

/// A compiled `[upstreams.NAME]` (issue 14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub name: String,
    pub file: String,
    /// `https://host[:port][/prefix]`.
    pub url: String,
    /// How the gateway authenticates to it; None: nothing is injected.
    pub auth: Option<Auth>,
}

/// Where an injected credential goes: a lowercase header and the scheme before the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectHeader {
    /// Lowercase header name.
    pub header: String,
    /// `Bearer`, ...; None: the value alone.
    pub scheme: Option<String>,
}

/// The OAuth client of a token-endpoint kind: the Worker secrets of its id and secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OauthClient {
    pub token_url: String,
    pub client_id_secret: String,
    pub client_secret_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// A cached token is used until `expires_in` minus this.
    pub refresh_margin_secs: u64,
    /// The token endpoint's answer must arrive within this.
    pub timeout_secs: u64,
}

/// How the gateway authenticates to an upstream (issue 14 item 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// A Worker secret, into a header with a scheme.
    Static { secret: String, at: InjectHeader },
    /// An OAuth access token from the client credentials grant (RFC 6749 §4.4).
    ClientCredentials {
        client: OauthClient,
        at: InjectHeader,
    },
    /// RFC 8693 token exchange: the verified token of `subject` as `subject_token`, the
    /// gateway's own assertion as `actor_token`.
    TokenExchange {
        client: OauthClient,
        subject: String,
        at: InjectHeader,
    },
    /// A short-lived JWT the gateway signs for `audience`, with the verified `sub` of
    /// `subject` and its `act` chain.
    GatewayJwt {
        audience: String,
        subject: String,
        lifetime_secs: u64,
        at: InjectHeader,
    },
}

impl Auth {
    /// The policy `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Static { .. } => "static",
            Auth::ClientCredentials { .. } => "client_credentials",
            Auth::TokenExchange { .. } => "token_exchange",
            Auth::GatewayJwt { .. } => "gateway_jwt",
        }
    }

    /// Where the credential goes.
    pub fn header(&self) -> &InjectHeader {
        match self {
            Auth::Static { at, .. }
            | Auth::ClientCredentials { at, .. }
            | Auth::TokenExchange { at, .. }
            | Auth::GatewayJwt { at, .. } => at,
        }
    }

    /// The Worker secrets it reads.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Auth::Static { secret, .. } => vec![secret.as_str()],
            Auth::ClientCredentials { client, .. } | Auth::TokenExchange { client, .. } => {
                vec![
                    client.client_id_secret.as_str(),
                    client.client_secret_secret.as_str(),
                ]
            }
            Auth::GatewayJwt { .. } => vec![],
        }
    }
}

/// A route lookup result: the route and its `{param}` values (raw, still percent-encoded).
#[derive(Debug, Clone, PartialEq)]
pub struct Matched<'r, 'p> {
    pub route: &'r Route,
    pub params: Vec<(&'r str, &'p str)>,
}

/// The compiled policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Policy {
    pub(crate) gateway: Gateway,
    /// Sorted by name.
    pub(crate) providers: Vec<Provider>,
    /// In file order (files in the order given, routes in the order written).
    pub(crate) routes: Vec<Route>,
    /// Issue 14: sorted by name.
    pub(crate) upstreams: Vec<Upstream>,
    #[serde(skip)]
    pub(crate) index: RouteIndex,
    /// The same routes over folded patterns ([`PathPattern::folded`]); only when some route is
    /// protected (otherwise no variant can be refused).
    #[serde(skip)]
    pub(crate) folded: Option<RouteIndex>,
    /// A protected route has a literal with an upper-case letter (then a lower-case request can be
    /// its variant) / ends with `/` (then a request without one can be).
    pub(crate) protected_upper_literal: bool,
    pub(crate) protected_trailing_slash: bool,
    #[serde(skip)]
    pub(crate) sources: Vec<SourceFile>,
    #[serde(skip)]
    pub(crate) warnings: Vec<Warning>,
    /// Issue 16: `[operator]` and `[deny]`.
    pub(crate) operator: Option<crate::compile::deny::Operator>,
    pub(crate) deny: Option<crate::compile::deny::Deny>,
    pub(crate) shared_signals: Option<crate::compile::deny::SharedSignals>,
}

impl Policy {
    /// The route indexes, derived from the routes and `[gateway]` (the compiler and the
    /// embedded compiled form, [`Policy::from_compiled`], both build them here): the
    /// segment trie over the patterns and, when some route is protected, the one over their
    /// folded patterns with the two facts the variant check reads.
    pub(crate) fn index_routes(&mut self) {
        self.index = RouteIndex::build(&mut self.routes.iter().map(|r| &r.path));
        let protected: Vec<&Route> = self.routes.iter().filter(|r| !r.is_public()).collect();
        self.protected_upper_literal = protected.iter().any(|r| r.path.has_upper_literal());
        self.protected_trailing_slash = protected.iter().any(|r| r.path.has_trailing_slash());
        let fold = !self.gateway.case_sensitive_paths;
        self.folded = (!protected.is_empty()).then(|| {
            let patterns: Vec<PathPattern> =
                self.routes.iter().map(|r| r.path.folded(fold)).collect();
            RouteIndex::build(&mut patterns.iter())
        });
    }

    /// `[operator]`: who may use the operator API (issue 16); `None`: the API answers 404.
    pub fn operator(&self) -> Option<&crate::compile::deny::Operator> {
        self.operator.as_ref()
    }

    /// `[shared_signals]`: the SSF push receiver (issue 16).
    pub fn shared_signals(&self) -> Option<&crate::compile::deny::SharedSignals> {
        self.shared_signals.as_ref()
    }

    /// `[deny]`: the deny list's store and propagation bound (issue 16).
    pub fn deny(&self) -> Option<&crate::compile::deny::Deny> {
        self.deny.as_ref()
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// All providers, sorted by name.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.providers[i])
    }

    /// All upstreams, sorted by name (issue 14).
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams
            .binary_search_by(|u| u.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.upstreams[i])
    }

    /// The upstream a route sends requests to, if it names one.
    pub fn route_upstream(&self, route: &Route) -> Option<&Upstream> {
        route.upstream.as_deref().and_then(|n| self.upstream(n))
    }

    /// All routes, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn route(&self, id: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.id == id)
    }

    /// Warnings of the compilation (e.g. `allow_insecure_http`).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The source model this policy was compiled from.
    pub fn sources(&self) -> &[SourceFile] {
        &self.sources
    }

    /// Route lookup (SPEC §2 matching, §3 step 2). `host` is the request's `Host` (port and case
    /// ignored); `raw_path` is the path exactly as received, before percent-decoding and without
    /// the query.
    ///
    /// 1. The path must be in normal form ([`check_path`], no `;`), else
    ///    [`Miss::Unnormalised`].
    /// 2. The most specific slot of routes for the host: none, [`Miss::NoRoute`]; none of them
    ///    takes the method (GET implies HEAD), [`Miss::MethodNotAllowed`] with their methods.
    /// 3. Only when the request could be a variant (upper-case letters or a trailing `/` in the
    ///    path, or protected routes that have them): the most specific slot of the *folded*
    ///    index, which an origin that ignores case (unless `case_sensitive_paths`) or a trailing
    ///    slash would serve. If one of its routes is a route the path does not match exactly and
    ///    the matched route does not [`Route::covers`] it, [`Miss::ProtectedVariant`].
    pub fn match_route<'r, 'p>(
        &'r self,
        method: &str,
        host: &str,
        raw_path: &'p str,
    ) -> Result<Matched<'r, 'p>, Miss> {
        check_path(raw_path).map_err(Miss::Unnormalised)?;
        let routes = &self.routes;
        let host_ok = |i: u32| routes[i as usize].accepts_host(host);
        let mut captures = Vec::new();
        let slot = self
            .index
            .slot(raw_path, &host_ok, &mut captures)
            .ok_or(Miss::NoRoute)?;
        let Some(i) = slot
            .iter()
            .copied()
            .find(|&i| host_ok(i) && routes[i as usize].accepts_method(method))
        else {
            return Err(Miss::MethodNotAllowed(Allow::from_methods(
                slot.iter()
                    .map(|&i| &routes[i as usize])
                    .filter(|r| r.accepts_host(host))
                    .flat_map(|r| r.methods.iter().flatten().map(String::as_str)),
            )));
        };
        if let Some(folded) = &self.folded {
            if self.may_be_variant(raw_path) {
                let e = &routes[i as usize];
                let path = fold_path(raw_path, !self.gateway.case_sensitive_paths);
                let mut scratch = Vec::new();
                if let Some(f) = folded.slot(&path, &host_ok, &mut scratch) {
                    let weaker = f.iter().any(|&r| {
                        let other = &routes[r as usize];
                        r != i && host_ok(r) && !e.covers(other) && !other.path.is_match(raw_path)
                    });
                    if weaker {
                        return Err(Miss::ProtectedVariant);
                    }
                }
            }
        }
        let route = &self.routes[i as usize];
        let params = route
            .capture_names
            .iter()
            .zip(captures)
            .filter_map(|(name, value)| name.as_deref().map(|n| (n, value)))
            .collect();
        Ok(Matched { route, params })
    }

    /// Whether a request path could be a case or trailing-slash variant of a protected route.
    fn may_be_variant(&self, raw_path: &str) -> bool {
        (raw_path.len() > 1 && raw_path.ends_with('/'))
            || self.protected_trailing_slash
            || (!self.gateway.case_sensitive_paths
                && (self.protected_upper_literal
                    || raw_path.bytes().any(|b| b.is_ascii_uppercase())))
    }
}
