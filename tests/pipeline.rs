//! The whole decision pipeline natively, with fakes behind its seams: inline keys (`KeySource`),
//! the pure-Rust `NativeVerifier`, and an in-memory `ReplayGuard` that records every call and can
//! be made unreachable. The policy is compiled from TOML text, as `build.rs` does.
//!
//! Tokens and DPoP proofs are signed here with `p256`, `ed25519-dalek` and `hmac` directly; RFC
//! 7638 thumbprints are computed here too, independently of the gateway's own code.
//!
//! The property under test throughout: single-use state (challenge nonces, DPoP nonces, `jti`s)
//! is touched only after signature, claims, bindings and the route's checks all passed, and
//! nonces that are forged, expired or made with another key never cost a store call.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use base64ct::{Base64, Base64Url, Base64UrlUnpadded, Encoding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use attestgate::error::FreshNonce;
use attestgate::gate::nonce::{self, NonceKey, NonceRef};
use attestgate::gate::phase::{decide, Decision, Env, Outcome, Request, ResponsePlan, Verdict};
use attestgate::gate::rate_limit::RateLimiter;
use attestgate::gate::seams::{KeySource, ReplayGuard, SystemRandom};
use attestgate::gate::{Gate, KeySpec, ProviderRt};
use attestgate::jose;
use attestgate::jose::{block_on_ready, KeySet, NativeVerifier};
use attestgate::policy::HeaderPlan;
use attestgate::policy::{Denial, Miss};
use attestgate::Error;
use common::sign;

const NOW: i64 = 1_700_000_000;
const HOST: &str = "api.example.com";
const AUD: &str = "https://api.example.com";
const IDP: &str = "https://idp.example";
const ATTESTER: &str = "https://attest.example";
const TTL: i64 = 120;
const SHARDS: u8 = 4;
const APPROOV_SECRET: [u8; 32] = [0x5a; 32];
const ROT_NEW: [u8; 32] = [0x62; 32];
const ROT_OLD: [u8; 32] = [0x61; 32];

// ------------------------------------------------------------------------------------------------
// Signing keys, JWS minting and thumbprints (independent of the crate under test).

enum Signer {
    Es(p256::ecdsa::SigningKey),
    Ed(ed25519_dalek::SigningKey),
    Hs(Vec<u8>),
}

