//! `[upstreams.NAME]` (issue 14 items 1 and 2): where routes send requests and how the gateway
//! authenticates to it (`auth = { kind = ..., ... }`), and a route's `upstream = "NAME"`.
//!
//! Every kind takes its own fields and no other: a field of another kind is an error naming it
//! (a `token_url` on a `static` upstream is a mistake, never ignored), and so is a missing one.

use std::collections::{BTreeMap, BTreeSet};

use super::syntax::{is_identifier, is_lower_header_name, is_printable, is_secret_name, is_token};
use super::{unknown_provider, Cx};
use crate::diag::Location;
use crate::model::{AuthConfig, RouteConfig, UpstreamConfig};
use crate::policy::{Access, Auth, Gateway, InjectHeader, OauthClient, Upstream, PASSABLE_HEADERS};

/// Default seconds before `expires_in` runs out at which a cached token stops being used.
pub const DEFAULT_REFRESH_MARGIN_SECS: u64 = 30;
/// Default seconds the token endpoint has to answer.
pub const DEFAULT_TOKEN_TIMEOUT_SECS: u64 = 5;
/// Default lifetime of a `gateway_jwt`.
pub const DEFAULT_GATEWAY_JWT_SECS: u64 = 60;
/// Longest `gateway_jwt` lifetime: short-lived means minutes.
pub const MAX_GATEWAY_JWT_SECS: u64 = 300;

/// The kinds and the fields each takes (besides `kind`, `header` and `scheme`).
const KINDS: [(&str, &[&str]); 4] = [
    ("static", &["secret"]),
    (
        "client_credentials",
        &[
            "token_url",
            "secrets",
            "scope",
            "audience",
            "resource",
            "refresh_margin_secs",
            "timeout_secs",
        ],
    ),
    (
        "token_exchange",
        &[
            "token_url",
            "secrets",
            "scope",
            "audience",
            "resource",
            "subject",
            "refresh_margin_secs",
            "timeout_secs",
        ],
    ),
    ("gateway_jwt", &["audience", "subject", "lifetime_secs"]),
];

/// Headers an injected credential may not go into: what the gateway sets itself, what frames
/// the message, and what the client controls on the way.
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "cookie",
    "attestgate-receipt",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
];

/// The fields set in an `auth` table, by name.
fn fields(a: &AuthConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut add = |name, set: bool| {
        if set {
            out.push(name);
        }
    };
    add("secret", a.secret.is_some());
    add("token_url", a.token_url.is_some());
    add("secrets", a.secrets.is_some());
    add("scope", a.scope.is_some());
    add("audience", a.audience.is_some());
    add("resource", a.resource.is_some());
    add("subject", a.subject.is_some());
    add("refresh_margin_secs", a.refresh_margin_secs.is_some());
    add("timeout_secs", a.timeout_secs.is_some());
    add("lifetime_secs", a.lifetime_secs.is_some());
    out
}

impl Cx {
    /// Compile one `[upstreams.NAME]`.
    pub(super) fn upstream(
        &mut self,
        file: &str,
        name: &str,
        u: &UpstreamConfig,
        gateway: &Gateway,
        known: &BTreeSet<&str>,
    ) -> Option<Upstream> {
        let before = self.errors.len();
        let at = |field: &str| Location::upstream(file, name, field);
        if !is_identifier(name) {
            self.error(
                at("name"),
                format!(
                    "{name:?} must be 1 to 64 letters, digits, '_' or '-', starting with a letter"
                ),
            );
        }
        self.url(&|| at("url"), &u.url, gateway.allow_insecure_http, false);
        let auth = u
            .auth
            .as_ref()
            .and_then(|a| self.auth(file, name, a, gateway, known));
        if self.errors.len() != before {
            return None;
        }
        Some(Upstream {
            name: name.to_owned(),
            file: file.to_owned(),
            url: u.url.clone(),
            auth,
        })
    }

