//! The provledger application: command handling, the scheduler, scenario
//! scripts and the command-line interface.
//!
//! This crate is the imperative shell: it reads clocks, files and databases,
//! and wires the pure domain (`provledger-domain`), the event store
//! (`provledger-store`) and the read models (`provledger-projections`)
//! together. Nothing depends on it.

#![warn(missing_docs)]

pub mod bounded;
pub mod cli;
pub mod demo;
mod error;
pub mod evidence;
pub mod group_commit;
pub mod http;
pub mod input;
mod ledger;
pub mod output;
pub mod script;
pub mod setup;
pub mod shell;
pub mod state_cache;
pub mod tokens;
pub mod transfer;

pub use error::{AppError, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, EXIT_REFUSED};
pub use ledger::{
    fold_stream, outcome_of, transaction_id, CommandOutcome, Ledger, OutcomeStatus, TickReport,
    MAX_ATTEMPTS, SYSTEM_ACTOR,
};
pub use shell::{to_new_events, Envelope, Origin, RequestedTime, Submission, Via};
