//! The hash chain: how an event's SHA-256 is computed and how a chain is checked.
//!
//! This module exists so that every backend, `verify`, `import`, `migrate` and
//! the offline bundle verifier
//! compute exactly the same bytes. It is pure (no I/O) so that the verifier
//! needs no database crate. The encoding is documented in
//! `docs/adr/0003-hash-encoding.md`; changing it breaks every existing ledger.
//!
//! Encoding: SHA-256 over a sequence of fields, each written as its byte
//! length (u64, big-endian) followed by its UTF-8 bytes, in this order:
//! `prev_hash`, position (decimal), stream id, stream version (decimal),
//! event type, schema version (decimal), occurred_at and recorded_at
//! (RFC 3339, UTC, exactly six fractional digits, `Z`), the payload as
//! canonical JSON (object keys sorted, no whitespace), and the metadata as
//! canonical JSON. Length prefixes make the encoding unambiguous.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::record::{BrokenLink, Position, RecordedEvent, StreamVersion};

/// `prev_hash` of the first event: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Format a time the way it is hashed and stored: RFC 3339, microseconds, `Z`.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Canonical JSON: object keys sorted, no insignificant whitespace.
///
/// `serde_json::Map` is a `BTreeMap` in this workspace (the `preserve_order`
/// feature is not enabled), so plain compact serialisation sorts keys.
pub fn canonical_json(value: &serde_json::Value) -> String {
    // Serialising a Value cannot fail: its keys are strings.
    serde_json::to_string(value).unwrap_or_default()
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// An event's fields as its hash covers them, with the payload, the
/// metadata and the times already encoded (canonical JSON, [`format_time`]).
/// A store that encodes an event's row anyway hashes the same strings it
/// writes, instead of encoding them twice.
#[derive(Debug, Clone, Copy)]
pub struct HashedFields<'a> {
    /// The previous event's hash.
    pub prev_hash: &'a str,
    /// The event's position.
    pub position: Position,
    /// Its stream.
    pub stream_id: &'a str,
    /// Its version in the stream.
    pub stream_version: StreamVersion,
    /// Its type.
    pub event_type: &'a str,
    /// Its payload's schema version.
    pub schema_version: u32,
    /// When it happened, as [`format_time`] writes it.
    pub occurred_at: &'a str,
    /// When it was recorded, as [`format_time`] writes it.
    pub recorded_at: &'a str,
    /// The payload as canonical JSON.
    pub payload: &'a str,
    /// The metadata as canonical JSON.
    pub metadata: &'a str,
}

impl<'a> HashedFields<'a> {
    /// The fields of `event` (its own `hash` ignored), with its times,
    /// payload and metadata as already encoded.
    pub fn of(
        event: &'a RecordedEvent,
        occurred_at: &'a str,
        recorded_at: &'a str,
        payload: &'a str,
        metadata: &'a str,
    ) -> Self {
        HashedFields {
            prev_hash: &event.prev_hash,
            position: event.position,
            stream_id: &event.stream_id,
            stream_version: event.stream_version,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            occurred_at,
            recorded_at,
            payload,
            metadata,
        }
    }

    /// The hash these fields make (hex).
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        field(&mut h, self.prev_hash.as_bytes());
        field(&mut h, self.position.to_string().as_bytes());
        field(&mut h, self.stream_id.as_bytes());
        field(&mut h, self.stream_version.to_string().as_bytes());
        field(&mut h, self.event_type.as_bytes());
        field(&mut h, self.schema_version.to_string().as_bytes());
        field(&mut h, self.occurred_at.as_bytes());
        field(&mut h, self.recorded_at.as_bytes());
        field(&mut h, self.payload.as_bytes());
        field(&mut h, self.metadata.as_bytes());
        hex::encode(h.finalize())
    }
}

