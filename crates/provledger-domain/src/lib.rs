//! The pure domain core of provledger: value types, commands, events and the
//! rules R1–R18 of DESIGN.md as `decide` / `evolve`.
//!
//! This crate exists so that every rule lives in one place that can be tested
//! without a database or a clock. Invariants (checked by the workspace tidy
//! tests): it does no I/O, reads no clock (time arrives in [`Context`]),
//! knows no SQL and depends on no other provledger crate.

#![warn(missing_docs)]

mod command;
mod decide;
mod email;
mod error;
mod event;
mod ids;
mod offer;
mod schedule;
mod state;

pub use command::{Actor, Command, Context, LineRequest, OrderRequest, ValidOrder};
pub use decide::decide;
pub use email::Email;
pub use error::DomainError;
pub use event::{
    Attachment, Event, LineSpec, RefusalCode, RefusedAction, SupportRequestType, EVENT_TYPES,
    PROVISIONING_SENDER, SCHEMA_VERSION,
};
pub use ids::{LineId, OrderId, OrgId, SubscriptionId, ORDER_STREAM_PREFIX};
pub use offer::Offer;
pub use schedule::{due_events, escalation_due, next_due, rsd_start};
pub use state::{evolve, Line, LineStatus, Order, OrderState};
