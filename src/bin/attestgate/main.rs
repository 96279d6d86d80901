//! `attestgate`: the command-line tool for API owners and operators.
//!
//! ```text
//! attestgate check [DIR]
//! attestgate explain METHOD URL [--dir DIR] [--token NAME=JWT ...] [--header NAME=VALUE ...]
//!                    [--jwks NAME=FILE ...] [--secret SECRET=BASE64 ...] [--now UNIX]
//! ```
//!
//! Install with `cargo install --path .` (or run with `cargo run --bin attestgate --`). Both
//! verbs run the gateway's own code through the library API ([`attestgate::api`]): `check`
//! compiles the folder exactly as the Worker's build does; `explain` decides the request with the
//! gateway's decision pipeline and error mapping.

#[cfg(not(target_arch = "wasm32"))]
mod audit;
#[cfg(not(target_arch = "wasm32"))]
mod check;
#[cfg(not(target_arch = "wasm32"))]
mod deny;
#[cfg(not(target_arch = "wasm32"))]
mod explain;
#[cfg(not(target_arch = "wasm32"))]
mod intent;
mod receipt;
mod upstream;
// Issue 18: the mask part of `explain`.
mod mask;

use std::process::ExitCode;

const USAGE: &str = "usage:
  attestgate check [DIR]
  attestgate audit verify --jwks FILE --checkpoint FILE [--record FILE --inclusion FILE]
                   [--old-checkpoint FILE --consistency FILE] [--export FILE]
  attestgate audit policy-hash [DIR]
  attestgate explain METHOD URL [--dir DIR] [--token NAME=JWT ...] [--header NAME=VALUE ...]
                     [--jwks NAME=FILE ...] [--secret SECRET=BASE64 ...] [--now UNIX]

  check    compile the policy folder (default: policies) as the Worker's build does, and list
           the gateway, providers and routes; exit status 1 on any policy error
  audit    the decision log, offline: verify a checkpoint's signature against the gateway's
           JWKS, a record's inclusion, two checkpoints' consistency, an export's completeness;
           policy-hash prints the `policy` value the records of a policy folder carry
  explain  decide METHOD URL as the gateway would, with the gateway's own pipeline:
           --token NAME=JWT    a token for provider NAME, placed where that provider reads it
           --header NAME=VALUE any other request header (DPoP proofs, bound headers)
           --jwks NAME=FILE    the keys of provider NAME (a JWKS file), so signatures are verified
           --secret SECRET=B64 the value of the Worker secret SECRET that an HMAC provider
                               names (`secret`/`secrets`), base64
           --body FILE         the request body (issue 15: intent rules, body caps)
           --now UNIX          the clock (default: now)
           Providers with inline keys are verified too. Without keys for a provider, its
           tokens are checked in every way but the signature, and the output says so.
  attestgate deny add --kind KIND (--value V | --iss I --sub S | --iss I --jti J | --iss I --sid S)
                      --reason TEXT [--fence UNIX]
  attestgate deny list [--limit N] [--after ID]
  attestgate deny get ID | attestgate deny rm ID
           the deny list's operator API; --gateway URL (or ATTESTGATE_GATEWAY), the operator's
           token in ATTESTGATE_OPERATOR_TOKEN or --token-file FILE (sent by curl)";

#[cfg(not(target_arch = "wasm32"))]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") => check::check(&args[1..]),
        Some("audit") => audit::audit(&args[1..]),
        Some("explain") => explain::explain(&args[1..]),
        Some("deny") => deny::deny(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::FAILURE
        }
    }
}

/// The tool is native only; the Worker build (wasm32) compiles the library, never this.
#[cfg(target_arch = "wasm32")]
fn main() -> ExitCode {
    ExitCode::FAILURE
}

/// Print `message` and the usage, and fail.
pub fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}\n{USAGE}");
    ExitCode::FAILURE
}
