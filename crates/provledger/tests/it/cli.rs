//! The CLI contract, command by command, through the real binary.

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

struct Ledger {
    dir: tempfile::TempDir,
}

const ORDER: &str = r#"{"order_id": "WO-1001", "ordering_contact": "olivia@partner.example",
 "partner": "Acme Partner", "end_customer": "Contoso Ltd", "partner_contacts": ["pat@partner.example"],
 "distributor_contacts": [],
 "lines": [{"line_id": "1.1", "subscription_id": "Sub100042", "offer": "A-Flex",
            "rsd": "2026-12-01", "provisioning_contact": "it@customer.example"},
           {"line_id": "1.2", "subscription_id": "Sub100043", "offer": "A-WX",
            "rsd": "2026-12-01", "provisioning_contact": "it@customer.example"}]}"#;

impl Ledger {
    /// A directory with no ledger in it yet.
    fn bare() -> Ledger {
        Ledger {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// An empty ledger made by `init --for-import`, for an export to fill.
    fn for_import() -> Ledger {
        let ledger = Ledger::bare();
        ledger.run(&["init", "--for-import"]).success();
        ledger
    }

    /// An empty ledger made by `init` (the only command that creates one).
    fn new() -> Ledger {
        let ledger = Ledger::bare();
        ledger.run(&["init", "--clock", "simulated"]).success();
        ledger
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("provledger").expect("binary");
        cmd.env_remove("PROVLEDGER_STORE")
            .env_remove("PROVLEDGER_AS")
            .arg("--db")
            .arg(self.db());
        cmd
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn run(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.cmd().args(args).assert()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self
            .cmd()
            .arg("--format")
            .arg("json")
            .args(args)
            .output()
            .expect("run");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} did not print JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    fn placed() -> Ledger {
        let ledger = Ledger::new();
        let order = ledger.file("order.json", ORDER);
        ledger
            .run(&[
                "order",
                "place",
                "--file",
                order.to_str().unwrap(),
                "--as",
                "olivia@partner.example",
                "--at",
                "2026-11-20T09:00:00Z",
            ])
            .success();
        ledger
    }

    /// Export the ledger to `name` in its directory: the file and its text.
    fn export(&self, name: &str) -> (PathBuf, String) {
        let path = self.dir.path().join(name);
        self.run(&["export", "--out", path.to_str().unwrap()])
            .success();
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    }

    fn event_count(&self) -> usize {
        let out = self
            .cmd()
            .args(["export", "--out", "-"])
            .output()
            .expect("export");
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

fn tx_rows(value: &Value) -> &Vec<Value> {
    value.as_array().expect("array of rows")
}

#[test]
fn init_creates_an_empty_ledger() {
    let ledger = Ledger::bare();
    ledger
        .run(&["init"])
        .success()
        .stdout(predicate::str::contains("1 events; live clock"));
    assert!(ledger.db().exists());
}

#[test]
fn order_place_from_file_and_stdin_with_json_contract() {
    let ledger = Ledger::new();
    let order = ledger.file("order.json", ORDER);
    let out = ledger.json(&[
        "order",
        "place",
        "--file",
        order.to_str().unwrap(),
        "--as",
        "olivia@partner.example",
        "--at",
        "2026-11-20T09:00:00Z",
    ]);
    assert_eq!(out["status"], "success");
    assert_eq!(out["transaction_id"], "TX-WO-1001-1");
    // After the ledger's LedgerCreated: the order's event, then its id and
    // its two subscriptions reserved.
    assert_eq!(out["positions"], serde_json::json!([2, 3, 4, 5]));
    assert!(out["message"].as_str().unwrap().contains("2 line"));
    ledger
        .cmd()
        .args([
            "order",
            "place",
            "--file",
            "-",
            "--as",
            "olivia@partner.example",
        ])
        .write_stdin(
            ORDER
                .replace("WO-1001", "WO-1002")
                .replace("Sub1000", "Sub2000"),
        )
        .assert()
        .success();
    let lines = ledger.json(&["lines"]);
    assert_eq!(tx_rows(&lines).len(), 4);
    for field in [
        "order_id",
        "line_id",
        "subscription_id",
        "offer",
        "rsd",
        "provisioning_contact",
        "status",
        "provisioning_pending",
        "initial_email_sent_at",
        "closes_at",
        "billing_started",
        "org_id",
    ] {
        assert!(lines[0].get(field).is_some(), "lines row lacks {field}");
    }
}

#[test]
fn bad_order_input_exits_2_and_writes_nothing() {
    let ledger = Ledger::placed();
    let before = ledger.event_count();
    let cases = [
        ("{not json", "not a valid order"),
        (
            &ORDER.replace("it@customer.example", "not-an-email"),
            "lines[0].provisioning_contact",
        ),
        (
            &ORDER.replace("\"2026-12-01\"", "\"01/12/2026\""),
            "YYYY-MM-DD",
        ),
        (
            r#"{"order_id":"WO-9","ordering_contact":"o@p.example","lines":[]}"#,
            "at least one line",
        ),
        (ORDER, "already been placed"),
    ];
    for (i, (text, message)) in cases.iter().enumerate() {
        let file = ledger.file(&format!("bad{i}.json"), text);
        ledger
            .run(&[
                "order",
                "place",
                "--file",
                file.to_str().unwrap(),
                "--as",
                "olivia@partner.example",
            ])
            .code(2)
            .stderr(predicate::str::contains(*message))
            .stderr(predicate::str::starts_with("error: "));
    }
    ledger
        .run(&[
            "order",
            "place",
            "--file",
            "/nonexistent/order.json",
            "--as",
            "o@p.example",
        ])
        .code(2)
        .stderr(predicate::str::contains("cannot read"));
    assert_eq!(ledger.event_count(), before, "bad input must write nothing");
}

#[test]
fn contact_change_success_refusals_and_bad_input() {
    let ledger = Ledger::placed();
    let ok = ledger.json(&[
        "contact",
        "change",
        "--order",
        "WO-1001",
        "--line",
        "1.1",
        "--email",
        "new@customer.example",
        "--all-lines",
        "--as",
        "pat@partner.example",
        "--at",
        "2026-11-21T09:00:00Z",
    ]);
    assert_eq!(ok["status"], "success");
    assert_eq!(ok["positions"], serde_json::json!([6, 7]));
    // R6: no access → exit 3, recorded.
    ledger
        .run(&[
            "contact",
            "change",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--email",
            "x@customer.example",
            "--as",
            "stranger@else.example",
            "--at",
            "2026-11-22T09:00:00Z",
        ])
        .code(3)
        .stderr(predicate::str::contains("olivia@partner.example"));
    // Bad input → exit 2, nothing written.
    let before = ledger.event_count();
    for (args, message) in [
        (
            vec![
                "--order",
                "WO-404",
                "--line",
                "1.1",
                "--email",
                "a@b.example",
            ],
            "unknown order WO-404",
        ),
        (
            vec![
                "--order",
                "WO-1001",
                "--line",
                "9.9",
                "--email",
                "a@b.example",
            ],
            "no line 9.9",
        ),
        (
            vec!["--order", "WO-1001", "--line", "1.1", "--email", "bad@"],
            "invalid email",
        ),
        (
            vec![
                "--order",
                "WO-1001",
                "--line",
                "1.1",
                "--email",
                "new@customer.example",
            ],
            "nothing to change",
        ),
    ] {
        let mut all = vec!["contact", "change"];
        all.extend(args);
        all.extend([
            "--as",
            "pat@partner.example",
            "--at",
            "2026-11-23T09:00:00Z",
        ]);
        ledger
            .run(&all)
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    ledger
        .run(&[
            "contact",
            "change",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--email",
            "c@customer.example",
            "--as",
            "pat@partner.example",
            "--at",
            "2026-11-01T09:00:00Z",
        ])
        .code(2)
        .stderr(predicate::str::contains("before the order's latest event"));
    ledger
        .run(&[
            "contact",
            "change",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--email",
            "c@customer.example",
            "--as",
            "pat@partner.example",
            "--at",
            "yesterday",
        ])
        .code(2)
        .stderr(predicate::str::contains("RFC 3339"));
    assert_eq!(ledger.event_count(), before);
    // R12: the refusal is in the Transaction Manager with its reason.
    let failed = ledger.json(&["transactions", "--status", "failed"]);
    let rows = tx_rows(&failed);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["type"], "provisioning_email_update");
    assert!(rows[0]["reason"].as_str().unwrap().contains("no access"));
}

#[test]
fn email_resend_before_and_after_the_rsd_and_after_ponr() {
    let ledger = Ledger::placed();
    let early = ledger
        .cmd()
        .args([
            "--format",
            "json",
            "email",
            "resend",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--as",
            "olivia@partner.example",
            "--at",
            "2026-11-25T09:00:00Z",
        ])
        .output()
        .expect("run");
    assert_eq!(early.status.code(), Some(3));
    let early: Value = serde_json::from_slice(&early.stdout).expect("json on stdout");
    assert_eq!(early["status"], "failed");
    assert!(early["message"]
        .as_str()
        .unwrap()
        .contains("requested start date 2026-12-01"));
    ledger
        .run(&["tick", "--now", "2026-12-01T06:00:00Z"])
        .success()
        .stdout(predicate::str::contains("2 initial email(s) sent"));
    ledger
        .run(&[
            "email",
            "resend",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--as",
            "pat@partner.example",
            "--at",
            "2026-12-01T09:00:00Z",
        ])
        .success()
        .stdout(predicate::str::contains("resent to it@customer.example"));
    ledger
        .run(&[
            "org",
            "onboard",
            "--order",
            "WO-1001",
            "--org",
            "ORG-1",
            "--as",
            "olivia@partner.example",
            "--at",
            "2026-12-02T09:00:00Z",
        ])
        .success();
    ledger
        .run(&[
            "email",
            "resend",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--as",
            "pat@partner.example",
            "--at",
            "2026-12-03T09:00:00Z",
        ])
        .code(3)
        .stderr(predicate::str::contains("admin.webex.com"));
    ledger
        .run(&[
            "org",
            "onboard",
            "--order",
            "WO-1001",
            "--org",
            "ORG-2",
            "--as",
            "olivia@partner.example",
            "--at",
            "2026-12-03T10:00:00Z",
        ])
        .code(3)
        .stderr(predicate::str::contains("already onboarded"));
    let lines = ledger.json(&["lines", "--order", "WO-1001"]);
    assert!(tx_rows(&lines)
        .iter()
        .all(|l| l["status"] == "onboarded" && l["org_id"] == "ORG-1"));
}

#[test]
fn case_open_records_attachments_and_rejects_bad_types() {
    let ledger = Ledger::placed();
    let shot = ledger.file("screenshot.png", "not really a png");
    ledger
        .run(&[
            "case",
            "open",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--type",
            "resend-provisioning-email",
            "--note",
            "never arrived",
            "--attach",
            shot.to_str().unwrap(),
            "--as",
            "pat@partner.example",
            "--at",
            "2026-11-21T09:00:00Z",
        ])
        .success()
        .stdout(predicate::str::contains("WO-1001-C1"));
    let history = ledger.json(&["history", "--order", "WO-1001"]);
    let case = tx_rows(&history)
        .iter()
        .find(|e| e["event_type"] == "SupportCaseOpened")
        .expect("case event");
    assert_eq!(
        case["payload"]["attachments"][0]["file_name"],
        "screenshot.png"
    );
    assert_eq!(
        case["payload"]["attachments"][0]["sha256"],
        "e90137d39de304eefbbe788bc535c7e82f27abbf8069505fbbd8a9dcdc4f2024"
    );
    ledger
        .run(&[
            "case",
            "open",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--type",
            "please-help",
            "--as",
            "pat@partner.example",
        ])
        .code(2)
        .stderr(predicate::str::contains("resend-provisioning-email"));
    ledger
        .run(&[
            "case",
            "open",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--type",
            "resend-provisioning-email",
            "--attach",
            "/nonexistent.png",
            "--as",
            "pat@partner.example",
        ])
        .code(2)
        .stderr(predicate::str::contains("cannot read attachment"));
}

#[test]
fn setup_start_stops_the_escalation_and_tick_is_idempotent() {
    let ledger = Ledger::placed();
    ledger
        .run(&[
            "setup",
            "start",
            "--order",
            "WO-1001",
            "--as",
            "it@customer.example",
            "--at",
            "2026-11-30T09:00:00Z",
        ])
        .success();
    let first = ledger.json(&["tick", "--now", "2026-12-05T00:00:00Z"]);
    assert_eq!(first["initial_emails_sent"], 2);
    assert_eq!(first["escalations_raised"], 0);
    let before = ledger.event_count();
    let again = ledger.json(&["tick", "--now", "2026-12-05T00:00:00Z"]);
    assert_eq!(again["initial_emails_sent"], 0);
    assert_eq!(
        ledger.event_count(),
        before,
        "a second tick appends nothing"
    );
}

#[test]
fn reads_filter_and_point_in_time() {
    let ledger = Ledger::placed();
    for (email, at) in [
        ("a@customer.example", "2026-11-21T09:00:00Z"),
        ("b@customer.example", "2026-11-22T09:00:00Z"),
    ] {
        ledger
            .run(&[
                "contact",
                "change",
                "--order",
                "WO-1001",
                "--line",
                "1.1",
                "--email",
                email,
                "--as",
                "pat@partner.example",
                "--at",
                at,
            ])
            .success();
    }
    let past = ledger.json(&[
        "lines",
        "--subscription",
        "Sub100042",
        "--as-of",
        "2026-11-21T12:00:00Z",
    ]);
    assert_eq!(tx_rows(&past).len(), 1);
    assert_eq!(past[0]["provisioning_contact"], "a@customer.example");
    let now = ledger.json(&["lines", "--subscription", "Sub100042"]);
    assert_eq!(now[0]["provisioning_contact"], "b@customer.example");
    let by_type = ledger.json(&[
        "transactions",
        "--type",
        "provisioning_email_update",
        "--subscription",
        "Sub100042",
    ]);
    assert_eq!(tx_rows(&by_type).len(), 2);
    for field in [
        "transaction_id",
        "type",
        "order_id",
        "line_id",
        "subscription_id",
        "submitted_by",
        "submitted_at",
        "status",
        "reason",
        "old_email",
        "new_email",
        "applied_to_all_lines",
    ] {
        assert!(
            by_type[0].get(field).is_some(),
            "transactions row lacks {field}"
        );
    }
    let windowed = ledger.json(&[
        "transactions",
        "--since",
        "2026-11-22T00:00:00Z",
        "--until",
        "2026-11-23T00:00:00Z",
    ]);
    assert_eq!(tx_rows(&windowed).len(), 1);
    assert_eq!(
        tx_rows(&ledger.json(&["transactions", "--limit", "1"])).len(),
        1
    );
    assert_eq!(
        tx_rows(&ledger.json(&["transactions", "--order", "WO-404"])).len(),
        0
    );
    ledger.run(&["transactions", "--type", "nonsense"]).code(2);
    ledger.run(&["transactions", "--status", "maybe"]).code(2);
    let history = ledger.json(&[
        "history",
        "--subscription",
        "Sub100042",
        "--as-of",
        "2026-11-21T12:00:00Z",
    ]);
    assert_eq!(tx_rows(&history).len(), 2, "order placed + first change");
    assert!(history[0]["hash"].as_str().unwrap().len() == 64);
    ledger.run(&["history"]).code(2);
    let csv = ledger
        .cmd()
        .args(["--format", "csv", "lines"])
        .output()
        .expect("csv");
    let text = String::from_utf8(csv.stdout).expect("utf-8");
    assert!(text.starts_with("order_id,line_id,subscription_id"));
    assert_eq!(text.lines().count(), 3);
}

#[test]
fn verify_detects_tampering_with_exit_4() {
    let ledger = Ledger::placed();
    ledger
        .run(&[
            "contact",
            "change",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--email",
            "a@customer.example",
            "--as",
            "pat@partner.example",
            "--at",
            "2026-11-21T09:00:00Z",
        ])
        .success();
    ledger
        .run(&["verify"])
        .success()
        .stdout(predicate::str::contains("intact"));
    let conn = rusqlite::Connection::open(ledger.db()).expect("open");
    let triggers: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("triggers");
    assert!(
        !triggers.is_empty(),
        "the events table has protecting triggers"
    );
    let refused = conn.execute("UPDATE events SET payload = '{}' WHERE position = 6", []);
    assert!(
        refused.is_err(),
        "UPDATE must be refused while the triggers stand"
    );
    for t in triggers {
        conn.execute(&format!("DROP TRIGGER {t}"), [])
            .expect("drop trigger");
    }
    conn.execute(
        "UPDATE events SET payload = replace(payload, 'a@customer.example', 'evil@else.example') WHERE position = 6",
        [],
    )
    .expect("tamper");
    drop(conn);
    ledger
        .run(&["verify"])
        .code(4)
        .stderr(predicate::str::contains("position 6"));
    let report = ledger
        .cmd()
        .args(["--format", "json", "verify"])
        .output()
        .expect("run");
    assert_eq!(report.status.code(), Some(4));
    let report: Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(report["first_broken"]["position"], 6);
}

#[test]
fn rebuild_export_import_round_trip() {
    let ledger = Ledger::placed();
    ledger
        .run(&["tick", "--now", "2026-12-10T00:00:00Z"])
        .success();
    let before = ledger.json(&["lines"]);
    ledger
        .run(&["rebuild"])
        .success()
        .stdout(predicate::str::contains("rebuilt"));
    assert_eq!(ledger.json(&["lines"]), before);
    let (export, _) = ledger.export("export.jsonl");
    let copy = Ledger::for_import();
    copy.run(&["import", "--file", export.to_str().unwrap()])
        .success();
    assert_eq!(copy.json(&["lines"]), before);
    copy.run(&["verify"]).success();
    let again = copy.dir.path().join("again.jsonl");
    copy.run(&["export", "--out", again.to_str().unwrap()])
        .success();
    assert_eq!(
        std::fs::read(&export).unwrap(),
        std::fs::read(&again).unwrap()
    );
    copy.run(&["import", "--file", export.to_str().unwrap()])
        .code(2)
        .stderr(predicate::str::contains("empty store"));
    let broken = copy.file("broken.jsonl", "{\"position\": 1}\n");
    Ledger::new()
        .run(&["import", "--file", broken.to_str().unwrap()])
        .code(2);
}

#[test]
fn import_refuses_the_batch_of_a_bad_line_and_the_fixed_file_imports() {
    let ledger = Ledger::placed();
    ledger
        .run(&["tick", "--now", "2026-12-10T00:00:00Z"])
        .success();
    let (export, text) = ledger.export("export.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{lines:?}");
    // Line 3 is damaged: its batch (here the whole file) is refused.
    let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    damaged[2] = "{\"position\": 3, \"oops\"".to_string();
    let copy = Ledger::for_import();
    let bad = copy.file("bad.jsonl", &(damaged.join("\n") + "\n"));
    copy.run(&["import", "--file", bad.to_str().unwrap()])
        .code(2)
        .stderr(predicate::str::contains("import line 3"));
    assert_eq!(copy.event_count(), 0, "nothing of the bad line's batch");
    copy.run(&["verify"]).success();
    // The fixed file imports whole.
    copy.run(&["import", "--file", export.to_str().unwrap()])
        .success();
    let again = copy.dir.path().join("again.jsonl");
    copy.run(&["export", "--out", again.to_str().unwrap()])
        .success();
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);
    assert_eq!(copy.json(&["lines"]), ledger.json(&["lines"]));
}

#[test]
fn idempotency_key_returns_the_first_result() {
    let ledger = Ledger::placed();
    let args = [
        "contact",
        "change",
        "--order",
        "WO-1001",
        "--line",
        "1.1",
        "--email",
        "a@customer.example",
        "--as",
        "pat@partner.example",
        "--at",
        "2026-11-21T09:00:00Z",
        "--idempotency-key",
        "req-42",
    ];
    let first = ledger.json(&args);
    let count = ledger.event_count();
    let second = ledger.json(&args);
    assert_eq!(second["transaction_id"], first["transaction_id"]);
    assert_eq!(second["positions"], first["positions"]);
    assert_eq!(second["replayed"], true);
    assert_eq!(ledger.event_count(), count);
}

#[test]
fn run_and_demo() {
    let ledger = Ledger::new();
    let script = ledger.file(
        "script.jsonl",
        &format!(
            "{{\"step\":\"place_order\",\"as\":\"olivia@partner.example\",\"at\":\"2026-11-20T09:00:00Z\",\"order\":{}}}\n{{\"step\":\"resend_email\",\"as\":\"olivia@partner.example\",\"at\":\"2026-11-21T09:00:00Z\",\"order\":\"WO-1001\",\"line\":\"1.1\"}}\n",
            ORDER.replace('\n', " ")
        ),
    );
    ledger
        .run(&["run", "--file", script.to_str().unwrap()])
        .code(3)
        .stdout(predicate::str::contains("failed"));
    let demo = Ledger::bare();
    demo.run(&["demo"])
        .success()
        .stdout(predicate::str::contains("Transaction Manager"))
        .stdout(predicate::str::contains("Sub100042"));
    demo.run(&["demo"])
        .code(2)
        .stderr(predicate::str::contains("fresh store"));
    // Without --db/--store the demo uses a fresh temporary store every time
    // (kept for exploring: under a temporary directory of the test's own).
    let tmp = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        Command::cargo_bin("provledger")
            .expect("binary")
            .env_remove("PROVLEDGER_STORE")
            .env("TMPDIR", tmp.path())
            .arg("demo")
            .assert()
            .success()
            .stdout(predicate::str::contains("provledger-demo-"));
    }
    let demos = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(demos, 2, "each demo has a store of its own");
}

#[test]
fn invalid_store_url_is_bad_input() {
    Command::cargo_bin("provledger")
        .expect("binary")
        .args(["--store", "mysql://nope", "lines"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("sqlite:PATH"));
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_db = dir.path().join("notes.db");
    std::fs::write(&not_a_db, "these are not the events you are looking for").expect("write");
    Command::cargo_bin("provledger")
        .expect("binary")
        .env_remove("PROVLEDGER_STORE")
        .arg("--db")
        .arg("/nonexistent/dir/ledger.db")
        .arg("lines")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no ledger at /nonexistent/dir/ledger.db",
        ))
        .stderr(predicate::str::contains("provledger init"));
    // A file that is not an SQLite database (or whose header is damaged)
    // is an integrity failure, not bad input.
    Command::cargo_bin("provledger")
        .expect("binary")
        .env_remove("PROVLEDGER_STORE")
        .arg("--db")
        .arg(&not_a_db)
        .arg("lines")
        .assert()
        .code(4)
        .stderr(predicate::str::contains("damaged"));
    let binary = dir.path().join("order.json");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).expect("write");
    Command::cargo_bin("provledger")
        .expect("binary")
        .arg("--db")
        .arg(dir.path().join("ledger.db"))
        .arg("init")
        .assert()
        .success();
    Command::cargo_bin("provledger")
        .expect("binary")
        .arg("--db")
        .arg(dir.path().join("ledger.db"))
        .args(["order", "place", "--file"])
        .arg(&binary)
        .args(["--as", "olivia@partner.example"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("valid UTF-8"));
}

#[test]
fn import_keeps_the_batches_written_before_a_refused_one() {
    // More than one import batch (5,000 events): 800 orders of five lines
    // write 5,601 events with the ledger's first.
    let ledger = Ledger::new();
    let script: String = (0..800)
        .map(|i| {
            let lines: Vec<String> = (1..=5)
                .map(|k| {
                    format!(
                        r#"{{"line_id": "1.{k}", "subscription_id": "Sub{}", "offer": "A-Flex", "rsd": "2026-12-01", "provisioning_contact": "it@customer.example"}}"#,
                        600_000 + i * 5 + k
                    )
                })
                .collect();
            format!(
                r#"{{"step":"place_order","as":"olivia@partner.example","at":"2026-11-20T09:00:00Z","order":{{"order_id": "WO-{}", "ordering_contact": "olivia@partner.example", "partner": "Acme Partner", "end_customer": "Contoso Ltd", "partner_contacts": [], "distributor_contacts": [], "lines": [{}]}}}}"#,
                20_000 + i,
                lines.join(", ")
            ) + "\n"
        })
        .collect();
    let script = ledger.file("orders.jsonl", &script);
    ledger
        .run(&["run", "--file", script.to_str().unwrap()])
        .success();
    let (_, text) = ledger.export("export.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 5_100, "{} events", lines.len());

    // A line of the second batch that does not parse (found while the
    // first batch is being written), or whose hash is wrong (found when the
    // second batch is written): the first batch stays, whole and intact.
    let unparseable = "{\"position\": 5300, \"oops\"".to_string();
    let mut altered: Value = serde_json::from_str(lines[5299]).unwrap();
    let hash = altered["hash"].as_str().unwrap().to_string();
    let flipped = if hash.starts_with('0') { "1" } else { "0" };
    altered["hash"] = Value::String(format!("{flipped}{}", &hash[1..]));
    for bad_line in [unparseable, altered.to_string()] {
        let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        damaged[5299] = bad_line;
        let copy = Ledger::for_import();
        let bad = copy.file("bad.jsonl", &(damaged.join("\n") + "\n"));
        copy.run(&["import", "--file", bad.to_str().unwrap()])
            .code(2)
            .stderr(predicate::str::contains("import line 5300"));
        assert_eq!(copy.event_count(), 5_000, "the first batch, and only it");
        copy.run(&["verify"]).success();
    }
}
