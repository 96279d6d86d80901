//! The workload of the CPU regression gate (`scripts/insn-gate.sh`, issue 19): one full decision
//! of the core, a fixed number of times, for instruction counting under
//! `valgrind --tool=callgrind` (deterministic, unlike a clock). Not a timing benchmark.
//!
//! ```text
//! cargo bench --bench insns -- <ES256|EdDSA|HS256> <iterations>
//! ```
//!
//! One decision is what the Worker does for a verified request before forwarding: split the
//! request URL, `gate::phase::decide` (route lookup, credential extraction, JWS parse, key
//! selection, signature, claims, scopes, the forwarded-claims plan, the forward plan with its
//! target URL) and serialise the decision's log line. The seams are fakes with no cost of their own: keys from the
//! policy's inline JWKS or a fixed HMAC secret, a replay guard the route never calls, the
//! pure-Rust verifier, a fixed clock. The policy is compiled from the fixed TOML below; the tokens
//! and keys are fixtures minted once by joserfc (`benches/insns/mint.py`).
//!
//! Every run first makes one warm-up decision (checked: it must allow, with the expected plan) so
//! that one-time work (P-256 tables, lazy statics) falls outside the measured iterations; the gate
//! counts a run with N iterations and a run with 0 and divides the difference by N.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use attestgate::gate::nonce::{NonceKey, NonceRef};
use attestgate::gate::phase::{decide, Decision, Env, Outcome, Request};
use attestgate::gate::rate_limit::RateLimiter;
use attestgate::gate::seams::{KeySource, ReplayGuard, SystemRandom};
use attestgate::gate::{url, Gate, KeySpec, ProviderRt};
use attestgate::jose::{b64, block_on_ready, KeySet, NativeVerifier};
use attestgate::policy::{compile, parse_toml};
use attestgate::Error;
use serde_json::Value;

/// The fixed clock: the fixtures are valid at this instant only (`benches/insns/mint.py`).
const NOW: i64 = 1_700_000_000;
const JWKS: &str = include_str!("insns/jwks.json");
const TOKENS: &str = include_str!("insns/tokens.json");
const SECRET_NAME: &str = "INSN_HS256_SECRET";

/// The checks of the issue 5/7 benchmark policy (`benches/policies/`), plus an HS256 device
/// provider, among a few other routes so that the route trie has some shape.
const POLICY: &str = r#"
[gateway]
origin = "https://origin.example.com"
realm = "insns.attestgate.test"
clock_skew_secs = 60

[provider.agent]
issuer = "https://issuer.example"
audiences = ["https://api.example.com"]
algorithms = ["ES256", "EdDSA"]
token_types = ["at+jwt"]
from = { header = "authorization", scheme = "Bearer" }
jwks = '{JWKS}'
max_lifetime_secs = 3600
required_claims = ["sub", "jti"]

[provider.device]
issuer = "https://device.example"
audiences = ["https://api.example.com"]
algorithms = ["HS256"]
secret = "INSN_HS256_SECRET"
from = { header = "authorization", scheme = "Bearer" }
max_lifetime_secs = 3600
required_claims = ["sub", "did"]

[[route]]
id = "orders-read"
methods = ["GET"]
path = "/v1/orders/{id}"
require = { all = ["agent"] }
scopes = ["orders:read"]
forward = { "x-verified-user" = "agent.sub", "x-verified-agent" = "agent.act.sub" }

[[route]]
id = "order-items"
methods = ["GET"]
path = "/v1/orders/{id}/items/**"
require = { all = ["agent"] }
scopes = ["orders:read"]

[[route]]
id = "orders-write"
methods = ["POST", "PUT"]
path = "/v1/orders/{id}"
require = { all = ["agent"] }
scopes = ["orders:write"]

[[route]]
id = "devices-read"
methods = ["GET"]
path = "/v1/devices/{id}"
require = { all = ["device"] }
scopes = ["orders:read"]
forward = { "x-verified-device" = "device.did" }

[[route]]
id = "health"
methods = ["GET"]
path = "/healthz"
public = true
"#;

/// Keys from the compiled policy's inline JWKS, or the one HMAC secret.
struct Keys {
    secrets: HashMap<String, Arc<KeySet>>,
}

impl KeySource for Keys {
    async fn keys(&self, provider: &ProviderRt, _refresh: bool) -> Result<Arc<KeySet>, Error> {
        match &provider.keys {
            KeySpec::Inline(set) => Ok(set.clone()),
            KeySpec::Secret(list) => list
                .first()
                .and_then(|secret| self.secrets.get(&secret.name))
                .cloned()
                .ok_or(Error::SecretUnavailable),
            KeySpec::Jwks { .. } => Err(Error::KeysUnavailable),
        }
    }
}

/// The fixture routes check no nonce and no `jti`: a call here is a bug in the workload.
struct NoReplay;

impl ReplayGuard for NoReplay {
    async fn consume(&self, _nonce: &NonceRef, _now: i64) -> Result<bool, Error> {
        Err(Error::NonceStoreUnavailable)
    }
    async fn first_seen(&self, _: u8, _: &str, _: i64, _: i64) -> Result<bool, Error> {
        Err(Error::NonceStoreUnavailable)
    }
}

