//! PostgreSQL backend tests: PostgreSQL-specific behaviour (triggers,
//! migrations under concurrency, reconnects) and the concurrency proof of the
//! gapless global order.
//!
//! They need a server: set `PROVLEDGER_TEST_POSTGRES_URL` (see
//! `provledger_store::postgres::test_url`). Each test works in its own
//! freshly created schema, dropped at the end, so runs never collide.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use provledger_store::conformance::{Backend, StoreRegistry};
use provledger_store::hash::ChainChecker;
use provledger_store::postgres::{drop_schema, test_url, unique_test_schema, PostgresStore};
use provledger_store::{
    verify, AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, Position,
    RecordedEvent, StoreError,
};
use serde_json::json;

/// Conformance backend: every fresh store is a new schema, and every schema
/// this backend created is dropped when it is dropped (at the end of a test).
pub struct PostgresBackend {
    url: String,
    registry: StoreRegistry<String>,
    schemas: Mutex<Vec<String>>,
}

impl PostgresBackend {
    /// A backend on the test server, or `None` (tests skip) without one.
    pub fn from_env() -> Option<Self> {
        Some(PostgresBackend {
            url: test_url()?,
            registry: StoreRegistry::new(),
            schemas: Mutex::new(Vec::new()),
        })
    }

    fn open_registered(&self, schema: &str) -> Box<dyn EventStore> {
        let store: Box<dyn EventStore> = Box::new(
            PostgresStore::connect_in_schema(&self.url, schema)
                .unwrap_or_else(|e| panic!("open schema {schema}: {e}")),
        );
        self.registry.register(store.as_ref(), schema.to_string());
        store
    }

    /// A raw handle of its own on the schema `store` lives in.
    fn raw(&self, store: &dyn EventStore) -> PostgresStore {
        PostgresStore::connect_in_schema(&self.url, &self.registry.location(store))
            .expect("open a raw connection")
    }

    fn raw_sql_is_refused(&self, store: &dyn EventStore, sql: &str) -> bool {
        match self.raw(store).execute_raw_sql_for_tests(sql) {
            Ok(_) => false,
            Err(e) => db_message(&e).contains("append-only"),
        }
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        let schemas = self
            .schemas
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        for schema in schemas {
            if let Err(e) = drop_schema(&self.url, &schema) {
                eprintln!("could not drop test schema {schema}: {e}");
            }
        }
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &str {
        "postgres"
    }

    fn fresh(&self) -> Box<dyn EventStore> {
        let schema = unique_test_schema("conf");
        self.schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(schema.clone());
        self.open_registered(&schema)
    }

    fn open_same(&self, store: &dyn EventStore) -> Box<dyn EventStore> {
        self.open_registered(&self.registry.location(store))
    }

    fn tamper_payload(&self, store: &dyn EventStore, position: Position, new_payload_json: &str) {
        let changed = self
            .raw(store)
            .execute_raw_sql_for_tests(&format!(
                "BEGIN; \
                 ALTER TABLE events DISABLE TRIGGER events_append_only; \
                 UPDATE events SET payload = '{}' WHERE position = {position}; \
                 ALTER TABLE events ENABLE TRIGGER events_append_only; \
                 COMMIT;",
                new_payload_json.replace('\'', "''")
            ))
            .expect("tamper");
        assert_eq!(changed, 1, "no event at position {position} to tamper with");
    }

    fn raw_update_is_refused(&self, store: &dyn EventStore) -> bool {
        self.raw_sql_is_refused(store, "UPDATE events SET payload = '{}' WHERE position = 1")
    }

    fn raw_delete_is_refused(&self, store: &dyn EventStore) -> bool {
        self.raw_sql_is_refused(store, "DELETE FROM events WHERE position = 1")
    }
}

mod conformance {
    provledger_store::conformance_tests!(optional: super::PostgresBackend::from_env());
}

/// A store in a fresh schema that is dropped when this goes out of scope.
struct Ledger {
    url: String,
    schema: String,
    store: PostgresStore,
}

impl Ledger {
    fn fresh(tag: &str) -> Option<Ledger> {
        let url = test_url()?;
        let schema = unique_test_schema(tag);
        let store = PostgresStore::connect_in_schema(&url, &schema)
            .unwrap_or_else(|e| panic!("cannot open schema {schema}: {e}"));
        Some(Ledger { url, schema, store })
    }

