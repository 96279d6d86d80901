//! Issue 18: the transformer's cost in the Worker's target, under V8 (wasm-bindgen-test-runner
//! on Node): the bench's 10 KB document (as `tests/mask_perf.rs`), masked by the bench route's
//! rules, many times; prints µs per document and MB/s.
//!
//! `cargo test --release --target wasm32-unknown-unknown --test mask_wasm -- --nocapture`
//! (the Worker's own profile: opt-level "z", fat LTO). Asserts only the result.
#![cfg(target_arch = "wasm32")]

use attestgate::gate::mask::{Limits, Transformer};
use attestgate::policy::compile::mask::{parse_path, DEFAULT_REDACTION};
use attestgate::policy::{Mask, MaskAction, MaskRule, MaskWhen};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

fn bench_mask() -> Mask {
    let rule = |p: &str, action| MaskRule {
        path: p.to_owned(),
        steps: parse_path(p).unwrap(),
        action,
    };
    Mask {
        when: MaskWhen::default(),
        secret: None,
        rules: vec![
            rule(
                "$.customers[*].ssn",
                MaskAction::Redact(DEFAULT_REDACTION.into()),
            ),
            rule("$..email", MaskAction::Last4),
            rule("$.customers[*].internal", MaskAction::Drop),
        ],
    }
}

fn bench_document(size: usize) -> String {
    let render = |records: &[String]| format!("{{\"customers\": [{}]}}", records.join(", "));
    let mut records: Vec<String> = Vec::new();
    let mut i = 0usize;
    while render(&records).len() < size {
        records.push(format!(
            r#"{{"id": "c-{i}", "name": "Customer {i}", "ssn": "123-45-{i:04}", "email": "user{i}@example.com", "internal": {{"score": {:?}, "tags": ["a", "b"]}}, "orders": [{i}, {}, {}]}}"#,
            i as f64 / 100.0,
            i + 1,
            i + 2
        ));
        i += 1;
    }
    render(&records)
}

#[wasm_bindgen_test]
fn ten_kb_document_in_wasm() {
    let m = bench_mask();
    let doc = bench_document(10 * 1024);
    assert_eq!(doc.len(), 10346);
    let once = |out: &mut Vec<u8>| {
        let mut t = Transformer::new(&m, None, Limits::default());
        t.feed(doc.as_bytes(), out).unwrap();
        t.finish(out).unwrap().total()
    };
    let mut out = Vec::new();
    assert_eq!(once(&mut out), 189);
    for _ in 0..300 {
        out.clear();
        once(&mut out);
    }
    let mut best = f64::MAX;
    for _ in 0..15 {
        let iters = 300;
        let started = js_sys::Date::now();
        for _ in 0..iters {
            out.clear();
            std::hint::black_box(once(&mut out));
        }
        best = best.min((js_sys::Date::now() - started) * 1000.0 / iters as f64);
    }
    console_log!(
        "mask (wasm, V8): 10 KB document: {:.1} us per document (best of 15 x 300), {:.1} MB/s",
        best,
        doc.len() as f64 / best
    );
}
