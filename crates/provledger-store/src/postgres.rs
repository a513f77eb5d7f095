//! The PostgreSQL backend: the scale-out store, selected by a `postgres://` URL.
//!
//! This module exists so that several application processes on several
//! machines can share one ledger with the same guarantees as the embedded
//! SQLite file: gapless global positions, a consistent hash chain, optimistic
//! concurrency per stream, idempotent retries and an append-only table that the
//! database itself protects (triggers refuse UPDATE, DELETE and TRUNCATE).
//!
//! **Global order.** Every append and import runs in one READ COMMITTED
//! transaction that first takes a transaction-scoped advisory lock for this
//! ledger, then reads the head and assigns `head + 1, head + 2, …`. Appends are
//! therefore serialized: a row with a lower position is always committed (and
//! visible) before any transaction can assign a higher one, so a reader that
//! follows the log by position never skips an event that commits later, and
//! each event's `prev_hash` is the hash of the event just before it. The
//! reasoning and the alternatives are in `docs/adr/0002-global-order.md`.
//!
//! **One statement per append.** Every write goes through one server-side
//! function, `provledger_append`, which checks that the ledger is in the
//! state its rows were planned on and inserts them, or writes nothing. A
//! handle that wrote the ledger's last event plans the next append against
//! that head without reading anything and sends it, with an inline writer's
//! rows, as one statement in its own implicit transaction: one round trip,
//! in which the function takes the lock if it is free. When another process
//! wrote in between or holds the lock, the statement writes nothing and the
//! append is planned again in a transaction that takes the lock and reads
//! the state first (and after misses in a row it stops predicting for a
//! while).
//!
//! **Merkle tree.** `merkle_nodes` holds the perfect-subtree hashes of the
//! tree over the events ([`crate::merkle`]), inserted under the same lock and
//! in the same transaction as the events; a database from before the table
//! existed gets its tree computed once, when it is opened.
//!
//! Values are stored as text exactly as they are hashed (canonical JSON,
//! [`hash::format_time`] times), so a read-back event hashes byte-for-byte
//! the same.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use crate::core::{plan_import, EncodedEvent, KeyRange, RowText, StoredPayload};
use crate::hash;
use crate::merkle::{self, FrontierCache, TreeWriter};
use crate::migrations::{self, Migration, MigrationTarget};
use crate::{
    to_stored_precision, AppendOutcome, AppendRequest, EventIter, EventStore, ExpectedVersion,
    Hash, Head, InlineWriter, JsonEventIter, Metadata, NodeId, OpenMode, Position, RecordedEvent,
    StoreError, StreamVersion,
};

/// Advisory-lock class (first key) of the append lock: ASCII `pvlg`.
/// The second key is the OID of the ledger's `events` table, so two ledgers
/// in different schemas of one database do not serialize each other.
const APPEND_LOCK_CLASS: i32 = 0x7076_6c67;
/// Advisory-lock class of the migration lock: ASCII `pvlm`. The second key is
/// derived from the schema name (the tables may not exist yet).
const MIGRATION_LOCK_CLASS: i32 = 0x7076_6c6d;
/// Rows per page of [`EventStore::read_all`].
const PAGE_SIZE: i64 = 1000;
/// Rows per INSERT statement in [`EventStore::import_batch`].
const IMPORT_CHUNK: usize = 5000;

/// Environment variable naming the PostgreSQL server tests use.
#[cfg(feature = "testing")]
const TEST_URL_VAR: &str = "PROVLEDGER_TEST_POSTGRES_URL";
/// Environment variable that turns a missing test URL into a failure (CI).
#[cfg(feature = "testing")]
const REQUIRE_VAR: &str = "PROVLEDGER_REQUIRE_POSTGRES";

/// Every migration this build knows, oldest first.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events, idempotency keys, append-only triggers",
        // stream_id uses the "C" collation so that stream ids sort by bytes (as
        // in SQLite) and a prefix is a contiguous index range. schema_version is
        // BIGINT because the API's u32 does not fit PostgreSQL's INTEGER.
        sql: r#"
CREATE TABLE events (
    position       BIGINT PRIMARY KEY CHECK (position > 0),
    stream_id      TEXT COLLATE "C" NOT NULL,
    stream_version BIGINT NOT NULL CHECK (stream_version > 0),
    event_type     TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    payload        TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    occurred_at    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE TABLE idempotency_keys (
    key            TEXT PRIMARY KEY,
    first_position BIGINT NOT NULL,
    last_position  BIGINT NOT NULL
);
CREATE FUNCTION provledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'provledger: % on table % is forbidden: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION provledger_refuse_change();
CREATE TRIGGER idempotency_keys_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON idempotency_keys
    FOR EACH STATEMENT EXECUTE FUNCTION provledger_refuse_change();
"#,
    },
    Migration {
        version: 2,
        name: "Merkle tree nodes, append-only",
        // Filled for existing events by `ensure_tree` right after migrating.
        sql: r#"
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx   BIGINT  NOT NULL CHECK (idx >= 0),
    hash  BYTEA   NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);
CREATE TRIGGER merkle_nodes_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION provledger_refuse_change();
"#,
    },
    Migration {
        version: 3,
        name: "one function writes every append: checks the state it was planned on, then inserts",
        // The one statement every append and import runs (see `write`).
        // `planned_under_lock`: the caller's transaction holds the lock and
        // read the state the rows were planned on, so only the inserts run.
        // Otherwise the function takes the lock, without waiting for it:
        // a writer that does not get it at once takes the locked path. It
        // is VOLATILE, so that under READ COMMITTED each statement in it
        // reads a fresh snapshot: taken after the lock, it sees every
        // append that committed before. Returns false, having written
        // nothing, when the ledger is not in the state the rows were
        // planned on.
        sql: r#"
CREATE FUNCTION provledger_append(
    planned_under_lock BOOLEAN, lock_class INTEGER, lock_key INTEGER,
    want_head BIGINT, want_head_hash TEXT,
    want_streams TEXT[], want_versions BIGINT[], want_absent_keys TEXT[],
    new_positions BIGINT[], new_stream_ids TEXT[], new_stream_versions BIGINT[],
    new_event_types TEXT[], new_schema_versions BIGINT[], new_payloads TEXT[],
    new_metadata TEXT[], new_occurred_at TEXT[], new_recorded_at TEXT[],
    new_prev_hashes TEXT[], new_hashes TEXT[],
    new_keys TEXT[], new_key_firsts BIGINT[], new_key_lasts BIGINT[],
    new_node_levels INTEGER[], new_node_indexes BIGINT[], new_node_hashes BYTEA[]
) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_head BIGINT;
    found_hash TEXT;
BEGIN
    IF NOT planned_under_lock THEN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RETURN false;
        END IF;
        IF NOT pg_try_advisory_xact_lock(lock_class, lock_key) THEN
            RETURN false;
        END IF;
    END IF;
    SELECT e.position, e.hash INTO found_head, found_hash
        FROM events e ORDER BY e.position DESC LIMIT 1;
    IF COALESCE(found_head, 0) <> want_head
        OR (want_head > 0 AND found_hash IS DISTINCT FROM want_head_hash) THEN
        RETURN false;
    END IF;
    IF NOT planned_under_lock THEN
        IF (SELECT COALESCE(MAX(n.idx) + 1, 0) FROM merkle_nodes n WHERE n.level = 0) <> want_head THEN
            RETURN false;
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(want_streams, want_versions) AS s(id, version)
                   WHERE (SELECT COALESCE(MAX(e.stream_version), 0) FROM events e
                          WHERE e.stream_id = s.id) <> s.version) THEN
            RETURN false;
        END IF;
        IF EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.key = ANY(want_absent_keys)) THEN
            RETURN false;
        END IF;
    END IF;
    INSERT INTO events (position, stream_id, stream_version, event_type, schema_version,
                        payload, metadata, occurred_at, recorded_at, prev_hash, hash)
        SELECT * FROM unnest(new_positions, new_stream_ids, new_stream_versions,
                             new_event_types, new_schema_versions, new_payloads, new_metadata,
                             new_occurred_at, new_recorded_at, new_prev_hashes, new_hashes);
    INSERT INTO idempotency_keys (key, first_position, last_position)
        SELECT * FROM unnest(new_keys, new_key_firsts, new_key_lasts)
        ON CONFLICT (key) DO NOTHING;
    INSERT INTO merkle_nodes (level, idx, hash)
        SELECT * FROM unnest(new_node_levels, new_node_indexes, new_node_hashes);
    RETURN true;
END
$$;
"#,
    },
];

/// The newest schema version this build knows.
fn latest_version() -> i64 {
    migrations::latest(MIGRATIONS)
}

