//! The stored shape of an event: what the hash chain commits to.
//!
//! This module exists so that the event store, the evidence bundle and the
//! offline verifier share one definition of a recorded event without the
//! verifier depending on any database crate. `provledger-store` re-exports
//! these types unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Global position of an event in the whole ledger; the first event is 1.
pub type Position = u64;

/// Version of a stream: the number of events in it. An empty stream is 0.
pub type StreamVersion = u64;

/// Who did what, and under which transaction, for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metadata {
    /// The acting user (an email) or `system` for scheduled events.
    pub actor: String,
    /// The transaction (user action) this event belongs to.
    pub transaction_id: String,
    /// Groups the events caused by one request, across streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event or command that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The idempotency key of the request that appended this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// SHA-256 of the canonical request that appended this event: a retry
    /// with the same key must carry the same request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_fingerprint: Option<String>,
    /// The channel the request came through: `cli`, `http`, `import` or
    /// `scheduler`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// For the command line: the operating-system user who ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_user: Option<String>,
    /// For HTTP: the id of the bearer token (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// An event as stored, with everything needed to check it.
///
/// The payload is normally decoded JSON (`P` = [`serde_json::Value`], the
/// default). A reader that decodes payloads into its own types (the read
/// models) asks the store for `RecordedEvent<String>` instead, the stored
/// JSON text, so that each payload is parsed once rather than twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent<P = serde_json::Value> {
    /// Global position (1-based, gapless).
    pub position: Position,
    /// The stream this event belongs to, e.g. `order-WO-1001`.
    pub stream_id: String,
    /// Version of the stream after this event (1-based, gapless per stream).
    pub stream_version: StreamVersion,
    /// Event type name.
    pub event_type: String,
    /// Version of the payload's shape.
    pub schema_version: u32,
    /// The event's data.
    pub payload: P,
    /// Actor, transaction and correlation data.
    pub metadata: Metadata,
    /// Business time (microsecond precision).
    pub occurred_at: DateTime<Utc>,
    /// When the store wrote the event (microsecond precision).
    pub recorded_at: DateTime<Utc>,
    /// Hash of the event at `position - 1` ([`crate::hash::GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 of this event's canonical encoding and `prev_hash`, lowercase hex.
    pub hash: String,
}

impl<P> RecordedEvent<P> {
    /// The same event with `payload` in place of this one's, and this one's
    /// payload.
    pub fn replace_payload<Q>(self, payload: Q) -> (RecordedEvent<Q>, P) {
        let RecordedEvent {
            position,
            stream_id,
            stream_version,
            event_type,
            schema_version,
            payload: old,
            metadata,
            occurred_at,
            recorded_at,
            prev_hash,
            hash,
        } = self;
        let event = RecordedEvent {
            position,
            stream_id,
            stream_version,
            event_type,
            schema_version,
            payload,
            metadata,
            occurred_at,
            recorded_at,
            prev_hash,
            hash,
        };
        (event, old)
    }
}

/// The first broken link found when checking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// Position of the first event that does not check out.
    pub position: Position,
    /// What is wrong with it.
    pub reason: String,
}
