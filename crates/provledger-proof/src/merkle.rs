//! The Merkle tree over the ledger's events (RFC 9162 §2.1): hashing, the
//! stored perfect subtrees, inclusion and consistency proofs and their
//! verification.
//!
//! This module exists so that the stores (which maintain the tree), the CLI
//! (which builds proofs and checks checkpoints) and the offline verifier
//! (which checks bundles) run one implementation of the tree. It is pure:
//! a store hands in the stored node hashes a proof needs, this module says
//! which ones those are and assembles them.
//!
//! The leaves are the events in position order; leaf `i` (0-based) is the
//! event at position `i + 1`, and its entry is the 32 bytes of the event's
//! hash. Leaf hash = SHA-256(0x00 ‖ entry), node hash = SHA-256(0x01 ‖ left ‖
//! right), and the hash of an empty tree is SHA-256 of nothing.
//!
//! A *stored node* is the root of a perfect subtree: [`NodeId`] `(level,
//! index)` covers leaves `index·2^level .. (index+1)·2^level`. Such a node
//! never changes once its last leaf exists, so a store writes it once, in
//! the transaction that appends that leaf. Every range a proof needs is a
//! handful of stored nodes ([`range_nodes`]), so a tree head and a proof
//! cost O(log N) reads.

use std::collections::{BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use crate::ProofError;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The root of a perfect subtree: leaves `index << level .. (index + 1) << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = a leaf).
    pub level: u32,
    /// Index among the nodes of this level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level`, `index`.
    pub fn new(level: u32, index: u64) -> Self {
        NodeId { level, index }
    }
}

/// The leaf hash of an entry: SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// An interior node's hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Decode a lowercase (or uppercase) hex SHA-256.
pub fn parse_hash(hex_text: &str) -> Result<Hash, ProofError> {
    let bytes = hex::decode(hex_text).map_err(|_| ProofError::Malformed {
        what: format!("{hex_text:?} is not a hex SHA-256"),
    })?;
    bytes.try_into().map_err(|_| ProofError::Malformed {
        what: format!("{hex_text:?} is not 32 bytes"),
    })
}

/// The leaf hash of an event, given its hex `hash`.
pub fn event_leaf(event_hash_hex: &str) -> Result<Hash, ProofError> {
    Ok(leaf_hash(&parse_hash(event_hash_hex)?))
}

/// The largest power of two strictly less than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The tree hash over leaves whose leaf hashes are given, computed naively
/// by the recursive definition of RFC 9162 §2.1.1 (MTH). For tests and
/// small trees; a second, independent computation of what [`Frontier`] and
/// the stored nodes give.
pub fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

/// The stored nodes whose hashes make up MTH of leaves `start..end`,
/// following the recursion of RFC 9162 §2.1.1 relative to `start`, left to
/// right. Every range a proof of this module asks for starts on a boundary
/// aligned to its size, so this is at most ~2·log2(size) nodes.
pub fn range_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    collect_range(start, end, &mut out);
    out
}

fn collect_range(start: u64, end: u64, out: &mut Vec<NodeId>) {
    let len = end - start;
    if len == 0 {
        return;
    }
    if len.is_power_of_two() && start.is_multiple_of(len) {
        out.push(NodeId::new(len.trailing_zeros(), start / len));
        return;
    }
    let k = split_point(len);
    collect_range(start, start + k, out);
    collect_range(start + k, end, out);
}

/// MTH of leaves `start..end` from stored node hashes (which must hold every
/// node of [`range_nodes`]`(start, end)`).
pub fn range_hash(start: u64, end: u64, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, ProofError> {
    let len = end - start;
    if len == 0 {
        return Ok(empty_root());
    }
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let id = NodeId::new(len.trailing_zeros(), start / len);
        return nodes
            .get(&id)
            .copied()
            .ok_or(ProofError::MissingNode { id });
    }
    let k = split_point(len);
    Ok(node_hash(
        &range_hash(start, start + k, nodes)?,
        &range_hash(start + k, end, nodes)?,
    ))
}

/// The leaf ranges whose hashes form the inclusion proof of leaf `index` in
/// a tree of `size` leaves (RFC 9162 §2.1.3.1, PATH), bottom-up.
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange {
            what: format!("leaf {index} is not in a tree of {size} leaves"),
        });
    }
    let mut out = Vec::new();
    path(index, 0, size, &mut out);
    Ok(out)
}

fn path(m: u64, start: u64, len: u64, out: &mut Vec<(u64, u64)>) {
    if len <= 1 {
        return;
    }
    let k = split_point(len);
    if m < k {
        path(m, start, k, out);
        out.push((start + k, start + len));
    } else {
        path(m - k, start + k, len - k, out);
        out.push((start, start + k));
    }
}

/// The leaf ranges whose hashes form the consistency proof between tree
/// sizes `old` and `new` (RFC 9162 §2.1.4.1, PROOF). Empty when `old` is 0
/// or equals `new`.
pub fn consistency_ranges(old: u64, new: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange {
            what: format!("a tree of {new} leaves cannot extend one of {old}"),
        });
    }
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(old, 0, new, true, &mut out);
    }
    Ok(out)
}

fn subproof(m: u64, start: u64, len: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
    if m == len {
        if !complete {
            out.push((start, start + len));
        }
        return;
    }
    let k = split_point(len);
    if m <= k {
        subproof(m, start, k, complete, out);
        out.push((start + k, start + len));
    } else {
        subproof(m - k, start + k, len - k, false, out);
        out.push((start, start + k));
    }
}

