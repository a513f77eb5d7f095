//! An append-only, hash-chained event store.
//!
//! This crate exists so that the ledger's durability, ordering and tamper
//! evidence live in one place that knows nothing of subscriptions: it stores
//! *records* (stream, type, schema version, JSON payload, metadata) and could
//! serve any event-sourced application. The domain crate never sees it; the
//! application crate wires the two together.
//!
//! Invariants every backend upholds (checked by [`conformance`]):
//!
//! * Global positions start at 1 and have no gaps; stream versions start at 1
//!   per stream and have no gaps; `(stream_id, stream_version)` is unique.
//! * An append states the stream version it expects; a mismatch is
//!   [`StoreError::Conflict`], never an overwrite.
//! * An append is all-or-nothing, across every stream it touches.
//! * Each event's `hash` is SHA-256 over its canonical encoding chained to the
//!   previous event's hash ([`hash::event_hash`]); [`verify`] recomputes it.
//! * Events are never updated or deleted; the database itself refuses it.
//! * An idempotency key seen before makes the append a no-op that returns the
//!   first result.

#![warn(missing_docs)]

pub mod conformance;
mod error;
pub mod hash;
pub mod postgres;
pub mod sqlite;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use sqlite::sqlite_uri;

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
}

/// An event to append; the store assigns position, version, times and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Event type name, e.g. `ContactChanged`.
    pub event_type: String,
    /// Version of the payload's shape for this type.
    pub schema_version: u32,
    /// The event's data.
    pub payload: serde_json::Value,
    /// Actor, transaction and correlation data.
    pub metadata: Metadata,
    /// Business time: when the action happened (truncated to microseconds).
    pub occurred_at: DateTime<Utc>,
}

/// An event as stored, with everything needed to check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
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
    pub payload: serde_json::Value,
    /// Actor, transaction and correlation data.
    pub metadata: Metadata,
    /// Business time (microsecond precision).
    pub occurred_at: DateTime<Utc>,
    /// When the store wrote the event (microsecond precision).
    pub recorded_at: DateTime<Utc>,
    /// Hash of the event at `position - 1` ([`hash::GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 of this event's canonical encoding and `prev_hash`, lowercase hex.
    pub hash: String,
}

/// The version a writer expects a stream to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check (use only for streams with a single writer by construction).
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version.
    Exact(StreamVersion),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: StreamVersion) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => write!(f, "any version"),
            ExpectedVersion::NoStream => write!(f, "no stream (version 0)"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Events to append to one stream, with the version it must be at.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    /// Target stream.
    pub stream_id: String,
    /// The version the stream must be at before this append.
    pub expected: ExpectedVersion,
    /// Events to append, in order. Must not be empty.
    pub events: Vec<NewEvent>,
}

/// One atomic append: one or more streams, all or nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppendRequest {
    /// Per-stream appends; applied in this order, positions assigned in this order.
    pub appends: Vec<StreamAppend>,
    /// A key that makes a retry of this request a no-op returning the first result.
    pub idempotency_key: Option<String>,
}

impl AppendRequest {
    /// A request appending `events` to a single stream.
    pub fn single(
        stream_id: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        AppendRequest {
            appends: vec![StreamAppend {
                stream_id: stream_id.into(),
                expected,
                events,
            }],
            idempotency_key: None,
        }
    }

    /// The same request with an idempotency key.
    pub fn with_idempotency_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }
}

/// The result of a successful append.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    /// The events written (or, for a replayed idempotent request, the events
    /// the first request wrote), in position order.
    pub events: Vec<RecordedEvent>,
    /// True when the idempotency key had been seen and nothing was written.
    pub replayed: bool,
}

impl AppendOutcome {
    /// Positions of the events, in order.
    pub fn positions(&self) -> Vec<Position> {
        self.events.iter().map(|e| e.position).collect()
    }
}

/// The last event of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Position of the last event (equals the number of events).
    pub position: Position,
    /// Its hash.
    pub hash: String,
}

/// A streaming iterator over recorded events.
pub type EventIter<'a> = Box<dyn Iterator<Item = Result<RecordedEvent, StoreError>> + Send + 'a>;

/// An event store backend.
///
/// Implementations are safe to share between threads; several processes may
/// open the same store (SQLite file or PostgreSQL database) at once.
pub trait EventStore: Send + Sync {
    /// Short backend name (`sqlite`, `postgres`) for messages.
    fn backend(&self) -> &'static str;

