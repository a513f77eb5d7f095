//! The Merkle tree over a store's events: tree heads and proofs built from
//! the node hashes every backend stores, and the bookkeeping backends share
//! to keep those nodes up to date.
//!
//! This module exists so that proofs are assembled once, over the
//! [`EventStore`] trait, for every backend: a backend only stores and reads
//! node hashes ([`EventStore::merkle_nodes`]); which nodes a proof needs and
//! how they combine is `provledger_proof::merkle`'s business. A tree head or
//! a proof reads O(log N) nodes with one call.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use provledger_proof::merkle::{
    assemble, consistency_ranges, event_leaf, frontier_ids, inclusion_ranges, nodes_for, Frontier,
    Hash, NodeId,
};
use provledger_proof::ProofError;

use crate::{EventStore, Position, StoreError};

/// The tree head of the first `size` events: its root and the hash of the
/// event at `size` (the genesis hash for size 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of events covered.
    pub size: u64,
    /// The Merkle root over them.
    pub root: Hash,
}

/// Read `ids` from the store; every one must be there.
fn fetch(
    store: &dyn EventStore,
    ids: impl IntoIterator<Item = NodeId>,
) -> Result<HashMap<NodeId, Hash>, StoreError> {
    let ids: Vec<NodeId> = ids.into_iter().collect();
    let hashes = store.merkle_nodes(&ids)?;
    ids.into_iter()
        .zip(hashes)
        .map(|(id, hash)| match hash {
            Some(h) => Ok((id, h)),
            None => Err(StoreError::Proof(ProofError::MissingNode { id })),
        })
        .collect()
}

/// The number of events in the store (its head position, 0 when empty).
fn log_size(store: &dyn EventStore) -> Result<u64, StoreError> {
    Ok(store.head()?.map_or(0, |h| h.position))
}

fn check_size(store: &dyn EventStore, size: u64) -> Result<(), StoreError> {
    let held = log_size(store)?;
    if size > held {
        return Err(StoreError::Proof(ProofError::OutOfRange {
            what: format!("the ledger holds {held} events, fewer than {size}"),
        }));
    }
    Ok(())
}

/// The Merkle root over the first `size` events, from at most log2(size)
/// stored nodes.
pub fn root_at(store: &dyn EventStore, size: u64) -> Result<Hash, StoreError> {
    check_size(store, size)?;
    let ids = frontier_ids(size);
    let nodes = fetch(store, ids.iter().copied())?;
    let hashes: Vec<Hash> = ids.iter().map(|id| nodes[id]).collect();
    Ok(Frontier::from_hashes(size, &hashes)?.root())
}

/// The inclusion proof of the event at `position` in the tree of the first
/// `size` events (RFC 9162 §2.1.3), leaf first.
pub fn inclusion_proof(
    store: &dyn EventStore,
    position: Position,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    check_size(store, size)?;
    if position == 0 {
        return Err(StoreError::Proof(ProofError::OutOfRange {
            what: "positions start at 1".into(),
        }));
    }
    let ranges = inclusion_ranges(position - 1, size)?;
    let nodes = fetch(store, nodes_for(&ranges))?;
    Ok(assemble(&ranges, &nodes)?)
}

/// The consistency proof between the trees of the first `old` and the first
/// `new` events (RFC 9162 §2.1.4).
pub fn consistency_proof(
    store: &dyn EventStore,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, StoreError> {
    check_size(store, new)?;
    let ranges = consistency_ranges(old, new)?;
    let nodes = fetch(store, nodes_for(&ranges))?;
    Ok(assemble(&ranges, &nodes)?)
}

/// The tree's growing edge inside a backend's write transaction: the
/// backend loads it at the tree's stored size, pushes every event it writes
/// (after any the tree lacks), and inserts [`TreeWriter::take`] before it
/// commits.
#[derive(Debug)]
pub(crate) struct TreeWriter {
    frontier: Frontier,
    pending: Vec<(NodeId, Hash)>,
}

impl TreeWriter {
    /// The nodes to read for a tree of `size` leaves.
    pub(crate) fn ids_to_load(size: u64) -> Vec<NodeId> {
        frontier_ids(size)
    }

    /// The writer for a tree of `size` leaves, given the stored hashes of
    /// [`TreeWriter::ids_to_load`]`(size)`.
    pub(crate) fn load(size: u64, hashes: Vec<Option<Hash>>) -> Result<TreeWriter, StoreError> {
        let ids = frontier_ids(size);
        let hashes = ids
            .iter()
            .zip(hashes)
            .map(|(id, h)| h.ok_or(StoreError::Proof(ProofError::MissingNode { id: *id })))
            .collect::<Result<Vec<Hash>, _>>()?;
        Ok(TreeWriter {
            frontier: Frontier::from_hashes(size, &hashes)?,
            pending: Vec::new(),
        })
    }

    /// The writer continuing `frontier` (a tree whose stored nodes are
    /// already written).
    pub(crate) fn resume(frontier: Frontier) -> TreeWriter {
        TreeWriter {
            frontier,
            pending: Vec::new(),
        }
    }

    /// The tree's growing edge, including the leaves pushed so far.
    pub(crate) fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Leaves so far.
    pub(crate) fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Append the event at the next position, given its hex hash.
    pub(crate) fn push(&mut self, position: Position, hash_hex: &str) -> Result<(), StoreError> {
        if position != self.frontier.size() + 1 {
            return Err(StoreError::TreeMismatch {
                position,
                reason: format!(
                    "the Merkle tree holds {} events but the next event written is at position {position}",
                    self.frontier.size()
                ),
            });
        }
        let leaf = event_leaf(hash_hex).map_err(|e| StoreError::Corrupt {
            position,
            reason: e.to_string(),
        })?;
        self.pending.extend(self.frontier.push_leaf(leaf));
        Ok(())
    }

    /// The nodes completed since the last call, to insert.
    pub(crate) fn take(&mut self) -> Vec<(NodeId, Hash)> {
        std::mem::take(&mut self.pending)
    }
}

/// The error for a tree that covers more events than the log holds: the
/// last events were removed behind the store's back.
pub(crate) fn tree_ahead(tree_size: u64, head: u64) -> StoreError {
    StoreError::TreeMismatch {
        position: head + 1,
        reason: format!(
            "the Merkle tree covers {tree_size} events but the log holds only {head}: \
             events after position {head} were removed"
        ),
    }
}

/// The tree's growing edge as of the last write transaction a store handle
/// committed, so that the next one need not read it again.
///
/// Another handle (another process) may have appended since: a backend uses
/// the cached frontier only when the tree size it reads inside its new
/// transaction, under the write lock, equals the cached size — the tree is
/// append-only, so the same size means the same tree. Otherwise it reads the
/// frontier's nodes as without a cache.
#[derive(Debug, Default)]
pub(crate) struct FrontierCache(Mutex<Option<Frontier>>);

impl FrontierCache {
    /// The cached frontier if it has `size` leaves; the cache is emptied
    /// either way, until [`FrontierCache::keep`] after the next commit.
    pub(crate) fn take(&self, size: u64) -> Option<Frontier> {
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cached.take().filter(|f| f.size() == size)
    }

    /// Remember `tree`'s frontier: call only once its transaction committed.
    pub(crate) fn keep(&self, tree: &TreeWriter) {
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *cached = Some(tree.frontier().clone());
    }
}
