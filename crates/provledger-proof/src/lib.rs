//! Tamper evidence for provledger that needs nothing but the evidence.
//!
//! This crate exists so that everything an auditor checks — an event's hash,
//! the Merkle tree over all events (RFC 9162), inclusion and consistency
//! proofs, Ed25519-signed checkpoints and evidence bundles — is computed by
//! one pure implementation that the stores, the CLI and the offline verifier
//! share. It does no I/O and knows neither a database nor the domain: the
//! verifier binary can depend on it without pulling in either.
//!
//! * [`record`] — the stored shape of an event ([`RecordedEvent`]).
//! * [`hash`] — the event hash encoding (ADR 0003) and the chain checker.
//! * [`merkle`] — the tree, its stored nodes, proofs and their verification.
//! * [`checkpoint`] — signed tree heads and their keys.
//! * [`bundle`] — evidence bundles and their verification.

#![warn(missing_docs)]

pub mod bundle;
pub mod checkpoint;
mod error;
pub mod hash;
pub mod merkle;
pub mod record;

pub use error::ProofError;
pub use record::{BrokenLink, Metadata, Position, RecordedEvent, StreamVersion};

/// Re-exported so that callers name the same key types this crate signs with.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
