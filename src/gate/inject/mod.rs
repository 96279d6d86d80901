//! Credential injection (issue 14 item 2), decided in the core: for an allowed request on a route
//! whose upstream has `auth`, what the Worker must produce and where it goes. The Worker
//! (`src/edge/inject.rs`) only reads secrets, runs the token requests this module builds, and
//! keeps the [`TokenCache`] this module decides for.
//!
//! - [`plan`]: the [`InjectPlan`] of a forwarded request: the header, the scheme and how the
//!   value is obtained ([`Source`]): a Worker secret (`static`), or a token from the
//!   upstream's token endpoint (`client_credentials`, `token_exchange` with the gateway's
//!   signed assertion as actor), under a cache key ([`cache_key`], [`exchange_key`]), or a
//!   JWT the gateway signs (`gateway_jwt`);
//! - [`token_request`]: the token endpoint request (form body, `client_secret_basic`);
//! - [`token_response`]: the endpoint's answer, read strictly, to a token and until when it
//!   may be used ([`Issued`]);
//! - [`TokenCache`]: per isolate, tokens by cache key until `expires_in` minus the margin, and
//!   single flight (while one request fetches a key, the others wait for it).
//!
//! Credentials never appear in a log, an error or a response: the types here that hold one
//! print it as `<redacted>`.

pub mod cache;
pub mod oauth;

use serde_json::{json, Value};

use crate::gate::compiled::ProviderRt;
use crate::gate::extract::HeaderSource;
use crate::gate::family::CredentialFamily;
use crate::gate::seams::Random;
use crate::jose::Claims;
use crate::policy::{Auth, InjectHeader, OauthClient, Upstream};
use crate::Error;

pub use cache::{CachePlan, TokenCache};
pub use oauth::{
    exchange_request, header_value, token_request, token_response, Issued, TokenFault, TokenRequest,
};

/// What the gateway injects into one forwarded request.
#[derive(Debug, Clone)]
pub struct InjectPlan<'a> {
    pub upstream: &'a Upstream,
    /// Where the credential goes.
    pub at: &'a InjectHeader,
    pub source: Source<'a>,
}

/// How the credential's value is obtained.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// The text of this Worker secret.
    Secret(&'a str),
    /// An access token of the client credentials grant, cached under `key`.
    ClientCredentials {
        client: &'a OauthClient,
        key: CacheKey,
    },
    /// RFC 8693: an access token exchanged for the verified inbound token (`subject_token`) and
    /// the gateway's assertion (`actor` claims, signed by the Worker with the gateway key),
    /// cached under `key` (per principal, actor chain, audience and scope) and never past the
    /// subject token's `exp` (`subject_exp`).
    TokenExchange {
        client: &'a OauthClient,
        key: CacheKey,
        subject_token: Redacted,
        actor: Value,
        subject_exp: i64,
    },
    /// A JWT the gateway signs (typ [`GATEWAY_JWT_TYP`]) over these claims, per request.
    GatewayJwt { claims: Value },
}

/// A credential held in a plan: printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl core::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `typ` of a `gateway_jwt` (explicit typing: never mistaken for an access token of another
/// issuer, the actor assertion or a receipt).
pub const GATEWAY_JWT_TYP: &str = "attestgate-upstream+jwt";
/// `typ` of the actor assertion of a token exchange.
pub const ACTOR_TYP: &str = "attestgate-actor+jwt";
/// Lifetime of the actor assertion.
pub const ACTOR_LIFETIME_SECS: i64 = 60;

/// A token cache key: a SHA-256 over what the token is for (never a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl InjectPlan<'_> {
    /// The policy `kind`, for logs and `explain`.
    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::Secret(_) => "static",
            Source::ClientCredentials { .. } => "client_credentials",
            Source::TokenExchange { .. } => "token_exchange",
            Source::GatewayJwt { .. } => "gateway_jwt",
        }
    }
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or_default()
}

/// The cache key of a client credentials token: the upstream and everything the token request
/// asks for. Two upstreams never share a token, even with the same client.
pub fn cache_key(upstream: &Upstream, client: &OauthClient) -> CacheKey {
    CacheKey(crate::gate::digest::parts(&[
        "client_credentials",
        &upstream.name,
        &client.token_url,
        &client.client_id_secret,
        opt(&client.scope),
        opt(&client.audience),
        opt(&client.resource),
    ]))
}

/// The cache key of an exchanged token: the upstream and its request, and the principal: the
/// subject token's `iss` and `sub`, its whole `act` chain and its granted scopes (so a token
/// with fewer scopes never gets what one with more was exchanged for). Two principals never
/// share a token.
pub fn exchange_key(upstream: &Upstream, client: &OauthClient, subject: &Claims) -> CacheKey {
    let chain = subject.act_chain();
    // As the token lists them: the same scopes in another order are another key (a cache miss,
    // never a shared token).
    let scopes = subject.scopes().join(" ");
    let depth = chain.len().to_string();
    let mut parts: Vec<&str> = vec![
        "token_exchange",
        &upstream.name,
        &client.token_url,
        &client.client_id_secret,
        opt(&client.scope),
        opt(&client.audience),
        opt(&client.resource),
        subject.iss().unwrap_or_default(),
        subject.sub().unwrap_or_default(),
        &scopes,
        &depth,
    ];
    parts.extend(chain.iter().map(String::as_str));
    CacheKey(crate::gate::digest::parts(&parts))
}

/// What a plan needs of the request besides the verified tokens.
pub struct Context<'r, H: ?Sized> {
    /// The request headers (the subject token is read again from its provider's header).
    pub headers: &'r H,
    /// The `iss` of what the gateway signs ([`crate::gate::signing::issuer`]).
    pub issuer: &'r str,
    pub now: i64,
    pub random: &'r dyn Random,
}

