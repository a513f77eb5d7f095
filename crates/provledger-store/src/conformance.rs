//! The contract every [`EventStore`] backend must pass, as runnable checks.
//!
//! This module exists so that SQLite and PostgreSQL are held to one
//! definition of correct: gapless positions, optimistic concurrency,
//! all-or-nothing appends, idempotency, paged reads, tamper evidence,
//! append-only storage, faithful import and safe concurrent writers. It is
//! compiled into the library behind the `testing` feature (not `cfg(test)`,
//! not production API) so that each backend's integration tests can run it.
//!
//! A backend implements [`Backend`], a factory of fresh, isolated stores plus
//! the few operations only the backend can do (reopen, tamper with a row
//! behind the store's back). Then either call [`run_all`], or, better, let
//! [`conformance_tests!`](crate::conformance_tests) generate one `#[test]`
//! per check so failures are reported one by one:
//!
//! ```text
//! mod conformance {
//!     // One `#[test]` per check; the expression is evaluated in each test.
//!     provledger_store::conformance_tests!(super::SqliteBackend::new());
//! }
//! mod pg_conformance {
//!     // An expression giving `Option<impl Backend>`: `None` skips every test
//!     // (e.g. when no database URL is configured).
//!     provledger_store::conformance_tests!(optional: super::PgBackend::from_env());
//! }
//! ```
//!
//! Every check panics with a message naming the backend and what broke. The
//! checks are deliberately strict about exact round-trips (times to the
//! microsecond, JSON byte for byte as canonical text), because the hash chain
//! depends on them.

use std::collections::HashMap;
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use provledger_proof::merkle::{
    event_leaf, naive_root, parse_hash, verify_consistency, verify_inclusion, Hash,
};

use crate::merkle::{consistency_proof, inclusion_proof, root_at};
use crate::{
    hash, to_stored_precision, verify, AppendOutcome, AppendRequest, EventStore, ExpectedVersion,
    Head, Metadata, NewEvent, Position, RecordedEvent, StoreError, StreamAppend,
};

/// A backend under test: a factory of isolated stores and the operations only
/// the backend itself can perform.
///
/// Stores are handed to the checks as `Box<dyn EventStore>`; to find a store's
/// file or database again in [`Backend::tamper_payload`] and friends, keep a
/// [`StoreRegistry`] from the store to its location.
pub trait Backend {
    /// Short name for messages, e.g. `sqlite`.
    fn name(&self) -> &str;

    /// A new, empty store, isolated from every other store this returns.
    fn fresh(&self) -> Box<dyn EventStore>;

    /// Close `store` and open the same store again (new connection).
    ///
    /// The default opens a second handle with [`Backend::open_same`] and then
    /// drops the first.
    fn reopen(&self, store: Box<dyn EventStore>) -> Box<dyn EventStore> {
        let reopened = self.open_same(store.as_ref());
        drop(store);
        reopened
    }

    /// Another, independent handle (own connection) on the same store, as a
    /// second process would open it. Used for concurrent writers.
    fn open_same(&self, store: &dyn EventStore) -> Box<dyn EventStore>;

    /// Overwrite the stored payload of the event at `position` with
    /// `new_payload_json`, behind the store's back (dropping or bypassing
    /// the append-only protection as needed, and restoring it afterwards).
    fn tamper_payload(&self, store: &dyn EventStore, position: Position, new_payload_json: &str);

    /// Try a raw SQL `UPDATE` of the event at position 1; true if the
    /// database refused it.
    fn raw_update_is_refused(&self, store: &dyn EventStore) -> bool;

    /// Try a raw SQL `DELETE` of the event at position 1; true if the
    /// database refused it.
    fn raw_delete_is_refused(&self, store: &dyn EventStore) -> bool;
}

/// Remembers, for each store a [`Backend`] created, where it lives (a file
/// path, a connection string and schema), so that the backend's methods that
/// receive a `&dyn EventStore` can open their own raw connection to it.
///
/// Stores are identified by address, which is stable while a boxed store is
/// alive; register every store you hand out (including reopened ones).
#[derive(Debug)]
pub struct StoreRegistry<T> {
    entries: Mutex<HashMap<usize, T>>,
}

impl<T> Default for StoreRegistry<T> {
    fn default() -> Self {
        StoreRegistry {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> StoreRegistry<T> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(store: &dyn EventStore) -> usize {
        // The data pointer of the trait object: the boxed store's address.
        store as *const dyn EventStore as *const () as usize
    }

    /// Record where `store` lives.
    pub fn register(&self, store: &dyn EventStore, location: T) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(Self::key(store), location);
    }

    /// Where `store` lives.
    ///
    /// # Panics
    /// If `store` was never registered (a bug in the backend under test).
    pub fn location(&self, store: &dyn EventStore) -> T {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&Self::key(store))
            .cloned()
            .unwrap_or_else(|| {
                panic!("store not registered with this backend's StoreRegistry; register every store fresh/reopen/open_same returns")
            })
    }
}

/// A conformance check: panics if the backend breaks the contract.
pub type Check = fn(&dyn Backend);

/// Every check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[(&str, Check)] = &[
    ("append_and_read_back", append_and_read_back),
    (
        "positions_and_versions_are_gapless",
        positions_and_versions_are_gapless,
    ),
    ("conflict_writes_nothing", conflict_writes_nothing),
    (
        "multi_stream_append_is_all_or_nothing",
        multi_stream_append_is_all_or_nothing,
    ),
    ("empty_append_is_refused", empty_append_is_refused),
    ("idempotent_retry_is_a_no_op", idempotent_retry_is_a_no_op),
    (
        "find_idempotent_returns_first_result",
        find_idempotent_returns_first_result,
    ),
    (
        "append_batch_results_are_independent",
        append_batch_results_are_independent,
    ),
    ("read_all_crosses_pages", read_all_crosses_pages),
    ("append_while_reading_all", append_while_reading_all),
    ("read_stream_after_version", read_stream_after_version),
    ("stream_ids_by_prefix", stream_ids_by_prefix),
    ("head_tracks_last_event", head_tracks_last_event),
    ("verify_intact_ledger", verify_intact_ledger),
    (
        "verify_names_tampered_position",
        verify_names_tampered_position,
    ),
    ("raw_update_is_refused", raw_update_is_refused),
    ("raw_delete_is_refused", raw_delete_is_refused),
    ("import_preserves_hashes", import_preserves_hashes),
    (
        "import_refuses_broken_batches",
        import_refuses_broken_batches,
    ),
    ("import_large_batches", import_large_batches),
    (
        "concurrent_appends_lose_no_update",
        concurrent_appends_lose_no_update,
    ),
    ("merkle_tree_follows_appends", merkle_tree_follows_appends),
    (
        "merkle_tree_follows_other_writers",
        merkle_tree_follows_other_writers,
    ),
    ("merkle_root_of_fixed_events", merkle_root_of_fixed_events),
];

/// Run every check against `backend`; panics listing each check that failed.
///
/// Prefer [`conformance_tests!`](crate::conformance_tests), which reports
/// each check as its own test.
pub fn run_all(backend: &dyn Backend) {
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(backend)));
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    assert!(
        failed.is_empty(),
        "[{}] {} of {} conformance checks failed: {} (see the panic messages above)",
        backend.name(),
        failed.len(),
        CHECKS.len(),
        failed.join(", ")
    );
}

