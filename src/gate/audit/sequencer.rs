//! The sequencer's logic, pure, over a [`LogStore`] (the Durable Object's SQLite natively
//! replaced by memory in the tests).
//!
//! - **Append** ([`Sequencer::append`]): the batch's records get the indexes `size ..
//!   size + n` of the committed size; the records (one row) and the tiles they change are
//!   written, then the new size (the commit marker, last). Anything at or beyond the committed size is
//!   not part of the log: a batch cut short by a restart left only rows that the next batch
//!   overwrites and that no read returns, and since its caller was never answered no index it
//!   held was ever acknowledged. An acknowledged index is never reused: indexes come only from
//!   the committed size.
//! - **Cost per append is flat**: the right edge of the tree (the [`Frontier`] and the edge
//!   tiles, [`super::tiles`]) is kept in memory (read back from at most `log256 n` tiles after a
//!   restart), so a batch writes one row of records, the tiles it changed (about `1 + b/256`
//!   rows for `b` records) and the size, and reads nothing, whatever the size of the log.
//! - **Checkpoints** ([`Sequencer::prepare_checkpoint`], [`Sequencer::accept_checkpoint`]):
//!   before a tree head is signed it is checked against the last signed one: the new size is not
//!   smaller and a consistency proof from the last to the new one, built from the stored nodes,
//!   verifies against both roots. A head that fails is never signed ([`SeqError::Inconsistent`]),
//!   so the log never signs two checkpoints that are inconsistent.

use super::checkpoint::TreeHead;
use super::merkle::{self, Frontier, ProofError};
use super::tiles::{Edges, TileNodes, TileSource, TileWrite};

/// Most records in one append.
pub const MAX_BATCH: usize = 512;

/// The sequencer's storage: its tiles ([`TileSource`]) and the rest.
pub trait LogStore: TileSource {
    /// The committed size.
    fn size(&self) -> Result<u64, Self::Error>;
    /// Write the batch's records `first ..` (one row), then the tiles it changed, then (last)
    /// the new committed size.
    fn commit(
        &self,
        first: u64,
        records: &[&str],
        tiles: &[TileWrite],
        size: u64,
    ) -> Result<(), Self::Error>;
    /// The last signed checkpoint: its head and note.
    fn last_checkpoint(&self) -> Result<Option<(TreeHead, String)>, Self::Error>;
    /// Store a signed checkpoint as the last one.
    fn put_checkpoint(&self, head: &TreeHead, note: &str) -> Result<(), Self::Error>;
}

/// A store seen as the tree's complete nodes (from its tiles; one view per operation).
pub type Nodes<'a, S> = TileNodes<'a, S>;

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

/// The right edge of the committed tree, kept in memory between appends.
#[derive(Debug)]
struct Edge {
    frontier: Frontier,
    tiles: Edges,
}

/// The sequencer of one log: the tree's right edge (frontier and edge tiles), cached in memory.
/// It is the store's only writer, so the cache stays what the store holds; it is dropped when
/// a commit fails (and read again from the store by the next operation).
#[derive(Debug, Default)]
pub struct Sequencer {
    edge: Option<Edge>,
}

impl Sequencer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The right edge of the committed tree (read from the store once).
    fn edge<S: LogStore>(&mut self, store: &S) -> Result<Edge, SeqError<S::Error>> {
        if let Some(edge) = self.edge.take() {
            return Ok(edge);
        }
        let size = store.size().map_err(SeqError::Store)?;
        let frontier = Frontier::load(&Nodes::new(store), size)?;
        let tiles = Edges::load(store, size)?;
        Ok(Edge { frontier, tiles })
    }

    /// The frontier of the committed tree.
    fn frontier<S: LogStore>(&mut self, store: &S) -> Result<Frontier, SeqError<S::Error>> {
        let edge = self.edge(store)?;
        let frontier = edge.frontier.clone();
        self.edge = Some(edge);
        Ok(frontier)
    }

    /// Append `records` (canonical record texts), in order.
    pub fn append<S: LogStore, R: AsRef<str>>(
        &mut self,
        store: &S,
        records: &[R],
    ) -> Result<Appended, SeqError<S::Error>> {
        if records.is_empty() || records.len() > MAX_BATCH {
            return Err(SeqError::BadBatch);
        }
        // Taken out of the cache: it goes back only once the commit succeeded.
        let mut edge = self.edge(store)?;
        let first = edge.frontier.size();
        let mut nodes = Vec::with_capacity(records.len() * 2);
        let mut texts = Vec::with_capacity(records.len());
        for record in records {
            let record = record.as_ref();
            edge.frontier
                .append(merkle::leaf_hash(record.as_bytes()), &mut nodes)
                .ok_or(SeqError::BadBatch)?;
            texts.push(record);
        }
        let tiles = edge.tiles.add(&nodes).ok_or(SeqError::Corrupt)?;
        let size = edge.frontier.size();
        store
            .commit(first, &texts, &tiles, size)
            .map_err(SeqError::Store)?;
        self.edge = Some(edge);
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
    let nodes = Nodes::new(store);
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
