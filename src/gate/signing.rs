//! The gateway's own signing key and its published JWKS (issue 14 item 3). Pure: the key comes
//! in through [`Secrets`], signatures through the [`Signer`] seam (WebCrypto with a
//! non-extractable key in the Worker, `NativeSigner` natively).
//!
//! - `ATTESTGATE_SIGNING_KEY` ([`SIGNING_KEY_SECRET`]): the private JWK (EC P-256 for `ES256`
//!   or OKP Ed25519 for `EdDSA`) with a `kid`; every signature of the gateway is made with it.
//! - `ATTESTGATE_SIGNING_KEY_PREVIOUS` ([`PREVIOUS_KEY_SECRET`], optional): the key it replaced
//!   (a private or a public JWK, with a different `kid`); only its public half is published, so
//!   that what it signed before the rotation still verifies. It never signs.
//! - `GET /.well-known/attestgate/jwks.json` ([`JWKS_PATH`]): the public halves, current first,
//!   with `Cache-Control: public, max-age=300` ([`JWKS_MAX_AGE_SECS`]).
//!
//! A missing or malformed key (or previous key) makes the keys unavailable as a whole
//! ([`SigningFault`], logged by the Worker once per isolate): the JWKS endpoint and every route
//! that needs a signature answer 503 `temporarily_unavailable`
//! ([`Error::SigningKeyUnavailable`]); nothing is ever sent unsigned.

use serde_json::{json, Value};

use crate::gate::phase::response::Answer;
use crate::gate::seams::{Secrets, Signer};
use crate::jose::{json as strict_json, sign_compact, Alg, Key, KeyRejection, SigningKey};
use crate::Error;

/// The Worker secret with the gateway's private signing JWK.
pub const SIGNING_KEY_SECRET: &str = "ATTESTGATE_SIGNING_KEY";
/// The Worker secret with the previous signing key (published, never used to sign).
pub const PREVIOUS_KEY_SECRET: &str = "ATTESTGATE_SIGNING_KEY_PREVIOUS";
/// Where the gateway publishes its public keys (SPEC §5: the gateway's endpoints).
pub const JWKS_PATH: &str = "/.well-known/attestgate/jwks.json";
/// How long a verifier may cache the JWKS. A rotation keeps the previous key published for at
/// least this long plus the longest lifetime of what it signed.
pub const JWKS_MAX_AGE_SECS: u32 = 300;
/// Longest `kid` accepted for the gateway's keys.
const MAX_KID: usize = 128;

/// Why the gateway's signing keys cannot be used (the log line names it; the client sees 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningFault {
    /// `ATTESTGATE_SIGNING_KEY` is not set (or empty).
    Missing,
    /// `ATTESTGATE_SIGNING_KEY` is not a usable private JWK.
    Malformed(KeyRejection),
    /// A key has no `kid` (or one that is not 1 to 128 printable ASCII characters).
    NoKid,
    /// `ATTESTGATE_SIGNING_KEY_PREVIOUS` is set but is not a usable ES256/EdDSA JWK.
    PreviousMalformed(KeyRejection),
    /// The previous key has the current key's `kid`: verifiers could not tell them apart.
    SameKid,
}

impl SigningFault {
    /// The log line's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            SigningFault::Missing => "signing_key_missing",
            SigningFault::Malformed(_) => "signing_key_malformed",
            SigningFault::NoKid => "signing_key_without_kid",
            SigningFault::PreviousMalformed(_) => "previous_signing_key_malformed",
            SigningFault::SameKid => "previous_signing_key_same_kid",
        }
    }

    /// The key rejection behind it, if any (the log line's `detail`).
    pub fn detail(self) -> Option<&'static str> {
        match self {
            SigningFault::Malformed(r) | SigningFault::PreviousMalformed(r) => Some(r.reason()),
            _ => None,
        }
    }

    /// The one log line for it (no key material: names and reasons only).
    pub fn log_line(self) -> String {
        let detail = self
            .detail()
            .map(|d| format!(",\"detail\":\"{d}\""))
            .unwrap_or_default();
        format!(
            "{{\"attestgate\":\"signing_key_unavailable\",\"reason\":\"{}\",\"secret\":\"{}\"{detail}}}",
            self.reason(),
            match self {
                SigningFault::PreviousMalformed(_) | SigningFault::SameKid => PREVIOUS_KEY_SECRET,
                _ => SIGNING_KEY_SECRET,
            }
        )
    }
}

