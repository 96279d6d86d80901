//! The embedded policy form (`Policy::from_json`), which the Worker recompiles once per isolate
//! from the JSON `build.rs` wrote. Properties of an accepted document: see `common/policy.rs`.
#![no_main]

#[path = "common/policy.rs"]
mod policy_checks;

use attestgate::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::from_json(text) {
        policy_checks::check_compiled(&policy);
    }
});