    /// Another connection to the same ledger.
    fn reopen(&self) -> PostgresStore {
        PostgresStore::connect_in_schema(&self.url, &self.schema).expect("reopen")
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Err(e) = drop_schema(&self.url, &self.schema) {
            eprintln!("could not drop test schema {}: {e}", self.schema);
        }
    }
}

fn event(event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_type: event_type.to_string(),
        schema_version: 1,
        payload,
        metadata: Metadata {
            actor: "tester@example.com".into(),
            transaction_id: "tx-1".into(),
            ..Metadata::default()
        },
        occurred_at: Utc::now(),
    }
}

fn all_events(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store
        .read_all(0)
        .expect("read_all")
        .collect::<Result<Vec<_>, _>>()
        .expect("decode")
}

fn assert_intact(store: &dyn EventStore, expected_events: u64) {
    let report = verify(store, &mut |_| {}).expect("verify");
    assert!(
        report.is_intact(),
        "chain broken: {:?}",
        report.first_broken
    );
    assert_eq!(report.events_checked, expected_events);
}

fn db_message(error: &StoreError) -> String {
    match error {
        StoreError::Postgres(e) => e
            .as_db_error()
            .map_or_else(|| e.to_string(), |db| db.message().to_string()),
        other => other.to_string(),
    }
}

#[test]
fn idempotency_keys_replay_within_and_across_batches() {
    let Some(ledger) = Ledger::fresh("idem") else {
        return;
    };
    let store = &ledger.store;
    let request = AppendRequest::single(
        "s",
        ExpectedVersion::NoStream,
        vec![event("E", json!({"i": 1})), event("E", json!({"i": 2}))],
    )
    .with_idempotency_key(Some("key-1".into()));
    let results = store
        .append_batch(vec![request.clone(), request.clone()])
        .unwrap();
    let first = results[0].as_ref().unwrap();
    let again = results[1].as_ref().unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.events, again.events);
    assert_eq!(
        first.events[0].metadata.idempotency_key.as_deref(),
        Some("key-1")
    );
    let later = store.append(request).unwrap();
    assert!(later.replayed);
    assert_eq!(later.events, first.events);
    assert_eq!(
        store.find_idempotent("key-1").unwrap(),
        Some(first.events.clone())
    );
    assert_eq!(store.find_idempotent("other").unwrap(), None);
    assert_intact(store, 2);
}

#[test]
fn import_continues_the_chain_or_writes_nothing() {
    let Some(source) = Ledger::fresh("imp_src") else {
        return;
    };
    let Some(target) = Ledger::fresh("imp_dst") else {
        return;
    };
    for i in 0..5 {
        source
            .store
            .append(
                AppendRequest::single(
                    format!("s-{}", i % 2),
                    ExpectedVersion::Any,
                    vec![event("E", json!({ "i": i }))],
                )
                .with_idempotency_key(Some(format!("k-{i}"))),
            )
            .unwrap();
    }
    let events = all_events(&source.store);
    // A gap is refused and nothing is written.
    let err = target.store.import_batch(&events[1..]).unwrap_err();
    assert!(
        matches!(err, StoreError::ChainBroken { position: 1, .. }),
        "{err}"
    );
    // A tampered hash is refused.
    let mut tampered = events.clone();
    tampered[3].payload = json!({"i": 99});
    let err = target.store.import_batch(&tampered).unwrap_err();
    assert!(
        matches!(err, StoreError::ChainBroken { position: 4, .. }),
        "{err}"
    );
    assert_eq!(target.store.head().unwrap(), None);

    target.store.import_batch(&events[..2]).unwrap();
    target.store.import_batch(&events[2..]).unwrap();
    assert_eq!(all_events(&target.store), events);
    assert_intact(&target.store, 5);
    // Keys come along: a retry after the migration is recognised.
    let retry = target
        .store
        .append(
            AppendRequest::single("s-0", ExpectedVersion::Any, vec![event("E", json!({}))])
                .with_idempotency_key(Some("k-2".into())),
        )
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.events, vec![events[2].clone()]);
}

#[test]
fn the_database_refuses_update_delete_and_truncate() {
    let Some(ledger) = Ledger::fresh("immutable") else {
        return;
    };
    let store = &ledger.store;
    store
        .append(
            AppendRequest::single("s", ExpectedVersion::Any, vec![event("E", json!({}))])
                .with_idempotency_key(Some("k".into())),
        )
        .unwrap();
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE idempotency_keys SET last_position = 9",
        "DELETE FROM idempotency_keys",
        "TRUNCATE idempotency_keys",
    ] {
        let err = store.execute_raw_sql_for_tests(sql).unwrap_err();
        assert!(
            db_message(&err).contains("append-only"),
            "{sql}: {}",
            db_message(&err)
        );
    }
    assert_intact(store, 1);
    // The hook itself works and reports affected rows.
    assert_eq!(
        store
            .execute_raw_sql_for_tests("SELECT 1 UNION ALL SELECT 2")
            .unwrap(),
        2
    );
}