/// Generate one `#[test]` per conformance check for a backend.
///
/// * `conformance_tests!(EXPR)`: `EXPR` evaluates to a value whose type
///   implements [`Backend`](crate::conformance::Backend); it is evaluated
///   afresh in every test.
/// * `conformance_tests!(optional: EXPR)`: `EXPR` evaluates to
///   `Option<impl Backend>`; `None` makes each test print a note and pass
///   (for backends that need an external server).
///
/// Invoke it inside its own module: it defines functions named after the
/// checks, plus `conformance_suite_is_complete`, which fails if this list and
/// [`CHECKS`](crate::conformance::CHECKS) ever disagree.
#[macro_export]
macro_rules! conformance_tests {
    (optional: $backend:expr) => {
        $crate::conformance_tests!(@generate ($backend);
            append_and_read_back,
            positions_and_versions_are_gapless,
            conflict_writes_nothing,
            multi_stream_append_is_all_or_nothing,
            empty_append_is_refused,
            idempotent_retry_is_a_no_op,
            find_idempotent_returns_first_result,
            append_batch_results_are_independent,
            read_all_crosses_pages,
            append_while_reading_all,
            read_stream_after_version,
            stream_ids_by_prefix,
            head_tracks_last_event,
            verify_intact_ledger,
            verify_names_tampered_position,
            raw_update_is_refused,
            raw_delete_is_refused,
            import_preserves_hashes,
            import_refuses_broken_batches,
            import_large_batches,
            concurrent_appends_lose_no_update,
            merkle_tree_follows_appends,
            merkle_tree_follows_other_writers,
            merkle_root_of_fixed_events,
        );
    };
    (@generate ($backend:expr); $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                match $backend {
                    ::core::option::Option::Some(backend) => {
                        $crate::conformance::$check(&backend)
                    }
                    ::core::option::Option::None => ::std::eprintln!(
                        "skipped conformance check {}: backend not available",
                        ::core::stringify!($check)
                    ),
                }
            }
        )+

        #[test]
        fn conformance_suite_is_complete() {
            let generated: &[&str] = &[$(::core::stringify!($check)),+];
            let known: ::std::vec::Vec<&str> =
                $crate::conformance::CHECKS.iter().map(|(name, _)| *name).collect();
            ::core::assert_eq!(generated, known.as_slice(), "conformance_tests! is out of date");
        }
    };
    ($backend:expr) => {
        $crate::conformance_tests!(optional: ::core::option::Option::Some($backend));
    };
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Panic with the backend's name in front of the message.
macro_rules! fail {
    ($backend:expr, $($arg:tt)+) => {
        panic!("[{}] {}", $backend.name(), format!($($arg)+))
    };
}

/// Assert with the backend's name in front of the message.
macro_rules! ensure {
    ($backend:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            fail!($backend, $($arg)+);
        }
    };
}

/// Assert equality with the backend's name in front of the message.
macro_rules! ensure_eq {
    ($backend:expr, $left:expr, $right:expr, $($arg:tt)+) => {{
        let left = &$left;
        let right = &$right;
        if left != right {
            fail!(
                $backend,
                "{}\n  actual:   {:?}\n  expected: {:?}",
                format!($($arg)+),
                left,
                right
            );
        }
    }};
}

/// A business time with sub-microsecond digits (which the store truncates).
fn at(offset_seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_709_285_400 + offset_seconds, 123_456_789)
        .unwrap_or(DateTime::UNIX_EPOCH)
}

fn metadata() -> Metadata {
    Metadata {
        actor: "conformance@example.com".into(),
        transaction_id: "tx-conformance".into(),
        ..Metadata::default()
    }
}

/// A new event of `event_type` with `payload`.
fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        schema_version: 1,
        payload,
        metadata: metadata(),
        occurred_at: at(0),
    }
}

/// `n` numbered events.
fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("Numbered", json!({ "n": i })))
        .collect()
}

fn single(stream: &str, expected: ExpectedVersion, n: usize) -> AppendRequest {
    AppendRequest::single(stream, expected, events(n))
}

fn append_ok(b: &dyn Backend, store: &dyn EventStore, request: AppendRequest) -> AppendOutcome {
    match store.append(request.clone()) {
        Ok(outcome) => outcome,
        Err(e) => fail!(b, "append failed: {e}\n  request: {request:?}"),
    }
}

fn append_err(b: &dyn Backend, store: &dyn EventStore, request: AppendRequest) -> StoreError {
    match store.append(request.clone()) {
        Ok(outcome) => fail!(
            b,
            "append should have failed but wrote positions {:?}\n  request: {request:?}",
            outcome.positions()
        ),
        Err(e) => e,
    }
}

fn batch_ok(
    b: &dyn Backend,
    store: &dyn EventStore,
    requests: Vec<AppendRequest>,
) -> Vec<Result<AppendOutcome, StoreError>> {
    let n = requests.len();
    match store.append_batch(requests) {
        Ok(results) => {
            ensure_eq!(
                b,
                results.len(),
                n,
                "append_batch must return one result per request"
            );
            results
        }
        Err(e) => fail!(b, "append_batch failed as a whole: {e}"),
    }
}

fn all_events(b: &dyn Backend, store: &dyn EventStore, after: Position) -> Vec<RecordedEvent> {
    let iter = match store.read_all(after) {
        Ok(iter) => iter,
        Err(e) => fail!(b, "read_all({after}) failed: {e}"),
    };
    iter.map(|e| e.unwrap_or_else(|e| fail!(b, "read_all({after}) yielded an error: {e}")))
        .collect()
}

fn read_stream(
    b: &dyn Backend,
    store: &dyn EventStore,
    stream: &str,
    after: u64,
) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, after)
        .unwrap_or_else(|e| fail!(b, "read_stream({stream:?}, {after}) failed: {e}"))
}

fn version(b: &dyn Backend, store: &dyn EventStore, stream: &str) -> u64 {
    store
        .stream_version(stream)
        .unwrap_or_else(|e| fail!(b, "stream_version({stream:?}) failed: {e}"))
}

fn head(b: &dyn Backend, store: &dyn EventStore) -> Option<Head> {
    store
        .head()
        .unwrap_or_else(|e| fail!(b, "head() failed: {e}"))
}

fn head_position(b: &dyn Backend, store: &dyn EventStore) -> Position {
    head(b, store).map_or(0, |h| h.position)
}

fn stream_ids(b: &dyn Backend, store: &dyn EventStore, prefix: &str) -> Vec<String> {
    store
        .stream_ids(prefix)
        .unwrap_or_else(|e| fail!(b, "stream_ids({prefix:?}) failed: {e}"))
}

fn assert_intact(b: &dyn Backend, store: &dyn EventStore, context: &str) {
    let report =
        verify(store, &mut |_| {}).unwrap_or_else(|e| fail!(b, "verify failed ({context}): {e}"));
    ensure!(
        b,
        report.is_intact(),
        "verify found a broken chain ({context}): {:?}",
        report.first_broken
    );
}

fn assert_conflict(
    b: &dyn Backend,
    error: &StoreError,
    stream: &str,
    expected: ExpectedVersion,
    actual: u64,
) {
    match error {
        StoreError::Conflict {
            stream_id,
            expected: e,
            actual: a,
        } if stream_id == stream && *e == expected && *a == actual => {}
        other => fail!(
            b,
            "expected Conflict {{ stream_id: {stream:?}, expected: {expected:?}, actual: {actual} }}, got {other:?}"
        ),
    }
}

/// A small ledger over three streams (12 events), some with idempotency keys.
fn build_ledger(b: &dyn Backend, store: &dyn EventStore) -> Vec<RecordedEvent> {
    append_ok(b, store, single("order-1", ExpectedVersion::NoStream, 3));
    append_ok(
        b,
        store,
        AppendRequest {
            appends: vec![
                StreamAppend {
                    stream_id: "order-2".into(),
                    expected: ExpectedVersion::NoStream,
                    events: events(2),
                },
                StreamAppend {
                    stream_id: "org-1".into(),
                    expected: ExpectedVersion::NoStream,
                    events: events(1),
                },
            ],
            idempotency_key: Some("build-1".into()),
        },
    );
    append_ok(b, store, single("order-1", ExpectedVersion::Exact(3), 2));
    append_ok(
        b,
        store,
        single("order-2", ExpectedVersion::Any, 4).with_idempotency_key(Some("build-2".into())),
    );
    let all = all_events(b, store, 0);
    ensure_eq!(b, all.len(), 12, "the test ledger should have 12 events");
    all
}

