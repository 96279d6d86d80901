//! The decision log's cost per append as it grows (issue 17): the sequencer
//! (`gate::audit::sequencer`) over an in-memory store that counts its row reads and writes, as
//! the Durable Object's SQLite would see them. Prints, around 10k, 100k and 1M records, the
//! time per record (batches of `BATCH`) and the rows read and written per record: flat, since
//! the right edge of the tree is kept in memory and a batch writes one row of records, the tiles
//! it changed (`gate::audit::tiles`: one, and one more every 256 records) and the size.
//!
//! `cargo run --release --example audit_append` (one run: a few seconds natively).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

use attestgate::gate::audit::checkpoint::TreeHead;
use attestgate::gate::audit::merkle::{self, Hash};
use attestgate::gate::audit::sequencer::{LogStore, Nodes, Sequencer};
use attestgate::gate::audit::tiles::{TileSource, TileWrite};

const BATCH: usize = 32;

#[derive(Default)]
struct Store {
    size: Cell<u64>,
    batches: RefCell<HashMap<u64, String>>,
    tiles: RefCell<HashMap<(u8, u64), Vec<Hash>>>,
    reads: Cell<u64>,
    writes: Cell<u64>,
}

impl TileSource for Store {
    type Error = ();
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<Hash>>, ()> {
        self.reads.set(self.reads.get() + 1);
        Ok(self.tiles.borrow().get(&(level, index)).cloned())
    }
}

impl LogStore for Store {
    fn size(&self) -> Result<u64, ()> {
        self.reads.set(self.reads.get() + 1);
        Ok(self.size.get())
    }
    fn commit(
        &self,
        first: u64,
        records: &[&str],
        tiles: &[TileWrite],
        size: u64,
    ) -> Result<(), ()> {
        // As the Durable Object stores them: one row for the batch's records (one per line).
        self.batches.borrow_mut().insert(first, records.join("\n"));
        let mut t = self.tiles.borrow_mut();
        for (level, index, hashes) in tiles {
            t.insert((*level, *index), hashes.clone());
        }
        self.writes
            .set(self.writes.get() + 1 + tiles.len() as u64 + 1);
        self.size.set(size);
        Ok(())
    }
    fn last_checkpoint(&self) -> Result<Option<(TreeHead, String)>, ()> {
        Ok(None)
    }
    fn put_checkpoint(&self, _: &TreeHead, _: &str) -> Result<(), ()> {
        Ok(())
    }
}

fn record(i: u64) -> String {
    // About the size of a real decision record.
    format!(
        "{{\"decision\":{{\"verdict\":\"allow\"}},\"kind\":\"decision\",\"request\":{{\"method\":\"POST\",\"url\":\"https://api.example.com/v1/payments/{i}\"}},\"request_id\":\"r{i:012}\",\"subject\":\"user:alice\",\"time_ms\":{},\"tokens\":[{{\"jti\":\"j{i}\",\"provider\":\"agent\",\"sha256\":\"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU\",\"verified\":true}}],\"v\":1}}",
        1_700_000_000_000u64 + i
    )
}

fn main() {
    let store = Store::default();
    let mut seq = Sequencer::new();
    let mut n = 0u64;
    println!("records   ns/record (batch {BATCH})   rows read/record   rows written/record   inclusion proof reads");
    for mark in [10_000u64, 100_000, 1_000_000] {
        // Fill up to just before the mark, then measure a window of 8192 appends there.
        let batch_of =
            |from: u64| -> Vec<String> { (from..from + BATCH as u64).map(record).collect() };
        while n + 4096 < mark {
            seq.append(&store, &batch_of(n)).unwrap();
            n += BATCH as u64;
        }
        let window: Vec<Vec<String>> = (0..8192 / BATCH)
            .map(|b| batch_of(n + (b * BATCH) as u64))
            .collect();
        let (r0, w0) = (store.reads.get(), store.writes.get());
        let t = Instant::now();
        for b in &window {
            seq.append(&store, b).unwrap();
        }
        let ns = t.elapsed().as_nanos() as f64 / 8192.0;
        n += 8192;
        let reads = (store.reads.get() - r0) as f64 / 8192.0;
        let writes = (store.writes.get() - w0) as f64 / 8192.0;
        let r1 = store.reads.get();
        let proof = merkle::inclusion_proof(&Nodes::new(&store), n / 3, n).unwrap();
        let proof_reads = store.reads.get() - r1;
        assert_eq!(proof.len() as u32, 64 - (n - 1).leading_zeros());
        println!("{n:>9}   {ns:>10.0}               {reads:>6.3}             {writes:>6.3}                {proof_reads}");
    }
}
