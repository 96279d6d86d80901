//! The decision log's sequencer natively (issue 17 items 2 and 5): appends over a store that
//! can fail half-way through a batch (a restart mid-batch), checkpoints that are never signed
//! when inconsistent, proofs from the stored nodes, and exports whose tampering is caught.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use attestgate::gate::audit::checkpoint::{self, TreeHead};
use attestgate::gate::audit::export::{self, ExportError};
use attestgate::gate::audit::merkle::{self, Hash};
use attestgate::gate::audit::sequencer::{LogStore, Nodes, SeqError, Sequencer};
use attestgate::gate::audit::tiles::{TileSource, TileWrite};
use attestgate::jose::{block_on_ready, NativeSigner, SigningKey};

/// A store in memory that can be told to fail after `n` more row writes (the process dying
/// in the middle of a batch: the rows written so far stay). Its rows are those of the Durable
/// Object: one per batch of records (keyed by its first index), one per tile, the size.
#[derive(Default)]
struct Store {
    size: Cell<u64>,
    batches: RefCell<BTreeMap<u64, Vec<String>>>,
    tiles: RefCell<BTreeMap<(u8, u64), Vec<Hash>>>,
    last: RefCell<Option<(TreeHead, String)>>,
    fail_after: Cell<Option<usize>>,
}

#[derive(Debug, PartialEq)]
struct Crash;

