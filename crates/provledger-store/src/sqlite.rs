//! The SQLite backend: the embedded default, one database file in WAL mode.
//!
//! This module exists so that a single-machine deployment needs nothing but a
//! file. It maps the [`EventStore`] contract onto SQLite:
//!
//! * `events` holds one row per event; `position` is the rowid, and
//!   `UNIQUE(stream_id, stream_version)` both enforces per-stream uniqueness and
//!   serves every stream lookup. Triggers refuse `UPDATE` and `DELETE`.
//! * `idempotency_keys` maps a request's key to the positions it wrote; it is
//!   append-only too.
//! * `merkle_nodes` holds the Merkle tree's perfect-subtree hashes (see
//!   [`crate::merkle`]): node `(level, idx)` with `end_leaf`, the index of
//!   the last leaf it covers (`((idx + 1) << level) - 1`), and keyed by
//!   `(end_leaf, level)`. Each node is inserted in the transaction that
//!   appends its last leaf and is append-only like the events; since every
//!   node a commit completes ends at one of the commit's own leaves, they
//!   all land together at the right edge of the key range (one B-tree leaf
//!   page, where a `(level, idx)` key wrote one per level). The tree's size
//!   is the largest `end_leaf` plus one. A file from before the table
//!   existed gets its tree computed once, when it is opened; one from
//!   before this key is rebuilt by a migration.
//! * `store_schema_migrations` records which schema migrations were applied.
//!   Other crates (the read models, tables prefixed `rm_`) may share the file
//!   and keep their own migration table, so every name here is distinct from
//!   theirs.
//!
//! Every write runs in one `BEGIN IMMEDIATE` transaction that reads the head
//! inside the transaction, so several processes may write the same file.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, TransactionBehavior};

use crate::core::{plan_import, to_sql_int, EncodedEvent, ImportPlanner, KeyRange, StoredPayload};
use crate::hash;
use crate::merkle::{self, FrontierCache, TreeWriter};
use crate::migrations::{self, Migration, MigrationTarget};
use crate::{
    to_stored_precision, AppendOutcome, AppendRequest, EventIter, EventStore, Hash, Head,
    InlineWriter, JsonEventIter, NodeId, OpenMode, Position, RecordedEvent, StoreError,
    StreamVersion,
};

/// Newest schema version this build knows (the last migration's version).
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Rows fetched per query by [`EventStore::read_all`].
pub const READ_PAGE_SIZE: usize = 1000;

/// WAL pages after which a commit copies the WAL back into the database
/// file (`PRAGMA wal_autocheckpoint`), on every connection to a ledger file
/// (the store's and the read models').
///
/// Each checkpoint ends with an fsync of the database file, paid by the
/// commit that triggers it. SQLite's default (1,000 pages, 4 MB) makes the
/// read models' commits, which write several pages per command, trigger one
/// every few dozen commands; 8,192 pages (32 MB) makes them eight times
/// rarer, and pages written again meanwhile (index roots, the checkpoint
/// row) are copied once. The WAL stays bounded: it starts over after each
/// complete checkpoint.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 8_192;

/// How hard SQLite works to make each commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `FULL`: a commit is on disk before `append` returns, even after a power
    /// loss. The default, and the only setting the ledger's promises hold for.
    #[default]
    Full,
    /// `NORMAL`: in WAL mode a power loss may lose the last commits (never
    /// corrupts). For benchmarks and throwaway stores.
    Normal,
    /// `OFF`: no syncing at all. For benchmarks only.
    Off,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

/// Connection settings for [`SqliteStore::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of each commit; [`Synchronous::Full`] unless benchmarking.
    pub synchronous: Synchronous,
    /// How long to wait for another connection's write lock before failing.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Every schema change, in order. Append only; never edit an applied one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events and idempotency keys, append-only",
        sql: "
CREATE TABLE events (
    position       INTEGER PRIMARY KEY CHECK (position >= 1),
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL CHECK (stream_version >= 1),
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    occurred_at    TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE is refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE is refused');
END;
CREATE TABLE idempotency_keys (
    key            TEXT    PRIMARY KEY,
    first_position INTEGER NOT NULL REFERENCES events (position),
    last_position  INTEGER NOT NULL REFERENCES events (position)
);
CREATE TRIGGER idempotency_keys_no_update BEFORE UPDATE ON idempotency_keys
BEGIN
    SELECT RAISE(ABORT, 'idempotency keys are append-only: UPDATE is refused');
END;
CREATE TRIGGER idempotency_keys_no_delete BEFORE DELETE ON idempotency_keys
BEGIN
    SELECT RAISE(ABORT, 'idempotency keys are append-only: DELETE is refused');
END;
",
    },
    Migration {
        version: 2,
        name: "Merkle tree nodes, append-only",
        // Filled for existing events by `ensure_tree` right after migrating.
        sql: "
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'Merkle nodes are append-only: UPDATE is refused');
END;
CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'Merkle nodes are append-only: DELETE is refused');
END;
",
    },
    Migration {
        version: 3,
        name: "Merkle tree nodes keyed by the last leaf they cover",
        // `(end_leaf, level)`: the nodes one commit completes end at its own
        // leaves, so they sit together at the right edge of one key range
        // instead of at the end of each level's range. Rows are copied in
        // the new key order; DROP TABLE's implicit delete fires no trigger.
        sql: "
CREATE TABLE merkle_nodes_by_end (
    level    INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx      INTEGER NOT NULL CHECK (idx >= 0),
    end_leaf INTEGER NOT NULL CHECK (end_leaf = ((idx + 1) << level) - 1),
    hash     BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (end_leaf, level)
) WITHOUT ROWID;
INSERT INTO merkle_nodes_by_end (level, idx, end_leaf, hash)
    SELECT level, idx, ((idx + 1) << level) - 1, hash FROM merkle_nodes
    ORDER BY ((idx + 1) << level) - 1, level;
DROP TRIGGER merkle_nodes_no_update;
DROP TRIGGER merkle_nodes_no_delete;
DROP TABLE merkle_nodes;
ALTER TABLE merkle_nodes_by_end RENAME TO merkle_nodes;
CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'Merkle nodes are append-only: UPDATE is refused');
END;
CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'Merkle nodes are append-only: DELETE is refused');
END;
",
    },
];

/// Column list shared by every query that decodes events (see [`decode_row`]).
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT position, stream_id, stream_version, event_type, schema_version, ",
            "payload, metadata, occurred_at, recorded_at, prev_hash, hash FROM events ",
            $rest
        )
    };
}

