//! The hash chain: how an event's SHA-256 is computed and how a chain is checked.
//!
//! This module exists so that the store's callers keep naming
//! `provledger_store::hash` while the encoding itself lives in the pure
//! `provledger-proof` crate, where the offline bundle verifier can use it
//! without a database. Both backends, `verify`, `import` and `migrate` use
//! exactly these functions (ADR 0003).

pub use provledger_proof::hash::*;
