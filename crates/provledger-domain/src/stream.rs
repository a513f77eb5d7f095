//! One way to fold any stream: the [`StreamState`] trait.
//!
//! The ledger has three kinds of stream — orders, organisations and
//! reservations — each with its own event enum and `evolve`. This trait lets
//! the shell (and `import`'s replay, and the offline verifier) decode and fold
//! any of them with one generic function instead of a hand-written loop per
//! kind.

use crate::{
    evolve, evolve_org, evolve_reservation, DecodeError, Event, OrderState, OrgEvent, OrgState,
    ReservationEvent, ReservationState,
};

/// The folded state of one kind of stream.
pub trait StreamState: Default + Clone {
    /// The stream's event type.
    type Event;

    /// Decode a stored event of this kind of stream.
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self::Event, DecodeError>;

    /// Apply one event. Pure and total.
    fn apply(self, event: &Self::Event) -> Self;

    /// Events folded so far (equals the stream version).
    fn version(&self) -> u64;

    /// Business time of the latest event folded, if any.
    fn last_event_at(&self) -> Option<chrono::DateTime<chrono::Utc>>;
}

impl StreamState for OrderState {
    type Event = Event;

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Event, DecodeError> {
        Event::from_stored(event_type, schema_version, payload)
    }

    fn apply(self, event: &Event) -> Self {
        evolve(self, event)
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn last_event_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.last_event_at
    }
}

impl StreamState for OrgState {
    type Event = OrgEvent;

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<OrgEvent, DecodeError> {
        OrgEvent::from_stored(event_type, schema_version, payload)
    }

    fn apply(self, event: &OrgEvent) -> Self {
        evolve_org(self, event)
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn last_event_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.last_event_at
    }
}

impl StreamState for ReservationState {
    type Event = ReservationEvent;

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<ReservationEvent, DecodeError> {
        ReservationEvent::from_stored(event_type, schema_version, payload)
    }

    fn apply(self, event: &ReservationEvent) -> Self {
        evolve_reservation(self, event)
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn last_event_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.last_event_at
    }
}