const INSERT_EVENT: &str = "INSERT INTO events (position, stream_id, stream_version, \
     event_type, schema_version, payload, metadata, occurred_at, recorded_at, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
const SELECT_HEAD: &str = "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1";
const SELECT_STREAM_VERSION: &str =
    "SELECT stream_version FROM events WHERE stream_id = ?1 ORDER BY stream_version DESC LIMIT 1";
const SELECT_IDEMPOTENCY_KEY: &str =
    "SELECT first_position, last_position FROM idempotency_keys WHERE key = ?1";
const INSERT_IDEMPOTENCY_KEY: &str =
    "INSERT INTO idempotency_keys (key, first_position, last_position) VALUES (?1, ?2, ?3)";

/// An event store in one SQLite file.
///
/// The connections sit behind mutexes, so a store can be shared between
/// threads; for parallel writers open one store per thread (or process) on
/// the same path: SQLite serialises their transactions.
///
/// Writes go through one connection, reads (streams, pages of the log, the
/// head, idempotency look-ups) through a second one on the same file: in
/// WAL mode a reader sees every committed transaction and never waits for
/// a writer, so loading an order or following the log does not queue
/// behind an append that is waiting for its fsync.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// `None` for an in-memory database, which has one connection only.
    reader: Option<Mutex<Connection>>,
    path: PathBuf,
    /// The Merkle tree's frontier after this handle's last write.
    frontier: FrontierCache,
}

impl SqliteStore {
    /// Open (creating on first use) the store in the file at `path`, with
    /// the default, fully durable settings.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Open (creating on first use) the store at `path` with `options`:
    /// [`SqliteStore::open_in_mode`] with [`OpenMode::Create`].
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_in_mode(path, options, OpenMode::Create)
    }

    /// Open the store at `path` with `options` in `mode`.
    ///
    /// [`OpenMode::Create`] creates a missing file (mode 0600) and refuses a
    /// database that holds other tables ([`StoreError::NotALedger`]);
    /// [`OpenMode::ReadWrite`] needs an existing ledger
    /// ([`StoreError::NoLedger`], [`StoreError::NotALedger`]); both set WAL
    /// journalling, the `synchronous` level, the busy timeout and foreign
    /// keys, then apply any schema migrations this build knows and the file
    /// lacks. [`OpenMode::ReadOnly`] opens the file read-only and writes
    /// nothing (see [`OpenMode`]). A file SQLite cannot read as a database
    /// is [`StoreError::Damaged`]; one written by a newer build
    /// [`StoreError::SchemaTooNew`].
    pub fn open_in_mode(
        path: &Path,
        options: SqliteOptions,
        mode: OpenMode,
    ) -> Result<SqliteStore, StoreError> {
        let in_memory = path == Path::new(":memory:");
        if !in_memory {
            prepare_file(path, mode)?;
        }
        if mode == OpenMode::ReadOnly && !in_memory {
            let conn = open_read_only(path)?;
            return Ok(SqliteStore {
                conn: Mutex::new(conn),
                reader: None,
                path: path.to_path_buf(),
                frontier: FrontierCache::default(),
            });
        }
        let cannot_open = |e: rusqlite::Error| open_error(path, e);
        let mut conn = Connection::open(path).map_err(cannot_open)?;
        conn.busy_timeout(options.busy_timeout)?;
        // Before anything is written: is this a ledger, or may it become one?
        check_ledger(&conn, path, mode)?;
        // In-memory databases answer `memory`; files answer `wal`.
        let mode_name = switch_to_wal(&conn, options.busy_timeout).map_err(cannot_open)?;
        conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.set_prepared_statement_cache_capacity(32);
        migrate(&mut conn)?;
        ensure_tree(&mut conn)?;
        let reader = if mode_name.eq_ignore_ascii_case("wal") {
            let reader = Connection::open(path).map_err(cannot_open)?;
            reader.busy_timeout(options.busy_timeout)?;
            reader.pragma_update(None, "query_only", "ON")?;
            reader.set_prepared_statement_cache_capacity(32);
            Some(Mutex::new(reader))
        } else {
            None
        };
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            reader,
            path: path.to_path_buf(),
            frontier: FrontierCache::default(),
        })
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run raw SQL (one or more `;`-separated statements) on the store's own
    /// connection, bypassing every check of the store.
    ///
    /// A hook for tests and operations (e.g. the conformance suite tampering
    /// with a row to prove `verify` notices); never use it to write events.
    /// Returns the number of rows inserted, updated or deleted by all the
    /// statements (including by triggers).
    #[cfg(feature = "testing")]
    pub fn execute_raw_sql_for_tests(&self, sql: &str) -> Result<usize, StoreError> {
        let conn = self.lock();
        let before = conn.total_changes();
        conn.execute_batch(sql)?;
        let changed = conn.total_changes().saturating_sub(before);
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    /// The value of `PRAGMA name` on the store's own connection, as text
    /// (e.g. `journal_mode` → `wal`, `synchronous` → `2` for FULL).
    ///
    /// A diagnostic hook for tests and operations: connection-level settings
    /// cannot be observed from another connection.
    pub fn pragma_value(&self, name: &str) -> Result<String, StoreError> {
        let conn = self.lock();
        let value: Value = conn.pragma_query_value(None, name, |row| row.get(0))?;
        Ok(match value {
            Value::Null => String::new(),
            Value::Integer(i) => i.to_string(),
            Value::Real(r) => r.to_string(),
            Value::Text(t) => t,
            Value::Blob(b) => hex::encode(b),
        })
    }

    /// The connection, recovering from a poisoned mutex: a panic while it was
    /// held unwound through rusqlite's transaction guards, which roll back.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection for reads: the reader, or the only connection of an
    /// in-memory database. Recovers from a poisoned mutex like
    /// [`SqliteStore::lock`] (a reader holds no transaction across calls).
    fn read_lock(&self) -> MutexGuard<'_, Connection> {
        match &self.reader {
            Some(reader) => reader.lock().unwrap_or_else(PoisonError::into_inner),
            None => self.lock(),
        }
    }

    /// Up to `limit` events after `after`; a row that cannot be decoded ends
    /// the page with its error.
    fn read_page<P: StoredPayload>(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Result<RecordedEvent<P>, StoreError>>, StoreError> {
        let conn = self.read_lock();
        let mut stmt = conn.prepare_cached(select_events!(
            "WHERE position > ?1 ORDER BY position LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![after, limit])?;
        let mut page = Vec::new();
        while let Some(row) = rows.next()? {
            let event = decode_row(row);
            let failed = event.is_err();
            page.push(event);
            if failed {
                break;
            }
        }
        Ok(page)
    }
}

/// Apply the migrations the file lacks; refuse a file newer than this build.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrations::run(
        &mut SqliteMigrator::new(conn, "store_schema_migrations"),
        MIGRATIONS,
    )
}

