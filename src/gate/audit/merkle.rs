//! The RFC 6962 / RFC 9162 Merkle tree of the decision log, pure.
//!
//! - leaf hash `SHA-256(0x00 ‖ record)`, node hash `SHA-256(0x01 ‖ left ‖ right)`, the empty
//!   tree's root `SHA-256("")`; a tree of `n > 1` leaves splits at the largest power of two
//!   below `n` (RFC 6962 §2.1);
//! - [`Frontier`]: the roots of the perfect subtrees of the current tree, left to right (at most
//!   64). Appending a leaf pushes it and merges equal-sized neighbours: every merge is a new
//!   complete node, which the sequencer stores ([`Frontier::append`] returns them). An append
//!   costs one leaf and on average one node, whatever the size of the log;
//! - proofs are built from the stored complete nodes ([`NodeSource`]: node `(level, index)` is
//!   the hash of leaves `[index·2^level, (index+1)·2^level)`): a subtree on the right edge of a
//!   tree is folded from at most `log n` complete nodes, so a proof reads `O(log² n)` nodes;
//! - verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), with
//!   every length checked: a proof with one hash too many or too few fails.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The complete nodes of a tree, as stored by the sequencer.
pub trait NodeSource {
    type Error;
    /// The hash of leaves `[index << level, (index + 1) << level)`; `Ok(None)` when that subtree
    /// is not complete (or not stored).
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error>;
}

/// Why a proof could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The sizes or index make no proof (index ≥ size, size beyond the tree, old > new).
    OutOfRange,
    /// A node the proof needs is not stored: the store is incomplete.
    Missing,
    Store(E),
}

/// `MTH(D[start..end])` from complete nodes: a perfect aligned subtree is one node, anything
/// else splits RFC 6962 style (only the right edge of a tree is ever not perfect).
pub fn subtree<S: NodeSource>(src: &S, start: u64, end: u64) -> Result<Hash, ProofError<S::Error>> {
    let n = end.checked_sub(start).ok_or(ProofError::OutOfRange)?;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start % n == 0 {
        let level = n.trailing_zeros() as u8;
        return src
            .node(level, start >> level)
            .map_err(ProofError::Store)?
            .ok_or(ProofError::Missing);
    }
    if n == 1 {
        return Err(ProofError::Missing);
    }
    let k = split(n);
    let left = subtree(src, start, start + k)?;
    let right = subtree(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` leaves.
pub fn root<S: NodeSource>(src: &S, size: u64) -> Result<Hash, ProofError<S::Error>> {
    subtree(src, 0, size)
}

/// RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// PATH(m, D[start..end]), appended leaf-side first.
fn path<S: NodeSource>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError<S::Error>> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(subtree(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(subtree(src, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.1: the consistency proof from the tree of `old` leaves to that of `new`.
/// Empty when `old == new` or `old == 0`.
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old > new {
        return Err(ProofError::OutOfRange);
    }
    let mut proof = Vec::new();
    if old == 0 || old == new {
        return Ok(proof);
    }
    subproof(src, old, 0, new, true, &mut proof)?;
    Ok(proof)
}

/// SUBPROOF(m, D[start..end], b).
fn subproof<S: NodeSource>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError<S::Error>> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(subtree(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, whole, out)?;
        out.push(subtree(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(subtree(src, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: whether `proof` proves the leaf `leaf` at `index` in the tree of `size`
/// leaves with root `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: whether `proof` proves that the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        // Every tree extends the empty one; there is nothing to prove.
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut list: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        list.push(*old_root);
    }
    list.extend_from_slice(proof);
    let Some((first, rest)) = list.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && fr == *old_root && sr == *new_root
}

/// The right edge of the tree: the roots of its perfect subtrees, largest (leftmost) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`; levels strictly decreasing: the set bits of `size`.
    nodes: Vec<(u8, Hash)>,
}

/// A complete node made by an append, to be stored: `(level, index, hash)`; level 0 are leaves.
pub type NewNode = (u8, u64, Hash);

