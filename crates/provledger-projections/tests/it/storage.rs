//! The SQLite backend's promises: migrations, checkpoints, atomic batches.

use provledger_projections::{
    HistoryQuery, LineQuery, ProjectionError, ReadModels, TransactionQuery,
};

use crate::support::*;

fn sqlite(ledger: &Ledger) -> rusqlite::Connection {
    rusqlite::Connection::open(&ledger.path).unwrap()
}

#[test]
fn tables_live_in_the_ledger_file_with_versioned_migrations() {
    let ledger = Ledger::new();
    let models = ledger.models();
    assert_eq!(models.checkpoint().unwrap(), 0);
    // Opening again (another process) migrates nothing twice.
    drop(ReadModels::open(&ledger.url).unwrap());
    let conn = sqlite(&ledger);
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM rm_schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in [
        "events",
        "rm_checkpoints",
        "rm_lines",
        "rm_order_state",
        "rm_schema_migrations",
        "rm_transactions",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
    // Migration 2: the history is the event log itself, not a copy.
    assert!(!tables.iter().any(|t| t == "rm_history"), "{tables:?}");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_newer_schema_is_refused_with_advice() {
    let ledger = Ledger::new();
    drop(ledger.models());
    sqlite(&ledger)
        .execute(
            "INSERT INTO rm_schema_migrations (version, name, applied_at) VALUES (99, 'future', 'x')",
            [],
        )
        .unwrap();
    let err = ReadModels::open(&ledger.url).unwrap_err();
    assert!(
        matches!(err, ProjectionError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade provledger"), "{err}");
}

#[test]
fn bad_urls_are_refused() {
    let err = ReadModels::open("mysql://x").unwrap_err();
    assert!(matches!(err, ProjectionError::InvalidUrl { .. }), "{err}");
    assert!(err.to_string().contains("sqlite:PATH"), "{err}");
    let err = ReadModels::open_in_schema("sqlite:x.db", "s").unwrap_err();
    assert!(matches!(err, ProjectionError::InvalidUrl { .. }), "{err}");
}

#[test]
fn other_streams_are_skipped_but_the_checkpoint_moves() {
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    ledger.append_raw(
        "org-77",
        "OrgCreated",
        serde_json::json!({"name": "Contoso"}),
        "2026-11-20T10:30:00Z",
    );
    ledger.append_raw(
        "reservation-subdomain-contoso",
        "Reserved",
        serde_json::json!({}),
        "2026-11-20T10:31:00Z",
    );
    let models = ledger.models();
    assert_eq!(models.catch_up(&ledger.store).unwrap(), 3);
    assert_eq!(models.checkpoint().unwrap(), 3);
    assert_eq!(
        models
            .history(&ledger.store, &HistoryQuery::default())
            .unwrap()
            .len(),
        1
    );
    assert_eq!(models.lines(&LineQuery::default()).unwrap().len(), 2);
}

#[test]
fn an_undecodable_event_stops_the_batch_atomically_and_names_its_position() {
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    let models = ledger.models();
    models.catch_up(&ledger.store).unwrap();
    change_all_lines(&mut ledger);
    // Position 4: a type this build does not know, in the same batch as 2 and 3.
    ledger.append_raw(
        "order-WO-1001",
        "FutureThing",
        serde_json::json!({}),
        "2026-11-22T00:00:00Z",
    );
    let err = models.catch_up(&ledger.store).unwrap_err();
    match &err {
        ProjectionError::UndecodableEvent {
            position,
            stream_id,
            ..
        } => {
            assert_eq!(*position, 4);
            assert_eq!(stream_id, "order-WO-1001");
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(err.to_string().contains("upgrade provledger"), "{err}");
    // Nothing of the failed batch was applied: not the good events before it either.
    assert_eq!(models.checkpoint().unwrap(), 1);
    assert!(models
        .transactions(&TransactionQuery::default())
        .unwrap()
        .is_empty());
    assert_eq!(
        models
            .history(&ledger.store, &HistoryQuery::default())
            .unwrap()
            .len(),
        1
    );
    let lines = models.lines(&LineQuery::default()).unwrap();
    assert_eq!(lines[0].provisioning_contact, "it@customer.example");

    // With one event per batch, everything before the bad event is applied.
    let small = ReadModels::open(&ledger.url).unwrap().with_batch_size(1);
    assert!(small.catch_up(&ledger.store).is_err());
    assert_eq!(small.checkpoint().unwrap(), 3);
}

#[test]
fn a_crash_mid_batch_leaves_the_previous_checkpoint() {
    // A batch that fails half-way (here: a Transaction Manager row already
    // present, as if a buggy writer had applied it) rolls back entirely.
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    change_all_lines(&mut ledger);
    let models = ledger.models();
    let before = models.dump().unwrap();
    sqlite(&ledger)
        .execute_batch(
            "INSERT INTO rm_transactions (id, position, transaction_id, tx_type, order_id, \
             line_id, subscription_id, submitted_by, submitted_at, status, applied_to_all_lines) \
             VALUES (3 * 4096, 3, 't', 'x', 'o', 'l', 's', 'a', 'x', 'x', 0)",
        )
        .unwrap();
    let err = models.catch_up(&ledger.store).unwrap_err();
    assert!(matches!(err, ProjectionError::Sqlite(_)), "{err}");
    assert_eq!(models.checkpoint().unwrap(), 0);
    assert!(models.lines(&LineQuery::default()).unwrap().is_empty());
    sqlite(&ledger)
        .execute_batch("DELETE FROM rm_transactions WHERE id = 3 * 4096")
        .unwrap();
    assert_eq!(models.dump().unwrap(), before);
    // The successor resumes from the checkpoint.
    assert_eq!(models.catch_up(&ledger.store).unwrap(), 3);
    let lines = models.lines(&LineQuery::default()).unwrap();
    assert!(lines
        .iter()
        .all(|l| l.provisioning_contact == "new@customer.example"));
}

#[test]
fn read_models_ahead_of_their_store_ask_for_a_rebuild() {
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    let models = ledger.models();
    models.catch_up(&ledger.store).unwrap();
    // Another, empty ledger behind the same read models.
    let other = Ledger::new();
    let err = models.catch_up(&other.store).unwrap_err();
    assert!(
        matches!(
            err,
            ProjectionError::AheadOfStore {
                checkpoint: 1,
                head: 0
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("provledger rebuild"), "{err}");
    assert_eq!(models.rebuild(&other.store, &mut |_| {}).unwrap(), 0);
    assert!(models.lines(&LineQuery::default()).unwrap().is_empty());
}

#[test]
fn a_new_handle_folds_the_states_it_lacks_again_from_the_log() {
    // The read models keep no copy of an order's state: a handle that has
    // not folded an order (here: a new one, after another applied the
    // placement) folds the stream up to the stored version and goes on.
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    let first = ledger.models();
    first.catch_up(&ledger.store).unwrap();
    change_all_lines(&mut ledger);
    let second = ledger.models();
    assert_eq!(second.catch_up(&ledger.store).unwrap(), 2);
    // Capture first: both handles read the same tables.
    let incremental = second.dump().unwrap();
    let rebuilt = ledger.models();
    rebuilt.rebuild(&ledger.store, &mut |_| {}).unwrap();
    assert_eq!(incremental, rebuilt.dump().unwrap());
    assert!(second
        .lines(&LineQuery::default())
        .unwrap()
        .iter()
        .all(|l| l.provisioning_contact == "new@customer.example"));
}

#[test]
fn a_stored_version_the_log_cannot_back_is_reported_with_advice() {
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    ledger.models().catch_up(&ledger.store).unwrap();
    change_all_lines(&mut ledger);
    sqlite(&ledger)
        .execute_batch("UPDATE rm_order_state SET version = 5 WHERE order_id = 'WO-1001'")
        .unwrap();
    let err = ledger.models().catch_up(&ledger.store).unwrap_err();
    assert!(
        matches!(
            &err,
            ProjectionError::Corrupt {
                table: "rm_order_state",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("provledger rebuild"), "{err}");
}

/// The names of the `rm_` indexes in the ledger file.
fn rm_indexes(ledger: &Ledger) -> Vec<String> {
    sqlite(ledger)
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'rm_%' \
             ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_rebuild_puts_back_every_index_it_dropped_even_when_it_fails() {
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    let models = ledger.models();
    let indexes = rm_indexes(&ledger);
    assert!(indexes.len() >= 7, "{indexes:?}");
    models.rebuild(&ledger.store, &mut |_| {}).unwrap();
    assert_eq!(rm_indexes(&ledger), indexes);

    // A rebuild that stops at an undecodable event.
    ledger.append_raw(
        "order-WO-1001",
        "FutureThing",
        serde_json::json!({}),
        "2026-11-22T00:00:00Z",
    );
    assert!(models.rebuild(&ledger.store, &mut |_| {}).is_err());
    assert_eq!(rm_indexes(&ledger), indexes);

    // A process killed mid-rebuild: the next open creates what is missing.
    sqlite(&ledger)
        .execute_batch("DROP INDEX rm_transactions_sub; DROP INDEX rm_lines_subscription;")
        .unwrap();
    drop(ledger.models());
    assert_eq!(rm_indexes(&ledger), indexes);
}

#[test]
fn states_folded_in_the_pipeline_carry_over_to_the_next_catch_up() {
    // Batches of two events: the backlog runs through the pipeline, whose
    // folded states the handle keeps for the next catch-up.
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    let at = |minute: u32| format!("2026-11-21T09:{minute:02}:00Z");
    for minute in 0..5 {
        let to = format!("c{minute}@customer.example");
        ledger
            .exec(
                "WO-1001",
                PAT,
                &at(minute),
                change("1.1", &to, minute % 2 == 0),
            )
            .unwrap();
    }
    let models = ReadModels::open(&ledger.url).unwrap().with_batch_size(2);
    assert!(models.catch_up(&ledger.store).unwrap() >= 6);
    for minute in 10..13 {
        ledger
            .exec("WO-1001", PAT, &at(minute), resend("1.1"))
            .unwrap();
        models.catch_up(&ledger.store).unwrap();
    }
    ledger
        .exec(
            "WO-1001",
            PAT,
            &at(20),
            change("1.2", "last@customer.example", false),
        )
        .unwrap();
    models.catch_up(&ledger.store).unwrap();
    // The same tables rebuilt from scratch (capture first: both handles
    // read the same file).
    let incremental = models.dump().unwrap();
    let rebuilt = ledger.models();
    rebuilt.rebuild(&ledger.store, &mut |_| {}).unwrap();
    assert_eq!(incremental, rebuilt.dump().unwrap());
}

/// One event of a stream the read models skip, for [`inline_append`].
fn raw_request(stream_id: &str) -> provledger_store::AppendRequest {
    provledger_store::AppendRequest::single(
        stream_id,
        provledger_store::ExpectedVersion::NoStream,
        vec![provledger_store::NewEvent {
            event_type: "Noted".into(),
            schema_version: 1,
            payload: serde_json::json!({}),
            metadata: provledger_store::Metadata {
                actor: "system".into(),
                transaction_id: format!("tx-{stream_id}"),
                ..provledger_store::Metadata::default()
            },
            occurred_at: t("2026-11-20T09:00:00Z"),
        }],
    )
}

/// Append `request` on `store` with `models` written inline; returns
/// whether they were.
fn inline_append(
    store: &dyn provledger_store::EventStore,
    models: &ReadModels,
    request: provledger_store::AppendRequest,
) -> bool {
    let mut writer = models.inline().expect("read-write SQLite read models");
    let appended = store.append_batch_inline(vec![request], &mut writer);
    let committed = matches!(appended.as_deref(), Ok([Ok(_)]));
    assert!(committed, "the append commits: {appended:?}");
    writer.finish(committed)
}

#[test]
fn read_models_are_written_inline_only_on_their_own_file() {
    let own = Ledger::new();
    let other = Ledger::new();
    let models = own.models();
    use provledger_store::EventStore as _;
    // Another ledger's append commits, without these read models: the
    // writer sees a file that is not theirs (and remembers it).
    for stream in ["other-1", "other-2"] {
        assert!(!inline_append(&other.store, &models, raw_request(stream)));
        assert_eq!(models.checkpoint().unwrap(), 0);
    }
    assert_eq!(other.store.head().unwrap().map(|h| h.position), Some(2));
    // Their own ledger's appends carry them, alternating with the other.
    assert!(inline_append(&own.store, &models, raw_request("own-1")));
    assert_eq!(models.checkpoint().unwrap(), 1);
    assert!(!inline_append(
        &other.store,
        &models,
        raw_request("other-3")
    ));
    assert!(inline_append(&own.store, &models, raw_request("own-2")));
    assert_eq!(models.checkpoint().unwrap(), 2);
}

#[test]
fn reads_do_not_wait_for_an_append_writing_the_read_models() {
    let ledger = Ledger::new();
    let models = ledger.models();
    assert!(inline_append(&ledger.store, &models, raw_request("own-1")));
    // An append under way (on PostgreSQL it may be waiting for another
    // process's append) holds an inline writer; reads go on meanwhile.
    let writer = models.inline().expect("read-write SQLite read models");
    let (done, read) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _ = done.send(models.checkpoint().unwrap());
        });
        let checkpoint = read.recv_timeout(std::time::Duration::from_secs(30));
        drop(writer);
        assert_eq!(checkpoint, Ok(1), "a read waited for the inline writer");
    });
    // The writer gave the handle its cache back: the next append still
    // carries the read models.
    assert!(inline_append(&ledger.store, &models, raw_request("own-2")));
    assert_eq!(models.checkpoint().unwrap(), 2);
}

#[test]
fn an_order_state_the_caller_knows_is_not_folded_again_from_the_log() {
    use provledger_store::EventStore as _;
    let source = crate::concurrency::busy_ledger(2);
    let source_models = source.models();
    source_models.catch_up(&source.store).unwrap();
    let mut requests = commands_of(&source.store);
    let last = requests.split_off(requests.len() - 1);
    let order_stream = last[0]
        .appends
        .iter()
        .map(|a| a.stream_id.clone())
        .find(|s| s.starts_with(provledger_domain::ORDER_STREAM_PREFIX))
        .expect("the last command is an order's");
    let order_id = order_stream
        .strip_prefix(provledger_domain::ORDER_STREAM_PREFIX)
        .unwrap()
        .to_string();

    // Two copies of the ledger but its last command, whose read models have
    // lost the order's stored state row: folding it again from the log
    // fails the check against that row.
    let copy = || {
        let target = Ledger::new();
        append_inline(&target.store, &target.models(), requests.clone());
        rusqlite::Connection::open(&target.path)
            .unwrap()
            .execute(
                "DELETE FROM rm_order_state WHERE order_id = ?1",
                [&order_id],
            )
            .unwrap();
        target
    };
    let append_last = |target: &Ledger, known: Vec<_>| {
        let models = target.models();
        let mut writer = models.inline().unwrap().knowing(known);
        let appended = target.store.append_batch_inline(last.clone(), &mut writer);
        assert!(matches!(appended.as_deref(), Ok([Ok(_)])), "{appended:?}");
        let written = writer.finish(true);
        (written, models)
    };

    let unknown = copy();
    assert!(!append_last(&unknown, Vec::new()).0, "the order was loaded");

    let known = copy();
    let state = known.state(&order_id);
    let (written, models) = append_last(&known, vec![(order(&order_id), state)]);
    assert!(written, "the known state was used");
    assert_eq!(models.dump().unwrap(), source_models.dump().unwrap());
}
