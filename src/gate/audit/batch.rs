//! How an isolate batches its `audit = "async"` records (the Worker's queue,
//! `src/edge/audit_log.rs`), pure.
//!
//! Each append is one Durable Object call and one commit, which cost about the same for one
//! record as for a hundred, and each flush waits on one timer, which costs about as much again
//! (docs/performance.md, "Async decision log: where the time went"): most of the log's CPU per
//! request is those per-batch costs divided by the batch size. So the queue is sent when it
//! holds [`TARGET`] records ([`send_now`]), and otherwise [`MAX_WAIT`] after the first record
//! queued since the last send (one timer): a busy isolate sends every `TARGET` records, a quiet
//! one at most `MAX_WAIT` after a record — that, plus one round trip, is the loss window. What
//! is sent goes in batches of at most [`MAX_BATCH`] records and [`MAX_BATCH_BYTES`] bytes
//! ([`split`]: one row each in the log).
//!
//! Measured in situ (session 7, `benches/audit/swap.py`; docs/performance.md, "Async decision
//! log: where the time went (session 7)"): a flush costs up to ~5 ms of the workerd process's
//! CPU whatever its size on a busy machine (the timer, the object call, its commit), a record
//! some 20–40 µs (built, its credential hashed, sent, leaf-hashed, stored); so the CPU a
//! request adds is about `P + F / records per flush`. Hence `MAX_WAIT` 1 s (500 ms before) and `TARGET` 512 (256
//! before): fewer, larger flushes, for a loss window of at most 1 s (and, for a busy isolate,
//! its last 512 records).

use std::time::Duration;

pub use super::sequencer::MAX_BATCH;

/// The queue is sent as soon as it holds this many records (one append: at most [`MAX_BATCH`]) ...
pub const TARGET: usize = 512;
/// ... and at the latest this long after the first record queued since the last send.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// Longest append body (the origin line and the records, one per line): its records are stored
/// as one row, well within a Durable Object's row limit (2 MB).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Whether a queue of `queued` records is sent now (without waiting for [`MAX_WAIT`]).
pub fn send_now(queued: usize) -> bool {
    queued >= TARGET
}

/// `records` in order, cut into batches of at most [`MAX_BATCH`] records and (with the origin
/// line of `origin_len` bytes) [`MAX_BATCH_BYTES`] bytes; a record alone over the byte bound is
/// a batch of its own (the log refuses it).
pub fn split(records: Vec<String>, origin_len: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    let mut bytes = origin_len;
    for record in records {
        let more = 1 + record.len();
        if !batch.is_empty() && (batch.len() == MAX_BATCH || bytes + more > MAX_BATCH_BYTES) {
            out.push(std::mem::take(&mut batch));
            bytes = origin_len;
        }
        bytes += more;
        batch.push(record);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_sent_at_the_target() {
        assert!(!send_now(0));
        assert!(!send_now(TARGET - 1));
        assert!(send_now(TARGET));
        // A send of TARGET records is one append (one row).
        const { assert!(TARGET <= MAX_BATCH) };
    }

    #[test]
    fn batches_keep_the_order_and_their_bounds() {
        let records: Vec<String> = (0..1500).map(|i| format!("{{\"n\":{i}}}")).collect();
        let batches = split(records.clone(), 40);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [512, 512, 476]
        );
        assert_eq!(batches.concat(), records);
        // By bytes: 300 KiB records, three to a batch.
        let big: Vec<String> = (0..7)
            .map(|i| format!("{{\"n\":\"{}\"}}", i.to_string().repeat(300 * 1024)))
            .collect();
        let batches = split(big.clone(), 40);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        for b in &batches {
            let body = 40 + b.iter().map(|r| 1 + r.len()).sum::<usize>();
            assert!(body <= MAX_BATCH_BYTES, "{body}");
        }
        assert_eq!(batches.concat(), big);
        // One record over the bound: alone.
        let huge = vec!["a".repeat(MAX_BATCH_BYTES), "b".into()];
        assert_eq!(split(huge, 40).len(), 2);
        assert!(split(Vec::new(), 40).is_empty());
    }
}
