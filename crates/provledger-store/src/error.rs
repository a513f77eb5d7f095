//! The store's one error type; callers match on it to tell a conflict (retry)
//! from bad input and from a storage failure.

use crate::{ExpectedVersion, Position, StreamVersion};

/// Everything that can go wrong in the event store.
///
/// Exit status in the CLI: `Conflict`, `ChainBroken` and storage failures → 4;
/// `InvalidUrl` → 2. HTTP: `Conflict` → 409, `InvalidUrl` → 400, others → 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error("conflict on stream {stream_id}: expected {expected} but it is at version {actual}; reload the stream and retry")]
    Conflict {
        /// The stream.
        stream_id: String,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// What the stream is at.
        actual: StreamVersion,
    },
    /// An append request carried no events.
    #[error("an append must carry at least one event")]
    EmptyAppend,
    /// The store could not be opened at all (a missing directory, a file
    /// that is not a database, a server that does not answer). Exit 2.
    #[error("cannot open the ledger at {location}: {reason}; check the path or URL (the directory must exist and be writable), or give another --db/--store")]
    CannotOpen {
        /// The path or URL (without password).
        location: String,
        /// What the database said.
        reason: String,
    },
    /// There is no ledger at this path or URL (a read or write on a store
    /// that `init` never created). Exit 2; nothing was created.
    #[error("no ledger at {location}: {reason}; create one with `provledger init` (or give the right --db/--store)")]
    NoLedger {
        /// The path or URL (without password).
        location: String,
        /// What was found instead.
        reason: String,
    },
    /// The database exists but holds something other than a provledger
    /// ledger (another application's file). Exit 2; nothing was changed.
    #[error("{location} is not a provledger ledger: {reason}; give the path of a ledger, or create a new one with `provledger init` at another path")]
    NotALedger {
        /// The path or URL (without password).
        location: String,
        /// What was found.
        reason: String,
    },
    /// The database file is damaged (its header or pages cannot be read).
    /// Exit 4: an integrity failure, not bad input.
    #[error(
        "the ledger at {location} is damaged: {reason}; restore it from a backup or an export"
    )]
    Damaged {
        /// The path.
        location: String,
        /// What the database said.
        reason: String,
    },
    /// The store URL could not be understood.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// Imported events do not continue the chain; nothing was written.
    #[error("import refused at position {position}: {reason}")]
    ChainBroken {
        /// The first offending position.
        position: Position,
        /// What does not check out.
        reason: String,
    },
    /// The database schema is newer than this program understands.
    #[error("the store's schema is version {found}, newer than this provledger supports ({supported}); upgrade provledger")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// A stored row could not be decoded (corrupt or foreign data).
    #[error("stored event at position {position} cannot be decoded: {reason}")]
    Corrupt {
        /// Position of the row.
        position: Position,
        /// What failed.
        reason: String,
    },
    /// The stored Merkle tree does not match the log (events removed or
    /// rewritten behind the store's back). An integrity failure.
    #[error("the Merkle tree does not match the log at position {position}: {reason}; run `provledger verify` and restore from a verified export")]
    TreeMismatch {
        /// The first position where they disagree.
        position: Position,
        /// How.
        reason: String,
    },
    /// A tree head or proof could not be built (a node is missing, a size
    /// is beyond the log).
    #[error("{0}")]
    Proof(#[from] provledger_proof::ProofError),
    /// SQLite failed.
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed; shows the server's own message when there is one.
    #[error("PostgreSQL error: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    /// The file system failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The server's message (e.g. a trigger's "append-only" refusal) rather than
/// the client's generic "db error".
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        // e.g. "error connecting to server: Connection refused (os error 111)"
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl StoreError {
    /// True for an optimistic-concurrency conflict (worth a reload and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}
