//! Issue 18: the mask rules compile at build time (errors name file, route and field), the
//! decision carries the mask plan when the condition holds (an agent caller: `act`; an
//! attestation missing), and the response checks and headers of a masked answer.

mod common;

use attestgate::api::{compile_toml, Gateway, MemoryReplay, Request, Seams, StaticKeys};
use attestgate::gate::mask::{
    check_response, masked_cache_control, masked_count, vary, BodyPlan, MaskWhy,
};
use attestgate::jose::{b64, block_on_ready, Key, KeySet, NativeVerifier};
use attestgate::policy::{MaskAction, PathStep};
use attestgate::Error;
use serde_json::{json, Value};

const NOW: i64 = 1_700_000_000;
const AGENT_KEY: [u8; 32] = [0x11; 32];
const DEVICE_KEY: [u8; 32] = [0x22; 32];

const POLICY: &str = r#"
[gateway]
origin = "https://origin.example.com"

[provider.agent]
algorithms = ["HS256"]
secret = "AGENT_SECRET"

[provider.device]
algorithms = ["HS256"]
secret = "DEVICE_SECRET"
from = { header = "approov-token" }

[[route]]
id = "mk-customer"
path = "/mk/customers/{id}"
require = { any = ["agent", "device"] }
[route.mask]
when = { agent = true, unattested = ["device"] }
secret = "MK_MASK_KEY"
rules = [
  { path = "$.ssn", action = "redact" },
  { path = "$..email", action = "hash" },
  { path = "$.cards[*].number", action = "last4" },
  { path = "$.internal", action = "drop" },
]

[[route]]
id = "mk-plain"
path = "/mk/plain"
require = { all = ["agent"] }
"#;

fn token(secret: &[u8], claims: Value) -> String {
    let header = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64::encode(claims.to_string().as_bytes());
    let input = format!("{header}.{body}");
    let sig = common::sign::hs256(secret, input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "user:alice", "iat": NOW, "exp": NOW + 300});
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    c
}

/// The mask plan's `why` for a request with these headers, and its `Vary`.
fn plan(path: &str, headers: &[(&str, String)]) -> Option<(Option<MaskWhy>, String)> {
    let policy = compile_toml("mask.toml", POLICY).expect("compiles");
    let gw = Gateway::new(policy).unwrap();
    let mut keys = StaticKeys::new();
    keys.insert(
        "agent",
        KeySet::from_keys(vec![Key::hs256(None, &AGENT_KEY).unwrap()]),
    );
    keys.insert(
        "device",
        KeySet::from_keys(vec![Key::hs256(None, &DEVICE_KEY).unwrap()]),
    );
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    let url = format!("https://api.example.com{path}");
    let req = Request {
        method: "GET",
        url: &url,
        headers: &headers,
    };
    let replay = MemoryReplay::new();
    let seams = Seams {
        keys: &keys,
        verifier: &NativeVerifier,
        replay: &replay,
        nonce_key: None,
        deny: None,
        signing_keys: None,
    };
    let out: Result<_, Error> = block_on_ready(async {
        let d = gw.decide(&req, &seams, NOW, "id").await;
        assert!(d.forward().is_some(), "{:?}", d.error());
        Ok(d.response.mask().map(|m| (m.why, m.vary.clone())))
    });
    out.expect("ready")
}