const COLUMNS: &str = "position, stream_id, stream_version, event_type, schema_version, \
                       payload, metadata, occurred_at, recorded_at, prev_hash, hash";

/// Reads the events of stream `$1` with versions in `($2, $3]`, in version
/// order; decode each row with [`decode_event`]. Public so that the read
/// models can read a stream on their own connection, inside their own
/// transaction (same schema), without waiting for the store's handle.
pub const READ_STREAM: &str = "SELECT position, stream_id, stream_version, event_type, \
     schema_version, payload, metadata, occurred_at, recorded_at, prev_hash, hash \
     FROM events WHERE stream_id = $1 AND stream_version > $2 AND stream_version <= $3 \
     ORDER BY stream_version";

/// Statements prepared once per connection.
struct Statements {
    head: Statement,
    state: Statement,
    stream_version: Statement,
    read_stream: Statement,
    page: Statement,
    range: Statement,
    stream_ids: Statement,
    idempotency_get: Statement,
    write: Statement,
    tree_size: Statement,
    nodes_get: Statement,
    nodes_put: Statement,
    hashes_after: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Self, StoreError> {
        Ok(Statements {
            head: client
                .prepare("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")?,
            // Everything a write reads first, in one round trip: the head
            // ($1: stream ids, $2: idempotency keys).
            state: client.prepare(
                "WITH head AS (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1), \
                 versions AS (SELECT array_agg(stream_id) AS ids, array_agg(version) AS versions \
                     FROM (SELECT stream_id, MAX(stream_version) AS version FROM events \
                           WHERE stream_id = ANY($1::text[]) GROUP BY stream_id) v), \
                 keys AS (SELECT array_agg(key) AS names, array_agg(first_position) AS firsts, \
                     array_agg(last_position) AS lasts FROM idempotency_keys \
                     WHERE key = ANY($2::text[])) \
                 SELECT (SELECT position FROM head), (SELECT hash FROM head), \
                     (SELECT COALESCE(MAX(idx) + 1, 0) FROM merkle_nodes WHERE level = 0), \
                     versions.ids, versions.versions, keys.names, keys.firsts, keys.lasts \
                 FROM versions, keys",
            )?,
            stream_version: client.prepare(
                "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1",
            )?,
            read_stream: client.prepare(READ_STREAM)?,
            page: client.prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
            ))?,
            range: client.prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE position BETWEEN $1 AND $2 ORDER BY position"
            ))?,
            // A loose index scan: jump from one distinct stream id to the next
            // through the (stream_id, stream_version) index instead of reading
            // every event. With the "C" collation the ids sharing a prefix form
            // one contiguous range starting at the prefix itself.
            stream_ids: client.prepare(
                "WITH RECURSIVE ids(id) AS ( \
                     (SELECT stream_id FROM events WHERE stream_id >= $1::text \
                      ORDER BY stream_id LIMIT 1) \
                   UNION ALL \
                     SELECT (SELECT e.stream_id FROM events e WHERE e.stream_id > ids.id \
                             ORDER BY e.stream_id LIMIT 1) \
                     FROM ids WHERE starts_with(ids.id, $1::text) \
                 ) \
                 SELECT id FROM ids WHERE id IS NOT NULL AND starts_with(id, $1::text) \
                 ORDER BY id",
            )?,
            idempotency_get: client.prepare(
                "SELECT key, first_position, last_position FROM idempotency_keys \
                 WHERE key = ANY($1::text[])",
            )?,
            // Every write, in one round trip (see `write`).
            write: client.prepare(&append_call_sql())?,
            tree_size: client
                .prepare("SELECT COALESCE(MAX(idx) + 1, 0) FROM merkle_nodes WHERE level = 0")?,
            nodes_get: client.prepare(
                "SELECT n.level, n.idx, n.hash FROM merkle_nodes n \
                 JOIN unnest($1::int4[], $2::int8[]) AS k(level, idx) \
                 ON n.level = k.level AND n.idx = k.idx",
            )?,
            nodes_put: client.prepare(
                "INSERT INTO merkle_nodes (level, idx, hash) \
                 SELECT * FROM unnest($1::int4[], $2::int8[], $3::bytea[])",
            )?,
            hashes_after: client.prepare(
                "SELECT position, hash FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            )?,
        })
    }
}

/// A connection with its prepared statements.
struct Conn {
    client: Client,
    statements: Statements,
    /// Statements an [`InlineWriter`] prepared on this connection, by SQL
    /// text (see [`InlineTx::prepare_cached`]); gone with the connection.
    inline_statements: HashMap<String, Statement>,
}

/// An append's open transaction, lent to an [`InlineWriter`] after the
/// events are written and before the commit (see
/// [`InlineWriter::write_postgres`]): what it writes on this connection
/// commits, or not, with the events.
pub struct InlineTx<'a> {
    client: &'a mut Client,
    statements: &'a mut HashMap<String, Statement>,
    url: &'a str,
    schema: &'a str,
}

impl InlineTx<'_> {
    /// The URL the store connected with: a writer checks that it writes
    /// the database it means to.
    pub fn url(&self) -> &str {
        self.url
    }

    /// The schema the ledger's tables are in (the session's `search_path`).
    pub fn schema(&self) -> &str {
        self.schema
    }

    /// The connection, inside the append's transaction. Do not commit or
    /// roll back on it: the store does.
    pub fn client(&mut self) -> &mut Client {
        self.client
    }

    /// `sql` prepared on this connection, once per connection.
    pub fn prepare_cached(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        prepare_cached(self.client, self.statements, sql)
    }
}

/// What an [`InlineWriter`] adds to the one-statement append (see
/// [`InlineWriter::postgres_call`]).
pub enum InlinePlan<'a> {
    /// Call this function in the same statement, after the events.
    Call(InlineCall<'a>),
    /// Nothing to write here: the events go in alone, and the caller
    /// catches up after the commit.
    Skip,
    /// The writer must read before it can write: the store appends in its
    /// locked transaction and calls [`InlineWriter::write_postgres`].
    NeedsReads,
}

/// A call of a function in the ledger's schema that returns a boolean:
/// true when it wrote, false when it wrote nothing (its rows were not for
/// the state it found).
pub struct InlineCall<'a> {
    /// The function's name (an identifier of ours, not input).
    pub function: &'static str,
    /// Its arguments, in order; their types are the function's.
    pub args: Vec<Box<dyn ToSql + Sync + 'a>>,
}

/// What became of an [`InlineCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// It wrote, and committed with the events.
    Written,
    /// It ran and wrote nothing; the events committed.
    Refused,
    /// It did not run, or what it wrote was rolled back (the events may
    /// still commit, or may already have: the caller learns which from the
    /// append's result).
    NotRun,
}