impl Frontier {
    /// The frontier of the tree of `size` leaves, read from its complete nodes.
    pub fn load<S: NodeSource>(src: &S, size: u64) -> Result<Self, ProofError<S::Error>> {
        let mut nodes = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                let hash = src
                    .node(level, start >> level)
                    .map_err(ProofError::Store)?
                    .ok_or(ProofError::Missing)?;
                nodes.push((level, hash));
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier's hashes, largest subtree first.
    pub fn hashes(&self) -> Vec<Hash> {
        self.nodes.iter().map(|(_, h)| *h).collect()
    }

    /// A frontier from its size and hashes (largest subtree first): `None` unless there is
    /// exactly one hash per set bit of `size`.
    pub fn from_hashes(size: u64, hashes: &[Hash]) -> Option<Self> {
        if hashes.len() != size.count_ones() as usize {
            return None;
        }
        let levels = (0..64u8).rev().filter(|l| size & (1u64 << l) != 0);
        Some(Frontier {
            size,
            nodes: levels.zip(hashes.iter().copied()).collect(),
        })
    }

    /// The root hash of the tree.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some((_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, (_, left)| node_hash(left, &acc))
    }

    /// Append one leaf (its leaf hash): pushes to `out` the leaf node and every node it
    /// completes. `None` (nothing changed) when the tree is full (2^64 − 1 leaves).
    pub fn append(&mut self, leaf: Hash, out: &mut Vec<NewNode>) -> Option<u64> {
        let index = self.size;
        self.size = self.size.checked_add(1)?;
        out.push((0, index, leaf));
        let mut level = 0u8;
        let mut hash = leaf;
        let mut position = index;
        while let Some(&(top, left)) = self.nodes.last() {
            if top != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            position >>= 1;
            out.push((level, position, hash));
        }
        self.nodes.push((level, hash));
        Some(index)
    }
}

/// Complete nodes in memory (tests, the CLI's export check, the native bench).
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    /// `levels[l][i]`: node `(l, i)`.
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Append a record (its bytes); returns its index.
    pub fn push(&mut self, record: &[u8]) -> u64 {
        self.push_hash(leaf_hash(record))
    }

    /// Append a leaf hash; returns its index.
    pub fn push_hash(&mut self, leaf: Hash) -> u64 {
        let mut made = Vec::new();
        let index = self.frontier.append(leaf, &mut made).unwrap_or(u64::MAX);
        for (level, _, hash) in made {
            let level = usize::from(level);
            while self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            if let Some(row) = self.levels.get_mut(level) {
                row.push(hash);
            }
        }
        index
    }
}