/// The gateway's signing key, the previous key's public half, and the JWKS document of both.
pub struct GatewayKeys {
    current: SigningKey,
    previous: Option<Key>,
    jwks: String,
}

impl core::fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GatewayKeys")
            .field("current", &self.current)
            .field("previous", &self.previous.as_ref().and_then(Key::kid))
            .finish_non_exhaustive()
    }
}

fn usable_kid(kid: Option<&str>) -> bool {
    kid.is_some_and(|k| {
        !k.is_empty() && k.len() <= MAX_KID && k.bytes().all(|b| (0x20..=0x7e).contains(&b))
    })
}

/// The public half of a private or public JWK, for an ES256 or EdDSA key.
fn public_half(text: &str) -> Result<Key, KeyRejection> {
    let mut jwk =
        strict_json::parse_object(text.as_bytes()).map_err(|_| KeyRejection::NotAnObject)?;
    jwk.remove("d");
    let key = Key::from_jwk(&Value::Object(jwk))?;
    match key.alg() {
        Alg::Es256 | Alg::EdDsa => Ok(key),
        _ => Err(KeyRejection::UnknownKty),
    }
}

impl GatewayKeys {
    /// The keys from the texts of the two secrets (`previous`: `None` when not set).
    pub fn new(current: &str, previous: Option<&str>) -> Result<GatewayKeys, SigningFault> {
        let current = SigningKey::from_jwk(current.trim()).map_err(SigningFault::Malformed)?;
        if !usable_kid(current.kid()) {
            return Err(SigningFault::NoKid);
        }
        let previous = match previous.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(text) => {
                let key = public_half(text).map_err(SigningFault::PreviousMalformed)?;
                if !usable_kid(key.kid()) {
                    return Err(SigningFault::NoKid);
                }
                if key.kid() == current.kid() {
                    return Err(SigningFault::SameKid);
                }
                Some(key)
            }
        };
        let mut keys = vec![current.public_jwk()];
        if let Some(p) = &previous {
            keys.push(public_jwk(p));
        }
        let jwks = json!({ "keys": keys }).to_string();
        Ok(GatewayKeys {
            current,
            previous,
            jwks,
        })
    }

    /// The keys from the Worker secrets [`SIGNING_KEY_SECRET`] and [`PREVIOUS_KEY_SECRET`].
    pub fn from_secrets(secrets: &(impl Secrets + ?Sized)) -> Result<GatewayKeys, SigningFault> {
        let current = secrets
            .secret(SIGNING_KEY_SECRET)
            .ok_or(SigningFault::Missing)?;
        let previous = secrets.secret(PREVIOUS_KEY_SECRET);
        GatewayKeys::new(&current, previous.as_deref())
    }

    /// The key every signature is made with.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// The previous key's public half (published only).
    pub fn previous(&self) -> Option<&Key> {
        self.previous.as_ref()
    }

    /// The JWKS document: `{"keys": [current, previous?]}`, public members only.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }
}

/// The public JWK of a verification key (ES256 or EdDSA), as [`SigningKey::public_jwk`] writes it.
fn public_jwk(key: &Key) -> Value {
    use crate::jose::{b64, KeyMaterial};
    let mut jwk = match key.material() {
        KeyMaterial::Ec { x, y, .. } => {
            json!({"kty": "EC", "crv": "P-256", "x": b64::encode(x), "y": b64::encode(y)})
        }
        KeyMaterial::Ed25519 { x, .. } => {
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(x)})
        }
        _ => Value::Null,
    };
    if let Value::Object(m) = &mut jwk {
        m.insert("alg".into(), Value::from(key.alg().as_str()));
        m.insert("use".into(), Value::from("sig"));
        if let Some(kid) = key.kid() {
            m.insert("kid".into(), Value::from(kid));
        }
    }
    jwk
}

/// Where the gateway's signing keys come from, asked for only by what signs or publishes them
/// (the Worker reads the secrets lazily, once per isolate).
pub trait SigningKeySource {
    /// The keys, or [`Error::SigningKeyUnavailable`] when the secret is missing or malformed.
    fn signing_keys(&self) -> Result<&GatewayKeys, Error>;
}