/// The hash of `event`, computed from its content and `event.prev_hash`
/// (`event.hash` itself is ignored).
pub fn event_hash(event: &RecordedEvent) -> String {
    let metadata = serde_json::to_value(&event.metadata).unwrap_or(serde_json::Value::Null);
    HashedFields::of(
        event,
        &format_time(&event.occurred_at),
        &format_time(&event.recorded_at),
        &canonical_json(&event.payload),
        &canonical_json(&metadata),
    )
    .hash()
}

/// Checks a sequence of events, in position order, against the chain rules.
///
/// Used by the store's `verify` over a whole ledger and by backends' `import_batch`
/// starting from the current head.
#[derive(Debug, Clone)]
pub struct ChainChecker {
    next_position: Position,
    last_hash: String,
    checked: u64,
    stream_versions: HashMap<String, StreamVersion>,
    track_streams: bool,
}

impl Default for ChainChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainChecker {
    /// A checker for a ledger starting at position 1, tracking stream versions.
    pub fn new() -> Self {
        ChainChecker {
            next_position: 1,
            last_hash: GENESIS_HASH.to_string(),
            checked: 0,
            stream_versions: HashMap::new(),
            track_streams: true,
        }
    }

    /// A checker continuing after `position` whose hash is `hash`.
    ///
    /// It does not know earlier stream versions, so it checks only that
    /// versions within the checked events are consecutive; callers check the
    /// first version of each stream against the store.
    pub fn continuing(position: Position, hash: &str) -> Self {
        ChainChecker {
            next_position: position + 1,
            last_hash: hash.to_string(),
            checked: 0,
            stream_versions: HashMap::new(),
            track_streams: false,
        }
    }

    /// Events that checked out so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Hash of the last event that checked out.
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }

    /// Check the next event; on success it becomes the new head.
    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), BrokenLink> {
        self.check_links(event)?;
        self.accept(event, event_hash(event))
    }

    /// [`ChainChecker::check`] in two steps, for a caller that encodes the
    /// event anyway: first everything but the hash (position, previous
    /// hash, stream version), then [`ChainChecker::accept`] with the hash
    /// it computed from the encoded fields ([`HashedFields`]).
    pub fn check_links(&self, event: &RecordedEvent) -> Result<(), BrokenLink> {
        let broken = |reason: String| BrokenLink {
            position: event.position,
            reason,
        };
        if event.position != self.next_position {
            return Err(BrokenLink {
                position: self.next_position,
                reason: format!(
                    "expected position {} next but found {} (an event is missing or out of order)",
                    self.next_position, event.position
                ),
            });
        }
        if event.prev_hash != self.last_hash {
            return Err(broken(format!(
                "prev_hash {} does not match the previous event's hash {}",
                event.prev_hash, self.last_hash
            )));
        }
        let previous = self.stream_versions.get(&event.stream_id).copied();
        let expected_version = match previous {
            Some(v) => Some(v + 1),
            None if self.track_streams => Some(1),
            None => None,
        };
        if let Some(expected) = expected_version {
            if event.stream_version != expected {
                return Err(broken(format!(
                    "stream {} version {} follows version {} (versions must be consecutive)",
                    event.stream_id,
                    event.stream_version,
                    expected - 1
                )));
            }
        }
        Ok(())
    }

    /// After [`ChainChecker::check_links`]: check that `computed` (the hash
    /// recomputed from the event's content) is the event's stated hash; on
    /// success the event becomes the new head.
    pub fn accept(&mut self, event: &RecordedEvent, computed: String) -> Result<(), BrokenLink> {
        if computed != event.hash {
            return Err(BrokenLink {
                position: event.position,
                reason: format!(
                    "stored hash {} does not match the recomputed hash {} (the event was altered)",
                    event.hash, computed
                ),
            });
        }
        self.stream_versions
            .insert(event.stream_id.clone(), event.stream_version);
        self.next_position += 1;
        self.last_hash = computed;
        self.checked += 1;
        Ok(())
    }
}