/// A [`MigrationTarget`] on an SQLite connection: the migrations recorded
/// in `table`, each applied in a `BEGIN IMMEDIATE` transaction (the file's
/// write lock). Public so that other crates sharing the ledger's file (the
/// read models) run their own migrations the same way.
#[derive(Debug)]
pub struct SqliteMigrator<'c> {
    conn: &'c mut Connection,
    table: &'static str,
}

impl<'c> SqliteMigrator<'c> {
    /// The migrations recorded in `table` (a fixed identifier of the
    /// caller's, e.g. `store_schema_migrations`) on `conn`.
    pub fn new(conn: &'c mut Connection, table: &'static str) -> Self {
        SqliteMigrator { conn, table }
    }
}

impl MigrationTarget for SqliteMigrator<'_> {
    type Error = StoreError;

    fn applied_version(&mut self) -> Result<i64, StoreError> {
        Ok(applied_version_on(self.conn, self.table)?.unwrap_or(0))
    }

    fn apply_locked(
        &mut self,
        step: &mut dyn FnMut(i64) -> Result<Option<Migration>, StoreError>,
    ) -> Result<Option<Migration>, StoreError> {
        let table = self.table;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_at TEXT NOT NULL
            )"
        ))?;
        let current = applied_version_on(&tx, table)?.unwrap_or(0);
        let migration = step(current)?;
        if let Some(migration) = migration {
            tx.execute_batch(migration.sql)?;
            tx.execute(
                &format!("INSERT INTO {table} (version, name, applied_at) VALUES (?1, ?2, ?3)"),
                params![
                    migration.version,
                    migration.name,
                    hash::format_time(&Utc::now())
                ],
            )?;
        }
        tx.commit()?;
        Ok(migration)
    }
}

/// Whether the file at `path` may be opened in `mode`: a missing (or empty)
/// file is created for [`OpenMode::Create`], with mode 0600 so that only its
/// owner can read the ledger; for any other mode it is
/// [`StoreError::NoLedger`].
fn prepare_file(path: &Path, mode: OpenMode) -> Result<(), StoreError> {
    let location = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(StoreError::NotALedger {
            location,
            reason: "it is a directory".into(),
        }),
        Ok(meta) if meta.len() > 0 || mode == OpenMode::Create => Ok(()),
        Ok(_) => Err(StoreError::NoLedger {
            location,
            reason: "the file is empty".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if mode != OpenMode::Create {
                return Err(StoreError::NoLedger {
                    location,
                    reason: "the file does not exist".into(),
                });
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(path) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(StoreError::CannotOpen {
                    location,
                    reason: e.to_string(),
                }),
            }
        }
        Err(e) => Err(StoreError::CannotOpen {
            location,
            reason: e.to_string(),
        }),
    }
}

/// An error opening or first reading `path`: a file SQLite cannot read as
/// a database is damaged (exit 4); anything else cannot be opened (exit 2).
fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    let location = path.display().to_string();
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            StoreError::Damaged {
                location,
                reason: format!(
                    "{e} (the file is not an SQLite database, or its header is damaged)"
                ),
            }
        }
        _ => StoreError::CannotOpen {
            location,
            reason: e.to_string(),
        },
    }
}

/// Put the database in WAL mode; returns the mode it is in (`memory` for an
/// in-memory database).
///
/// The switch needs the file to itself, and SQLite answers `SQLITE_BUSY` at
/// once, without its busy handler, while another connection holds it: when
/// several processes open a new file at the same moment, all but one would
/// fail. So a busy switch is tried again, with growing pauses, until
/// `timeout` (the busy timeout) has passed; by then the other opener has
/// usually switched the file already, and the switch is a no-op.
fn switch_to_wal(conn: &Connection, timeout: Duration) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            answer => return answer,
        }
    }
}

/// Refuse a database that is not a ledger (nor, for [`OpenMode::Create`],
/// an empty database that may become one), before anything is written.
fn check_ledger(conn: &Connection, path: &Path, mode: OpenMode) -> Result<(), StoreError> {
    let open_err = |e| open_error(path, e);
    // One statement, so one snapshot: another process's first open may
    // migrate the file between two separate reads.
    let (ledger, tables): (bool, i64) = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = 'store_schema_migrations'), \
             (SELECT COUNT(*) FROM sqlite_master)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(open_err)?;
    if ledger {
        return Ok(());
    }
    let location = path.display().to_string();
    match (mode, tables) {
        (OpenMode::Create, 0) => Ok(()),
        (_, 0) => Err(StoreError::NoLedger {
            location,
            reason: "the database is empty".into(),
        }),
        _ => Err(StoreError::NotALedger {
            location,
            reason: format!(
                "it is an SQLite database with {tables} other schema object(s) and no ledger tables; nothing was changed"
            ),
        }),
    }
}

/// `path` as an SQLite URI (`file:…`), so that query parameters such as
/// `mode=ro` or `immutable=1` can be added.
pub fn sqlite_uri(path: &Path, params: &str) -> String {
    let mut uri = String::from("file:");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'?' | b'#' | b'%' => uri.push_str(&format!("%{byte:02X}")),
            _ => uri.push(char::from(byte)),
        }
    }
    if !params.is_empty() {
        uri.push('?');
        uri.push_str(params);
    }
    uri
}

/// Open an existing ledger file without writing anything: `mode=ro`, which
/// never waits for a writer in WAL mode; when the shared-memory index
/// cannot be used (a read-only directory where `-shm` does not exist) and
/// no WAL holds unmerged commits, the file is opened `immutable=1`.
///
/// Checks that the file is a ledger at this build's schema version. Public
/// so that the read models open their connection the same way.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let attempt = |params: &str| -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open_with_flags(sqlite_uri(path, params), flags)?;
        conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| {
            row.get::<_, i64>(0)
        })?;
        Ok(conn)
    };
    let conn = match attempt("mode=ro") {
        Ok(conn) => conn,
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
            ) =>
        {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            let wal_pending = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
            if wal_pending {
                return Err(StoreError::CannotOpen {
                    location: path.display().to_string(),
                    reason: format!(
                        "{e}; the ledger's write-ahead log holds commits that a read-only open cannot see without its shared-memory file: open it once with write access (e.g. `provledger project`), or give read access to {}-shm",
                        path.display()
                    ),
                });
            }
            attempt("immutable=1").map_err(|e| open_error(path, e))?
        }
        Err(e) => return Err(open_error(path, e)),
    };
    check_ledger(&conn, path, OpenMode::ReadOnly)?;
    match current_schema_version(&conn)? {
        Some(found) if found == SCHEMA_VERSION => Ok(conn),
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        }),
        found => Err(StoreError::CannotOpen {
            location: path.display().to_string(),
            reason: format!(
                "the ledger's schema is at version {} and this build needs {SCHEMA_VERSION}; run a write command (e.g. `provledger project`) once to upgrade it",
                found.unwrap_or(0)
            ),
        }),
    }
}