    fn auth(
        &mut self,
        file: &str,
        name: &str,
        a: &AuthConfig,
        gateway: &Gateway,
        known: &BTreeSet<&str>,
    ) -> Option<Auth> {
        let before = self.errors.len();
        let at = |field: &str| Location::upstream(file, name, &format!("auth.{field}"));
        let Some((kind, allowed)) = KINDS.iter().find(|(k, _)| *k == a.kind) else {
            let kinds: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            self.error(
                at("kind"),
                format!(
                    "{:?} is not a credential kind; use {}",
                    a.kind,
                    kinds.join(", ")
                ),
            );
            return None;
        };
        for field in fields(a) {
            if !allowed.contains(&field) {
                self.error(
                    at(field),
                    format!(
                        "kind {kind:?} does not take {field} (it takes {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
        let at_header = self.inject_header(&at, a, gateway);
        let missing = |cx: &mut Cx, field: &str, what: &str| {
            cx.error(at(field), format!("is required for kind {kind:?}: {what}"));
        };
        let secret_name = |cx: &mut Cx, field: &str, value: &str| {
            if !is_secret_name(value) {
                cx.error(
                    at(field),
                    format!("{value:?} is not a Worker secret name (letters, digits and '_', not starting with a digit)"),
                );
            }
        };
        let subject = |cx: &mut Cx| match &a.subject {
            None => {
                missing(
                    cx,
                    "subject",
                    "the provider whose verified token names the principal (subject = \"agent\")",
                );
                None
            }
            Some(s) if !known.contains(s.as_str()) => {
                cx.error(at("subject"), unknown_provider(s, known));
                None
            }
            Some(s) => Some(s.clone()),
        };
        let auth = match *kind {
            "static" => match &a.secret {
                None => {
                    missing(
                        self,
                        "secret",
                        "the name of the Worker secret holding the credential (secret = \"NAME\")",
                    );
                    None
                }
                Some(s) => {
                    secret_name(self, "secret", s);
                    at_header.map(|at| Auth::Static {
                        secret: s.clone(),
                        at,
                    })
                }
            },
            "client_credentials" | "token_exchange" => {
                let client = self.oauth_client(&at, kind, a, gateway);
                if let Some(c) = &client {
                    secret_name(self, "secrets.client_id", &c.client_id_secret);
                    secret_name(self, "secrets.client_secret", &c.client_secret_secret);
                }
                if *kind == "client_credentials" {
                    match (client, at_header) {
                        (Some(client), Some(at)) => Some(Auth::ClientCredentials { client, at }),
                        _ => None,
                    }
                } else {
                    let subject = subject(self);
                    match (client, subject, at_header) {
                        (Some(client), Some(subject), Some(at)) => Some(Auth::TokenExchange {
                            client,
                            subject,
                            at,
                        }),
                        _ => None,
                    }
                }
            }
            _ => {
                let audience = match &a.audience {
                    None => {
                        missing(
                            self,
                            "audience",
                            "the upstream's audience (the minted `aud`)",
                        );
                        None
                    }
                    Some(v) => self.plain_value(&at("audience"), v).then(|| v.clone()),
                };
                let lifetime_secs = a.lifetime_secs.unwrap_or(DEFAULT_GATEWAY_JWT_SECS);
                if !(1..=MAX_GATEWAY_JWT_SECS).contains(&lifetime_secs) {
                    self.error(
                        at("lifetime_secs"),
                        format!("{lifetime_secs} is not in 1..={MAX_GATEWAY_JWT_SECS}"),
                    );
                }
                let subject = subject(self);
                match (audience, subject, at_header) {
                    (Some(audience), Some(subject), Some(at)) => Some(Auth::GatewayJwt {
                        audience,
                        subject,
                        lifetime_secs,
                        at,
                    }),
                    _ => None,
                }
            }
        };
        (self.errors.len() == before).then_some(auth).flatten()
    }

    /// `header` and `scheme`: a lowercase header the gateway does not own for anything else.
    fn inject_header(
        &mut self,
        at: &dyn Fn(&str) -> Location,
        a: &AuthConfig,
        gateway: &Gateway,
    ) -> Option<InjectHeader> {
        let header = a
            .header
            .clone()
            .unwrap_or_else(|| "authorization".to_owned());
        let prefix = gateway.claims_header_prefix.as_str();
        let hop_by_hop = [
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ];
        let problem = if !is_lower_header_name(&header) {
            Some(format!(
                "{header:?} is not a lowercase HTTP header name (write {:?})",
                header.to_ascii_lowercase()
            ))
        } else if header.starts_with(prefix) {
            Some(format!("{header:?} starts with the claims_header_prefix {prefix:?}: those headers carry verified claims only"))
        } else if RESERVED_HEADERS.contains(&header.as_str())
            || hop_by_hop.contains(&header.as_str())
            || PASSABLE_HEADERS.contains(&header.as_str())
            || header.starts_with("x-forwarded-")
        {
            Some(format!("{header:?} is a header the gateway sets, strips or frames the request with; choose another one"))
        } else {
            None
        };
        if let Some(m) = problem {
            self.error(at("header"), m);
            return None;
        }
        let scheme = match a.scheme.as_deref() {
            Some("") => None,
            Some(s) if is_token(s) => Some(s.to_owned()),
            Some(s) => {
                self.error(
                    at("scheme"),
                    format!("{s:?} is not an authentication scheme token (like \"Bearer\")"),
                );
                return None;
            }
            None if header == "authorization" => Some("Bearer".to_owned()),
            None => None,
        };
        Some(InjectHeader { header, scheme })
    }

    fn oauth_client(
        &mut self,
        at: &dyn Fn(&str) -> Location,
        kind: &str,
        a: &AuthConfig,
        gateway: &Gateway,
    ) -> Option<OauthClient> {
        let before = self.errors.len();
        let token_url = match &a.token_url {
            None => {
                self.error(
                    at("token_url"),
                    format!(
                        "is required for kind {kind:?}: the authorization server's token endpoint"
                    ),
                );
                String::new()
            }
            Some(u) => {
                self.url(&|| at("token_url"), u, gateway.allow_insecure_http, false);
                u.clone()
            }
        };
        let (client_id_secret, client_secret_secret) = match &a.secrets {
            None => {
                self.error(
                    at("secrets"),
                    format!("is required for kind {kind:?}: secrets = {{ client_id = \"NAME\", client_secret = \"NAME\" }} (Worker secrets)"),
                );
                (String::new(), String::new())
            }
            Some(s) => (s.client_id.clone(), s.client_secret.clone()),
        };
        if let Some(scope) = &a.scope {
            let ok = !scope.is_empty()
                && scope.split(' ').all(|s| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b == 0x21 || ((0x23..=0x7e).contains(&b) && b != b'\\'))
                });
            if !ok {
                self.error(
                    at("scope"),
                    format!("{scope:?} is not a space-separated list of OAuth scope tokens"),
                );
            }
        }
        for (field, value) in [("audience", &a.audience), ("resource", &a.resource)] {
            if let Some(v) = value {
                self.plain_value(&at(field), v);
            }
        }
        let refresh_margin_secs = a.refresh_margin_secs.unwrap_or(DEFAULT_REFRESH_MARGIN_SECS);
        if refresh_margin_secs > 3600 {
            self.error(
                at("refresh_margin_secs"),
                format!("{refresh_margin_secs} is more than 3600 seconds"),
            );
        }
        let timeout_secs = a.timeout_secs.unwrap_or(DEFAULT_TOKEN_TIMEOUT_SECS);
        if !(1..=30).contains(&timeout_secs) {
            self.error(
                at("timeout_secs"),
                format!("{timeout_secs} is not in 1..=30"),
            );
        }
        (self.errors.len() == before).then(|| OauthClient {
            token_url,
            client_id_secret,
            client_secret_secret,
            scope: a.scope.clone(),
            audience: a.audience.clone(),
            resource: a.resource.clone(),
            refresh_margin_secs,
            timeout_secs,
        })
    }

    /// An audience or resource: 1 to 512 printable ASCII characters without spaces.
    fn plain_value(&mut self, at: &Location, v: &str) -> bool {
        let ok = !v.is_empty() && v.len() <= 512 && is_printable(v) && !v.contains(' ');
        if !ok {
            self.error(
                at.clone(),
                format!("{v:?} must be 1 to 512 printable ASCII characters without spaces"),
            );
        }
        ok
    }

    /// A route's `upstream` (and `origin`, the implicit upstream that injects nothing): the
    /// origin it resolves to and the upstream's name.
    pub(super) fn route_upstream(
        &mut self,
        file: &str,
        r: &RouteConfig,
        access: Option<&Access>,
        gateway: &Gateway,
        upstreams: &BTreeMap<String, Upstream>,
    ) -> (String, Option<String>) {
        let at = |field: &str| Location::route(file, &r.id, field);
        let Some(name) = &r.upstream else {
            if let Some(o) = &r.origin {
                self.url(&|| at("origin"), o, gateway.allow_insecure_http, false);
                return (o.clone(), None);
            }
            return (gateway.origin.clone(), None);
        };
        if r.origin.is_some() {
            self.error(
                at("upstream"),
                "a route has either origin or upstream, not both (the upstream's url is where it goes)",
            );
        }
        let Some(u) = upstreams.get(name) else {
            let list: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            self.error(
                at("upstream"),
                format!(
                    "unknown upstream {name:?} (defined: {})",
                    if list.is_empty() {
                        "none".to_owned()
                    } else {
                        list.join(", ")
                    }
                ),
            );
            return (String::new(), None);
        };
        if let Some(auth) = &u.auth {
            match access {
                Some(Access::Public) => self.error(
                    at("upstream"),
                    format!("a public route cannot use upstream {name:?}, which injects a {} credential: anyone could use it", auth.kind()),
                ),
                Some(access) => {
                    if r.forward_tokens {
                        self.error(
                            at("forward_tokens"),
                            format!("upstream {name:?} injects a {} credential: the client's tokens are never passed through as well", auth.kind()),
                        );
                    }
                    if let Auth::TokenExchange { subject, .. } | Auth::GatewayJwt { subject, .. } =
                        auth
                    {
                        let all = matches!(access, Access::All(_))
                            || access.providers().len() == 1;
                        if !all || !access.providers().contains(subject) {
                            self.error(
                                at("upstream"),
                                format!("upstream {name:?} ({}) needs the verified token of provider {subject:?}: the route must require it (require = {{ all = [..., {subject:?}] }})", auth.kind()),
                            );
                        }
                    }
                }
                None => {}
            }
        }
        (u.url.clone(), Some(name.clone()))
    }
}