/// Run `f` on another thread and fail if it does not finish in `limit`
/// (a deadlock must fail the check, not hang the test run).
fn within<T: Send + 'static>(
    b: &dyn Backend,
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let value = f();
        let _ = sender.send(());
        value
    });
    match receiver.recv_timeout(limit) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => fail!(
            b,
            "{what} did not finish within {limit:?}: a deadlock or lock wait?"
        ),
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// Appended events come back with every field exactly as stored: payload and
/// metadata JSON, times truncated to microseconds, hashes chained, from
/// `append`'s outcome, `read_stream`, `read_all`, and after a reopen.
pub fn append_and_read_back(b: &dyn Backend) {
    let store = b.fresh();
    let payload = json!({
        "order": "WO-1001",
        "lines": [{ "sku": "M365-E3", "qty": 25 }, { "sku": "EXO-P1", "qty": 1 }],
        "note": "Grüße — 日本語 — 한국어 \"quoted\" \\ back\nslash\ttab \u{0} nul \u{1F600}",
        "nested": { "z": 1, "a": null, "m": [true, false, [], {}] },
        "big": u64::MAX,
        "neg": i64::MIN,
        "half": 0.5,
        "tiny": 1e-7,
        "huge": 1.5e300,
        // Floats whose shortest form parses back one ULP off without exact
        // float parsing (serde_json's `float_roundtrip`).
        "floats": [
            985.690_694_632_869_5,
            212.918_907_267_134_6,
            1.071_566_039_146_582_6e-75,
            0.300_000_000_000_000_04,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0
        ],
        "empty": ""
    });
    let full_metadata = Metadata {
        actor: "alice@example.com".into(),
        transaction_id: "tx-42".into(),
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cmd-7".into()),
        idempotency_key: None,
        request_fingerprint: Some("ab".repeat(32)),
        via: Some("cli".into()),
        os_user: Some("operator".into()),
        token_id: None,
    };
    let first = NewEvent {
        event_type: "ContactChanged".into(),
        schema_version: 3,
        payload: payload.clone(),
        metadata: full_metadata.clone(),
        occurred_at: at(0),
    };
    let second = NewEvent {
        event_type: "EmailSent".into(),
        schema_version: u32::MAX,
        payload: json!({}),
        metadata: metadata(),
        occurred_at: at(-86_400 * 365 * 30),
    };
    let before = to_stored_precision(Utc::now());
    let outcome = append_ok(
        b,
        store.as_ref(),
        AppendRequest::single(
            "order-WO-1001",
            ExpectedVersion::NoStream,
            vec![first.clone(), second.clone()],
        ),
    );
    let after = Utc::now();
    ensure!(b, !outcome.replayed, "a first append must not be replayed");
    ensure_eq!(
        b,
        outcome.positions(),
        vec![1, 2],
        "positions of the first events"
    );

    for (written, (input, version)) in outcome.events.iter().zip([(&first, 1), (&second, 2)]) {
        let what = format!("event {}", written.position);
        ensure_eq!(b, written.stream_id, "order-WO-1001", "{what}: stream_id");
        ensure_eq!(b, written.stream_version, version, "{what}: stream_version");
        ensure_eq!(
            b,
            written.event_type,
            input.event_type,
            "{what}: event_type"
        );
        ensure_eq!(
            b,
            written.schema_version,
            input.schema_version,
            "{what}: schema_version"
        );
        ensure_eq!(b, written.payload, input.payload, "{what}: payload");
        ensure_eq!(b, written.metadata, input.metadata, "{what}: metadata");
        ensure_eq!(
            b,
            written.occurred_at,
            to_stored_precision(input.occurred_at),
            "{what}: occurred_at must be the input truncated to microseconds"
        );
        ensure!(
            b,
            written.recorded_at >= before && written.recorded_at <= after,
            "{what}: recorded_at {} is not between {before} and {after}",
            written.recorded_at
        );
        ensure_eq!(
            b,
            written.recorded_at,
            to_stored_precision(written.recorded_at),
            "{what}: recorded_at must have microsecond precision"
        );
        ensure_eq!(b, written.hash, hash::event_hash(written), "{what}: hash");
    }
    ensure_eq!(
        b,
        outcome.events[0].prev_hash,
        hash::GENESIS_HASH,
        "the first event's prev_hash"
    );
    ensure_eq!(
        b,
        outcome.events[1].prev_hash,
        outcome.events[0].hash,
        "the second event's prev_hash"
    );

    ensure_eq!(
        b,
        read_stream(b, store.as_ref(), "order-WO-1001", 0),
        outcome.events,
        "read_stream must return exactly what append returned"
    );
    ensure_eq!(
        b,
        all_events(b, store.as_ref(), 0),
        outcome.events,
        "read_all must return exactly what append returned"
    );
    let store = b.reopen(store);
    ensure_eq!(
        b,
        all_events(b, store.as_ref(), 0),
        outcome.events,
        "after reopening, read_all must return exactly what append returned"
    );
    assert_intact(b, store.as_ref(), "after a round trip");
}

/// Positions are 1, 2, 3… across streams; each stream's versions are 1, 2, 3….
pub fn positions_and_versions_are_gapless(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    append_ok(b, s, single("a", ExpectedVersion::NoStream, 2));
    append_ok(b, s, single("b", ExpectedVersion::Exact(0), 1));
    append_ok(b, s, single("a", ExpectedVersion::Exact(2), 1));
    append_ok(b, s, single("c", ExpectedVersion::Any, 3));
    append_ok(b, s, single("b", ExpectedVersion::Any, 2));

    let all = all_events(b, s, 0);
    let positions: Vec<Position> = all.iter().map(|e| e.position).collect();
    ensure_eq!(
        b,
        positions,
        (1..=9).collect::<Vec<_>>(),
        "global positions"
    );
    for (stream, n) in [("a", 3), ("b", 3), ("c", 3)] {
        let versions: Vec<u64> = all
            .iter()
            .filter(|e| e.stream_id == stream)
            .map(|e| e.stream_version)
            .collect();
        ensure_eq!(
            b,
            versions,
            (1..=n).collect::<Vec<_>>(),
            "versions of stream {stream}"
        );
        ensure_eq!(b, version(b, s, stream), n, "stream_version({stream})");
    }
    ensure_eq!(
        b,
        version(b, s, "missing"),
        0,
        "stream_version of a missing stream"
    );
}

/// A wrong expected version is a `Conflict` carrying the actual version, and
/// writes nothing (not even a gap in positions).
pub fn conflict_writes_nothing(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    append_ok(b, s, single("s", ExpectedVersion::NoStream, 2));
    let before = all_events(b, s, 0);

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(3),
    ] {
        let error = append_err(b, s, single("s", expected, 1));
        ensure!(b, error.is_conflict(), "is_conflict() for {error:?}");
        assert_conflict(b, &error, "s", expected, 2);
    }
    ensure_eq!(
        b,
        all_events(b, s, 0),
        before,
        "conflicting appends must write nothing"
    );
    ensure_eq!(b, version(b, s, "s"), 2, "stream version after conflicts");

    let next = append_ok(b, s, single("s", ExpectedVersion::Exact(2), 1));
    ensure_eq!(
        b,
        next.positions(),
        vec![3],
        "the append after conflicts must take the next position (no gap)"
    );
    ensure_eq!(
        b,
        next.events[0].prev_hash,
        before[1].hash,
        "chain after conflicts"
    );
}