impl SigningKeySource for Option<&GatewayKeys> {
    fn signing_keys(&self) -> Result<&GatewayKeys, Error> {
        self.ok_or(Error::SigningKeyUnavailable)
    }
}

impl SigningKeySource for Result<GatewayKeys, SigningFault> {
    fn signing_keys(&self) -> Result<&GatewayKeys, Error> {
        self.as_ref().map_err(|_| Error::SigningKeyUnavailable)
    }
}

/// Sign a JWT as the gateway: a compact JWS with header `{"alg", "typ": typ, "kid"}` over
/// `claims`, with the current key, through `signer`. A key the signer cannot use is
/// [`Error::SigningKeyUnavailable`] (503): nothing is sent unsigned.
pub async fn sign_jwt<S: Signer>(
    keys: &GatewayKeys,
    signer: &S,
    typ: &str,
    claims: &Value,
) -> Result<String, Error> {
    sign_compact(claims, typ, &keys.current, signer)
        .await
        .map_err(|_| Error::SigningKeyUnavailable)
}

/// The `iss` of everything the gateway signs: `[gateway] issuer`, else the origin (scheme and
/// authority) the request was sent to.
pub fn issuer<'a>(gate: &'a crate::gate::Gate, request_origin: &'a str) -> &'a str {
    gate.policy()
        .gateway()
        .issuer
        .as_deref()
        .unwrap_or(request_origin)
}