/// An event store in a PostgreSQL database (one ledger per schema).
///
/// One connection, guarded by a mutex: calls from several threads on one
/// `PostgresStore` take turns. Open one store per worker for parallel reads;
/// appends are serialized by the database in any case (see the module docs).
/// A connection found closed is reopened on the next call.
pub struct PostgresStore {
    url: String,
    schema: String,
    lock_key: i32,
    conn: Mutex<Conn>,
    /// The Merkle tree's frontier after this handle's last write.
    frontier: FrontierCache,
    /// What the next append predicts (see [`PostgresStore::append_batch_with`]).
    prediction: Mutex<Prediction>,
    /// Appends that went in with one statement, for tests to tell the two
    /// paths apart.
    one_statement_appends: AtomicU64,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: do not print it.
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect to the database at `url` (e.g. `postgres://user@host:5432/db`)
    /// and use the schema the connection's default `search_path` resolves to
    /// (usually `public`; pinned for the session, including reconnects),
    /// creating or migrating the tables as needed.
    ///
    /// Errors: [`StoreError::Postgres`] when the server cannot be reached,
    /// [`StoreError::SchemaTooNew`] when the database was written by a newer
    /// provledger.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_in_mode(url, None, OpenMode::Create)
    }

    /// Connect to the database at `url` and keep this ledger in `schema`
    /// (created if missing; `search_path` is set to it for the session).
    ///
    /// `schema` must match `[a-z_][a-z0-9_]*`, at most 63 bytes, and must not
    /// start with `pg_`; otherwise [`StoreError::InvalidUrl`].
    pub fn connect_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect_in_mode(url, Some(schema), OpenMode::Create)
    }

    /// Connect to the ledger at `url` in `schema` (or, for `None`, the
    /// schema the connection's `search_path` resolves to) in `mode`.
    ///
    /// [`OpenMode::Create`] creates the schema and tables as needed;
    /// [`OpenMode::ReadWrite`] needs the ledger's tables
    /// ([`StoreError::NoLedger`]) and applies missing migrations;
    /// [`OpenMode::ReadOnly`] checks that the tables exist at this build's
    /// version and creates nothing, so a role with USAGE on the schema and
    /// SELECT on its tables suffices.
    pub fn connect_in_mode(
        url: &str,
        schema: Option<&str>,
        mode: OpenMode,
    ) -> Result<Self, StoreError> {
        if let Some(schema) = schema {
            check_schema_name(url, schema)?;
        }
        let mut client = Client::connect(url, NoTls)?;
        let schema = match schema {
            Some(schema) => {
                if mode == OpenMode::Create {
                    create_schema(&mut client, schema)?;
                }
                schema.to_string()
            }
            None => {
                let current: Option<String> =
                    client.query_one("SELECT current_schema()", &[])?.get(0);
                let Some(current) = current else {
                    return Err(StoreError::InvalidUrl {
                        url: redact(url),
                        reason: "the connection's search_path names no existing schema; \
                                 create one or set search_path for the user"
                            .into(),
                    });
                };
                current
            }
        };
        client.batch_execute(&format!("SET search_path TO {}", quote_ident(&schema)))?;
        // A ledger at this build's version needs no migration, so a role
        // without CREATE on the schema can read and write it.
        let mut needs_migration = mode == OpenMode::Create;
        if mode != OpenMode::Create {
            let found = ledger_version(&mut client, &schema).map_err(|e| match e {
                StoreError::NoLedger { reason, .. } => StoreError::NoLedger {
                    location: format!("{} (schema {schema})", redact(url)),
                    reason,
                },
                other => other,
            })?;
            let supported = latest_version();
            if found > supported {
                return Err(StoreError::SchemaTooNew { found, supported });
            }
            needs_migration = found < supported;
            if mode == OpenMode::ReadOnly && found < supported {
                return Err(StoreError::CannotOpen {
                    location: redact(url),
                    reason: format!(
                        "the ledger's schema is at version {found} and this build needs {supported}; run a write command (e.g. `provledger project`) once with a role that may migrate it"
                    ),
                });
            }
        }
        Self::finish(url, client, &schema, needs_migration, mode)
    }

    /// Migrate (when needed) the schema the session's `search_path` was
    /// just set to and prepare the statements.
    fn finish(
        url: &str,
        mut client: Client,
        schema: &str,
        needs_migration: bool,
        mode: OpenMode,
    ) -> Result<Self, StoreError> {
        if needs_migration {
            migrate(&mut client, schema)?;
        }
        let lock_key = table_lock_key(&mut client, "events")?;
        let statements = Statements::prepare(&mut client)?;
        // A reader writes nothing: a tree that lags is filled by the next writer.
        if mode != OpenMode::ReadOnly {
            ensure_tree(&mut client, &statements, lock_key)?;
        }
        Ok(PostgresStore {
            url: url.to_string(),
            schema: schema.to_string(),
            lock_key,
            conn: Mutex::new(Conn {
                client,
                statements,
                inline_statements: HashMap::new(),
            }),
            frontier: FrontierCache::default(),
            prediction: Mutex::new(Prediction::default()),
            one_statement_appends: AtomicU64::new(0),
        })
    }

    /// Run raw SQL (one or more statements) on this store's connection and
    /// return the number of rows the statements affected.
    ///
    /// A test and operations hook, not for application code: the conformance
    /// suite uses it to tamper with rows and to check that the database
    /// refuses UPDATE and DELETE. It bypasses every invariant of the store.
    #[cfg(feature = "testing")]
    pub fn execute_raw_sql_for_tests(&self, sql: &str) -> Result<u64, StoreError> {
        use postgres::SimpleQueryMessage;
        let mut conn = self.conn()?;
        let messages = conn.client.simple_query(sql)?;
        Ok(messages
            .iter()
            .map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => *n,
                _ => 0,
            })
            .sum())
    }

    /// How many of this handle's appends went in with one statement
    /// (the others took the locked path).
    #[cfg(feature = "testing")]
    pub fn one_statement_appends_for_tests(&self) -> u64 {
        self.one_statement_appends.load(Ordering::Relaxed)
    }

    fn prediction(&self) -> MutexGuard<'_, Prediction> {
        self.prediction
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, reopened if the server closed it.
    fn conn(&self) -> Result<MutexGuard<'_, Conn>, StoreError> {
        // A panic while the lock was held dropped (and so rolled back) any
        // open transaction; the connection itself is still usable.
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.client.is_closed() {
            let mut client = Client::connect(&self.url, NoTls)?;
            client.batch_execute(&format!("SET search_path TO {}", quote_ident(&self.schema)))?;
            let statements = Statements::prepare(&mut client)?;
            *guard = Conn {
                client,
                statements,
                inline_statements: HashMap::new(),
            };
        }
        Ok(guard)
    }

    /// The rows of up to [`PAGE_SIZE`] events after `after`, in position order.
    fn page(&self, after: Position) -> Result<Vec<Row>, StoreError> {
        let mut conn = self.conn()?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        // No stored position exceeds i64::MAX: a larger `after` reads nothing.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        Ok(client.query(&statements.page, &[&after, &PAGE_SIZE])?)
    }

    /// The one append path. The requests are numbered and hashed in this
    /// process; then, when this handle wrote the ledger's last event and
    /// every request says which version its streams are at, they go to the
    /// database with one statement ([`PostgresStore::append_in_one_statement`]),
    /// which writes them only if the ledger is still as this handle left it.
    /// Otherwise, or if it was not, they are planned again in a transaction
    /// that holds the append lock and reads the state first
    /// ([`PostgresStore::append_locked`]).
    fn append_batch_with(
        &self,
        requests: Vec<AppendRequest>,
        mut inline: Option<&mut dyn InlineWriter>,
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let last_head = self.prediction().next_head();
        if let (Some(head), Some(streams)) = (last_head, predicted_versions(&requests)) {
            match self.append_in_one_statement(
                &mut conn,
                &requests,
                head,
                streams,
                inline.as_deref_mut(),
            )? {
                OneStatement::Committed(results) => return Ok(results),
                OneStatement::Missed => self.prediction().missed(),
                OneStatement::Declined => {}
                OneStatement::InlineFailed => inline = None,
            }
        }
        loop {
            // The second turn, after the writer's statement failed, runs
            // without it: the events still commit, once.
            if let Some(results) = self.append_locked(&mut conn, &requests, inline.take())? {
                return Ok(results);
            }
        }
    }

    /// The one-round-trip append: number and hash `requests` against
    /// `head` (this handle's last write) and the stream versions they
    /// expect, then send the rows, and the inline writer's rows if it can
    /// compute them without reading, as one statement in its own implicit
    /// transaction. `provledger_append` takes the append lock if it is
    /// free and writes only if the head, the tree, the streams and the
    /// idempotency keys are as predicted; a miss (or a busy lock) writes
    /// nothing and costs one round trip.
    fn append_in_one_statement<'w>(
        &self,
        conn: &mut Conn,
        requests: &[AppendRequest],
        head: Head,
        streams: Vec<(String, StreamVersion)>,
        inline: Option<&mut (dyn InlineWriter + 'w)>,
    ) -> Result<OneStatement, StoreError> {
        let Some(frontier) = self.frontier.take(head.position) else {
            return Ok(OneStatement::Missed);
        };
        let Conn {
            client,
            statements,
            inline_statements,
        } = conn;
        let mut batch = Batch {
            head: Some(head.clone()),
            versions: streams.iter().cloned().collect(),
            known_keys: HashMap::new(),
            recorded_at: to_stored_precision(Utc::now()),
            new_events: Vec::new(),
            new_texts: Vec::new(),
            new_keys: Vec::new(),
        };
        // No key is known, so planning reads nothing: a request whose key
        // is recorded makes the statement miss, and the locked path
        // replays it.
        let results: Vec<_> = requests
            .iter()
            .map(|request| batch.plan(client, statements, request))
            .collect();
        let mut tree = TreeWriter::resume(frontier.clone());
        let texts = std::mem::take(&mut batch.new_texts);
        let (rows, keys) = batch.encode(texts, &mut tree)?;
        let nodes = tree.take();
        let expected = Expected {
            under_lock: false,
            head: Some(&head),
            streams: streams.iter().map(|(id, v)| (id.as_str(), *v)).collect(),
            absent_keys: distinct(requests.iter().filter_map(|r| r.idempotency_key.as_deref())),
        };
        let args = append_args(self.lock_key, &expected, &rows, &keys, &nodes)?;

        let appended = crate::core::newly_appended(&results);
        let mut writer = inline.filter(|_| !appended.is_empty());
        // The writer's call is a temporary of this statement: it borrows
        // the writer until the statement ends.
        let (with_inline, answer) = match match writer.as_deref_mut() {
            Some(w) => w.postgres_call(&self.url, &self.schema, &appended),
            None => InlinePlan::Skip,
        } {
            InlinePlan::NeedsReads => {
                self.frontier.keep(&TreeWriter::resume(frontier));
                return Ok(OneStatement::Declined);
            }
            InlinePlan::Skip => (
                false,
                client
                    .query_one(&statements.write, &arg_refs(&args))
                    .and_then(|row| row.try_get::<_, bool>(0))
                    .map(|written| if written { 1 } else { 0 }),
            ),
            InlinePlan::Call(call) => {
                let sql = format!(
                    "SELECT CASE WHEN {} THEN CASE WHEN {}({}) THEN 2 ELSE 1 END ELSE 0 END",
                    append_call(),
                    call.function,
                    placeholders(APPEND_ARGS + 1, call.args.len())
                );
                let mut params = arg_refs(&args);
                params.extend(arg_refs(&call.args));
                let answer = prepare_cached(client, inline_statements, &sql)
                    .and_then(|statement| client.query_one(&statement, &params))
                    .and_then(|row| row.try_get::<_, i32>(0));
                (true, answer)
            }
        };
        let (call_outcome, outcome) = match answer {
            Ok(0) => (CallOutcome::NotRun, OneStatement::Missed),
            Ok(written) => {
                self.one_statement_appends.fetch_add(1, Ordering::Relaxed);
                self.frontier.keep(&tree);
                self.prediction().hit(batch.head.clone());
                let call = if written == 2 {
                    CallOutcome::Written
                } else {
                    CallOutcome::Refused
                };
                (call, OneStatement::Committed(results))
            }
            // The server refused the statement and rolled it back: nothing
            // was written. A failing writer is left out of the retry.
            Err(e) if e.as_db_error().is_some() => (
                CallOutcome::NotRun,
                if with_inline {
                    OneStatement::InlineFailed
                } else {
                    OneStatement::Missed
                },
            ),
            // The connection failed: whether it committed is unknown, as
            // when a COMMIT's answer is lost.
            Err(e) => {
                if let (true, Some(w)) = (with_inline, writer) {
                    w.postgres_call_done(CallOutcome::NotRun);
                }
                return Err(e.into());
            }
        };
        if let (true, Some(w)) = (with_inline, writer) {
            w.postgres_call_done(call_outcome);
        }
        if matches!(outcome, OneStatement::Missed | OneStatement::InlineFailed) {
            self.frontier.keep(&TreeWriter::resume(frontier));
        }
        Ok(outcome)
    }

    /// The locked append: begin a transaction, take the append lock, read
    /// the head, the tree's size, the streams' versions and the keys, plan
    /// every request on them and write. `inline` (if any) runs in the
    /// transaction after the events and the tree nodes are written, before
    /// the commit. `None`: one of its statements failed (which aborts the
    /// transaction), nothing was written, and the caller appends again
    /// without it.
    fn append_locked<'w>(
        &self,
        conn: &mut Conn,
        requests: &[AppendRequest],
        inline: Option<&mut (dyn InlineWriter + 'w)>,
    ) -> Result<Option<Vec<Result<AppendOutcome, StoreError>>>, StoreError> {
        let Conn {
            client,
            statements,
            inline_statements,
        } = conn;
        let mut tx = WriteTx::begin(client, self.lock_key)?;
        let streams = distinct(
            requests
                .iter()
                .flat_map(|r| r.appends.iter().map(|a| a.stream_id.as_str())),
        );
        let keys = distinct(requests.iter().filter_map(|r| r.idempotency_key.as_deref()));
        let state = read_state(tx.client(), statements, &streams, &keys)?;
        let old_head = state.head.clone();
        let batch_head = state.head.as_ref().map_or(0, |h| h.position);
        let mut batch = Batch {
            head: state.head,
            versions: state.versions,
            known_keys: state.keys,
            recorded_at: to_stored_precision(Utc::now()),
            new_events: Vec::new(),
            new_texts: Vec::new(),
            new_keys: Vec::new(),
        };
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            results.push(batch.plan(tx.client(), statements, request));
        }
        // Before any row goes in, so that a lagging tree catches up to the
        // old head only.
        let mut tree = open_tree(
            tx.client(),
            statements,
            batch_head,
            state.tree_size,
            &self.frontier,
        )?;
        // Every request was checked before anything was written, so a
        // conflicting request leaves nothing to undo: the rows of all the
        // others, their keys and the tree's new nodes go in with one
        // statement.
        if !batch.new_events.is_empty() {
            let texts = std::mem::take(&mut batch.new_texts);
            let (rows, keys) = batch.encode(texts, &mut tree)?;
            write(
                tx.client(),
                statements,
                self.lock_key,
                &Expected::head(old_head.as_ref()),
                &rows,
                &keys,
                &tree.take(),
            )?;
        }
        if let Some(inline) = inline {
            let appended = crate::core::newly_appended(&results);
            if !appended.is_empty() {
                let mut inline_tx = InlineTx {
                    client: tx.client(),
                    statements: inline_statements,
                    url: &self.url,
                    schema: &self.schema,
                };
                if inline.write_postgres(&mut inline_tx, &appended).is_err() {
                    // The transaction is aborted: nothing of it commits.
                    return Ok(None);
                }
            }
        }
        tx.commit()?;
        self.frontier.keep(&tree);
        self.prediction().head = batch.head;
        Ok(Some(results))
    }
}

