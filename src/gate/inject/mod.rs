//! Credential injection (issue 14 item 2), decided in the core: for an allowed request on a route
//! whose upstream has `auth`, what the Worker must produce and where it goes. The Worker
//! (`src/edge/inject.rs`) only reads secrets, runs the token requests this module builds, and
//! keeps the [`TokenCache`] this module decides for.
//!
//! - [`plan`]: the [`InjectPlan`] of a forwarded request: the header, the scheme and how the
//!   value is obtained ([`Source`]): a Worker secret (`static`), or a token from the
//!   upstream's token endpoint (`client_credentials`), under a cache key ([`cache_key`]);
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

use crate::gate::compiled::ProviderRt;
use crate::jose::Claims;
use crate::policy::{Auth, InjectHeader, OauthClient, Upstream};

pub use cache::{CachePlan, TokenCache};
pub use oauth::{header_value, token_request, token_response, Issued, TokenFault, TokenRequest};

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
}

/// A token cache key: a SHA-256 over what the token is for (never a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl InjectPlan<'_> {
    /// The policy `kind`, for logs and `explain`.
    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::Secret(_) => "static",
            Source::ClientCredentials { .. } => "client_credentials",
        }
    }
}

/// The cache key of a client credentials token: the upstream and everything the token request
/// asks for. Two upstreams never share a token, even with the same client.
pub fn cache_key(upstream: &Upstream, client: &OauthClient) -> CacheKey {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    CacheKey(crate::gate::digest::parts(&[
        "client_credentials",
        &upstream.name,
        &client.token_url,
        &client.client_id_secret,
        &opt(&client.scope),
        &opt(&client.audience),
        &opt(&client.resource),
    ]))
}

/// The injection of a request allowed on a route whose upstream is `upstream`, with the
/// verified `tokens`. `None` when the upstream injects nothing. The kinds that sign
/// (`token_exchange`, `gateway_jwt`) are refused by the policy compiler until the gateway
/// has a signing key; should one reach here, the request is refused (fail closed).
pub fn plan<'a>(
    upstream: &'a Upstream,
    _tokens: &[(&'a ProviderRt, Claims)],
) -> Result<Option<InjectPlan<'a>>, crate::Error> {
    let Some(auth) = &upstream.auth else {
        return Ok(None);
    };
    let source = match auth {
        Auth::Static { secret, .. } => Source::Secret(secret),
        Auth::ClientCredentials { client, .. } => Source::ClientCredentials {
            client,
            key: cache_key(upstream, client),
        },
        Auth::TokenExchange { .. } | Auth::GatewayJwt { .. } => {
            return Err(crate::Error::CredentialUnavailable)
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
        let key = |u: &Upstream| match plan(u, &[]).expect("plan").expect("some").source {
            Source::ClientCredentials { key, .. } => key,
            Source::Secret(_) => panic!("not a token"),
        };
        // The same client, token endpoint and scope for two upstreams: two tokens, never one
        // shared (a token never reaches another upstream).
        assert_ne!(key(a), key(b));
        assert_eq!(key(a), key(a));
        let ps = plan(s, &[]).expect("plan").expect("some");
        assert_eq!(ps.kind(), "static");
        assert_eq!(ps.at.header, "x-api-key");
        assert_eq!(ps.at.scheme, None);
        assert!(matches!(ps.source, Source::Secret("S_KEY")));
        let pa = plan(a, &[]).expect("plan").expect("some");
        assert_eq!(
            (pa.at.header.as_str(), pa.at.scheme.as_deref()),
            ("authorization", Some("Bearer"))
        );
    }
}
