//! Group commit: each command keeps its own result, same-order commands in
//! one batch are decided in sequence, a batch appends exactly what
//! sequential execution appends, and nothing is acknowledged when the
//! commit fails.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use provledger::group_commit::{BatchCommand, GroupCommitOptions, GroupCommitter};
use provledger::{AppError, CommandOutcome, Ledger, OutcomeStatus};
use provledger_domain::{
    Actor, Command, Context, Email, LineId, LineRequest, OrderId, OrderRequest, OrgId,
};
use provledger_projections::{ReadModels, TransactionQuery};
use provledger_store::sqlite::SqliteStore;
use provledger_store::testing::{Fault, FaultyStore};
use provledger_store::{EventStore, RecordedEvent, StoreError};

const ORDERER: &str = "olivia@partner.example";
const STRANGER: &str = "mallory@else.example";

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
}

fn ctx(actor: &str, t: &str) -> Context {
    Context::new(Actor::parse(actor).unwrap(), at(t))
}

fn oid(id: &str) -> OrderId {
    OrderId::parse(id).unwrap()
}

fn place(id: &str, lines: usize, t: &str) -> BatchCommand {
    let request = OrderRequest {
        order_id: id.into(),
        ordering_contact: ORDERER.into(),
        partner: "Acme Partner".into(),
        end_customer: "Contoso Ltd".into(),
        partner_contacts: vec!["pat@partner.example".into()],
        distributor_contacts: vec![],
        lines: (1..=lines)
            .map(|l| LineRequest {
                line_id: format!("1.{l}"),
                subscription_id: format!("Sub{}{l:02}", id.replace("WO-", "")),
                offer: if l % 2 == 0 { "A-WX" } else { "A-Flex" }.into(),
                rsd: "2026-12-01".into(),
                provisioning_contact: "it@customer.example".into(),
            })
            .collect(),
    };
    BatchCommand::new(
        oid(id),
        Command::PlaceOrder(request.validate().unwrap()),
        ctx(ORDERER, t),
    )
}

fn change(id: &str, line: &str, email: &str, all: bool, actor: &str, t: &str) -> BatchCommand {
    BatchCommand::new(
        oid(id),
        Command::ChangeContact {
            line_id: LineId::parse(line).unwrap(),
            new_email: Email::parse(email).unwrap(),
            apply_to_all_lines: all,
        },
        ctx(actor, t),
    )
}

fn resend(id: &str, line: &str, t: &str) -> BatchCommand {
    BatchCommand::new(
        oid(id),
        Command::ResendEmail {
            line_id: LineId::parse(line).unwrap(),
        },
        ctx(ORDERER, t),
    )
}

fn onboard(id: &str, t: &str) -> BatchCommand {
    BatchCommand::new(
        oid(id),
        Command::OnboardOrg {
            org_id: OrgId::parse(&format!("ORG-{id}")).unwrap(),
        },
        ctx(ORDERER, t),
    )
}

fn url(dir: &Path, name: &str) -> String {
    format!("sqlite:{}", dir.join(name).display())
}

/// Every event of the order streams (placing an order also writes its
/// id and subscription reservations, which these tests do not look at).
fn all_events(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store
        .read_all(0)
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.stream_id.starts_with("order-"))
        .collect()
}

/// The ledger's last position.
fn head(store: &dyn EventStore) -> u64 {
    store.head().unwrap().map_or(0, |h| h.position)
}

/// What must be equal between two ledgers that decided the same commands:
/// everything but the recording time (and so the hashes).
fn content(events: &[RecordedEvent]) -> Vec<serde_json::Value> {
    events
        .iter()
        .map(|e| {
            serde_json::json!([
                e.position,
                e.stream_id,
                e.stream_version,
                e.event_type,
                e.payload,
                e.metadata,
                e.occurred_at
            ])
        })
        .collect()
}

/// Every read-model table (none carries recording times).
fn views(ledger: &Ledger) -> String {
    ledger.read_models().dump().unwrap()
}

fn ok(result: &Result<CommandOutcome, AppError>) -> &CommandOutcome {
    match result {
        Ok(outcome) => outcome,
        Err(e) => panic!("expected an outcome, got {e}"),
    }
}

