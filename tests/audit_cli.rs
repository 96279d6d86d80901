//! `attestgate audit verify` as an auditor runs it (issue 17 item 5): files from a log, checked
//! offline against the JWKS; every tampering (one byte flipped, one record dropped, two
//! reordered, a rewritten history, a foreign key) fails with status 1.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64ct::{Base64, Encoding};
use serde_json::json;

use attestgate::gate::audit::checkpoint::{self, TreeHead};
use attestgate::gate::audit::export;
use attestgate::gate::audit::merkle::{self, MemoryTree};
use attestgate::jose::{b64, block_on_ready, NativeSigner, SigningKey};

fn key(seed: u8) -> SigningKey {
    let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    let p = sk.verifying_key().to_sec1_bytes();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": format!("gw-{seed}"),
        "x": b64::encode(&p[1..33]), "y": b64::encode(&p[33..65]), "d": b64::encode(&[seed; 32])});
    SigningKey::from_jwk(&jwk.to_string()).unwrap()
}

fn sign(tree: &MemoryTree, size: u64, key: &SigningKey) -> String {
    let head = TreeHead {
        origin: "audit.example/attestgate/decisions".into(),
        size,
        root: merkle::root(tree, size).unwrap(),
    };
    block_on_ready(async {
        Ok::<_, attestgate::jose::Error>(checkpoint::sign(&head, key, &NativeSigner).await.unwrap())
    })
    .unwrap()
}

fn record(i: u64) -> String {
    format!("{{\"decision\":{{\"verdict\":\"allow\"}},\"kind\":\"decision\",\"request_id\":\"r{i}\",\"v\":1}}")
}

struct Log {
    dir: PathBuf,
    tree: MemoryTree,
    records: Vec<String>,
}

impl Log {
    fn new(name: &str, n: u64) -> Log {
        let dir = std::env::temp_dir().join(format!(
            "attestgate-audit-cli-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut tree = MemoryTree::new();
        let records: Vec<String> = (0..n).map(record).collect();
        for r in &records {
            tree.push(r.as_bytes());
        }
        let log = Log { dir, tree, records };
        log.write(
            "jwks.json",
            &json!({"keys": [key(1).public_jwk()]}).to_string(),
        );
        log
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn export(&self, start: u64, end: u64, size: u64) -> String {
        let mut out = export::header(&self.tree, start, end, size).unwrap() + "\n";
        for i in start..end {
            out += &(export::line(i, &self.records[i as usize]) + "\n");
        }
        out
    }
}

fn verify(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["audit", "verify", "--jwks"];
    let jwks = dir.join("jwks.json").to_string_lossy().into_owned();
    all.push(&jwks);
    all.extend_from_slice(args);
    let out = Command::new(env!("CARGO_BIN_EXE_attestgate"))
        .args(&all)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn checkpoint_inclusion_consistency_and_export_verify() {
    let log = Log::new("ok", 11);
    let cp = log.write("cp.txt", &sign(&log.tree, 11, &key(1)));
    let old = log.write("old.txt", &sign(&log.tree, 6, &key(1)));
    let rec = log.write("rec.json", &export::line(4, &log.records[4]));
    let proof = merkle::inclusion_proof(&log.tree, 4, 11).unwrap();
    let b64s = |p: &[merkle::Hash]| {
        p.iter()
            .map(|h| Base64::encode_string(h))
            .collect::<Vec<_>>()
    };
    let inc = log.write(
        "inc.json",
        &json!({"index": 4, "size": 11, "proof": b64s(&proof)}).to_string(),
    );
    let cproof = merkle::consistency_proof(&log.tree, 6, 11).unwrap();
    let cons = log.write(
        "cons.json",
        &json!({"old": 6, "new": 11, "proof": b64s(&cproof)}).to_string(),
    );
    let exp = log.write("export.ndjson", &log.export(2, 9, 11));
    let (ok, out) = verify(
        &log.dir,
        &[
            "--checkpoint",
            &cp,
            "--record",
            &rec,
            "--inclusion",
            &inc,
            "--old-checkpoint",
            &old,
            "--consistency",
            &cons,
            "--export",
            &exp,
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("record 4 is included") && out.contains("no gap or edit"),
        "{out}"
    );

    // A record edited by one byte is not included.
    let edited = log.write(
        "rec2.json",
        &export::line(4, &log.records[4].replace("r4", "r5")),
    );
    let (ok, out) = verify(
        &log.dir,
        &[
            "--checkpoint",
            &cp,
            "--record",
            &edited,
            "--inclusion",
            &inc,
        ],
    );
    assert!(!ok && out.contains("NOT in the checkpoint"), "{out}");
    // A checkpoint signed by another key, or edited, is refused.
    let foreign = log.write("cp2.txt", &sign(&log.tree, 11, &key(2)));
    let (ok, out) = verify(&log.dir, &["--checkpoint", &foreign]);
    assert!(!ok && out.contains("does not verify"), "{out}");
    let forged = log.write(
        "cp3.txt",
        &std::fs::read_to_string(&cp)
            .unwrap()
            .replacen("\n11\n", "\n12\n", 1),
    );
    assert!(!verify(&log.dir, &["--checkpoint", &forged]).0);
    // History rewritten: an "old" checkpoint of another tree is not a prefix.
    let mut other = MemoryTree::new();
    for i in 0..6 {
        other.push(record(100 + i).as_bytes());
    }
    let rewritten = log.write("old2.txt", &sign(&other, 6, &key(1)));
    let (ok, out) = verify(
        &log.dir,
        &[
            "--checkpoint",
            &cp,
            "--old-checkpoint",
            &rewritten,
            "--consistency",
            &cons,
        ],
    );
    assert!(!ok && out.contains("NOT consistent"), "{out}");
}

#[test]
fn a_tampered_export_fails_flip_drop_reorder() {
    let log = Log::new("tamper", 9);
    let cp = log.write("cp.txt", &sign(&log.tree, 9, &key(1)));
    let good = log.export(0, 9, 9);
    let lines: Vec<&str> = good.lines().collect();
    let check = |name: &str, text: &str| {
        let path = log.write(name, text);
        verify(&log.dir, &["--checkpoint", &cp, "--export", &path])
    };
    assert!(check("good.ndjson", &good).0);
    // One byte flipped in a record.
    let flipped = good.replacen("\"r3\"", "\"r8\"", 1);
    let (ok, out) = check("flip.ndjson", &flipped);
    assert!(!ok && out.contains("RootMismatch"), "{out}");
    // One record dropped.
    let mut dropped = lines.clone();
    dropped.remove(4);
    let (ok, out) = check("drop.ndjson", &(dropped.join("\n") + "\n"));
    assert!(!ok && out.contains("Gap"), "{out}");
    // Two records reordered.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let (ok, out) = check("swap.ndjson", &(swapped.join("\n") + "\n"));
    assert!(!ok && out.contains("Gap"), "{out}");
}
