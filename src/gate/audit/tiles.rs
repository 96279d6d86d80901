//! The tree's hashes stored as tiles (the layout of C2SP `tlog-tiles`), pure.
//!
//! A tile is a row of at most [`WIDTH`] (256) consecutive hashes of one level of the tree: tile
//! `(L, N)` holds the nodes `(8·L, 256·N + i)` for `i` below its width, i.e. tile level `L`
//! stores tree level `8·L` and covers the 8 tree levels above it, whose nodes are recomputed
//! from it (a node at tree level `8·L + h` is the perfect subtree of `2^h` consecutive hashes of
//! one tile). Level 0 tiles hold the leaf hashes.
//!
//! Only the right-most tile of each level is ever partial; the sequencer keeps those in memory
//! ([`Edges`]) and an append rewrites them with their new hashes: a batch of `b` records
//! changes one level-0 tile (two when it crosses a multiple of 256), one more level-1 tile every
//! 256 records, and so on — about `1 + b/256` tile rows per batch instead of one row per node.
//! A tile is only ever extended: the hashes below the committed size never change, so what a
//! batch cut short wrote beyond it is never read (readers only ask for nodes below the committed
//! size) and is overwritten by the next batch.

use std::cell::RefCell;
use std::rc::Rc;

use super::merkle::{node_hash, Hash, NewNode, NodeSource, ProofError};

/// Tree levels per tile level.
pub const HEIGHT: u8 = 8;
/// Most hashes in a tile.
pub const WIDTH: usize = 1 << HEIGHT;

/// A tile's new content, to be stored: `(tile level, index, hashes)`.
pub type TileWrite = (u8, u64, Vec<Hash>);

/// Where the tiles are stored.
pub trait TileSource {
    type Error;
    /// Tile `(level, index)`'s hashes, as stored (it may hold hashes beyond the committed size:
    /// callers only use those below it).
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<Hash>>, Self::Error>;
}

/// A tile read: `(level, index, hashes)`.
type Cached = (u8, u64, Rc<Vec<Hash>>);

/// The complete nodes of the tree, read from its tiles. Each tile is read once per view: make
/// one per operation (a proof or a checkpoint), not one for the object's life (the tiles grow).
pub struct TileNodes<'a, S> {
    src: &'a S,
    cache: RefCell<Vec<Cached>>,
}

impl<'a, S: TileSource> TileNodes<'a, S> {
    pub fn new(src: &'a S) -> Self {
        Self {
            src,
            cache: RefCell::new(Vec::new()),
        }
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Rc<Vec<Hash>>>, S::Error> {
        let found = self
            .cache
            .borrow()
            .iter()
            .find(|(l, i, _)| *l == level && *i == index)
            .map(|(_, _, t)| t.clone());
        if let Some(tile) = found {
            return Ok(Some(tile));
        }
        let Some(tile) = self.src.tile(level, index)? else {
            return Ok(None);
        };
        let tile = Rc::new(tile);
        self.cache.borrow_mut().push((level, index, tile.clone()));
        Ok(Some(tile))
    }
}

/// The root of the perfect tree over `hashes` (a power of two of them).
fn perfect_root(hashes: &[Hash]) -> Option<Hash> {
    let mut row: Vec<Hash> = hashes.to_vec();
    while row.len() > 1 {
        row = row
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => Some(node_hash(l, r)),
                _ => None,
            })
            .collect::<Option<Vec<Hash>>>()?;
    }
    row.first().copied()
}

impl<S: TileSource> NodeSource for TileNodes<'_, S> {
    type Error = S::Error;

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, S::Error> {
        let (tile_level, h) = (level / HEIGHT, level % HEIGHT);
        // The node covers 2^h consecutive hashes of tree level 8·tile_level, inside one tile
        // (2^h divides the width and the run is aligned).
        let Some(first) = index.checked_mul(1u64 << h) else {
            return Ok(None);
        };
        let Some(tile) = self.tile(tile_level, first / WIDTH as u64)? else {
            return Ok(None);
        };
        let at = (first % WIDTH as u64) as usize;
        Ok(tile.get(at..at + (1usize << h)).and_then(perfect_root))
    }
}

/// The right-most tile of one tile level, never full (a full one is written and left behind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Edge {
    index: u64,
    hashes: Vec<Hash>,
}

/// The right-most tile of each tile level of the committed tree: what the next batch extends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edges {
    /// By tile level, up to the highest level with a hash.
    tiles: Vec<Edge>,
}

