//! Tests of the proof crate: RFC 6962 / RFC 9162 test vectors, properties of
//! proofs over random trees, and signed checkpoints.

mod checkpoint;
mod merkle;
mod support;
mod vectors;
