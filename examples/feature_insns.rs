//! Issues 14 and 16: the native instruction cost of a decision with the deny check from a fresh
//! isolate view, or with a static injected credential, against the same decision on a route
//! without it. A plain program for `valgrind --tool=callgrind` (the method of
//! `scripts/insn-gate.sh`: a run with N decisions and one with 0, the difference over N).
//!
//! ```text
//! cargo build --profile bench --example feature_insns
//! .venv/bin/python benches/insns/mint_unique.py /tmp/unique.json      # 64 tokens, joserfc
//! valgrind --tool=callgrind target/release/examples/feature_insns <base|deny|inject|base-nf|deny-nf> <N> [/tmp/unique.json]
//! ```
//!
//! The token is the HS256 fixture of the insn gate (`benches/insns/tokens.json`, minted by
//! joserfc): `iss`, `sub`, `jti`, `did` and a two-level `act` chain, six deny keys; with a
//! tokens file, tokens of the same claims each with its own `jti` (the first half warms up,
//! the counted decisions take the others: tokens the isolate has not seen). The view is filled
//! during the warm-up (the store answers an empty shard) and the clock does not move, so every
//! counted deny check is answered from the fresh view; a store call during the count stops the
//! program. docs/performance.md, "Deny check and injection: where the time went".

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::sync::Arc;

use attestgate::gate::deny::view::{Clock, DenyStore, Refresh, View, ViewSource};
use attestgate::gate::deny::{Hit, Pending};
use attestgate::gate::nonce::{NonceKey, NonceRef};
use attestgate::gate::phase::{decide, Env, Outcome, Request};
use attestgate::gate::rate_limit::RateLimiter;
use attestgate::gate::seams::{KeySource, ReplayGuard, SystemRandom};
use attestgate::gate::{url, Gate, KeySpec, ProviderRt};
use attestgate::jose::{b64, block_on_ready, KeySet, NativeVerifier};
use attestgate::policy::{compile, parse_toml};
use attestgate::Error;
use serde_json::Value;

const NOW: i64 = 1_700_000_000;
const TOKENS: &str = include_str!("../benches/insns/tokens.json");

const POLICY: &str = r#"
[gateway]
origin = "https://origin.example.com"
realm = "insns.attestgate.test"
clock_skew_secs = 60

[deny]
default_check = "off"

[provider.device]
issuer = "https://device.example"
audiences = ["https://api.example.com"]
algorithms = ["HS256"]
secret = "INSN_HS256_SECRET"
from = { header = "authorization", scheme = "Bearer" }
max_lifetime_secs = 3600
required_claims = ["sub", "did"]

[upstreams.inj]
url = "https://upstream.example.com"
auth = { kind = "static", secret = "INJ_KEY" }

[[route]]
id = "base"
methods = ["GET"]
path = "/v1/base/{id}"
require = { all = ["device"] }
forward = { "x-verified-device" = "device.did" }

[[route]]
id = "deny"
methods = ["GET"]
path = "/v1/deny/{id}"
require = { all = ["device"] }
forward = { "x-verified-device" = "device.did" }
deny_check = "cached"

# The same two without forwarded claims.
[[route]]
id = "base-nf"
methods = ["GET"]
path = "/v1/base-nf/{id}"
require = { all = ["device"] }

[[route]]
id = "deny-nf"
methods = ["GET"]
path = "/v1/deny-nf/{id}"
require = { all = ["device"] }
deny_check = "cached"

[[route]]
id = "inject"
methods = ["GET"]
path = "/v1/inject/{id}"
upstream = "inj"
require = { all = ["device"] }
forward = { "x-verified-device" = "device.did" }
"#;

struct Keys(Arc<KeySet>);

impl KeySource for Keys {
    async fn keys(&self, provider: &ProviderRt, _refresh: bool) -> Result<Arc<KeySet>, Error> {
        match &provider.keys {
            KeySpec::Secret(_) => Ok(self.0.clone()),
            _ => Err(Error::KeysUnavailable),
        }
    }
}

struct NoReplay;

impl ReplayGuard for NoReplay {
    async fn consume(&self, _: &NonceRef, _: i64) -> Result<bool, Error> {
        Err(Error::NonceStoreUnavailable)
    }
    async fn first_seen(&self, _: u8, _: &str, _: i64, _: i64) -> Result<bool, Error> {
        Err(Error::NonceStoreUnavailable)
    }
}

/// An empty deny store that counts its calls.
#[derive(Default)]
struct EmptyStore {
    calls: Cell<u32>,
}

