//! Evidence: keys, checkpoints, `verify --against` and bundles, and the
//! attacks they must catch — a log rewritten and re-hashed (tree included)
//! after a checkpoint, a truncated log, a deleted last event, a forged or
//! foreign checkpoint, and bundles with an altered byte, swapped events, an
//! event of another order, a forged proof or another key.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use provledger_proof::merkle::Frontier;
use provledger_store::hash;
use provledger_store::sqlite::SqliteStore;
use provledger_store::{EventStore, RecordedEvent};
use serde_json::Value;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// The demo ledger (four orders, their reservations, and its LedgerCreated event) and a key pair `k`.
    fn demo() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        f.run(&["demo"]).success();
        f.run(&["keygen", "--out", f.path("k").to_str().unwrap()])
            .success();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn db(&self) -> PathBuf {
        self.path("ledger.db")
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("provledger").expect("binary");
        cmd.env_remove("PROVLEDGER_STORE")
            .env_remove("PROVLEDGER_AS")
            .arg("--db")
            .arg(self.db());
        cmd
    }

    fn run(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.cmd().args(args).assert()
    }

    fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    /// Take a checkpoint with key `key` (a prefix) into `out`.
    fn checkpoint(&self, key: &str, out: &str) {
        self.run(&[
            "checkpoint",
            "--key",
            &self.p(&format!("{key}.key")),
            "--out",
            &self.p(out),
        ])
        .success();
    }

    fn verify_against(&self, checkpoint: &str, key: &str) -> assert_cmd::assert::Assert {
        self.run(&[
            "verify",
            "--against",
            &self.p(checkpoint),
            "--pubkey",
            &self.p(&format!("{key}.pub")),
        ])
    }

    fn bundle(&self, subscription: &str, out: &str) -> String {
        self.run(&[
            "evidence",
            "--subscription",
            subscription,
            "--key",
            &self.p("k.key"),
            "--out",
            &self.p(out),
        ])
        .success();
        std::fs::read_to_string(self.path(out)).expect("bundle")
    }

    fn pubkey(&self) -> String {
        std::fs::read_to_string(self.path("k.pub")).expect("pub")
    }

    fn events(&self) -> Vec<RecordedEvent> {
        let store = SqliteStore::open(&self.db()).expect("open");
        store
            .read_all(0)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("events")
    }
}

/// An attacker with write access to the file: drops the append-only
/// triggers, replaces the events after `keep` with `events[keep..]` as
/// given (hashes recomputed from `from` on, chained), and rebuilds the
/// whole Merkle tree to match, so that a plain `verify` passes.
fn rewrite(db: &Path, mut events: Vec<RecordedEvent>, from: u64) {
    let conn = rusqlite::Connection::open(db).expect("open raw");
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete; \
         DROP TRIGGER IF EXISTS merkle_nodes_no_update; DROP TRIGGER IF EXISTS merkle_nodes_no_delete; \
         DELETE FROM merkle_nodes;",
    )
    .expect("drop triggers");
    let mut prev = hash::GENESIS_HASH.to_string();
    let mut frontier = Frontier::new();
    for event in &mut events {
        if event.position >= from {
            event.prev_hash = prev.clone();
            event.hash = hash::event_hash(event);
            conn.execute(
                "UPDATE events SET payload = ?1, prev_hash = ?2, hash = ?3 WHERE position = ?4",
                rusqlite::params![
                    hash::canonical_json(&event.payload),
                    event.prev_hash,
                    event.hash,
                    event.position as i64
                ],
            )
            .expect("update");
        }
        prev = event.hash.clone();
        let leaf: [u8; 32] = hex::decode(&event.hash).unwrap().try_into().unwrap();
        for (id, h) in frontier.push(&leaf) {
            let end_leaf = ((id.index + 1) << id.level) - 1;
            conn.execute(
                "INSERT INTO merkle_nodes (level, idx, end_leaf, hash) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id.level, id.index as i64, end_leaf as i64, &h[..]],
            )
            .expect("insert node");
        }
    }
    let last = events.last().map_or(0, |e| e.position) as i64;
    conn.execute("DELETE FROM events WHERE position > ?1", [last])
        .expect("truncate");
    conn.execute(
        "DELETE FROM idempotency_keys WHERE last_position > ?1",
        [last],
    )
    .expect("keys");
}

