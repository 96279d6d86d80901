//! RFC 9728 protected-resource metadata (issue 14 item 5), answered by the request phase as one
//! of the gateway's own endpoints (SPEC §5):
//!
//! - `GET /.well-known/oauth-protected-resource/<resource path>` (RFC 9728 §3.1: the well-known
//!   path inserted between the origin and the resource identifier's path): the metadata of the
//!   protected resource `<origin>/<resource path>`, made of every protected route whose
//!   `resource` (policy field; default: the route path's literal prefix) is that path;
//! - `GET /.well-known/oauth-protected-resource`: the resource identified by the origin itself,
//!   the gateway as a whole: every protected route.
//!
//! Only routes that take the request's host count. No such route: 404 `not_found`. Any method
//! but GET (HEAD) is 405 with `Allow: GET, HEAD`. The document is JSON, `Cache-Control:
//! max-age=300` (it changes only with a deploy). Members: `resource` (the origin plus the
//! resource path: the only request-derived part is the gateway's own origin),
//! `authorization_servers` (each route's providers in order, each provider's issuer first),
//! `bearer_methods_supported` (`["header"]`: tokens are only read from headers),
//! `scopes_supported` (where the routes need scopes), `dpop_signing_alg_values_supported` and
//! `dpop_bound_access_tokens_required` (where a provider takes DPoP), and the extension member
//! `attestgate_challenge_endpoint` (the challenge-nonce endpoint, SPEC §3 step 1). The metadata
//! is not signed (no `signed_metadata`, no `resource_signing_alg_values_supported`).
//!
//! Every `WWW-Authenticate` challenge of a route names its resource's metadata URL
//! (`resource_metadata`, RFC 9728 §5.1): [`metadata_path`] gives the path each route's
//! [`crate::error::Challenge`] carries.

use std::collections::HashMap;

use crate::gate::compiled::ProviderRt;
use crate::gate::family::CredentialFamily;
use crate::gate::log::{json_object, json_str, json_strs};
use crate::gate::phase::response::Answer;
use crate::policy::{Allow, Miss, Policy};
use crate::Error;

/// The RFC 9728 well-known path (`oauth-protected-resource`).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// How long clients and caches may keep a document.
const CACHE_CONTROL: &str = "max-age=300";

/// The metadata URL path of the resource at `resource_path` (`""`: the origin itself).
pub fn metadata_path(resource_path: &str) -> String {
    format!("{WELL_KNOWN}{resource_path}")
}

/// The resource path a request path asks about: `Some("")` for the well-known path itself,
/// `Some("/mcp")` for `/.well-known/oauth-protected-resource/mcp`, `None` for any other path
/// (then it is not this endpoint). A suffix that is no route's resource is a 404 later.
pub fn requested(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(WELL_KNOWN)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// One protected route's part of its resource's metadata.
#[derive(Debug, Clone)]
struct Entry {
    host: Option<String>,
    resource: String,
    authorization_servers: Vec<String>,
    scopes: Vec<String>,
    bearer: bool,
    dpop: bool,
}

/// The metadata of every protected resource, built once with the gate.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// One per protected route, in policy order.
    entries: Vec<Entry>,
}

impl Resources {
    pub fn new(policy: &Policy, providers: &HashMap<String, ProviderRt>) -> Self {
        let entries = policy
            .routes()
            .iter()
            .filter_map(|route| {
                let resource = route.resource.clone()?;
                let mut entry = Entry {
                    host: route.host.clone(),
                    resource,
                    authorization_servers: Vec::new(),
                    scopes: route.scopes.clone(),
                    bearer: false,
                    dpop: false,
                };
                for name in route.access.providers() {
                    let Some(p) = providers.get(name) else {
                        continue;
                    };
                    let schemes = p.family.schemes();
                    entry.bearer |= schemes.bearer;
                    entry.dpop |= schemes.dpop;
                    let listed = policy
                        .providers()
                        .iter()
                        .find(|q| &q.name == name)
                        .map(|q| q.authorization_servers.as_slice())
                        .unwrap_or_default();
                    push_new(&mut entry.authorization_servers, listed);
                }
                Some(entry)
            })
            .collect();
        Resources { entries }
    }

    /// The document for `resource_path` (`""`: every protected route) as the routes of `host`
    /// see it, served from `origin` (`scheme://authority`); `None` when no protected route of
    /// that host belongs to it.
    pub fn document(
        &self,
        origin: &str,
        host: &str,
        resource_path: &str,
        challenge_path: &str,
    ) -> Option<String> {
        let mut found = false;
        let (mut servers, mut scopes) = (Vec::new(), Vec::new());
        let (mut bearer, mut dpop) = (false, false);
        for e in &self.entries {
            let on_host = e.host.as_deref().is_none_or(|h| h == host);
            if !on_host || (!resource_path.is_empty() && e.resource != resource_path) {
                continue;
            }
            found = true;
            push_new(&mut servers, &e.authorization_servers);
            push_new(&mut scopes, &e.scopes);
            bearer |= e.bearer;
            dpop |= e.dpop;
        }
        if !found {
            return None;
        }
        let resource = json_str(&format!("{origin}{resource_path}"));
        let servers = json_strs(servers.iter().map(String::as_str));
        let scopes = json_strs(scopes.iter().map(String::as_str));
        let algs = json_strs(crate::gate::dpop::PROOF_ALG_NAMES.split(' '));
        let challenge = json_str(&format!("{origin}{challenge_path}"));
        let mut members: Vec<(&str, &str)> = vec![("resource", &resource)];
        if servers != "[]" {
            members.push(("authorization_servers", &servers));
        }
        members.push(("bearer_methods_supported", r#"["header"]"#));
        if scopes != "[]" {
            members.push(("scopes_supported", &scopes));
        }
        if dpop {
            members.push(("dpop_signing_alg_values_supported", &algs));
            if !bearer {
                members.push(("dpop_bound_access_tokens_required", "true"));
            }
        }
        members.push(("attestgate_challenge_endpoint", &challenge));
        Some(json_object(&members))
    }
}

fn push_new(into: &mut Vec<String>, items: &[String]) {
    for item in items {
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}

/// The endpoint: GET (and HEAD) only; the document of the resource `resource_path` names, or
/// 404 `not_found`.
pub fn answer(
    resources: &Resources,
    method: &str,
    origin: &str,
    host: &str,
    resource_path: &str,
    challenge_path: &str,
) -> Result<Answer, Error> {
    if method != "GET" && method != "HEAD" {
        return Err(Error::Route(Miss::MethodNotAllowed(Allow::from_static(
            "GET, HEAD",
        ))));
    }
    let body = resources
        .document(origin, host, resource_path, challenge_path)
        .ok_or(Error::Route(Miss::NoRoute))?;
    Ok(Answer {
        status: 200,
        body,
        headers: vec![("cache-control", CACHE_CONTROL.to_owned())],
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_path_and_its_suffixes() {
        assert_eq!(requested("/.well-known/oauth-protected-resource"), Some(""));
        assert_eq!(
            requested("/.well-known/oauth-protected-resource/mcp"),
            Some("/mcp")
        );
        assert_eq!(
            requested("/.well-known/oauth-protected-resource/"),
            Some("/")
        );
        assert_eq!(requested("/.well-known/oauth-protected-resourcex"), None);
        assert_eq!(requested("/.well-known/oauth-authorization-server"), None);
        assert_eq!(requested("/mcp"), None);
        assert_eq!(metadata_path(""), WELL_KNOWN);
        assert_eq!(
            metadata_path("/mcp"),
            "/.well-known/oauth-protected-resource/mcp"
        );
    }
}