/// The script both the batched and the sequential ledger run: three orders,
/// commands interleaved across them, several on one order back to back,
/// refusals (no access, after PONR, before the RSD) and bad input.
fn script() -> Vec<BatchCommand> {
    vec![
        place("WO-1", 2, "2026-11-20T09:00:00Z"),
        place("WO-2", 3, "2026-11-20T09:05:00Z"),
        change(
            "WO-1",
            "1.1",
            "a@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:00:00Z",
        ),
        change(
            "WO-1",
            "1.2",
            "b@customer.example",
            true,
            ORDERER,
            "2026-11-20T10:01:00Z",
        ),
        resend("WO-1", "1.1", "2026-11-20T10:02:00Z"),
        change(
            "WO-2",
            "1.1",
            "c@customer.example",
            false,
            STRANGER,
            "2026-11-20T10:03:00Z",
        ),
        change(
            "WO-9",
            "1.1",
            "c@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:03:30Z",
        ),
        place("WO-3", 1, "2026-11-20T10:04:00Z"),
        change(
            "WO-3",
            "1.7",
            "d@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:05:00Z",
        ),
        resend("WO-2", "1.3", "2026-12-02T08:00:00Z"),
        change(
            "WO-2",
            "1.2",
            "e@customer.example",
            false,
            ORDERER,
            "2026-12-02T09:00:00Z",
        ),
        onboard("WO-2", "2026-12-03T09:00:00Z"),
        change(
            "WO-2",
            "1.2",
            "f@customer.example",
            false,
            ORDERER,
            "2026-12-03T10:00:00Z",
        ),
        resend("WO-1", "1.2", "2026-12-04T09:00:00Z"),
        change(
            "WO-1",
            "1.1",
            "g@customer.example",
            true,
            "pat@partner.example",
            "2026-12-04T09:30:00Z",
        ),
        place("WO-1", 1, "2026-12-04T10:00:00Z"),
        resend("WO-3", "1.1", "2026-12-20T10:00:00Z"),
        resend("WO-1", "1.1", "2026-11-01T00:00:00Z"),
    ]
}

#[test]
fn each_command_gets_its_own_result() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&url(dir.path(), "l.db")).unwrap();
    let results = ledger.execute_batch(script());
    assert_eq!(results.len(), script().len());
    // Accepted.
    assert_eq!(ok(&results[0]).status, OutcomeStatus::Success);
    assert_eq!(ok(&results[2]).status, OutcomeStatus::Success);
    // R3 before the RSD: refused, and the refusal recorded.
    let refused = ok(&results[4]);
    assert_eq!(refused.status, OutcomeStatus::Failed);
    assert!(!refused.positions.is_empty());
    // R6: no access, refused and recorded.
    assert_eq!(ok(&results[5]).status, OutcomeStatus::Failed);
    assert!(ok(&results[5]).message.contains(ORDERER));
    // Unknown order and unknown line: bad input, nothing written.
    assert!(
        matches!(results[6], Err(AppError::UnknownOrder { .. })),
        "{:?}",
        results[6]
    );
    assert!(
        matches!(results[8], Err(AppError::Domain(_))),
        "{:?}",
        results[8]
    );
    // R5: after the onboarding in the same batch, a change is refused.
    assert_eq!(ok(&results[11]).status, OutcomeStatus::Success);
    assert_eq!(ok(&results[12]).status, OutcomeStatus::Failed);
    // Placing an order twice; a command dated before the stream's latest event.
    assert!(
        matches!(results[15], Err(AppError::Domain(_))),
        "{:?}",
        results[15]
    );
    assert!(
        matches!(results[17], Err(AppError::Domain(_))),
        "{:?}",
        results[17]
    );
    // Every outcome names only its own events, and no two share one.
    let mut seen = std::collections::HashSet::new();
    for r in results.iter().flatten() {
        for p in &r.positions {
            assert!(seen.insert(*p), "position {p} reported twice");
        }
    }
    assert_eq!(
        seen.len() as u64,
        head(ledger.store()),
        "every event belongs to one outcome"
    );
    assert!(provledger_store::verify(ledger.store(), &mut |_| {})
        .unwrap()
        .is_intact());
}

#[test]
fn commands_on_one_order_in_one_batch_are_decided_in_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&url(dir.path(), "l.db")).unwrap();
    let results = ledger.execute_batch(vec![
        place("WO-1", 2, "2026-11-20T09:00:00Z"),
        change(
            "WO-1",
            "1.1",
            "a@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:00:00Z",
        ),
        change(
            "WO-1",
            "1.1",
            "b@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:01:00Z",
        ),
        change(
            "WO-1",
            "1.1",
            "b@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:02:00Z",
        ),
    ]);
    assert!(results[..3].iter().all(Result::is_ok), "{results:?}");
    // The third change finds the contact the second one set.
    assert!(
        matches!(results[3], Err(AppError::Domain(_))),
        "{:?}",
        results[3]
    );
    let rows = ledger
        .transactions(&TransactionQuery {
            order_id: Some(oid("WO-1")),
            ..TransactionQuery::default()
        })
        .unwrap();
    let olds: Vec<_> = rows
        .iter()
        .map(|r| r.old_email.clone().unwrap_or_default())
        .collect();
    assert_eq!(olds, ["it@customer.example", "a@customer.example"]);
    // One stream, gapless versions 1..=3, in submission order.
    let events = all_events(ledger.store());
    let versions: Vec<_> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [1, 2, 3]);
}