#[test]
fn keygen_writes_a_private_key_and_never_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("auditor");
    let out = Command::cargo_bin("provledger")
        .unwrap()
        .args(["keygen", "--out", prefix.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let secret = std::fs::read_to_string(dir.path().join("auditor.key")).unwrap();
    let secret_hex = secret.lines().nth(1).unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!printed.contains(secret_hex), "the secret key was printed");
    assert!(printed.contains("ed25519:"), "{printed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("auditor.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(dir.path().join("auditor.pub").exists());
    // Never overwrite a key.
    Command::cargo_bin("provledger")
        .unwrap()
        .args(["keygen", "--out", prefix.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("auditor.key")).unwrap(),
        secret
    );
}

#[test]
fn a_checkpoint_verifies_now_and_after_the_ledger_grows() {
    let f = Fixture::demo();
    let n = f.events().len() as u64;
    f.checkpoint("k", "cp.json");
    let cp: Value = serde_json::from_str(&std::fs::read_to_string(f.path("cp.json")).unwrap())
        .expect("checkpoint JSON");
    assert_eq!(cp["size"], n);
    assert_eq!(cp["clock_mode"], "simulated");
    // The demo ledger's first event names it (LedgerCreated).
    assert!(!cp["ledger_id"].as_str().unwrap().is_empty());
    f.verify_against("cp.json", "k")
        .success()
        .stdout(predicate::str::contains(format!(
            "still holds the {n} events"
        )));
    f.run(&["tick", "--now", "2027-06-01T00:00:00Z"]).success();
    let out = f
        .cmd()
        .args(["--format", "json", "verify", "--against"])
        .arg(f.path("cp.json"))
        .arg("--pubkey")
        .arg(f.path("k.pub"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checkpoint_size"], n);
    assert!(report["events_checked"].as_u64().unwrap() > n);
    assert!(report["consistency_proof_length"].as_u64().unwrap() > 0);
    // --against needs --pubkey.
    f.run(&["verify", "--against", &f.p("cp.json")]).code(2);
}

#[test]
fn a_log_rewritten_and_rehashed_after_a_checkpoint_is_caught() {
    let f = Fixture::demo();
    f.checkpoint("k", "cp.json");
    let mut events = f.events();
    let n = events.len();
    let target = 20usize;
    let text = serde_json::to_string(&events[target - 1].payload).unwrap();
    let changed = text.replacen("example", "exampie", 1);
    assert_ne!(text, changed, "the payload has an email to alter");
    events[target - 1].payload = serde_json::from_str(&changed).unwrap();
    rewrite(&f.db(), events, target as u64);
    // The chain and the tree agree with each other again: verify alone is fooled…
    f.run(&["verify"]).success();
    // …the kept checkpoint is not.
    f.verify_against("cp.json", "k")
        .code(4)
        .stderr(predicate::str::contains(format!("position {n}")))
        .stderr(predicate::str::contains("rewritten"));
}

#[test]
fn a_truncated_log_is_caught_by_the_checkpoint() {
    let f = Fixture::demo();
    f.checkpoint("k", "cp.json");
    let mut events = f.events();
    let n = events.len();
    events.truncate(n - 5);
    rewrite(&f.db(), events, u64::MAX);
    f.run(&["verify"]).success();
    f.verify_against("cp.json", "k")
        .code(4)
        .stderr(predicate::str::contains(format!("holds only {}", n - 5)))
        .stderr(predicate::str::contains(format!("{}..{n}", n - 4)));
}

#[test]
fn deleting_the_last_event_is_noticed() {
    let f = Fixture::demo();
    f.checkpoint("k", "cp.json");
    let n = f.events().len();
    let conn = rusqlite::Connection::open(f.db()).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER events_no_delete; DELETE FROM events WHERE position = {n};"
    ))
    .unwrap();
    drop(conn);
    // The tree still holds the deleted event's leaf.
    f.run(&["verify"])
        .code(4)
        .stderr(predicate::str::contains(format!("position {n}")))
        .stderr(predicate::str::contains("removed"));
    // An attacker who also cleans up the tree is caught by the checkpoint.
    let mut events = f.events();
    events.truncate(n - 1);
    rewrite(&f.db(), events, u64::MAX);
    f.run(&["verify"]).success();
    f.verify_against("cp.json", "k")
        .code(4)
        .stderr(predicate::str::contains(format!("holds only {}", n - 1)));
}

#[test]
fn a_checkpoint_of_another_key_or_altered_is_refused() {
    let f = Fixture::demo();
    f.run(&["keygen", "--out", &f.p("other")]).success();
    f.checkpoint("other", "cp-other.json");
    f.verify_against("cp-other.json", "k")
        .code(4)
        .stderr(predicate::str::contains("signed by key"));
    f.checkpoint("k", "cp.json");
    let n = f.events().len();
    let text = std::fs::read_to_string(f.path("cp.json")).unwrap();
    let altered = text.replace(&format!("\"size\": {n}"), &format!("\"size\": {}", n - 1));
    assert_ne!(text, altered);
    std::fs::write(f.path("cp-altered.json"), altered).unwrap();
    f.verify_against("cp-altered.json", "k")
        .code(4)
        .stderr(predicate::str::contains("signature does not verify"));
    std::fs::write(f.path("cp-garbage.json"), "not json").unwrap();
    f.verify_against("cp-garbage.json", "k").code(2);
}

fn check(bundle: &Value, pubkey: &str) -> Result<provledger_verify::Verified, String> {
    provledger_verify::check(&bundle.to_string(), pubkey).map_err(|e| {
        assert_eq!(
            e.exit_code(),
            4,
            "a tampered bundle is an integrity failure: {e}"
        );
        e.to_string()
    })
}

#[test]
fn a_bundle_holds_one_order_and_verifies_offline() {
    let f = Fixture::demo();
    let text = f.bundle("Sub100042", "b.json");
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let events = bundle["events"].as_array().unwrap();
    assert!(events.len() > 5);
    for e in events {
        assert_eq!(e["event"]["stream_id"], "order-WO-1001");
    }
    for other in ["WO-1002", "WO-1003", "WO-1004", "Sub2000"] {
        assert!(!text.contains(other), "the bundle discloses {other}");
    }
    let verified = check(&bundle, &f.pubkey()).expect("the bundle checks out");
    assert_eq!(verified.line.subscription_id.as_str(), "Sub100042");
    let report = provledger_verify::render(&verified);
    assert!(report.contains("Closed"), "{report}");
    assert!(report.contains("simulated"), "{report}");
    f.run(&[
        "evidence",
        "--subscription",
        "Sub999999",
        "--key",
        &f.p("k.key"),
        "--out",
        &f.p("none.json"),
    ])
    .code(2);
}

#[test]
fn a_tampered_bundle_fails_naming_the_first_problem() {
    let f = Fixture::demo();
    let bundle: Value = serde_json::from_str(&f.bundle("Sub100042", "b.json")).unwrap();
    let foreign: Value = serde_json::from_str(&f.bundle("Sub200001", "b2.json")).unwrap();
    let pubkey = f.pubkey();

    // One altered payload byte.
    let mut altered = bundle.clone();
    let text = altered["events"][3]["event"]["payload"].to_string();
    altered["events"][3]["event"]["payload"] =
        serde_json::from_str(&text.replacen("example", "exampie", 1)).unwrap();
    let err = check(&altered, &pubkey).unwrap_err();
    assert!(err.contains("event 4") && err.contains("altered"), "{err}");

    // The same, with the event's hash recomputed: its proof fails instead.
    let mut rehashed = altered.clone();
    let mut event: RecordedEvent =
        serde_json::from_value(rehashed["events"][3]["event"].clone()).unwrap();
    event.hash = hash::event_hash(&event);
    rehashed["events"][3]["event"] = serde_json::to_value(&event).unwrap();
    let err = check(&rehashed, &pubkey).unwrap_err();
    assert!(
        err.contains("event 4") && err.contains("inclusion proof"),
        "{err}"
    );

    // Two events swapped.
    let mut swapped = bundle.clone();
    swapped["events"].as_array_mut().unwrap().swap(2, 3);
    let err = check(&swapped, &pubkey).unwrap_err();
    assert!(err.contains("event 3"), "{err}");

    // An event of another order, with its own valid proof.
    let mut mixed = bundle.clone();
    mixed["events"][1] = foreign["events"][1].clone();
    let err = check(&mixed, &pubkey).unwrap_err();
    assert!(err.contains("order-WO-1002"), "{err}");

    // A forged inclusion proof.
    let mut forged = bundle.clone();
    let h = forged["events"][5]["inclusion_proof"][1]
        .as_str()
        .unwrap()
        .to_string();
    let first = if h.starts_with('0') { "1" } else { "0" };
    let flipped = format!("{first}{}", &h[1..]);
    forged["events"][5]["inclusion_proof"][1] = Value::String(flipped);
    let err = check(&forged, &pubkey).unwrap_err();
    assert!(
        err.contains("event 6") && err.contains("inclusion proof"),
        "{err}"
    );

    // A dropped event.
    let mut dropped = bundle.clone();
    dropped["events"].as_array_mut().unwrap().remove(4);
    let err = check(&dropped, &pubkey).unwrap_err();
    assert!(err.contains("event 5"), "{err}");

    // Another key.
    f.run(&["keygen", "--out", &f.p("other")]).success();
    let other = std::fs::read_to_string(f.path("other.pub")).unwrap();
    let err = check(&bundle, &other).unwrap_err();
    assert!(err.contains("signed by key"), "{err}");

    // A checkpoint with another root (re-signing needs the key).
    let mut reroot = bundle.clone();
    reroot["checkpoint"]["root"] = Value::String("00".repeat(32));
    let err = check(&reroot, &pubkey).unwrap_err();
    assert!(err.contains("signature"), "{err}");
}