#[test]
fn corrupt_rows_are_reported_not_panicked_on() {
    let Some(ledger) = Ledger::fresh("corrupt") else {
        return;
    };
    let store = &ledger.store;
    store
        .append(AppendRequest::single(
            "s",
            ExpectedVersion::NoStream,
            vec![event("E", json!({}))],
        ))
        .unwrap();
    // Inserting is allowed (only UPDATE, DELETE and TRUNCATE are refused).
    store
        .execute_raw_sql_for_tests(
            "INSERT INTO events VALUES (2, 's', 2, 'Bad', 1, 'not json', '{}', \
             '2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z', 'x', 'y'); \
             INSERT INTO events VALUES (3, 't', 1, 'Bad', 1, '{}', \
             '{\"actor\":\"a\",\"transaction_id\":\"t\"}', 'yesterday', \
             '2024-01-01T00:00:00.000000Z', 'x', 'y');",
        )
        .unwrap();
    let items: Vec<_> = store.read_all(0).unwrap().collect();
    assert_eq!(
        items.len(),
        2,
        "the good event, then the error, then nothing"
    );
    assert!(items[0].is_ok());
    assert!(matches!(
        items[1],
        Err(StoreError::Corrupt { position: 2, .. })
    ));
    assert!(matches!(
        store.read_all(2).unwrap().next(),
        Some(Err(StoreError::Corrupt { position: 3, .. }))
    ));
    assert!(matches!(
        store.read_stream("t", 0),
        Err(StoreError::Corrupt { position: 3, .. })
    ));
    assert!(matches!(
        verify(store, &mut |_| {}),
        Err(StoreError::Corrupt { position: 2, .. })
    ));
}

#[test]
fn opens_through_a_store_url_in_the_default_schema() {
    let Some(ledger) = Ledger::fresh("url") else {
        return;
    };
    // `connect` (behind `open`) uses whatever schema the session's
    // search_path resolves to; point it at the test schema.
    let separator = if ledger.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{separator}options=-c%20search_path%3D{}",
        ledger.url, ledger.schema
    );
    let store = provledger_store::open(&url).unwrap();
    assert_eq!(store.backend(), "postgres");
    store
        .append(AppendRequest::single(
            "s",
            ExpectedVersion::NoStream,
            vec![event("E", json!({}))],
        ))
        .unwrap();
    assert_eq!(ledger.store.head().unwrap().map(|h| h.position), Some(1));
}

