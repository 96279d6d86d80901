//! Issue 18: the streaming JSON transformer (`gate::mask::Transformer`) against the whole-
//! document reference (`gate::mask::reference::mask_whole`: serde_json, strict, then the rules
//! applied to the tree), with the input split at fuzzer-chosen chunk boundaries.
//!
//! Input: byte 0 picks the rules (a subset of a fixed list of paths and actions), byte 1 the
//! first chunk length and the step between boundaries; the rest is the document.
//!
//! Properties: when the reference accepts the document, the stream accepts it too (unless it
//! hit one of its own fixed limits) and its output parses to exactly the reference's masked
//! value, with the same count; when the reference refuses it, so does the stream; the output
//! of an accepted document is valid JSON; and the same input fed at other boundaries gives
//! the same bytes.
#![no_main]

use attestgate::gate::mask::reference::{mask_whole, RefError};
use attestgate::gate::mask::{HashKey, Limits, MaskError, Transformer};
use attestgate::policy::compile::mask::{parse_path, DEFAULT_REDACTION};
use attestgate::policy::{Mask, MaskAction, MaskRule, MaskWhen};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PATHS: [&str; 8] = [
    "$.a", "$..email", "$.items[*].ssn", "$.*", "$..a", "$[0]", "$.a.b", "$['x y']",
];

fn rules(pick: u8) -> Mask {
    let actions = [
        MaskAction::Drop,
        MaskAction::Redact(DEFAULT_REDACTION.into()),
        MaskAction::Hash,
        MaskAction::Last4,
    ];
    let rules = PATHS
        .iter()
        .enumerate()
        .filter(|(i, _)| pick & (1 << i) != 0)
        .map(|(i, p)| MaskRule {
            path: (*p).to_owned(),
            steps: parse_path(p).expect("a valid path"),
            action: actions[(i + usize::from(pick >> 6)) % 4].clone(),
        })
        .collect();
    Mask {
        when: MaskWhen::default(),
        secret: Some("K".into()),
        rules,
    }
}

fn stream(m: &Mask, key: &HashKey, body: &[u8], first: usize, step: usize, l: Limits) -> Result<(Vec<u8>, u64), MaskError> {
    let mut t = Transformer::new(m, Some(key.clone()), l);
    let mut out = Vec::new();
    let mut at = 0;
    let mut len = first;
    while at < body.len() {
        let end = (at + len.max(1)).min(body.len());
        t.feed(&body[at..end], &mut out)?;
        at = end;
        len = step;
    }
    let n = t.finish(&mut out)?.total();
    Ok((out, n))
}

fuzz_target!(|data: &[u8]| {
    let [pick, split, body @ ..] = data else { return };
    let m = rules(*pick);
    let key = HashKey::new(&[9u8; 32]).expect("a 32-byte key");
    let l = Limits { max_depth: 16, ..Limits::default() };
    let first = usize::from(split & 0x0f) + 1;
    let step = usize::from(split >> 4) + 1;
    let got = stream(&m, &key, body, first, step, l);
    match (mask_whole(&m, Some(&key), body, &l), &got) {
        (Ok((want, counts)), Ok((out, n))) => {
            let v: Value = serde_json::from_slice(out).expect("the stream writes valid JSON");
            assert_eq!(v, want, "stream and reference disagree");
            assert_eq!(*n, counts.total());
        }
        (Ok(_), Err(e)) => assert!(e.is_limit(), "the stream refused what the reference took: {e:?}"),
        (Err(RefError::TooDeep), Err(e)) => assert!(e.is_limit(), "{e:?}"),
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) => panic!("the stream took what the reference refused: {e:?}"),
    }
    // Other boundaries, same result.
    assert_eq!(stream(&m, &key, body, body.len().max(1), 1, l), got);
});