impl Edges {
    /// The edge tiles of the tree of `size` leaves, read from its tiles: at most one tile per
    /// tile level (`log256 size` of them).
    pub fn load<S: TileSource>(src: &S, size: u64) -> Result<Self, ProofError<S::Error>> {
        let mut tiles = Vec::new();
        for level in 0..(64 / HEIGHT) {
            // Complete nodes at tree level 8·level.
            let count = size >> (u32::from(level) * u32::from(HEIGHT));
            if count == 0 {
                break;
            }
            let index = count / WIDTH as u64;
            let width = (count % WIDTH as u64) as usize;
            let hashes = if width == 0 {
                Vec::new()
            } else {
                let stored = src
                    .tile(level, index)
                    .map_err(ProofError::Store)?
                    .ok_or(ProofError::Missing)?;
                stored.get(..width).ok_or(ProofError::Missing)?.to_vec()
            };
            tiles.push(Edge { index, hashes });
        }
        Ok(Edges { tiles })
    }

    /// Take in the nodes an append made ([`super::merkle::Frontier::append`]: every leaf and
    /// every node it completed, in order); returns the tiles to write (each tile once, with its
    /// whole content). `None` when a node does not extend its edge tile (the frontier and the
    /// edges disagree: nothing to write).
    pub fn add(&mut self, nodes: &[NewNode]) -> Option<Vec<TileWrite>> {
        let mut writes: Vec<TileWrite> = Vec::new();
        let mut dirty = [false; 64 / HEIGHT as usize];
        for (level, index, hash) in nodes {
            if level % HEIGHT != 0 {
                continue; // recomputed from the tile below
            }
            let tl = level / HEIGHT;
            let t = usize::from(tl);
            if t == self.tiles.len() {
                self.tiles.push(Edge::default());
            }
            let edge = self.tiles.get_mut(t)?;
            if *index != edge.index * WIDTH as u64 + edge.hashes.len() as u64 {
                return None;
            }
            edge.hashes.push(*hash);
            if edge.hashes.len() == WIDTH {
                writes.push((tl, edge.index, std::mem::take(&mut edge.hashes)));
                edge.index += 1;
                *dirty.get_mut(t)? = false;
            } else {
                *dirty.get_mut(t)? = true;
            }
        }
        for (t, edge) in self.tiles.iter().enumerate() {
            if dirty.get(t).copied().unwrap_or(false) {
                writes.push((t as u8, edge.index, edge.hashes.clone()));
            }
        }
        Some(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::audit::merkle::{self, Frontier, MemoryTree};
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Tiles(RefCell<BTreeMap<(u8, u64), Vec<Hash>>>);

    impl TileSource for Tiles {
        type Error = ();
        fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<Hash>>, ()> {
            Ok(self.0.borrow().get(&(level, index)).cloned())
        }
    }

    /// Every complete node of trees up to 70,000 leaves (three tile levels), read from the
    /// tiles written batch by batch, equals the node of the tree kept in memory; edges reloaded
    /// at any size equal the ones kept.
    #[test]
    fn tiles_hold_every_complete_node() {
        let store = Tiles::default();
        let mut tree = MemoryTree::new();
        let mut frontier = Frontier::default();
        let mut edges = Edges::default();
        let mut n = 0u64;
        let mut batch = 1u64;
        let (mut rows, mut batches) = (0usize, 0usize);
        while n < 70_000 {
            let mut made = Vec::new();
            for i in n..n + batch {
                let leaf = merkle::leaf_hash(&i.to_be_bytes());
                frontier.append(leaf, &mut made).unwrap();
                tree.push_hash(leaf);
            }
            n += batch;
            let writes = edges.add(&made).unwrap();
            rows += writes.len();
            batches += 1;
            for (level, index, hashes) in writes {
                store.0.borrow_mut().insert((level, index), hashes);
            }
            assert_eq!(Edges::load(&store, n).unwrap(), edges, "at {n}");
            let nodes = TileNodes::new(&store);
            if n < 600 || n % 7 == 0 || batch > 200 {
                for level in 0..17u8 {
                    for index in [0, (n >> level).saturating_sub(1), (n >> level) / 2] {
                        if (index + 1) << level <= n {
                            assert_eq!(
                                nodes.node(level, index).unwrap(),
                                tree.node(level, index).unwrap(),
                                "({level}, {index}) at {n}"
                            );
                        }
                    }
                }
            }
            assert_eq!(merkle::root(&nodes, n).unwrap(), tree.root());
            batch = batch % 300 + 37;
        }
        // About a tile row per batch and one more per 256 records, not a row per node.
        assert!(
            rows <= batches + 2 * (n as usize / WIDTH) + 2,
            "{rows} rows, {batches} batches"
        );
    }

    #[test]
    fn a_node_that_does_not_extend_its_edge_is_refused() {
        let mut edges = Edges::default();
        assert!(edges.add(&[(0, 0, [1; 32]), (0, 1, [2; 32])]).is_some());
        assert_eq!(edges.add(&[(0, 3, [3; 32])]), None);
    }
}
