//! The part of an append both backends share: numbering and hashing the
//! events of a request.
//!
//! This module exists so that what an event's position, stream version,
//! idempotency key, stored times and chained hash are is decided once, not
//! once per backend: the SQLite and PostgreSQL modules only find the head
//! and the stream versions and run the SQL. (The rest of a shared store
//! core — import checks, the migration runner, lock keys — is still per
//! backend.)

use chrono::{DateTime, Utc};

use crate::{hash, to_stored_precision, NewEvent, Position, RecordedEvent, StreamVersion};

/// The event `new` recorded at `position` (after the event whose hash is
/// `prev_hash`) as version `stream_version` of `stream_id`: the request's
/// idempotency key (if any) in its metadata, times at stored precision,
/// and its hash computed.
pub(crate) fn record(
    position: Position,
    prev_hash: String,
    stream_id: &str,
    stream_version: StreamVersion,
    new: NewEvent,
    idempotency_key: Option<&str>,
    recorded_at: DateTime<Utc>,
) -> RecordedEvent {
    let mut metadata = new.metadata;
    if let Some(key) = idempotency_key {
        // Every event records the key of the request that wrote it.
        metadata.idempotency_key = Some(key.to_string());
    }
    let mut event = RecordedEvent {
        position,
        stream_id: stream_id.to_string(),
        stream_version,
        event_type: new.event_type,
        schema_version: new.schema_version,
        payload: new.payload,
        metadata,
        occurred_at: to_stored_precision(new.occurred_at),
        recorded_at,
        prev_hash,
        hash: String::new(),
    };
    event.hash = hash::event_hash(&event);
    event
}