/// A request over several streams writes all of them or none.
pub fn multi_stream_append_is_all_or_nothing(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    append_ok(b, s, single("b", ExpectedVersion::NoStream, 1));
    let request = |expected_b| AppendRequest {
        appends: vec![
            StreamAppend {
                stream_id: "a".into(),
                expected: ExpectedVersion::NoStream,
                events: events(2),
            },
            StreamAppend {
                stream_id: "b".into(),
                expected: expected_b,
                events: events(1),
            },
        ],
        idempotency_key: None,
    };
    let error = append_err(b, s, request(ExpectedVersion::Exact(5)));
    assert_conflict(b, &error, "b", ExpectedVersion::Exact(5), 1);
    ensure_eq!(
        b,
        version(b, s, "a"),
        0,
        "stream a must not exist after the failed request"
    );
    ensure_eq!(
        b,
        stream_ids(b, s, ""),
        vec!["b".to_string()],
        "stream ids after failure"
    );
    ensure_eq!(b, head_position(b, s), 1, "head after the failed request");

    let outcome = append_ok(b, s, request(ExpectedVersion::Exact(1)));
    ensure_eq!(
        b,
        outcome.positions(),
        vec![2, 3, 4],
        "positions of the multi-stream append"
    );
    let streams: Vec<(&str, u64)> = outcome
        .events
        .iter()
        .map(|e| (e.stream_id.as_str(), e.stream_version))
        .collect();
    ensure_eq!(
        b,
        streams,
        vec![("a", 1), ("a", 2), ("b", 2)],
        "events are written in request order"
    );
    assert_intact(b, s, "after a multi-stream append");
}

/// A request without events is `EmptyAppend` and writes nothing.
pub fn empty_append_is_refused(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    append_ok(b, s, single("x", ExpectedVersion::NoStream, 1));
    let empty_stream = AppendRequest {
        appends: vec![
            StreamAppend {
                stream_id: "y".into(),
                expected: ExpectedVersion::NoStream,
                events: events(1),
            },
            StreamAppend {
                stream_id: "z".into(),
                expected: ExpectedVersion::NoStream,
                events: vec![],
            },
        ],
        idempotency_key: None,
    };
    for request in [
        AppendRequest::default(),
        single("x", ExpectedVersion::Exact(1), 0),
        empty_stream.clone(),
    ] {
        let error = append_err(b, s, request.clone());
        ensure!(
            b,
            matches!(error, StoreError::EmptyAppend),
            "expected EmptyAppend for {request:?}, got {error:?}"
        );
    }
    ensure_eq!(b, head_position(b, s), 1, "head after empty appends");
    ensure_eq!(
        b,
        version(b, s, "y"),
        0,
        "stream y after a request with an empty part"
    );

    let results = batch_ok(
        b,
        s,
        vec![
            single("x", ExpectedVersion::Exact(1), 1),
            empty_stream,
            single("x", ExpectedVersion::Exact(2), 1),
        ],
    );
    ensure!(
        b,
        matches!(results[1], Err(StoreError::EmptyAppend)),
        "an empty request in a batch fails alone, got {:?}",
        results[1]
    );
    let positions: Vec<Vec<Position>> = [&results[0], &results[2]]
        .iter()
        .map(|r| match r {
            Ok(o) => o.positions(),
            Err(e) => fail!(b, "a valid request next to an empty one failed: {e}"),
        })
        .collect();
    ensure_eq!(
        b,
        positions,
        vec![vec![2], vec![3]],
        "positions around an empty request"
    );
    match s.append_batch(Vec::new()) {
        Ok(results) => ensure!(b, results.is_empty(), "an empty batch has no results"),
        Err(e) => fail!(b, "an empty batch must succeed trivially: {e}"),
    }
    ensure_eq!(b, head_position(b, s), 3, "head after the batch");
}

/// A request whose idempotency key was seen returns the first result,
/// replayed, and writes nothing — even from a new connection, even if its
/// content differs; a key whose request failed is not recorded.
pub fn idempotent_retry_is_a_no_op(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    let request = AppendRequest {
        appends: vec![
            StreamAppend {
                stream_id: "x".into(),
                expected: ExpectedVersion::NoStream,
                events: events(2),
            },
            StreamAppend {
                stream_id: "y".into(),
                expected: ExpectedVersion::NoStream,
                events: events(1),
            },
        ],
        idempotency_key: Some("cmd-1".into()),
    };
    let first = append_ok(b, s, request.clone());
    ensure!(b, !first.replayed, "the first request must not be replayed");
    for e in &first.events {
        ensure_eq!(
            b,
            e.metadata.idempotency_key.as_deref(),
            Some("cmd-1"),
            "metadata.idempotency_key of event {}",
            e.position
        );
    }
    let again = append_ok(b, s, request.clone());
    ensure!(b, again.replayed, "a retry must be replayed");
    ensure_eq!(
        b,
        again.events,
        first.events,
        "a retry returns the first result"
    );

    let different =
        single("x", ExpectedVersion::NoStream, 5).with_idempotency_key(Some("cmd-1".into()));
    let replay = append_ok(b, s, different);
    ensure!(b, replay.replayed, "a seen key wins over a changed request");
    ensure_eq!(
        b,
        replay.events,
        first.events,
        "a seen key returns the first result"
    );
    ensure_eq!(b, head_position(b, s), 3, "retries must write nothing");

    // A failed request does not burn its key.
    let conflicting =
        single("x", ExpectedVersion::Exact(9), 1).with_idempotency_key(Some("cmd-2".into()));
    let error = append_err(b, s, conflicting);
    assert_conflict(b, &error, "x", ExpectedVersion::Exact(9), 2);
    let fixed = append_ok(
        b,
        s,
        single("x", ExpectedVersion::Exact(2), 1).with_idempotency_key(Some("cmd-2".into())),
    );
    ensure!(
        b,
        !fixed.replayed,
        "a key whose request failed must not be recorded"
    );
    ensure_eq!(
        b,
        fixed.positions(),
        vec![4],
        "position of the corrected request"
    );

    // The same key twice in one batch: the second is a replay of the first.
    let results = batch_ok(
        b,
        s,
        vec![
            single("z", ExpectedVersion::NoStream, 1).with_idempotency_key(Some("cmd-3".into())),
            single("z", ExpectedVersion::NoStream, 1).with_idempotency_key(Some("cmd-3".into())),
        ],
    );
    match (&results[0], &results[1]) {
        (Ok(a), Ok(r)) => {
            ensure!(
                b,
                !a.replayed && r.replayed,
                "first written, second replayed"
            );
            ensure_eq!(
                b,
                r.events,
                a.events,
                "the in-batch replay returns the first result"
            );
        }
        other => fail!(b, "the same key twice in a batch: {other:?}"),
    }

    let store = b.reopen(store);
    let s = store.as_ref();
    let after_reopen = append_ok(b, s, request);
    ensure!(b, after_reopen.replayed, "keys survive a reopen");
    ensure_eq!(
        b,
        after_reopen.events,
        first.events,
        "first result after a reopen"
    );
    ensure_eq!(b, head_position(b, s), 5, "nothing written by replays");
    assert_intact(b, s, "after idempotent retries");
}

/// `find_idempotent` returns exactly the events a key's request appended (in
/// position order, across streams), `None` for an unknown key or one whose
/// request failed, and survives a reopen and an import.
pub fn find_idempotent_returns_first_result(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    let find = |s: &dyn EventStore, key: &str| {
        s.find_idempotent(key)
            .unwrap_or_else(|e| fail!(b, "find_idempotent({key:?}) failed: {e}"))
    };
    ensure_eq!(
        b,
        find(s, "cmd-1"),
        None,
        "find_idempotent on an empty store"
    );
    append_ok(b, s, single("x", ExpectedVersion::NoStream, 2));
    let keyed = append_ok(
        b,
        s,
        AppendRequest {
            appends: vec![
                StreamAppend {
                    stream_id: "x".into(),
                    expected: ExpectedVersion::Exact(2),
                    events: events(2),
                },
                StreamAppend {
                    stream_id: "y".into(),
                    expected: ExpectedVersion::NoStream,
                    events: events(1),
                },
            ],
            idempotency_key: Some("cmd-1".into()),
        },
    );
    append_ok(
        b,
        s,
        single("x", ExpectedVersion::Exact(4), 1).with_idempotency_key(Some("cmd-2".into())),
    );
    let _ = append_err(
        b,
        s,
        single("x", ExpectedVersion::Exact(1), 1).with_idempotency_key(Some("cmd-3".into())),
    );
    ensure_eq!(
        b,
        find(s, "cmd-1"),
        Some(keyed.events.clone()),
        "find_idempotent(cmd-1)"
    );
    ensure_eq!(
        b,
        find(s, "cmd-2").map(|events| events.len()),
        Some(1),
        "find_idempotent(cmd-2)"
    );
    ensure_eq!(b, find(s, "cmd-3"), None, "a key whose request failed");
    ensure_eq!(b, find(s, "unknown"), None, "an unknown key");
    ensure_eq!(b, find(s, "cmd-"), None, "a prefix of a key is not the key");

    let store = b.reopen(store);
    ensure_eq!(
        b,
        find(store.as_ref(), "cmd-1"),
        Some(keyed.events.clone()),
        "find_idempotent after a reopen"
    );
    let target = b.fresh();
    if let Err(e) = target.import_batch(&all_events(b, store.as_ref(), 0)) {
        fail!(b, "import failed: {e}");
    }
    ensure_eq!(
        b,
        find(target.as_ref(), "cmd-1"),
        Some(keyed.events),
        "find_idempotent after an import"
    );
}