/// 16 random bytes, base64url: a `jti`.
fn jti(random: &dyn Random) -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    if !random.fill(&mut bytes) {
        return Err(Error::CredentialUnavailable);
    }
    Ok(crate::jose::b64::encode(&bytes))
}

/// The injection of a request allowed on a route whose upstream is `upstream`, with the
/// verified `tokens`. `None` when the upstream injects nothing.
pub fn plan<'a, H: HeaderSource + ?Sized>(
    upstream: &'a Upstream,
    tokens: &[(&'a ProviderRt, Claims)],
    cx: &Context<'_, H>,
) -> Result<Option<InjectPlan<'a>>, Error> {
    let Some(auth) = &upstream.auth else {
        return Ok(None);
    };
    // The subject's verified claims and provider (the compiler made the route require it).
    let subject_of = |name: &str| {
        tokens
            .iter()
            .find(|(p, _)| p.name == name)
            .ok_or(Error::MissingToken)
    };
    let source = match auth {
        Auth::Static { secret, .. } => Source::Secret(secret),
        Auth::ClientCredentials { client, .. } => Source::ClientCredentials {
            client,
            key: cache_key(upstream, client),
        },
        Auth::TokenExchange {
            client, subject, ..
        } => {
            let (provider, claims) = subject_of(subject)?;
            let subject_token = provider
                .family
                .extract(cx.headers, || false)?
                .ok_or(Error::MissingToken)?;
            let actor = json!({
                "iss": cx.issuer,
                "sub": cx.issuer,
                "aud": client.token_url,
                "iat": cx.now,
                "exp": cx.now.saturating_add(ACTOR_LIFETIME_SECS),
                "jti": jti(cx.random)?,
            });
            Source::TokenExchange {
                client,
                key: exchange_key(upstream, client, claims),
                subject_token: Redacted(subject_token),
                actor,
                subject_exp: claims.exp(),
            }
        }
        Auth::GatewayJwt {
            audience,
            subject,
            lifetime_secs,
            ..
        } => {
            let (_, claims) = subject_of(subject)?;
            let sub = claims
                .sub()
                .ok_or(Error::Token(crate::jose::Error::RequiredClaimMissing))?;
            let lifetime = i64::try_from(*lifetime_secs).unwrap_or(60);
            let mut minted = json!({
                "iss": cx.issuer,
                "aud": audience,
                "sub": sub,
                "iat": cx.now,
                "exp": cx.now.saturating_add(lifetime),
                "jti": jti(cx.random)?,
            });
            // The verified delegation chain exactly as the subject token carries it.
            if let (Some(act), Some(map)) = (claims.get("act"), minted.as_object_mut()) {
                map.insert("act".to_owned(), act.clone());
            }
            if let (Some(iss), Some(map)) = (claims.iss(), minted.as_object_mut()) {
                map.insert("subject_issuer".to_owned(), Value::from(iss));
            }
            Source::GatewayJwt { claims: minted }
        }
    };
    Ok(Some(InjectPlan {
        upstream,
        at: auth.header(),
        source,
    }))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::policy::{compile, parse_toml};

    fn policy(text: &str) -> crate::policy::Policy {
        let file = parse_toml("p.toml", text).expect("toml");
        compile(vec![file]).unwrap_or_else(|e| panic!("{}", e[0]))
    }

    const BASE: &str = r#"
[gateway]
origin = "https://api.example.com"
[provider.agent]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example.com/jwks.json"
[upstreams.a]
url = "https://a.example.com"
auth = { kind = "client_credentials", token_url = "https://as.example.com/token", secrets = { client_id = "A_ID", client_secret = "A_SECRET" }, scope = "read" }
[upstreams.b]
url = "https://b.example.com"
auth = { kind = "client_credentials", token_url = "https://as.example.com/token", secrets = { client_id = "A_ID", client_secret = "A_SECRET" }, scope = "read" }
[upstreams.s]
url = "https://s.example.com"
auth = { kind = "static", secret = "S_KEY", header = "x-api-key" }
[[route]]
id = "ra"
path = "/a/**"
upstream = "a"
require = { all = ["agent"] }
[[route]]
id = "rb"
path = "/b/**"
upstream = "b"
require = { all = ["agent"] }
[[route]]
id = "rs"
path = "/s/**"
upstream = "s"
require = { all = ["agent"] }
"#;

    #[test]
    fn each_upstream_has_its_own_cache_key_and_header() {
        let p = policy(BASE);
        let (a, b, s) = (
            p.upstream("a").expect("a"),
            p.upstream("b").expect("b"),
            p.upstream("s").expect("s"),
        );
        let headers: Vec<(String, String)> = Vec::new();
        let cx = Context {
            headers: &headers[..],
            issuer: "https://gw.example.com",
            now: 0,
            random: &crate::gate::seams::SystemRandom,
        };
        let key = |u: &Upstream| match plan(u, &[], &cx).expect("plan").expect("some").source {
            Source::ClientCredentials { key, .. } => key,
            _ => panic!("not a token"),
        };
        // The same client, token endpoint and scope for two upstreams: two tokens, never one
        // shared (a token never reaches another upstream).
        assert_ne!(key(a), key(b));
        assert_eq!(key(a), key(a));
        let ps = plan(s, &[], &cx).expect("plan").expect("some");
        assert_eq!(ps.kind(), "static");
        assert_eq!(ps.at.header, "x-api-key");
        assert_eq!(ps.at.scheme, None);
        assert!(matches!(ps.source, Source::Secret("S_KEY")));
        let pa = plan(a, &[], &cx).expect("plan").expect("some");
        assert_eq!(
            (pa.at.header.as_str(), pa.at.scheme.as_deref()),
            ("authorization", Some("Bearer"))
        );
    }
}