/// How [`PostgresStore::append_in_one_statement`] ended.
enum OneStatement {
    /// Written and committed (or, for a batch of refused requests only,
    /// checked): these are the results.
    Committed(Vec<Result<AppendOutcome, StoreError>>),
    /// Nothing was written: the ledger was not as predicted.
    Missed,
    /// Nothing was sent: the inline writer must read first.
    Declined,
    /// Nothing was written: the statement failed with the inline writer's
    /// call in it.
    InlineFailed,
}

/// What a handle predicts for its next append's one statement.
#[derive(Debug, Default)]
struct Prediction {
    /// The ledger's head after this handle's last write.
    head: Option<Head>,
    /// Predictions that missed in a row (at most [`MAX_BACKOFF`]).
    misses: u32,
    /// Appends left that take the locked path without predicting.
    skip: u32,
}

/// After the n-th miss in a row, the next 2ⁿ − 1 appends (at most 63) take
/// the locked path without trying: processes that take turns on one ledger
/// then rarely pay for a prediction that misses (one round trip and a turn
/// at the lock).
const MAX_BACKOFF: u32 = 6;

impl Prediction {
    /// The head to predict the next append on, if it should try; taken,
    /// not read, so that a write that fails leaves no head behind and the
    /// next one reads the state under the lock.
    fn next_head(&mut self) -> Option<Head> {
        let head = self.head.take();
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        head
    }

    fn missed(&mut self) {
        self.misses = (self.misses + 1).min(MAX_BACKOFF);
        self.skip = (1 << self.misses) - 1;
    }

    fn hit(&mut self, head: Option<Head>) {
        self.head = head;
        self.misses = 0;
    }
}

/// The version each stream of `requests` is at if they were decided on the
/// ledger as it stands: what the first request naming it expects. `None`
/// when one of them takes any version (it cannot be predicted).
fn predicted_versions(requests: &[AppendRequest]) -> Option<Vec<(String, StreamVersion)>> {
    let mut streams: Vec<(String, StreamVersion)> = Vec::new();
    for append in requests.iter().flat_map(|r| &r.appends) {
        let version = match append.expected {
            ExpectedVersion::Exact(version) => version,
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Any => return None,
        };
        if !streams.iter().any(|(id, _)| *id == append.stream_id) {
            streams.push((append.stream_id.clone(), version));
        }
    }
    Some(streams)
}

/// `sql` prepared on `client`, once per connection (kept in `cache`).
fn prepare_cached(
    client: &mut Client,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(statement) = cache.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    cache.insert(sql.to_string(), statement.clone());
    Ok(statement)
}

