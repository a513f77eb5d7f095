//! The SQLite backend: the shared conformance suite (one test per check, each
//! on its own temporary database) and SQLite-specific behaviour (pragmas,
//! schema versioning, corrupt rows, sharing the file with read models).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use provledger_store::conformance::{Backend, StoreRegistry};
use provledger_store::sqlite::{SqliteOptions, SqliteStore, Synchronous, SCHEMA_VERSION};
use provledger_store::{
    verify, AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, OpenMode, Position,
    StoreError,
};
use serde_json::json;
use tempfile::TempDir;

/// Conformance backend: every store is a new file in one temporary directory.
pub struct SqliteBackend {
    dir: TempDir,
    next: AtomicUsize,
    registry: StoreRegistry<PathBuf>,
}

impl SqliteBackend {
    /// A backend with its own temporary directory (removed on drop).
    pub fn new() -> Self {
        SqliteBackend {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            next: AtomicUsize::new(0),
            registry: StoreRegistry::new(),
        }
    }

    fn open_registered(&self, path: &Path) -> Box<dyn EventStore> {
        let store: Box<dyn EventStore> = Box::new(
            SqliteStore::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
        );
        self.registry.register(store.as_ref(), path.to_path_buf());
        store
    }

    fn raw_sql_is_refused(&self, store: &dyn EventStore, sql: &str) -> bool {
        let path = self.registry.location(store);
        let raw = SqliteStore::open(&path).expect("open a second handle");
        match raw.execute_raw_sql_for_tests(sql) {
            Ok(_) => false,
            Err(e) => e.to_string().contains("append-only"),
        }
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn fresh(&self) -> Box<dyn EventStore> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.open_registered(&self.dir.path().join(format!("store-{n}.db")))
    }

    fn reopen(&self, store: Box<dyn EventStore>) -> Box<dyn EventStore> {
        let path = self.registry.location(store.as_ref());
        drop(store);
        self.open_registered(&path)
    }

    fn open_same(&self, store: &dyn EventStore) -> Box<dyn EventStore> {
        self.open_registered(&self.registry.location(store))
    }

    fn tamper_payload(&self, store: &dyn EventStore, position: Position, new_payload_json: &str) {
        let path = self.registry.location(store);
        let mut conn = rusqlite::Connection::open(&path).expect("open a raw connection");
        let trigger: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'events_no_update'",
                [],
                |row| row.get(0),
            )
            .expect("the events_no_update trigger exists");
        let tx = conn.transaction().expect("begin");
        tx.execute("DROP TRIGGER events_no_update", [])
            .expect("drop trigger");
        let changed = tx
            .execute(
                "UPDATE events SET payload = ?1 WHERE position = ?2",
                rusqlite::params![new_payload_json, position as i64],
            )
            .expect("tamper");
        assert_eq!(changed, 1, "no event at position {position} to tamper with");
        tx.execute_batch(&trigger).expect("restore trigger");
        tx.commit().expect("commit tampering");
    }

    fn raw_update_is_refused(&self, store: &dyn EventStore) -> bool {
        self.raw_sql_is_refused(store, "UPDATE events SET payload = '{}' WHERE position = 1")
    }

    fn raw_delete_is_refused(&self, store: &dyn EventStore) -> bool {
        self.raw_sql_is_refused(store, "DELETE FROM events WHERE position = 1")
    }
}

mod conformance {
    provledger_store::conformance_tests!(super::SqliteBackend::new());
}

#[test]
fn run_all_passes() {
    // The non-macro entry point, once, so it stays usable.
    provledger_store::conformance::run_all(&SqliteBackend::new());
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_type: "Numbered".into(),
        schema_version: 1,
        payload: json!({ "n": n }),
        metadata: Metadata {
            actor: "test@example.com".into(),
            transaction_id: "tx".into(),
            ..Metadata::default()
        },
        occurred_at: Utc::now(),
    }
}

fn append(store: &dyn EventStore, stream: &str, expected: ExpectedVersion, n: u64) {
    store
        .append(AppendRequest::single(
            stream,
            expected,
            (0..n).map(event).collect(),
        ))
        .expect("append");
}

