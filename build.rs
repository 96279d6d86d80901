//! Compiles the route policies into the Worker (SPEC §1): reads every `*.toml` of the policy
//! folder (`ATTESTGATE_POLICY_DIR`, default `policies`), checks it with the policy compiler and
//! writes the compiled policy (`Policy::to_compiled`, a compact binary form) as
//! `$OUT_DIR/policy.bin`, which `src/lib.rs` embeds as `EMBEDDED_POLICY`: the Worker reads it
//! without compiling again.
//! A policy error fails the build, naming file, route id and field.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=ATTESTGATE_POLICY_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    selftest_cfg();
    let shown = std::env::var("ATTESTGATE_POLICY_DIR").unwrap_or_else(|_| "policies".to_owned());
    // Relative folders are relative to the package root (where build scripts run).
    let dir = PathBuf::from(&shown);
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let absolute = match &manifest_dir {
        Some(root) if dir.is_relative() => root.join(&dir),
        _ => dir.clone(),
    };

    // Rebuild when the folder changes (files added or removed) or any policy file changes.
    println!("cargo:rerun-if-changed={}", absolute.display());
    if let Ok(files) = attestgate_policy::policy_files(&absolute) {
        for file in files {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }

    // Load through the relative path when possible so that messages say `policies/routes.toml`.
    let load_from: &Path = if manifest_dir.is_some() && dir.is_relative() {
        match std::env::current_dir() {
            Ok(cwd) if manifest_dir.as_deref() == Some(cwd.as_path()) => &dir,
            _ => &absolute,
        }
    } else {
        &dir
    };

    match attestgate_policy::load_dir(load_from) {
        Ok((policy, warnings)) => {
            deny_cfg(
                policy.deny().is_some()
                    || policy.operator().is_some()
                    || policy.shared_signals().is_some()
                    || policy.providers().iter().any(|p| p.status_list.is_some()),
            );
            for w in &warnings {
                println!("cargo:warning={w}");
            }
            let Some(out_dir) = std::env::var_os("OUT_DIR") else {
                panic!("OUT_DIR is not set (build.rs must run under cargo)");
            };
            let out = Path::new(&out_dir).join("policy.bin");
            if let Err(e) = std::fs::write(&out, policy.to_compiled()) {
                panic!("cannot write {}: {e}", out.display());
            }
        }
        Err(errors) => {
            for e in &errors {
                println!("cargo:warning=policy error: {e}");
            }
            let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            panic!(
                "the route policy in {shown} does not compile ({} error{}):\n{}\n(set ATTESTGATE_POLICY_DIR to build another policy folder)",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                list.join("\n")
            );
        }
    }
}

/// Issue 16: `--cfg attestgate_deny` compiles the deny list's enforcement, the operator API,
/// token status lists and their clients into the Worker only when the policy has `[deny]`,
/// `[operator]` or a provider with `status_list` (the
/// Worker of a policy without them stays as small as before: docs/performance.md, "Size").
/// Native builds (tests, CLI, benches) always have it.
fn deny_cfg(used: bool) {
    println!("cargo:rustc-check-cfg=cfg(attestgate_deny)");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32");
    if used || !wasm {
        println!("cargo:rustc-cfg=attestgate_deny");
    }
}

/// `--cfg attestgate_selftest` exactly when `ATTESTGATE_SELFTEST=1`: the test-only WebCrypto
/// self-test endpoint (`src/edge/selftest.rs`). The end-to-end harness sets it; nothing that
/// builds a deployable Worker does, so production builds never contain the endpoint.
fn selftest_cfg() {
    println!("cargo:rustc-check-cfg=cfg(attestgate_selftest)");
    println!("cargo:rerun-if-env-changed=ATTESTGATE_SELFTEST");
    if std::env::var("ATTESTGATE_SELFTEST").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=attestgate_selftest");
        println!(
            "cargo:warning=ATTESTGATE_SELFTEST=1: this build serves POST /__attestgate/selftest/verify (tests only, never deploy it)"
        );
    }
}
