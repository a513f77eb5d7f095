//! Projection workers on a shared PostgreSQL database: two `provledger
//! project --follow` processes race over the same log in small batches, one
//! is killed with SIGKILL mid-way, and a successor finishes. Each event must
//! be applied exactly once (the read models equal a rebuild from scratch) and
//! the successor resumes from the last committed checkpoint. Skipped unless
//! PROVLEDGER_TEST_POSTGRES_URL is set (CI requires it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, TimeZone, Utc};
use provledger::Ledger;
use provledger_domain::{Actor, Command as DomainCommand, Context, OrderId, OrderRequest};
use provledger_projections::ReadModels;
use provledger_store::postgres::{drop_schema, test_url, unique_test_schema, PostgresStore};

fn order(i: usize) -> OrderRequest {
    serde_json::from_value(serde_json::json!({
        "order_id": format!("WO-{i}"),
        "ordering_contact": "olivia@partner.example",
        "partner_contacts": ["pat@partner.example"],
        "lines": [
            {"line_id": "1.1", "subscription_id": format!("Sub{i}A"), "offer": "A-Flex",
             "rsd": "2026-12-01", "provisioning_contact": "it@customer.example"},
            {"line_id": "1.2", "subscription_id": format!("Sub{i}B"), "offer": "A-WX",
             "rsd": "2026-12-01", "provisioning_contact": "it@customer.example"}
        ]
    }))
    .expect("order")
}

/// Fill a SQLite ledger, then copy its events (not its read models) into the
/// PostgreSQL schema, so the workers find a log with nothing applied yet.
fn seed_events(pg_url: &str) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed =
        Ledger::open(&format!("sqlite:{}", dir.path().join("seed.db").display())).expect("seed");
    let at = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
    for i in 0..150 {
        let ctx = Context::new(Actor::parse("olivia@partner.example").unwrap(), at);
        let valid = order(i).validate().expect("valid");
        seed.execute(
            &valid.order_id.clone(),
            DomainCommand::PlaceOrder(valid),
            &ctx,
            None,
        )
        .expect("place");
    }
    seed.tick(at + Days::days(40)).expect("tick");
    let events: Vec<_> = seed
        .store()
        .read_all(0)
        .expect("read")
        .map(|e| e.expect("event"))
        .collect();
    let store = provledger_store::open(pg_url).expect("pg store");
    store.import_batch(&events).expect("import");
    events.len() as u64
}

fn worker(url: &str, until: u64) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_provledger"))
        .args([
            "--store",
            url,
            "project",
            "--follow",
            "--poll-ms",
            "20",
            "--batch-size",
            "25",
        ])
        .args(["--until-position", &until.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

#[test]
fn workers_apply_each_event_once_and_a_successor_resumes_after_kill_9() {
    let Some(base) = test_url() else {
        return;
    };
    let schema = unique_test_schema("workers");
    PostgresStore::connect_in_schema(&base, &schema).expect("schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");

    let head = seed_events(&url);
    assert!(head > 600, "enough events for many batches: {head}");
    let observer = ReadModels::open(&url).expect("observer");

    let mut doomed = worker(&url, head);
    let survivor = worker(&url, head);
    // Kill the first worker once the workers have made progress but not finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let checkpoint = observer.checkpoint().expect("checkpoint");
        if checkpoint > 0 || Instant::now() > deadline {
            break;
        }
        std::hint::spin_loop();
    }
    doomed.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    let _ = doomed.wait();
    let survived = survivor.wait_with_output().expect("survivor");
    assert!(
        survived.status.success(),
        "surviving worker failed: {}",
        String::from_utf8_lossy(&survived.stderr)
    );
    // A successor starting now resumes from the committed checkpoint.
    let successor = worker(&url, head).wait_with_output().expect("successor");
    assert!(
        successor.status.success(),
        "{}",
        String::from_utf8_lossy(&successor.stderr)
    );
    assert_eq!(observer.checkpoint().expect("checkpoint"), head);

    // Each event applied exactly once: the read models equal a rebuild.
    let maintained = observer.dump().expect("dump");
    let store = provledger_store::open(&url).expect("store");
    observer
        .rebuild(store.as_ref(), &mut |_| {})
        .expect("rebuild");
    assert_eq!(observer.dump().expect("dump"), maintained);
    let ledger = Ledger::open(&url).expect("ledger");
    let history = ledger
        .history(
            &provledger_projections::HistoryQuery {
                order_id: Some(OrderId::parse("WO-7").unwrap()),
                ..Default::default()
            },
            None,
        )
        .expect("history");
    assert!(!history.is_empty());
    drop(ledger);
    drop(store);
    drop(observer);
    let _ = drop_schema(&base, &schema);
}
