//! The projections' one error type.
//!
//! It exists so that callers can tell a storage failure (retry, check the
//! database) from an event this build cannot read (upgrade) and from a bad
//! query (fix the input), and so that every message says what to do.

use provledger_domain::DecodeError;
use provledger_store::{Position, StoreError};

/// Everything that can go wrong while maintaining or querying read models.
///
/// Exit status in the CLI: `InvalidQuery` and `InvalidUrl` → 2; everything
/// else → 4. HTTP: `InvalidQuery` → 400, others → 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The event store failed while events were read.
    #[error("reading the event store failed: {0}")]
    Store(#[from] StoreError),
    /// A stored event cannot be decoded by this build (no position known).
    #[error("a stored event cannot be decoded: {0}")]
    Decode(#[from] DecodeError),
    /// The stored event at `position` cannot be decoded by this build.
    #[error("the event at position {position} (stream {stream_id}) cannot be decoded: {source}; the read models stop before it")]
    UndecodableEvent {
        /// Global position of the event.
        position: Position,
        /// Its stream.
        stream_id: String,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// SQLite failed.
    #[error("SQLite error in the read models: {0}; check that the database file is readable and writable, then retry")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error(
        "PostgreSQL error in the read models: {0}; check that the server is reachable, then retry"
    )]
    Postgres(#[from] postgres::Error),
    /// The store URL could not be understood.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL (password removed).
        url: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// The read-model tables were written by a newer provledger.
    #[error("the read models' schema is version {found}, newer than this provledger supports ({supported}); upgrade provledger")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// A read-model row cannot be decoded (corrupt or foreign data).
    #[error("the read model {table} holds an unreadable row ({key}): {reason}; run `provledger rebuild` to rebuild the read models from the events")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// Which row.
        key: String,
        /// What failed.
        reason: String,
    },
    /// The event store skipped a position: events are missing.
    #[error("the event store skips from position {after} to {next}: events are missing; run `provledger verify` and restore the ledger from a backup or an export")]
    Gap {
        /// The last position present.
        after: Position,
        /// The next position the store returned.
        next: Position,
    },
    /// The read models have applied events the store does not have: they
    /// belong to another ledger (a replaced or re-imported store).
    #[error("the read models are at position {checkpoint} but the event store ends at {head}: they were built from another ledger; run `provledger rebuild`")]
    AheadOfStore {
        /// The read models' checkpoint.
        checkpoint: Position,
        /// The store's last position (0: empty).
        head: Position,
    },
    /// A read-only open found the read models missing or older than this
    /// build; a writer (e.g. `provledger project`) must create or migrate them.
    #[error("the read models cannot be read: {reason}; run `provledger project` (with write access) to bring them up to date")]
    NotReady {
        /// What was found.
        reason: String,
    },
    /// A query parameter is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidQuery {
        /// The parameter.
        field: &'static str,
        /// What is wrong and what to give instead.
        reason: String,
    },
}