/// The highest applied store migration, or `None` if the migration table
/// is absent.
fn current_schema_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    applied_version_on(conn, "store_schema_migrations")
}

/// The highest migration recorded in `table`, or `None` if it is absent.
fn applied_version_on(conn: &Connection, table: &str) -> Result<Option<i64>, StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [table],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    let version: i64 = conn.query_row(
        &format!("SELECT COALESCE(MAX(version), 0) FROM {table}"),
        [],
        |row| row.get(0),
    )?;
    Ok(Some(version))
}

/// The number of leaves the stored tree covers: one more than the largest
/// `end_leaf` (the last leaf's own node has it), read at the key range's
/// right edge.
const SELECT_TREE_SIZE: &str = "SELECT COALESCE(MAX(end_leaf) + 1, 0) FROM merkle_nodes";
/// One node, by its key.
const SELECT_NODE: &str = "SELECT hash FROM merkle_nodes WHERE end_leaf = ?1 AND level = ?2";
/// Every node whose last leaf lies in `?1..=?2`, on all levels.
const SELECT_NODES_ENDING_IN: &str =
    "SELECT level, idx, hash FROM merkle_nodes WHERE end_leaf BETWEEN ?1 AND ?2";
const INSERT_NODE: &str =
    "INSERT INTO merkle_nodes (level, idx, end_leaf, hash) VALUES (?1, ?2, ?3, ?4)";

/// The index of the last leaf `id` covers, `((index + 1) << level) - 1`:
/// the leaf whose append completes the node, and the first column of its
/// key. `None` when it does not fit in an SQLite integer (no such node can
/// be stored).
fn end_leaf(id: NodeId) -> Option<i64> {
    let width = 1u64.checked_shl(id.level)?;
    let end = id.index.checked_add(1)?.checked_mul(width)? - 1;
    i64::try_from(end).ok()
}

/// Leaves the stored Merkle tree covers (one more than the last leaf's index).
fn tree_size_on(conn: &Connection) -> Result<u64, StoreError> {
    let size: i64 = conn
        .prepare_cached(SELECT_TREE_SIZE)?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(size).unwrap_or(0))
}

/// The stored hashes of `ids`, `None` where absent.
///
/// Nodes are keyed by `(end_leaf, level)`, and a leaf completes two nodes on
/// average, so ids that are dense in `end_leaf` (as `verify` asks for them:
/// every node completed by a run of events, on every level) are read with
/// one range query over their `end_leaf`s, keeping only the wanted rows; the
/// range holds at most about four rows per wanted id. Scattered ones (a
/// proof's, the frontier's) are read with one key lookup each.
fn read_nodes_on(conn: &Connection, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
    let keys: Vec<Option<i64>> = ids.iter().map(|id| end_leaf(*id)).collect();
    let (min, max) = keys
        .iter()
        .flatten()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &e| (lo.min(e), hi.max(e)));
    let count = i64::try_from(ids.len()).unwrap_or(i64::MAX);
    let dense = ids.len() > 8 && min <= max && max - min < count.saturating_mul(2);
    let decode = |id: NodeId, bytes: Vec<u8>| -> Result<Hash, StoreError> {
        Hash::try_from(bytes.as_slice()).map_err(|_| StoreError::TreeMismatch {
            position: id.index << id.level,
            reason: format!(
                "stored node (level {}, index {}) is not 32 bytes",
                id.level, id.index
            ),
        })
    };
    let mut found: HashMap<NodeId, Hash> = HashMap::with_capacity(ids.len());
    if dense {
        let wanted: HashSet<NodeId> = ids.iter().copied().collect();
        let mut range = conn.prepare_cached(SELECT_NODES_ENDING_IN)?;
        let mut rows = range.query(params![min, max])?;
        while let Some(row) = rows.next()? {
            let level: i64 = row.get(0)?;
            let index: i64 = row.get(1)?;
            let id = NodeId::new(
                u32::try_from(level).unwrap_or(u32::MAX),
                u64::try_from(index).unwrap_or(u64::MAX),
            );
            if wanted.contains(&id) {
                found.insert(id, decode(id, row.get(2)?)?);
            }
        }
    } else {
        let mut point = conn.prepare_cached(SELECT_NODE)?;
        for (id, key) in ids.iter().zip(&keys) {
            let Some(key) = key else { continue };
            let bytes: Option<Vec<u8>> = point
                .query_row(params![key, id.level], |row| row.get(0))
                .optional()?;
            if let Some(bytes) = bytes {
                found.insert(*id, decode(*id, bytes)?);
            }
        }
    }
    Ok(ids.iter().map(|id| found.get(id).copied()).collect())
}

/// Insert completed Merkle nodes (inside the caller's transaction).
fn insert_nodes(conn: &Connection, nodes: &[(NodeId, Hash)]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(INSERT_NODE)?;
    for (id, hash) in nodes {
        let index = i64::try_from(id.index).unwrap_or(i64::MAX);
        // Out of range only for a tree SQLite could not hold; the table's
        // CHECK then refuses the row.
        let end = end_leaf(*id).unwrap_or(-1);
        stmt.execute(params![id.level, index, end, &hash[..]])?;
    }
    Ok(())
}

/// Events whose leaves are computed per step when the tree catches up.
const TREE_CATCH_UP_PAGE: i64 = 10_000;

