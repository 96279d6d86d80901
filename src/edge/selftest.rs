//! Test-only endpoint: the signature verifiers of this very Worker, run on caller-supplied
//! vectors inside workerd. Compiled only with `--cfg attestgate_selftest`, which `build.rs` sets
//! when the build environment has `ATTESTGATE_SELFTEST=1` (the end-to-end harness does;
//! `scripts/build.sh`, `wrangler deploy` and `wrangler dev` do not). A production build has no such
//! route: the path falls through to route lookup like any other (404 unless a policy matches it).
//!
//! `POST /__attestgate/selftest/verify` with `{"cases": [case, ...]}` (at most [`MAX_CASES`]):
//!
//! ```json
//! {"id": 1, "alg": "ES256", "jwk": {...}, "msg_hex": "...", "sig_hex": "..."}
//! ```
//!
//! The key is the JWK (through [`Key::from_jwk`], the JWKS loader's path) or, without `jwk`, raw
//! fields for the constructors of `src/jose/jwk.rs`: `x_hex`/`y_hex` (ES256), `pk_hex` (EdDSA),
//! `n_hex`/`e_hex` (RS256), `secret_hex` (HS256, the configured-secret path). The answer, per case:
//!
//! ```json
//! {"id": 1, "key": "ok" | "<KeyRejection reason>", "webcrypto": "ok" | "<Error reason>" | null,
//!  "native": "ok" | "<Error reason>" | "unavailable" | null}
//! ```
//!
//! `webcrypto` is the production verifier ([`WebCrypto`], a fresh instance per batch so the
//! isolate's key cache is untouched); `native` is the pure-Rust [`verify_native`] compiled into the
//! same wasm, as a cross-check. RS256 has no pure-Rust verifier in the Worker (`unavailable`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{Method, Request, Response, Result};

use super::webcrypto::{WebCrypto, WebCryptoSigner};
use crate::jose::crypto::{verify_native, SignatureVerifier};
use crate::jose::{self, b64, Alg, Key, KeyRejection, Signer, SigningKey};
use crate::Error;

pub const PATH: &str = "/__attestgate/selftest/verify";
/// `POST` with `{"jwk": "<private JWK text>", "msg_hex": "..."}`: the production signer
/// ([`WebCryptoSigner`]) signs the message with the key, answering `{"signature": "<b64url>",
/// "public_jwk": {...}}` or `{"error": "<reason>"}`, so the tests can verify the gateway's
/// signatures with an independent library.
pub const SIGN_PATH: &str = "/__attestgate/selftest/sign";

/// `GET`: the isolate's verified-token cache counters, `{"hits": N, "misses": N, "entries":
/// N}`, so the tests see whether the Worker's own path hits the cache (issue 19).
pub const TOKEN_CACHE_PATH: &str = "/__attestgate/selftest/token-cache";

/// Whether `path` is one of the self-test endpoints.
pub fn handles(path: &str) -> bool {
    path == PATH || path == SIGN_PATH || path == TOKEN_CACHE_PATH
}
/// Most cases in one request.
pub const MAX_CASES: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    id: Value,
    alg: String,
    #[serde(default)]
    jwk: Option<Value>,
    #[serde(default)]
    x_hex: Option<String>,
    #[serde(default)]
    y_hex: Option<String>,
    #[serde(default)]
    pk_hex: Option<String>,
    #[serde(default)]
    n_hex: Option<String>,
    #[serde(default)]
    e_hex: Option<String>,
    #[serde(default)]
    secret_hex: Option<String>,
    msg_hex: String,
    sig_hex: String,
}

