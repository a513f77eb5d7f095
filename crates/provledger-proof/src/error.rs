//! What can be wrong with a proof, a checkpoint, a key or a bundle.
//!
//! This module exists so that every check of this crate fails with a reason
//! a person can act on; callers map [`ProofError::is_integrity`] failures to
//! "the evidence does not check out" (exit 4) and the rest to bad input.

use crate::merkle::NodeId;

/// A proof, signature or bundle that does not check out, or input that
/// cannot be read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The input is not well formed (bad hex, wrong length, unknown format).
    #[error("malformed input: {what}")]
    Malformed {
        /// What is wrong with it.
        what: String,
    },
    /// A leaf index or tree size out of range for the request.
    #[error("out of range: {what}")]
    OutOfRange {
        /// What is out of range.
        what: String,
    },
    /// A stored node the proof needs is absent.
    #[error("the Merkle tree lacks node (level {}, index {}); run `provledger verify`", id.level, id.index)]
    MissingNode {
        /// The node.
        id: NodeId,
    },
    /// A proof does not verify.
    #[error("{reason}")]
    InvalidProof {
        /// Why.
        reason: String,
    },
    /// A signature does not verify, or was made by another key.
    #[error("{reason}")]
    BadSignature {
        /// Why.
        reason: String,
    },
    /// A bundle's content does not check out.
    #[error("{reason}")]
    BadBundle {
        /// Why, naming the first event that fails.
        reason: String,
    },
}

impl ProofError {
    /// True when the evidence was read but does not check out (as opposed
    /// to input that could not be read as evidence at all).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            ProofError::InvalidProof { .. }
                | ProofError::BadSignature { .. }
                | ProofError::BadBundle { .. }
                | ProofError::MissingNode { .. }
        )
    }
}