impl NodeSource for MemoryTree {
    type Error = core::convert::Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error> {
        let row = self.levels.get(usize::from(level));
        Ok(row
            .and_then(|r| usize::try_from(index).ok().and_then(|i| r.get(i)))
            .copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Hash {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// The leaf inputs of transparency-dev/merkle `testonly/constants.go`.
    fn leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
    }

    /// Root hashes for sizes 0–8 (`RootHashes()` there), reproduced here.
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn tree(n: usize) -> MemoryTree {
        let mut t = MemoryTree::new();
        for leaf in leaves().iter().take(n) {
            t.push(leaf);
        }
        t
    }

    #[test]
    fn roots_for_sizes_0_to_8_match_the_published_values() {
        let mut t = MemoryTree::new();
        assert_eq!(t.root(), hex(ROOTS[0]));
        assert_eq!(root(&t, 0).unwrap(), hex(ROOTS[0]));
        for (i, leaf) in leaves().iter().enumerate() {
            t.push(leaf);
            assert_eq!(t.root(), hex(ROOTS[i + 1]), "size {}", i + 1);
            // Every earlier size, from the stored nodes.
            for (size, want) in ROOTS.iter().enumerate().take(i + 2) {
                assert_eq!(root(&t, size as u64).unwrap(), hex(want));
            }
            // The frontier reloaded from the nodes is the same.
            assert_eq!(Frontier::load(&t, t.size()).unwrap(), t.frontier);
        }
    }

    /// Inclusion proofs of transparency-dev/merkle `proof/verify_test.go` (1-based leaf there).
    #[test]
    fn inclusion_proofs_match_the_published_vectors() {
        let t = tree(8);
        let vectors: &[(u64, u64, &[&str])] = &[
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let all = leaves();
        for (index, size, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|h| hex(h)).collect();
            let got = inclusion_proof(&t, *index, *size).unwrap();
            assert_eq!(got, want, "{index} in {size}");
            let leaf = leaf_hash(&all[*index as usize]);
            let r = hex(ROOTS[*size as usize]);
            assert!(verify_inclusion(*index, *size, &leaf, &got, &r));
            // Corruptions (the same kinds as the reference tests).
            assert!(!verify_inclusion(index + 1, *size, &leaf, &got, &r));
            assert!(!verify_inclusion(*index, size * 2, &leaf, &got, &r));
            assert!(!verify_inclusion(*index, *size, &leaf_hash(b"x"), &got, &r));
            assert!(!verify_inclusion(*index, *size, &leaf, &got, &empty_root()));
            let mut longer = got.clone();
            longer.push(r);
            assert!(!verify_inclusion(*index, *size, &leaf, &longer, &r));
            for i in 0..got.len() {
                let mut bad = got.clone();
                bad[i][0] ^= 8;
                assert!(!verify_inclusion(*index, *size, &leaf, &bad, &r));
            }
            if !got.is_empty() {
                assert!(!verify_inclusion(
                    *index,
                    *size,
                    &leaf,
                    &got[..got.len() - 1],
                    &r
                ));
            }
        }
        assert_eq!(inclusion_proof(&t, 8, 8), Err(ProofError::OutOfRange));
        assert!(!verify_inclusion(0, 0, &empty_root(), &[], &empty_root()));
    }

    /// Consistency proofs of transparency-dev/merkle `proof/verify_test.go`.
    #[test]
    fn consistency_proofs_match_the_published_vectors() {
        let t = tree(8);
        let vectors: &[(u64, u64, &[&str])] = &[
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (old, new, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|h| hex(h)).collect();
            let got = consistency_proof(&t, *old, *new).unwrap();
            assert_eq!(got, want, "{old} -> {new}");
            let (r1, r2) = (hex(ROOTS[*old as usize]), hex(ROOTS[*new as usize]));
            assert!(verify_consistency(*old, *new, &r1, &r2, &got));
            if got.is_empty() {
                continue;
            }
            assert!(!verify_consistency(old + 1, *new, &r1, &r2, &got));
            assert!(!verify_consistency(*old, new * 2, &r1, &r2, &got));
            assert!(!verify_consistency(*old, *new, &r2, &r1, &got));
            assert!(!verify_consistency(*old, *new, &r1, &r2, &[]));
            assert!(!verify_consistency(
                *old,
                *new,
                &r1,
                &r2,
                &got[..got.len() - 1]
            ));
            let mut longer = got.clone();
            longer.push(r1);
            assert!(!verify_consistency(*old, *new, &r1, &r2, &longer));
            for i in 0..got.len() {
                let mut bad = got.clone();
                bad[i][0] ^= 16;
                assert!(!verify_consistency(*old, *new, &r1, &r2, &bad));
            }
        }
        assert!(!verify_consistency(2, 1, &empty_root(), &empty_root(), &[]));
        assert!(verify_consistency(0, 5, &empty_root(), &hex(ROOTS[5]), &[]));
    }

    /// Every proof of every pair of sizes up to 40 verifies (and a proof for one size never
    /// verifies for another).
    #[test]
    fn every_proof_up_to_40_leaves_verifies() {
        let mut t = MemoryTree::new();
        let mut roots = vec![t.root()];
        for i in 0..40u32 {
            t.push(&i.to_be_bytes());
            roots.push(t.root());
        }
        for size in 1..=40u64 {
            for index in 0..size {
                let leaf = leaf_hash(&(index as u32).to_be_bytes());
                let p = inclusion_proof(&t, index, size).unwrap();
                assert!(verify_inclusion(
                    index,
                    size,
                    &leaf,
                    &p,
                    &roots[size as usize]
                ));
            }
            for old in 0..=size {
                let p = consistency_proof(&t, old, size).unwrap();
                let (a, b) = (&roots[old as usize], &roots[size as usize]);
                assert!(verify_consistency(old, size, a, b, &p), "{old}->{size}");
                if old > 0 && old < size {
                    assert!(!verify_consistency(old, size, b, a, &p));
                }
            }
        }
    }
}