#[derive(Serialize)]
struct Outcome {
    id: Value,
    key: String,
    webcrypto: Option<String>,
    native: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignCase {
    jwk: String,
    msg_hex: String,
}

pub async fn handle(mut req: Request) -> Result<Response> {
    if req.path() == TOKEN_CACHE_PATH {
        let s = match super::isolate() {
            Ok(isolate) => isolate.gate.token_cache().stats(),
            Err(_) => return Response::error("no gate", 503),
        };
        return Response::from_json(&serde_json::json!({
            "hits": s.hits, "misses": s.misses, "entries": s.entries,
        }));
    }
    if req.method() != Method::Post {
        return Response::error("POST only", 405);
    }
    if req.path() == SIGN_PATH {
        let case: SignCase = match req.json().await {
            Ok(c) => c,
            Err(e) => return Response::error(format!("bad case: {e}"), 400),
        };
        let Some(msg) = hex(&case.msg_hex) else {
            return Response::error("bad hex", 400);
        };
        let key = match SigningKey::from_jwk(&case.jwk) {
            Ok(k) => k,
            Err(r) => return Response::from_json(&serde_json::json!({ "error": r.reason() })),
        };
        return match WebCryptoSigner::new().sign(&key, &msg).await {
            Ok(sig) => Response::from_json(&serde_json::json!({
                "signature": b64::encode(&sig),
                "public_jwk": key.public_jwk(),
            })),
            // What a route that signs answers for a key the runtime cannot use: 503
            // secret_unavailable.
            Err(jose::Error::SigningKeyUnusable) => Response::from_json(
                &serde_json::json!({ "error": Error::SecretUnavailable.reason() }),
            ),
            Err(e) => Response::from_json(&serde_json::json!({ "error": e.reason() })),
        };
    }
    let batch: Batch = match req.json().await {
        Ok(b) => b,
        Err(e) => return Response::error(format!("bad batch: {e}"), 400),
    };
    if batch.cases.len() > MAX_CASES {
        return Response::error("too many cases", 400);
    }
    let crypto = WebCrypto::new();
    let mut results = Vec::with_capacity(batch.cases.len());
    for case in batch.cases {
        results.push(run(&crypto, case).await);
    }
    Response::from_json(&serde_json::json!({ "results": results }))
}

async fn run(crypto: &WebCrypto, case: Case) -> Outcome {
    let mut out = Outcome {
        id: case.id.clone(),
        key: String::new(),
        webcrypto: None,
        native: None,
    };
    let (Some(msg), Some(sig)) = (hex(&case.msg_hex), hex(&case.sig_hex)) else {
        out.key = String::from("bad_hex");
        return out;
    };
    let key = match build_key(&case) {
        Ok(key) => key,
        Err(reason) => {
            out.key = reason.to_owned();
            return out;
        }
    };
    out.key = String::from("ok");
    out.webcrypto = Some(verdict(crypto.verify(&key, &msg, &sig).await));
    out.native = Some(match (key.alg(), verify_native(&key, &msg, &sig)) {
        (Alg::Rs256, Err(jose::Error::AlgUnavailable)) => String::from("unavailable"),
        (_, v) => verdict(v),
    });
    out
}

fn verdict(v: std::result::Result<(), jose::Error>) -> String {
    match v {
        Ok(()) => String::from("ok"),
        Err(e) => e.reason().to_owned(),
    }
}

/// The key as the gateway would build it, bound to the case's `alg`.
fn build_key(case: &Case) -> std::result::Result<Key, &'static str> {
    let alg = Alg::from_header(&case.alg).ok_or("unknown_alg")?;
    let field = |v: &Option<String>| v.as_deref().map(hex).ok_or("missing_field");
    let key = match (&case.jwk, alg) {
        (Some(jwk), _) => Key::from_jwk(jwk),
        (None, Alg::Es256) => {
            let (x, y) = (field(&case.x_hex)?, field(&case.y_hex)?);
            let (x, y) = x.zip(y).ok_or("bad_hex")?;
            Key::es256(None, &x, &y)
        }
        (None, Alg::EdDsa) => Key::ed25519(None, &field(&case.pk_hex)?.ok_or("bad_hex")?),
        (None, Alg::Rs256) => {
            let (n, e) = (field(&case.n_hex)?, field(&case.e_hex)?);
            let (n, e) = n.zip(e).ok_or("bad_hex")?;
            Key::rs256(None, &n, &e)
        }
        (None, Alg::Hs256) => Key::hs256(None, &field(&case.secret_hex)?.ok_or("bad_hex")?),
    }
    .map_err(KeyRejection::reason)?;
    if key.alg() != alg {
        return Err("key_alg_mismatch");
    }
    Ok(key)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}