#[test]
fn the_mask_applies_to_an_agent_or_an_unattested_caller_only() {
    let agent = token(&AGENT_KEY, claims(json!({"act": {"sub": "agent:planner"}})));
    let human = token(&AGENT_KEY, claims(json!({})));
    let device = token(&DEVICE_KEY, claims(json!({"did": "d1"})));
    let bearer = |t: &str| ("authorization", format!("Bearer {t}"));
    let vary = "authorization, approov-token".to_owned();
    // An agent (act chain) is masked, even with a device attestation.
    assert_eq!(
        plan("/mk/customers/1", &[bearer(&agent)]),
        Some((Some(MaskWhy::Agent), vary.clone()))
    );
    assert_eq!(
        plan(
            "/mk/customers/1",
            &[bearer(&agent), ("approov-token", device.clone())]
        ),
        Some((Some(MaskWhy::Agent), vary.clone()))
    );
    // A human without the device attestation: masked (attestation missing).
    assert_eq!(
        plan("/mk/customers/1", &[bearer(&human)]),
        Some((Some(MaskWhy::Unattested), vary.clone()))
    );
    // A human with it: not masked, but the route's responses still vary on the credentials.
    assert_eq!(
        plan(
            "/mk/customers/1",
            &[bearer(&human), ("approov-token", device.clone())]
        ),
        Some((None, vary.clone()))
    );
    assert_eq!(
        plan("/mk/customers/1", &[("approov-token", device)]),
        Some((None, vary))
    );
    // A route without a mask has no mask plan.
    assert_eq!(plan("/mk/plain", &[bearer(&agent)]), None);
}

#[test]
fn mask_rules_compile_with_their_paths_and_actions() {
    let policy = compile_toml("mask.toml", POLICY).unwrap();
    let m = policy.route("mk-customer").unwrap().mask.clone().unwrap();
    assert_eq!(m.secret.as_deref(), Some("MK_MASK_KEY"));
    assert_eq!(
        m.rules[0].action,
        MaskAction::Redact("\"[redacted]\"".into())
    );
    assert_eq!(m.rules[1].steps, [PathStep::Descendant("email".into())]);
    assert_eq!(m.rules[2].action, MaskAction::Last4);
    assert!(m.when.agent && m.when.unattested == ["device"]);
    // The source form (compiled again when read) and the compiled form the Worker embeds (read
    // without the compiler) keep the mask.
    let again = attestgate::policy::Policy::from_json(&policy.to_json()).unwrap();
    assert_eq!(again.route("mk-customer").unwrap().mask, Some(m.clone()));
    let embedded = attestgate::policy::Policy::from_compiled(&policy.to_compiled()).unwrap();
    assert_eq!(embedded.route("mk-customer").unwrap().mask, Some(m));
}

#[test]
fn mask_errors_name_file_route_and_field() {
    let cases = [
        ("[route.mask]\nrules = [{ path = \"$.a[?(@.x)]\", action = \"drop\" }]", "mask.rules[0].path"),
        ("[route.mask]\nrules = [{ path = \"$\", action = \"drop\" }]", "mask.rules[0].path"),
        ("[route.mask]\nrules = [{ path = \"$.a\", action = \"blur\" }]", "mask.rules[0].action"),
        ("[route.mask]\nrules = [{ path = \"$.a\", action = \"hash\" }]", "mask.secret"),
        ("[route.mask]\nsecret = \"K\"\nrules = [{ path = \"$.a\", action = \"drop\" }]", "mask.secret"),
        ("[route.mask]\nrules = [{ path = \"$.a\", action = \"drop\", with = \"x\" }]", "mask.rules[0].with"),
        ("[route.mask]\nrules = [{ path = \"$.a\", action = \"redact\", with = [1] }]", "mask.rules[0].with"),
        ("[route.mask]\nrules = []", "mask.rules"),
        ("[route.mask]\nwhen = { agent_providers = [\"nobody\"] }\nrules = [{ path = \"$.a\", action = \"drop\" }]", "mask.when.agent_providers"),
        ("[route.mask]\nwhen = { unattested = [\"agent\"] }\nrules = [{ path = \"$.a\", action = \"drop\" }]", "mask.when.unattested"),
        ("[route.mask]\nwhen = {}\nrules = [{ path = \"$.a\", action = \"drop\" }]", "mask.when"),
    ];
    for (mask, field) in cases {
        // Appended to mk-plain (require = all), the last route of the file.
        let text = format!("{POLICY}{mask}\n");
        let errors = compile_toml("policies/mask.toml", &text).expect_err(mask);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown.iter().any(|e| e.starts_with(&format!(
                "policies/mask.toml: route \"mk-plain\": field \"{field}\": "
            ))),
            "{mask}: {shown:?}"
        );
    }
    // A public route can only mask always.
    let public = format!("{POLICY}\n[[route]]\nid = \"mk-pub\"\npath = \"/mk/pub\"\npublic = true\n[route.mask]\nrules = [{{ path = \"$.a\", action = \"drop\" }}]\n");
    let errors = compile_toml("m.toml", &public).unwrap_err();
    assert!(errors.iter().any(|e| e
        .to_string()
        .contains("route \"mk-pub\": field \"mask.when\"")));
    let public = public.replace(
        "[route.mask]\nrules",
        "[route.mask]\nwhen = { always = true }\nrules",
    );
    assert!(compile_toml("m.toml", &public).is_ok());
}