/// The first column of every row `sql` returns, as text.
fn texts(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every stored Merkle node as `(level, idx, hash)`, by level and index.
fn nodes_by_level(conn: &rusqlite::Connection) -> Vec<(i64, i64, Vec<u8>)> {
    conn.prepare("SELECT level, idx, hash FROM merkle_nodes ORDER BY level, idx")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `appends` appends of 1 to `max_events` events each, over `streams`
/// streams in turn; returns the head position.
fn fill(store: &dyn EventStore, appends: u64, streams: u64, max_events: u64) -> u64 {
    for i in 0..appends {
        append(
            store,
            &format!("s{}", i % streams),
            ExpectedVersion::Any,
            1 + i % max_events,
        );
    }
    store.head().unwrap().unwrap().position
}

fn all(store: &dyn EventStore) -> Vec<provledger_store::RecordedEvent> {
    store
        .read_all(0)
        .expect("read_all")
        .collect::<Result<_, _>>()
        .expect("decode")
}

#[test]
fn reopen_persists_and_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    assert!(!path.exists());
    let store = SqliteStore::open(&path).unwrap();
    assert!(path.exists(), "open creates the file");
    assert_eq!(store.path(), path);
    assert_eq!(store.backend(), "sqlite");
    append(&store, "s", ExpectedVersion::NoStream, 3);
    let before = all(&store);
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(all(&store), before);
    assert_eq!(store.stream_version("s").unwrap(), 3);
}

#[test]
fn opens_through_a_store_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("url.db").display());
    let store = provledger_store::open(&url).unwrap();
    assert_eq!(store.backend(), "sqlite");
    append(store.as_ref(), "s", ExpectedVersion::NoStream, 1);
    assert_eq!(store.head().unwrap().map(|h| h.position), Some(1));
}

#[test]
fn default_pragmas_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("p.db")).unwrap();
    assert_eq!(store.pragma_value("synchronous").unwrap(), "2", "FULL");
    assert_eq!(store.pragma_value("journal_mode").unwrap(), "wal");
    assert_eq!(store.pragma_value("foreign_keys").unwrap(), "1");
    assert_eq!(store.pragma_value("busy_timeout").unwrap(), "5000");
    assert_eq!(store.pragma_value("wal_autocheckpoint").unwrap(), "8192");
}

#[test]
fn options_set_synchronous_and_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    for (synchronous, expected) in [
        (Synchronous::Full, "2"),
        (Synchronous::Normal, "1"),
        (Synchronous::Off, "0"),
    ] {
        let options = SqliteOptions {
            synchronous,
            busy_timeout: Duration::from_millis(250),
        };
        let store = SqliteStore::open_with(&dir.path().join("o.db"), options).unwrap();
        assert_eq!(store.pragma_value("synchronous").unwrap(), expected);
        assert_eq!(store.pragma_value("busy_timeout").unwrap(), "250");
        assert_eq!(store.pragma_value("journal_mode").unwrap(), "wal");
    }
    assert_eq!(SqliteOptions::default().synchronous, Synchronous::Full);
    assert_eq!(
        SqliteOptions::default().busy_timeout,
        Duration::from_secs(5)
    );
}

