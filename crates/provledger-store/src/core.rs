//! The part of a write both backends share: numbering and hashing the
//! events of an append, encoding an event as its row, and the import checks.
//!
//! This module exists so that what an event's position, stream version,
//! idempotency key, stored times, chained hash and stored row are, and
//! which imported batches are refused with which error, is decided once,
//! not once per backend: the SQLite and PostgreSQL modules only read the
//! head and the stream versions, run the SQL and write what this module
//! planned. The rest of the shared store core lives in
//! [`crate::migrations`] (the schema migration runner) and
//! [`crate::merkle`] (the tree's growing edge); the advisory-lock key of a
//! PostgreSQL table is derived in one place,
//! [`crate::postgres::lock_key_sql`].

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use crate::hash::{self, ChainChecker};
use crate::{
    to_stored_precision, Head, Metadata, NewEvent, Position, RecordedEvent, StoreError,
    StreamVersion,
};

/// How a read hands over each stored payload: parsed into a JSON value
/// (every read but one), or as the stored text
/// ([`crate::EventStore::read_all_json`]). Both backends decode rows
/// through it, so the two reads differ in this and nothing else.
pub(crate) trait StoredPayload: Sized {
    /// The payload of the row at `position` from its stored text.
    fn from_stored(position: Position, text: &str) -> Result<Self, StoreError>;
}

impl StoredPayload for serde_json::Value {
    fn from_stored(position: Position, text: &str) -> Result<Self, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
            position,
            reason: format!("payload: not valid JSON: {e}"),
        })
    }
}

impl StoredPayload for String {
    fn from_stored(_: Position, text: &str) -> Result<Self, StoreError> {
        Ok(text.to_owned())
    }
}

/// The event `new` recorded at `position` (after the event whose hash is
/// `prev_hash`) as version `stream_version` of `stream_id`: the request's
/// idempotency key (if any) in its metadata, times at stored precision,
/// and its hash computed from its row's text, which is returned with it
/// (see [`EncodedEvent::with_text`]) so that the row is not encoded twice.
pub(crate) fn record(
    position: Position,
    prev_hash: String,
    stream_id: &str,
    stream_version: StreamVersion,
    new: NewEvent,
    idempotency_key: Option<&str>,
    recorded_at: DateTime<Utc>,
) -> Result<(RecordedEvent, RowText), StoreError> {
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
    let text = RowText::of(&event)?;
    event.hash = hashed_fields(&event, &text).hash();
    Ok((event, text))
}

/// An event encoded as its row, the same for both backends: integers
/// checked, payload and metadata as canonical JSON, times formatted, so that
/// a row read back hashes byte for byte as the event did. Encoding is the
/// costly part of an insert, so SQLite's `import_batch` does it on another
/// thread.
#[derive(Debug)]
pub(crate) struct EncodedEvent<'a> {
    /// The event the row encodes.
    pub(crate) event: &'a RecordedEvent,
    pub(crate) position: i64,
    pub(crate) stream_version: i64,
    pub(crate) schema_version: i64,
    pub(crate) text: RowText,
}

/// The text columns of an event's row, as its hash covers them: payload
/// and metadata as canonical JSON, times formatted.
#[derive(Debug)]
pub(crate) struct RowText {
    pub(crate) payload: String,
    pub(crate) metadata: String,
    pub(crate) occurred_at: String,
    pub(crate) recorded_at: String,
}

impl RowText {
    /// Encode `event`'s text columns.
    pub(crate) fn of(event: &RecordedEvent) -> Result<RowText, StoreError> {
        Ok(RowText {
            payload: hash::canonical_json(&event.payload),
            metadata: metadata_json(&event.metadata).map_err(|e| StoreError::Corrupt {
                position: event.position,
                reason: format!("metadata cannot be encoded: {e}"),
            })?,
            occurred_at: hash::format_time(&event.occurred_at),
            recorded_at: hash::format_time(&event.recorded_at),
        })
    }
}

/// What `event`'s hash covers, with its text columns as `text` encodes them.
fn hashed_fields<'a>(event: &'a RecordedEvent, text: &'a RowText) -> hash::HashedFields<'a> {
    hash::HashedFields::of(
        event,
        &text.occurred_at,
        &text.recorded_at,
        &text.payload,
        &text.metadata,
    )
}

impl<'a> EncodedEvent<'a> {
    /// The row of `event`; an integer a database cannot store is refused
    /// ([`StoreError::ChainBroken`] at the event's position).
    pub(crate) fn new(event: &'a RecordedEvent) -> Result<Self, StoreError> {
        EncodedEvent::with_text(event, RowText::of(event)?)
    }