fn b64u(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

impl Signer {
    fn es(seed: u8) -> Self {
        let mut bytes = [seed; 32];
        bytes[0] = 1; // keep the scalar well below the group order
        Signer::Es(p256::ecdsa::SigningKey::from_slice(&bytes).expect("P-256 scalar"))
    }

    fn ed(seed: u8) -> Self {
        Signer::Ed(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Es(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
            Signer::Hs(_) => "HS256",
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Signer::Es(k) => sign::es256(k, input),
            Signer::Ed(k) => sign::ed25519(k, input),
            Signer::Hs(secret) => sign::hs256(secret, input),
        }
    }

    /// The public JWK, members in RFC 7638 order (so the thumbprint input is easy to build).
    fn public_jwk(&self) -> Value {
        match self {
            Signer::Es(k) => {
                let sec1 = k.verifying_key().to_sec1_bytes();
                assert_eq!(sec1.len(), 65, "uncompressed SEC1 point");
                json!({"crv": "P-256", "kty": "EC", "x": b64u(&sec1[1..33]), "y": b64u(&sec1[33..])})
            }
            Signer::Ed(k) => {
                json!({"crv": "Ed25519", "kty": "OKP", "x": b64u(&k.verifying_key().to_bytes())})
            }
            Signer::Hs(_) => panic!("no public JWK for HMAC"),
        }
    }

    /// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
    fn thumbprint(&self) -> String {
        let jwk = self.public_jwk();
        let text = match self {
            Signer::Es(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap()
            ),
            Signer::Ed(_) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                jwk["x"].as_str().unwrap()
            ),
            Signer::Hs(_) => unreachable!(),
        };
        b64u(&Sha256::digest(text.as_bytes()))
    }

    fn jwk_with_kid(&self, kid: &str) -> Value {
        let mut jwk = self.public_jwk();
        jwk["kid"] = json!(kid);
        jwk
    }
}

/// A compact JWS over exactly these header and claims objects.
fn jws(header: &Value, claims: &Value, signer: &Signer) -> String {
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let sig = signer.sign(input.as_bytes());
    format!("{input}.{}", b64u(&sig))
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

// ------------------------------------------------------------------------------------------------
// The fakes.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Consume { shard: u8, id: String },
    Seen { shard: u8, id: String, exp: i64 },
}

/// In-memory nonce store with the Durable Object's semantics (`src/gate/store.rs`): nothing is
/// stored when a nonce is issued; `consume` records a nonce's first use (true once), `seen`
/// records an id until `exp` (true the first time).
#[derive(Default)]
struct FakeReplay {
    nonces: RefCell<HashMap<(u8, String), i64>>,
    seen: RefCell<HashMap<(u8, String), i64>>,
    calls: RefCell<Vec<Call>>,
    unreachable: Cell<bool>,
}

impl FakeReplay {
    fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn clear_calls(&self) {
        self.calls.borrow_mut().clear();
    }
}

impl ReplayGuard for FakeReplay {
    async fn consume(&self, nonce: &NonceRef, now: i64) -> Result<bool, Error> {
        self.calls.borrow_mut().push(Call::Consume {
            shard: nonce.shard,
            id: nonce.id.clone(),
        });
        if self.unreachable.get() {
            return Err(Error::NonceStoreUnavailable);
        }
        // The pipeline only consumes nonces it verified as live.
        assert!(nonce.exp >= now, "an expired nonce reached the store");
        let mut used = self.nonces.borrow_mut();
        Ok(used
            .insert((nonce.shard, nonce.id.clone()), nonce.exp)
            .is_none())
    }

    async fn first_seen(&self, shard: u8, id: &str, exp: i64, now: i64) -> Result<bool, Error> {
        self.calls.borrow_mut().push(Call::Seen {
            shard,
            id: id.to_owned(),
            exp,
        });
        if self.unreachable.get() {
            return Err(Error::NonceStoreUnavailable);
        }
        let mut seen = self.seen.borrow_mut();
        let key = (shard, id.to_owned());
        match seen.get(&key) {
            Some(&until) if until >= now => Ok(false),
            _ => {
                seen.insert(key, exp);
                Ok(true)
            }
        }
    }
}

/// Inline JWKS as compiled; HMAC secrets from a map of base64 texts, loaded by the core's
/// `hmac_keys` as the Worker does with its secrets.
struct FakeKeys {
    secrets: HashMap<String, String>,
}

impl KeySource for FakeKeys {
    async fn keys(&self, provider: &ProviderRt, _refresh: bool) -> Result<Arc<KeySet>, Error> {
        match &provider.keys {
            KeySpec::Inline(set) => Ok(set.clone()),
            KeySpec::Secret(list) => {
                let values: Vec<Option<&str>> = list
                    .iter()
                    .map(|s| self.secrets.get(&s.name).map(String::as_str))
                    .collect();
                let set = attestgate::gate::compiled::hmac_keys(list, &values)
                    .map_err(|_| Error::SecretUnavailable)?;
                Ok(Arc::new(set))
            }
            KeySpec::Jwks { .. } => Err(Error::KeysUnavailable),
        }
    }
}

/// What the tests look at of an allowed request: its route, the verified-claims header plan,
/// and whether the response carries the next DPoP nonce.
#[derive(Debug, PartialEq, Eq)]
struct Forward {
    route_id: String,
    plan: HeaderPlan,
    dpop: bool,
}

impl Forward {
    fn of(d: &Decision<'_>) -> Result<Forward, Error> {
        let dpop =
            matches!(&d.response, ResponsePlan::Origin { headers, .. } if !headers.is_empty());
        match &d.outcome {
            Outcome::Forward(plan) => Ok(Forward {
                route_id: plan.route_id().to_owned(),
                plan: plan.headers.claims().clone(),
                dpop,
            }),
            Outcome::Refused(e) => Err(*e),
            Outcome::Endpoint(e) => panic!("the {e:?} endpoint answered a route request"),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The world: one policy, the keys, the fakes.

struct World {
    gate: Gate,
    keys: FakeKeys,
    replay: FakeReplay,
    nonce_key: NonceKey,
    /// The issuer of agent, dpop and once tokens.
    idp: Signer,
    /// The attestation service that signs challenge-bound attestations.
    attester: Signer,
    approov: Signer,
    counter: Cell<u64>,
    /// The challenge endpoint's buckets, as an isolate keeps them.
    challenges: RefCell<RateLimiter>,
}

fn policy_text(idp: &Signer, attester: &Signer) -> String {
    let idp_jwks = json!({"keys": [idp.jwk_with_kid("idp-1")]}).to_string();
    let attest_jwks = json!({"keys": [attester.jwk_with_kid("att-1")]}).to_string();
    format!(
        r#"
[gateway]
origin = "https://origin.example"
realm = "api.example.com"
clock_skew_secs = 60
challenge_ttl_secs = {TTL}
nonce_shards = {SHARDS}

# A client attestation that must carry a challenge nonce issued by this gateway.
[provider.attest]
issuer = "{ATTESTER}"
audiences = ["{AUD}"]
algorithms = ["ES256"]
token_types = ["JWT"]
from = {{ header = "attestation" }}
jwks = '{attest_jwks}'
nonce_claim = "nonce"

[provider.agent]
issuer = "{IDP}"
audiences = ["{AUD}"]
algorithms = ["ES256"]
token_types = ["at+jwt"]
jwks = '{idp_jwks}'
required_claims = ["sub"]
# agent, once and dpop trust the same issuer with different checks: acknowledged (each test uses
# one of them; a policy that means it would keep them apart by audience or token type).
weakens = ["once", "dpop"]

[provider.once]
issuer = "{IDP}"
audiences = ["{AUD}"]
algorithms = ["ES256"]
token_types = ["at+jwt"]
from = {{ header = "once-token" }}
jwks = '{idp_jwks}'
replay = "jti"
weakens = ["dpop"]

[provider.dpop]
issuer = "{IDP}"
audiences = ["{AUD}"]
algorithms = ["ES256"]
token_types = ["at+jwt"]
from = {{ header = "authorization", scheme = "DPoP" }}
jwks = '{idp_jwks}'
proof = "dpop"
weakens = ["once"]

[provider.device]
algorithms = ["HS256"]
secret = "APPROOV_SECRET"
from = {{ header = "approov-token" }}
binding = {{ claim = "pay", header = "authorization" }}

# Key rotation: two HMAC keys, each with the kid of the tokens it signs.
[provider.rotating]
algorithms = ["HS256"]
secrets = [{{ name = "ROT_NEW", kid = "k2" }}, {{ name = "ROT_OLD", kid = "k1" }}]
from = {{ header = "rotating-token" }}

# One of its two secrets is not set.
[provider.half]
algorithms = ["HS256"]
secrets = [{{ name = "ROT_OLD", kid = "k1" }}, {{ name = "ROT_GONE", kid = "k9" }}]
from = {{ header = "half-token" }}

[[route]]
id = "attest"
methods = ["POST"]
path = "/attest/{{op}}"
require = {{ all = ["attest"] }}
scopes = ["attest:use"]

[[route]]
id = "once"
path = "/once"
require = {{ all = ["once"] }}
scopes = ["once:use"]

[[route]]
id = "dpop"
path = "/dpop/resource"
require = {{ all = ["dpop"] }}
scopes = ["dpop:use"]

# A Bearer-only route, and one that takes Bearer or DPoP tokens in `Authorization`.
[[route]]
id = "agent"
path = "/agent"
require = {{ all = ["agent"] }}

[[route]]
id = "mixed"
path = "/mixed"
require = {{ any = ["agent", "dpop"] }}

[[route]]
id = "rotating"
path = "/rotating"
require = {{ all = ["rotating"] }}

[[route]]
id = "half"
path = "/half"
require = {{ all = ["half"] }}

[[route]]
id = "approov"
methods = ["POST"]
path = "/approov/orders"
require = {{ all = ["device", "agent"] }}
forward = {{ "x-verified-device" = "device.did", "x-verified-user" = "agent.sub" }}
"#
    )
}

impl World {
    fn new() -> Self {
        let idp = Signer::es(0x11);
        let attester = Signer::es(0x22);
        let text = policy_text(&idp, &attester);
        let file = attestgate::policy::parse_toml("pipeline.toml", &text).expect("policy parses");
        let policy = attestgate::policy::compile(vec![file]).expect("policy compiles");
        let gate = Gate::new(policy).expect("gate");
        assert_eq!(gate.nonce_shards, SHARDS);
        assert_eq!(gate.challenge_ttl_secs, TTL);
        let mut secrets = HashMap::new();
        for (name, bytes) in [
            ("APPROOV_SECRET", APPROOV_SECRET),
            ("ROT_NEW", ROT_NEW),
            ("ROT_OLD", ROT_OLD),
        ] {
            secrets.insert(name.to_owned(), Base64::encode_string(&bytes));
        }
        World {
            gate,
            keys: FakeKeys { secrets },
            replay: FakeReplay::default(),
            nonce_key: NonceKey::new(vec![0x42; 32]).unwrap(),
            idp,
            attester,
            approov: Signer::Hs(APPROOV_SECRET.to_vec()),
            counter: Cell::new(0),
            challenges: RefCell::new(RateLimiter::for_challenges()),
        }
    }

    fn fresh_id(&self, prefix: &str) -> String {
        self.counter.set(self.counter.get() + 1);
        format!("{prefix}-{}", self.counter.get())
    }

    /// A nonce as the challenge endpoint makes it: MAC'd text, nothing stored.
    fn challenge_at(&self, issued_at: i64) -> String {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).unwrap();
        let issued = nonce::issue(&self.nonce_key, SHARDS, issued_at, TTL, random).unwrap();
        issued.text
    }

    fn challenge(&self) -> String {
        self.challenge_at(NOW)
    }

    fn run(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<Forward, Error> {
        self.run_with(method, path, headers, Some(&self.nonce_key))
    }

    fn run_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        nonce_key: Option<&NonceKey>,
    ) -> Result<Forward, Error> {
        self.decide(method, path, headers, nonce_key, Forward::of)
    }

    /// One whole decision at `NOW` of `method https://api.example.com{path}`, looked at by `f`.
    fn decide<T>(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        nonce_key: Option<&NonceKey>,
        f: impl FnOnce(&Decision<'_>) -> T,
    ) -> T {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let url = format!("https://{HOST}{path}");
        let parts = attestgate::gate::url::split(&url).expect("an absolute URL");
        let view = Request::new(method, parts, &headers);
        let env = Env {
            keys: &self.keys,
            verifier: &NativeVerifier,
            replay: &self.replay,
            nonce_key: &nonce_key,
            random: &SystemRandom,
            challenges: &self.challenges,
            signing: &None::<&attestgate::gate::signing::GatewayKeys>,
            deny: &attestgate::gate::deny::NoDenyStore,
            now: NOW,
            now_ms: NOW * 1000,
        };
        block_on_ready(async {
            Ok::<_, Error>(f(&decide(&self.gate, &view, &env, "req-test").await))
        })
        .expect("the fakes never wait")
    }

    // ---- tokens ------------------------------------------------------------------------------

    fn attestation(&self, extra: Value) -> String {
        self.attestation_signed_by(&self.attester, extra)
    }

    fn attestation_signed_by(&self, signer: &Signer, extra: Value) -> String {
        let claims = merge(
            json!({
                "iss": ATTESTER, "aud": AUD, "sub": "app:demo", "iat": NOW, "exp": NOW + 300,
                "scope": "attest:use",
            }),
            extra,
        );
        jws(
            &json!({"alg": "ES256", "typ": "JWT", "kid": "att-1"}),
            &claims,
            signer,
        )
    }

    fn idp_token(&self, extra: Value) -> String {
        let claims = merge(
            json!({
                "iss": IDP, "aud": AUD, "sub": "user:alice", "iat": NOW, "exp": NOW + 300,
                "jti": self.fresh_id("jti"),
            }),
            extra,
        );
        jws(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": "idp-1"}),
            &claims,
            &self.idp,
        )
    }

    fn approov_token(&self, extra: Value) -> String {
        let claims = merge(json!({"did": "device-7", "exp": NOW + 300}), extra);
        jws(
            &json!({"alg": "HS256", "typ": "JWT"}),
            &claims,
            &self.approov,
        )
    }
}

/// A DPoP proof with sensible defaults for `GET https://api.example.com/dpop/resource`.
fn proof(key: &Signer, access_token: &str, extra: Value) -> String {
    let claims = merge(
        json!({
            "jti": format!("proof-{}", rand_hex()),
            "htm": "GET",
            "htu": format!("https://{HOST}/dpop/resource"),
            "iat": NOW,
            "ath": b64u(&Sha256::digest(access_token.as_bytes())),
        }),
        extra,
    );
    jws(
        &json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": key.public_jwk()}),
        &claims,
        key,
    )
}

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_no_store_calls(w: &World) {
    assert_eq!(
        w.replay.calls(),
        vec![],
        "the replay store must not be called"
    );
}

fn consumes(w: &World) -> usize {
    w.replay
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Consume { .. }))
        .count()
}

fn seens(w: &World) -> usize {
    w.replay
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Seen { .. }))
        .count()
}

// ================================================================================================
// Challenge nonces carried in a token claim (`nonce_claim`).

