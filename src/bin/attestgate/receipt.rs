//! `attestgate explain` on a route with `receipt = true` (issue 14): whether the route signs a
//! receipt, the claims it holds, and, when the gateway's pipeline allows the request, the exact
//! claims and `Content-Digest` the Worker would sign (with `ATTESTGATE_SIGNING_KEY`; nothing is
//! signed here, and no key of the deployment is needed: the pipeline runs with a throw-away key).

use attestgate::api::{ForwardPlan, Gate, GatewayKeys};
use attestgate::gate::phase::receipt::{CONTENT_DIGEST_HEADER, RECEIPT_HEADER, RECEIPT_TYP};
use attestgate::gate::signing::{JWKS_PATH, SIGNING_KEY_SECRET};
use attestgate::jose::b64;
use attestgate::policy::Route;
use serde_json::json;

/// The claims every receipt holds (`?`: only when known).
const CLAIMS: &str = "iss, aud, iat, exp, jti (= request id), sub?, act?, attestation {providers, issuers, device_id?}, route, policy_sha256, scope?, cnf.jkt?, htm, htu, content_digest";

/// The route's receipt rule, under `requires`.
pub fn print_rule(gate: &Gate, route: &Route) {
    let Some(rule) = route.receipt else {
        println!("receipt   none (receipt = false)");
        return;
    };
    println!(
        "receipt   signs {} ({RECEIPT_TYP}, key {SIGNING_KEY_SECRET}, public keys at {JWKS_PATH}), valid {} s, aud {}",
        header_name(RECEIPT_HEADER),
        rule.ttl_secs,
        route.origin.trim_end_matches('/')
    );
    println!("          claims: {CLAIMS}");
    println!(
        "          policy_sha256 {}; the body is read (at most {} bytes, else 413) and its RFC 9530 digest sent as {}",
        gate.policy_sha256(),
        route.body.max_bytes,
        header_name(CONTENT_DIGEST_HEADER)
    );
}

/// The receipt of an allowed request, as the Worker would sign it.
pub fn print_planned(fwd: &ForwardPlan<'_>) {
    let Some(receipt) = &fwd.receipt else {
        return;
    };
    println!(
        "  set     {}: {}",
        header_name(CONTENT_DIGEST_HEADER),
        receipt.content_digest
    );
    println!(
        "  set     {}: <compact JWS signed by the Worker with {SIGNING_KEY_SECRET}> holding",
        header_name(RECEIPT_HEADER)
    );
    let claims: serde_json::Value = serde_json::from_str(&receipt.claims).unwrap_or_default();
    let text = serde_json::to_string_pretty(&claims).unwrap_or_default();
    for line in text.lines() {
        println!("          {line}");
    }
}

/// A throw-away signing key, so that the pipeline plans the receipt as the Worker would (it is
/// never used to sign, nor printed).
pub fn throwaway_keys() -> Option<GatewayKeys> {
    for _ in 0..4 {
        let mut d = [0u8; 32];
        getrandom::fill(&mut d).ok()?;
        let Ok(sk) = p256::ecdsa::SigningKey::from_slice(&d) else {
            continue;
        };
        let point = sk.verifying_key().to_sec1_bytes();
        let (x, y) = (point.get(1..33)?, point.get(33..65)?);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "explain-throwaway",
            "x": b64::encode(x), "y": b64::encode(y), "d": b64::encode(&d),
        });
        return GatewayKeys::new(&jwk.to_string(), None).ok();
    }
    None
}

/// `attestgate-receipt` as `Attestgate-Receipt`.
fn header_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}