#[test]
fn a_masking_route_takes_json_only_in_an_encoding_it_can_read() {
    let json = Some("application/json; charset=utf-8");
    assert_eq!(check_response("GET", 200, json, None), Ok(BodyPlan::Plain));
    assert_eq!(
        check_response("GET", 404, Some("application/problem+json"), Some("gzip")),
        Ok(BodyPlan::Plain)
    );
    assert_eq!(
        check_response("GET", 200, json, Some("deflate")),
        Ok(BodyPlan::Inflate)
    );
    assert_eq!(
        check_response("GET", 200, json, Some("br")),
        Ok(BodyPlan::Plain)
    );
    assert_eq!(
        check_response("HEAD", 200, Some("text/html"), None),
        Ok(BodyPlan::None)
    );
    assert_eq!(check_response("GET", 304, None, None), Ok(BodyPlan::None));
    for (ct, ce) in [
        (Some("text/html"), None),
        (None, None),
        (Some("application/jsonx"), None),
        (Some("application/+json"), None),
        (Some("application/json; charset=latin1"), None),
        (json, Some("zstd")),
        (json, Some("gzip, deflate")),
    ] {
        assert_eq!(
            check_response("GET", 200, ct, ce),
            Err(Error::OriginUnmaskable),
            "{ct:?} {ce:?}"
        );
    }
    assert_eq!(Error::OriginUnmaskable.wire("r").status, 502);
}

#[test]
fn a_masked_answer_is_private_and_varies_on_the_credentials() {
    assert_eq!(masked_cache_control(None), "private");
    assert_eq!(
        masked_cache_control(Some("public, max-age=60, s-maxage=600")),
        "private, max-age=60"
    );
    assert_eq!(masked_cache_control(Some("no-store")), "private, no-store");
    assert_eq!(vary(None, "authorization"), "authorization");
    assert_eq!(
        vary(Some("Accept-Encoding"), "authorization"),
        "Accept-Encoding, authorization"
    );
    assert_eq!(vary(Some("*"), "authorization"), "*");
    assert_eq!(masked_count(3, true), "3");
    assert_eq!(masked_count(3, false), "3+");
}

#[test]
fn explain_shows_the_mask_a_request_would_get() {
    let dir = std::env::temp_dir().join(format!("attestgate-mask-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mask.toml"), POLICY).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let run = |claims: Value| {
        let mut c = json!({"sub": "user:alice", "iat": now, "exp": now + 300});
        c.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_attestgate"))
            .args([
                "explain",
                "GET",
                "https://api.example.com/mk/customers/1",
                "--dir",
            ])
            .arg(&dir)
            .args(["--token", &format!("agent={}", token(&AGENT_KEY, c))])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let agent = run(json!({"act": {"sub": "agent:planner"}}));
    assert!(
        agent.contains("mask      when agent (act) or unattested device"),
        "{agent}"
    );
    assert!(agent.contains("  rule    $..email  hash"), "{agent}");
    assert!(
        agent.contains("  mask    APPLIES: a token carries an act chain"),
        "{agent}"
    );
    let human = run(json!({}));
    assert!(
        human.contains("  mask    APPLIES: no token of the unattested providers"),
        "{human}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
