//! The two embeddable policy forms: the source form (`Policy::from_json`, the validated model
//! as JSON, compiled again when read: any input is refused or a policy with the properties of
//! `common/policy.rs`) and the compiled form the Worker embeds (`Policy::from_compiled`, the
//! compact binary form read without the compiler: any input is refused or read, never a panic,
//! and what is read writes back as the same bytes). The compiled form's reader checks the
//! encoding, not the compiler's invariants: the form is written by the build that checked the
//! policy and ships inside the Worker it configures, as trusted as that Worker's code
//! (docs/verification.md, "The embedded policy").
#![no_main]

#[path = "common/policy.rs"]
mod policy_checks;

use attestgate::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = Policy::from_compiled(data) {
        // What was read is written back as the same bytes (the form has one encoding per value).
        assert_eq!(policy.to_compiled(), data);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::from_json(text) {
        policy_checks::check_from_source(&policy);
    }
});