impl EventStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
        let mut conn = self.conn()?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        current_version(client, statements, stream_id)
    }

    fn read_stream(
        &self,
        stream_id: &str,
        after_version: StreamVersion,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut conn = self.conn()?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let after = i64::try_from(after_version).unwrap_or(i64::MAX);
        let rows = client.query(&statements.read_stream, &[&stream_id, &after, &i64::MAX])?;
        rows.iter().map(decode_event).collect()
    }

    fn read_all(&self, after: Position) -> Result<EventIter<'_>, StoreError> {
        Ok(Box::new(Pages::<serde_json::Value>::start(self, after)?))
    }

    fn read_all_json(&self, after: Position) -> Result<JsonEventIter<'_>, StoreError> {
        Ok(Box::new(Pages::<String>::start(self, after)?))
    }

    fn stream_ids(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let rows = client.query(&statements.stream_ids, &[&prefix])?;
        rows.iter()
            .map(|row| row.try_get::<_, String>(0).map_err(StoreError::from))
            .collect()
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        let mut conn = self.conn()?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        read_head(client, statements)
    }

    fn find_idempotent(&self, key: &str) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let mut conn = self.conn()?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let Some(row) = client.query_opt(&statements.idempotency_get, &[&[key].as_slice()])? else {
            return Ok(None);
        };
        let (first, last): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
        let rows = client.query(&statements.range, &[&first, &last])?;
        rows.iter()
            .map(decode_event)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn merkle_nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        let mut conn = self.conn()?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        read_nodes(client, statements, ids)
    }

    fn import_batch(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let mut tx = WriteTx::begin(client, self.lock_key)?;
        let streams = distinct(events.iter().map(|e| e.stream_id.as_str()));
        let state = read_state(tx.client(), statements, &streams, &[])?;
        let head_position = state.head.as_ref().map_or(0, |h| h.position);
        let mut tree = open_tree(
            tx.client(),
            statements,
            head_position,
            state.tree_size,
            &self.frontier,
        )?;
        let plan = plan_import(events, state.head.as_ref(), |stream| {
            Ok(state.versions.get(stream).copied().unwrap_or(0))
        })?;
        self.prediction().head = None;
        let chunks: Vec<&[EncodedEvent<'_>]> = plan.rows.chunks(IMPORT_CHUNK).collect();
        let mut chunk_head = state.head.clone();
        for (i, chunk) in chunks.iter().enumerate() {
            for row in *chunk {
                tree.push(row.event.position, &row.event.hash)?;
            }
            // The idempotency keys, rebuilt from the events' metadata so that
            // a retried request is still recognised after a migration, go
            // in with the last rows.
            let keys = if i + 1 == chunks.len() {
                &plan.keys[..]
            } else {
                &[]
            };
            write(
                tx.client(),
                statements,
                self.lock_key,
                &Expected::head(chunk_head.as_ref()),
                chunk,
                keys,
                &tree.take(),
            )?;
            chunk_head = chunk.last().map(|row| Head {
                position: row.event.position,
                hash: row.event.hash.clone(),
            });
        }
        tx.commit()?;
        self.frontier.keep(&tree);
        self.prediction().head = chunk_head;
        Ok(())
    }
}

/// The streaming iterator behind [`EventStore::read_all`].
/// It ends after the first error.
struct Pages<'a, P> {
    store: &'a PostgresStore,
    after: Position,
    buffer: VecDeque<Result<RecordedEvent<P>, StoreError>>,
    done: bool,
}

impl<'a, P: StoredPayload> Pages<'a, P> {
    /// The events after `after`, with the first page fetched now so that a
    /// dead connection fails here rather than on the first item.
    fn start(store: &'a PostgresStore, after: Position) -> Result<Self, StoreError> {
        let mut pages = Pages {
            store,
            after,
            buffer: VecDeque::new(),
            done: false,
        };
        let rows = store.page(after)?;
        pages.fill(rows);
        Ok(pages)
    }

    /// Decode a page into the buffer, up to and including the first bad row.
    fn fill(&mut self, rows: Vec<Row>) {
        self.done = (rows.len() as i64) < PAGE_SIZE;
        for row in &rows {
            let event = decode_row(row);
            match &event {
                Ok(e) => self.after = e.position,
                Err(_) => self.done = true,
            }
            let failed = event.is_err();
            self.buffer.push_back(event);
            if failed {
                break;
            }
        }
    }
}

impl<P: StoredPayload> Iterator for Pages<'_, P> {
    type Item = Result<RecordedEvent<P>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            match self.store.page(self.after) {
                Ok(rows) => self.fill(rows),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.buffer.pop_front()
    }
}

/// The state of one `append_batch` transaction.
struct Batch {
    /// The head including the events planned so far.
    head: Option<Head>,
    /// Current versions of the streams the batch names (planned events included).
    versions: HashMap<String, StreamVersion>,
    /// Idempotency keys already used: stored ones as position ranges, keys of
    /// this batch with their events.
    known_keys: HashMap<String, KnownKey>,
    recorded_at: DateTime<Utc>,
    /// Events to insert, in position order.
    new_events: Vec<RecordedEvent>,
    /// The text columns of `new_events`' rows, encoded once when their
    /// hashes were computed.
    new_texts: Vec<RowText>,
    /// Keys to record: key, first and last position.
    new_keys: Vec<(String, Position, Position)>,
}

/// An idempotency key seen before.
enum KnownKey {
    /// Committed earlier: its events are `first..=last`.
    Stored(i64, i64),
    /// Used by an earlier request of this batch.
    InBatch(Vec<RecordedEvent>),
}

impl Batch {
    /// The rows of the planned events (whose text columns `texts` are, as
    /// taken from `new_texts`) and the keys to record, as [`append_args`]
    /// takes them; `tree` grows by the events' leaves.
    fn encode(
        &self,
        texts: Vec<RowText>,
        tree: &mut TreeWriter,
    ) -> Result<(Vec<EncodedEvent<'_>>, Vec<KeyRange<'_>>), StoreError> {
        for event in &self.new_events {
            tree.push(event.position, &event.hash)?;
        }
        let rows = self
            .new_events
            .iter()
            .zip(texts)
            .map(|(event, text)| EncodedEvent::with_text(event, text))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = self
            .new_keys
            .iter()
            .map(|(key, first, last)| KeyRange {
                key,
                first: *first,
                last: *last,
            })
            .collect();
        Ok((rows, keys))
    }

    /// Check one request and, if it succeeds, number and hash its events.
    /// A failing request changes nothing.
    fn plan(
        &mut self,
        client: &mut impl GenericClient,
        statements: &Statements,
        request: &AppendRequest,
    ) -> Result<AppendOutcome, StoreError> {
        if request.appends.is_empty() || request.appends.iter().any(|a| a.events.is_empty()) {
            return Err(StoreError::EmptyAppend);
        }
        if let Some(key) = &request.idempotency_key {
            match self.known_keys.get(key) {
                Some(KnownKey::Stored(first, last)) => {
                    let rows = client.query(&statements.range, &[first, last])?;
                    let events = rows
                        .iter()
                        .map(decode_event)
                        .collect::<Result<Vec<_>, _>>()?;
                    return Ok(AppendOutcome {
                        events,
                        replayed: true,
                    });
                }
                Some(KnownKey::InBatch(events)) => {
                    return Ok(AppendOutcome {
                        events: events.clone(),
                        replayed: true,
                    });
                }
                None => {}
            }
        }
        let (mut position, mut prev_hash) = match &self.head {
            Some(h) => (h.position, h.hash.clone()),
            None => (0, hash::GENESIS_HASH.to_string()),
        };
        // Versions this request moves, applied to `self` only on success.
        let mut moved: HashMap<&str, StreamVersion> = HashMap::new();
        let mut events = Vec::new();
        let mut texts = Vec::new();
        for append in &request.appends {
            let actual = moved
                .get(append.stream_id.as_str())
                .or_else(|| self.versions.get(&append.stream_id))
                .copied()
                .unwrap_or(0);
            if !append.expected.matches(actual) {
                return Err(StoreError::Conflict {
                    stream_id: append.stream_id.clone(),
                    expected: append.expected,
                    actual,
                });
            }
            let mut version = actual;
            for new in &append.events {
                position += 1;
                version += 1;
                let (event, text) = crate::core::record(
                    position,
                    prev_hash,
                    &append.stream_id,
                    version,
                    new.clone(),
                    request.idempotency_key.as_deref(),
                    self.recorded_at,
                )?;
                prev_hash = event.hash.clone();
                events.push(event);
                texts.push(text);
            }
            moved.insert(&append.stream_id, version);
        }
        for (stream_id, version) in moved {
            self.versions.insert(stream_id.to_string(), version);
        }
        self.head = Some(Head {
            position,
            hash: prev_hash,
        });
        if let (Some(key), Some(first), Some(last)) =
            (&request.idempotency_key, events.first(), events.last())
        {
            self.new_keys
                .push((key.clone(), first.position, last.position));
            self.known_keys
                .insert(key.clone(), KnownKey::InBatch(events.clone()));
        }
        self.new_events.extend(events.iter().cloned());
        self.new_texts.extend(texts);
        Ok(AppendOutcome {
            events,
            replayed: false,
        })
    }
}

/// `items` sorted, without repetitions.
fn distinct<'r>(items: impl Iterator<Item = &'r str>) -> Vec<&'r str> {
    let mut items: Vec<&str> = items.collect();
    items.sort_unstable();
    items.dedup();
    items
}