impl DenyStore for EmptyStore {
    fn snapshot<'a>(&'a self, _: u8, _: Option<&'a str>) -> Pending<'a, Result<Refresh, Error>> {
        self.calls.set(self.calls.get() + 1);
        Box::pin(async {
            Ok(Refresh::Full {
                version: "v1".into(),
                complete: true,
                entries: Vec::new(),
            })
        })
    }
    fn lookup<'a>(&'a self, _: u8, _: &'a [String]) -> Pending<'a, Result<Vec<Hit>, Error>> {
        self.calls.set(self.calls.get() + 1);
        Box::pin(async { Ok(Vec::new()) })
    }
}

struct Fixed;
impl Clock for Fixed {
    fn now_ms(&self) -> i64 {
        NOW * 1000
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, n, unique) = match args.as_slice() {
        [m, n] => (m.clone(), n.parse::<u64>().expect("count"), None),
        [m, n, file] => (
            m.clone(),
            n.parse::<u64>().expect("count"),
            Some(file.clone()),
        ),
        _ => panic!("usage: feature_insns <base|deny|inject|base-nf|deny-nf> <N> [tokens.json]"),
    };
    let fixtures: Value = serde_json::from_str(TOKENS).expect("fixtures");
    // Unique tokens (a JSON list of HS256 tokens of the fixture's claims, each with its own
    // `jti`, minted by joserfc), or the fixture token every time.
    let tokens: Vec<String> = match unique {
        Some(file) => serde_json::from_str(&std::fs::read_to_string(file).expect("tokens"))
            .expect("a list of tokens"),
        None => vec![fixtures["tokens"]["HS256"]
            .as_str()
            .expect("token")
            .to_owned()],
    };
    let secret = b64::decode(fixtures["hs256_secret"].as_str().expect("secret")).expect("b64");
    let file = parse_toml("p.toml", POLICY).expect("toml");
    let gate = Gate::new(compile(vec![file]).expect("policy")).expect("gate");
    let keys = Keys(Arc::new(
        KeySet::from_hmac_secret(&secret, None).expect("key"),
    ));
    let challenges = RefCell::new(RateLimiter::for_challenges());
    let view = View::new(gate.deny_bound_secs);
    let store = EmptyStore::default();
    let deny = ViewSource {
        view: &view,
        store: &store,
        clock: &Fixed,
    };
    let target = format!("https://api.example.com/v1/{mode}/42?view=full");
    let headers = |token: &str| -> Vec<(String, String)> {
        [
            ("host", "api.example.com"),
            ("user-agent", "insns/1.0"),
            ("accept", "application/json"),
            ("x-verified-user", "spoofed"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .chain([("authorization".to_owned(), format!("Bearer {token}"))])
        .collect()
    };
    let requests: Vec<Vec<(String, String)>> = tokens.iter().map(|t| headers(t)).collect();
    let next = Cell::new(0usize);
    let once = || {
        gate.token_cache().clear();
        let parts = url::split(&target).expect("url");
        let k = next.get();
        next.set(k + 1);
        let req = Request::new("GET", parts, requests[k % requests.len()].as_slice());
        let no_key: Option<&NonceKey> = None;
        let env = Env {
            keys: &keys,
            verifier: &NativeVerifier,
            replay: &NoReplay,
            nonce_key: &no_key,
            random: &SystemRandom,
            challenges: &challenges,
            signing: &None::<&attestgate::gate::signing::GatewayKeys>,
            deny: &deny,
            now: NOW,
            now_ms: NOW * 1000,
        };
        block_on_ready(async {
            let d = decide(&gate, &req, &env, "insn-request").await;
            let line = d.log_line();
            let ok = matches!(d.outcome, Outcome::Forward(_));
            black_box(&d);
            Ok::<_, Error>((ok, line))
        })
        .expect("ready")
    };
    // Warm-up: the first half of the tokens (every shard of the view filled before anything
    // is counted); the counted decisions use the other half, tokens the isolate has not seen.
    let warm = requests.len().div_ceil(2);
    for _ in 0..warm {
        let (ok, line) = once();
        assert!(ok, "warm-up refused: {line}");
    }
    assert!(
        requests.len() == 1 || n as usize <= requests.len() - warm,
        "at most {} counted decisions with {} tokens",
        requests.len() - warm,
        requests.len()
    );
    let calls = store.calls.get();
    for _ in 0..n {
        black_box(once());
    }
    assert_eq!(store.calls.get(), calls, "a store call during the count");
    println!("{mode}: {warm} warm-up + {n} decisions, {calls} store calls in the warm-up");
}