/// In a batch, a conflicting request (even one that wrote to another stream
/// before failing) fails alone; the others commit, with contiguous
/// positions, and later requests see earlier ones.
pub fn append_batch_results_are_independent(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    append_ok(b, s, single("m", ExpectedVersion::NoStream, 1));
    let results = batch_ok(
        b,
        s,
        vec![
            single("p", ExpectedVersion::NoStream, 2),
            // Writes to "n" before failing on "m": all of it must be undone.
            AppendRequest {
                appends: vec![
                    StreamAppend {
                        stream_id: "n".into(),
                        expected: ExpectedVersion::NoStream,
                        events: events(2),
                    },
                    StreamAppend {
                        stream_id: "m".into(),
                        expected: ExpectedVersion::Exact(0),
                        events: events(1),
                    },
                ],
                idempotency_key: Some("batch-failed".into()),
            },
            single("q", ExpectedVersion::NoStream, 1),
            single("p", ExpectedVersion::Exact(2), 1),
        ],
    );
    let positions = |i: usize| match &results[i] {
        Ok(o) => o.positions(),
        Err(e) => fail!(b, "request {i} of the batch failed: {e}"),
    };
    ensure_eq!(b, positions(0), vec![2, 3], "request 0");
    match &results[1] {
        Err(error) => assert_conflict(b, error, "m", ExpectedVersion::Exact(0), 1),
        Ok(o) => fail!(b, "request 1 should conflict, wrote {:?}", o.positions()),
    }
    ensure_eq!(
        b,
        positions(2),
        vec![4],
        "request 2 (after the conflict, no gap)"
    );
    ensure_eq!(b, positions(3), vec![5], "request 3 (sees request 0)");
    ensure_eq!(
        b,
        version(b, s, "m"),
        1,
        "the conflicting request wrote nothing"
    );
    ensure_eq!(
        b,
        version(b, s, "n"),
        0,
        "the conflicting request's first stream"
    );
    ensure_eq!(b, version(b, s, "p"), 3, "stream p");

    let written: Vec<RecordedEvent> = results
        .into_iter()
        .filter_map(Result::ok)
        .flat_map(|o| o.events)
        .collect();
    ensure_eq!(b, all_events(b, s, 1), written, "read_all after the batch");
    assert_intact(b, s, "after a batch with a conflict");
}

/// `read_all` streams the whole log in order across page boundaries, from
/// any position.
pub fn read_all_crosses_pages(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    const STREAMS: usize = 26;
    const PER_STREAM: usize = 100;
    let total = (STREAMS * PER_STREAM) as Position;
    let requests = (0..STREAMS)
        .map(|i| {
            single(
                &format!("page-{i:02}"),
                ExpectedVersion::NoStream,
                PER_STREAM,
            )
        })
        .collect();
    let written: Vec<RecordedEvent> = batch_ok(b, s, requests)
        .into_iter()
        .flat_map(|r| {
            r.unwrap_or_else(|e| fail!(b, "bulk append failed: {e}"))
                .events
        })
        .collect();

    let all = all_events(b, s, 0);
    ensure_eq!(b, all.len() as u64, total, "read_all(0) count");
    ensure!(
        b,
        all == written,
        "read_all(0) must equal what was written, in order"
    );
    for after in [1, 499, 999, 1000, 1001, 1999, 2000, 2001, 2599] {
        let tail = all_events(b, s, after);
        let positions: Vec<Position> = tail.iter().map(|e| e.position).collect();
        ensure!(
            b,
            positions == ((after + 1)..=total).collect::<Vec<_>>(),
            "read_all({after}) must yield positions {}..={total}, got {} events from {:?} to {:?}",
            after + 1,
            positions.len(),
            positions.first(),
            positions.last()
        );
    }
    for after in [total, total + 1, u64::MAX] {
        ensure!(
            b,
            all_events(b, s, after).is_empty(),
            "read_all({after}) must be empty"
        );
    }
    let first_three: Vec<Position> = s
        .read_all(0)
        .unwrap_or_else(|e| fail!(b, "read_all failed: {e}"))
        .take(3)
        .map(|e| e.map_or(0, |e| e.position))
        .collect();
    ensure_eq!(b, first_three, vec![1, 2, 3], "a partly consumed read_all");

    // The same events with the payload as stored text, across page ends.
    for after in [0, 999, 2001] {
        let texts: Vec<RecordedEvent<String>> = s
            .read_all_json(after)
            .unwrap_or_else(|e| fail!(b, "read_all_json({after}) failed: {e}"))
            .map(|e| e.unwrap_or_else(|e| fail!(b, "read_all_json({after}) yielded {e}")))
            .collect();
        let parsed: Vec<RecordedEvent> = texts
            .into_iter()
            .map(|e| {
                let (event, text) = e.replace_payload(serde_json::Value::Null);
                let payload = serde_json::from_str(&text).unwrap_or_else(|e| {
                    fail!(
                        b,
                        "read_all_json: payload at {} is not JSON: {e}",
                        event.position
                    )
                });
                event.replace_payload(payload).0
            })
            .collect();
        ensure!(
            b,
            parsed.as_slice() == &all[after as usize..],
            "read_all_json({after}) must yield what read_all({after}) yields, payloads as text"
        );
    }
}

/// A live `read_all` iterator does not block appends on the same handle
/// (it holds no lock between pages), and sees a consistent log.
pub fn append_while_reading_all(b: &dyn Backend) {
    let store = b.fresh();
    let requests = (0..3)
        .map(|i| single(&format!("r-{i}"), ExpectedVersion::NoStream, 1000))
        .collect();
    for r in batch_ok(b, store.as_ref(), requests) {
        r.unwrap_or_else(|e| fail!(b, "bulk append failed: {e}"));
    }
    let name = b.name().to_string();
    let (count, last) = within(
        b,
        Duration::from_secs(60),
        "append during read_all",
        move || {
            let iter = store
                .read_all(0)
                .unwrap_or_else(|e| panic!("[{name}] read_all failed: {e}"));
            let mut count = 0u64;
            let mut last = 0;
            for event in iter {
                let event = event.unwrap_or_else(|e| panic!("[{name}] read_all yielded {e}"));
                assert_eq!(
                    event.position,
                    last + 1,
                    "[{name}] read_all order during appends"
                );
                last = event.position;
                count += 1;
                if count == 10 || count == 1500 {
                    store
                        .append(single("w", ExpectedVersion::Any, 1))
                        .unwrap_or_else(|e| panic!("[{name}] append during read_all failed: {e}"));
                }
            }
            (count, last)
        },
    );
    ensure!(
        b,
        (3000..=3002).contains(&count) && count == last,
        "read_all during appends yielded {count} events ending at {last}"
    );
}