#[test]
fn a_batch_appends_what_sequential_execution_appends() {
    let dir = tempfile::tempdir().unwrap();
    let sequential = Ledger::open(&url(dir.path(), "seq.db")).unwrap();
    let mut expected = Vec::new();
    for c in script() {
        let r = sequential.submit(c.submission);
        expected.push(
            r.map(|o| (o.status, o.message, o.positions))
                .map_err(|e| e.exit_code()),
        );
    }
    // Reopened for every batch, a ledger starts each with cold caches: the
    // read models are then written from the states the batch was decided
    // on, handed over with the append, not folded again from the log.
    for (batch_size, reopen) in [(1, false), (3, false), (7, false), (100, false), (3, true)] {
        let batch_url = url(dir.path(), &format!("batch-{batch_size}-{reopen}.db"));
        let mut batched = Ledger::open(&batch_url).unwrap();
        let mut got = Vec::new();
        for chunk in script().chunks(batch_size) {
            if reopen {
                batched = Ledger::open(&batch_url).unwrap();
            }
            for r in batched.execute_batch(chunk.to_vec()) {
                got.push(
                    r.map(|o| (o.status, o.message, o.positions))
                        .map_err(|e| e.exit_code()),
                );
            }
        }
        assert_eq!(got, expected, "batches of {batch_size}, reopened: {reopen}");
        assert_eq!(
            content(&all_events(batched.store())),
            content(&all_events(sequential.store())),
            "batches of {batch_size}, reopened: {reopen}"
        );
        assert_eq!(
            views(&batched),
            views(&sequential),
            "batches of {batch_size}, reopened: {reopen}"
        );
    }
}

#[test]
fn idempotency_keys_replay_within_and_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&url(dir.path(), "l.db")).unwrap();
    let keyed = |mut c: BatchCommand, key: &str| {
        c.submission.idempotency_key = Some(key.into());
        c
    };
    let first = ledger.execute_batch(vec![
        place("WO-1", 1, "2026-11-20T09:00:00Z"),
        keyed(
            change(
                "WO-1",
                "1.1",
                "a@customer.example",
                false,
                ORDERER,
                "2026-11-20T10:00:00Z",
            ),
            "k1",
        ),
        keyed(
            change(
                "WO-1",
                "1.1",
                "a@customer.example",
                false,
                ORDERER,
                "2026-11-20T10:00:00Z",
            ),
            "k1",
        ),
        change(
            "WO-1",
            "1.1",
            "b@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:05:00Z",
        ),
    ]);
    let original = ok(&first[1]);
    assert!(!original.replayed);
    let again = ok(&first[2]);
    assert!(again.replayed);
    assert_eq!(again.positions, original.positions);
    assert_eq!(ok(&first[3]).status, OutcomeStatus::Success);
    let head = ledger.store().head().unwrap().unwrap().position;
    let later = ledger.execute_batch(vec![keyed(
        change(
            "WO-1",
            "1.1",
            "a@customer.example",
            false,
            ORDERER,
            "2026-11-21T10:00:00Z",
        ),
        "k1",
    )]);
    let replayed = ok(&later[0]);
    assert!(replayed.replayed);
    assert_eq!(replayed.transaction_id, original.transaction_id);
    assert_eq!(
        ledger.store().head().unwrap().unwrap().position,
        head,
        "nothing appended"
    );
}