#[test]
fn challenge_nonce_in_attestation_is_accepted_once() {
    let w = World::new();
    let nonce = w.challenge();
    let token = w.attestation(json!({ "nonce": nonce }));
    let fwd = w
        .run("POST", "/attest/pay", &[("attestation", &token)])
        .expect("first use is allowed");
    assert_eq!(fwd.route_id, "attest");
    assert_eq!(consumes(&w), 1);

    // The same nonce again, even in a freshly signed token, is refused.
    let again = w.attestation(json!({ "nonce": nonce, "iat": NOW - 1 }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &again)]),
        Err(Error::ChallengeUsed)
    );
    assert_eq!(consumes(&w), 2);
    let wire = Error::ChallengeUsed.wire("r");
    assert_eq!(
        (wire.status, wire.code, wire.fresh_nonce),
        (401, "use_attestation_challenge", FreshNonce::Attestation)
    );
}

#[test]
fn two_nonces_are_independent() {
    let w = World::new();
    let (a, b) = (w.challenge(), w.challenge());
    for n in [&a, &b] {
        let token = w.attestation(json!({ "nonce": n }));
        assert!(w
            .run("POST", "/attest/x", &[("attestation", &token)])
            .is_ok());
    }
}

#[test]
fn attestation_without_nonce_claim_is_challenge_missing_without_store_call() {
    let w = World::new();
    let token = w.attestation(json!({}));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::ChallengeMissing)
    );
    let token = w.attestation(json!({ "nonce": 12345 }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::ChallengeMissing)
    );
    assert_no_store_calls(&w);
}

#[test]
fn forged_nonce_is_refused_without_store_call() {
    let w = World::new();
    let real = w.challenge();
    let mut forged = vec![
        "A".repeat(nonce::NONCE_TEXT_LEN),
        "not-a-nonce".to_owned(),
        real[..real.len() - 1].to_owned(),
    ];
    // One character changed in the random part and one in the MAC.
    for i in [20, nonce::NONCE_TEXT_LEN - 3] {
        let mut bytes = real.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        forged.push(String::from_utf8(bytes).unwrap());
    }
    for text in forged {
        let token = w.attestation(json!({ "nonce": text }));
        assert_eq!(
            w.run("POST", "/attest/pay", &[("attestation", &token)]),
            Err(Error::ChallengeUnknown),
            "{text}"
        );
    }
    assert_no_store_calls(&w);
    // The real nonce was not disturbed.
    let token = w.attestation(json!({ "nonce": real }));
    assert!(w
        .run("POST", "/attest/pay", &[("attestation", &token)])
        .is_ok());
}

#[test]
fn nonce_made_with_another_key_is_refused_without_store_call() {
    let w = World::new();
    let other = NonceKey::new(vec![0x43; 32]).unwrap();
    let issued = nonce::issue(&other, SHARDS, NOW, TTL, [3u8; 16]).unwrap();
    // The MAC decides before any store call.
    let token = w.attestation(json!({ "nonce": issued.text }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::ChallengeUnknown)
    );
    assert_no_store_calls(&w);
}

#[test]
fn nonce_naming_a_shard_the_gateway_does_not_have_is_refused_without_store_call() {
    let w = World::new();
    let mut random = [0u8; 16];
    random[0] = 15; // shard 15 of 16; this gateway has 4
    let issued = nonce::issue(&w.nonce_key, 16, NOW, TTL, random).unwrap();
    let token = w.attestation(json!({ "nonce": issued.text }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::ChallengeUnknown)
    );
    assert_no_store_calls(&w);
}

#[test]
fn expired_nonce_is_refused_without_store_call() {
    let w = World::new();
    let old = w.challenge_at(NOW - TTL - 1);
    let token = w.attestation(json!({ "nonce": old }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::ChallengeExpired)
    );
    // Issued in the future beyond the skew: also refused.
    let future = w.challenge_at(NOW + 61);
    let token = w.attestation(json!({ "nonce": future }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::ChallengeExpired)
    );
    assert_no_store_calls(&w);
    // At the last second of its life a nonce still works.
    let edge = w.challenge_at(NOW - TTL);
    let token = w.attestation(json!({ "nonce": edge }));
    assert!(w
        .run("POST", "/attest/pay", &[("attestation", &token)])
        .is_ok());
}

#[test]
fn a_nonce_is_recorded_at_its_first_use_only_and_kept_until_it_expires() {
    // Issuing stores nothing (the MAC proves the gateway made it); the first use records its
    // id in its shard until the nonce's own expiry, and every later use finds the record.
    let w = World::new();
    let issued = nonce::issue(&w.nonce_key, SHARDS, NOW - 10, TTL, [9u8; 16]).unwrap();
    assert_no_store_calls(&w);
    let token = w.attestation(json!({ "nonce": issued.text }));
    assert!(w
        .run("POST", "/attest/pay", &[("attestation", &token)])
        .is_ok());
    assert_eq!(
        w.replay.calls(),
        vec![Call::Consume {
            shard: issued.nonce.shard,
            id: issued.nonce.id.clone()
        }]
    );
    assert_eq!(
        w.replay
            .nonces
            .borrow()
            .get(&(issued.nonce.shard, issued.nonce.id.clone())),
        Some(&(NOW - 10 + TTL))
    );
    let again = w.attestation(json!({ "nonce": issued.text }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &again)]),
        Err(Error::ChallengeUsed)
    );
    assert_eq!(consumes(&w), 2);
}

#[test]
fn missing_nonce_key_is_503_never_an_allow() {
    let w = World::new();
    let nonce = w.challenge();
    let token = w.attestation(json!({ "nonce": nonce }));
    let got = w.run_with("POST", "/attest/pay", &[("attestation", &token)], None);
    assert_eq!(got, Err(Error::SecretUnavailable));
    assert_eq!(Error::SecretUnavailable.wire("r").status, 503);
    assert_no_store_calls(&w);
}

// ================================================================================================
// Order: nothing single-use is touched before every other check passed.

#[test]
fn forged_attestation_signature_never_consumes_the_nonce() {
    let w = World::new();
    let nonce = w.challenge();
    let mallory = Signer::es(0x66);
    let forged = w.attestation_signed_by(&mallory, json!({ "nonce": nonce }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &forged)]),
        Err(Error::Token(jose::Error::BadSignature))
    );
    // A signature from the right key over other claims, spliced onto these claims.
    let good = w.attestation(json!({ "nonce": nonce, "sub": "app:other" }));
    let parts: Vec<&str> = forged.split('.').collect();
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        good.rsplit('.').next().unwrap()
    );
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &spliced)]),
        Err(Error::Token(jose::Error::BadSignature))
    );
    assert_no_store_calls(&w);
    // The nonce is still good for the honest client.
    assert!(w
        .run("POST", "/attest/pay", &[("attestation", &good)])
        .is_ok());
}

#[test]
fn failing_claims_never_consume_the_nonce() {
    let w = World::new();
    let nonce = w.challenge();
    let cases = [
        (
            json!({ "nonce": nonce, "iat": NOW - 400, "exp": NOW - 120 }),
            Error::Token(jose::Error::Expired),
        ),
        (
            json!({ "nonce": nonce, "aud": "https://elsewhere" }),
            Error::Token(jose::Error::AudienceMismatch),
        ),
        (
            json!({ "nonce": nonce, "iss": "https://evil.example" }),
            Error::Token(jose::Error::IssuerMismatch),
        ),
    ];
    for (claims, want) in cases {
        let token = w.attestation(claims);
        assert_eq!(
            w.run("POST", "/attest/pay", &[("attestation", &token)]),
            Err(want)
        );
    }
    assert_no_store_calls(&w);
}

#[test]
fn failing_route_checks_never_consume_the_nonce() {
    let w = World::new();
    let nonce = w.challenge();
    let token = w.attestation(json!({ "nonce": nonce, "scope": "something:else" }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::Denied(Denial::ScopeMissing))
    );
    // Wrong method: 405 with the route's methods, nothing read.
    let ok = w.attestation(json!({ "nonce": nonce }));
    assert_eq!(
        w.run("GET", "/attest/pay", &[("attestation", &ok)]),
        Err(Error::Route(Miss::MethodNotAllowed(
            attestgate::policy::Allow::from_static("POST")
        )))
    );
    assert_no_store_calls(&w);
    assert!(w
        .run("POST", "/attest/pay", &[("attestation", &ok)])
        .is_ok());
    assert_eq!(consumes(&w), 1);
}

#[test]
fn forged_or_unauthorised_tokens_never_record_a_jti() {
    let w = World::new();
    let jti = "jti-fixed";
    let mallory = Signer::es(0x66);
    let claims = json!({
        "iss": IDP, "aud": AUD, "sub": "user:alice", "iat": NOW, "exp": NOW + 300,
        "jti": jti, "scope": "once:use",
    });
    let forged = jws(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "idp-1"}),
        &claims,
        &mallory,
    );
    assert_eq!(
        w.run("GET", "/once", &[("once-token", &forged)]),
        Err(Error::Token(jose::Error::BadSignature))
    );
    let no_scope = w.idp_token(json!({ "jti": jti, "scope": "other" }));
    assert_eq!(
        w.run("GET", "/once", &[("once-token", &no_scope)]),
        Err(Error::Denied(Denial::ScopeMissing))
    );
    assert_no_store_calls(&w);
    // The honest token with that jti is still accepted once.
    let honest = w.idp_token(json!({ "jti": jti, "scope": "once:use" }));
    assert!(w.run("GET", "/once", &[("once-token", &honest)]).is_ok());
    assert_eq!(seens(&w), 1);
}

