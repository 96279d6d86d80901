//! Issue 14 item 5: RFC 9728 protected-resource metadata, decided by the gateway's own
//! pipeline (`api::Gateway::decide`, as the Worker does): the well-known document at the root
//! and at the path-suffixed form, its members, the 404 and 405 cases, and the
//! `resource_metadata` / `scope` parameters of the challenges that point to it.

use attestgate::api::{self, Gateway, MemoryReplay, NativeVerifier, Seams, StaticKeys};
use attestgate::gate::phase::{Outcome, ResponsePlan};
use attestgate::jose::block_on_ready;
use serde_json::{json, Value};

const POLICY: &str = r#"
[gateway]
origin = "https://origin.example"
realm = "api.example.com"

[provider.agent]
issuer = "https://as.example.com"
audiences = ["https://api.example.com/mcp"]
algorithms = ["ES256"]
token_types = ["at+jwt"]
jwks_uri = "https://as.example.com/jwks.json"
authorization_servers = ["https://as-backup.example.com", "https://as.example.com"]

[provider.pop]
issuer = "https://pop.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://pop.example.com/jwks.json"
from = { header = "authorization", scheme = "DPoP" }
proof = "dpop"

# An attestation in its own header: not an OAuth access token, so its issuer is no
# authorization server.
[provider.device]
issuer = "https://attest.example.com"
audiences = ["https://api.example.com"]
algorithms = ["ES256"]
jwks_uri = "https://attest.example.com/jwks.json"
from = { header = "attestation" }

[[route]]
id = "mcp-tools"
path = "/mcp/tools"
require = { all = ["agent"] }
scopes = ["mcp:tools"]
resource = "/mcp"

[[route]]
id = "mcp-admin"
path = "/mcp/admin/**"
require = { all = ["agent"] }
scopes = ["mcp:tools", "mcp:admin"]
resource = "/mcp"

[[route]]
id = "orders-read"
path = "/v1/orders/{id}"
require = { all = ["pop", "device"] }

[[route]]
id = "other-host"
host = "other.example.com"
path = "/elsewhere"
require = { all = ["agent"] }
scopes = ["other:read"]

[[route]]
id = "health"
path = "/healthz"
public = true
"#;

fn gateway() -> Gateway {
    Gateway::new(api::compile_toml("p.toml", POLICY).expect("policy")).expect("gateway")
}