struct Workload {
    gate: Gate,
    keys: Keys,
    challenges: RefCell<RateLimiter>,
    url: &'static str,
    headers: Vec<(String, String)>,
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("insns: {message}");
    std::process::exit(2)
}

fn setup(case: &str) -> Workload {
    let fixtures: Value = serde_json::from_str(TOKENS).unwrap_or_else(|e| fail(e));
    if fixtures["now"].as_i64() != Some(NOW) {
        fail("benches/insns/tokens.json was minted for another clock");
    }
    let token = fixtures["tokens"][case]
        .as_str()
        .unwrap_or_else(|| fail(format!("no fixture token {case:?} (ES256, EdDSA or HS256)")));
    let secret = fixtures["hs256_secret"]
        .as_str()
        .and_then(|s| b64::decode(s).ok())
        .unwrap_or_else(|| fail("no hs256_secret in the fixtures"));
    let jwks: Value = serde_json::from_str(JWKS).unwrap_or_else(|e| fail(e));
    let text = POLICY.replace("{JWKS}", &jwks.to_string());
    let file = parse_toml("insns.toml", &text).unwrap_or_else(|e| fail(e));
    let policy = compile(vec![file]).unwrap_or_else(|e| fail(format!("{e:?}")));
    let gate = Gate::new(policy).unwrap_or_else(|e| fail(format!("{e:?}")));
    let hs = KeySet::from_hmac_secret(&secret, None).unwrap_or_else(|e| fail(format!("{e:?}")));
    let url = if case == "HS256" {
        "https://api.example.com/v1/devices/42?view=full"
    } else {
        "https://api.example.com/v1/orders/42?view=full"
    };
    let headers = [
        ("host", "api.example.com"),
        ("user-agent", "insns/1.0"),
        ("accept", "application/json"),
        ("x-verified-user", "spoofed"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .chain([("authorization".to_owned(), format!("Bearer {token}"))])
    .collect();
    Workload {
        gate,
        keys: Keys {
            secrets: HashMap::from([(SECRET_NAME.to_owned(), Arc::new(hs))]),
        },
        challenges: RefCell::new(RateLimiter::for_challenges()),
        url,
        headers,
    }
}

/// What the warm-up checks of one decision: the route, one planned header, the log line.
struct Checked {
    route: String,
    header: Option<String>,
    line: String,
}

/// One decision, as the Worker makes it, reduced to what `keep` takes of it (the log line is
/// always made).
fn decision<T>(w: &Workload, keep: impl FnOnce(&Decision<'_>, String) -> T) -> Result<T, Error> {
    // A full decision every time: the same fixture token must not hit the verified-token cache
    // (issue 19), whose own cost (a SHA-256 of the token and an insert) stays in the count.
    w.gate.token_cache().clear();
    let Some(parts) = url::split(w.url) else {
        return Err(Error::Route(attestgate::policy::Miss::NoRoute));
    };
    let req = Request::new("GET", parts, w.headers.as_slice());
    let no_nonce_key: Option<&NonceKey> = None;
    let env = Env {
        keys: &w.keys,
        verifier: &NativeVerifier,
        replay: &NoReplay,
        nonce_key: &no_nonce_key,
        random: &SystemRandom,
        challenges: &w.challenges,
        signing: &None::<&attestgate::gate::signing::GatewayKeys>,
        now: NOW,
        now_ms: NOW * 1000,
    };
    block_on_ready(async {
        let d = decide(&w.gate, &req, &env, "insn-request").await;
        let line = d.log_line();
        Ok(keep(&d, line))
    })
}

fn main() {
    // `cargo bench` passes `--bench` first; the gate calls the binary with the case and count.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (case, iterations) = match args.as_slice() {
        [case, n] => (case.as_str(), n.parse::<u64>().unwrap_or_else(|e| fail(e))),
        [case] => (case.as_str(), 1000),
        _ => fail("usage: insns <ES256|EdDSA|HS256> <iterations>"),
    };
    let w = setup(case);

    // Warm-up, checked: the workload must be the allow path it claims to be.
    let expected_header = if case == "HS256" {
        ("x-verified-device", "device:42")
    } else {
        ("x-verified-user", "user:alice")
    };
    let checked = decision(&w, |d, line| match &d.outcome {
        Outcome::Forward(plan) => Ok(Checked {
            route: plan.route_id().to_owned(),
            header: plan
                .headers
                .claims()
                .value(expected_header.0)
                .map(str::to_owned),
            line,
        }),
        _ => Err(line),
    })
    .unwrap_or_else(|e| fail(format!("{case}: {e:?}")))
    .unwrap_or_else(|line| fail(format!("{case}: refused: {line}")));
    if checked.header.as_deref() != Some(expected_header.1)
        || !checked.line.contains("\"verdict\":\"allow\"")
    {
        fail(format!(
            "{case}: unexpected decision {:?} {}",
            checked.header, checked.line
        ));
    }

    for _ in 0..iterations {
        let _ = black_box(decision(black_box(&w), |d, line| {
            black_box(d);
            line
        }));
    }
    println!(
        "insns: {case}: 1 warm-up + {iterations} decisions (route {})",
        checked.route
    );
}