#[test]
fn store_unreachable_is_503_and_never_an_allow() {
    let w = World::new();
    w.replay.unreachable.set(true);
    let nonce = w.challenge();
    let token = w.attestation(json!({ "nonce": nonce }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::NonceStoreUnavailable)
    );
    let once = w.idp_token(json!({ "scope": "once:use" }));
    assert_eq!(
        w.run("GET", "/once", &[("once-token", &once)]),
        Err(Error::NonceStoreUnavailable)
    );
    let wire = Error::NonceStoreUnavailable.wire("r");
    assert_eq!((wire.status, wire.code), (503, "temporarily_unavailable"));
    assert_eq!(wire.retry_after, Some(5));
    assert_eq!(wire.fresh_nonce, FreshNonce::No);

    // Back online: the nonce was not burnt by the outage.
    w.replay.unreachable.set(false);
    assert!(w
        .run("POST", "/attest/pay", &[("attestation", &token)])
        .is_ok());
}

#[test]
fn store_unreachable_does_not_hide_an_earlier_refusal() {
    // A bad token is refused for what it is, without asking the (unreachable) store.
    let w = World::new();
    w.replay.unreachable.set(true);
    let token = w.attestation(json!({ "nonce": "forged" }));
    assert_eq!(
        w.run("POST", "/attest/pay", &[("attestation", &token)]),
        Err(Error::ChallengeUnknown)
    );
    assert_no_store_calls(&w);
}

// ================================================================================================
// `replay = "jti"`.

#[test]
fn replay_jti_token_is_accepted_once() {
    let w = World::new();
    let token = w.idp_token(json!({ "scope": "once:use" }));
    assert!(w.run("GET", "/once", &[("once-token", &token)]).is_ok());
    assert_eq!(
        w.run("GET", "/once", &[("once-token", &token)]),
        Err(Error::ReplayedToken)
    );
    let wire = Error::ReplayedToken.wire("r");
    assert_eq!((wire.status, wire.code), (401, "invalid_token"));
    // The record lives until the token's expiry plus the skew (then the token is dead anyway).
    match &w.replay.calls()[0] {
        Call::Seen { exp, .. } => assert_eq!(*exp, NOW + 300 + 60),
        other => panic!("{other:?}"),
    }
    // Another jti from the same issuer is independent.
    let other = w.idp_token(json!({ "scope": "once:use" }));
    assert!(w.run("GET", "/once", &[("once-token", &other)]).is_ok());
}

#[test]
fn replay_jti_token_that_outlives_the_store_record_is_refused() {
    // The store keeps a record at most MAX_RECORD_SECS (so its sweep alarm is always valid):
    // a one-time token that would still be valid after that could be replayed then.
    let w = World::new();
    let limit = NOW + attestgate::gate::store::MAX_RECORD_SECS;
    for exp in [limit, i64::MAX] {
        let token = w.idp_token(json!({ "scope": "once:use", "exp": exp }));
        assert_eq!(
            w.run("GET", "/once", &[("once-token", &token)]),
            Err(Error::Token(jose::Error::LifetimeTooLong)),
            "{exp}"
        );
    }
    assert_no_store_calls(&w);
    // The providers' own lifetime bound (at most 365 days, `max_lifetime_secs`) is inside the
    // store's, so the store cap is a second line: a token within its provider's lifetime is
    // accepted and recorded until its expiry.
    let token = w.idp_token(json!({ "scope": "once:use", "exp": NOW + 300 }));
    assert!(w.run("GET", "/once", &[("once-token", &token)]).is_ok());
    assert_eq!(seens(&w), 1);
    const { assert!(attestgate::gate::store::MAX_RECORD_SECS > 365 * 86_400 + 60) };
}

#[test]
fn replay_jti_token_without_jti_is_refused_without_store_call() {
    let w = World::new();
    let token = w.idp_token(json!({ "scope": "once:use", "jti": null }));
    assert_eq!(
        w.run("GET", "/once", &[("once-token", &token)]),
        Err(Error::JtiMissing)
    );
    assert_no_store_calls(&w);
}

// ================================================================================================
// DPoP (RFC 9449).

struct Dpop<'a> {
    w: &'a World,
    key: Signer,
    token: String,
}

impl<'a> Dpop<'a> {
    fn new(w: &'a World, key: Signer) -> Self {
        let token = w.idp_token(json!({ "scope": "dpop:use", "cnf": { "jkt": key.thumbprint() } }));
        Dpop { w, key, token }
    }

    fn send(&self, method: &str, proof: &str) -> Result<Forward, Error> {
        let auth = format!("DPoP {}", self.token);
        self.w.run(
            method,
            "/dpop/resource",
            &[("authorization", &auth), ("dpop", proof)],
        )
    }

    fn proof(&self, extra: Value) -> String {
        proof(&self.key, &self.token, extra)
    }
}

fn dpop_happy_path(key: Signer) {
    let w = World::new();
    let d = Dpop::new(&w, key);
    let nonce = w.challenge();
    let p = d.proof(json!({ "nonce": nonce }));
    let fwd = d
        .send("GET", &p)
        .expect("a bound token with a fresh proof is allowed");
    assert_eq!(fwd.route_id, "dpop");
    // One nonce consumed, one proof jti recorded: both after every other check.
    assert_eq!((consumes(&w), seens(&w)), (1, 1));
}

#[test]
fn dpop_happy_path_es256_proof_key() {
    dpop_happy_path(Signer::es(0x31));
}

#[test]
fn dpop_happy_path_eddsa_proof_key() {
    dpop_happy_path(Signer::ed(0x32));
}

#[test]
fn dpop_htu_matches_after_normalisation() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let nonce = w.challenge();
    let p = d.proof(json!({
        "nonce": nonce,
        "htu": format!("HTTPS://API.EXAMPLE.COM:443/dpop/resource?x=1#frag"),
    }));
    assert!(d.send("GET", &p).is_ok());
}

#[test]
fn dpop_proof_without_nonce_is_use_dpop_nonce_without_store_call() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let p = d.proof(json!({}));
    assert_eq!(d.send("GET", &p), Err(Error::DpopNonceRequired));
    let wire = Error::DpopNonceRequired.wire("api.example.com");
    assert_eq!((wire.status, wire.code), (401, "use_dpop_nonce"));
    assert_eq!(wire.fresh_nonce, FreshNonce::Dpop);
    assert!(wire
        .www_authenticate
        .unwrap()
        .starts_with("DPoP realm=\"api.example.com\", error=\"use_dpop_nonce\""));
    assert_no_store_calls(&w);
}

#[test]
fn dpop_proof_with_forged_or_expired_nonce_is_use_dpop_nonce_without_store_call() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::ed(0x32));
    let expired = w.challenge_at(NOW - TTL - 1);
    for nonce in [json!("forged-nonce"), json!(expired), json!("A".repeat(56))] {
        let p = d.proof(json!({ "nonce": nonce }));
        assert_eq!(d.send("GET", &p), Err(Error::DpopNonceRequired));
    }
    assert_no_store_calls(&w);
}

#[test]
fn dpop_proof_replayed_is_refused() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let p = d.proof(json!({ "nonce": w.challenge() }));
    assert!(d.send("GET", &p).is_ok());
    // The same proof again: its nonce is spent.
    assert_eq!(d.send("GET", &p), Err(Error::DpopNonceRequired));
}

#[test]
fn dpop_proof_jti_reused_with_a_new_nonce_is_refused() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let p1 = d.proof(json!({ "nonce": w.challenge(), "jti": "same-jti" }));
    assert!(d.send("GET", &p1).is_ok());
    let p2 = d.proof(json!({ "nonce": w.challenge(), "jti": "same-jti" }));
    assert_eq!(d.send("GET", &p2), Err(Error::DpopProofInvalid));
    let wire = Error::DpopProofInvalid.wire("r");
    assert_eq!((wire.status, wire.code), (401, "invalid_dpop_proof"));
    assert_eq!(wire.fresh_nonce, FreshNonce::Dpop);
}