    /// The row of `event` whose text columns `text` already encodes (as
    /// [`record`] returns them).
    pub(crate) fn with_text(event: &'a RecordedEvent, text: RowText) -> Result<Self, StoreError> {
        Ok(EncodedEvent {
            event,
            position: to_sql_int(event.position, event.position, "position")?,
            stream_version: to_sql_int(event.stream_version, event.position, "stream version")?,
            schema_version: i64::from(event.schema_version),
            text,
        })
    }

    /// The event's hash, computed from this encoding (the same bytes
    /// [`hash::event_hash`] encodes).
    pub(crate) fn hash(&self) -> String {
        hashed_fields(self.event, &self.text).hash()
    }
}

/// Metadata as canonical JSON (the struct's field order is not sorted, so it
/// goes through a `Value`, whose maps are).
fn metadata_json(metadata: &Metadata) -> Result<String, serde_json::Error> {
    Ok(hash::canonical_json(&serde_json::to_value(metadata)?))
}

/// A `u64` as a database integer; values beyond `i64::MAX` cannot be stored
/// (bad input: [`StoreError::ChainBroken`] at `position`).
pub(crate) fn to_sql_int(value: u64, position: Position, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::ChainBroken {
        position,
        reason: format!("{what} {value} is too large to store"),
    })
}

/// The positions an imported request wrote under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange<'a> {
    pub(crate) key: &'a str,
    pub(crate) first: Position,
    pub(crate) last: Position,
}

/// What an import writes, once every event checked out.
#[derive(Debug)]
pub(crate) struct ImportPlan<'a> {
    /// The rows, in position order.
    pub(crate) rows: Vec<EncodedEvent<'a>>,
    /// The idempotency keys to record (a key the store already knows is
    /// left as it is).
    pub(crate) keys: Vec<KeyRange<'a>>,
}

/// The import checks, event by event, without SQL: the backend supplies the
/// head and `stored_version`, which answers the stored version of a stream
/// (with one query, or from versions it read beforehand).
///
/// Each event is checked, in order, for: its position and `prev_hash`
/// continuing the chain, its hash, its stream version following the
/// previous one of its stream in the batch, and — for a stream's first event
/// in the batch — following the stream's stored version. The first failure
/// is [`StoreError::ChainBroken`] naming that event's position, so both
/// backends refuse a batch with the same error.
pub(crate) struct ImportPlanner<'a, F> {
    checker: ChainChecker,
    stored_version: F,
    streams_seen: HashSet<&'a str>,
    /// Key → (first position, last position, number of events).
    keys: BTreeMap<&'a str, (Position, Position, u64)>,
}

impl<'a, F> ImportPlanner<'a, F>
where
    F: FnMut(&str) -> Result<StreamVersion, StoreError>,
{
    /// A planner for events continuing `head` (`None`: an empty store).
    pub(crate) fn new(head: Option<&Head>, stored_version: F) -> Self {
        ImportPlanner {
            checker: match head {
                Some(h) => ChainChecker::continuing(h.position, &h.hash),
                None => ChainChecker::new(),
            },
            stored_version,
            streams_seen: HashSet::new(),
            keys: BTreeMap::new(),
        }
    }

    /// Check the batch's next event and encode its row.
    pub(crate) fn check(
        &mut self,
        event: &'a RecordedEvent,
    ) -> Result<EncodedEvent<'a>, StoreError> {
        let broken = |link: crate::BrokenLink| StoreError::ChainBroken {
            position: link.position,
            reason: link.reason,
        };
        self.checker.check_links(event).map_err(broken)?;
        // The row's encoding is what the hash covers: hash it once.
        let row = EncodedEvent::new(event)?;
        self.checker.accept(event, row.hash()).map_err(broken)?;
        // The checker knows versions within the batch only: a stream's first
        // event in it must continue the stored stream.
        if self.streams_seen.insert(event.stream_id.as_str()) {
            let stored = (self.stored_version)(&event.stream_id)?;
            if event.stream_version != stored + 1 {
                return Err(StoreError::ChainBroken {
                    position: event.position,
                    reason: format!(
                        "stream {} is at version {stored} in this store, so its next event \
                         must be version {} but this one is version {}",
                        event.stream_id,
                        stored + 1,
                        event.stream_version
                    ),
                });
            }
        }
        if let Some(key) = &event.metadata.idempotency_key {
            let span = self
                .keys
                .entry(key.as_str())
                .or_insert((event.position, event.position, 0));
            span.1 = event.position;
            span.2 += 1;
        }
        Ok(row)
    }

    /// The idempotency keys of the events checked so far, so that a retried
    /// request is still recognised after an import. A request's events are
    /// contiguous: a key whose events are not is left out.
    pub(crate) fn key_ranges(&self) -> Vec<KeyRange<'a>> {
        self.keys
            .iter()
            .filter(|(_, (first, last, count))| last - first + 1 == *count)
            .map(|(key, (first, last, _))| KeyRange {
                key,
                first: *first,
                last: *last,
            })
            .collect()
    }
}