    /// Append atomically, checking every stream's expected version.
    ///
    /// Errors: [`StoreError::Conflict`] on a version mismatch (nothing written),
    /// [`StoreError::EmptyAppend`] for a request with no events.
    fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        let mut results = self.append_batch(vec![request])?;
        results.pop().unwrap_or(Err(StoreError::EmptyAppend))
    }

    /// Group commit: apply several independent requests in one durable
    /// transaction. Each request succeeds or fails on its own (a conflict in
    /// one does not undo the others); the outer error means nothing at all was
    /// committed. No result is returned before the transaction is durable.
    fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError>;

    /// Current version of a stream (0 if it does not exist).
    fn stream_version(&self, stream_id: &str) -> Result<StreamVersion, StoreError>;

    /// Every event of one stream with a version greater than `after_version`, in order.
    fn read_stream(
        &self,
        stream_id: &str,
        after_version: StreamVersion,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Every event with a position greater than `after`, in position order,
    /// streamed in pages: the whole log is never held in memory.
    fn read_all(&self, after: Position) -> Result<EventIter<'_>, StoreError>;

    /// Ids of the streams whose id starts with `prefix`, sorted.
    fn stream_ids(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// The last event's position and hash, or `None` for an empty ledger.
    fn head(&self) -> Result<Option<Head>, StoreError>;

    /// The events a request with this idempotency key appended, if the key
    /// has been used. Lets a caller return the first result of a retried
    /// command *before* deciding it again (the retry might no longer be valid).
    ///
    /// The default implementation scans the log; backends override it with
    /// an indexed lookup.
    fn find_idempotent(&self, key: &str) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let mut found = Vec::new();
        for event in self.read_all(0)? {
            let event = event?;
            if event.metadata.idempotency_key.as_deref() == Some(key) {
                found.push(event);
            }
        }
        Ok(if found.is_empty() { None } else { Some(found) })
    }

    /// Append events that already carry positions and hashes (import, migrate).
    ///
    /// The batch must continue the ledger exactly: the first position is
    /// `head + 1`, positions and stream versions are gapless, and every
    /// `prev_hash`/`hash` is correct. Otherwise [`StoreError::ChainBroken`]
    /// (or [`StoreError::Conflict`]) and nothing is written.
    fn import_batch(&self, events: &[RecordedEvent]) -> Result<(), StoreError>;
}

/// The first broken link found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// Position of the first event that does not check out.
    pub position: Position,
    /// What is wrong with it.
    pub reason: String,
}

/// The result of recomputing the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events read and checked.
    pub events_checked: u64,
    /// Hash of the last event that checked out.
    pub head_hash: String,
    /// The first broken link, if any; `None` means the chain is intact.
    pub first_broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// True when the whole chain checks out.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Recompute the whole hash chain, reporting the first broken position.
///
/// Checks that positions are gapless from 1, that each `prev_hash` is the
/// previous event's hash, that each stream's versions are gapless, and that
/// each `hash` matches the event's content. `progress` is called with the
/// number of events checked so far, every 10,000 events and at the end.
pub fn verify(
    store: &dyn EventStore,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let mut checker = hash::ChainChecker::new();
    let mut broken = None;
    for event in store.read_all(0)? {
        let event = event?;
        if let Err(link) = checker.check(&event) {
            broken = Some(link);
            break;
        }
        if checker.checked().is_multiple_of(10_000) {
            progress(checker.checked());
        }
    }
    progress(checker.checked());
    Ok(VerifyReport {
        events_checked: checker.checked(),
        head_hash: checker.last_hash().to_string(),
        first_broken: broken,
    })
}

/// How a store is opened: only `init` (and tools that build a fresh ledger)
/// may create one; reads must not write at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenMode {
    /// Create the ledger if it does not exist (a new SQLite file is made
    /// with mode 0600), then apply any missing schema migrations. Refuses an
    /// existing database that holds something other than a ledger.
    #[default]
    Create,
    /// The ledger must exist ([`StoreError::NoLedger`] otherwise); missing
    /// schema migrations are applied.
    ReadWrite,
    /// The ledger must exist at this build's schema version; nothing is
    /// created, migrated or locked (SQLite opens the file read-only, falling
    /// back to an immutable open in a read-only directory; PostgreSQL needs
    /// only SELECT).
    ReadOnly,
}

impl OpenMode {
    /// True for [`OpenMode::ReadOnly`].
    pub fn is_read_only(self) -> bool {
        self == OpenMode::ReadOnly
    }
}

/// Open a store from a URL: `sqlite:PATH` (created on first use) or
/// `postgres://…` / `postgresql://…`. Same as [`open_with_mode`] with
/// [`OpenMode::Create`].
pub fn open(url: &str) -> Result<Box<dyn EventStore>, StoreError> {
    open_with_mode(url, OpenMode::Create)
}

/// Open a store from a URL in `mode` (see [`OpenMode`]).
pub fn open_with_mode(url: &str, mode: OpenMode) -> Result<Box<dyn EventStore>, StoreError> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open_in_mode(
            &path,
            sqlite::SqliteOptions::default(),
            mode,
        )?)),
        StoreUrl::Postgres(conn) => Ok(Box::new(postgres::PostgresStore::connect_in_mode(
            &conn, None, mode,
        )?)),
    }
}

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite database file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection string (the URL as given).
    Postgres(String),
}

impl StoreUrl {
    /// Parse `sqlite:PATH`, `sqlite://PATH`, `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str) -> Result<StoreUrl, StoreError> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::InvalidUrl {
                    url: url.to_string(),
                    reason:
                        "the SQLite path is empty; write sqlite:PATH, e.g. sqlite:provledger.db"
                            .into(),
                });
            }
            Ok(StoreUrl::Sqlite(path.into()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(url.to_string()))
        } else {
            Err(StoreError::InvalidUrl {
                url: url.to_string(),
                reason: "use sqlite:PATH or postgres://USER@HOST:PORT/DATABASE".into(),
            })
        }
    }
}

/// A store URL fit for messages and logs: any password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Truncate a time to the microsecond precision every backend stores.
pub fn to_stored_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}
