//! Uniqueness across streams, event-sourced: reservation streams.
//!
//! R16 says a user (email) belongs to one organisation at a time; R18 says a
//! subdomain is taken at most once across organisations. Neither can be
//! checked inside one order or organisation stream, and a read-then-write
//! check would let two concurrent setups both win. So every claimed value
//! has its own stream — `reservation-email-<identity>` and
//! `reservation-subdomain-<name>` — and a claim is an append to that stream
//! expecting it not to exist yet (or to be at the exact version read), in
//! the same atomic append as the order and organisation events. Of two
//! racing claims the store accepts one; the other gets a version conflict,
//! re-decides, finds the value taken and records a refusal (R12).
//! (ADR 0005.)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{decode_stored, payload_of};
use crate::{
    DecodeError, Email, LineId, OrderId, OrgId, Subdomain, SubscriptionId, SCHEMA_VERSION,
};

/// Prefix of every reservation stream id.
pub const RESERVATION_STREAM_PREFIX: &str = "reservation-";

/// What a reservation stream reserves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReservationKey {
    /// R16: a user, by [`Email::identity`] (lowercased).
    Email(String),
    /// R18: an enterprise subdomain.
    Subdomain(Subdomain),
    /// An order id, lowercased: order ids are unique without regard to case.
    OrderId(String),
    /// A subscription id, lowercased: it names one line in the whole ledger.
    Subscription(String),
}

impl ReservationKey {
    /// The reservation of a user's email.
    pub fn email(email: &Email) -> ReservationKey {
        ReservationKey::Email(email.identity())
    }

    /// The reservation of an order id.
    pub fn order_id(order_id: &OrderId) -> ReservationKey {
        ReservationKey::OrderId(order_id.as_str().to_lowercase())
    }

    /// The reservation of a subscription id.
    pub fn subscription(subscription_id: &SubscriptionId) -> ReservationKey {
        ReservationKey::Subscription(subscription_id.as_str().to_lowercase())
    }

    /// The reservation stream: `reservation-email-<identity>`,
    /// `reservation-subdomain-<name>`, `reservation-order-<id>` or
    /// `reservation-subscription-<id>` (ids lowercased).
    pub fn stream_id(&self) -> String {
        match self {
            ReservationKey::OrderId(id) => format!("{RESERVATION_STREAM_PREFIX}order-{id}"),
            ReservationKey::Subscription(id) => {
                format!("{RESERVATION_STREAM_PREFIX}subscription-{id}")
            }
            ReservationKey::Email(identity) => {
                format!("{RESERVATION_STREAM_PREFIX}email-{identity}")
            }
            ReservationKey::Subdomain(name) => {
                format!("{RESERVATION_STREAM_PREFIX}subdomain-{name}")
            }
        }
    }
}

/// An event of a reservation stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ReservationEvent {
    /// R16: the user now belongs to the organisation.
    EmailReserved {
        /// When.
        at: DateTime<Utc>,
        /// The user, as entered.
        email: Email,
        /// The organisation the user belongs to.
        org_id: OrgId,
        /// The order whose setup claimed it.
        order_id: OrderId,
    },
    /// R18: the subdomain is the organisation's.
    SubdomainReserved {
        /// When.
        at: DateTime<Utc>,
        /// The subdomain.
        subdomain: Subdomain,
        /// The organisation holding it.
        org_id: OrgId,
        /// The order whose service setup claimed it.
        order_id: OrderId,
    },
    /// An order id is taken (by the order placed with it).
    OrderIdReserved {
        /// When.
        at: DateTime<Utc>,
        /// The order, its id as placed.
        order_id: OrderId,
    },
    /// A subscription id belongs to one line of one order.
    SubscriptionReserved {
        /// When.
        at: DateTime<Utc>,
        /// The subscription, as placed.
        subscription_id: SubscriptionId,
        /// The order holding it.
        order_id: OrderId,
        /// The line holding it.
        line_id: LineId,
    },
}

/// The type names of every reservation event, in catalogue order.
pub const RESERVATION_EVENT_TYPES: &[&str] = &[
    "EmailReserved",
    "SubdomainReserved",
    "OrderIdReserved",
    "SubscriptionReserved",
];

