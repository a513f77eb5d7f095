//! Faults injected under the application: a store whose append fails before
//! it commits, and one that commits but loses the acknowledgement (the
//! connection drops on the way back). The ledger must report the failure
//! (exit 4), write nothing partial, and a retry with the same idempotency key
//! must return the first result without appending twice.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use provledger::{AppError, Ledger, OutcomeStatus, EXIT_FAILURE};
use provledger_domain::{Actor, Command, Context, Email, LineId, OrderId, OrderRequest};
use provledger_projections::{ReadModels, TransactionQuery};
use provledger_store::sqlite::SqliteStore;
use provledger_store::testing::{Fault as Injected, FaultyStore};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Fail without touching the database.
    BeforeCommit,
    /// Commit, then report an error as if the reply was lost.
    AfterCommit,
}

fn ledger(dir: &std::path::Path, fault: Fault) -> (Ledger, Arc<AtomicU32>) {
    let path = dir.join("ledger.db");
    let failures = Arc::new(AtomicU32::new(0));
    let left = Arc::clone(&failures);
    // Inject `fault` into the next `failures` appends.
    let store = FaultyStore::new(
        Box::new(SqliteStore::open(&path).expect("open")),
        move |_| {
            left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .ok()?;
            let error = FaultyStore::connection_reset();
            Some(match fault {
                Fault::BeforeCommit => Injected::BeforeCommit(error),
                Fault::AfterCommit => Injected::AfterCommit(error),
            })
        },
    );
    let read_models = ReadModels::open(&format!("sqlite:{}", path.display())).expect("read models");
    (Ledger::from_parts(Box::new(store), read_models), failures)
}

fn place(ledger: &Ledger) {
    place_order(ledger, "WO-1");
}

/// Place order `id` of two lines, both due for their initial email on
/// 2026-12-01.
fn place_order(ledger: &Ledger, id: &str) {
    let order: OrderRequest = serde_json::from_str(&format!(
        r#"{{"order_id":"{id}","ordering_contact":"olivia@partner.example","lines":[
            {{"line_id":"1.1","subscription_id":"Sub1-{id}","offer":"A-Flex","rsd":"2026-12-01","provisioning_contact":"it@customer.example"}},
            {{"line_id":"1.2","subscription_id":"Sub2-{id}","offer":"A-WX","rsd":"2026-12-01","provisioning_contact":"it@customer.example"}}]}}"#
    ))
    .expect("order");
    let ctx = Context::new(
        Actor::parse("olivia@partner.example").expect("actor"),
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
    );
    ledger
        .execute(
            &OrderId::parse(id).unwrap(),
            Command::PlaceOrder(order.validate().expect("valid")),
            &ctx,
            None,
        )
        .expect("placed");
}

fn change_all() -> (Command, Context) {
    (
        Command::ChangeContact {
            line_id: LineId::parse("1.1").unwrap(),
            new_email: Email::parse("new@customer.example").unwrap(),
            apply_to_all_lines: true,
        },
        Context::new(
            Actor::parse("olivia@partner.example").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap(),
        ),
    )
}

fn count(ledger: &Ledger) -> u64 {
    ledger.store().head().unwrap().map_or(0, |h| h.position)
}

#[test]
fn a_failed_append_writes_nothing_and_reports_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, failures) = ledger(dir.path(), Fault::BeforeCommit);
    place(&ledger);
    let before = count(&ledger);
    failures.store(1, Ordering::SeqCst);
    let (command, ctx) = change_all();
    let err = ledger
        .execute(
            &OrderId::parse("WO-1").unwrap(),
            command.clone(),
            &ctx,
            Some("k1"),
        )
        .expect_err("the append failed");
    assert!(matches!(err, AppError::Store(_)), "{err}");
    assert_eq!(err.exit_code(), EXIT_FAILURE);
    assert_eq!(
        count(&ledger),
        before,
        "nothing written, not even half of apply-to-all"
    );
    // The retry goes through, once.
    let outcome = ledger
        .execute(&OrderId::parse("WO-1").unwrap(), command, &ctx, Some("k1"))
        .expect("retry");
    assert_eq!(outcome.status, OutcomeStatus::Success);
    assert!(!outcome.replayed);
    assert_eq!(count(&ledger), before + 2);
}