/// `read_stream` returns the stream's events after a version, in order.
pub fn read_stream_after_version(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    for i in 0..5u64 {
        append_ok(b, s, single("s", ExpectedVersion::Exact(i), 1));
        append_ok(b, s, single("other", ExpectedVersion::Any, 1));
    }
    let versions = |after| -> Vec<u64> {
        read_stream(b, s, "s", after)
            .iter()
            .map(|e| e.stream_version)
            .collect()
    };
    ensure_eq!(b, versions(0), vec![1, 2, 3, 4, 5], "read_stream(s, 0)");
    ensure_eq!(b, versions(2), vec![3, 4, 5], "read_stream(s, 2)");
    ensure_eq!(b, versions(5), Vec::<u64>::new(), "read_stream(s, 5)");
    ensure_eq!(b, versions(99), Vec::<u64>::new(), "read_stream(s, 99)");
    ensure!(
        b,
        read_stream(b, s, "missing", 0).is_empty(),
        "read_stream of a missing stream is empty"
    );
    let positions: Vec<Position> = read_stream(b, s, "s", 0)
        .iter()
        .map(|e| e.position)
        .collect();
    ensure_eq!(b, positions, vec![1, 3, 5, 7, 9], "positions of stream s");
    ensure!(
        b,
        read_stream(b, s, "s", 0).iter().all(|e| e.stream_id == "s"),
        "read_stream returns only its stream"
    );
}

/// `stream_ids` lists each matching stream once, sorted byte-wise, and treats
/// `%` and `_` in the prefix literally.
pub fn stream_ids_by_prefix(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    let ids = [
        "order-WO-1",
        "order-WO-2",
        "order-B",
        "order-a",
        "order-é",
        "Order-X",
        "org-1",
        "a%b",
        "a%c",
        "a_b",
        "axb",
        "ab",
        "a",
        "a\\b",
    ];
    let requests = ids
        .iter()
        .map(|id| single(id, ExpectedVersion::NoStream, 1))
        .chain([single("order-WO-1", ExpectedVersion::Exact(1), 2)])
        .collect();
    for r in batch_ok(b, s, requests) {
        r.unwrap_or_else(|e| fail!(b, "append failed: {e}"));
    }
    let mut sorted: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    sorted.sort();
    ensure_eq!(
        b,
        stream_ids(b, s, ""),
        sorted,
        "stream_ids(\"\"): all, sorted by bytes"
    );
    let expect = |prefix: &str, expected: &[&str]| {
        ensure_eq!(
            b,
            stream_ids(b, s, prefix),
            expected,
            "stream_ids({prefix:?})"
        );
    };
    expect(
        "order-",
        &["order-B", "order-WO-1", "order-WO-2", "order-a", "order-é"],
    );
    expect("order-WO-1", &["order-WO-1"]);
    expect("a%", &["a%b", "a%c"]);
    expect("a_", &["a_b"]);
    expect("a\\", &["a\\b"]);
    expect("a", &["a", "a%b", "a%c", "a\\b", "a_b", "ab", "axb"]);
    expect("O", &["Order-X"]);
    expect("zzz", &[]);
    expect("order-é", &["order-é"]);
}

/// `head` is `None` for an empty ledger, then the last event's position and
/// hash.
pub fn head_tracks_last_event(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    ensure_eq!(b, head(b, s), None, "head of an empty store");
    let outcome = append_ok(b, s, single("h", ExpectedVersion::NoStream, 3));
    let last = outcome
        .events
        .last()
        .cloned()
        .unwrap_or_else(|| fail!(b, "no events"));
    let expected = Some(Head {
        position: 3,
        hash: last.hash,
    });
    ensure_eq!(b, head(b, s), expected, "head after three events");
    let _ = append_err(b, s, single("h", ExpectedVersion::NoStream, 1));
    ensure_eq!(b, head(b, s), expected, "head after a conflict");
}

/// `verify` passes an intact ledger and reports its head.
pub fn verify_intact_ledger(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    let empty = verify(s, &mut |_| {}).unwrap_or_else(|e| fail!(b, "verify failed: {e}"));
    ensure!(b, empty.is_intact(), "an empty ledger is intact");
    ensure_eq!(
        b,
        empty.events_checked,
        0,
        "events checked in an empty ledger"
    );
    ensure_eq!(
        b,
        empty.head_hash,
        hash::GENESIS_HASH,
        "head hash of an empty ledger"
    );

    let all = build_ledger(b, s);
    let mut last_progress = 0;
    let report =
        verify(s, &mut |n| last_progress = n).unwrap_or_else(|e| fail!(b, "verify failed: {e}"));
    ensure!(b, report.is_intact(), "verify: {:?}", report.first_broken);
    ensure_eq!(b, report.events_checked, 12, "events checked");
    ensure_eq!(b, last_progress, 12, "the last progress report");
    ensure_eq!(
        b,
        Some(report.head_hash),
        all.last().map(|e| e.hash.clone()),
        "verify's head hash"
    );
}