/// Every mismatch is `invalid_dpop_proof`, and none of them touches the store (the nonce in the
/// proof stays usable).
#[test]
fn dpop_mismatches_are_refused_without_store_call() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let nonce = w.challenge();
    let n = json!(nonce);
    let cases: Vec<(&str, String)> = vec![
        ("htm", d.proof(json!({ "nonce": n, "htm": "POST" }))),
        ("htm case", d.proof(json!({ "nonce": n, "htm": "get" }))),
        (
            "htu path",
            d.proof(json!({ "nonce": n, "htu": format!("https://{HOST}/dpop/other") })),
        ),
        (
            "htu host",
            d.proof(json!({ "nonce": n, "htu": "https://evil.example/dpop/resource" })),
        ),
        (
            "htu scheme",
            d.proof(json!({ "nonce": n, "htu": format!("http://{HOST}/dpop/resource") })),
        ),
        ("iat old", d.proof(json!({ "nonce": n, "iat": NOW - 61 }))),
        (
            "iat future",
            d.proof(json!({ "nonce": n, "iat": NOW + 61 })),
        ),
        ("iat missing", d.proof(json!({ "nonce": n, "iat": null }))),
        ("iat string", d.proof(json!({ "nonce": n, "iat": "now" }))),
        ("jti missing", d.proof(json!({ "nonce": n, "jti": null }))),
        ("jti empty", d.proof(json!({ "nonce": n, "jti": "" }))),
        (
            "ath other token",
            d.proof(json!({ "nonce": n, "ath": b64u(&Sha256::digest(b"other")) })),
        ),
        ("ath missing", d.proof(json!({ "nonce": n, "ath": null }))),
        ("nonce not a string", d.proof(json!({ "nonce": 7 }))),
        (
            "proof key not the one in cnf.jkt",
            proof(&Signer::es(0x99), &d.token, json!({ "nonce": n })),
        ),
        ("not a JWS", "not.a.proof".to_owned()),
    ];
    for (what, p) in &cases {
        assert_eq!(d.send("GET", p), Err(Error::DpopProofInvalid), "{what}");
    }
    // A proof signed by another key than the one in its own header.
    let good = d.proof(json!({ "nonce": n }));
    let other = proof(&Signer::es(0x99), &d.token, json!({ "nonce": n }));
    let parts: Vec<&str> = good.split('.').collect();
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.rsplit('.').next().unwrap()
    );
    assert_eq!(d.send("GET", &spliced), Err(Error::DpopProofInvalid));
    // A proof with the wrong typ.
    let claims = json!({
        "jti": "x", "htm": "GET", "htu": format!("https://{HOST}/dpop/resource"), "iat": NOW,
        "ath": b64u(&Sha256::digest(d.token.as_bytes())), "nonce": nonce,
    });
    let bad_typ = jws(
        &json!({"typ": "JWT", "alg": "ES256", "jwk": d.key.public_jwk()}),
        &claims,
        &d.key,
    );
    assert_eq!(d.send("GET", &bad_typ), Err(Error::DpopProofInvalid));
    assert_no_store_calls(&w);

    // The nonce was never consumed by any of those.
    assert!(d.send("GET", &good).is_ok());
}

#[test]
fn dpop_token_without_cnf_jkt_is_refused() {
    let w = World::new();
    let key = Signer::es(0x31);
    let token = w.idp_token(json!({ "scope": "dpop:use" }));
    let d = Dpop { w: &w, key, token };
    let p = d.proof(json!({ "nonce": w.challenge() }));
    assert_eq!(d.send("GET", &p), Err(Error::DpopProofInvalid));
    assert_no_store_calls(&w);
}

#[test]
fn dpop_proof_missing_is_invalid_dpop_proof() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let auth = format!("DPoP {}", d.token);
    assert_eq!(
        w.run("GET", "/dpop/resource", &[("authorization", &auth)]),
        Err(Error::DpopProofMissing)
    );
    assert_eq!(Error::DpopProofMissing.wire("r").code, "invalid_dpop_proof");
    assert_no_store_calls(&w);
}

#[test]
fn dpop_two_proof_headers_are_invalid_request() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let p = d.proof(json!({ "nonce": w.challenge() }));
    let auth = format!("DPoP {}", d.token);
    assert_eq!(
        w.run(
            "GET",
            "/dpop/resource",
            &[("authorization", &auth), ("dpop", &p), ("dpop", &p)]
        ),
        Err(Error::DuplicateCredential)
    );
    assert_no_store_calls(&w);
}

#[test]
fn dpop_bound_token_with_bearer_scheme_is_a_dpop_challenge() {
    // RFC 9449 §7.1: 401 invalid_dpop_proof (DPoP challenge, fresh nonce), not 400.
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let p = d.proof(json!({ "nonce": w.challenge() }));
    let auth = format!("Bearer {}", d.token);
    let got = w.run(
        "GET",
        "/dpop/resource",
        &[("authorization", &auth), ("dpop", &p)],
    );
    assert_eq!(got, Err(Error::DpopProofMissing));
    let wire = Error::DpopProofMissing.wire("r");
    assert_eq!((wire.status, wire.code), (401, "invalid_dpop_proof"));
    assert!(wire.www_authenticate.unwrap().starts_with("DPoP "));
    assert_no_store_calls(&w);
    // Any other wrong scheme stays a malformed request.
    let auth = format!("Basic {}", d.token);
    assert_eq!(
        w.run(
            "GET",
            "/dpop/resource",
            &[("authorization", &auth), ("dpop", &p)]
        ),
        Err(Error::MalformedCredential)
    );
}

#[test]
fn dpop_failing_route_check_never_consumes_the_nonce() {
    let w = World::new();
    let key = Signer::es(0x31);
    let token = w.idp_token(json!({ "scope": "nothing", "cnf": { "jkt": key.thumbprint() } }));
    let d = Dpop { w: &w, key, token };
    let p = d.proof(json!({ "nonce": w.challenge() }));
    assert_eq!(d.send("GET", &p), Err(Error::Denied(Denial::ScopeMissing)));
    assert_no_store_calls(&w);
}

#[test]
fn dpop_store_unreachable_is_503() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::ed(0x32));
    let p = d.proof(json!({ "nonce": w.challenge() }));
    w.replay.unreachable.set(true);
    assert_eq!(d.send("GET", &p), Err(Error::NonceStoreUnavailable));
    w.replay.unreachable.set(false);
    w.replay.clear_calls();
    assert!(d.send("GET", &p).is_ok());
}

// ================================================================================================
// Token binding (`pay`, Approov style).

fn pay_std(value: &str) -> String {
    Base64::encode_string(&Sha256::digest(value.as_bytes()))
}

fn pay_url(value: &str) -> String {
    Base64Url::encode_string(&Sha256::digest(value.as_bytes()))
}

fn pay_url_unpadded(value: &str) -> String {
    Base64UrlUnpadded::encode_string(&Sha256::digest(value.as_bytes()))
}

#[test]
fn pay_binding_matching_authorization_is_allowed_in_every_encoding() {
    let w = World::new();
    let agent = w.idp_token(json!({}));
    let auth = format!("Bearer {agent}");
    for pay in [pay_std(&auth), pay_url(&auth), pay_url_unpadded(&auth)] {
        let device = w.approov_token(json!({ "pay": pay }));
        let fwd = w
            .run(
                "POST",
                "/approov/orders",
                &[("approov-token", &device), ("authorization", &auth)],
            )
            .unwrap_or_else(|e| panic!("pay {pay}: {e:?}"));
        assert_eq!(fwd.route_id, "approov");
        assert!(fwd
            .plan
            .set
            .iter()
            .any(|(n, v)| n == "x-verified-device" && v == "device-7"));
    }
    assert_no_store_calls(&w);
}

#[test]
fn pay_binding_mismatch_is_refused() {
    let w = World::new();
    let agent = w.idp_token(json!({}));
    let auth = format!("Bearer {agent}");
    let other = w.idp_token(json!({}));
    let cases = [
        json!({ "pay": pay_std(&format!("Bearer {other}")) }),
        // The hash of the token alone, not of the header value.
        json!({ "pay": pay_std(&agent) }),
        json!({ "pay": "" }),
        json!({ "pay": 42 }),
        json!({}),
    ];
    for claims in cases {
        let device = w.approov_token(claims.clone());
        assert_eq!(
            w.run(
                "POST",
                "/approov/orders",
                &[("approov-token", &device), ("authorization", &auth)],
            ),
            Err(Error::BindingMismatch),
            "{claims}"
        );
    }
    let wire = Error::BindingMismatch.wire("r");
    assert_eq!((wire.status, wire.code), (401, "invalid_token"));
}

#[test]
fn approov_token_with_wrong_secret_is_bad_signature() {
    let w = World::new();
    let agent = w.idp_token(json!({}));
    let auth = format!("Bearer {agent}");
    let forged = jws(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &json!({"did": "device-7", "exp": NOW + 300, "pay": pay_std(&auth)}),
        &Signer::Hs(vec![0x11; 32]),
    );
    assert_eq!(
        w.run(
            "POST",
            "/approov/orders",
            &[("approov-token", &forged), ("authorization", &auth)],
        ),
        Err(Error::Token(jose::Error::BadSignature))
    );
}