/// The tree's writer for a log whose head is at `head`, inside the caller's
/// write transaction: the tree is first brought up to the head if it lags
/// (a ledger written before the tree existed). A tree ahead of the log
/// means events were removed: [`StoreError::TreeMismatch`]. The frontier
/// comes from `cache` when it is of the stored tree's size, else from the
/// stored nodes.
fn open_tree(
    conn: &Connection,
    head: Position,
    cache: &FrontierCache,
) -> Result<TreeWriter, StoreError> {
    let size = tree_size_on(conn)?;
    if size > head {
        return Err(merkle::tree_ahead(size, head));
    }
    let mut tree = match cache.take(size) {
        Some(frontier) => TreeWriter::resume(frontier),
        None => {
            let ids = TreeWriter::ids_to_load(size);
            TreeWriter::load(size, read_nodes_on(conn, &ids)?)?
        }
    };
    let mut stmt = conn.prepare_cached(
        "SELECT position, hash FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
    )?;
    while tree.size() < head {
        let after = i64::try_from(tree.size()).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![after, TREE_CATCH_UP_PAGE])?;
        let mut any = false;
        while let Some(row) = rows.next()? {
            any = true;
            let position: i64 = row.get(0)?;
            let hash: String = row.get(1)?;
            tree.push(u64::try_from(position).unwrap_or(0), &hash)?;
        }
        insert_nodes(conn, &tree.take())?;
        if !any {
            break;
        }
    }
    Ok(tree)
}

/// Bring the Merkle tree up to the log's head if it lags (a file written
/// before the tree existed), in one write transaction. Nothing is written
/// when the tree is current.
fn ensure_tree(conn: &mut Connection) -> Result<(), StoreError> {
    let head = read_head(conn)?.map_or(0, |h| h.position);
    if tree_size_on(conn)? >= head {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = read_head(&tx)?.map_or(0, |h| h.position);
    open_tree(&tx, head, &FrontierCache::default())?;
    tx.commit()?;
    Ok(())
}

/// The last event's position and hash, read on `conn` (inside the caller's
/// transaction when there is one).
fn read_head(conn: &Connection) -> Result<Option<Head>, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_HEAD)?;
    let head = stmt
        .query_row([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .optional()?;
    match head {
        None => Ok(None),
        Some((position, hash)) => Ok(Some(Head {
            position: u64::try_from(position).map_err(|_| StoreError::Corrupt {
                position: 0,
                reason: format!("negative position {position}"),
            })?,
            hash,
        })),
    }
}

/// Current version of `stream_id` as seen by `conn`.
fn stream_version_on(conn: &Connection, stream_id: &str) -> Result<StreamVersion, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_STREAM_VERSION)?;
    let version: Option<i64> = stmt.query_row([stream_id], |row| row.get(0)).optional()?;
    match version {
        None => Ok(0),
        Some(v) => u64::try_from(v).map_err(|_| StoreError::Corrupt {
            position: 0,
            reason: format!("stream {stream_id} has a negative version {v}"),
        }),
    }
}

/// Insert the row `row` with `stmt` (a cached [`INSERT_EVENT`]).
fn insert_row(stmt: &mut CachedStatement<'_>, row: &EncodedEvent<'_>) -> Result<(), StoreError> {
    stmt.execute(params![
        row.position,
        row.event.stream_id,
        row.stream_version,
        row.event.event_type,
        row.schema_version,
        row.text.payload,
        row.text.metadata,
        row.text.occurred_at,
        row.text.recorded_at,
        row.event.prev_hash,
        row.event.hash,
    ])?;
    Ok(())
}

/// Events per chunk handed from the checking thread to the writer.
const IMPORT_CHUNK: usize = 512;

/// Inserts the rows of checked events for `import_batch`, growing the
/// Merkle tree with them.
struct ImportWriter<'c> {
    conn: &'c Connection,
    insert: CachedStatement<'c>,
    tree: TreeWriter,
}

impl<'c> ImportWriter<'c> {
    fn new(conn: &'c Connection, tree: TreeWriter) -> Result<Self, StoreError> {
        Ok(ImportWriter {
            conn,
            insert: conn.prepare_cached(INSERT_EVENT)?,
            tree,
        })
    }

    fn write(&mut self, rows: &[EncodedEvent<'_>]) -> Result<(), StoreError> {
        for row in rows {
            insert_row(&mut self.insert, row)?;
            self.tree.push(row.event.position, &row.event.hash)?;
        }
        insert_nodes(self.conn, &self.tree.take())
    }

    /// Write every chunk `chunks` delivers (dropping it on failure, which
    /// stops the sending thread).
    fn write_all(
        &mut self,
        chunks: mpsc::Receiver<Vec<EncodedEvent<'_>>>,
    ) -> Result<(), StoreError> {
        for rows in chunks {
            self.write(&rows)?;
        }
        Ok(())
    }

    /// Record the idempotency keys of the imported requests; a key the
    /// store already knows is left as it is. Returns the tree.
    fn finish(self, keys: &[KeyRange<'_>]) -> Result<TreeWriter, StoreError> {
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO idempotency_keys (key, first_position, last_position) \
             VALUES (?1, ?2, ?3)",
        )?;
        for range in keys {
            insert.execute(params![
                range.key,
                to_sql_int(range.first, range.first, "position")?,
                to_sql_int(range.last, range.last, "position")?
            ])?;
        }
        Ok(self.tree)
    }
}

/// The events of `stream_id` with versions in `(after, up_to]`, in version
/// order, read on `conn`: a connection to the ledger's file that the caller
/// owns, e.g. the read models' own, inside their transaction, so that they
/// see the log as of their snapshot and never wait for the store's handle.
pub fn read_stream_on(
    conn: &Connection,
    stream_id: &str,
    after: StreamVersion,
    up_to: StreamVersion,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(select_events!(
        "WHERE stream_id = ?1 AND stream_version > ?2 AND stream_version <= ?3 \
         ORDER BY stream_version"
    ))?;
    let mut rows = stmt.query(params![stream_id, after, up_to])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(decode_row(row)?);
    }
    Ok(events)
}