#[test]
fn schema_is_versioned_and_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM store_schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let triggers = texts(
        &conn,
        "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    );
    assert_eq!(
        triggers,
        [
            "events_no_delete",
            "events_no_update",
            "idempotency_keys_no_delete",
            "idempotency_keys_no_update",
            "merkle_nodes_no_delete",
            "merkle_nodes_no_update"
        ]
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    let store = SqliteStore::open(&path).unwrap();
    let inserted = store
        .execute_raw_sql_for_tests(
            "INSERT INTO store_schema_migrations (version, name, applied_at) \
             VALUES (999, 'from the future', '2099-01-01T00:00:00.000000Z')",
        )
        .unwrap();
    assert_eq!(inserted, 1);
    drop(store);
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (999, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn shares_the_file_with_read_models() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let store = SqliteStore::open(&path).unwrap();
    {
        // Another crate adds its own migration table to the ledger's file.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT);
             INSERT INTO schema_migrations VALUES (42, 'read models', 'x');
             CREATE TABLE rm_migrations (version INTEGER PRIMARY KEY);
             INSERT INTO rm_migrations VALUES (7);
             CREATE TABLE rm_lines (id TEXT PRIMARY KEY, state TEXT);",
        )
        .unwrap();
    }
    append(&store, "s", ExpectedVersion::NoStream, 2);
    // Read-model tables remain writable, updatable and deletable.
    let changed = store
        .execute_raw_sql_for_tests(
            "INSERT INTO rm_lines VALUES ('a', 'new'); UPDATE rm_lines SET state = 'done'; \
             DELETE FROM rm_lines;",
        )
        .unwrap();
    assert_eq!(changed, 3);
    drop(store);
    assert!(SqliteStore::open(&path).is_ok());
}

#[test]
fn a_foreign_database_is_not_made_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY);")
            .unwrap();
    }
    for mode in [OpenMode::Create, OpenMode::ReadWrite, OpenMode::ReadOnly] {
        let err = SqliteStore::open_in_mode(&path, SqliteOptions::default(), mode).unwrap_err();
        assert!(
            matches!(err, StoreError::NotALedger { .. }),
            "{mode:?}: {err}"
        );
    }
    let missing = dir.path().join("missing.db");
    for mode in [OpenMode::ReadWrite, OpenMode::ReadOnly] {
        let err = SqliteStore::open_in_mode(&missing, SqliteOptions::default(), mode).unwrap_err();
        assert!(
            matches!(err, StoreError::NoLedger { .. }),
            "{mode:?}: {err}"
        );
        assert!(!missing.exists());
    }
}

#[test]
fn idempotency_keys_are_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("k.db")).unwrap();
    store
        .append(
            AppendRequest::single("s", ExpectedVersion::NoStream, vec![event(1)])
                .with_idempotency_key(Some("k".into())),
        )
        .unwrap();
    for sql in [
        "UPDATE idempotency_keys SET last_position = 5",
        "DELETE FROM idempotency_keys",
    ] {
        let error = store.execute_raw_sql_for_tests(sql).unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
}

#[test]
fn idempotency_survives_import() {
    let dir = tempfile::tempdir().unwrap();
    let source = SqliteStore::open(&dir.path().join("src.db")).unwrap();
    let target = SqliteStore::open(&dir.path().join("dst.db")).unwrap();
    append(&source, "a", ExpectedVersion::NoStream, 2);
    let request = AppendRequest::single("b", ExpectedVersion::NoStream, vec![event(1), event(2)])
        .with_idempotency_key(Some("cmd-b".into()));
    let first = source.append(request.clone()).unwrap();
    append(&source, "a", ExpectedVersion::Exact(2), 1);
    target.import_batch(&all(&source)).unwrap();
    let replay = target.append(request).unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.events, first.events);
    assert_eq!(target.head().unwrap(), source.head().unwrap());
}