// ================================================================================================
// Sender-constrained tokens (`cnf`) on a provider without `proof = "dpop"` (RFC 9449 §7.2).

#[test]
fn cnf_bound_token_on_a_bearer_provider_is_refused() {
    let w = World::new();
    let jkt = Signer::es(0x31).thumbprint();
    for cnf in [
        json!({ "jkt": jkt }),
        json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" }),
        json!({}),
    ] {
        let token = w.idp_token(json!({ "cnf": cnf }));
        let auth = format!("Bearer {token}");
        assert_eq!(
            w.run("GET", "/agent", &[("authorization", &auth)]),
            Err(Error::SenderConstrained),
            "{cnf}"
        );
    }
    // On a `replay = "jti"` provider too, before its jti is recorded.
    let token = w.idp_token(json!({ "scope": "once:use", "cnf": { "jkt": jkt } }));
    assert_eq!(
        w.run("GET", "/once", &[("once-token", &token)]),
        Err(Error::SenderConstrained)
    );
    assert_no_store_calls(&w);
    // Without cnf the same provider accepts it.
    let token = w.idp_token(json!({}));
    let auth = format!("Bearer {token}");
    assert!(w.run("GET", "/agent", &[("authorization", &auth)]).is_ok());
    let wire = Error::SenderConstrained.wire("api.example.com");
    assert_eq!((wire.status, wire.code), (401, "invalid_token"));
    assert_eq!(
        Error::SenderConstrained.reason(),
        "sender_constrained_token"
    );
}

#[test]
fn mixed_route_takes_bearer_and_dpop_and_refuses_a_bound_token_as_bearer() {
    let w = World::new();
    let bearer = format!("Bearer {}", w.idp_token(json!({})));
    let fwd = w
        .run("GET", "/mixed", &[("authorization", &bearer)])
        .expect("a Bearer token on the route that also takes DPoP");
    assert_eq!(fwd.route_id, "mixed");
    assert!(!fwd.dpop);

    let d = Dpop::new(&w, Signer::es(0x31));
    let htu = format!("https://{HOST}/mixed");
    let p = d.proof(json!({ "nonce": w.challenge(), "htu": htu }));
    let auth = format!("DPoP {}", d.token);
    let fwd = w
        .run("GET", "/mixed", &[("authorization", &auth), ("dpop", &p)])
        .expect("a DPoP token on the route that also takes Bearer");
    assert!(fwd.dpop);

    // The DPoP-bound token as a bearer token: the Bearer provider refuses it.
    w.replay.clear_calls();
    let auth = format!("Bearer {}", d.token);
    let p = d.proof(json!({ "nonce": w.challenge(), "htu": htu }));
    assert_eq!(
        w.run("GET", "/mixed", &[("authorization", &auth), ("dpop", &p)]),
        Err(Error::SenderConstrained)
    );
    assert_no_store_calls(&w);
    // Another scheme is neither provider's: a malformed credential, as before.
    let basic = format!("Basic {}", d.token);
    assert_eq!(
        w.run("GET", "/mixed", &[("authorization", &basic)]),
        Err(Error::MalformedCredential)
    );
}

// ================================================================================================
// Challenges (SPEC §4, RFC 6750 §3, RFC 9449 §7.1): the schemes of the route that refused.

const ALGS: &str = "ES256 EdDSA Ed25519";

/// The challenge of `route` for a request to `https://api.example.com`: each challenge names the
/// route's RFC 9728 metadata (issue 14 item 5).
fn www(w: &World, route: &str, e: Error) -> String {
    e.wire_at(w.gate.challenge(Some(route)), &format!("https://{HOST}"))
        .www_authenticate
        .expect("a challenge")
}

/// `, resource_metadata="https://api.example.com/.well-known/oauth-protected-resource<path>"`.
fn rm(resource: &str) -> String {
    format!(", resource_metadata=\"https://{HOST}/.well-known/oauth-protected-resource{resource}\"")
}

#[test]
fn missing_token_challenge_names_exactly_the_routes_schemes() {
    let w = World::new();
    let realm = "api.example.com";
    let bearer = |res: &str| format!("Bearer realm=\"{realm}\"{}", rm(res));
    let dpop = |res: &str| format!("DPoP realm=\"{realm}\", algs=\"{ALGS}\"{}", rm(res));
    assert_eq!(
        w.run("GET", "/dpop/resource", &[]),
        Err(Error::MissingToken)
    );
    assert_eq!(www(&w, "dpop", Error::MissingToken), dpop("/dpop/resource"));
    assert_eq!(www(&w, "agent", Error::MissingToken), bearer("/agent"));
    assert_eq!(
        www(&w, "mixed", Error::MissingToken),
        format!("{}, {}", bearer("/mixed"), dpop("/mixed"))
    );
    // Tokens in other headers only (attestation, once-token): a 401 still carries a challenge.
    // (`/attest/{op}` belongs to the resource `/attest`, its literal prefix.)
    assert_eq!(www(&w, "attest", Error::MissingToken), bearer("/attest"));
    assert_eq!(www(&w, "once", Error::MissingToken), bearer("/once"));
    // A device token (own header) plus a Bearer agent token.
    assert_eq!(
        www(&w, "approov", Error::MissingToken),
        bearer("/approov/orders")
    );
    // Outside any route: the gateway's Bearer challenge and its gateway-wide metadata.
    assert_eq!(
        Error::MissingToken
            .wire_at(w.gate.challenge(None), &format!("https://{HOST}"))
            .www_authenticate,
        Some(bearer(""))
    );
}

// ------------------------------------------------------------------------------------------------
// HMAC secrets with a kid, several per provider (issue 12 item 9).

fn hs_token(secret: &[u8], kid: Option<&str>) -> String {
    let mut header = json!({"alg": "HS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    jws(
        &header,
        &json!({"did": "device-9", "exp": NOW + 300}),
        &Signer::Hs(secret.to_vec()),
    )
}

#[test]
fn rotating_secrets_are_selected_by_kid() {
    let w = World::new();
    let run = |token: &str| {
        w.run("GET", "/rotating", &[("rotating-token", token)])
            .map(|f| f.route_id)
    };
    assert_eq!(
        run(&hs_token(&ROT_NEW, Some("k2"))),
        Ok("rotating".to_owned())
    );
    assert_eq!(
        run(&hs_token(&ROT_OLD, Some("k1"))),
        Ok("rotating".to_owned())
    );
    // the kid picks the key: another secret's signature under it does not verify
    assert_eq!(
        run(&hs_token(&ROT_NEW, Some("k1"))),
        Err(Error::Token(jose::Error::BadSignature))
    );
    assert_eq!(
        run(&hs_token(&ROT_NEW, Some("k3"))),
        Err(Error::Token(jose::Error::UnknownKey))
    );
    // two keys: the token must say which
    assert_eq!(
        run(&hs_token(&ROT_NEW, None)),
        Err(Error::Token(jose::Error::KidMissing))
    );
    assert_eq!(
        Error::Token(jose::Error::UnknownKey).wire("r").status,
        401,
        "an unknown kid is a bad token"
    );
}

#[test]
fn one_missing_secret_of_several_makes_the_provider_unavailable() {
    let w = World::new();
    let token = hs_token(&ROT_OLD, Some("k1"));
    let got = w.run("GET", "/half", &[("half-token", &token)]);
    assert_eq!(got, Err(Error::SecretUnavailable));
    assert_eq!(Error::SecretUnavailable.wire("r").status, 503);
}

#[test]
fn error_challenges_use_the_routes_schemes() {
    let w = World::new();
    let r = "realm=\"api.example.com\"";
    let dpop = rm("/dpop/resource");
    assert_eq!(
        www(&w, "dpop", Error::Token(jose::Error::BadSignature)),
        format!("DPoP {r}, error=\"invalid_token\", algs=\"{ALGS}\"{dpop}")
    );
    // insufficient_scope names the scopes the route needs (RFC 6750 §3; MCP step-up reads it).
    assert_eq!(
        www(&w, "dpop", Error::Denied(Denial::ScopeMissing)),
        format!(
            "DPoP {r}, error=\"insufficient_scope\", scope=\"dpop:use\", algs=\"{ALGS}\"{dpop}"
        )
    );
    assert_eq!(
        www(&w, "attest", Error::Denied(Denial::ClaimConstraint)),
        format!(
            "Bearer {r}, error=\"insufficient_scope\", scope=\"attest:use\"{}",
            rm("/attest")
        )
    );
    assert_eq!(
        www(&w, "agent", Error::Token(jose::Error::BadSignature)),
        format!("Bearer {r}, error=\"invalid_token\"{}", rm("/agent"))
    );
    let mixed = rm("/mixed");
    assert_eq!(
        www(&w, "mixed", Error::SenderConstrained),
        format!(
            "Bearer {r}, error=\"invalid_token\"{mixed}, DPoP {r}, error=\"invalid_token\", algs=\"{ALGS}\"{mixed}"
        )
    );
    assert_eq!(
        www(&w, "attest", Error::ChallengeUsed),
        format!(
            "Bearer {r}, error=\"use_attestation_challenge\"{}",
            rm("/attest")
        )
    );
    // Proof and nonce errors are only ever about DPoP.
    for (route, res) in [
        ("dpop", "/dpop/resource"),
        ("mixed", "/mixed"),
        ("agent", "/agent"),
    ] {
        assert_eq!(
            www(&w, route, Error::DpopNonceRequired),
            format!(
                "DPoP {r}, error=\"use_dpop_nonce\", algs=\"{ALGS}\"{}",
                rm(res)
            ),
            "{route}"
        );
    }
    // No challenge where SPEC §4 has none.
    for e in [
        Error::Route(Miss::NoRoute),
        Error::DuplicateCredential,
        Error::KeysUnavailable,
    ] {
        assert_eq!(
            e.wire_for(w.gate.challenge(Some("dpop"))).www_authenticate,
            None
        );
    }
}

/// The challenge lists `Ed25519`: a proof with that `alg` name is accepted, like `EdDSA`.
#[test]
fn dpop_proof_with_alg_ed25519_is_accepted() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::ed(0x32));
    for alg in ["Ed25519", "EdDSA"] {
        let claims = json!({
            "jti": format!("proof-{}", rand_hex()), "htm": "GET",
            "htu": format!("https://{HOST}/dpop/resource"), "iat": NOW,
            "ath": b64u(&Sha256::digest(d.token.as_bytes())), "nonce": w.challenge(),
        });
        let p = jws(
            &json!({"typ": "dpop+jwt", "alg": alg, "jwk": d.key.public_jwk()}),
            &claims,
            &d.key,
        );
        assert!(d.send("GET", &p).is_ok(), "{alg}");
    }
}