/// Decode one row of [`select_events!`]; anything malformed is
/// [`StoreError::Corrupt`] naming the row's position.
fn decode_row<P: StoredPayload>(row: &rusqlite::Row<'_>) -> Result<RecordedEvent<P>, StoreError> {
    let raw_position: i64 = row.get(0)?;
    let position = u64::try_from(raw_position).map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: format!("negative position {raw_position}"),
    })?;
    let corrupt = |column: &str, reason: String| StoreError::Corrupt {
        position,
        reason: format!("{column}: {reason}"),
    };
    let text = |index: usize, column: &str| -> Result<String, StoreError> {
        row.get::<_, String>(index)
            .map_err(|e| corrupt(column, e.to_string()))
    };
    let int = |index: usize, column: &str| -> Result<i64, StoreError> {
        row.get::<_, i64>(index)
            .map_err(|e| corrupt(column, e.to_string()))
    };
    let str_ref = |index: usize, column: &str| -> Result<&str, StoreError> {
        row.get_ref(index)
            .and_then(|v: ValueRef<'_>| v.as_str().map_err(rusqlite::Error::from))
            .map_err(|e| corrupt(column, e.to_string()))
    };
    let time = |index: usize, column: &str| -> Result<DateTime<Utc>, StoreError> {
        let raw = str_ref(index, column)?;
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| corrupt(column, format!("{raw:?} is not an RFC 3339 time: {e}")))
    };

    let stream_version = int(2, "stream_version")?;
    let schema_version = int(4, "schema_version")?;
    Ok(RecordedEvent {
        position,
        stream_id: text(1, "stream_id")?,
        stream_version: u64::try_from(stream_version)
            .map_err(|_| corrupt("stream_version", format!("negative value {stream_version}")))?,
        event_type: text(3, "event_type")?,
        schema_version: u32::try_from(schema_version).map_err(|_| {
            corrupt(
                "schema_version",
                format!("{schema_version} is out of range"),
            )
        })?,
        payload: P::from_stored(position, str_ref(5, "payload")?)?,
        metadata: serde_json::from_str(str_ref(6, "metadata")?)
            .map_err(|e| corrupt("metadata", format!("not valid metadata JSON: {e}")))?,
        occurred_at: time(7, "occurred_at")?,
        recorded_at: time(8, "recorded_at")?,
        prev_hash: text(9, "prev_hash")?,
        hash: text(10, "hash")?,
    })
}

/// The first and last positions the request with idempotency key `key`
/// wrote, if the key has been used.
fn idempotency_key_range(conn: &Connection, key: &str) -> Result<Option<(i64, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_IDEMPOTENCY_KEY)?;
    Ok(stmt
        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// Events with positions `first..=last`, for replaying an idempotent request.
fn read_range(conn: &Connection, first: i64, last: i64) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(select_events!(
        "WHERE position BETWEEN ?1 AND ?2 ORDER BY position"
    ))?;
    let mut rows = stmt.query(params![first, last])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(decode_row(row)?);
    }
    Ok(events)
}

/// Apply one request on `conn` (inside the batch transaction). The outer
/// error is a storage failure that aborts the batch; the inner one is this
/// request's own failure, after which the caller must roll back what it wrote.
fn append_one(
    conn: &Connection,
    head: &mut Option<Head>,
    request: AppendRequest,
    recorded_at: DateTime<Utc>,
) -> Result<Result<AppendOutcome, StoreError>, StoreError> {
    if request.appends.is_empty() || request.appends.iter().any(|a| a.events.is_empty()) {
        return Ok(Err(StoreError::EmptyAppend));
    }
    if let Some(key) = &request.idempotency_key {
        if let Some((first, last)) = idempotency_key_range(conn, key)? {
            return Ok(read_range(conn, first, last).map(|events| AppendOutcome {
                events,
                replayed: true,
            }));
        }
    }

    let total: usize = request.appends.iter().map(|a| a.events.len()).sum();
    let mut written = Vec::with_capacity(total);
    let mut insert = conn.prepare_cached(INSERT_EVENT)?;
    for append in request.appends {
        let current = stream_version_on(conn, &append.stream_id)?;
        if !append.expected.matches(current) {
            return Ok(Err(StoreError::Conflict {
                stream_id: append.stream_id,
                expected: append.expected,
                actual: current,
            }));
        }
        for (version, new) in (current + 1..).zip(append.events) {
            let (position, prev_hash) = match head {
                Some(h) => (h.position + 1, h.hash.clone()),
                None => (1, hash::GENESIS_HASH.to_string()),
            };
            let (event, text) = crate::core::record(
                position,
                prev_hash,
                &append.stream_id,
                version,
                new,
                request.idempotency_key.as_deref(),
                recorded_at,
            )?;
            insert_row(&mut insert, &EncodedEvent::with_text(&event, text)?)?;
            *head = Some(Head {
                position,
                hash: event.hash.clone(),
            });
            written.push(event);
        }
    }
    if let (Some(key), Some(first), Some(last)) =
        (&request.idempotency_key, written.first(), written.last())
    {
        let first = to_sql_int(first.position, first.position, "position")?;
        let last = to_sql_int(last.position, last.position, "position")?;
        conn.prepare_cached(INSERT_IDEMPOTENCY_KEY)?
            .execute(params![key, first, last])?;
    }
    Ok(Ok(AppendOutcome {
        events: written,
        replayed: false,
    }))
}

/// Add the events the successful, non-replayed requests wrote to the tree
/// and insert the nodes they complete (inside the batch transaction).
fn grow_tree(
    conn: &Connection,
    tree: &mut TreeWriter,
    results: &[Result<AppendOutcome, StoreError>],
) -> Result<(), StoreError> {
    for outcome in results.iter().flatten().filter(|o| !o.replayed) {
        for event in &outcome.events {
            tree.push(event.position, &event.hash)?;
        }
    }
    insert_nodes(conn, &tree.take())
}

/// The least string greater than every string starting with `prefix`, or
/// `None` when there is none (empty prefix, or only `char::MAX`s).
///
/// SQLite compares text byte-wise, and UTF-8 byte order is code point order,
/// so `prefix <= id < upper` selects exactly the ids starting with `prefix`.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Streams [`EventStore::read_all`] (and [`EventStore::read_all_json`]) in
/// pages, locking the connection per page.
struct PagedEvents<'a, P> {
    store: &'a SqliteStore,
    after: i64,
    buffer: VecDeque<Result<RecordedEvent<P>, StoreError>>,
    done: bool,
}

impl<'a, P: StoredPayload> PagedEvents<'a, P> {
    /// The events after `after`, with the first page fetched now so that a
    /// store that cannot be read fails here rather than on the first item.
    fn start(store: &'a SqliteStore, after: Position) -> Result<Self, StoreError> {
        let mut events = PagedEvents {
            store,
            after: i64::try_from(after).unwrap_or(i64::MAX),
            buffer: VecDeque::new(),
            done: false,
        };
        let first = store.read_page(events.after, READ_PAGE_SIZE)?;
        events.absorb(first);
        Ok(events)
    }

    /// Queue a fetched page; a short page or a decode error ends the stream.
    fn absorb(&mut self, page: Vec<Result<RecordedEvent<P>, StoreError>>) {
        if page.len() < READ_PAGE_SIZE {
            self.done = true;
        }
        for event in page {
            match &event {
                Ok(e) => self.after = i64::try_from(e.position).unwrap_or(i64::MAX),
                Err(_) => self.done = true,
            }
            self.buffer.push_back(event);
        }
    }

