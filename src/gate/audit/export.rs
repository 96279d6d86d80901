//! Exports of a range of the decision log, for long-term keeping, and their offline check.
//!
//! An export is NDJSON: a header line, then one line per record in index order.
//!
//! ```text
//! {"export":"attestgate-decisions/1","start":0,"end":3,"tree_size":5,"frontier":[],"consistency":["<b64>",...]}
//! {"index":0,"record":{...}}
//! {"index":1,"record":{...}}
//! {"index":2,"record":{...}}
//! ```
//!
//! `frontier` is the right edge of the tree of the first `start` records (what the records
//! before the range hash to: one hash per set bit of `start`, largest subtree first, standard
//! base64), `consistency` the RFC 9162 consistency proof from the tree of `end` records to the
//! tree of `tree_size` records. With a checkpoint of `tree_size` records, [`verify`] recomputes
//! the root of `end` records from the frontier and the records' leaves and checks the proof
//! against the checkpoint's root: a record edited (one byte), dropped, added or moved changes
//! that root. Indexes are checked first, so a gap or a reordering is named as such.

use base64ct::{Base64, Encoding};
use serde_json::{json, Value};

use super::checkpoint::TreeHead;
use super::merkle::{self, Frontier, Hash, NodeSource, ProofError};

/// The header's `export` value.
pub const FORMAT: &str = "attestgate-decisions/1";

/// The header line of an export of records `[start, end)` of a tree of `tree_size` records.
pub fn header<S: NodeSource>(
    src: &S,
    start: u64,
    end: u64,
    tree_size: u64,
) -> Result<String, ProofError<S::Error>> {
    if start > end || end > tree_size {
        return Err(ProofError::OutOfRange);
    }
    let frontier = Frontier::load(src, start)?;
    let proof = merkle::consistency_proof(src, end, tree_size)?;
    let b64 = |hs: &[Hash]| -> Vec<String> { hs.iter().map(|h| super::std_b64(h)).collect() };
    Ok(json!({
        "export": FORMAT,
        "start": start,
        "end": end,
        "tree_size": tree_size,
        "frontier": b64(&frontier.hashes()),
        "consistency": b64(&proof),
    })
    .to_string())
}

/// One record line: the index and the canonical record text (a JSON object).
pub fn line(index: u64, record: &str) -> String {
    format!("{{\"index\":{index},\"record\":{record}}}")
}

/// Why an export was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// Line `n` (1-based) is not what the format says.
    Malformed(usize),
    /// The record at line `n` has index `found` where `expected` was due.
    Gap {
        line: usize,
        expected: u64,
        found: u64,
    },
    /// Fewer or more records than the header's range.
    Count { expected: u64, found: u64 },
    /// The header's tree size is not the checkpoint's.
    WrongCheckpoint,
    /// The records do not hash to the checkpoint's tree: something was edited.
    RootMismatch,
}

/// What a verified export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub start: u64,
    pub end: u64,
}

fn hashes(v: &Value) -> Option<Vec<Hash>> {
    v.as_array()?
        .iter()
        .map(|h| {
            Base64::decode_vec(h.as_str()?)
                .ok()
                .and_then(|b| b.try_into().ok())
        })
        .collect()
}

/// Check an export against a verified checkpoint `head`.
pub fn verify(text: &str, head: &TreeHead) -> Result<Verified, ExportError> {
    let mut lines = text.lines();
    let h: Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or(ExportError::Malformed(1))?;
    let num = |name: &str| h.get(name).and_then(Value::as_u64);
    let (Some(start), Some(end), Some(tree_size)) = (num("start"), num("end"), num("tree_size"))
    else {
        return Err(ExportError::Malformed(1));
    };
    if h.get("export").and_then(Value::as_str) != Some(FORMAT) || start > end || end > tree_size {
        return Err(ExportError::Malformed(1));
    }
    if tree_size != head.size {
        return Err(ExportError::WrongCheckpoint);
    }
    let frontier = h.get("frontier").and_then(hashes);
    let proof = h.get("consistency").and_then(hashes);
    let (Some(frontier), Some(proof)) = (frontier, proof) else {
        return Err(ExportError::Malformed(1));
    };
    let mut tree = Frontier::from_hashes(start, &frontier).ok_or(ExportError::Malformed(1))?;
    let mut scratch = Vec::new();
    let mut expected = start;
    for (i, l) in lines.enumerate() {
        let n = i + 2;
        if l.is_empty() {
            return Err(ExportError::Malformed(n));
        }
        let v: Value = serde_json::from_str(l).map_err(|_| ExportError::Malformed(n))?;
        let index = v
            .get("index")
            .and_then(Value::as_u64)
            .ok_or(ExportError::Malformed(n))?;
        if index != expected {
            return Err(ExportError::Gap {
                line: n,
                expected,
                found: index,
            });
        }
        let record = v
            .get("record")
            .filter(|r| r.is_object())
            .ok_or(ExportError::Malformed(n))?;
        let canonical = super::jcs::to_string(record);
        scratch.clear();
        tree.append(merkle::leaf_hash(canonical.as_bytes()), &mut scratch)
            .ok_or(ExportError::Malformed(n))?;
        expected += 1;
    }
    if expected != end {
        return Err(ExportError::Count {
            expected: end - start,
            found: expected - start,
        });
    }
    if !merkle::verify_consistency(end, tree_size, &tree.root(), &head.root, &proof) {
        return Err(ExportError::RootMismatch);
    }
    Ok(Verified { start, end })
}