/// Changing one stored payload behind the store's back makes `verify` name
/// exactly that position as the first broken link.
pub fn verify_names_tampered_position(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    build_ledger(b, s);
    b.tamper_payload(s, 6, r#"{"n":999}"#);
    let tampered = read_stream(b, s, "org-1", 0);
    ensure!(
        b,
        tampered
            .iter()
            .any(|e| e.position == 6 && e.payload == json!({ "n": 999 })),
        "tamper_payload did not change the payload at position 6: {tampered:?}"
    );
    let report = verify(s, &mut |_| {}).unwrap_or_else(|e| fail!(b, "verify failed: {e}"));
    ensure_eq!(
        b,
        report.first_broken.as_ref().map(|l| l.position),
        Some(6),
        "verify must name position 6 as the first broken link (report: {report:?})"
    );
    ensure_eq!(
        b,
        report.events_checked,
        5,
        "events checked before the broken link"
    );
}

/// The database itself refuses an `UPDATE` of a stored event.
pub fn raw_update_is_refused(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    let before = build_ledger(b, s);
    ensure!(
        b,
        b.raw_update_is_refused(s),
        "a raw UPDATE of an event was not refused"
    );
    ensure_eq!(
        b,
        all_events(b, s, 0),
        before,
        "the ledger after a refused UPDATE"
    );
    assert_intact(b, s, "after a refused UPDATE");
}

/// The database itself refuses a `DELETE` of a stored event.
pub fn raw_delete_is_refused(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    let before = build_ledger(b, s);
    ensure!(
        b,
        b.raw_delete_is_refused(s),
        "a raw DELETE of an event was not refused"
    );
    ensure_eq!(
        b,
        all_events(b, s, 0),
        before,
        "the ledger after a refused DELETE"
    );
    assert_intact(b, s, "after a refused DELETE");
}

/// Exporting with `read_all` and importing into a fresh store (in several
/// batches) preserves every field and hash; the result verifies and accepts
/// further appends that continue the chain.
pub fn import_preserves_hashes(b: &dyn Backend) {
    let source = b.fresh();
    let exported = build_ledger(b, source.as_ref());
    let target = b.fresh();
    let t = target.as_ref();
    if let Err(e) = t.import_batch(&[]) {
        fail!(b, "importing nothing must succeed: {e}");
    }
    for chunk in exported.chunks(5) {
        if let Err(e) = t.import_batch(chunk) {
            fail!(
                b,
                "import of positions {:?}.. failed: {e}",
                chunk.first().map(|e| e.position)
            );
        }
    }
    ensure!(
        b,
        all_events(b, t, 0) == exported,
        "the imported ledger must equal the exported one field by field"
    );
    ensure_eq!(b, head(b, t), head(b, source.as_ref()), "head after import");
    assert_intact(b, t, "after import");
    ensure_eq!(
        b,
        version(b, t, "order-2"),
        6,
        "stream version after import"
    );
    let next = append_ok(b, t, single("order-2", ExpectedVersion::Exact(6), 1));
    ensure_eq!(
        b,
        next.positions(),
        vec![13],
        "position of an append after import"
    );
    ensure_eq!(
        b,
        Some(next.events[0].prev_hash.clone()),
        exported.last().map(|e| e.hash.clone()),
        "an append after import chains to the imported head"
    );
    assert_intact(b, t, "after import and append");
}

/// `import_batch` refuses a batch that does not continue the chain exactly,
/// and writes none of it.
pub fn import_refuses_broken_batches(b: &dyn Backend) {
    let source = b.fresh();
    let exported = build_ledger(b, source.as_ref());
    let target = b.fresh();
    let t = target.as_ref();
    if let Err(e) = t.import_batch(&exported[..4]) {
        fail!(b, "importing the first four events failed: {e}");
    }
    let rest = &exported[4..];
    let head_hash = exported[3].hash.clone();

    let mut cases: Vec<(&str, Vec<RecordedEvent>, Position)> = Vec::new();
    cases.push(("a gap (position 5 missing)", rest[1..].to_vec(), 5));
    cases.push(("events already present", exported[2..6].to_vec(), 5));
    let mut wrong_prev = rest.to_vec();
    wrong_prev[2].prev_hash = "ab".repeat(32);
    wrong_prev[2].hash = hash::event_hash(&wrong_prev[2]);
    cases.push(("a wrong prev_hash at 7", wrong_prev, 7));
    let mut forged = rest.to_vec();
    forged[3].payload = json!({ "forged": true });
    cases.push(("a payload not matching its hash at 8", forged, 8));
    let mut wrong_hash = rest.to_vec();
    wrong_hash[0].hash = "0".repeat(64);
    cases.push(("a wrong hash at 5", wrong_hash, 5));
    let mut shifted = rest.to_vec();
    for e in &mut shifted {
        e.position += 1;
    }
    cases.push(("positions starting at 6", shifted, 5));

    // Chains that hash correctly but do not continue a stream's versions.
    let forge = |stream: &str, stream_version: u64| {
        let mut e = exported[4].clone();
        e.stream_id = stream.into();
        e.stream_version = stream_version;
        e.prev_hash = head_hash.clone();
        e.hash = hash::event_hash(&e);
        e
    };
    let duplicate = forge("order-1", 1);
    let skipping = forge("order-1", 5);
    let new_at_two = forge("brand-new", 2);

    for (what, batch, position) in &cases {
        match t.import_batch(batch) {
            Err(StoreError::ChainBroken { position: p, .. }) if p == *position => {}
            other => fail!(
                b,
                "import of a batch with {what}: expected ChainBroken at {position}, got {other:?}"
            ),
        }
        ensure_eq!(
            b,
            head_position(b, t),
            4,
            "head after refusing a batch with {what}"
        );
    }
    for (what, event) in [
        ("a duplicate stream version", duplicate),
        ("a skipped stream version", skipping),
        ("a new stream starting at version 2", new_at_two),
    ] {
        match t.import_batch(std::slice::from_ref(&event)) {
            Err(StoreError::ChainBroken { .. } | StoreError::Conflict { .. }) => {}
            other => fail!(b, "import of {what}: expected ChainBroken, got {other:?}"),
        }
        ensure_eq!(b, head_position(b, t), 4, "head after refusing {what}");
    }
    ensure_eq!(
        b,
        all_events(b, t, 0),
        exported[..4].to_vec(),
        "nothing written by refusals"
    );

    if let Err(e) = t.import_batch(rest) {
        fail!(b, "the correct continuation was refused: {e}");
    }
    ensure!(
        b,
        all_events(b, t, 0) == exported,
        "the ledger after the correct import"
    );
    assert_intact(b, t, "after refusals and a correct import");
}

/// A large batch (thousands of events) imports in one go, and a break deep
/// inside it is refused at the first offending position with nothing written.
pub fn import_large_batches(b: &dyn Backend) {
    let source = b.fresh();
    let requests = (0..30)
        .map(|i| single(&format!("bulk-{}", i % 7), ExpectedVersion::Any, 100))
        .collect();
    for r in batch_ok(b, source.as_ref(), requests) {
        r.unwrap_or_else(|e| fail!(b, "bulk append failed: {e}"));
    }
    let exported = all_events(b, source.as_ref(), 0);
    ensure_eq!(b, exported.len(), 3000, "events exported");

    let whole = b.fresh();
    if let Err(e) = whole.import_batch(&exported) {
        fail!(b, "importing 3000 events in one batch failed: {e}");
    }
    ensure!(
        b,
        all_events(b, whole.as_ref(), 0) == exported,
        "a large import must equal the export"
    );
    assert_intact(b, whole.as_ref(), "after a large import");

    let target = b.fresh();
    let t = target.as_ref();
    if let Err(e) = t.import_batch(&exported[..10]) {
        fail!(b, "importing the first ten events failed: {e}");
    }
    // `position`: where the refusal must point (the first offending event).
    let expect_refused = |batch: &[RecordedEvent], position: Position, what: &str| {
        match t.import_batch(batch) {
            Err(StoreError::ChainBroken { position: p, .. }) if p == position => {}
            other => fail!(
                b,
                "a large batch with {what}: expected ChainBroken at {position}, got {other:?}"
            ),
        }
        ensure_eq!(
            b,
            head_position(b, t),
            10,
            "head after refusing a batch with {what}"
        );
    };
    let mut forged = exported[10..].to_vec();
    forged[2489].payload = json!({ "forged": true });
    expect_refused(&forged, 2500, "a forged payload at 2500");

    // A stream whose first event in the batch does not continue it, followed
    // (because its hash changed) by a broken prev_hash link at 1501: the
    // refusal names the first offending position, 1500, on every backend.
    let mut late = exported[10..].to_vec();
    late[1489].stream_id = "late-stream".into();
    late[1489].stream_version = 2;
    late[1489].hash = hash::event_hash(&late[1489]);
    expect_refused(&late, 1500, "a stream starting at version 2 at 1500");

    if let Err(e) = t.import_batch(&exported[10..]) {
        fail!(b, "the correct large continuation was refused: {e}");
    }
    ensure!(
        b,
        all_events(b, t, 0) == exported,
        "the ledger after a large import"
    );
}

/// Four writers, each on its own connection, doing read-version-then-append
/// with retry on conflict to one stream: no update is lost.
pub fn concurrent_appends_lose_no_update(b: &dyn Backend) {
    const WRITERS: usize = 4;
    const APPENDS: usize = 15;
    let store = b.fresh();
    let handles: Vec<Box<dyn EventStore>> =
        (0..WRITERS).map(|_| b.open_same(store.as_ref())).collect();
    let name = b.name().to_string();
    let conflicts =
        within(
            b,
            Duration::from_secs(120),
            "concurrent appends",
            move || {
                let threads: Vec<_> = handles
            .into_iter()
            .enumerate()
            .map(|(writer, handle)| {
                let name = name.clone();
                std::thread::spawn(move || {
                    let mut conflicts = 0u64;
                    for n in 0..APPENDS {
                        loop {
                            let current = handle.stream_version("counter").unwrap_or_else(|e| {
                                panic!("[{name}] writer {writer}: stream_version failed: {e}")
                            });
                            let request = AppendRequest::single(
                                "counter",
                                ExpectedVersion::Exact(current),
                                vec![event("Incremented", json!({ "writer": writer, "n": n }))],
                            );
                            match handle.append(request) {
                                Ok(_) => break,
                                Err(e) if e.is_conflict() => conflicts += 1,
                                Err(e) => {
                                    panic!("[{name}] writer {writer}: append failed: {e}")
                                }
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .sum::<u64>()
            },
        );
    let s = store.as_ref();
    let total = (WRITERS * APPENDS) as u64;
    ensure_eq!(
        b,
        version(b, s, "counter"),
        total,
        "final stream version (conflicts retried: {conflicts})"
    );
    let events = read_stream(b, s, "counter", 0);
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    ensure_eq!(
        b,
        versions,
        (1..=total).collect::<Vec<_>>(),
        "stream versions"
    );
    for writer in 0..WRITERS {
        let ns: Vec<u64> = events
            .iter()
            .filter(|e| e.payload["writer"] == json!(writer))
            .filter_map(|e| e.payload["n"].as_u64())
            .collect();
        ensure_eq!(
            b,
            ns,
            (0..APPENDS as u64).collect::<Vec<_>>(),
            "writer {writer}'s appends, in order"
        );
    }
    ensure_eq!(b, head_position(b, s), total, "head position");
    assert_intact(b, s, "after concurrent appends");
}

// ---------------------------------------------------------------------------
// The Merkle tree
// ---------------------------------------------------------------------------

/// The leaf hashes of `events`.
fn leaves_of(b: &dyn Backend, events: &[RecordedEvent]) -> Vec<Hash> {
    events
        .iter()
        .map(|e| event_leaf(&e.hash).unwrap_or_else(|err| fail!(b, "event hash: {err}")))
        .collect()
}

/// Check every tree head against the naive recursive computation, and that
/// every inclusion proof and a spread of consistency proofs verify.
fn check_tree(b: &dyn Backend, s: &dyn EventStore, context: &str) {
    let all = all_events(b, s, 0);
    let leaves = leaves_of(b, &all);
    let n = all.len() as u64;
    for size in 0..=n {
        let stored =
            root_at(s, size).unwrap_or_else(|e| fail!(b, "{context}: root at {size}: {e}"));
        ensure_eq!(
            b,
            stored,
            naive_root(&leaves[..size as usize]),
            "{context}: the root at size {size} (stored tree vs naive recursion)"
        );
    }
    let root = naive_root(&leaves);
    for position in 1..=n {
        let proof = inclusion_proof(s, position, n)
            .unwrap_or_else(|e| fail!(b, "{context}: inclusion proof of {position}: {e}"));
        if let Err(e) = verify_inclusion(
            position - 1,
            n,
            &leaves[position as usize - 1],
            &proof,
            &root,
        ) {
            fail!(b, "{context}: inclusion proof of {position} in {n}: {e}");
        }
    }
    for old in 0..=n {
        let proof = consistency_proof(s, old, n)
            .unwrap_or_else(|e| fail!(b, "{context}: consistency proof {old}..{n}: {e}"));
        let old_root = naive_root(&leaves[..old as usize]);
        if let Err(e) = verify_consistency(old, n, &old_root, &root, &proof) {
            fail!(b, "{context}: consistency proof {old}..{n}: {e}");
        }
    }
    ensure!(
        b,
        root_at(s, n + 1).is_err(),
        "{context}: a root beyond the log's end must be refused"
    );
    let report = verify(s, &mut |_| {}).unwrap_or_else(|e| fail!(b, "verify failed: {e}"));
    ensure!(
        b,
        report.is_intact(),
        "{context}: verify: {:?}",
        report.first_broken
    );
    ensure_eq!(
        b,
        report.root,
        hex::encode(root),
        "{context}: verify's root"
    );
}

/// The stored tree follows every way events get in — single appends,
/// multi-stream appends, group commits with a failing request in the middle,
/// idempotent replays that write nothing, imports in uneven batches — and
/// a reopened store continues it.
pub fn merkle_tree_follows_appends(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    check_tree(b, s, "empty");
    build_ledger(b, s);
    check_tree(b, s, "after build_ledger");
    // A replay of an idempotent request adds nothing to the tree.
    append_ok(
        b,
        s,
        single("order-2", ExpectedVersion::Any, 4).with_idempotency_key(Some("build-2".into())),
    );
    let results = batch_ok(
        b,
        s,
        vec![
            single("order-9", ExpectedVersion::NoStream, 3),
            single("order-1", ExpectedVersion::Exact(1), 1),
            single("order-10", ExpectedVersion::NoStream, 6),
        ],
    );
    ensure!(b, results[1].is_err(), "the stale request must conflict");
    let store = b.reopen(store);
    let s = store.as_ref();
    append_ok(b, s, single("order-11", ExpectedVersion::NoStream, 10));
    check_tree(b, s, "after a group commit, a reopen and more appends");

    let source = all_events(b, s, 0);
    let target = b.fresh();
    let t = target.as_ref();
    let mut rest: &[RecordedEvent] = &source;
    for size in [1usize, 3, 7, 2, 100] {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        if let Err(e) = t.import_batch(chunk) {
            fail!(b, "import failed: {e}");
        }
        rest = tail;
    }
    check_tree(b, t, "after import");
    let n = source.len() as u64;
    ensure_eq!(
        b,
        root_at(t, n).ok(),
        root_at(s, n).ok(),
        "the imported ledger's root"
    );
}

/// A handle keeps the tree's frontier between its writes: when another
/// handle (another process) appended or imported in between, the next write
/// notices the tree grew and reads it again, so the tree stays correct.
pub fn merkle_tree_follows_other_writers(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    let other = b.open_same(s);
    let o = other.as_ref();
    append_ok(b, s, single("order-1", ExpectedVersion::NoStream, 3));
    // The second handle appends after the first one's write: 3 → 8.
    append_ok(b, o, single("order-2", ExpectedVersion::NoStream, 5));
    append_ok(b, s, single("order-1", ExpectedVersion::Exact(3), 2));
    check_tree(b, s, "after another handle appended in between");
    // And the other way round, with an import by the first handle.
    append_ok(b, o, single("order-3", ExpectedVersion::NoStream, 1));
    let source = b.fresh();
    append_ok(
        b,
        source.as_ref(),
        single("order-4", ExpectedVersion::NoStream, 1),
    );
    let head = all_events(b, s, 0);
    let mut imported = all_events(b, source.as_ref(), 0);
    for e in &mut imported {
        e.position = head.len() as u64 + 1;
        e.prev_hash = head[head.len() - 1].hash.clone();
        e.hash = hash::event_hash(e);
    }
    if let Err(e) = o.import_batch(&imported) {
        fail!(b, "import by the other handle failed: {e}");
    }
    append_ok(b, s, single("order-1", ExpectedVersion::Exact(5), 4));
    append_ok(b, o, single("order-2", ExpectedVersion::Exact(5), 1));
    append_ok(b, s, single("order-1", ExpectedVersion::Exact(9), 1));
    check_tree(b, s, "after both handles took turns");
    check_tree(b, o, "seen from the other handle");
    assert_intact(b, s, "after both handles took turns");
}

/// `n` events with fixed content and times, hashed and chained, as an
/// export would hold them.
fn fixed_events(n: u64) -> Vec<RecordedEvent> {
    let mut prev = hash::GENESIS_HASH.to_string();
    (1..=n)
        .map(|position| {
            let stream = position % 3;
            let mut event = RecordedEvent {
                position,
                stream_id: format!("order-{stream}"),
                stream_version: position.div_ceil(3),
                event_type: "Numbered".into(),
                schema_version: 1,
                payload: json!({ "n": position, "text": "fixed" }),
                metadata: metadata(),
                occurred_at: to_stored_precision(at(position as i64)),
                recorded_at: to_stored_precision(at(position as i64 + 1)),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            event.hash = hash::event_hash(&event);
            prev = event.hash.clone();
            event
        })
        .collect()
}

/// The Merkle root of 21 fixed events, the same on every backend.
pub const FIXED_EVENTS_ROOT: &str =
    "507bf3ec1fe6be30b10a6c9ba298f8769124bb590c6896d871894f3e118ad5da";

/// Every backend gives the same root for the same events: a fixed ledger
/// imported into the store has exactly [`FIXED_EVENTS_ROOT`].
pub fn merkle_root_of_fixed_events(b: &dyn Backend) {
    let store = b.fresh();
    let s = store.as_ref();
    let events = fixed_events(21);
    if let Err(e) = s.import_batch(&events) {
        fail!(b, "import of the fixed events failed: {e}");
    }
    let root = root_at(s, 21).unwrap_or_else(|e| fail!(b, "root: {e}"));
    ensure_eq!(
        b,
        hex::encode(root),
        FIXED_EVENTS_ROOT,
        "the root of the fixed events"
    );
    ensure_eq!(
        b,
        Some(root),
        parse_hash(FIXED_EVENTS_ROOT).ok(),
        "the root of the fixed events"
    );
}