/// The JWKS endpoint's answer: the document, cacheable for [`JWKS_MAX_AGE_SECS`].
pub fn jwks_answer(keys: &GatewayKeys) -> Answer {
    Answer {
        status: 200,
        body: keys.jwks.clone(),
        headers: vec![(
            "cache-control",
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        )],
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::gate::seams::MemorySecrets;
    use crate::jose::{b64, block_on_ready, verify_native, NativeSigner};

    fn es256(seed: u8, kid: Option<&str>) -> Value {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        let bytes = sk.verifying_key().to_sec1_bytes();
        let mut v = json!({
            "kty": "EC", "crv": "P-256",
            "x": b64::encode(&bytes[1..33]), "y": b64::encode(&bytes[33..65]),
            "d": b64::encode(&[seed; 32]),
        });
        if let Some(k) = kid {
            v["kid"] = json!(k);
        }
        v
    }

    fn ed25519(seed: u8, kid: &str) -> Value {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": b64::encode(sk.verifying_key().as_bytes()), "d": b64::encode(&[seed; 32]),
        })
    }

    #[test]
    fn the_jwks_has_the_public_halves_current_first_and_never_d() {
        let cur = es256(1, Some("gw-2"));
        let prev = ed25519(2, "gw-1");
        let keys = GatewayKeys::new(&cur.to_string(), Some(&prev.to_string())).unwrap();
        let doc: Value = serde_json::from_str(keys.jwks()).unwrap();
        let list = doc["keys"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["kid"], "gw-2");
        assert_eq!(list[0]["alg"], "ES256");
        assert_eq!(list[1]["kid"], "gw-1");
        assert_eq!(list[1]["alg"], "EdDSA");
        assert!(!keys.jwks().contains("\"d\""), "{}", keys.jwks());
        assert!(!keys.jwks().contains(cur["d"].as_str().unwrap()));
        assert!(!keys.jwks().contains(prev["d"].as_str().unwrap()));
        // The published set parses as a JWKS the gateway itself would accept.
        let (set, _) =
            crate::jose::KeySet::from_jwks(keys.jwks().as_bytes(), &Default::default()).unwrap();
        assert!(set.select(Alg::Es256, Some("gw-2")).is_ok());
        assert!(set.select(Alg::EdDsa, Some("gw-1")).is_ok());
        // A public-only previous key is enough.
        let mut public_prev = prev.clone();
        public_prev.as_object_mut().unwrap().remove("d");
        let k2 = GatewayKeys::new(&cur.to_string(), Some(&public_prev.to_string())).unwrap();
        assert_eq!(k2.jwks(), keys.jwks());
        // Without a previous key: one key.
        let one = GatewayKeys::new(&cur.to_string(), None).unwrap();
        let doc: Value = serde_json::from_str(one.jwks()).unwrap();
        assert_eq!(doc["keys"].as_array().unwrap().len(), 1);
        let answer = jwks_answer(&one);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.headers,
            [("cache-control", "public, max-age=300".to_owned())]
        );
    }

    #[test]
    fn missing_or_malformed_keys_are_a_fault_never_a_key() {
        let mut s = MemorySecrets::new();
        assert_eq!(
            GatewayKeys::from_secrets(&s).map(|_| ()),
            Err(SigningFault::Missing)
        );
        s.insert(SIGNING_KEY_SECRET, "");
        assert_eq!(
            GatewayKeys::from_secrets(&s).map(|_| ()),
            Err(SigningFault::Missing)
        );
        s.insert(SIGNING_KEY_SECRET, "not json");
        assert!(matches!(
            GatewayKeys::from_secrets(&s),
            Err(SigningFault::Malformed(_))
        ));
        // A public key only: no private half to sign with.
        let mut public = es256(3, Some("k"));
        public.as_object_mut().unwrap().remove("d");
        s.insert(SIGNING_KEY_SECRET, &public.to_string());
        assert_eq!(
            GatewayKeys::from_secrets(&s).map(|_| ()),
            Err(SigningFault::Malformed(KeyRejection::Malformed))
        );
        // No kid.
        s.insert(SIGNING_KEY_SECRET, &es256(3, None).to_string());
        assert_eq!(
            GatewayKeys::from_secrets(&s).map(|_| ()),
            Err(SigningFault::NoKid)
        );
        s.insert(SIGNING_KEY_SECRET, &es256(3, Some("")).to_string());
        assert_eq!(
            GatewayKeys::from_secrets(&s).map(|_| ()),
            Err(SigningFault::NoKid)
        );
        // A good key, then a bad previous one: the whole set is unavailable.
        s.insert(SIGNING_KEY_SECRET, &es256(3, Some("k3")).to_string());
        assert!(GatewayKeys::from_secrets(&s).is_ok());
        s.insert(PREVIOUS_KEY_SECRET, "{\"kty\":\"oct\",\"k\":\"AAAA\"}");
        assert!(matches!(
            GatewayKeys::from_secrets(&s),
            Err(SigningFault::PreviousMalformed(_))
        ));
        s.insert(PREVIOUS_KEY_SECRET, &es256(4, Some("k3")).to_string());
        assert_eq!(
            GatewayKeys::from_secrets(&s).map(|_| ()),
            Err(SigningFault::SameKid)
        );
        s.insert(PREVIOUS_KEY_SECRET, &es256(4, None).to_string());
        assert_eq!(
            GatewayKeys::from_secrets(&s).map(|_| ()),
            Err(SigningFault::NoKid)
        );
        s.insert(PREVIOUS_KEY_SECRET, &es256(4, Some("k4")).to_string());
        assert!(GatewayKeys::from_secrets(&s).is_ok());
        // The fault's log line names the secret and the reason, never a key.
        let line = SigningFault::Malformed(KeyRejection::InvalidPoint).log_line();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["secret"], SIGNING_KEY_SECRET);
        assert_eq!(v["reason"], "signing_key_malformed");
        let v: Value = serde_json::from_str(&SigningFault::SameKid.log_line()).unwrap();
        assert_eq!(v["secret"], PREVIOUS_KEY_SECRET);
        // The seam: a fault is 503 signing_key_unavailable.
        let fault: Result<GatewayKeys, SigningFault> = Err(SigningFault::Missing);
        assert_eq!(
            fault.signing_keys().map(|_| ()),
            Err(Error::SigningKeyUnavailable)
        );
        assert_eq!(
            None::<&GatewayKeys>.signing_keys().map(|_| ()),
            Err(Error::SigningKeyUnavailable)
        );
        assert_eq!(Error::SigningKeyUnavailable.wire("r").status, 503);
    }

    fn gateway(extra: &str) -> crate::api::Gateway {
        let text = format!(
            r#"
[gateway]
origin = "https://api.example.com"
{extra}
[[route]]
id = "p"
path = "/p"
public = true
"#
        );
        let policy = crate::api::compile_toml("p.toml", &text).expect("policy");
        crate::api::Gateway::new(policy).expect("gateway")
    }

    fn at_endpoint(
        gw: &crate::api::Gateway,
        method: &str,
        url: &str,
        keys: Option<&GatewayKeys>,
    ) -> (Option<Error>, Option<Answer>, crate::api::Verdict) {
        use crate::api::{MemoryReplay, NativeVerifier, Request, ResponsePlan, Seams, StaticKeys};
        let (k, r) = (StaticKeys::new(), MemoryReplay::new());
        let seams = Seams {
            keys: &k,
            verifier: &NativeVerifier,
            replay: &r,
            nonce_key: None,
            signing_keys: keys,
        };
        let req = Request {
            method,
            url,
            headers: &[],
        };
        block_on_ready(async {
            let d = gw.decide(&req, &seams, 1_700_000_000, "id").await;
            let answer = match &d.response {
                ResponsePlan::Own(a) => Some(a.clone()),
                ResponsePlan::Origin { .. } => None,
            };
            Ok::<_, Error>((d.error(), answer, d.verdict()))
        })
        .unwrap()
    }

    #[test]
    fn the_jwks_endpoint_serves_the_keys_or_503_never_a_route() {
        let gw = gateway("");
        let keys = GatewayKeys::new(&es256(9, Some("gw-9")).to_string(), None).unwrap();
        let url = "https://gw.example.com/.well-known/attestgate/jwks.json";
        for method in ["GET", "HEAD"] {
            let (e, a, v) = at_endpoint(&gw, method, url, Some(&keys));
            let a = a.unwrap();
            assert_eq!((e, a.status, v), (None, 200, crate::api::Verdict::Endpoint));
            assert_eq!(a.body, keys.jwks());
            assert!(a
                .headers
                .contains(&("cache-control", "public, max-age=300".to_owned())));
        }
        let (e, a, _) = at_endpoint(&gw, "POST", url, Some(&keys));
        let a = a.unwrap();
        assert_eq!(a.status, 405);
        assert!(matches!(e, Some(Error::Route(_))));
        assert!(a.headers.contains(&("allow", "GET, HEAD".to_owned())));
        // No usable key: 503, with no key material and no route consulted.
        let (e, a, _) = at_endpoint(&gw, "GET", url, None);
        assert_eq!(e, Some(Error::SigningKeyUnavailable));
        let a = a.unwrap();
        assert_eq!(a.status, 503);
        assert!(a.headers.iter().any(|(n, _)| *n == "retry-after"));
        assert!(!a.body.contains("keys"));
    }

    #[test]
    fn the_issuer_is_the_policys_or_the_requests_origin() {
        let gw = gateway("");
        assert_eq!(
            issuer(gw.gate(), "https://gw.example"),
            "https://gw.example"
        );
        let gw = gateway("issuer = \"https://gateway.example.com\"");
        assert_eq!(
            issuer(gw.gate(), "https://gw.example"),
            "https://gateway.example.com"
        );
        let bad = crate::api::compile_toml(
            "p.toml",
            "[gateway]\norigin = \"https://a.example\"\nissuer = \"http://gw.example\"\n[[route]]\nid = \"p\"\npath = \"/p\"\npublic = true\n",
        )
        .unwrap_err();
        assert!(bad[0].to_string().contains("issuer"), "{}", bad[0]);
    }

    #[test]
    fn sign_jwt_signs_with_the_current_key_and_names_it() {
        for cur in [es256(5, Some("gw-es")), ed25519(6, "gw-ed")] {
            let keys = GatewayKeys::new(&cur.to_string(), None).unwrap();
            let claims = json!({"iss": "https://gw.example", "exp": 2_000_000_000_i64});
            let jws =
                block_on_ready(sign_jwt(&keys, &NativeSigner, "example+jwt", &claims)).unwrap();
            let parsed = crate::jose::jws::parse(
                &jws,
                &[keys.current().alg()],
                &["example+jwt"],
                &crate::jose::Limits::default(),
            )
            .unwrap();
            assert_eq!(parsed.header.kid.as_deref(), keys.current().kid());
            verify_native(
                keys.current().public_key(),
                parsed.signing_input.as_bytes(),
                &parsed.signature,
            )
            .unwrap();
        }
        // A key whose halves do not match: 503, never a signature.
        let mut bad = es256(7, Some("k"));
        bad["d"] = es256(8, None)["d"].clone();
        let keys = GatewayKeys::new(&bad.to_string(), None).unwrap();
        assert_eq!(
            block_on_ready(sign_jwt(&keys, &NativeSigner, "t", &json!({}))),
            Err(Error::SigningKeyUnavailable)
        );
    }
}
