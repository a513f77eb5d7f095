//! The domain's error types: bad input ([`DomainError`]) and stored events
//! this build cannot read ([`DecodeError`]) — never a rule refusal.
//!
//! A refusal by a rule (no access, after PONR, …) is not an error: it is a
//! [`crate::Event::CommandRefused`] that gets recorded (R12). A `DomainError`
//! means the request itself was wrong and nothing may be written; the CLI
//! exits 2 and HTTP answers 400/404/422. A `DecodeError` is about what is
//! already stored, not about the request: callers report it as an integrity
//! failure (exit 4) naming the event's position.

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
    /// A multi-stream command is dated before the latest event of another
    /// stream it writes to (an organisation or a reservation).
    #[error("the command is dated {at}, before the latest event of {stream_id} at {latest}; give a time at or after {latest}")]
    StreamOutOfOrder {
        /// The stream.
        stream_id: String,
        /// The command's time.
        at: DateTime<Utc>,
        /// The stream's latest event's time.
        latest: DateTime<Utc>,
    },
    /// A user command was issued by the scheduler.
    #[error("{command} must be done by a user; give the acting user's email")]
    UserRequired {
        /// The command.
        command: &'static str,
    },
    /// A subdomain breaks the syntax rule (R18, decided).
    #[error("invalid subdomain {value:?}: {reason}; a subdomain has 3-63 lowercase letters, digits and hyphens, and does not start or end with a hyphen")]
    InvalidSubdomain {
        /// As given.
        value: String,
        /// The rule it broke.
        reason: String,
    },
    /// A setup names an existing organisation that has no stream.
    #[error("there is no organisation {org_id}; check the id, or choose a new organisation (R15)")]
    UnknownOrganisation {
        /// The organisation asked for.
        org_id: String,
    },
    /// A setup names an existing organisation of the other kind.
    #[error("organisation {org_id} is a {actual} organisation, not a {expected} organisation; give the {expected} organisation's id")]
    WrongOrganisationKind {
        /// The organisation.
        org_id: String,
        /// The kind the field asks for (`partner` or `customer`).
        expected: &'static str,
        /// The organisation's kind.
        actual: &'static str,
    },
    /// An order id is taken, case-insensitively, by another order.
    #[error("order id {order_id} is already used by order {existing} (order ids are compared without regard to case); use another order id")]
    OrderIdTaken {
        /// The id asked for.
        order_id: String,
        /// The order holding it.
        existing: String,
    },
    /// A subscription id already belongs to a line of another order.
    #[error("subscription {subscription_id} already belongs to line {line_id} of order {order_id}; a subscription id names one line in the whole ledger — check the subscription id")]
    SubscriptionTaken {
        /// The subscription asked for.
        subscription_id: String,
        /// The order holding it.
        order_id: String,
        /// The line holding it.
        line_id: String,
    },
    /// No such support case on the order.
    #[error("order {order_id} has no support case {case_id}; its cases are: {known}")]
    UnknownCase {
        /// The order.
        order_id: String,
        /// The case asked for.
        case_id: String,
        /// The order's cases, comma-separated.
        known: String,
    },
    /// The support case was resolved before.
    #[error("support case {case_id} was already resolved ({outcome}); a case is resolved once — open a new case if the problem remains")]
    CaseAlreadyResolved {
        /// The case.
        case_id: String,
        /// Its outcome.
        outcome: String,
    },
    /// A new organisation's derived id is already taken by a stream.
    #[error(
        "organisation {org_id} already exists; choose it as an existing organisation instead (R15)"
    )]
    OrganisationExists {
        /// The organisation.
        org_id: String,
    },
}

/// A stored event that this build cannot decode: an integrity or version
/// problem of the ledger, not bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
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
