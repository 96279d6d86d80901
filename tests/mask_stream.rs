//! Issue 18: the streaming JSON transformer against the whole-document reference, each action,
//! chunk boundaries anywhere, and the hostile inputs of the issue (deep nesting, huge strings,
//! duplicate keys, overflowing numbers, invalid UTF-8, truncation).

use attestgate::gate::mask::reference::{mask_whole, RefError};
use attestgate::gate::mask::{HashKey, Limits, MaskError, Transformer};
use attestgate::policy::compile::mask::{parse_path, DEFAULT_REDACTION};
use attestgate::policy::{Mask, MaskAction, MaskRule, MaskWhen};
use proptest::prelude::*;
use serde_json::{json, Value};

fn mask(rules: &[(&str, MaskAction)]) -> Mask {
    Mask {
        when: MaskWhen {
            agent: true,
            ..Default::default()
        },
        secret: Some("K".into()),
        rules: rules
            .iter()
            .map(|(p, a)| MaskRule {
                path: (*p).to_owned(),
                steps: parse_path(p).unwrap(),
                action: a.clone(),
            })
            .collect(),
    }
}

fn key() -> HashKey {
    HashKey::new(&[7u8; 32]).unwrap()
}

/// Run the transformer over `body` split into `chunks`-sized pieces.
fn run(m: &Mask, body: &[u8], chunk: usize, limits: Limits) -> Result<(Vec<u8>, u64), MaskError> {
    let mut t = Transformer::new(m, Some(key()), limits);
    let mut out = Vec::new();
    for piece in body.chunks(chunk.max(1)) {
        t.feed(piece, &mut out)?;
    }
    let counts = t.finish(&mut out)?;
    Ok((out, counts.total()))
}

fn customer_mask() -> Mask {
    mask(&[
        ("$.ssn", MaskAction::Redact(DEFAULT_REDACTION.into())),
        ("$..email", MaskAction::Hash),
        ("$.cards[*].number", MaskAction::Last4),
        ("$.internal", MaskAction::Drop),
        ("$.tags[1]", MaskAction::Drop),
    ])
}

const CUSTOMER: &str = r#"{
  "id": "c-42", "name": "Ada", "ssn": "123-45-6789", "email": "ada@example.com",
  "cards": [{"number": "4111111111111111", "exp": "12/29"}, {"number": 5500005555555559}],
  "contacts": [{"email": "bob@example.com", "kind": "work"}],
  "internal": {"score": 0.73, "notes": ["x"]},
  "tags": ["a", "b", "c"]
}"#;

