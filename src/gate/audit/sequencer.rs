//! The sequencer's logic, pure, over a [`LogStore`] (the Durable Object's SQLite natively
//! replaced by memory in the tests).
//!
//! - **Append** ([`Sequencer::append`]): the batch's records get the indexes `size ..
//!   size + n` of the committed size; their leaves and every node they complete are written,
//!   then the new size (the commit marker, last). Anything at or beyond the committed size is
//!   not part of the log: a batch cut short by a restart left only rows that the next batch
//!   overwrites and that no read returns, and since its caller was never answered no index it
//!   held was ever acknowledged. An acknowledged index is never reused: indexes come only from
//!   the committed size.
//! - **Cost per append is flat**: the right edge of the tree ([`Frontier`]) is kept in memory
//!   (read back from `log2 n` nodes after a restart), so an append writes one leaf and on
//!   average one node (two rows) and reads nothing, whatever the size of the log.
//! - **Checkpoints** ([`Sequencer::prepare_checkpoint`], [`Sequencer::accept_checkpoint`]):
//!   before a tree head is signed it is checked against the last signed one: the new size is not
//!   smaller and a consistency proof from the last to the new one, built from the stored nodes,
//!   verifies against both roots. A head that fails is never signed ([`SeqError::Inconsistent`]),
//!   so the log never signs two checkpoints that are inconsistent.

use super::checkpoint::TreeHead;
use super::merkle::{self, Frontier, Hash, NewNode, NodeSource, ProofError};

/// Most records in one append.
pub const MAX_BATCH: usize = 512;

/// The sequencer's storage.
pub trait LogStore {
    type Error;
    /// The committed size.
    fn size(&self) -> Result<u64, Self::Error>;
    /// Node `(level, index)` (level 0: leaf hashes), committed or not: callers only ask for
    /// nodes below the committed size.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error>;
    /// Write the records, then the nodes, then (last) the new committed size.
    fn commit(
        &self,
        first: u64,
        records: &[String],
        nodes: &[NewNode],
        size: u64,
    ) -> Result<(), Self::Error>;
    /// The last signed checkpoint: its head and note.
    fn last_checkpoint(&self) -> Result<Option<(TreeHead, String)>, Self::Error>;
    /// Store a signed checkpoint as the last one.
    fn put_checkpoint(&self, head: &TreeHead, note: &str) -> Result<(), Self::Error>;
}

/// A store seen as the tree's complete nodes.
pub struct Nodes<'a, S>(pub &'a S);

impl<S: LogStore> NodeSource for Nodes<'_, S> {
    type Error = S::Error;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, S::Error> {
        self.0.node(level, index)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqError<E> {
    /// An empty batch or one over [`MAX_BATCH`].
    BadBatch,
    /// The stored tree lacks a node it should have.
    Corrupt,
    /// The head to sign is not consistent with the last signed checkpoint: never signed.
    Inconsistent,
    Store(E),
}

impl<E> From<ProofError<E>> for SeqError<E> {
    fn from(e: ProofError<E>) -> Self {
        match e {
            ProofError::Store(e) => SeqError::Store(e),
            ProofError::OutOfRange | ProofError::Missing => SeqError::Corrupt,
        }
    }
}

/// Where a batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The first record's index; the others follow in order.
    pub first: u64,
    /// The committed size after the batch.
    pub size: u64,
}

/// The sequencer of one log: the frontier, cached in memory.
#[derive(Debug, Default)]
pub struct Sequencer {
    frontier: Option<Frontier>,
}

impl Sequencer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of the committed tree (read from the store once).
    fn frontier<S: LogStore>(&mut self, store: &S) -> Result<Frontier, SeqError<S::Error>> {
        let size = store.size().map_err(SeqError::Store)?;
        match &self.frontier {
            Some(f) if f.size() == size => Ok(f.clone()),
            _ => {
                let f = Frontier::load(&Nodes(store), size)?;
                self.frontier = Some(f.clone());
                Ok(f)
            }
        }
    }

    /// Append `records` (canonical record texts), in order.
    pub fn append<S: LogStore>(
        &mut self,
        store: &S,
        records: &[String],
    ) -> Result<Appended, SeqError<S::Error>> {
        if records.is_empty() || records.len() > MAX_BATCH {
            return Err(SeqError::BadBatch);
        }
        let mut frontier = self.frontier(store)?;
        let first = frontier.size();
        let mut nodes = Vec::with_capacity(records.len() * 2);
        for record in records {
            frontier
                .append(merkle::leaf_hash(record.as_bytes()), &mut nodes)
                .ok_or(SeqError::BadBatch)?;
        }
        let size = frontier.size();
        // Nothing cached changes unless the commit succeeded.
        self.frontier = None;
        store
            .commit(first, records, &nodes, size)
            .map_err(SeqError::Store)?;
        self.frontier = Some(frontier);
        Ok(Appended { first, size })
    }

    /// The tree head to sign now, checked against the last signed checkpoint; `None` when the
    /// last checkpoint is already of the current size.
    pub fn prepare_checkpoint<S: LogStore>(
        &mut self,
        store: &S,
        origin: &str,
    ) -> Result<Option<TreeHead>, SeqError<S::Error>> {
        let frontier = self.frontier(store)?;
        let head = TreeHead {
            origin: origin.to_owned(),
            size: frontier.size(),
            root: frontier.root(),
        };
        let last = store.last_checkpoint().map_err(SeqError::Store)?;
        if let Some((last, _)) = &last {
            if last.size == head.size && last.root == head.root && last.origin == head.origin {
                return Ok(None);
            }
        }
        check_consistent(store, last.as_ref().map(|(h, _)| h), &head)?;
        Ok(Some(head))
    }

    /// Store a signed checkpoint of `head` as the last one, after checking it again against
    /// the last one (another may have been stored while this one was being signed).
    pub fn accept_checkpoint<S: LogStore>(
        &mut self,
        store: &S,
        head: &TreeHead,
        note: &str,
    ) -> Result<(), SeqError<S::Error>> {
        let last = store.last_checkpoint().map_err(SeqError::Store)?;
        match &last {
            // A later one is already stored: keep it (this one is consistent with it, or the
            // check below on that one would have refused it).
            Some((l, _)) if l.size >= head.size => {
                check_consistent(store, Some(head), l)?;
                Ok(())
            }
            _ => {
                check_consistent(store, last.as_ref().map(|(h, _)| h), head)?;
                store.put_checkpoint(head, note).map_err(SeqError::Store)
            }
        }
    }
}

/// Whether `new` extends `last` (same origin, not smaller, a consistency proof from the stored
/// nodes verifies against both roots) and its root is the stored tree's at its size.
pub fn check_consistent<S: LogStore>(
    store: &S,
    last: Option<&TreeHead>,
    new: &TreeHead,
) -> Result<(), SeqError<S::Error>> {
    let nodes = Nodes(store);
    if merkle::root(&nodes, new.size)? != new.root {
        return Err(SeqError::Inconsistent);
    }
    let Some(last) = last else {
        return Ok(());
    };
    if last.origin != new.origin || last.size > new.size {
        return Err(SeqError::Inconsistent);
    }
    let proof = merkle::consistency_proof(&nodes, last.size, new.size)?;
    if merkle::verify_consistency(last.size, new.size, &last.root, &new.root, &proof) {
        Ok(())
    } else {
        Err(SeqError::Inconsistent)
    }
}