#[test]
fn a_lost_acknowledgement_is_recovered_by_the_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, failures) = ledger(dir.path(), Fault::AfterCommit);
    place(&ledger);
    let before = count(&ledger);
    failures.store(1, Ordering::SeqCst);
    let (command, ctx) = change_all();
    let order = OrderId::parse("WO-1").unwrap();
    let err = ledger
        .execute(&order, command.clone(), &ctx, Some("req-7"))
        .expect_err("the reply was lost");
    assert_eq!(err.exit_code(), EXIT_FAILURE);
    assert_eq!(count(&ledger), before + 2, "the append did commit");
    // The client does not know; it retries with the same key.
    let retry = ledger
        .execute(&order, command, &ctx, Some("req-7"))
        .expect("retry returns the first result");
    assert!(retry.replayed);
    assert_eq!(retry.status, OutcomeStatus::Success);
    assert_eq!(retry.positions, vec![before + 1, before + 2]);
    assert_eq!(count(&ledger), before + 2, "no duplicate");
    let rows = ledger
        .transactions(&TransactionQuery::default())
        .expect("transactions");
    assert_eq!(rows.len(), 2, "one row per changed line, once");
}

#[test]
fn on_sqlite_the_read_models_commit_in_the_commands_own_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, failures) = ledger(dir.path(), Fault::AfterCommit);
    place(&ledger);
    let head = |l: &Ledger| l.store().head().unwrap().map_or(0, |h| h.position);
    assert_eq!(ledger.read_models().checkpoint().unwrap(), head(&ledger));
    // The reply is lost after the commit, so the ledger never gets to catch
    // the read models up: they are current only because they were written
    // in the append's own transaction.
    failures.store(1, Ordering::SeqCst);
    let (command, ctx) = change_all();
    ledger
        .execute(&OrderId::parse("WO-1").unwrap(), command, &ctx, None)
        .expect_err("the reply was lost");
    assert_eq!(ledger.read_models().checkpoint().unwrap(), head(&ledger));
    let fresh = ReadModels::open(&format!(
        "sqlite:{}",
        dir.path().join("ledger.db").display()
    ))
    .expect("read models");
    let rows = fresh
        .transactions(&TransactionQuery::default())
        .expect("transactions");
    assert_eq!(
        rows.len(),
        2,
        "one row per changed line, committed with the events"
    );
}

/// The day the orders of [`place_order`] are due for their initial emails.
fn due_day() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap()
}

#[test]
fn a_tick_appends_every_due_order_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    // The number of requests in each append.
    let appends = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&appends);
    let store = FaultyStore::new(
        Box::new(SqliteStore::open(&path).expect("open")),
        move |requests| {
            seen.lock().unwrap().push(requests.len());
            None
        },
    );
    let read_models = ReadModels::open(&format!("sqlite:{}", path.display())).expect("read models");
    let ledger = Ledger::from_parts(Box::new(store), read_models);
    for id in ["WO-1", "WO-2", "WO-3"] {
        place_order(&ledger, id);
    }
    appends.lock().unwrap().clear();
    let report = ledger.tick(due_day()).expect("tick");
    assert_eq!(report.orders, 3);
    assert_eq!(report.initial_emails_sent, 6);
    assert_eq!(
        *appends.lock().unwrap(),
        vec![3],
        "one append (one transaction, one fsync) for the three due orders"
    );
    let again = ledger.tick(due_day()).expect("second tick");
    assert_eq!(again.orders, 0, "nothing is due twice");
}

#[test]
fn on_sqlite_a_ticks_read_models_commit_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, failures) = ledger(dir.path(), Fault::AfterCommit);
    place_order(&ledger, "WO-1");
    place_order(&ledger, "WO-2");
    let before = count(&ledger);
    // The reply to the tick's append is lost after the commit: the tick
    // fails before any catch-up, so the read models are current only if
    // they were written in the append's own transaction.
    failures.store(1, Ordering::SeqCst);
    ledger.tick(due_day()).expect_err("the reply was lost");
    let after = count(&ledger);
    assert!(after > before, "the tick's events committed");
    assert_eq!(ledger.read_models().checkpoint().unwrap(), count(&ledger));
    let report = ledger.tick(due_day()).expect("the tick again");
    assert_eq!(report.orders, 0, "what committed is not appended twice");
    assert_eq!(count(&ledger), after);
}