impl ReservationEvent {
    /// The event's type name, as stored.
    pub fn event_type(&self) -> &'static str {
        match self {
            ReservationEvent::EmailReserved { .. } => "EmailReserved",
            ReservationEvent::SubdomainReserved { .. } => "SubdomainReserved",
            ReservationEvent::OrderIdReserved { .. } => "OrderIdReserved",
            ReservationEvent::SubscriptionReserved { .. } => "SubscriptionReserved",
        }
    }

    /// The schema version this build writes for the event's type.
    pub fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// Business time of the event.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            ReservationEvent::EmailReserved { at, .. }
            | ReservationEvent::SubdomainReserved { at, .. }
            | ReservationEvent::OrderIdReserved { at, .. }
            | ReservationEvent::SubscriptionReserved { at, .. } => *at,
        }
    }

    /// The organisation the value is reserved to (emails and subdomains).
    pub fn org_id(&self) -> Option<&OrgId> {
        match self {
            ReservationEvent::EmailReserved { org_id, .. }
            | ReservationEvent::SubdomainReserved { org_id, .. } => Some(org_id),
            ReservationEvent::OrderIdReserved { .. }
            | ReservationEvent::SubscriptionReserved { .. } => None,
        }
    }

    /// The order whose command claimed the value.
    pub fn order_id(&self) -> &OrderId {
        match self {
            ReservationEvent::EmailReserved { order_id, .. }
            | ReservationEvent::SubdomainReserved { order_id, .. }
            | ReservationEvent::OrderIdReserved { order_id, .. }
            | ReservationEvent::SubscriptionReserved { order_id, .. } => order_id,
        }
    }

    /// The JSON payload as stored: the event's fields without the type tag.
    pub fn to_payload(&self) -> serde_json::Value {
        payload_of(self)
    }

    /// Decode a stored reservation event (docs/events.md §9).
    pub fn from_stored(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<ReservationEvent, DecodeError> {
        decode_stored(RESERVATION_EVENT_TYPES, event_type, schema_version, payload)
    }
}

/// Who holds a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The organisation (emails and subdomains; none for ids).
    pub org_id: Option<OrgId>,
    /// The order whose command claimed it.
    pub order_id: OrderId,
    /// The line (subscription reservations).
    pub line_id: Option<LineId>,
    /// Since when.
    pub since: DateTime<Utc>,
}

impl Holder {
    /// The holding organisation's id, or `-` for an id reservation.
    pub fn org_label(&self) -> String {
        self.org_id
            .as_ref()
            .map_or_else(|| "-".to_string(), |o| o.to_string())
    }
}

/// The state of one reservation stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReservationState {
    /// The holder, once reserved.
    pub holder: Option<Holder>,
    /// Business time of the latest event.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Events folded so far (equals the stream version).
    pub version: u64,
}

impl ReservationState {
    /// Fold a whole stream from scratch.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a ReservationEvent>,
    ) -> ReservationState {
        events
            .into_iter()
            .fold(ReservationState::default(), evolve_reservation)
    }

    /// Whether the value is free for `org_id`: unreserved, or reserved to it.
    pub fn free_for(&self, org_id: &OrgId) -> bool {
        !matches!(&self.holder, Some(h) if h.org_id.as_ref() != Some(org_id))
    }
}

/// Apply one event to a reservation. Pure and total. The first reservation
/// holds; a later one (which the decider never writes) changes nothing.
pub fn evolve_reservation(
    mut state: ReservationState,
    event: &ReservationEvent,
) -> ReservationState {
    state.version += 1;
    let at = event.at();
    state.last_event_at = Some(state.last_event_at.map_or(at, |t| t.max(at)));
    if state.holder.is_none() {
        state.holder = Some(Holder {
            org_id: event.org_id().cloned(),
            order_id: event.order_id().clone(),
            line_id: match event {
                ReservationEvent::SubscriptionReserved { line_id, .. } => Some(line_id.clone()),
                _ => None,
            },
            since: at,
        });
    }
    state
}
