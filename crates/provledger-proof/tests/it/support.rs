//! Builds trees for the tests: every stored node, as a store would keep them.

use std::collections::HashMap;

use provledger_proof::merkle::{
    assemble, consistency_ranges, inclusion_ranges, nodes_for, Frontier, Hash, NodeId,
};

/// A tree over `entries` with every stored node, built the way the stores
/// build it (one leaf at a time).
pub struct Tree {
    pub nodes: HashMap<NodeId, Hash>,
    pub roots: Vec<Hash>,
    pub leaves: Vec<Hash>,
}

impl Tree {
    pub fn of_leaves(leaves: &[Hash]) -> Tree {
        let mut frontier = Frontier::new();
        let mut nodes = HashMap::new();
        let mut roots = vec![frontier.root()];
        for leaf in leaves {
            for (id, h) in frontier.push_leaf(*leaf) {
                assert!(nodes.insert(id, h).is_none(), "node {id:?} written twice");
            }
            roots.push(frontier.root());
        }
        Tree {
            nodes,
            roots,
            leaves: leaves.to_vec(),
        }
    }

    pub fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        let ranges = inclusion_ranges(index, size).unwrap();
        let needed = nodes_for(&ranges);
        let subset: HashMap<NodeId, Hash> = needed.iter().map(|id| (*id, self.nodes[id])).collect();
        assemble(&ranges, &subset).unwrap()
    }

    pub fn consistency(&self, old: u64, new: u64) -> Vec<Hash> {
        let ranges = consistency_ranges(old, new).unwrap();
        let needed = nodes_for(&ranges);
        let subset: HashMap<NodeId, Hash> = needed.iter().map(|id| (*id, self.nodes[id])).collect();
        assemble(&ranges, &subset).unwrap()
    }
}

/// Distinct pseudo-random leaves.
pub fn leaves(n: usize, seed: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| {
            let mut entry = [0u8; 32];
            entry[..8].copy_from_slice(&seed.to_be_bytes());
            entry[8..16].copy_from_slice(&(i as u64).to_be_bytes());
            provledger_proof::merkle::leaf_hash(&entry)
        })
        .collect()
}