/// Every stored node the given ranges need.
pub fn nodes_for(ranges: &[(u64, u64)]) -> BTreeSet<NodeId> {
    ranges
        .iter()
        .flat_map(|&(a, b)| range_nodes(a, b))
        .collect()
}

/// Assemble a proof from its ranges and the stored nodes they need.
pub fn assemble(
    ranges: &[(u64, u64)],
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Vec<Hash>, ProofError> {
    ranges
        .iter()
        .map(|&(a, b)| range_hash(a, b, nodes))
        .collect()
}

/// The perfect subtrees a tree of `size` leaves consists of, left (largest)
/// to right: the nodes whose hashes give its root and let it grow.
pub fn frontier_ids(size: u64) -> Vec<NodeId> {
    (0..64u32)
        .rev()
        .filter(|level| size & (1u64 << level) != 0)
        .map(|level| NodeId::new(level, (size >> level) - 1))
        .collect()
}

/// Verify an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` is leaf
/// `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::InvalidProof {
            reason: format!("leaf index {index} is not below the tree size {size}"),
        });
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::InvalidProof {
                reason: "the inclusion proof is longer than the tree is deep".into(),
            });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::InvalidProof {
            reason: "the inclusion proof is shorter than the tree is deep".into(),
        });
    }
    if &r != root {
        return Err(ProofError::InvalidProof {
            reason: format!(
                "the inclusion proof leads to root {} but the tree head's root is {}",
                hex::encode(r),
                hex::encode(root)
            ),
        });
    }
    Ok(())
}

/// Verify a consistency proof (RFC 9162 §2.1.4.2): that the tree of
/// `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`.
///
/// Both roots are recomputed from the proof and each is compared with the
/// root it must equal: a proof that reproduces only the new root (a tree
/// the attacker built) fails on the old one.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let invalid = |reason: String| Err(ProofError::InvalidProof { reason });
    if old_size > new_size {
        return invalid(format!(
            "the new tree ({new_size} leaves) is smaller than the old one ({old_size})"
        ));
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return invalid("a proof from the empty tree must be empty".into());
        }
        if old_root != &empty_root() {
            return invalid("the old root is not the empty tree's root".into());
        }
        return Ok(());
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return invalid("a proof between equal sizes must be empty".into());
        }
        if old_root != new_root {
            return invalid(format!(
                "both trees have {old_size} leaves but their roots differ ({} vs {})",
                hex::encode(old_root),
                hex::encode(new_root)
            ));
        }
        return Ok(());
    }
    if proof.is_empty() {
        return invalid("the consistency proof is empty".into());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let mut f = old_size - 1;
    let mut s = new_size - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if s == 0 {
            return invalid("the consistency proof is longer than the tree is deep".into());
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return invalid("the consistency proof is shorter than the tree is deep".into());
    }
    if &fr != old_root {
        return invalid(format!(
            "the consistency proof leads to old root {} but the old tree head's root is {}",
            hex::encode(fr),
            hex::encode(old_root)
        ));
    }
    if &sr != new_root {
        return invalid(format!(
            "the consistency proof leads to new root {} but the new tree head's root is {}",
            hex::encode(sr),
            hex::encode(new_root)
        ));
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of its perfect subtrees
/// ([`frontier_ids`]). Appending a leaf completes O(1) amortised (at most
/// log N) new stored nodes; the root is a fold of at most log N hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// (level, hash), largest subtree first.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// The frontier of a tree of `size` leaves, from the hashes of
    /// [`frontier_ids`]`(size)`, in that order.
    pub fn from_hashes(size: u64, hashes: &[Hash]) -> Result<Self, ProofError> {
        let ids = frontier_ids(size);
        if ids.len() != hashes.len() {
            return Err(ProofError::Malformed {
                what: format!(
                    "a tree of {size} leaves has {} frontier nodes, not {}",
                    ids.len(),
                    hashes.len()
                ),
            });
        }
        Ok(Frontier {
            size,
            nodes: ids
                .iter()
                .map(|id| id.level)
                .zip(hashes.iter().copied())
                .collect(),
        })
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append the leaf for `entry`; returns the stored nodes it completes
    /// (the leaf itself first, then each parent it completes).
    pub fn push(&mut self, entry: &Hash) -> Vec<(NodeId, Hash)> {
        self.push_leaf(leaf_hash(entry))
    }

    /// Append a leaf given its leaf hash; see [`Frontier::push`].
    pub fn push_leaf(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut h = leaf;
        let mut level = 0u32;
        let mut completed = vec![(NodeId::new(0, index), h)];
        let mut i = index;
        while i & 1 == 1 {
            let Some((_, left)) = self.nodes.pop() else {
                break;
            };
            h = node_hash(&left, &h);
            level += 1;
            i >>= 1;
            completed.push((NodeId::new(level, i), h));
        }
        self.nodes.push((level, h));
        self.size += 1;
        completed
    }

    /// The tree's root (RFC 9162 MTH).
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some((_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, (_, left)| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
    }

    #[test]
    fn frontier_ids_cover_the_tree() {
        assert_eq!(frontier_ids(0), vec![]);
        assert_eq!(frontier_ids(6), vec![NodeId::new(2, 0), NodeId::new(1, 2)]);
        assert_eq!(
            frontier_ids(7),
            vec![NodeId::new(2, 0), NodeId::new(1, 2), NodeId::new(0, 6)]
        );
    }
}