impl Store {
    fn write(&self) -> Result<(), Crash> {
        match self.fail_after.get() {
            Some(0) => Err(Crash),
            Some(n) => {
                self.fail_after.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Store {
    /// Record `index` as a read finds it: in the last batch row starting at or before it.
    fn record(&self, index: u64) -> Option<String> {
        let batches = self.batches.borrow();
        let (first, rows) = batches.range(..=index).next_back()?;
        rows.get(usize::try_from(index - first).ok()?).cloned()
    }
}

impl TileSource for Store {
    type Error = Crash;
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<Hash>>, Crash> {
        Ok(self.tiles.borrow().get(&(level, index)).cloned())
    }
}

impl LogStore for Store {
    fn size(&self) -> Result<u64, Crash> {
        Ok(self.size.get())
    }
    fn commit(
        &self,
        first: u64,
        records: &[&str],
        tiles: &[TileWrite],
        size: u64,
    ) -> Result<(), Crash> {
        self.write()?;
        self.batches
            .borrow_mut()
            .insert(first, records.iter().map(|r| r.to_string()).collect());
        for (level, index, hashes) in tiles {
            self.write()?;
            self.tiles
                .borrow_mut()
                .insert((*level, *index), hashes.clone());
        }
        self.write()?;
        self.size.set(size);
        Ok(())
    }
    fn last_checkpoint(&self) -> Result<Option<(TreeHead, String)>, Crash> {
        Ok(self.last.borrow().clone())
    }
    fn put_checkpoint(&self, head: &TreeHead, note: &str) -> Result<(), Crash> {
        *self.last.borrow_mut() = Some((head.clone(), note.to_owned()));
        Ok(())
    }
}

fn rec(i: usize) -> String {
    format!("{{\"kind\":\"decision\",\"n\":{i},\"v\":1}}")
}

fn key() -> SigningKey {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "gw",
        "x": attestgate::jose::b64::encode(sk.verifying_key().as_bytes()),
        "d": attestgate::jose::b64::encode(&[5; 32])});
    SigningKey::from_jwk(&jwk.to_string()).unwrap()
}

fn checkpoint_now(seq: &mut Sequencer, store: &Store) -> Result<Option<String>, SeqError<Crash>> {
    let Some(head) = seq.prepare_checkpoint(store, "log.example/decisions")? else {
        return Ok(None);
    };
    let note = block_on_ready(async {
        Ok::<_, attestgate::jose::Error>(
            checkpoint::sign(&head, &key(), &NativeSigner)
                .await
                .unwrap(),
        )
    })
    .unwrap();
    seq.accept_checkpoint(store, &head, &note)?;
    Ok(Some(note))
}

#[test]
fn a_restart_mid_batch_loses_no_acknowledged_record_and_reuses_no_index() {
    let store = Store::default();
    let mut seq = Sequencer::new();
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut n = 0;
    for round in 0..30 {
        let batch: Vec<String> = (0..1 + round % 7)
            .map(|_| {
                n += 1;
                rec(n)
            })
            .collect();
        // Every third batch dies after a few row writes, as a restart would cut it.
        if round % 3 == 2 {
            store.fail_after.set(Some((round / 3) % 3));
            assert_eq!(seq.append(&store, &batch), Err(SeqError::Store(Crash)));
            store.fail_after.set(None);
            // Every other failure the object restarts (nothing in memory survives); otherwise the
            // same sequencer goes on after the failed write.
            if round % 2 == 0 {
                seq = Sequencer::new();
            }
            continue;
        }
        let done = seq.append(&store, &batch).unwrap();
        for (i, r) in batch.into_iter().enumerate() {
            acknowledged.push((done.first + i as u64, r));
        }
    }
    // Indexes are 0..k exactly once, and each acknowledged record is at its index.
    let indexes: Vec<u64> = acknowledged.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, (0..acknowledged.len() as u64).collect::<Vec<_>>());
    assert_eq!(store.size.get(), acknowledged.len() as u64);
    let mut tree = merkle::MemoryTree::new();
    for (i, r) in &acknowledged {
        assert_eq!(store.record(*i).as_ref(), Some(r));
        tree.push(r.as_bytes());
    }
    // The stored tree is the tree of the acknowledged records, and proofs verify.
    let nodes = Nodes::new(&store);
    let size = store.size.get();
    assert_eq!(merkle::root(&nodes, size).unwrap(), tree.root());
    for (i, r) in &acknowledged {
        let proof = merkle::inclusion_proof(&nodes, *i, size).unwrap();
        assert!(merkle::verify_inclusion(
            *i,
            size,
            &merkle::leaf_hash(r.as_bytes()),
            &proof,
            &tree.root()
        ));
    }
}

#[test]
fn checkpoints_extend_each_other_and_an_inconsistent_head_is_never_signed() {
    let store = Store::default();
    let mut seq = Sequencer::new();
    let mut notes = Vec::new();
    for i in 0..5 {
        seq.append(&store, &[rec(i), rec(100 + i)]).unwrap();
        notes.push(checkpoint_now(&mut seq, &store).unwrap().unwrap());
    }
    // Nothing new: no new checkpoint.
    assert_eq!(checkpoint_now(&mut seq, &store).unwrap(), None);
    let keys = [key().public_key().clone()];
    let heads: Vec<TreeHead> = notes
        .iter()
        .map(|n| checkpoint::verify(n, &keys).unwrap())
        .collect();
    for pair in heads.windows(2) {
        let proof =
            merkle::consistency_proof(&Nodes::new(&store), pair[0].size, pair[1].size).unwrap();
        assert!(merkle::verify_consistency(
            pair[0].size,
            pair[1].size,
            &pair[0].root,
            &pair[1].root,
            &proof
        ));
    }
    // Someone rewrites history in the store: an old record's leaf (every node above it is
    // recomputed from the tile, so the forged tree is consistent in itself). The next head is
    // refused, never signed, and the last signed checkpoint stays, whether the sequencer kept
    // its frontier or restarted and read the forged one.
    // (After the last append: an append rewrites the partial tile it extends from the
    // sequencer's own copy, which would undo the forgery.)
    seq.append(&store, &[rec(9)]).unwrap();
    store.tiles.borrow_mut().get_mut(&(0, 0)).unwrap()[0] = merkle::leaf_hash(b"forged");
    assert_eq!(
        checkpoint_now(&mut seq, &store),
        Err(SeqError::Inconsistent)
    );
    let mut restarted = Sequencer::new();
    assert_eq!(
        checkpoint_now(&mut restarted, &store),
        Err(SeqError::Inconsistent)
    );
    assert_eq!(
        store.last.borrow().as_ref().map(|(_, n)| n.clone()),
        notes.last().cloned()
    );
}

fn export_of(store: &Store, start: u64, end: u64) -> String {
    let size = store.size.get();
    let mut out = export::header(&Nodes::new(store), start, end, size).unwrap();
    out.push('\n');
    for i in start..end {
        out.push_str(&export::line(i, &store.record(i).unwrap()));
        out.push('\n');
    }
    out
}

#[test]
fn a_tampered_export_is_caught() {
    let store = Store::default();
    let mut seq = Sequencer::new();
    for i in 0..13 {
        seq.append(&store, &[rec(i)]).unwrap();
    }
    let note = checkpoint_now(&mut seq, &store).unwrap().unwrap();
    let head = checkpoint::verify(&note, &[key().public_key().clone()]).unwrap();
    for (start, end) in [(0, 13), (0, 5), (3, 9), (8, 13), (4, 4)] {
        let text = export_of(&store, start, end);
        assert_eq!(
            export::verify(&text, &head),
            Ok(export::Verified { start, end }),
            "{start}..{end}"
        );
    }
    let text = export_of(&store, 2, 11);
    let lines: Vec<&str> = text.lines().collect();
    // Flip one byte of a record (its value changes): the root no longer matches.
    let flipped = text.replacen("\"n\":5", "\"n\":4", 1);
    assert_ne!(flipped, text);
    assert_eq!(
        export::verify(&flipped, &head),
        Err(ExportError::RootMismatch)
    );
    // Flip every byte of one record line in turn (those that leave it valid JSON with the same
    // index): every one is caught.
    let target = lines[4];
    for at in 0..target.len() {
        let mut bytes = target.as_bytes().to_vec();
        bytes[at] ^= 0x01;
        let Ok(edited) = String::from_utf8(bytes) else {
            continue;
        };
        let mut all = lines.clone();
        all[4] = &edited;
        let t = all.join("\n") + "\n";
        assert!(export::verify(&t, &head).is_err(), "byte {at}: {edited}");
    }
    // Drop one record.
    let mut dropped = lines.clone();
    dropped.remove(5);
    assert_eq!(
        export::verify(&(dropped.join("\n") + "\n"), &head),
        Err(ExportError::Gap {
            line: 6,
            expected: 6,
            found: 7
        })
    );
    // Drop the last one.
    let short = lines[..lines.len() - 1].join("\n") + "\n";
    assert_eq!(
        export::verify(&short, &head),
        Err(ExportError::Count {
            expected: 9,
            found: 8
        })
    );
    // Reorder two.
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    assert!(matches!(
        export::verify(&(swapped.join("\n") + "\n"), &head),
        Err(ExportError::Gap { .. })
    ));
    // Reorder two and renumber them: the indexes look right, the root does not.
    let renumbered = text
        .replacen("{\"index\":4,", "{\"index\":X,", 1)
        .replacen("{\"index\":5,", "{\"index\":4,", 1)
        .replacen("{\"index\":X,", "{\"index\":5,", 1);
    let mut rl: Vec<&str> = renumbered.lines().collect();
    rl.swap(3, 4);
    assert_eq!(
        export::verify(&(rl.join("\n") + "\n"), &head),
        Err(ExportError::RootMismatch)
    );
    // Against another checkpoint size.
    seq.append(&store, &[rec(99)]).unwrap();
    let later = checkpoint::verify(
        &checkpoint_now(&mut seq, &store).unwrap().unwrap(),
        &[key().public_key().clone()],
    )
    .unwrap();
    assert_eq!(
        export::verify(&text, &later),
        Err(ExportError::WrongCheckpoint)
    );
}

#[test]
fn a_log_whose_tiles_are_missing_takes_no_append() {
    // A committed size without the tiles under it (a store of another layout, or one that lost
    // rows): the sequencer cannot extend the tree, so it refuses, and no index is handed out.
    let store = Store::default();
    store.size.set(5);
    let mut seq = Sequencer::new();
    assert_eq!(seq.append(&store, &[rec(1)]), Err(SeqError::Corrupt));
    assert_eq!(store.size.get(), 5);
    assert!(store.batches.borrow().is_empty());
}

/// The async loss window the README promises is the one the queue keeps (session 7: 1 s and
/// 512 records, from 500 ms and 256): the README's durability paragraph names both bounds of
/// `gate::audit::batch`, so neither changes without the other.
#[test]
fn the_readme_states_the_async_flush_bounds() {
    use attestgate::gate::audit::batch::{MAX_BATCH, MAX_WAIT, TARGET};
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let wait = match MAX_WAIT.as_millis() {
        ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{ms} ms"),
    };
    let sent = format!("sent once it holds {TARGET} records, else {wait} after its first record");
    assert!(readme.contains(&sent), "README lacks {sent:?}");
    let busy = format!("a busy isolate: its last {TARGET} records");
    assert!(readme.contains(&busy), "README lacks {busy:?}");
    // A send at the target is one append.
    const { assert!(TARGET <= MAX_BATCH) };
}
