//! Properties of the tree over random sizes: the incrementally stored tree
//! equals the naive recursive one, every proof verifies, and altering any
//! byte of a proof, leaf or root makes it fail.

use proptest::prelude::*;
use provledger_proof::merkle::{
    naive_root, range_nodes, verify_consistency, verify_inclusion, Hash, NodeId,
};

use crate::support::{leaves, Tree};

fn flip(mut h: Hash, byte: usize, bit: u8) -> Hash {
    h[byte % 32] ^= 1 << (bit % 8);
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn stored_tree_equals_the_naive_tree(size in 0usize..300, seed in any::<u64>()) {
        let tree = Tree::of_leaves(&leaves(size, seed));
        for n in [0, size / 3, size / 2, size] {
            prop_assert_eq!(tree.roots[n], naive_root(&tree.leaves[..n]));
        }
        // Every stored node is the naive root of the leaves it covers.
        for (id, hash) in &tree.nodes {
            let start = (id.index << id.level) as usize;
            let end = start + (1usize << id.level);
            prop_assert_eq!(*hash, naive_root(&tree.leaves[start..end]), "{:?}", id);
        }
        prop_assert_eq!(tree.nodes.len(), 2 * size - size.count_ones() as usize);
    }

    #[test]
    fn inclusion_proofs_verify_and_any_altered_byte_fails(
        size in 1u64..300,
        pick in any::<u64>(),
        seed in any::<u64>(),
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let tree = Tree::of_leaves(&leaves(size as usize, seed));
        let index = pick % size;
        let root = tree.roots[size as usize];
        let leaf = tree.leaves[index as usize];
        let proof = tree.inclusion(index, size);
        prop_assert!(proof.len() <= 64 - (size - 1).leading_zeros() as usize + 1);
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());

        prop_assert!(verify_inclusion(index, size, &flip(leaf, byte, bit), &proof, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &flip(root, byte, bit)).is_err());
        for i in 0..proof.len() {
            let mut forged = proof.clone();
            forged[i] = flip(forged[i], byte, bit);
            prop_assert!(verify_inclusion(index, size, &leaf, &forged, &root).is_err());
        }
        if !proof.is_empty() {
            prop_assert!(verify_inclusion(index, size, &leaf, &proof[1..], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(index, size, &leaf, &longer, &root).is_err());
        // Another leaf's proof does not prove this leaf.
        if size > 1 {
            let other = (index + 1) % size;
            prop_assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err()
                || tree.leaves[other as usize] == leaf);
        }
    }

    #[test]
    fn consistency_proofs_verify_and_any_altered_byte_fails(
        new in 1u64..300,
        pick in any::<u64>(),
        seed in any::<u64>(),
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let tree = Tree::of_leaves(&leaves(new as usize, seed));
        let old = 1 + pick % new;
        let old_root = tree.roots[old as usize];
        let new_root = tree.roots[new as usize];
        let proof = tree.consistency(old, new);
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());
        prop_assert!(verify_consistency(old, new, &flip(old_root, byte, bit), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &flip(new_root, byte, bit), &proof).is_err());
        for i in 0..proof.len() {
            let mut forged = proof.clone();
            forged[i] = flip(forged[i], byte, bit);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &forged).is_err());
        }
        if !proof.is_empty() {
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof[1..]).is_err());
        }
    }

    /// The shape of immudb's 2022 advisory: the server answers with a tree
    /// of its own whose new root and proof agree with each other. The proof
    /// reproduces the attacker's new root, but the old root it leads to is
    /// not the one the auditor holds, so it must fail.
    #[test]
    fn a_proof_consistent_only_with_the_attackers_tree_fails(
        new in 2u64..200,
        pick in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let honest = Tree::of_leaves(&leaves(new as usize, seed));
        let old = 1 + pick % (new - 1);
        let mut forged_leaves = honest.leaves.clone();
        forged_leaves[(pick % old) as usize] = leaves(1, seed ^ 0xdead)[0];
        let attacker = Tree::of_leaves(&forged_leaves);
        let proof = attacker.consistency(old, new);
        let attacker_new = attacker.roots[new as usize];
        // The attacker's own tree is consistent with itself…
        prop_assert!(verify_consistency(old, new, &attacker.roots[old as usize], &attacker_new, &proof).is_ok());
        // …but not with the old root the auditor kept.
        prop_assert!(verify_consistency(old, new, &honest.roots[old as usize], &attacker_new, &proof).is_err());
    }

    #[test]
    fn aligned_ranges_need_few_stored_nodes(start_exp in 0u32..12, len in 1u64..4096) {
        // Ranges in proofs start on a boundary aligned to their size.
        let align = 1u64 << (64 - (len - 1).leading_zeros()).min(63);
        let start = align * u64::from(start_exp);
        let nodes: Vec<NodeId> = range_nodes(start, start + len);
        prop_assert!(nodes.len() <= 64 - len.leading_zeros() as usize);
        let covered: u64 = nodes.iter().map(|n| 1u64 << n.level).sum();
        prop_assert_eq!(covered, len);
    }
}

#[test]
fn proofs_between_equal_and_empty_sizes() {
    let tree = Tree::of_leaves(&leaves(5, 1));
    let root = tree.roots[5];
    assert!(verify_consistency(5, 5, &root, &root, &[]).is_ok());
    assert!(verify_consistency(5, 5, &root, &tree.roots[4], &[]).is_err());
    assert!(verify_consistency(0, 5, &tree.roots[0], &root, &[]).is_ok());
    assert!(verify_consistency(4, 5, &tree.roots[4], &root, &[]).is_err());
    assert!(verify_consistency(5, 4, &root, &tree.roots[4], &[]).is_err());
    assert!(verify_inclusion(5, 5, &tree.leaves[0], &[], &root).is_err());
}

/// Why a proof must be checked at a *signed* size: RFC 9162 proofs do not
/// carry the size themselves. A proof of leaf 0 in a tree of 4 has the same
/// shape as one in a tree of 3, so it verifies at size 3 against the size-4
/// root; the checkpoint's signature over (size, root) is what rules that out
/// (tests/it/checkpoint.rs alters the size and fails the signature).
#[test]
fn the_size_is_bound_to_the_root_by_the_signature_not_by_the_proof() {
    let tree = Tree::of_leaves(&leaves(4, 9));
    let proof = tree.inclusion(0, 4);
    assert!(verify_inclusion(0, 4, &tree.leaves[0], &proof, &tree.roots[4]).is_ok());
    assert!(verify_inclusion(0, 3, &tree.leaves[0], &proof, &tree.roots[4]).is_ok());
    // At the right size, the right root: size 3's own root does not match.
    assert!(verify_inclusion(0, 3, &tree.leaves[0], &proof, &tree.roots[3]).is_err());
}
