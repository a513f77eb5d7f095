//! An append-only, hash-chained event store.
//!
//! This crate exists so that the ledger's durability, ordering and tamper
//! evidence live in one place that knows nothing of subscriptions: it stores
//! *records* (stream, type, schema version, JSON payload, metadata) and could
//! serve any event-sourced application. The domain crate never sees it; the
//! application crate wires the two together.
//!
//! Invariants every backend upholds (checked by the conformance suite, `conformance` behind the `testing` feature):
//!
//! * Global positions start at 1 and have no gaps; stream versions start at 1
//!   per stream and have no gaps; `(stream_id, stream_version)` is unique.
//! * An append states the stream version it expects; a mismatch is
//!   [`StoreError::Conflict`], never an overwrite.
//! * An append is all-or-nothing, across every stream it touches.
//! * Each event's `hash` is SHA-256 over its canonical encoding chained to the
//!   previous event's hash ([`hash::event_hash`]); [`verify`] recomputes it.
//! * Events are never updated or deleted; the database itself refuses it.
//! * The leaves of an RFC 9162 Merkle tree are the events in position order;
//!   every backend stores the tree's perfect-subtree hashes in the transaction
//!   that appends the events ([`EventStore::merkle_nodes`]), and [`merkle`]
//!   builds tree heads and proofs from them. [`verify`] rebuilds the tree.
//! * An idempotency key seen before makes the append a no-op that returns the
//!   first result.

#![warn(missing_docs)]

#[cfg(feature = "testing")]
pub mod conformance;
mod core;
mod error;
pub mod hash;
pub mod merkle;
pub mod migrations;
pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use provledger_proof::merkle::{Hash, NodeId};
pub use provledger_proof::{BrokenLink, Metadata, Position, RecordedEvent, StreamVersion};
pub use sqlite::sqlite_uri;

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