#[test]
fn each_action_does_what_the_policy_says() {
    let m = customer_mask();
    let (out, n) = run(&m, CUSTOMER.as_bytes(), 1 << 16, Limits::default()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let h = |s: &str| key().token(b's', s.as_bytes());
    assert_eq!(
        v,
        json!({
            "id": "c-42", "name": "Ada", "ssn": "[redacted]", "email": h("ada@example.com"),
            "cards": [{"number": "****1111", "exp": "12/29"}, {"number": "****5559"}],
            "contacts": [{"email": h("bob@example.com"), "kind": "work"}],
            "tags": ["a", "c"]
        })
    );
    assert_eq!(n, 7);
    assert!(h("ada@example.com").starts_with("h:") && h("ada@example.com").len() == 24);
    // Compact output, the untouched values as the origin wrote them.
    assert!(out.starts_with(br#"{"id":"c-42","name":"Ada","ssn":"[redacted]","email":"h:"#));
    // The same document split at every byte gives the same bytes.
    for chunk in 1..8 {
        assert_eq!(
            run(&m, CUSTOMER.as_bytes(), chunk, Limits::default())
                .unwrap()
                .0,
            out
        );
    }
    let (reference, counts) =
        mask_whole(&m, Some(&key()), CUSTOMER.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(reference, v);
    assert_eq!(counts.total(), 7);
}

#[test]
fn the_strongest_action_wins_and_containers_at_hash_paths_are_redacted() {
    let m = mask(&[
        ("$..a", MaskAction::Last4),
        ("$.x.a", MaskAction::Drop),
        ("$.y", MaskAction::Hash),
        ("$.z", MaskAction::Redact("null".into())),
    ]);
    let doc = br#"{"x":{"a":"123456","b":1},"a":"abcdefg","y":{"s":[1]},"z":[1,{"a":2}],"w":[{"a":true}]}"#;
    let (out, n) = run(&m, doc, 3, Limits::default()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({"x":{"b":1},"a":"****defg","y":"[redacted]","z":null,"w":[{"a":"****"}]})
    );
    assert_eq!(n, 5);
}

#[test]
fn keys_are_matched_after_unescaping() {
    let m = mask(&[("$.ssn", MaskAction::Drop), ("$['a b']", MaskAction::Drop)]);
    let (out, n) = run(
        &m,
        br#"{"\u0073sn":"1","a\u0020b":2,"k":3}"#,
        2,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(out, br#"{"k":3}"#);
    assert_eq!(n, 2);
}

#[test]
fn hostile_documents_fail_with_a_clear_error_in_fixed_memory() {
    let m = customer_mask();
    let l = Limits::default();
    let err = |body: &[u8]| run(&m, body, 7, l).unwrap_err();
    // deep nesting
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(err(deep.as_bytes()), MaskError::TooDeep);
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(run(&m, ok.as_bytes(), 7, l).is_ok());
    // huge strings: a value, a member name
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(l.max_string + 1));
    assert_eq!(err(huge.as_bytes()), MaskError::ValueTooLarge);
    let huge_key = format!("{{\"{}\":1}}", "k".repeat(l.max_key + 1));
    assert_eq!(err(huge_key.as_bytes()), MaskError::ValueTooLarge);
    // duplicate keys, also when escaped, also inside a masked value
    assert_eq!(err(br#"{"a":1,"a":2}"#), MaskError::DuplicateKey);
    assert_eq!(err(br#"{"ssn":1,"\u0073sn":2}"#), MaskError::DuplicateKey);
    assert_eq!(
        err(br#"{"internal":{"x":1,"x":2}}"#),
        MaskError::DuplicateKey
    );
    assert!(run(&m, br#"{"a":{"x":1},"b":{"x":1}}"#, 7, l).is_ok());
    // many distinct keys: bounded
    let many: String = (0..40_000).map(|i| format!("\"k{i}\":0,")).collect();
    let many = format!("{{{}\"end\":0}}", many);
    assert_eq!(err(many.as_bytes()), MaskError::TooManyKeys);
    // numbers that overflow a double
    assert_eq!(err(b"[1e400]"), MaskError::NumberOverflow);
    assert_eq!(err(b"{\"a\":-1.5E+309}"), MaskError::NumberOverflow);
    let big = format!("[{}]", "9".repeat(400));
    assert_eq!(err(big.as_bytes()), MaskError::NumberOverflow);
    let long = format!("[{}]", "1".repeat(l.max_number + 1));
    assert_eq!(err(long.as_bytes()), MaskError::ValueTooLarge);
    assert!(run(&m, b"[1e-400, 12345678901234567890, -0, 0.5e3]", 1, l).is_ok());
    // invalid UTF-8: overlong, encoded surrogate, lone continuation, truncated sequence
    for bad in [
        &b"[\"\xC0\xAF\"]"[..],
        b"[\"\xED\xA0\x80\"]",
        b"[\"\x80\"]",
        b"[\"\xE2\x82\"]",
        b"[\"\xF4\x90\x80\x80\"]",
    ] {
        assert_eq!(err(bad), MaskError::InvalidUtf8, "{bad:?}");
    }
    // bad strings: control character, bad escape, lone surrogates
    for bad in [
        &b"[\"a\nb\"]"[..],
        br#"["\x"]"#,
        br#"["\ud800"]"#,
        br#"["\udc00"]"#,
        br#"["\ud800\u0041"]"#,
        br#"["\u12G4"]"#,
    ] {
        assert_eq!(err(bad), MaskError::BadString, "{bad:?}");
    }
    assert!(run(&m, br#"["\ud83d\ude00 \u00e9 \/ \b"]"#, 1, l).is_ok());
    // not JSON
    for bad in [
        &b"\xEF\xBB\xBF{}"[..],
        b"{} {}",
        b"{,}",
        b"[1,]",
        b"{\"a\" 1}",
        b"nul",
        b"[01]",
        b"[-]",
        b"[1.]",
        b"<html>",
        b"{'a':1}",
    ] {
        assert!(run(&m, bad, 3, l).is_err(), "{bad:?}");
    }
    // the input cap (a decompression bomb expands to more than this)
    let small = Limits {
        max_input: 1000,
        ..l
    };
    assert_eq!(
        run(&m, " ".repeat(1001).as_bytes(), 100, small).unwrap_err(),
        MaskError::BodyTooLarge
    );
}

#[test]
fn a_body_truncated_anywhere_is_an_error_never_a_document() {
    let m = customer_mask();
    let body = CUSTOMER.as_bytes();
    for cut in 0..body.len() {
        let r = run(&m, &body[..cut], 5, Limits::default());
        // Only the complete document (maybe without its trailing whitespace) is one.
        let complete = body[cut..].iter().all(u8::is_ascii_whitespace);
        assert_eq!(r.is_ok(), complete, "cut at {cut}");
        if let Err(e) = r {
            assert_eq!(e, MaskError::Truncated, "cut at {cut}");
        }
    }
    // After an error the transformer stays failed.
    let mut t = Transformer::new(&m, Some(key()), Limits::default());
    let mut out = Vec::new();
    assert!(t.feed(b"{\"a\":tru", &mut out).is_ok());
    assert_eq!(t.feed(b"x}", &mut out), Err(MaskError::Syntax));
    assert_eq!(t.feed(b"}", &mut out), Err(MaskError::Syntax));
    assert!(t.finish(&mut out).is_err());
}

#[test]
fn a_top_level_scalar_passes() {
    let m = customer_mask();
    assert_eq!(run(&m, b" 42 ", 1, Limits::default()).unwrap().0, b"42");
    assert_eq!(
        run(&m, b"-1.5e3", 2, Limits::default()).unwrap().0,
        b"-1.5e3"
    );
    assert_eq!(run(&m, b"\"x\"", 2, Limits::default()).unwrap().0, b"\"x\"");
    assert_eq!(
        run(&m, b"", 2, Limits::default()).unwrap_err(),
        MaskError::Truncated
    );
}

// ---- property: the stream equals the reference, at any chunking ------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec!["a", "b", "email", "ssn", "items", "n", "x y", "é"]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z0-9 \"\\\\\u{0}-\u{1f}é😀]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(names.clone().prop_map(str::to_owned), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_mask() -> impl Strategy<Value = Mask> {
    let paths = prop::sample::select(vec![
        "$.a",
        "$.a.b",
        "$..email",
        "$.items[*].ssn",
        "$.items[0]",
        "$.*",
        "$..a",
        "$[*].n",
        "$['x y']",
        "$.b[*]",
        "$..['é']",
    ]);
    let actions = prop_oneof![
        Just(MaskAction::Drop),
        Just(MaskAction::Redact(DEFAULT_REDACTION.into())),
        Just(MaskAction::Redact("7".into())),
        Just(MaskAction::Hash),
        Just(MaskAction::Last4),
    ];
    prop::collection::vec((paths, actions), 1..5).prop_map(|rules| {
        let mut seen = Vec::new();
        let rules: Vec<(&str, MaskAction)> = rules
            .into_iter()
            .filter(|(p, _)| {
                let fresh = !seen.contains(p);
                seen.push(*p);
                fresh
            })
            .collect();
        mask(&rules)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_stream_equals_the_reference(doc in arb_json(), m in arb_mask(), chunk in 1usize..40, pretty in any::<bool>()) {
        let body = if pretty { serde_json::to_vec_pretty(&doc).unwrap() } else { serde_json::to_vec(&doc).unwrap() };
        let l = Limits::default();
        let (reference, counts) = mask_whole(&m, Some(&key()), &body, &l).unwrap();
        let (out, n) = run(&m, &body, chunk, l).unwrap();
        let got: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(got, reference);
        prop_assert_eq!(n, counts.total());
    }

    #[test]
    fn arbitrary_bytes_never_disagree_with_the_reference(body in prop::collection::vec(prop::sample::select(b"{}[]\",:0123456789-+.eEtrufalsn \\u\x80\xC3\xA9ab".to_vec()), 0..60), chunk in 1usize..9) {
        let m = mask(&[("$.a", MaskAction::Hash), ("$..b", MaskAction::Drop)]);
        let l = Limits { max_depth: 8, ..Limits::default() };
        match (mask_whole(&m, Some(&key()), &body, &l), run(&m, &body, chunk, l)) {
            (Ok((v, c)), Ok((out, n))) => {
                prop_assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), v);
                prop_assert_eq!(c.total(), n);
            }
            (Err(RefError::TooDeep), Err(e)) => prop_assert!(e.is_limit(), "{:?}", e),
            (Err(_), Err(_)) => {}
            (Ok(_), Err(e)) => prop_assert!(e.is_limit(), "stream refused what the reference took: {:?}", e),
            (Err(e), Ok(_)) => prop_assert!(false, "stream took what the reference refused: {:?}", e),
        }
    }
}

#[test]
fn duplicates_are_found_in_small_and_large_objects() {
    let m = customer_mask();
    let l = Limits::default();
    let doc = |n: usize| {
        let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
        format!("{{{}}}", members.join(",")).into_bytes()
    };
    for n in [1, 5, 23, 24, 25, 60] {
        assert!(run(&m, &doc(n), 7, l).is_ok(), "{n}");
        for j in [0, n / 2, n - 1] {
            let body = {
                let mut members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
                members.push(format!("\"k{j}\":0"));
                format!("{{{}}}", members.join(",")).into_bytes()
            };
            assert_eq!(
                run(&m, &body, 7, l).unwrap_err(),
                MaskError::DuplicateKey,
                "{n} {j}"
            );
        }
    }
    // Sibling objects each start from an empty name set.
    let twice = format!("[{0},{0}]", String::from_utf8(doc(30)).unwrap());
    assert!(run(&m, twice.as_bytes(), 5, l).is_ok());
}
