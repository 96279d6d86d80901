//! The policy compiler from TOML text: `parse_toml` on each file, then `compile`.
//!
//! The input is one or more files separated by a line `#---` (a TOML comment, so mutations that
//! lose it still parse). Properties of a compiled policy: see `common/policy.rs` (the embedded
//! JSON round trip, a route's own path finds a route at least as specific, evaluate and explain
//! agree). A refused policy names a file that was given.
#![no_main]

#[path = "common/policy.rs"]
mod policy_checks;

use attestgate::policy::{compile, parse_toml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut files = Vec::new();
    let mut names = Vec::new();
    for (i, part) in text.split("\n#---\n").enumerate().take(8) {
        let name = format!("policy-{i}.toml");
        match parse_toml(&name, part) {
            Ok(file) => files.push(file),
            Err(e) => {
                assert_eq!(e.location.file, name, "a parse error names its file");
                return;
            }
        }
        names.push(name);
    }
    match compile(files) {
        Ok(policy) => policy_checks::check_from_source(&policy),
        Err(errors) => {
            assert!(!errors.is_empty(), "a refusal says why");
            for e in &errors {
                let file = &e.location.file;
                assert!(
                    names.contains(file) || file.starts_with('<'),
                    "error names an unknown file {file:?}: {e}"
                );
            }
        }
    }
});