/// A streaming iterator over recorded events whose payloads are left as the
/// stored JSON text (see [`EventStore::read_all_json`]).
pub type JsonEventIter<'a> =
    Box<dyn Iterator<Item = Result<RecordedEvent<String>, StoreError>> + Send + 'a>;

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

    /// [`append_batch`](EventStore::append_batch), with `inline` run inside
    /// the same transaction after the events are written and before the
    /// commit, so that whatever it writes commits (or not) with them, in one
    /// commit. SQLite calls [`InlineWriter::write_sqlite`], PostgreSQL
    /// [`InlineWriter::write_postgres`]. What `inline` writes is undone on
    /// its own if it reports failure; the events commit either way.
    fn append_batch_inline(
        &self,
        requests: Vec<AppendRequest>,
        inline: &mut dyn InlineWriter,
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

    /// [`read_all`](EventStore::read_all) with each payload left as the
    /// stored JSON text, not parsed: for a reader that decodes payloads
    /// into its own types (the read models), which would otherwise parse
    /// every payload twice. Nothing about the text is checked here.
    fn read_all_json(&self, after: Position) -> Result<JsonEventIter<'_>, StoreError>;

    /// Ids of the streams whose id starts with `prefix`, sorted.
    fn stream_ids(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// The last event's position and hash, or `None` for an empty ledger.
    fn head(&self) -> Result<Option<Head>, StoreError>;

    /// The events a request with this idempotency key appended, if the key
    /// has been used. Lets a caller return the first result of a retried
    /// command *before* deciding it again (the retry might no longer be valid).
    ///
    /// Every backend answers from an index of the keys it recorded (no
    /// default: a scan of the log would be silently O(N) per command).
    fn find_idempotent(&self, key: &str) -> Result<Option<Vec<RecordedEvent>>, StoreError>;

    /// Append events that already carry positions and hashes (import, migrate).
    ///
    /// The batch must continue the ledger exactly: the first position is
    /// `head + 1`, positions and stream versions are gapless, and every
    /// `prev_hash`/`hash` is correct. Otherwise [`StoreError::ChainBroken`]
    /// (or [`StoreError::Conflict`]) and nothing is written.
    fn import_batch(&self, events: &[RecordedEvent]) -> Result<(), StoreError>;

    /// The stored Merkle node hashes for `ids`, in the same order; `None`
    /// for a node that is not stored (its subtree is not complete yet, or
    /// the tree was never built). A node `(level, index)` is the root of the
    /// perfect subtree over leaves `index·2^level .. (index+1)·2^level`
    /// (leaf `i` is the event at position `i + 1`); every backend writes
    /// each node once, in the transaction that appends its last leaf, by
    /// [`append_batch`](EventStore::append_batch) and
    /// [`import_batch`](EventStore::import_batch) alike.
    fn merkle_nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError>;
}

/// Work done inside an append's own transaction (e.g. the read models of
/// the events being appended, on the same connection): see
/// [`EventStore::append_batch_inline`].
pub trait InlineWriter {
    /// Write, on the append's SQLite transaction, what follows from the
    /// requests that `appended` (in position order; replayed requests left
    /// out). Return false to have everything it wrote rolled back (to a
    /// savepoint) while the events still commit: the caller then catches up
    /// after the commit as if there were no inline writer.
    fn write_sqlite(&mut self, tx: &rusqlite::Transaction<'_>, appended: &[&AppendOutcome])
        -> bool;

    /// Write, on the append's PostgreSQL transaction, what follows from the
    /// requests that `appended` (as [`write_sqlite`](Self::write_sqlite)).
    /// `Ok(true)`: written, it commits with the events. `Ok(false)`:
    /// nothing was written, the events commit and the caller catches up
    /// after the commit. `Err`: a statement failed, which aborts a
    /// PostgreSQL transaction; the store rolls the append back and makes it
    /// again without the writer (so the events still commit, once).
    fn write_postgres(
        &mut self,
        tx: &mut postgres::InlineTx<'_>,
        appended: &[&AppendOutcome],
    ) -> Result<bool, ::postgres::Error>;

    /// For PostgreSQL's one-statement append: the rows
    /// [`write_postgres`](Self::write_postgres) would write for `appended`,
    /// as the call of a function that goes into the same statement as the
    /// events, computed without reading anything
    /// ([`postgres::InlinePlan::Call`]); or [`postgres::InlinePlan::Skip`]
    /// when there is nothing to write on this ledger (`url`, `schema`); or
    /// [`postgres::InlinePlan::NeedsReads`], and the store appends in its
    /// locked transaction with `write_postgres` instead. A returned call is
    /// followed by [`postgres_call_done`](Self::postgres_call_done).
    fn postgres_call(
        &mut self,
        url: &str,
        schema: &str,
        appended: &[&AppendOutcome],
    ) -> postgres::InlinePlan<'_>;

    /// What became of the call [`postgres_call`](Self::postgres_call)
    /// returned last.
    fn postgres_call_done(&mut self, outcome: postgres::CallOutcome);
}

/// The result of recomputing the hash chain and the Merkle tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events read and checked.
    pub events_checked: u64,
    /// Hash of the last event that checked out.
    pub head_hash: String,
    /// Merkle root (hex) over the events that checked out.
    pub root: String,
    /// The first broken link, if any; `None` means the chain is intact.
    pub first_broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// True when the whole chain checks out.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// The tree head of a prefix of the log, as recomputed from the events by
/// [`verify_with_snapshot`] (not read from the stored tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixHead {
    /// Number of events in the prefix.
    pub size: u64,
    /// The Merkle root over them.
    pub root: Hash,
    /// The hash of the prefix's last event ([`hash::GENESIS_HASH`] for size 0).
    pub head_hash: String,
}

/// Stored nodes compared per round trip while verifying.
const VERIFY_NODE_BATCH: usize = 4096;

/// Recompute the whole hash chain, reporting the first broken position.
///
/// Checks that positions are gapless from 1, that each `prev_hash` is the
/// previous event's hash, that each stream's versions are gapless, and that
/// each `hash` matches the event's content. It also rebuilds the Merkle tree
/// from the events and compares every stored node with it, and checks that
/// the stored tree covers no event beyond the log's end (the last events were
/// deleted). `progress` is called with the number of events checked so far,
/// every 10,000 events and at the end.
pub fn verify(
    store: &dyn EventStore,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    verify_with_snapshot(store, progress, None).map(|(report, _)| report)
}

/// [`verify`], also returning the recomputed tree head of the first
/// `snapshot_at` events when the log holds that many that check out.
pub fn verify_with_snapshot(
    store: &dyn EventStore,
    progress: &mut dyn FnMut(u64),
    snapshot_at: Option<u64>,
) -> Result<(VerifyReport, Option<PrefixHead>), StoreError> {
    use provledger_proof::merkle::{event_leaf, Frontier};

    let mut checker = hash::ChainChecker::new();
    let mut frontier = Frontier::new();
    let mut pending: Vec<(NodeId, Hash)> = Vec::new();
    let mut broken = None;
    let mut snapshot = (snapshot_at == Some(0)).then(|| PrefixHead {
        size: 0,
        root: frontier.root(),
        head_hash: hash::GENESIS_HASH.to_string(),
    });
    for event in store.read_all(0)? {
        let event = event?;
        if let Err(link) = checker.check(&event) {
            broken = Some(link);
            break;
        }
        // The checker recomputed the hash, so it is well-formed hex.
        let leaf = event_leaf(&event.hash)?;
        pending.extend(frontier.push_leaf(leaf));
        if snapshot_at == Some(frontier.size()) {
            snapshot = Some(PrefixHead {
                size: frontier.size(),
                root: frontier.root(),
                head_hash: event.hash.clone(),
            });
        }
        if pending.len() >= VERIFY_NODE_BATCH {
            broken = compare_nodes(store, &mut pending)?;
            if broken.is_some() {
                break;
            }
        }
        if checker.checked().is_multiple_of(10_000) {
            progress(checker.checked());
        }
    }
    if broken.is_none() {
        broken = compare_nodes(store, &mut pending)?;
    }
    if broken.is_none() {
        let n = frontier.size();
        if store.merkle_nodes(&[NodeId::new(0, n)])?[0].is_some() {
            broken = Some(BrokenLink {
                position: n + 1,
                reason: format!(
                    "the Merkle tree holds a leaf for position {} but the log ends at {n}: \
                     the last events were removed",
                    n + 1
                ),
            });
        }
    }
    progress(checker.checked());
    let report = VerifyReport {
        events_checked: checker.checked(),
        head_hash: checker.last_hash().to_string(),
        root: hex::encode(frontier.root()),
        first_broken: broken,
    };
    Ok((report, snapshot))
}

/// Compare recomputed nodes with the stored ones; the first that differs
/// or is missing, as a broken link at the last position it covers.
fn compare_nodes(
    store: &dyn EventStore,
    pending: &mut Vec<(NodeId, Hash)>,
) -> Result<Option<BrokenLink>, StoreError> {
    let nodes = std::mem::take(pending);
    if nodes.is_empty() {
        return Ok(None);
    }
    let ids: Vec<NodeId> = nodes.iter().map(|(id, _)| *id).collect();
    let stored = store.merkle_nodes(&ids)?;
    for ((id, expected), found) in nodes.iter().zip(stored) {
        let problem = match found {
            None => "is missing",
            Some(h) if h != *expected => "does not match the events",
            Some(_) => continue,
        };
        return Ok(Some(BrokenLink {
            position: (id.index + 1) << id.level,
            reason: format!(
                "stored Merkle node (level {}, index {}) {problem}: the tree or the events \
                 were changed behind the store's back",
                id.level, id.index
            ),
        }));
    }
    Ok(None)
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