// ------------------------------------------------------------------------------------------------
// The verified-token cache (issue 19): only the signature check is ever skipped.

/// Counts signature checks, delegating to the pure-Rust verifier.
#[derive(Default)]
struct CountingVerifier(Cell<usize>);

impl attestgate::jose::SignatureVerifier for CountingVerifier {
    async fn verify(
        &self,
        key: &attestgate::jose::Key,
        input: &[u8],
        signature: &[u8],
    ) -> Result<(), jose::Error> {
        self.0.set(self.0.get() + 1);
        NativeVerifier.verify(key, input, signature).await
    }
}

/// The agent provider's keys, from a set the test can replace (a JWKS refresh, a rotation).
struct SwappableKeys(RefCell<Arc<KeySet>>);

impl KeySource for SwappableKeys {
    async fn keys(&self, _provider: &ProviderRt, _refresh: bool) -> Result<Arc<KeySet>, Error> {
        Ok(self.0.borrow().clone())
    }
}

fn agent_keys(signers: &[(&Signer, &str)]) -> Arc<KeySet> {
    let jwks =
        json!({ "keys": signers.iter().map(|(s, kid)| s.jwk_with_kid(kid)).collect::<Vec<_>>() });
    let (set, _) = KeySet::from_jwks(jwks.to_string().as_bytes(), &Default::default()).unwrap();
    Arc::new(set)
}

fn run_cached(
    w: &World,
    keys: &SwappableKeys,
    verifier: &CountingVerifier,
    now: i64,
    token: &str,
) -> Result<Forward, Error> {
    let headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
    let url = format!("https://{HOST}/agent");
    let parts = attestgate::gate::url::split(&url).expect("an absolute URL");
    let view = Request::new("GET", parts, &headers);
    let nonce_key = Some(&w.nonce_key);
    let env = Env {
        keys,
        verifier,
        replay: &w.replay,
        nonce_key: &nonce_key,
        random: &SystemRandom,
        challenges: &w.challenges,
        signing: &None::<&attestgate::gate::signing::GatewayKeys>,
        deny: &attestgate::gate::deny::NoDenyStore,
        now,
        now_ms: now * 1000,
    };
    block_on_ready(async {
        Ok::<_, Error>(Forward::of(
            &decide(&w.gate, &view, &env, "req-cache").await,
        ))
    })
    .expect("the fakes never wait")
}

#[test]
fn a_cached_token_skips_only_its_signature_and_one_flipped_byte_is_verified_afresh() {
    let w = World::new();
    let keys = SwappableKeys(RefCell::new(agent_keys(&[(&w.idp, "idp-1")])));
    let verifier = CountingVerifier::default();
    let token = w.idp_token(json!({}));
    for _ in 0..5 {
        assert!(run_cached(&w, &keys, &verifier, NOW, &token).is_ok());
    }
    assert_eq!(verifier.0.get(), 1, "one signature check for five uses");
    // One signature byte different: a different entry, verified, refused.
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut bytes = Base64UrlUnpadded::decode_vec(sig).unwrap();
    bytes[10] ^= 0x01;
    let flipped = format!("{head}.{}", Base64UrlUnpadded::encode_string(&bytes));
    assert_eq!(
        run_cached(&w, &keys, &verifier, NOW, &flipped),
        Err(Error::Token(jose::Error::BadSignature))
    );
    assert_eq!(verifier.0.get(), 2);
    // Every other check still runs on a hit: past its exp the cached token is expired.
    assert_eq!(
        run_cached(&w, &keys, &verifier, NOW + 300 + 61, &token),
        Err(Error::Token(jose::Error::Expired))
    );
}

// The phases around the authenticator: the request phase (the challenge endpoint, route
// lookup), the forward and response plans, and the decision record.

const CHALLENGE: &str = "/.well-known/attestgate/challenge";

fn answer_of(d: &Decision<'_>) -> attestgate::gate::phase::Answer {
    match &d.response {
        ResponsePlan::Own(a) => a.clone(),
        other => panic!("not the gateway's own answer: {other:?}"),
    }
}

fn header<'a>(a: &'a attestgate::gate::phase::Answer, name: &str) -> Option<&'a str> {
    a.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn challenge_endpoint_issues_a_nonce_without_a_route_or_a_store_call() {
    let w = World::new();
    let (answer, verdict, line) = w.decide("POST", CHALLENGE, &[], Some(&w.nonce_key), |d| {
        (answer_of(d), d.verdict(), d.log_line())
    });
    assert_eq!(verdict, Verdict::Challenge);
    assert_eq!(answer.status, 200);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["expires_in"], TTL);
    let nonce = body["nonce"].as_str().unwrap();
    assert_eq!(header(&answer, "dpop-nonce"), Some(nonce));
    assert!(nonce::verify(&w.nonce_key, SHARDS, nonce, NOW, TTL, 60).is_ok());
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&line["route"], &line["verdict"], &line["status"]),
        (&json!("challenge"), &json!("challenge"), &json!(200))
    );
    assert_no_store_calls(&w);
}

#[test]
fn challenge_endpoint_takes_post_only_and_needs_the_nonce_key() {
    let w = World::new();
    for method in ["GET", "PUT", "post"] {
        let (e, answer, route) = w.decide(method, CHALLENGE, &[], Some(&w.nonce_key), |d| {
            (d.error(), answer_of(d), d.route.map(str::to_owned))
        });
        assert!(
            matches!(e, Some(Error::Route(Miss::MethodNotAllowed(_)))),
            "{method}: {e:?}"
        );
        assert_eq!(
            (answer.status, header(&answer, "allow")),
            (405, Some("POST"))
        );
        assert_eq!(route.as_deref(), Some("challenge"));
    }
    let (e, answer) = w.decide("POST", CHALLENGE, &[], None, |d| (d.error(), answer_of(d)));
    assert_eq!(e, Some(Error::SecretUnavailable));
    assert_eq!(
        (answer.status, header(&answer, "retry-after")),
        (503, Some("5"))
    );
}

#[test]
fn challenge_endpoint_is_rate_limited_per_client_address() {
    let w = World::new();
    let from = |ip: &str| {
        w.decide(
            "POST",
            CHALLENGE,
            &[("cf-connecting-ip", ip)],
            Some(&w.nonce_key),
            |d| (d.error(), answer_of(d)),
        )
    };
    for _ in 0..attestgate::gate::rate_limit::CHALLENGE_LIMIT.burst {
        assert_eq!(from("203.0.113.9").0, None);
    }
    let (e, answer) = from("203.0.113.9");
    assert_eq!(e, Some(Error::RateLimited));
    assert_eq!(
        (answer.status, header(&answer, "retry-after")),
        (429, Some("1"))
    );
    // Another address has its own bucket.
    assert_eq!(from("198.51.100.1").0, None);
}