#[test]
fn a_stale_cached_state_conflicts_and_is_decided_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = url(dir.path(), "l.db");
    let committer = Ledger::open(&path).unwrap();
    let other_process = Ledger::open(&path).unwrap();
    // The committer caches the order's state as it decides on it.
    let r = committer.execute_batch(vec![place("WO-1", 2, "2026-11-20T09:00:00Z")]);
    assert!(r[0].is_ok());
    // Another writer changes the order behind the committer's back.
    let c = change(
        "WO-1",
        "1.1",
        "x@customer.example",
        false,
        ORDERER,
        "2026-11-20T10:00:00Z",
    );
    other_process.submit(c.submission).unwrap();
    // The cached state is stale: the append conflicts, the order is
    // reloaded and the command decided again on what the stream holds.
    // The other command of the request, on another order, goes through too.
    let r = committer.execute_batch(vec![
        change(
            "WO-1",
            "1.1",
            "y@customer.example",
            false,
            ORDERER,
            "2026-11-20T11:00:00Z",
        ),
        place("WO-2", 1, "2026-11-20T11:00:00Z"),
    ]);
    assert_eq!(ok(&r[0]).status, OutcomeStatus::Success);
    assert_eq!(ok(&r[1]).status, OutcomeStatus::Success);
    assert!(
        ok(&r[0]).positions[0] < ok(&r[1]).positions[0],
        "submission order"
    );
    assert!(
        ok(&r[0])
            .message
            .contains("from x@customer.example to y@customer.example"),
        "{}",
        ok(&r[0]).message
    );
    assert!(provledger_store::verify(committer.store(), &mut |_| {})
        .unwrap()
        .is_intact());
}

#[test]
fn execute_decides_again_when_its_cached_state_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = url(dir.path(), "l.db");
    let a = Ledger::open(&path).unwrap();
    let b = Ledger::open(&path).unwrap();
    let run = |ledger: &Ledger, c: BatchCommand| ledger.submit(c.submission);
    run(&a, place("WO-1", 1, "2026-11-20T09:00:00Z")).unwrap();
    run(
        &a,
        change(
            "WO-1",
            "1.1",
            "x@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:00:00Z",
        ),
    )
    .unwrap();
    run(
        &b,
        change(
            "WO-1",
            "1.1",
            "y@customer.example",
            false,
            ORDERER,
            "2026-11-20T11:00:00Z",
        ),
    )
    .unwrap();
    let outcome = run(
        &a,
        change(
            "WO-1",
            "1.1",
            "z@customer.example",
            false,
            ORDERER,
            "2026-11-20T12:00:00Z",
        ),
    )
    .unwrap();
    assert!(
        outcome
            .message
            .contains("from y@customer.example to z@customer.example"),
        "{}",
        outcome.message
    );
    let events = all_events(a.store());
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

#[test]
fn deferred_projections_are_caught_up_by_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&url(dir.path(), "l.db")).unwrap();
    ledger.set_deferred_projections(true);
    let c = place("WO-1", 2, "2026-11-20T09:00:00Z");
    ledger.submit(c.submission).unwrap();
    let results = ledger.execute_batch(vec![change(
        "WO-1",
        "1.1",
        "a@customer.example",
        true,
        ORDERER,
        "2026-11-20T10:00:00Z",
    )]);
    assert!(results[0].is_ok());
    assert_eq!(
        ledger.read_models().checkpoint().unwrap(),
        0,
        "nothing projected yet"
    );
    let rows = ledger.transactions(&TransactionQuery::default()).unwrap();
    assert_eq!(rows.len(), 2, "the read caught up first: {rows:?}");
    assert_eq!(
        ledger.read_models().checkpoint().unwrap(),
        head(ledger.store())
    );
}

#[test]
fn a_lagging_read_model_snapshot_is_completed_from_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = url(dir.path(), "l.db");
    let writer = Ledger::open(&path).unwrap();
    let run = |ledger: &Ledger, c: BatchCommand| ledger.submit(c.submission);
    run(&writer, place("WO-1", 2, "2026-11-20T09:00:00Z")).unwrap();
    let placed_at = head(writer.store());
    // The read models hold the order at version 1 from here on.
    writer.set_deferred_projections(true);
    run(
        &writer,
        change(
            "WO-1",
            "1.1",
            "x@customer.example",
            true,
            ORDERER,
            "2026-11-20T10:00:00Z",
        ),
    )
    .unwrap();
    assert_eq!(writer.read_models().checkpoint().unwrap(), placed_at);
    // A fresh ledger (nothing cached) starts from the snapshot at version 1
    // and folds the two later events on top.
    let fresh = Ledger::open(&path).unwrap();
    fresh.set_deferred_projections(true);
    let outcome = run(
        &fresh,
        change(
            "WO-1",
            "1.2",
            "y@customer.example",
            false,
            ORDERER,
            "2026-11-20T11:00:00Z",
        ),
    )
    .unwrap();
    assert!(
        outcome
            .message
            .contains("from x@customer.example to y@customer.example"),
        "{}",
        outcome.message
    );
    assert_eq!(fresh.load(&oid("WO-1")).unwrap().version, 4);
}

