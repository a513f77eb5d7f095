//! Several workers maintaining the same read models apply each event once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;

use provledger_projections::ReadModels;
use provledger_store::sqlite::SqliteStore;

use crate::support::*;

/// A ledger of `orders` orders, each placed, changed, resent and ticked.
pub fn busy_ledger(orders: usize) -> Ledger {
    let mut ledger = Ledger::new();
    for i in 0..orders {
        let id = format!("WO-{i:04}");
        let s1 = format!("Sub{i:04}1");
        let s2 = format!("Sub{i:04}2");
        ledger
            .exec(
                &id,
                OLIVIA,
                "2026-11-20T10:00:00Z",
                place(
                    &id,
                    &[
                        ("1", &s1, "A-Flex", "2026-12-01", "it@customer.example"),
                        ("2", &s2, "A-WX", "2026-12-01", "it@customer.example"),
                    ],
                ),
            )
            .unwrap();
        ledger
            .exec(
                &id,
                PAT,
                "2026-11-21T10:00:00Z",
                change("1", "new@customer.example", i % 2 == 0),
            )
            .unwrap();
        ledger
            .exec(&id, OLIVIA, "2026-12-02T10:00:00Z", resend("2"))
            .unwrap();
        if i % 3 == 0 {
            ledger
                .exec(&id, OLIVIA, "2026-12-04T10:00:00Z", onboard("org-1"))
                .unwrap();
        }
        ledger.tick(&id, "2026-12-10T00:00:00Z");
    }
    ledger
}

#[test]
fn two_workers_catching_up_at_once_apply_each_event_once() {
    let ledger = busy_ledger(40);
    let head = ledger.head();
    assert!(head > 300, "{head}");

    let workers: Vec<ReadModels> = (0..2)
        .map(|_| ReadModels::open(&ledger.url).unwrap().with_batch_size(7))
        .collect();
    let barrier = Barrier::new(workers.len());
    let applied: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter()
            .map(|models| {
                let barrier = &barrier;
                let path = &ledger.path;
                scope.spawn(move || {
                    // Each worker reads through its own store connection.
                    let store = SqliteStore::open(path).unwrap();
                    barrier.wait();
                    models.catch_up(&store).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        applied.iter().sum::<u64>(),
        head,
        "each event applied exactly once: {applied:?}"
    );
    let concurrent = workers[0].dump().unwrap();
    assert_eq!(workers[1].dump().unwrap(), concurrent);

    // Single-threaded from scratch gives the same read models.
    let single = ReadModels::open(&ledger.url).unwrap();
    single.rebuild(&ledger.store, &mut |_| {}).unwrap();
    assert_eq!(single.dump().unwrap(), concurrent);
}

#[test]
fn a_worker_keeps_up_while_events_are_appended() {
    let mut ledger = Ledger::new();
    let models = ledger.models().with_batch_size(5);
    let other = ledger.models().with_batch_size(3);
    for i in 0..30 {
        let id = format!("WO-{i}");
        ledger
            .exec(
                &id,
                OLIVIA,
                "2026-11-20T10:00:00Z",
                place(
                    &id,
                    &[(
                        "1",
                        &format!("Sub{i}"),
                        "A-Flex",
                        "2026-12-01",
                        "it@customer.example",
                    )],
                ),
            )
            .unwrap();
        ledger
            .exec(
                &id,
                PAT,
                "2026-11-22T10:00:00Z",
                change("1", "x@customer.example", false),
            )
            .unwrap();
        // Alternate which handle catches up: each sees the other's checkpoint.
        if i % 2 == 0 {
            models.catch_up(&ledger.store).unwrap();
        } else {
            other.catch_up(&ledger.store).unwrap();
        }
    }
    models.catch_up(&ledger.store).unwrap();
    let incremental = models.dump().unwrap();
    assert_eq!(other.dump().unwrap(), incremental);
    models.rebuild(&ledger.store, &mut |_| {}).unwrap();
    assert_eq!(models.dump().unwrap(), incremental);
}

#[test]
fn workers_catch_up_while_another_thread_appends() {
    let mut ledger = Ledger::new();
    let workers: Vec<ReadModels> = (0..2)
        .map(|_| ReadModels::open(&ledger.url).unwrap().with_batch_size(4))
        .collect();
    let done = AtomicBool::new(false);
    let path = ledger.path.clone();
    let applied: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter()
            .map(|models| {
                let done = &done;
                let path = &path;
                scope.spawn(move || {
                    let store = SqliteStore::open(path).unwrap();
                    let mut applied = 0;
                    while !done.load(Ordering::SeqCst) {
                        applied += models.catch_up(&store).unwrap();
                    }
                    applied + models.catch_up(&store).unwrap()
                })
            })
            .collect();
        for i in 0..25 {
            let id = format!("WO-{i}");
            ledger
                .exec(
                    &id,
                    OLIVIA,
                    "2026-11-20T10:00:00Z",
                    place(
                        &id,
                        &[
                            (
                                "1",
                                &format!("Sub{i}a"),
                                "A-Flex",
                                "2026-12-01",
                                "it@customer.example",
                            ),
                            (
                                "2",
                                &format!("Sub{i}b"),
                                "A-WX",
                                "2026-12-01",
                                "it@customer.example",
                            ),
                        ],
                    ),
                )
                .unwrap();
            ledger
                .exec(
                    &id,
                    PAT,
                    "2026-11-22T10:00:00Z",
                    change("1", "x@customer.example", true),
                )
                .unwrap();
            ledger
                .exec(&id, OLIVIA, "2026-12-02T10:00:00Z", resend("2"))
                .unwrap();
        }
        done.store(true, Ordering::SeqCst);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let head = ledger.head();
    assert_eq!(applied.iter().sum::<u64>(), head, "{applied:?}");
    let incremental = workers[0].dump().unwrap();
    workers[1].rebuild(&ledger.store, &mut |_| {}).unwrap();
    assert_eq!(workers[0].dump().unwrap(), incremental);
}