/// Check a whole import batch continuing `head` (see [`ImportPlanner`]) and
/// return what to write, or the error naming the first offending position.
pub(crate) fn plan_import<'a>(
    events: &'a [RecordedEvent],
    head: Option<&Head>,
    stored_version: impl FnMut(&str) -> Result<StreamVersion, StoreError>,
) -> Result<ImportPlan<'a>, StoreError> {
    let mut planner = ImportPlanner::new(head, stored_version);
    let rows = events
        .iter()
        .map(|event| planner.check(event))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ImportPlan {
        rows,
        keys: planner.key_ranges(),
    })
}

/// The requests of a batch that appended events (not replayed, not
/// refused), in position order: what an [`crate::InlineWriter`] writes.
pub(crate) fn newly_appended(
    results: &[Result<crate::AppendOutcome, crate::StoreError>],
) -> Vec<&crate::AppendOutcome> {
    results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|o| !o.replayed && !o.events.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metadata;

    /// Events whose payload and metadata need escaping, sorting and
    /// non-ASCII text, recorded after one another.
    fn events() -> Vec<RecordedEvent> {
        let payloads = [
            serde_json::json!({}),
            serde_json::json!({"z": 1, "a": [true, null, 2.5], "m": {"y": "é\"\\\n", "b": "\u{1F600}"}}),
            serde_json::json!({"text": "tab\there </script> \u{7f}"}),
        ];
        let mut prev = hash::GENESIS_HASH.to_string();
        let mut out = Vec::new();
        for (i, payload) in payloads.into_iter().enumerate() {
            let (event, text) = record(
                i as u64 + 1,
                prev,
                "order-WO-1",
                i as u64 + 1,
                NewEvent {
                    event_type: "ProvisioningContactChanged".into(),
                    schema_version: 2,
                    payload,
                    metadata: Metadata {
                        actor: "olivia@partner.example".into(),
                        transaction_id: format!("tx-{i}"),
                        ..Metadata::default()
                    },
                    occurred_at: chrono::DateTime::from_timestamp(
                        1_790_000_000 + i as i64,
                        123_456_789,
                    )
                    .unwrap_or_default(),
                },
                (i == 1).then_some("key-é"),
                chrono::DateTime::from_timestamp(1_790_000_100, 0).unwrap_or_default(),
            )
            .unwrap();
            // The hash recorded from the row's text is the event's hash.
            assert_eq!(event.hash, hash::event_hash(&event));
            let row = EncodedEvent::with_text(&event, text).unwrap();
            assert_eq!(row.text.payload, RowText::of(&event).unwrap().payload);
            prev = event.hash.clone();
            out.push(event);
        }
        out
    }

    #[test]
    fn an_encoded_row_hashes_as_its_event_does() {
        for event in events() {
            let row = EncodedEvent::new(&event).unwrap();
            assert_eq!(row.hash(), hash::event_hash(&event));
            assert_eq!(row.hash(), event.hash);
        }
    }

    #[test]
    fn import_checks_each_hash_once_from_the_rows_encoding() {
        let events = events();
        let plan = plan_import(&events, None, |_| Ok(0)).unwrap();
        assert_eq!(plan.rows.len(), 3);
        let mut altered = events.clone();
        altered[1].payload["z"] = serde_json::json!(2);
        let refused = plan_import(&altered, None, |_| Ok(0)).unwrap_err();
        assert!(
            matches!(&refused, StoreError::ChainBroken { position: 2, reason } if reason.contains("altered")),
            "{refused:?}"
        );
        let mut unlinked = events;
        unlinked[2].prev_hash = hash::GENESIS_HASH.to_string();
        let refused = plan_import(&unlinked, None, |_| Ok(0)).unwrap_err();
        assert!(
            matches!(&refused, StoreError::ChainBroken { position: 3, reason } if reason.contains("prev_hash")),
            "{refused:?}"
        );
    }
}