    fn fill(&mut self) {
        match self.store.read_page(self.after, READ_PAGE_SIZE) {
            Ok(page) => self.absorb(page),
            Err(e) => {
                self.done = true;
                self.buffer.push_back(Err(e));
            }
        }
    }
}

impl<P: StoredPayload> Iterator for PagedEvents<'_, P> {
    type Item = Result<RecordedEvent<P>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            self.fill();
        }
        self.buffer.pop_front()
    }
}

impl SqliteStore {
    /// The one append path: `inline` (if any) runs in the transaction
    /// after the events and the tree nodes are written, before the commit.
    fn append_batch_with(
        &self,
        requests: Vec<AppendRequest>,
        inline: Option<&mut dyn InlineWriter>,
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.lock();
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let recorded_at = to_stored_precision(Utc::now());
        let mut head = read_head(&tx)?;
        let mut tree = open_tree(&tx, head.as_ref().map_or(0, |h| h.position), &self.frontier)?;

        if requests.len() == 1 {
            // The common case needs no savepoint: a failed request rolls back
            // the whole transaction (when `tx` drops), which is only itself.
            let mut results = Vec::with_capacity(1);
            for request in requests {
                let result = append_one(&tx, &mut head, request, recorded_at)?;
                results.push(result);
            }
            if results.iter().all(Result::is_ok) {
                grow_tree(&tx, &mut tree, &results)?;
                if let Some(inline) = inline {
                    run_inline(&tx, inline, &results)?;
                }
                tx.commit()?;
            } else {
                tx.rollback()?;
            }
            // Rolled back, the tree is as it was: its frontier still holds.
            self.frontier.keep(&tree);
            return Ok(results);
        }

        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            let savepoint = tx.savepoint()?;
            let head_before = head.clone();
            let result = append_one(&savepoint, &mut head, request, recorded_at)?;
            if result.is_ok() {
                savepoint.commit()?;
            } else {
                // Rolls back to the savepoint and releases it.
                savepoint.finish()?;
                head = head_before;
            }
            results.push(result);
        }
        grow_tree(&tx, &mut tree, &results)?;
        if let Some(inline) = inline {
            run_inline(&tx, inline, &results)?;
        }
        tx.commit()?;
        self.frontier.keep(&tree);
        Ok(results)
    }
}

/// Run `inline` on the append's transaction inside a savepoint, for the
/// requests that appended; what it wrote is rolled back if it says so.
fn run_inline(
    tx: &rusqlite::Transaction<'_>,
    inline: &mut dyn InlineWriter,
    results: &[Result<AppendOutcome, StoreError>],
) -> Result<(), StoreError> {
    let appended = crate::core::newly_appended(results);
    if appended.is_empty() {
        return Ok(());
    }
    tx.execute_batch("SAVEPOINT inline_writer")?;
    if inline.write_sqlite(tx, &appended) {
        tx.execute_batch("RELEASE inline_writer")?;
    } else {
        tx.execute_batch("ROLLBACK TO inline_writer; RELEASE inline_writer")?;
    }
    Ok(())
}

impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        self.append_batch_with(requests, None)
    }

    fn append_batch_inline(
        &self,
        requests: Vec<AppendRequest>,
        inline: &mut dyn InlineWriter,
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        self.append_batch_with(requests, Some(inline))
    }

    fn stream_version(&self, stream_id: &str) -> Result<StreamVersion, StoreError> {
        stream_version_on(&self.read_lock(), stream_id)
    }

    fn read_stream(
        &self,
        stream_id: &str,
        after_version: StreamVersion,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read_stream_on(
            &self.read_lock(),
            stream_id,
            after_version,
            StreamVersion::MAX,
        )
    }

    fn read_all(&self, after: Position) -> Result<EventIter<'_>, StoreError> {
        Ok(Box::new(PagedEvents::<serde_json::Value>::start(
            self, after,
        )?))
    }

    fn read_all_json(&self, after: Position) -> Result<JsonEventIter<'_>, StoreError> {
        Ok(Box::new(PagedEvents::<String>::start(self, after)?))
    }

    fn stream_ids(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.read_lock();
        let upper = prefix_upper_bound(prefix);
        let mut stmt = match upper {
            Some(_) => conn.prepare_cached(
                "SELECT DISTINCT stream_id FROM events \
                 WHERE stream_id >= ?1 AND stream_id < ?2 ORDER BY stream_id",
            )?,
            None => conn.prepare_cached(
                "SELECT DISTINCT stream_id FROM events WHERE stream_id >= ?1 ORDER BY stream_id",
            )?,
        };
        let mut rows = match &upper {
            Some(upper) => stmt.query(params![prefix, upper])?,
            None => stmt.query(params![prefix])?,
        };
        let mut ids = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            if !id.starts_with(prefix) {
                break;
            }
            ids.push(id);
        }
        Ok(ids)
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        read_head(&self.read_lock())
    }

    fn find_idempotent(&self, key: &str) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let conn = self.read_lock();
        match idempotency_key_range(&conn, key)? {
            Some((first, last)) => Ok(Some(read_range(&conn, first, last)?)),
            None => Ok(None),
        }
    }

    fn merkle_nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        read_nodes_on(&self.read_lock(), ids)
    }

    fn import_batch(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head = read_head(&tx)?;
        let tree = open_tree(&tx, head.as_ref().map_or(0, |h| h.position), &self.frontier)?;
        let mut writer = ImportWriter::new(&tx, tree)?;
        let keys = if events.len() <= 2 * IMPORT_CHUNK {
            let plan = plan_import(events, head.as_ref(), |stream| {
                stream_version_on(&tx, stream)
            })?;
            writer.write(&plan.rows)?;
            plan.keys
        } else {
            // Check and encode on another thread while this one inserts: the
            // hashing then costs (almost) nothing on top of SQLite's work.
            // That thread cannot query, so it gets the stored versions of the
            // batch's streams beforehand.
            let mut stored: HashMap<&str, StreamVersion> = HashMap::new();
            for event in events {
                if !stored.contains_key(event.stream_id.as_str()) {
                    let version = stream_version_on(&tx, &event.stream_id)?;
                    stored.insert(&event.stream_id, version);
                }
            }
            let (sender, receiver) = mpsc::sync_channel(4);
            let (written, checked) = std::thread::scope(|scope| {
                let checker = scope.spawn(|| {
                    // Dropped when this thread ends, which ends the writer's loop.
                    let sender = sender;
                    let mut planner = ImportPlanner::new(head.as_ref(), |stream: &str| {
                        Ok(stored.get(stream).copied().unwrap_or(0))
                    });
                    for chunk in events.chunks(IMPORT_CHUNK) {
                        let rows = chunk
                            .iter()
                            .map(|event| planner.check(event))
                            .collect::<Result<Vec<_>, _>>()?;
                        if sender.send(rows).is_err() {
                            // The writer failed; it reports why.
                            return Ok(Vec::new());
                        }
                    }
                    Ok(planner.key_ranges())
                });
                let written = writer.write_all(receiver);
                let checked: Result<Vec<KeyRange<'_>>, StoreError> = checker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (written, checked)
            });
            let keys = checked?;
            written?;
            keys
        };
        let tree = writer.finish(&keys)?;
        tx.commit()?;
        self.frontier.keep(&tree);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use provledger_proof::merkle::Frontier;
    use rusqlite::{params_from_iter, Connection, StatementStatus};

    use super::{
        end_leaf, insert_nodes, migrate, prefix_upper_bound, read_nodes_on, tree_size_on,
        MIGRATIONS, SELECT_NODE, SELECT_NODES_ENDING_IN, SELECT_TREE_SIZE,
    };
    use crate::migrations::check_numbering;
    use crate::{Hash, NodeId};

    /// A migrated in-memory store holding the tree of `leaves` leaves, and
    /// every node of it.
    fn tree(leaves: u32) -> (Connection, HashMap<NodeId, Hash>) {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let mut frontier = Frontier::new();
        let mut all = HashMap::new();
        for i in 0..leaves {
            let mut leaf = [0u8; 32];
            leaf[..4].copy_from_slice(&i.to_be_bytes());
            let nodes = frontier.push_leaf(leaf);
            insert_nodes(&conn, &nodes).unwrap();
            all.extend(nodes);
        }
        (conn, all)
    }

    #[test]
    fn end_leaf_is_the_last_leaf_a_node_covers() {
        assert_eq!(end_leaf(NodeId::new(0, 0)), Some(0));
        assert_eq!(end_leaf(NodeId::new(0, 41)), Some(41));
        assert_eq!(end_leaf(NodeId::new(1, 0)), Some(1));
        assert_eq!(end_leaf(NodeId::new(3, 2)), Some(23));
        assert_eq!(end_leaf(NodeId::new(62, 0)), Some((1 << 62) - 1));
        assert_eq!(end_leaf(NodeId::new(63, 0)), Some(i64::MAX));
        assert_eq!(
            end_leaf(NodeId::new(63, 1)),
            None,
            "beyond an SQLite integer"
        );
        assert_eq!(end_leaf(NodeId::new(64, 0)), None);
        assert_eq!(end_leaf(NodeId::new(1, u64::MAX)), None);
    }

    /// Every statement on `merkle_nodes` goes through the key: the plan
    /// searches the primary key, and on a tree of 1,000 leaves no statement
    /// steps through the table as a full scan (which the old tree-size
    /// query, `level = 0`, would now do).
    #[test]
    fn merkle_node_statements_search_the_key() {
        let (conn, _) = tree(1000);
        let statements: [(&str, Vec<i64>); 3] = [
            (SELECT_TREE_SIZE, vec![]),
            (SELECT_NODE, vec![511, 9]),
            (SELECT_NODES_ENDING_IN, vec![500, 520]),
        ];
        for (sql, args) in &statements {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                !plan.is_empty()
                    && plan
                        .iter()
                        .all(|step| step.starts_with("SEARCH merkle_nodes USING PRIMARY KEY")),
                "{sql}: {plan:?}"
            );
        }
        let scan_steps = |sql: &str, args: &[i64]| -> (i32, usize) {
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt
                .query_map(params_from_iter(args), |_| Ok(()))
                .unwrap()
                .count();
            (stmt.get_status(StatementStatus::FullscanStep), rows)
        };
        assert_eq!(scan_steps(SELECT_TREE_SIZE, &[]), (0, 1));
        assert_eq!(scan_steps(SELECT_NODE, &[511, 9]), (0, 1));
        // Leaves 500..=520 complete 21 + 10 + 5 + 3 nodes on levels 0 to 3,
        // and leaf 511 one more on each level from 4 to 9.
        assert_eq!(scan_steps(SELECT_NODES_ENDING_IN, &[500, 520]), (0, 45));
        let (steps, _) = scan_steps(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM merkle_nodes WHERE level = 0",
            &[],
        );
        assert!(steps > 0, "a scan must show in the counter");
        assert_eq!(tree_size_on(&conn).unwrap(), 1000);
    }

    /// Dense ids (a run of events' nodes, read as one range) and scattered
    /// ones (read one by one) give the stored hashes, `None` where absent.
    #[test]
    fn nodes_are_read_by_range_and_by_key() {
        let (conn, all) = tree(1000);
        let mut frontier = Frontier::new();
        let mut run = Vec::new();
        for i in 0..1000u32 {
            let mut leaf = [0u8; 32];
            leaf[..4].copy_from_slice(&i.to_be_bytes());
            let nodes = frontier.push_leaf(leaf);
            if (300..700).contains(&i) {
                run.extend(nodes.into_iter().map(|(id, _)| id));
            }
        }
        let scattered = vec![
            NodeId::new(0, 999),
            NodeId::new(9, 0),
            NodeId::new(0, 1000),
            NodeId::new(3, 5),
            NodeId::new(63, 0),
            NodeId::new(3, 5),
            NodeId::new(4, 62),
        ];
        let mut mixed = run.clone();
        mixed.insert(17, NodeId::new(0, 1000));
        mixed.push(NodeId::new(1, 450));
        for ids in [run, scattered, mixed] {
            let expected: Vec<Option<Hash>> = ids.iter().map(|id| all.get(id).copied()).collect();
            assert_eq!(read_nodes_on(&conn, &ids).unwrap(), expected, "{ids:?}");
        }
    }

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        check_numbering(MIGRATIONS).unwrap();
    }

    #[test]
    fn upper_bound_of_a_prefix() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("order-"), Some("order.".to_string()));
        assert_eq!(prefix_upper_bound("a%"), Some("a&".to_string()));
        assert_eq!(
            prefix_upper_bound("a\u{10FFFF}"),
            Some("b".to_string()),
            "a maximal last char is dropped and the one before incremented"
        );
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(
            prefix_upper_bound("x\u{D7FF}"),
            Some("x\u{E000}".to_string()),
            "surrogates are skipped"
        );
    }
}
