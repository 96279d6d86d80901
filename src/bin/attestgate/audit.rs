//! `attestgate audit`: offline checks of the decision log (issue 17), with nothing but files an
//! auditor was given and the gateway's published JWKS.
//!
//! ```text
//! attestgate audit verify --jwks FILE --checkpoint FILE
//!                         [--record FILE --inclusion FILE]
//!                         [--old-checkpoint FILE --consistency FILE]
//!                         [--export FILE]
//! attestgate audit policy-hash [DIR]
//! ```
//!
//! - the checkpoint (a C2SP signed note, `GET /.well-known/attestgate/log/checkpoint`) must carry
//!   a valid signature by one of the JWKS keys, named by its origin;
//! - `--record` (`GET .../log/record/N`) and `--inclusion` (`GET .../log/inclusion/N/SIZE`, SIZE the
//!   checkpoint's): the record's canonical form hashes, with the proof, to the checkpoint's root;
//! - `--old-checkpoint` and `--consistency` (`GET .../log/consistency/OLD/NEW`): the older signed
//!   checkpoint is a prefix of the newer one (nothing was removed or rewritten in between);
//! - `--export` (`GET .../log/export/START/END`): no record missing, added, moved or edited.
//!
//! Every check that was asked for must pass; the exit status is 1 otherwise. `policy-hash`
//! prints the `policy` value records carry for a policy folder (compiled as the build does).

use std::process::ExitCode;

use base64ct::{Base64, Encoding};
use serde_json::Value;

use attestgate::gate::audit::checkpoint::{self, TreeHead};
use attestgate::gate::audit::merkle::{self, Hash};
use attestgate::gate::audit::{export, jcs, record};
use attestgate::jose::Key;

use crate::usage;

pub fn audit(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("verify") => verify(args.get(1..).unwrap_or_default()),
        Some("policy-hash") => {
            let dir = args.get(1).map_or("policies", String::as_str);
            match crate::check::load(dir) {
                Ok(policy) => {
                    println!("{}", record::policy_hash(&policy.to_compiled()));
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        _ => usage("audit needs a verb: verify or policy-hash"),
    }
}

#[derive(Default)]
struct Files {
    jwks: Option<String>,
    checkpoint: Option<String>,
    old_checkpoint: Option<String>,
    consistency: Option<String>,
    record: Option<String>,
    inclusion: Option<String>,
    export: Option<String>,
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("FAIL: {message}");
    ExitCode::FAILURE
}

fn verify(args: &[String]) -> ExitCode {
    let mut files = Files::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--jwks" => &mut files.jwks,
            "--checkpoint" => &mut files.checkpoint,
            "--old-checkpoint" => &mut files.old_checkpoint,
            "--consistency" => &mut files.consistency,
            "--record" => &mut files.record,
            "--inclusion" => &mut files.inclusion,
            "--export" => &mut files.export,
            other => return usage(&format!("unknown option {other:?}")),
        };
        let Some(value) = it.next() else {
            return usage(&format!("{flag} needs a file"));
        };
        *slot = Some(value.clone());
    }
    match run(&files) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn keys(jwks: &str) -> Result<Vec<Key>, String> {
    let v: Value = serde_json::from_str(jwks).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let keys: Vec<Key> = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no \"keys\" array")?
        .iter()
        .filter_map(|k| Key::from_jwk(k).ok())
        .collect();
    if keys.is_empty() {
        return Err("the JWKS has no usable key".into());
    }
    Ok(keys)
}

fn hashes(v: &Value, name: &str) -> Result<Vec<Hash>, String> {
    v.get(name)
        .and_then(Value::as_array)
        .ok_or(format!("no {name:?} array"))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|s| Base64::decode_vec(s).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or(format!(
                    "{name:?} holds something that is not a base64 SHA-256 hash"
                ))
        })
        .collect()
}

fn num(v: &Value, name: &str) -> Result<u64, String> {
    v.get(name)
        .and_then(Value::as_u64)
        .ok_or(format!("no {name:?} number"))
}

fn signed(note: &str, keys: &[Key], what: &str) -> Result<TreeHead, String> {
    let head = checkpoint::verify(note, keys)
        .map_err(|e| format!("{what}: its signature does not verify with the JWKS ({e:?})"))?;
    println!(
        "ok: {what} {} size {} root {} is signed by the gateway key",
        head.origin,
        head.size,
        Base64::encode_string(&head.root)
    );
    Ok(head)
}

fn run(f: &Files) -> Result<(), String> {
    let jwks = read(f.jwks.as_deref().ok_or("--jwks FILE is required")?)?;
    let keys = keys(&jwks)?;
    let head = signed(
        &read(
            f.checkpoint
                .as_deref()
                .ok_or("--checkpoint FILE is required")?,
        )?,
        &keys,
        "checkpoint",
    )?;

    match (&f.record, &f.inclusion) {
        (Some(rec), Some(proof)) => {
            let line: Value = serde_json::from_str(&read(rec)?)
                .map_err(|e| format!("the record file is not JSON: {e}"))?;
            let index = num(&line, "index")?;
            let record = line
                .get("record")
                .ok_or("the record file has no \"record\"")?;
            let leaf = merkle::leaf_hash(jcs::to_string(record).as_bytes());
            let proof: Value = serde_json::from_str(&read(proof)?)
                .map_err(|e| format!("the inclusion proof is not JSON: {e}"))?;
            if num(&proof, "index")? != index || num(&proof, "size")? != head.size {
                return Err(format!(
                    "the inclusion proof is not for record {index} in the checkpoint's tree of {}",
                    head.size
                ));
            }
            let path = hashes(&proof, "proof")?;
            if !merkle::verify_inclusion(index, head.size, &leaf, &path, &head.root) {
                return Err(format!(
                    "record {index} is NOT in the checkpoint's tree (edited, or not this log)"
                ));
            }
            println!(
                "ok: record {index} is included in the tree of {}",
                head.size
            );
        }
        (None, None) => {}
        _ => return Err("--record and --inclusion go together".into()),
    }

    match (&f.old_checkpoint, &f.consistency) {
        (Some(old), Some(proof)) => {
            let old = signed(&read(old)?, &keys, "older checkpoint")?;
            let proof: Value = serde_json::from_str(&read(proof)?)
                .map_err(|e| format!("the consistency proof is not JSON: {e}"))?;
            if num(&proof, "old")? != old.size || num(&proof, "new")? != head.size {
                return Err("the consistency proof is not between these two checkpoints".into());
            }
            let path = hashes(&proof, "proof")?;
            if old.origin != head.origin
                || !merkle::verify_consistency(old.size, head.size, &old.root, &head.root, &path)
            {
                return Err(format!(
                    "the checkpoints of {} and {} records are NOT consistent: the log was rewritten",
                    old.size, head.size
                ));
            }
            println!(
                "ok: the tree of {} records extends the tree of {} (append-only)",
                head.size, old.size
            );
        }
        (None, None) => {}
        _ => return Err("--old-checkpoint and --consistency go together".into()),
    }

    if let Some(path) = &f.export {
        let text = read(path)?;
        let done = export::verify(&text, &head).map_err(|e| format!("the export: {e:?}"))?;
        println!(
            "ok: the export holds records {}..{} with no gap or edit",
            done.start, done.end
        );
    }
    Ok(())
}