#[test]
fn route_lookup_refusals_come_from_the_matcher() {
    let w = World::new();
    let refusal = |method: &str, path: &str| {
        w.decide(method, path, &[], Some(&w.nonce_key), |d| {
            (d.error(), d.route.is_none(), answer_of(d).status)
        })
    };
    assert_eq!(
        refusal("GET", "/nowhere"),
        (Some(Error::Route(Miss::NoRoute)), true, 404)
    );
    assert_eq!(
        refusal("GET", "/agent//x"),
        (
            Some(Error::Route(Miss::Unnormalised(
                attestgate::policy::PathProblem::EmptySegment
            ))),
            true,
            400
        )
    );
    let (e, none, status) = refusal("GET", "/attest/x");
    assert!(matches!(e, Some(Error::Route(Miss::MethodNotAllowed(_)))) && none && status == 405);
}

#[test]
fn an_allowed_request_goes_to_the_routes_origin_with_its_path_and_query() {
    let w = World::new();
    let token = w.idp_token(json!({}));
    let auth = format!("Bearer {token}");
    let (target, deleted, verdict, status) = w.decide(
        "GET",
        "/agent?x=1&y=%2F",
        &[("authorization", &auth), ("cf-connecting-ip", "192.0.2.1")],
        Some(&w.nonce_key),
        |d| {
            let plan = d.forward().expect("allowed");
            let deleted: Vec<String> = plan
                .headers
                .deletes(["authorization", "dpop", "accept", "x_verified_route"])
                .map(str::to_owned)
                .collect();
            assert!(plan
                .headers
                .sets()
                .any(|s| s == ("x-forwarded-for", "192.0.2.1")));
            (plan.target.clone(), deleted, d.verdict(), d.status)
        },
    );
    assert_eq!(target, "https://origin.example/agent?x=1&y=%2F");
    // The Bearer provider consumed `authorization`; no DPoP family consumed `dpop`.
    assert_eq!(deleted, ["authorization", "x_verified_route"]);
    assert_eq!((verdict, status), (Verdict::Allow, None));
}

#[test]
fn only_a_dpop_request_gets_the_next_nonce_on_the_origins_response() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let p = d.proof(json!({ "nonce": w.challenge() }));
    let auth = format!("DPoP {}", d.token);
    let headers = w.decide(
        "GET",
        "/dpop/resource",
        &[("authorization", &auth), ("dpop", &p)],
        Some(&w.nonce_key),
        |d| match &d.response {
            ResponsePlan::Origin { headers, .. } => headers.clone(),
            other => panic!("{other:?}"),
        },
    );
    let [("dpop-nonce", next)] = headers.as_slice() else {
        panic!("{headers:?}");
    };
    assert!(nonce::verify(&w.nonce_key, SHARDS, next, NOW, TTL, 60).is_ok());
    let token = w.idp_token(json!({}));
    let auth = format!("Bearer {token}");
    let plain = w.decide("GET", "/agent", &[("authorization", &auth)], None, |d| {
        d.response.clone()
    });
    assert_eq!(plain, ResponsePlan::origin(None));
}

#[test]
fn a_refusal_is_answered_with_the_routes_challenge_and_a_fresh_nonce_where_asked() {
    let w = World::new();
    let d = Dpop::new(&w, Signer::es(0x31));
    let p = d.proof(json!({}));
    let auth = format!("DPoP {}", d.token);
    let answer = w.decide(
        "GET",
        "/dpop/resource",
        &[("authorization", &auth), ("dpop", &p)],
        Some(&w.nonce_key),
        answer_of,
    );
    assert_eq!(answer.status, 401);
    assert!(header(&answer, "www-authenticate").is_some_and(|v| v.starts_with("DPoP ")));
    let fresh = header(&answer, "dpop-nonce").expect("a fresh nonce");
    assert!(nonce::verify(&w.nonce_key, SHARDS, fresh, NOW, TTL, 60).is_ok());
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        (&body["error"], &body["request_id"]),
        (&json!("use_dpop_nonce"), &json!("req-test"))
    );
}

#[test]
fn the_record_names_a_token_refused_by_its_binding_and_its_provider() {
    let w = World::new();
    let token = w.approov_token(json!({ "pay": pay_std("Bearer other") }));
    let agent = w.idp_token(json!({}));
    let auth = format!("Bearer {agent}");
    let (e, line, providers) = w.decide(
        "POST",
        "/approov/orders",
        &[("approov-token", &token), ("authorization", &auth)],
        Some(&w.nonce_key),
        |d| {
            let providers: Vec<String> = d.principal.providers().map(str::to_owned).collect();
            (d.error(), d.log_line(), providers)
        },
    );
    assert_eq!(e, Some(Error::BindingMismatch));
    // The device token verified, then its binding failed: it is in the principal and the
    // record, and the record names the provider.
    assert_eq!(providers, ["device"]);
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["provider"], "device");
    assert_eq!(line["device"], "device-7");
    assert_eq!(line["reason"], "binding_mismatch");
    assert_eq!(line["verdict"], "deny");
    assert_eq!(line["status"], 401);
}

#[test]
fn decision_sinks_take_each_decision() {
    use attestgate::gate::phase::record::LogLines;
    use attestgate::gate::phase::DecisionSink;
    let w = World::new();
    let mut lines = LogLines::default();
    let mut both = (&mut lines, LogLines::default());
    w.decide("GET", "/nowhere", &[], None, |d| both.record(d));
    let second = both.1 .0.clone();
    assert_eq!(lines.0.len(), 1);
    assert_eq!(lines.0, second);
    assert!(
        lines.0[0].contains("\"reason\":\"no_route\""),
        "{:?}",
        lines.0
    );
}

#[test]
fn a_new_key_set_drops_what_the_old_one_verified() {
    let w = World::new();
    let keys = SwappableKeys(RefCell::new(agent_keys(&[(&w.idp, "idp-1")])));
    let verifier = CountingVerifier::default();
    let token = w.idp_token(json!({}));
    assert!(run_cached(&w, &keys, &verifier, NOW, &token).is_ok());
    assert!(run_cached(&w, &keys, &verifier, NOW, &token).is_ok());
    assert_eq!(verifier.0.get(), 1);
    // A refetched JWKS (a new set, same key): verified again, then cached again.
    *keys.0.borrow_mut() = agent_keys(&[(&w.idp, "idp-1")]);
    assert!(run_cached(&w, &keys, &verifier, NOW, &token).is_ok());
    assert!(run_cached(&w, &keys, &verifier, NOW, &token).is_ok());
    assert_eq!(verifier.0.get(), 2);
    // The key removed from the JWKS: the cached token is refused, not served from the cache.
    let other = Signer::es(0x5a);
    *keys.0.borrow_mut() = agent_keys(&[(&other, "idp-2")]);
    assert_eq!(
        run_cached(&w, &keys, &verifier, NOW, &token),
        Err(Error::Token(jose::Error::UnknownKey))
    );
    // The same kid now bound to another key: the signature is checked, and fails.
    *keys.0.borrow_mut() = agent_keys(&[(&other, "idp-1")]);
    assert_eq!(
        run_cached(&w, &keys, &verifier, NOW, &token),
        Err(Error::Token(jose::Error::BadSignature))
    );
}

#[test]
fn sampled_allow_lines_carry_the_rate_and_refusals_are_always_written() {
    use attestgate::gate::phase::record::LogSampling;
    let w = World::new();
    let token = w.idp_token(json!({ "scope": "once:use" }));
    let mut sampling = LogSampling::new(3);
    let lines: Vec<Option<String>> = (0..6)
        .map(|_| {
            let token = w.idp_token(json!({ "scope": "once:use" }));
            w.decide(
                "GET",
                "/once",
                &[("once-token", &token)],
                Some(&w.nonce_key),
                |d| {
                    assert_eq!(d.verdict(), Verdict::Allow);
                    d.sampled_log_line(&mut sampling)
                },
            )
        })
        .collect();
    let written: Vec<&String> = lines.iter().flatten().collect();
    assert_eq!(written.len(), 2, "{lines:?}");
    assert!(lines[0].is_some() && lines[3].is_some());
    for line in written {
        assert!(
            line.contains("\"verdict\":\"allow\"") && line.contains("\"sample\":3"),
            "{line}"
        );
    }
    // A refusal in between is written, without a sample field, and does not move the count.
    w.run("GET", "/once", &[("once-token", &token)])
        .expect("first use");
    let refused = w.decide(
        "GET",
        "/once",
        &[("once-token", &token)],
        Some(&w.nonce_key),
        |d| {
            assert_eq!(d.verdict(), Verdict::Deny);
            d.sampled_log_line(&mut sampling)
        },
    );
    let refused = refused.expect("refusals are always written");
    assert!(
        refused.contains("replayed_token") && !refused.contains("\"sample\""),
        "{refused}"
    );
    let next = w.idp_token(json!({ "scope": "once:use" }));
    let next = w.decide(
        "GET",
        "/once",
        &[("once-token", &next)],
        Some(&w.nonce_key),
        |d| d.sampled_log_line(&mut sampling),
    );
    assert!(
        next.is_some(),
        "the 7th allowed decision is the 3rd written"
    );
}
