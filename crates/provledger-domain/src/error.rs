//! The domain's one error type: bad input, never a rule refusal.
//!
//! A refusal by a rule (no access, after PONR, …) is not an error: it is a
//! [`crate::Event::CommandRefused`] that gets recorded (R12). A `DomainError`
//! means the request itself was wrong and nothing may be written; the CLI
//! exits 2 and HTTP answers 400/404.

use chrono::{DateTime, Utc};

/// Bad input to the domain: nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// An email address is malformed.
    #[error("invalid email {value:?}: {reason}; give an address like name@example.com")]
    InvalidEmail {
        /// As given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// An identifier is malformed.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidId {
        /// Which kind of id.
        kind: &'static str,
        /// As given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// An offer name is not recognised.
    #[error("invalid offer {value:?}: use A-Flex, A-Flex-3, A-WX, A-SPK or another offer named A-<NAME>")]
    InvalidOffer {
        /// As given.
        value: String,
    },
    /// A field of a request is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field path, e.g. `lines[0].rsd`.
        field: String,
        /// What is wrong and what to write.
        reason: String,
    },
    /// The order exists already.
    #[error("order {order_id} has already been placed; use another order id")]
    OrderAlreadyPlaced {
        /// The order.
        order_id: String,
    },
    /// The command needs an order that has not been placed.
    #[error("the order has not been placed; check the order id or place the order first")]
    OrderNotPlaced,
    /// The line does not exist in the order.
    #[error("order {order_id} has no line {line_id}; its lines are: {known}")]
    UnknownLine {
        /// The order.
        order_id: String,
        /// The line asked for.
        line_id: String,
        /// The order's lines, comma-separated.
        known: String,
    },
    /// The change would change nothing.
    #[error("line {line_id}'s provisioning contact is already {email}; nothing to change")]
    NoChange {
        /// The line.
        line_id: String,
        /// Its current contact.
        email: String,
    },
    /// The command is dated before the stream's latest event.
    #[error("the command is dated {at}, before the order's latest event at {latest}; give a time at or after {latest}")]
    OutOfOrder {
        /// The command's time.
        at: DateTime<Utc>,
        /// The latest event's time.
        latest: DateTime<Utc>,
    },
    /// A user command was issued by the scheduler.
    #[error("{command} must be done by a user; give the acting user's email")]
    UserRequired {
        /// The command.
        command: &'static str,
    },
    /// A stored event has a type this build does not know.
    #[error("unknown event type {event_type:?}; upgrade provledger")]
    UnknownEventType {
        /// The type.
        event_type: String,
    },
    /// A stored event has a schema version this build cannot read.
    #[error("event type {event_type} has schema version {schema_version}, which this provledger cannot read; upgrade provledger")]
    UnsupportedSchemaVersion {
        /// The type.
        event_type: String,
        /// The version.
        schema_version: u32,
    },
    /// A stored payload does not match its type's shape.
    #[error("a {event_type} payload cannot be read: {reason}")]
    InvalidPayload {
        /// The type.
        event_type: String,
        /// What failed.
        reason: String,
    },
}