/// A write transaction holding the ledger's append lock; rolled back when
/// dropped before [`WriteTx::commit`].
struct WriteTx<'a> {
    client: &'a mut Client,
    open: bool,
}

impl<'a> WriteTx<'a> {
    /// Begin a READ COMMITTED transaction and take the append lock of the
    /// ledger whose lock key is `lock_key`, with one round trip. Writers
    /// are serialized first; only then is anything read (READ COMMITTED
    /// takes a fresh snapshot per statement, so it sees the last commit).
    fn begin(client: &'a mut Client, lock_key: i32) -> Result<Self, StoreError> {
        let tx = WriteTx { client, open: true };
        // Both keys are integers of ours, not input: nothing to escape.
        tx.client.batch_execute(&format!(
            "START TRANSACTION ISOLATION LEVEL READ COMMITTED; \
             SELECT pg_advisory_xact_lock({APPEND_LOCK_CLASS}, {lock_key})"
        ))?;
        Ok(tx)
    }

    fn client(&mut self) -> &mut Client {
        self.client
    }

    fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.client.batch_execute("COMMIT")?;
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // As `postgres::Transaction` does: an error here means the
            // connection is gone, and the server rolls back on its own.
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// What a write transaction reads first, with one query: the head, the
/// tree's size, the stored versions of the streams it names and the stored
/// idempotency keys among those it carries.
struct WriteState {
    head: Option<Head>,
    tree_size: u64,
    /// Current versions of the named streams (absent streams are left out).
    versions: HashMap<String, StreamVersion>,
    keys: HashMap<String, KnownKey>,
}

fn read_state(
    client: &mut impl GenericClient,
    statements: &Statements,
    streams: &[&str],
    keys: &[&str],
) -> Result<WriteState, StoreError> {
    let row = client.query_one(&statements.state, &[&streams, &keys])?;
    let position: Option<i64> = row.try_get(0)?;
    let hash: Option<String> = row.try_get(1)?;
    let head = match (position, hash) {
        (Some(position), Some(hash)) => Some(Head {
            position: from_sql_int(position, position, "position")?,
            hash,
        }),
        _ => None,
    };
    let tree_size: i64 = row.try_get(2)?;
    let ids: Option<Vec<String>> = row.try_get(3)?;
    let versions: Option<Vec<i64>> = row.try_get(4)?;
    let key_names: Option<Vec<String>> = row.try_get(5)?;
    let firsts: Option<Vec<i64>> = row.try_get(6)?;
    let lasts: Option<Vec<i64>> = row.try_get(7)?;
    Ok(WriteState {
        head,
        tree_size: u64::try_from(tree_size).unwrap_or(0),
        versions: ids
            .unwrap_or_default()
            .into_iter()
            .zip(versions.unwrap_or_default())
            .map(|(id, version)| (id, u64::try_from(version).unwrap_or(0)))
            .collect(),
        keys: key_names
            .unwrap_or_default()
            .into_iter()
            .zip(
                firsts
                    .unwrap_or_default()
                    .into_iter()
                    .zip(lasts.unwrap_or_default()),
            )
            .map(|(key, (first, last))| (key, KnownKey::Stored(first, last)))
            .collect(),
    })
}

/// What the ledger must look like for a write's rows to go in: the rows
/// were numbered and hashed against it.
struct Expected<'a> {
    /// Whether the writing transaction holds the append lock and read the
    /// state the rows were planned on: then only the head is checked again.
    under_lock: bool,
    /// The head the first row follows (`None`: the ledger is empty).
    head: Option<&'a Head>,
    /// Streams the rows' requests named, each with the version it must be at.
    streams: Vec<(&'a str, StreamVersion)>,
    /// Idempotency keys that must not be recorded yet.
    absent_keys: Vec<&'a str>,
}

impl Expected<'_> {
    /// Under the append lock, with the state read in the same transaction:
    /// only the head is checked again.
    fn head(head: Option<&Head>) -> Expected<'_> {
        Expected {
            under_lock: true,
            head,
            streams: Vec::new(),
            absent_keys: Vec::new(),
        }
    }
}

/// A statement argument that owns or borrows its value.
type Arg<'a> = Box<dyn ToSql + Sync + 'a>;

/// Arguments `provledger_append` takes (store migration 3).
const APPEND_ARGS: usize = 25;

/// `$first, $first+1, …`: `count` placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The call of `provledger_append` with its arguments as `$1`–`$25`.
fn append_call() -> String {
    format!("provledger_append({})", placeholders(1, APPEND_ARGS))
}

fn append_call_sql() -> String {
    format!("SELECT {}", append_call())
}

/// The arguments of `provledger_append` for encoded events (already
/// numbered, hashed and checked against `expected`), the idempotency keys
/// of their requests (keys already recorded are left as they are) and the
/// Merkle nodes they complete.
fn append_args<'a>(
    lock_key: i32,
    expected: &Expected<'a>,
    rows: &'a [EncodedEvent<'a>],
    keys: &[KeyRange<'a>],
    nodes: &'a [(NodeId, Hash)],
) -> Result<Vec<Arg<'a>>, StoreError> {
    let n = rows.len();
    let mut position = Vec::with_capacity(n);
    let mut stream_id = Vec::with_capacity(n);
    let mut stream_version = Vec::with_capacity(n);
    let mut event_type = Vec::with_capacity(n);
    let mut schema_version = Vec::with_capacity(n);
    let mut payload = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut occurred_at = Vec::with_capacity(n);
    let mut recorded_at = Vec::with_capacity(n);
    let mut prev_hash = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    for row in rows {
        position.push(row.position);
        stream_id.push(row.event.stream_id.as_str());
        stream_version.push(row.stream_version);
        event_type.push(row.event.event_type.as_str());
        schema_version.push(row.schema_version);
        payload.push(row.text.payload.as_str());
        metadata.push(row.text.metadata.as_str());
        occurred_at.push(row.text.occurred_at.as_str());
        recorded_at.push(row.text.recorded_at.as_str());
        prev_hash.push(row.event.prev_hash.as_str());
        hash.push(row.event.hash.as_str());
    }
    let key: Vec<&'a str> = keys.iter().map(|k| k.key).collect();
    let first = keys
        .iter()
        .map(|k| to_sql_int(k.first))
        .collect::<Result<Vec<_>, _>>()?;
    let last = keys
        .iter()
        .map(|k| to_sql_int(k.last))
        .collect::<Result<Vec<_>, _>>()?;
    let (levels, indexes, hashes) = node_columns(nodes)?;
    let head = expected.head.map_or(Ok(0), |h| to_sql_int(h.position))?;
    let head_hash: Option<&'a str> = expected.head.map(|h| h.hash.as_str());
    let streams: Vec<&'a str> = expected.streams.iter().map(|(id, _)| *id).collect();
    let versions = expected
        .streams
        .iter()
        .map(|(_, v)| to_sql_int(*v))
        .collect::<Result<Vec<_>, _>>()?;
    let absent: Vec<&'a str> = expected.absent_keys.clone();
    let args: Vec<Arg<'a>> = vec![
        Box::new(expected.under_lock),
        Box::new(APPEND_LOCK_CLASS),
        Box::new(lock_key),
        Box::new(head),
        Box::new(head_hash),
        Box::new(streams),
        Box::new(versions),
        Box::new(absent),
        Box::new(position),
        Box::new(stream_id),
        Box::new(stream_version),
        Box::new(event_type),
        Box::new(schema_version),
        Box::new(payload),
        Box::new(metadata),
        Box::new(occurred_at),
        Box::new(recorded_at),
        Box::new(prev_hash),
        Box::new(hash),
        Box::new(key),
        Box::new(first),
        Box::new(last),
        Box::new(levels),
        Box::new(indexes),
        Box::new(hashes),
    ];
    debug_assert_eq!(args.len(), APPEND_ARGS);
    Ok(args)
}

