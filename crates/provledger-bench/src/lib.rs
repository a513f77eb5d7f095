//! The provledger benchmark harness.
//!
//! This crate exists so that speed, memory and scaling are measured facts,
//! each compared in the same run with the ceiling the database itself sets
//! (docs/performance.md). It has four parts:
//!
//! * [`workload`]: a seeded generator of realistic orders and actions;
//! * [`synth`]: turns a workload into the exact events the ledger would
//!   record, fast, to build large ledgers without hours of durable commits;
//! * [`raw`]: bare `rusqlite` / `postgres` baselines on the same rows;
//! * [`measure`]: the run itself (P1–P6 and group commit) and [`report`]
//!   for the results table.
//!
//! Nothing here is used by the ledger itself; it depends on every other
//! crate and nothing depends on it.

#![warn(missing_docs)]

pub mod http_load;
pub mod measure;
pub mod queries;
pub mod raw;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod synth;
pub mod workload;

pub use measure::{run, RunOptions};
pub use report::Report;
pub use workload::{Workload, WorkloadSpec};