/// (status, headers, body) of the gateway's own answer to `method url`.
fn own(gw: &Gateway, method: &str, url: &str) -> (u16, Vec<(String, String)>, String) {
    let headers: Vec<(String, String)> = Vec::new();
    let req = api::Request {
        method,
        url,
        headers: &headers,
    };
    let keys = StaticKeys::new();
    let replay = MemoryReplay::new();
    let seams = Seams {
        keys: &keys,
        verifier: &NativeVerifier,
        replay: &replay,
        nonce_key: None,
        signing_keys: None,
        deny: None,
    };
    block_on_ready(async {
        let d = gw.decide(&req, &seams, 1_800_000_000, "req-1").await;
        assert!(
            !matches!(d.outcome, Outcome::Forward(_)),
            "{method} {url} was forwarded"
        );
        match &d.response {
            ResponsePlan::Own(a) => Ok::<_, attestgate::Error>((
                a.status,
                a.headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .collect(),
                a.body.clone(),
            )),
            other => panic!("no own answer: {other:?}"),
        }
    })
    .expect("the fakes never wait")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn document(gw: &Gateway, url: &str) -> Value {
    let (status, headers, body) = own(gw, "GET", url);
    assert_eq!(status, 200, "{url}: {body}");
    assert_eq!(header(&headers, "cache-control"), Some("max-age=300"));
    serde_json::from_str(&body).expect("JSON")
}

#[test]
fn the_path_suffixed_document_describes_the_routes_of_that_resource() {
    let gw = gateway();
    let doc = document(
        &gw,
        "https://api.example.com/.well-known/oauth-protected-resource/mcp",
    );
    assert_eq!(
        doc,
        json!({
            "resource": "https://api.example.com/mcp",
            // the issuer first, then the listed ones, each once
            "authorization_servers": ["https://as.example.com", "https://as-backup.example.com"],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["mcp:tools", "mcp:admin"],
            "attestgate_challenge_endpoint": "https://api.example.com/.well-known/attestgate/challenge",
        })
    );
    // The resource identifier is built from the origin the request reached (port included).
    let doc = document(
        &gw,
        "http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp",
    );
    assert_eq!(doc["resource"], "http://127.0.0.1:8787/mcp");
}

#[test]
fn a_dpop_resource_lists_its_algorithms_and_no_attestation_issuer() {
    let gw = gateway();
    // `/v1/orders/{id}` belongs to the resource `/v1/orders` (its literal prefix).
    let doc = document(
        &gw,
        "https://api.example.com/.well-known/oauth-protected-resource/v1/orders",
    );
    assert_eq!(
        doc,
        json!({
            "resource": "https://api.example.com/v1/orders",
            "authorization_servers": ["https://pop.example.com"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "Ed25519"],
            "dpop_bound_access_tokens_required": true,
            "attestgate_challenge_endpoint": "https://api.example.com/.well-known/attestgate/challenge",
        })
    );
}

#[test]
fn the_root_document_is_the_gateway_as_a_whole_on_that_host() {
    let gw = gateway();
    let doc = document(
        &gw,
        "https://api.example.com/.well-known/oauth-protected-resource",
    );
    assert_eq!(doc["resource"], "https://api.example.com");
    assert_eq!(
        doc["authorization_servers"],
        json!([
            "https://as.example.com",
            "https://as-backup.example.com",
            "https://pop.example.com"
        ])
    );
    assert_eq!(doc["scopes_supported"], json!(["mcp:tools", "mcp:admin"]));
    // Bearer and DPoP both taken: DPoP is not required.
    assert!(doc.get("dpop_bound_access_tokens_required").is_none());
    // The host-specific route only counts on its host.
    let doc = document(
        &gw,
        "https://other.example.com/.well-known/oauth-protected-resource",
    );
    assert_eq!(
        doc["scopes_supported"],
        json!(["mcp:tools", "mcp:admin", "other:read"])
    );
    let doc = document(
        &gw,
        "https://other.example.com/.well-known/oauth-protected-resource/elsewhere",
    );
    assert_eq!(doc["resource"], "https://other.example.com/elsewhere");
}

#[test]
fn unknown_resources_are_404_and_other_methods_405() {
    let gw = gateway();
    for path in [
        "/mcp/tools", // a route, not its resource
        "/mcp/",      // the trailing slash is no part of a resource identifier
        "/",
        "/healthz",   // public: protects nothing
        "/elsewhere", // another host's route
        "/MCP",
        "/mcp%2F",
        "/v1/orders/7",
    ] {
        let url = format!("https://api.example.com/.well-known/oauth-protected-resource{path}");
        let (status, headers, body) = own(&gw, "GET", &url);
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(header(&headers, "www-authenticate"), None);
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["error"], "not_found");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
        let (status, headers, _) = own(
            &gw,
            method,
            "https://api.example.com/.well-known/oauth-protected-resource/mcp",
        );
        assert_eq!(status, 405, "{method}");
        assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));
    }
    let (status, _, _) = own(
        &gw,
        "HEAD",
        "https://api.example.com/.well-known/oauth-protected-resource/mcp",
    );
    assert_eq!(status, 200);
}

#[test]
fn challenges_point_to_the_metadata_of_the_routes_resource() {
    let gw = gateway();
    let www = |url: &str| {
        let (status, headers, _) = own(&gw, "GET", url);
        (
            status,
            header(&headers, "www-authenticate").map(str::to_owned),
        )
    };
    let rm =
        "resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource/mcp\"";
    assert_eq!(
        www("https://api.example.com/mcp/tools"),
        (401, Some(format!("Bearer realm=\"api.example.com\", {rm}")))
    );
    assert_eq!(
        www("https://api.example.com/mcp/admin/x?q=1"),
        (401, Some(format!("Bearer realm=\"api.example.com\", {rm}")))
    );
    // The metadata URL names the gateway's own origin, never the request's path or query.
    let (_, h) = www("http://127.0.0.1:8787/v1/orders/%22x");
    assert_eq!(
        h.as_deref(),
        Some(
            "DPoP realm=\"api.example.com\", algs=\"ES256 EdDSA Ed25519\", resource_metadata=\"http://127.0.0.1:8787/.well-known/oauth-protected-resource/v1/orders\""
        )
    );
}