/// `args` as the parameter list a statement takes.
fn arg_refs<'p>(args: &'p [Arg<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Write events, keys and nodes ([`append_args`]) inside a transaction
/// that holds the append lock and read the state they were planned on.
/// The function finding another head there means that something other
/// than provledger wrote the tables: nothing is written.
fn write(
    client: &mut impl GenericClient,
    statements: &Statements,
    lock_key: i32,
    expected: &Expected<'_>,
    rows: &[EncodedEvent<'_>],
    keys: &[KeyRange<'_>],
    nodes: &[(NodeId, Hash)],
) -> Result<(), StoreError> {
    let args = append_args(lock_key, expected, rows, keys, nodes)?;
    let written: bool = client
        .query_one(&statements.write, &arg_refs(&args))?
        .try_get(0)?;
    if !written {
        let head = expected.head.map_or(0, |h| h.position);
        return Err(StoreError::ChainBroken {
            position: head + 1,
            reason: format!(
                "the ledger no longer ends at position {head} although the append lock is held: \
                 its tables were changed by something other than provledger; nothing was written, \
                 run `provledger verify`"
            ),
        });
    }
    Ok(())
}

/// Merkle nodes as the columns of an `unnest`.
type NodeColumns<'n> = (Vec<i32>, Vec<i64>, Vec<&'n [u8]>);

fn node_columns(nodes: &[(NodeId, Hash)]) -> Result<NodeColumns<'_>, StoreError> {
    let levels: Vec<i32> = nodes.iter().map(|(id, _)| id.level as i32).collect();
    let indexes: Vec<i64> = nodes
        .iter()
        .map(|(id, _)| to_sql_int(id.index))
        .collect::<Result<_, _>>()?;
    let hashes: Vec<&[u8]> = nodes.iter().map(|(_, h)| &h[..]).collect();
    Ok((levels, indexes, hashes))
}

/// The stored hashes of `ids`, `None` where absent, with one query.
fn read_nodes(
    client: &mut impl GenericClient,
    statements: &Statements,
    ids: &[NodeId],
) -> Result<Vec<Option<Hash>>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let levels: Vec<i32> = ids.iter().map(|id| id.level as i32).collect();
    let indexes: Vec<i64> = ids
        .iter()
        .map(|id| i64::try_from(id.index).unwrap_or(i64::MAX))
        .collect();
    let mut found: HashMap<NodeId, Hash> = HashMap::new();
    for row in client.query(&statements.nodes_get, &[&levels, &indexes])? {
        let level: i32 = row.try_get(0)?;
        let index: i64 = row.try_get(1)?;
        let bytes: Vec<u8> = row.try_get(2)?;
        let id = NodeId::new(
            u32::try_from(level).unwrap_or(0),
            u64::try_from(index).unwrap_or(0),
        );
        let hash = Hash::try_from(bytes.as_slice()).map_err(|_| StoreError::TreeMismatch {
            position: id.index << id.level,
            reason: format!(
                "stored node (level {}, index {}) is not 32 bytes",
                id.level, id.index
            ),
        })?;
        found.insert(id, hash);
    }
    Ok(ids.iter().map(|id| found.get(id).copied()).collect())
}

/// Insert completed Merkle nodes with one statement.
fn insert_nodes(
    client: &mut impl GenericClient,
    statements: &Statements,
    nodes: &[(NodeId, Hash)],
) -> Result<(), StoreError> {
    if nodes.is_empty() {
        return Ok(());
    }
    let (levels, indexes, hashes) = node_columns(nodes)?;
    client.execute(&statements.nodes_put, &[&levels, &indexes, &hashes])?;
    Ok(())
}

/// Leaves the stored Merkle tree covers (one more than the last leaf's index).
fn tree_size(client: &mut impl GenericClient, statements: &Statements) -> Result<u64, StoreError> {
    let size: i64 = client.query_one(&statements.tree_size, &[])?.try_get(0)?;
    Ok(u64::try_from(size).unwrap_or(0))
}

/// Events whose leaves are computed per step when the tree catches up.
const TREE_CATCH_UP_PAGE: i64 = 10_000;

/// The tree's writer for a log whose head is at `head`, inside the caller's
/// transaction (which holds the append lock): a lagging tree is first
/// brought up to the head; a tree ahead of the log means events were
/// removed ([`StoreError::TreeMismatch`]).
///
/// `size` is the stored tree's size, read in the transaction; the frontier
/// comes from `cache` when it is of that size, else from the stored nodes.
fn open_tree(
    client: &mut impl GenericClient,
    statements: &Statements,
    head: Position,
    size: u64,
    cache: &FrontierCache,
) -> Result<TreeWriter, StoreError> {
    if size > head {
        return Err(merkle::tree_ahead(size, head));
    }
    let mut tree = match cache.take(size) {
        Some(frontier) => TreeWriter::resume(frontier),
        None => {
            let ids = TreeWriter::ids_to_load(size);
            TreeWriter::load(size, read_nodes(client, statements, &ids)?)?
        }
    };
    while tree.size() < head {
        let after = to_sql_int(tree.size())?;
        let rows = client.query(&statements.hashes_after, &[&after, &TREE_CATCH_UP_PAGE])?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let position: i64 = row.try_get(0)?;
            let hash: String = row.try_get(1)?;
            tree.push(u64::try_from(position).unwrap_or(0), &hash)?;
        }
        insert_nodes(client, statements, &tree.take())?;
    }
    Ok(tree)
}

/// Bring the Merkle tree up to the log's head if it lags (a database
/// written before the tree existed), under the append lock. Nothing is
/// written when the tree is current.
fn ensure_tree(
    client: &mut Client,
    statements: &Statements,
    lock_key: i32,
) -> Result<(), StoreError> {
    let head = read_head(client, statements)?.map_or(0, |h| h.position);
    if tree_size(client, statements)? >= head {
        return Ok(());
    }
    let mut tx = WriteTx::begin(client, lock_key)?;
    let state = read_state(tx.client(), statements, &[], &[])?;
    let head = state.head.map_or(0, |h| h.position);
    open_tree(
        tx.client(),
        statements,
        head,
        state.tree_size,
        &FrontierCache::default(),
    )?;
    tx.commit()?;
    Ok(())
}

fn read_head(
    client: &mut impl GenericClient,
    statements: &Statements,
) -> Result<Option<Head>, StoreError> {
    let Some(row) = client.query_opt(&statements.head, &[])? else {
        return Ok(None);
    };
    let position: i64 = row.try_get(0)?;
    Ok(Some(Head {
        position: from_sql_int(position, position, "position")?,
        hash: row.try_get(1)?,
    }))
}

fn current_version(
    client: &mut impl GenericClient,
    statements: &Statements,
    stream_id: &str,
) -> Result<StreamVersion, StoreError> {
    let version: i64 = client
        .query_one(&statements.stream_version, &[&stream_id])?
        .try_get(0)?;
    Ok(u64::try_from(version).unwrap_or(0))
}

/// The store schema version of the ledger in `schema`, read without
/// creating or locking anything; [`StoreError::NoLedger`] when the schema or
/// its tables do not exist.
fn ledger_version(client: &mut Client, schema: &str) -> Result<i64, StoreError> {
    let table: Option<String> = client
        .query_one(
            "SELECT to_regclass(format('%I.store_schema_migrations', $1::text))::text",
            &[&schema],
        )?
        .get(0);
    if table.is_none() {
        return Err(StoreError::NoLedger {
            location: schema.to_string(),
            reason: format!("schema {schema} holds no ledger tables"),
        });
    }
    let found: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::int8 FROM store_schema_migrations",
            &[],
        )?
        .try_get(0)?;
    Ok(found)
}

/// Apply the migrations this database lacks, under a lock so that processes
/// starting at once do not race.
fn migrate(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    migrations::run(
        &mut PostgresMigrator::new(client, schema, "store_schema_migrations"),
        MIGRATIONS,
    )
}

/// A [`MigrationTarget`] on a PostgreSQL connection whose `search_path` is
/// `schema`: the migrations recorded in `table`, each applied in a
/// transaction holding the schema's migration lock (an advisory lock keyed
/// by the schema name, since the tables may not exist yet). Public so that
/// other crates sharing the ledger's schema (the read models) run their own
/// migrations the same way.
pub struct PostgresMigrator<'c> {
    client: &'c mut Client,
    lock_key: i32,
    table: &'static str,
}

impl fmt::Debug for PostgresMigrator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresMigrator")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<'c> PostgresMigrator<'c> {
    /// The migrations recorded in `table` (a fixed identifier of the
    /// caller's, e.g. `store_schema_migrations`) in `schema`, on `client`.
    pub fn new(client: &'c mut Client, schema: &str, table: &'static str) -> Self {
        PostgresMigrator {
            client,
            lock_key: schema_key(schema),
            table,
        }
    }
}

/// The highest migration recorded in `table`, 0 when there is none or the
/// table is absent.
fn applied_version_on(client: &mut impl GenericClient, table: &str) -> Result<i64, StoreError> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1::text)::text", &[&table])?
        .get(0);
    if exists.is_none() {
        return Ok(0);
    }
    Ok(client
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0)::int8 FROM {table}"),
            &[],
        )?
        .try_get(0)?)
}

