//! Crash consistency: an append that returned success survives `kill -9`.
//!
//! A child process (this test binary re-executed) appends to an SQLite store
//! in a loop with the default `synchronous=FULL` and prints each
//! acknowledged position only after `append` returned. The parent kills it
//! with SIGKILL mid-stream, reopens the file and checks that every
//! acknowledged event is there, byte for byte, and that the chain verifies.
//! (Power loss is the same promise one level down: WAL + FULL fsyncs the log
//! before `append` returns.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chrono::Utc;
use provledger_store::sqlite::SqliteStore;
use provledger_store::{verify, AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent};

const CHILD_DB: &str = "PROVLEDGER_TEST_CRASH_CHILD_DB";

fn event(i: u64) -> NewEvent {
    NewEvent {
        event_type: "Ticked".into(),
        schema_version: 1,
        payload: serde_json::json!({ "i": i, "pad": "x".repeat(200) }),
        metadata: Metadata {
            actor: "crash-test".into(),
            transaction_id: format!("tx-{i}"),
            ..Metadata::default()
        },
        occurred_at: Utc::now(),
    }
}

/// The child: append forever, acknowledging each durable append on stdout.
#[test]
fn crash_child_appender() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return; // only runs when re-executed by the parent test
    };
    let store = SqliteStore::open(std::path::Path::new(&path)).expect("open");
    for i in 1.. {
        let stream = format!("stream-{}", i % 7);
        let outcome = store
            .append(AppendRequest::single(
                stream,
                ExpectedVersion::Any,
                vec![event(i)],
            ))
            .expect("append");
        println!("ack {}", outcome.events[0].position);
    }
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.db");
    // Create the schema first so the child starts appending at once.
    drop(SqliteStore::open(&path).expect("create"));
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash::crash_child_appender",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(position) = line.strip_prefix("ack ") {
            acknowledged.push(position.trim().parse::<u64>().expect("position"));
            if acknowledged.len() == 150 {
                child.kill().expect("SIGKILL the child"); // Child::kill is SIGKILL on Unix
                break;
            }
        }
    }
    let _ = child.wait();
    assert_eq!(
        acknowledged.len(),
        150,
        "the child acknowledged appends before dying"
    );

    let store = SqliteStore::open(&path).expect("reopen after the crash");
    let head = store.head().expect("head").expect("events survived");
    let last_ack = *acknowledged.last().expect("acks");
    assert!(
        head.position >= last_ack,
        "acknowledged position {last_ack} lost: the store ends at {}",
        head.position
    );
    let stored: Vec<u64> = store
        .read_all(0)
        .expect("read")
        .map(|e| e.expect("decodable after the crash").position)
        .collect();
    for position in &acknowledged {
        assert!(
            stored.contains(position),
            "acknowledged event {position} is missing"
        );
    }
    let report = verify(&store, &mut |_| {}).expect("verify");
    assert!(
        report.is_intact(),
        "chain broken after kill -9: {:?}",
        report.first_broken
    );
}