#[test]
fn nothing_is_acknowledged_when_the_commit_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let fail = Arc::new(AtomicBool::new(false));
    let failing = Arc::clone(&fail);
    // While `fail` is set, every commit fails.
    let store = FaultyStore::new(Box::new(SqliteStore::open(&path).unwrap()), move |_| {
        failing.load(Ordering::SeqCst).then(|| {
            Fault::BeforeCommit(StoreError::Corrupt {
                position: 0,
                reason: "disk full (simulated)".into(),
            })
        })
    });
    let read_models = ReadModels::open(&format!("sqlite:{}", path.display())).unwrap();
    let ledger = Arc::new(Ledger::from_parts(Box::new(store), read_models));
    assert!(ledger.execute_batch(vec![place("WO-1", 1, "2026-11-20T09:00:00Z")])[0].is_ok());
    let head = ledger.store().head().unwrap();

    fail.store(true, Ordering::SeqCst);
    let results = ledger.execute_batch(vec![
        change(
            "WO-1",
            "1.1",
            "a@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:00:00Z",
        ),
        place("WO-2", 1, "2026-11-20T10:00:00Z"),
        // Bad input is still reported as such: it never reached the store.
        change(
            "WO-1",
            "1.9",
            "a@customer.example",
            false,
            ORDERER,
            "2026-11-20T10:00:00Z",
        ),
    ]);
    assert!(
        matches!(results[0], Err(AppError::BatchFailed { .. })),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(results[1], Err(AppError::BatchFailed { .. })),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(AppError::Domain(_))),
        "{:?}",
        results[2]
    );
    assert_eq!(ledger.store().head().unwrap(), head, "nothing was written");

    // Through the committer: every submitter hears of the failure.
    let committer = GroupCommitter::start(Arc::clone(&ledger), GroupCommitOptions::default());
    std::thread::scope(|scope| {
        for i in 0..4 {
            let committer = &committer;
            scope.spawn(move || {
                let r =
                    committer.submit(place(&format!("WO-{}", 10 + i), 1, "2026-11-20T10:00:00Z"));
                assert!(matches!(r, Err(AppError::BatchFailed { .. })), "{r:?}");
            });
        }
    });
    assert_eq!(ledger.store().head().unwrap(), head, "nothing was written");

    // Once the store recovers, the same commands go through.
    fail.store(false, Ordering::SeqCst);
    let r = committer.submit(place("WO-10", 1, "2026-11-20T10:00:00Z"));
    assert_eq!(ok(&r).status, OutcomeStatus::Success);
    // The order the failed batch left cached is not trusted.
    let r = committer.submit(change(
        "WO-1",
        "1.1",
        "b@customer.example",
        false,
        ORDERER,
        "2026-11-20T11:00:00Z",
    ));
    assert!(
        ok(&r).message.contains("from it@customer.example"),
        "{}",
        ok(&r).message
    );
    committer.shutdown();
}

#[test]
fn the_committer_serves_many_submitters_and_batches_them() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(&url(dir.path(), "l.db")).unwrap());
    let committer = GroupCommitter::start(Arc::clone(&ledger), GroupCommitOptions::default());
    let threads = 8;
    let per_thread = 6;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let committer = &committer;
            scope.spawn(move || {
                let id = format!("WO-{}", 100 + t);
                let r = committer.submit(place(&id, 2, "2026-11-20T09:00:00Z"));
                assert_eq!(ok(&r).status, OutcomeStatus::Success);
                for i in 1..per_thread {
                    let email = format!("c{i}@customer.example");
                    let t = format!("2026-11-20T10:{i:02}:00Z");
                    let r = committer.submit(change(&id, "1.1", &email, i % 2 == 0, ORDERER, &t));
                    let outcome = ok(&r);
                    assert_eq!(outcome.status, OutcomeStatus::Success);
                    // The outcome is readable as soon as it is returned.
                    assert!(!outcome.positions.is_empty());
                }
            });
        }
    });
    let stats = committer.shutdown();
    assert_eq!(stats.commands, (threads * per_thread) as u64);
    assert!(stats.batches >= 1 && stats.batches <= stats.commands);
    let report = provledger_store::verify(ledger.store(), &mut |_| {}).unwrap();
    assert!(report.is_intact());
    // Every change is in the Transaction Manager, in each order's sequence.
    for t in 0..threads {
        let rows = ledger
            .transactions(&TransactionQuery {
                order_id: Some(oid(&format!("WO-{}", 100 + t))),
                ..TransactionQuery::default()
            })
            .unwrap();
        assert!(rows.len() >= per_thread - 1, "{rows:?}");
    }
}