#[test]
fn corrupt_rows_are_reported_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("corrupt.db")).unwrap();
    append(&store, "s", ExpectedVersion::NoStream, 2);
    let good = all(&store);
    store
        .execute_raw_sql_for_tests(&format!(
            "INSERT INTO events VALUES (3, 's', 3, 'Bad', 1, 'not json', '{{}}', \
             '2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z', '{}', 'x')",
            good[1].hash
        ))
        .unwrap();
    store
        .execute_raw_sql_for_tests(
            "INSERT INTO events VALUES (4, 't', 1, 'Bad', 1, '{}', \
             '{\"actor\":\"a\",\"transaction_id\":\"t\"}', 'yesterday', \
             '2024-01-01T00:00:00.000000Z', 'x', 'y')",
        )
        .unwrap();

    let items: Vec<_> = store.read_all(0).unwrap().collect();
    assert_eq!(
        items.len(),
        3,
        "two good events, then the error, then nothing"
    );
    assert!(items[..2].iter().all(Result::is_ok));
    assert!(
        matches!(items[2], Err(StoreError::Corrupt { position: 3, .. })),
        "{:?}",
        items[2]
    );
    assert!(matches!(
        store.read_all(3).unwrap().next(),
        Some(Err(StoreError::Corrupt { position: 4, .. }))
    ));
    assert!(matches!(
        store.read_stream("s", 0),
        Err(StoreError::Corrupt { position: 3, .. })
    ));
    assert!(matches!(
        verify(&store, &mut |_| {}),
        Err(StoreError::Corrupt { position: 3, .. })
    ));
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let result = SqliteStore::open(&dir.path().join("no/such/dir/ledger.db"));
    match result {
        Err(e @ StoreError::CannotOpen { .. }) => {
            assert!(e.to_string().contains("no/such/dir/ledger.db"), "{e}");
            assert!(e.to_string().contains("directory must exist"), "{e}");
        }
        other => panic!("expected CannotOpen, got {other:?}"),
    }
}

#[test]
fn concurrent_first_opens_migrate_once() {
    // Several rounds, each on a new file: switching a new file to WAL mode
    // while another opener holds it used to fail one round in ten or so
    // ("database is locked"), without waiting for the busy timeout.
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let path = dir.path().join(format!("race-{round}.db"));
        let stores: Vec<SqliteStore> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|_| scope.spawn(|| SqliteStore::open(&path)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().expect("concurrent open"))
                .collect()
        });
        for (i, store) in stores.iter().enumerate() {
            append(store, &format!("s{i}"), ExpectedVersion::NoStream, 1);
        }
        assert_eq!(stores[0].head().unwrap().map(|h| h.position), Some(6));
        assert!(verify(&stores[0], &mut |_| {}).unwrap().is_intact());
    }
}

#[test]
fn import_names_the_first_offending_position() {
    // Small batches are checked inline; large ones on a second thread while
    // this one inserts. Both must name the first offending event, whichever
    // check (chain or stored stream version) finds it.
    let dir = tempfile::tempdir().unwrap();
    let source = SqliteStore::open(&dir.path().join("src.db")).unwrap();
    let requests = (0..30)
        .map(|i| {
            AppendRequest::single(
                format!("s{}", i % 7),
                ExpectedVersion::Any,
                (0..100).map(event).collect(),
            )
        })
        .collect();
    for r in source.append_batch(requests).unwrap() {
        r.unwrap();
    }
    let exported = all(&source);
    for (n, at) in [(200usize, 150usize), (2990, 1500), (2990, 2900)] {
        let target = SqliteStore::open(&dir.path().join(format!("dst-{n}-{at}.db"))).unwrap();
        target.import_batch(&exported[..10]).unwrap();
        let mut batch = exported[10..10 + n].to_vec();
        let i = at - 11;
        batch[i].stream_id = "late-stream".into();
        batch[i].stream_version = 2;
        batch[i].hash = provledger_store::hash::event_hash(&batch[i]);
        match target.import_batch(&batch) {
            Err(StoreError::ChainBroken { position, reason }) => {
                assert_eq!(position, at as u64, "batch of {n}: {reason}");
                assert!(reason.contains("late-stream"), "{reason}");
            }
            other => panic!("batch of {n}: expected ChainBroken at {at}, got {other:?}"),
        }
        assert_eq!(target.head().unwrap().map(|h| h.position), Some(10));
    }
}

