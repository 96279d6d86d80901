//! How an isolate batches its `audit = "async"` records (the Worker's queue,
//! `src/edge/audit_log.rs`), pure.
//!
//! Each append is one Durable Object call and one commit, which cost about the same for one
//! record as for a hundred: most of the log's CPU per request is that per-batch cost divided
//! by the batch size (docs/performance.md, "Async decision log: where the time went"). So a
//! flush gathers: it waits [`STEP`], and again while fewer than [`TARGET`] records are queued,
//! until [`MAX_WAIT`]; then it takes the whole queue and sends it in batches of at most
//! [`MAX_BATCH`] records and [`MAX_BATCH_BYTES`] bytes (one row each in the log). A busy
//! isolate sends every few hundred milliseconds or sooner; a quiet one at most [`MAX_WAIT`]
//! after its first record: that, plus one round trip, is the loss window.

use std::time::Duration;

pub use super::sequencer::MAX_BATCH;

/// How long a flush waits before it looks at the queue, and between two looks.
pub const STEP: Duration = Duration::from_millis(100);
/// A flush stops gathering once this many records are queued.
pub const TARGET: usize = 256;
/// ... or once it has waited this long.
pub const MAX_WAIT: Duration = Duration::from_millis(500);
/// Longest append body (the origin line and the records, one per line): its records are stored
/// as one row, well within a Durable Object's row limit (2 MB).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Whether a flush that has waited `waited` with `queued` records in the queue waits another
/// [`STEP`].
pub fn gather_more(queued: usize, waited: Duration) -> bool {
    queued < TARGET && waited < MAX_WAIT
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
    fn a_flush_gathers_until_the_target_or_the_longest_wait() {
        assert!(gather_more(1, STEP));
        assert!(gather_more(TARGET - 1, MAX_WAIT - STEP));
        assert!(!gather_more(TARGET, STEP));
        assert!(!gather_more(1, MAX_WAIT));
        // The steps reach the longest wait exactly: a flush waits at most MAX_WAIT.
        let mut waited = Duration::ZERO;
        let mut steps = 0;
        loop {
            waited += STEP;
            steps += 1;
            if !gather_more(0, waited) {
                break;
            }
        }
        assert_eq!((waited, steps), (MAX_WAIT, 5));
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