#[test]
fn schema_names_are_checked_and_newer_schemas_refused() {
    let Some(ledger) = Ledger::fresh("too_new") else {
        return;
    };
    let err = PostgresStore::connect_in_schema(&ledger.url, "x; DROP TABLE y").unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    ledger
        .store
        .execute_raw_sql_for_tests(
            "INSERT INTO store_schema_migrations VALUES (999, 'from the future', 'now')",
        )
        .unwrap();
    match PostgresStore::connect_in_schema(&ledger.url, &ledger.schema) {
        Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn processes_starting_at_once_migrate_once() {
    let Some(url) = test_url() else {
        return;
    };
    let schema = unique_test_schema("migrate");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            std::thread::spawn(move || PostgresStore::connect_in_schema(&url, &schema).map(|_| ()))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let store = PostgresStore::connect_in_schema(&url, &schema).unwrap();
    let applied = store
        .execute_raw_sql_for_tests("SELECT * FROM store_schema_migrations")
        .unwrap();
    drop(store);
    drop_schema(&url, &schema).unwrap();
    for result in results {
        result.unwrap();
    }
    assert_eq!(applied, 3, "each of the three migrations, applied once");
}

#[test]
fn a_closed_connection_is_reopened() {
    let Some(ledger) = Ledger::fresh("reconnect") else {
        return;
    };
    let store = &ledger.store;
    // The server ends this store's own session (as a restart or a network
    // failure would).
    assert!(store
        .execute_raw_sql_for_tests("SELECT pg_terminate_backend(pg_backend_pid())")
        .is_err());
    // The first call may fail on the dead connection; the next one reconnects.
    let _ = store.head();
    store
        .append(AppendRequest::single(
            "s",
            ExpectedVersion::NoStream,
            vec![event("E", json!({}))],
        ))
        .unwrap();
    assert_intact(store, 1);
}

// ---------------------------------------------------------------------------
// The concurrency proof.
//
// Threads and OS processes append at the same time, to their own streams and
// to one shared stream, while a follower reads the log by position as a
// projection would. The follower must see every event exactly once, in
// position order, with no gap (a gap would mean it read past an event that
// committed later), and the chain it saw must check out link by link.
// ---------------------------------------------------------------------------

const CHILD_SCHEMA: &str = "PROVLEDGER_TEST_CHILD_SCHEMA";
const CHILD_WRITER: &str = "PROVLEDGER_TEST_CHILD_WRITER";
const CHILD_COUNT: &str = "PROVLEDGER_TEST_CHILD_COUNT";
const PROCESSES: usize = 3;
const THREADS: usize = 3;
const EVENTS_PER_WRITER: u64 = 100;
const SHARED: &str = "shared";

/// One writer's workload: `count` single-event appends, rotating between its
/// own stream (exact version), the shared stream (optimistic retry on
/// conflict) and the shared stream with an idempotency key, retried once to
/// check that the retry is a replay.
fn write_events(store: &dyn EventStore, writer: &str, count: u64) {
    let own = format!("writer-{writer}");
    let mut own_version = 0;
    for seq in 0..count {
        let new = || vec![event("Wrote", json!({ "writer": writer, "seq": seq }))];
        match seq % 3 {
            0 => {
                let expected = if own_version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(own_version)
                };
                store
                    .append(AppendRequest::single(&own, expected, new()))
                    .unwrap_or_else(|e| panic!("{writer}#{seq}: {e}"));
                own_version += 1;
            }
            1 => {
                let mut attempts = 0;
                loop {
                    let version = store.stream_version(SHARED).unwrap();
                    let request =
                        AppendRequest::single(SHARED, ExpectedVersion::Exact(version), new());
                    match store.append(request) {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() && attempts < 10_000 => attempts += 1,
                        Err(e) => panic!("{writer}#{seq} after {attempts} retries: {e}"),
                    }
                }
            }
            _ => {
                let request = AppendRequest::single(SHARED, ExpectedVersion::Any, new())
                    .with_idempotency_key(Some(format!("{writer}-{seq}")));
                let first = store.append(request.clone()).unwrap();
                let retry = store
                    .append_batch(vec![request])
                    .unwrap()
                    .remove(0)
                    .unwrap();
                assert!(!first.replayed && retry.replayed, "{writer}#{seq}");
                assert_eq!(first.events, retry.events, "{writer}#{seq}");
            }
        }
    }
}

/// The child half of the proof: does nothing unless the parent set the
/// environment, then appends as one writer in its own OS process.
#[test]
fn concurrency_child() {
    let Ok(schema) = std::env::var(CHILD_SCHEMA) else {
        return;
    };
    let writer = std::env::var(CHILD_WRITER).expect("writer name");
    let count: u64 = std::env::var(CHILD_COUNT)
        .expect("count")
        .parse()
        .expect("count is a number");
    let url = test_url().expect("the parent passes the URL on");
    let store = PostgresStore::connect_in_schema(&url, &schema).expect("connect");
    write_events(&store, &writer, count);
    println!("child {writer} appended {count} events");
}

#[test]
fn concurrent_threads_and_processes_keep_a_gapless_chained_order() {
    let Some(ledger) = Ledger::fresh("concurrency") else {
        return;
    };
    let total = (PROCESSES + THREADS) as u64 * EVENTS_PER_WRITER;

    // The follower: polls by position without sleeping until the writers
    // are done, then drains once more.
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let store = ledger.reopen();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut checker = ChainChecker::new();
            let mut seen = Vec::new();
            let mut last = 0;
            let mut polls = 0u64;
            loop {
                // Read the flag before polling: the poll after the flag was
                // set sees every committed event.
                let finished = done.load(Ordering::SeqCst);
                let before = last;
                for event in store.read_all(last).expect("read_all") {
                    let event = event.expect("decode");
                    assert_eq!(event.position, last + 1, "the follower skipped a position");
                    checker
                        .check(&event)
                        .unwrap_or_else(|link| panic!("chain broken live: {link:?}"));
                    last = event.position;
                    seen.push(event);
                }
                polls += 1;
                if finished {
                    break (seen, polls);
                }
                assert!(Instant::now() < deadline, "the writers did not finish");
                if last == before {
                    std::thread::yield_now();
                }
            }
        })
    };

    // Processes first (they take longest to start), then threads.
    let exe = std::env::current_exe().expect("test binary path");
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "postgres::concurrency_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_SCHEMA, &ledger.schema)
                .env(CHILD_WRITER, format!("p{i}"))
                .env(CHILD_COUNT, EVENTS_PER_WRITER.to_string())
                .env("PROVLEDGER_TEST_POSTGRES_URL", &ledger.url)
                .output_spawned()
        })
        .collect();
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let store = ledger.reopen();
            std::thread::spawn(move || write_events(&store, &format!("t{i}"), EVENTS_PER_WRITER))
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer thread panicked");
    }
    for (i, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().expect("child process");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(&format!("child p{i} appended")),
            "child p{i} failed: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    done.store(true, Ordering::SeqCst);
    let (seen, polls) = follower.join().expect("follower panicked");

    // Every event exactly once, positions 1..=total in order.
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    let writes: BTreeSet<(String, u64)> = seen
        .iter()
        .map(|e| {
            (
                e.payload["writer"].as_str().unwrap().to_string(),
                e.payload["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(writes.len() as u64, total, "an event was written twice");
    let expected: BTreeSet<(String, u64)> = (0..PROCESSES)
        .map(|i| format!("p{i}"))
        .chain((0..THREADS).map(|i| format!("t{i}")))
        .flat_map(|w| (0..EVENTS_PER_WRITER).map(move |s| (w.clone(), s)))
        .collect();
    assert_eq!(writes, expected);
    // What the follower saw is what is stored, and the whole chain verifies.
    assert_eq!(seen, all_events(&ledger.store));
    assert_intact(&ledger.store, total);
    let shared = ledger.store.read_stream(SHARED, 0).unwrap();
    assert!(shared
        .iter()
        .enumerate()
        .all(|(i, e)| e.stream_version == i as u64 + 1));
    eprintln!("concurrency proof: {total} events, follower polled {polls} times");
}

/// `Command::spawn` with captured output, so a failing child's output can be
/// shown.
trait SpawnCaptured {
    fn output_spawned(&mut self) -> std::process::Child;
}

impl SpawnCaptured for Command {
    fn output_spawned(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the test binary")
    }
}

/// A database written before the Merkle tree existed (schema version 1)
/// gets its tree computed once, when it is opened, and then verifies.
#[test]
fn a_database_from_before_the_tree_gets_its_tree_on_open() {
    let Some(ledger) = Ledger::fresh("backfill") else {
        return;
    };
    let store = &ledger.store;
    for i in 0..29u64 {
        store
            .append(AppendRequest::single(
                format!("s{}", i % 4),
                ExpectedVersion::Any,
                (0..=i % 3).map(|n| event("E", json!({ "n": n }))).collect(),
            ))
            .unwrap();
    }
    let head = store.head().unwrap().unwrap().position;
    let root = provledger_store::merkle::root_at(store, head).unwrap();
    store
        .execute_raw_sql_for_tests(
            "DROP TABLE merkle_nodes; DROP FUNCTION provledger_append; \
             DELETE FROM store_schema_migrations WHERE version >= 2",
        )
        .unwrap();
    let reopened = ledger.reopen();
    assert_eq!(
        provledger_store::merkle::root_at(&reopened, head).unwrap(),
        root
    );
    assert_intact(&reopened, head);
    reopened
        .append(AppendRequest::single(
            "s0",
            ExpectedVersion::Any,
            vec![event("E", json!({}))],
        ))
        .unwrap();
    assert_intact(&reopened, head + 1);
}

/// One event for `stream` at `expected`, with `key` if any.
fn one(stream: &str, expected: ExpectedVersion, key: Option<&str>) -> AppendRequest {
    AppendRequest {
        idempotency_key: key.map(str::to_string),
        ..AppendRequest::single(stream, expected, vec![event("E", json!({}))])
    }
}

#[test]
fn a_handle_that_wrote_the_head_appends_with_one_statement_until_another_writes() {
    let Some(ledger) = Ledger::fresh("one_statement") else {
        return;
    };
    let first = &ledger.store;
    let other = ledger.reopen();
    // The first append of a handle reads the state under the lock; the
    // next ones predict it.
    first
        .append(one("a", ExpectedVersion::NoStream, None))
        .unwrap();
    first
        .append(one("a", ExpectedVersion::Exact(1), None))
        .unwrap();
    first
        .append(one("b", ExpectedVersion::NoStream, None))
        .unwrap();
    assert_eq!(first.one_statement_appends_for_tests(), 2);

    // Another handle writes: the first's prediction misses, writes
    // nothing, and the locked path appends right after the other's event.
    other
        .append(one("c", ExpectedVersion::NoStream, None))
        .unwrap();
    let outcome = first
        .append(one("a", ExpectedVersion::Exact(2), None))
        .unwrap();
    assert_eq!(first.one_statement_appends_for_tests(), 2);
    assert_eq!(outcome.events[0].position, 5);
    assert_eq!(outcome.events[0].stream_version, 3);
    // After a miss, the next append does not try; the one after does.
    first
        .append(one("b", ExpectedVersion::Exact(1), None))
        .unwrap();
    assert_eq!(first.one_statement_appends_for_tests(), 2);
    first
        .append(one("b", ExpectedVersion::Exact(2), None))
        .unwrap();
    assert_eq!(first.one_statement_appends_for_tests(), 3);
    assert_intact(first, 7);
}

#[test]
fn a_predicted_append_that_conflicts_or_retries_a_key_is_answered_as_under_the_lock() {
    let Some(ledger) = Ledger::fresh("one_statement_answers") else {
        return;
    };
    let store = &ledger.store;
    let first = store
        .append(one("a", ExpectedVersion::NoStream, Some("k1")))
        .unwrap();
    // Two requests of one batch on the same stream: the second expects the
    // version the first moves away from.
    let results = store
        .append_batch(vec![
            one("a", ExpectedVersion::Exact(1), Some("k2")),
            one("a", ExpectedVersion::Exact(1), None),
        ])
        .unwrap();
    assert_eq!(store.one_statement_appends_for_tests(), 1);
    let second = results[0].as_ref().unwrap().clone();
    assert!(matches!(
        &results[1],
        Err(StoreError::Conflict { actual: 2, .. })
    ));
    // A stream at another version than predicted: nothing is written, and
    // the locked path reports the conflict.
    let err = store
        .append(one("a", ExpectedVersion::Exact(1), None))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 2, .. }),
        "{err}"
    );
    // A retried key: the prediction misses, and the first result comes back.
    for (request, answer) in [
        (one("a", ExpectedVersion::NoStream, Some("k1")), &first),
        (one("a", ExpectedVersion::Exact(1), Some("k2")), &second),
    ] {
        let retried = store.append(request).unwrap();
        assert!(retried.replayed);
        assert_eq!(retried.events, answer.events);
    }
    assert_eq!(store.one_statement_appends_for_tests(), 1);
    assert_intact(store, 2);
}

#[test]
fn a_predicted_append_does_not_wait_for_a_lock_another_writer_holds() {
    let Some(ledger) = Ledger::fresh("one_statement_busy") else {
        return;
    };
    let store = &ledger.store;
    store
        .append(one("a", ExpectedVersion::NoStream, None))
        .unwrap();
    store
        .append(one("a", ExpectedVersion::Exact(1), None))
        .unwrap();
    assert_eq!(store.one_statement_appends_for_tests(), 1);

    // Another writer holds the append lock (class ASCII "pvlg", key the
    // events table's OID) in an open transaction.
    let mut holder = postgres::Client::connect(&ledger.url, postgres::NoTls).unwrap();
    holder
        .batch_execute(&format!("SET search_path TO {}", ledger.schema))
        .unwrap();
    let key = provledger_store::postgres::table_lock_key(&mut holder, "events").unwrap();
    let mut holding = holder.transaction().unwrap();
    holding
        .execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&0x7076_6c67_i32, &key],
        )
        .unwrap();
    let mut watcher = postgres::Client::connect(&ledger.url, postgres::NoTls).unwrap();
    std::thread::scope(|scope| {
        let append = scope.spawn(|| store.append(one("a", ExpectedVersion::Exact(2), None)));
        // The prediction does not wait: it gives up at once, and the
        // locked path waits for the lock.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                    &[],
                )
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the append never waited");
            std::thread::yield_now();
        }
        holding.commit().unwrap();
        let outcome = append.join().unwrap().unwrap();
        assert_eq!(outcome.events[0].position, 3);
    });
    assert_eq!(store.one_statement_appends_for_tests(), 1);
    assert_intact(store, 3);
}