/// A ledger written before the Merkle tree existed (schema version 1) gets
/// its tree computed once, when it is opened, and then verifies.
#[test]
fn a_ledger_from_before_the_tree_gets_its_tree_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let expected_root = {
        let store = SqliteStore::open(&path).unwrap();
        let head = fill(&store, 37, 5, 3);
        let root = provledger_store::merkle::root_at(&store, head).unwrap();
        // Take the file back to schema version 1: no tree at all.
        store
            .execute_raw_sql_for_tests(
                "DROP TRIGGER merkle_nodes_no_update; DROP TRIGGER merkle_nodes_no_delete; \
                 DROP TABLE merkle_nodes; \
                 DELETE FROM store_schema_migrations WHERE version >= 2;",
            )
            .unwrap();
        (head, root)
    };
    let store = SqliteStore::open(&path).unwrap();
    let (head, root) = expected_root;
    assert_eq!(
        provledger_store::merkle::root_at(&store, head).unwrap(),
        root
    );
    let report = verify(&store, &mut |_| {}).unwrap();
    assert!(report.is_intact(), "{report:?}");
    append(&store, "s0", ExpectedVersion::Any, 2);
    assert!(verify(&store, &mut |_| {}).unwrap().is_intact());
}

/// The columns of `merkle_nodes`'s primary key, in key order.
fn node_key(conn: &rusqlite::Connection) -> Vec<String> {
    conn.prepare("SELECT name FROM pragma_table_info('merkle_nodes') WHERE pk > 0 ORDER BY pk")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every stored node as `(level, idx)`, in the table's primary-key order.
fn nodes_in_key_order(conn: &rusqlite::Connection) -> Vec<(i64, i64)> {
    let order = node_key(conn).join(", ");
    conn.prepare(&format!(
        "SELECT level, idx FROM merkle_nodes ORDER BY {order}"
    ))
    .unwrap()
    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The nodes one append completes all end at its own leaves, so they are
/// contiguous in the key's order and come after every node stored before:
/// the commit writes them at the right edge of one key range.
#[test]
fn an_append_completes_its_nodes_at_the_right_edge_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let store = SqliteStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(node_key(&conn), ["end_leaf", "level"]);
    let mut before = nodes_in_key_order(&conn);
    assert!(before.is_empty());
    // Sizes chosen so that appends complete nodes on up to six levels at once.
    for (i, n) in [1, 2, 3, 2, 8, 1, 3, 5, 7, 1, 1, 16, 3, 2, 31, 4]
        .into_iter()
        .enumerate()
    {
        append(&store, &format!("s{}", i % 3), ExpectedVersion::Any, n);
        let after = nodes_in_key_order(&conn);
        assert!(
            after.len() > before.len(),
            "append {i} ({n} events) inserted no node"
        );
        assert_eq!(
            after[..before.len()],
            before[..],
            "append {i} ({n} events) inserted nodes before the key's right edge: {:?}",
            &after[before.len()..]
        );
        before = after;
    }
    let head = store.head().unwrap().unwrap().position;
    assert_eq!(
        before.iter().filter(|(level, _)| *level == 0).count() as u64,
        head
    );
    let max_end: i64 = conn
        .query_row("SELECT MAX(end_leaf) FROM merkle_nodes", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(max_end as u64 + 1, head);
    assert!(verify(&store, &mut |_| {}).unwrap().is_intact());
}

/// A ledger whose tree is stored in the layout before `end_leaf` (schema
/// version 2: key `(level, idx)`) is rebuilt into the new layout when it is
/// opened, keeps every node, still verifies and proves, and grows on.
#[test]
fn a_tree_keyed_by_level_is_rekeyed_on_open() {
    use provledger_proof::merkle::{event_leaf, verify_consistency, verify_inclusion};
    use provledger_store::merkle::{consistency_proof, inclusion_proof, root_at};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let (head, root, old_root, inclusion, consistency, rows) = {
        let store = SqliteStore::open(&path).unwrap();
        let head = fill(&store, 45, 4, 4);
        let root = root_at(&store, head).unwrap();
        let old_root = root_at(&store, 37).unwrap();
        let inclusion = inclusion_proof(&store, 23, head).unwrap();
        let consistency = consistency_proof(&store, 37, head).unwrap();
        // Take the tree back to schema version 2's layout.
        store
            .execute_raw_sql_for_tests(
                "DROP TRIGGER merkle_nodes_no_update; DROP TRIGGER merkle_nodes_no_delete; \
                 CREATE TABLE merkle_nodes_v2 ( \
                     level INTEGER NOT NULL CHECK (level >= 0 AND level < 64), \
                     idx   INTEGER NOT NULL CHECK (idx >= 0), \
                     hash  BLOB    NOT NULL CHECK (length(hash) = 32), \
                     PRIMARY KEY (level, idx) \
                 ) WITHOUT ROWID; \
                 INSERT INTO merkle_nodes_v2 (level, idx, hash) \
                     SELECT level, idx, hash FROM merkle_nodes; \
                 DROP TABLE merkle_nodes; \
                 ALTER TABLE merkle_nodes_v2 RENAME TO merkle_nodes; \
                 CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes \
                 BEGIN SELECT RAISE(ABORT, 'Merkle nodes are append-only: UPDATE is refused'); END; \
                 CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes \
                 BEGIN SELECT RAISE(ABORT, 'Merkle nodes are append-only: DELETE is refused'); END; \
                 DELETE FROM store_schema_migrations WHERE version > 2;",
            )
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(node_key(&conn), ["level", "idx"]);
        let rows = nodes_by_level(&conn);
        (head, root, old_root, inclusion, consistency, rows)
    };
    // A read-only open does not migrate: it asks for a write open first.
    let refused = SqliteStore::open_in_mode(&path, SqliteOptions::default(), OpenMode::ReadOnly)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("at version 2"), "{refused}");

    let store =
        SqliteStore::open_in_mode(&path, SqliteOptions::default(), OpenMode::ReadWrite).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(node_key(&conn), ["end_leaf", "level"]);
    let version: i64 = conn
        .query_row(
            "SELECT MAX(version) FROM store_schema_migrations",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let migrated = nodes_by_level(&conn);
    assert_eq!(migrated, rows, "every node is kept as it was");
    let wrong_ends: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM merkle_nodes WHERE end_leaf != ((idx + 1) << level) - 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(wrong_ends, 0);
    let triggers = texts(
        &conn,
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'merkle_nodes' \
         ORDER BY name",
    );
    assert_eq!(
        triggers,
        ["merkle_nodes_no_delete", "merkle_nodes_no_update"]
    );
    for sql in [
        "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = 0",
        "DELETE FROM merkle_nodes WHERE level = 0 AND idx = 0",
    ] {
        let refused = conn.execute(sql, []).unwrap_err().to_string();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    let end_is_checked = conn
        .execute(
            "INSERT INTO merkle_nodes (level, idx, end_leaf, hash) VALUES (0, 5000, 4998, zeroblob(32))",
            [],
        )
        .unwrap_err()
        .to_string();
    assert!(end_is_checked.contains("CHECK"), "{end_is_checked}");

    let report = verify(&store, &mut |_| {}).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.root, hex::encode(root));
    assert_eq!(root_at(&store, head).unwrap(), root);
    assert_eq!(root_at(&store, 37).unwrap(), old_root);
    let proof = inclusion_proof(&store, 23, head).unwrap();
    assert_eq!(proof, inclusion);
    let leaf = event_leaf(&all(&store)[22].hash).unwrap();
    verify_inclusion(22, head, &leaf, &proof, &root).unwrap();
    let proof = consistency_proof(&store, 37, head).unwrap();
    assert_eq!(proof, consistency);
    verify_consistency(37, head, &old_root, &root, &proof).unwrap();

    append(&store, "s9", ExpectedVersion::Any, 6);
    let new_head = store.head().unwrap().unwrap().position;
    assert_eq!(new_head, head + 6);
    let report = verify(&store, &mut |_| {}).unwrap();
    assert!(report.is_intact(), "{report:?}");
    let new_root = root_at(&store, new_head).unwrap();
    verify_consistency(
        head,
        new_head,
        &root,
        &new_root,
        &consistency_proof(&store, head, new_head).unwrap(),
    )
    .unwrap();
    drop(store);
    // Reopened, nothing is migrated again and the tree is whole.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(root_at(&store, new_head).unwrap(), new_root);
    assert!(verify(&store, &mut |_| {}).unwrap().is_intact());
}