impl MigrationTarget for PostgresMigrator<'_> {
    type Error = StoreError;

    fn applied_version(&mut self) -> Result<i64, StoreError> {
        applied_version_on(self.client, self.table)
    }

    fn apply_locked(
        &mut self,
        step: &mut dyn FnMut(i64) -> Result<Option<Migration>, StoreError>,
    ) -> Result<Option<Migration>, StoreError> {
        let table = self.table;
        let mut tx = self.client.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1::int4, $2::int4)",
            &[&MIGRATION_LOCK_CLASS, &self.lock_key],
        )?;
        tx.batch_execute(&format!(
            "SET LOCAL client_min_messages TO warning;
             CREATE TABLE IF NOT EXISTS {table} (
                 version    BIGINT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TEXT NOT NULL
             );"
        ))?;
        let current = applied_version_on(&mut tx, table)?;
        let migration = step(current)?;
        if let Some(migration) = migration {
            tx.batch_execute(migration.sql)?;
            tx.execute(
                &format!("INSERT INTO {table} (version, name, applied_at) VALUES ($1, $2, $3)"),
                &[
                    &migration.version,
                    &migration.name,
                    &hash::format_time(&to_stored_precision(Utc::now())),
                ],
            )?;
        }
        tx.commit()?;
        Ok(migration)
    }
}

/// Create `schema` if it does not exist, under the schema's migration lock
/// (so that processes opening a new ledger at once do not race). The store
/// and the read models, which share the schema, both create it this way.
pub fn create_schema(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1::int4, $2::int4)",
        &[&MIGRATION_LOCK_CLASS, &schema_key(schema)],
    )?;
    tx.batch_execute(&format!(
        "SET LOCAL client_min_messages TO warning; CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(schema)
    ))?;
    tx.commit()?;
    Ok(())
}

/// The SQL that reads the advisory-lock key of `table` in the session's
/// schema: the table's OID as a 32-bit integer, so that ledgers in
/// different schemas of one database get different keys. `table` is quoted
/// as a literal.
pub fn lock_key_sql(table: &str) -> String {
    format!(
        "SELECT '{}'::regclass::oid::int4",
        quote_ident(table).replace('\'', "''")
    )
}

/// The advisory-lock key of `table` (see [`lock_key_sql`]): the second key
/// of the lock that serialises the writers of that table. The store's
/// append lock uses `events`; the read models use their checkpoint table.
pub fn table_lock_key(client: &mut impl GenericClient, table: &str) -> Result<i32, StoreError> {
    Ok(client.query_one(&lock_key_sql(table), &[])?.try_get(0)?)
}

/// Decode an event row (selected by [`READ_STREAM`] or the store's other
/// reads, which all select the same columns).
pub fn decode_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    decode_row(row)
}

/// [`decode_event`], with the payload handed over as `P` (parsed, or the
/// stored text).
fn decode_row<P: StoredPayload>(row: &Row) -> Result<RecordedEvent<P>, StoreError> {
    let raw_position: i64 = row.try_get(0)?;
    let position = from_sql_int(raw_position, raw_position, "position")?;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let time = |index: usize, name: &str| -> Result<DateTime<Utc>, StoreError> {
        let text: String = row.try_get(index)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| corrupt(format!("{name} {text:?} is not an RFC 3339 time: {e}")))
    };
    let payload: &str = row.try_get(5)?;
    let metadata: &str = row.try_get(6)?;
    let schema_version: i64 = row.try_get(4)?;
    Ok(RecordedEvent {
        position,
        stream_id: row.try_get(1)?,
        stream_version: from_sql_int(row.try_get(2)?, raw_position, "stream_version")?,
        event_type: row.try_get(3)?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| corrupt(format!("schema_version {schema_version} is out of range")))?,
        payload: P::from_stored(position, payload)?,
        metadata: serde_json::from_str::<Metadata>(metadata)
            .map_err(|e| corrupt(format!("metadata is not valid: {e}")))?,
        occurred_at: time(7, "occurred_at")?,
        recorded_at: time(8, "recorded_at")?,
        prev_hash: row.try_get(9)?,
        hash: row.try_get(10)?,
    })
}

fn to_sql_int(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt {
        position: value,
        reason: format!("{value} exceeds the largest integer PostgreSQL stores"),
    })
}

fn from_sql_int(value: i64, position: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        position: u64::try_from(position).unwrap_or(0),
        reason: format!("{what} {value} is negative"),
    })
}

/// The migration lock's second key: a stable 32-bit digest of the schema name.
fn schema_key(schema: &str) -> i32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(schema.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Check that `schema` is a safe schema name: lowercase letters, digits and
/// underscores, starting with a letter or underscore, at most 63 bytes, not
/// `pg_…`. Shared with the read models, which live in the same schema.
pub fn check_schema_name(url: &str, schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid_start && valid_rest && schema.len() <= 63 && !schema.starts_with("pg_") {
        Ok(())
    } else {
        Err(StoreError::InvalidUrl {
            url: redact(url),
            reason: format!(
                "schema name {schema:?} is not allowed: use lowercase letters, digits and \
                 underscores, starting with a letter or underscore, at most 63 characters, \
                 not starting with pg_"
            ),
        })
    }
}

/// An SQL identifier, quoted (names are validated too; this is belt and braces).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    crate::redact_url(url)
}

/// Drop `schema` and everything in it (a test ledger) from the database at `url`.
///
/// A test-support helper: tests give each run its own schema and drop it at
/// the end. The name is validated as in [`PostgresStore::connect_in_schema`].
pub fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    check_schema_name(url, schema)?;
    let mut client = Client::connect(url, NoTls)?;
    client.batch_execute(&format!(
        "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS {} CASCADE",
        quote_ident(schema)
    ))?;
    Ok(())
}

/// The PostgreSQL server tests should use, from `PROVLEDGER_TEST_POSTGRES_URL`.
///
/// A test-support helper shared by every crate's tests. When the variable is
/// unset (or empty) it prints why the PostgreSQL tests are skipped and returns
/// `None`, so that a plain `cargo test` passes without a server.
///
/// # Panics
///
/// When `PROVLEDGER_REQUIRE_POSTGRES=1` and the URL is missing (CI sets both,
/// so a misconfigured CI fails instead of silently skipping).
#[cfg(feature = "testing")]
pub fn test_url() -> Option<String> {
    match std::env::var(TEST_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v.trim() == "1") {
                panic!(
                    "{REQUIRE_VAR}=1 but {TEST_URL_VAR} is not set: set \
                     {TEST_URL_VAR}=postgres://USER@HOST:PORT/DATABASE to run the PostgreSQL tests"
                );
            }
            eprintln!(
                "skipping PostgreSQL tests: set {TEST_URL_VAR}=postgres://USER@HOST:PORT/DATABASE \
                 to run them"
            );
            None
        }
    }
}

/// A fresh schema name for one test ledger: `<tag>_<pid>_<nanos>_<counter>`.
///
/// A test-support helper: names are unique across threads and processes, so
/// concurrent test runs never share a ledger. `tag` should be a short
/// lowercase identifier; anything else in it is replaced by `_`.
#[cfg(feature = "testing")]
pub fn unique_test_schema(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tag: String = tag
        .chars()
        .take(20)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t_{tag}_{}_{nanos}_{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_in_a_row_back_off_exponentially_and_a_hit_resets() {
        let head = |position| Head {
            position,
            hash: String::new(),
        };
        let mut prediction = Prediction::default();
        // Each append that tries misses: which of the next 200 try.
        let mut tried = Vec::new();
        for i in 0..200 {
            prediction.head = Some(head(1));
            if prediction.next_head().is_some() {
                tried.push(i);
                prediction.missed();
            }
        }
        let skipped: Vec<i32> = tried.windows(2).map(|w| w[1] - w[0] - 1).collect();
        assert_eq!(skipped, [1, 3, 7, 15, 31, 63, 63]);
        prediction.skip = 0;
        prediction.hit(Some(head(2)));
        assert_eq!(prediction.misses, 0);
        assert_eq!(prediction.next_head().map(|h| h.position), Some(2));
        // Taken: a failed write leaves nothing to predict on.
        assert!(prediction.next_head().is_none());
    }

    #[test]
    fn schema_names_are_validated() {
        for ok in ["a", "_x", "ledger_2", "t_conf_123_456_0"] {
            assert!(check_schema_name("postgres://h/db", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "1a",
            "a-b",
            "a;drop",
            "pg_x",
            "a\"b",
            &"x".repeat(64),
        ] {
            assert!(check_schema_name("postgres://h/db", bad).is_err(), "{bad}");
        }
        let name = unique_test_schema("Conf-X");
        assert!(
            check_schema_name("postgres://h/db", &name).is_ok(),
            "{name}"
        );
    }

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        crate::migrations::check_numbering(MIGRATIONS).unwrap();
    }

    #[test]
    fn lock_key_sql_names_the_table() {
        assert_eq!(
            lock_key_sql("events"),
            "SELECT '\"events\"'::regclass::oid::int4"
        );
        assert_eq!(
            lock_key_sql("it's"),
            "SELECT '\"it''s\"'::regclass::oid::int4"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
