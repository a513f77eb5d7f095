//! Regression tests of the hardening issue (issue 11): forged or poisoned
//! imports, unbounded input, exports that could eat the ledger, reads that
//! wrote or created, secrets in output, and the docs' promises.
//!
//! Each test drives the real binary, the way an attacker or an operator
//! would.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use predicates::prelude::*;
use provledger_store::postgres::{test_url, unique_test_schema, PostgresStore};
use provledger_store::{Metadata, RecordedEvent};

const OLIVIA: &str = "olivia@partner.example";

const ORDER: &str = r#"{"order_id": "WO-1001", "ordering_contact": "olivia@partner.example",
 "partner": "Acme Partner", "end_customer": "Contoso Ltd", "partner_contacts": ["pat@partner.example"],
 "distributor_contacts": [],
 "lines": [{"line_id": "1.1", "subscription_id": "Sub100042", "offer": "A-Flex",
            "rsd": "2026-12-01", "provisioning_contact": "it@customer.example"}]}"#;

/// The binary, with no store or actor from the environment.
fn bin() -> Command {
    let mut cmd = Command::cargo_bin("provledger").expect("binary");
    cmd.env_remove("PROVLEDGER_STORE")
        .env_remove("PROVLEDGER_AS");
    cmd
}

/// The binary on the SQLite ledger at `db`.
fn on(db: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("--db").arg(db);
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A ledger at `dir/ledger.db` made by `init`, with WO-1001 placed.
fn placed(dir: &Path) -> PathBuf {
    let db = dir.join("ledger.db");
    on(&db)
        .args(["init", "--clock", "simulated"])
        .assert()
        .success();
    let order = dir.join("order.json");
    std::fs::write(&order, ORDER).expect("write order");
    on(&db)
        .args(["order", "place", "--file"])
        .arg(&order)
        .args(["--as", OLIVIA, "--at", "2026-11-20T09:00:00Z"])
        .assert()
        .success();
    db
}

/// The demo ledger (fixtures/demo.jsonl) at `dir/name`.
fn demo_ledger(dir: &Path, name: &str) -> PathBuf {
    let db = dir.join(name);
    on(&db).arg("demo").assert().success();
    db
}

fn event_count(db: &Path) -> usize {
    let out = on(db)
        .args(["export", "--out", "-"])
        .output()
        .expect("export");
    assert!(out.status.success(), "export failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

// ---------------------------------------------------------------------------
// Export eats the ledger; files protect themselves.

#[test]
fn export_refuses_the_ledger_itself_and_existing_files_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = demo_ledger(dir.path(), "provledger.db");
    let before = event_count(&db);
    assert!(before > 10);
    for target in [db.clone(), dir.path().join("provledger.db-wal")] {
        for force in [false, true] {
            let mut cmd = on(&db);
            cmd.arg("export").arg("--out").arg(&target);
            if force {
                cmd.arg("--force");
            }
            cmd.assert()
                .code(2)
                .stderr(predicate::str::contains("ledger's own file"));
        }
    }
    // Through another spelling of the same path, too.
    let sneaky = dir.path().join(".").join("provledger.db");
    on(&db)
        .arg("export")
        .arg("--out")
        .arg(&sneaky)
        .assert()
        .code(2);
    assert_eq!(event_count(&db), before, "the ledger is untouched");
    on(&db)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "verified {before} events"
        )));

    let existing = dir.path().join("notes.txt");
    std::fs::write(&existing, "keep me").expect("write");
    on(&db)
        .arg("export")
        .arg("--out")
        .arg(&existing)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--force"));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    on(&db)
        .arg("export")
        .arg("--out")
        .arg(&existing)
        .arg("--force")
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap().lines().count(),
        before
    );
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[cfg(unix)]
#[test]
fn new_ledger_and_export_files_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = placed(dir.path());
    assert_eq!(mode_of(&db), 0o600, "the ledger file is 0600");
    let export = dir.path().join("export.jsonl");
    on(&db)
        .arg("export")
        .arg("--out")
        .arg(&export)
        .assert()
        .success();
    assert_eq!(mode_of(&export), 0o600, "the export is 0600");
}

#[test]
fn an_explicit_db_wins_over_provledger_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from_env = dir.path().join("env.db");
    let explicit = dir.path().join("explicit.db");
    Command::cargo_bin("provledger")
        .expect("binary")
        .env("PROVLEDGER_STORE", format!("sqlite:{}", from_env.display()))
        .arg("--db")
        .arg(&explicit)
        .arg("init")
        .assert()
        .success();
    assert!(explicit.exists());
    assert!(!from_env.exists());
    // And the environment is still used when no flag is given.
    Command::cargo_bin("provledger")
        .expect("binary")
        .env("PROVLEDGER_STORE", format!("sqlite:{}", explicit.display()))
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::contains("verified 1 events"));
}

#[test]
fn a_damaged_database_header_is_an_integrity_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = placed(dir.path());
    let mut bytes = std::fs::read(&db).expect("read");
    for b in bytes.iter_mut().take(100) {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).expect("write");
    for args in [
        &["verify"][..],
        &["lines"],
        &["order", "place", "--file", "-", "--as", OLIVIA],
    ] {
        on(&db)
            .args(args)
            .write_stdin(ORDER)
            .assert()
            .code(4)
            .stderr(predicate::str::contains("damaged"));
    }
}

// ---------------------------------------------------------------------------
// Reads never write, never create.

#[test]
fn a_missing_path_is_bad_input_and_nothing_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("mistyped.db");
    for args in [
        &["verify"][..],
        &["lines"],
        &["transactions"],
        &["history", "--order", "WO-1001"],
        &["export", "--out", "-"],
        &["tick", "--now", "2026-12-01T00:00:00Z"],
        &["rebuild"],
        &["project", "--batch-size", "10"],
        &["import", "--file", "-"],
    ] {
        on(&missing)
            .args(args)
            .write_stdin("")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(missing.display().to_string()))
            .stderr(predicate::str::contains("provledger init"));
        assert!(!missing.exists(), "{args:?} created the ledger");
    }
    let target = dir.path().join("copy.db");
    bin()
        .args(["migrate", "--from"])
        .arg(format!("sqlite:{}", missing.display()))
        .arg("--to")
        .arg(format!("sqlite:{}", target.display()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("provledger init"));
    assert!(!missing.exists());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(names.is_empty(), "nothing was created: {names:?}");
}

#[test]
fn a_foreign_sqlite_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let foreign = dir.path().join("app.sqlite");
    {
        let conn = rusqlite::Connection::open(&foreign).expect("open");
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO notes (body) VALUES ('mine');",
        )
        .expect("create");
    }
    let before = std::fs::read(&foreign).expect("read");
    for args in [
        &["verify"][..],
        &["lines"],
        &["export", "--out", "-"],
        &["init"],
        &["tick", "--now", "2026-12-01T00:00:00Z"],
        &["order", "place", "--file", "-", "--as", OLIVIA],
    ] {
        on(&foreign)
            .args(args)
            .write_stdin(ORDER)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("is not a provledger ledger"))
            .stderr(predicate::str::contains(foreign.display().to_string()));
    }
    bin()
        .args(["migrate", "--from"])
        .arg(format!("sqlite:{}", foreign.display()))
        .arg("--to")
        .arg(format!("sqlite:{}", dir.path().join("copy.db").display()))
        .assert()
        .code(2);
    let conn = rusqlite::Connection::open(&foreign).expect("open");
    let tables: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        tables, 1,
        "no table was added to the other application's file"
    );
    drop(conn);
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        before,
        "not a byte changed"
    );
}

#[test]
fn reads_do_not_wait_for_a_writer_holding_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = placed(dir.path());
    let writer = rusqlite::Connection::open(&db).expect("open");
    writer
        .execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO rm_schema_migrations VALUES (99, 'held', 'x');",
        )
        .expect("take the write lock");
    let started = std::time::Instant::now();
    for args in [
        &["verify"][..],
        &["export", "--out", "-"],
        &["lines"],
        &["transactions"],
        &["history", "--order", "WO-1001"],
    ] {
        on(&db).args(args).assert().success();
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "reads waited for the lock: {:?}",
        started.elapsed()
    );
    writer.execute_batch("ROLLBACK").expect("release");
}

/// Run `cmd` as a user who cannot write `dir` (when this runs as root,
/// through `setpriv` as nobody; `None` when that is not possible).
#[cfg(unix)]
fn as_reader(dir: &Path, args: &[&str], db: &Path) -> Option<Output> {
    use std::os::unix::fs::PermissionsExt;
    let exe = assert_cmd::cargo::cargo_bin("provledger");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o444)).ok()?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    cmd.env_remove("PROVLEDGER_STORE")
        .env("HOME", "/")
        .current_dir("/")
        .arg("--db")
        .arg(db)
        .args(args);
    let out = cmd.output().ok()?;
    if root && text(&out).contains("setpriv") {
        eprintln!(
            "skipping: cannot drop privileges with setpriv: {}",
            text(&out)
        );
        return None;
    }
    Some(out)
}

#[cfg(unix)]
#[test]
fn reads_work_on_a_read_only_file_in_a_read_only_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let db = placed(&ro);
    let before: Vec<_> = std::fs::read_dir(&ro)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for args in [
        &["verify"][..],
        &["lines", "--order", "WO-1001"],
        &["transactions"],
        &["history", "--order", "WO-1001"],
        &["export", "--out", "-"],
    ] {
        let Some(out) = as_reader(&ro, args, &db) else {
            break;
        };
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("WO-1001")
                || args == ["verify"]
                || args == ["transactions"],
            "{args:?}: {}",
            text(&out)
        );
    }
    // A write says clearly that it cannot write (exit 2: nothing written).
    if let Some(out) = as_reader(&ro, &["tick", "--now", "2026-12-02T00:00:00Z"], &db) {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("readonly"), "{}", text(&out));
    }
    let after: Vec<_> = std::fs::read_dir(&ro)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---------------------------------------------------------------------------
// PostgreSQL: SELECT-only role, passwords never printed.

/// A base URL with `user[:password]` in place of the test URL's user.
fn with_user(base: &str, user: &str) -> String {
    let (scheme, rest) = base.split_once("://").expect("scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host}")
}

fn in_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

#[test]
fn a_select_only_postgres_role_runs_every_read_and_a_writer_needs_no_create() {
    let Some(base) = test_url() else {
        return;
    };
    let schema = unique_test_schema("harden_ro");
    let role = format!("{schema}_reader");
    let admin = PostgresStore::connect_in_schema(&base, &schema).expect("schema");
    let url = in_schema(&base, &schema);
    let dir = tempfile::tempdir().expect("tempdir");
    let order = dir.path().join("order.json");
    std::fs::write(&order, ORDER).unwrap();
    bin()
        .args(["--store", &url, "init", "--clock", "simulated"])
        .assert()
        .success();
    bin()
        .args(["--store", &url, "order", "place", "--file"])
        .arg(&order)
        .args(["--as", OLIVIA, "--at", "2026-11-20T09:00:00Z"])
        .assert()
        .success();
    admin
        .execute_raw_sql_for_tests(&format!(
            "CREATE ROLE {role} LOGIN; \
             GRANT CONNECT ON DATABASE {db} TO {role}; \
             GRANT USAGE ON SCHEMA {schema} TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};",
            db = base.rsplit('/').next().unwrap().split('?').next().unwrap()
        ))
        .expect("create the role");
    let reader = in_schema(&with_user(&base, &role), &schema);
    let mut failures = Vec::new();
    for args in [
        &["verify"][..],
        &["export", "--out", "-"],
        &["transactions"],
        &["history", "--order", "WO-1001"],
        &["lines", "--order", "WO-1001"],
        &[
            "lines",
            "--subscription",
            "Sub100042",
            "--as-of",
            "2026-12-31T00:00:00Z",
        ],
    ] {
        let out = bin()
            .args(["--store", &reader])
            .args(args)
            .output()
            .expect("run");
        if !out.status.success() {
            failures.push(format!("{args:?}: {}", text(&out)));
        }
    }
    // A write is refused by the database, not by a crash.
    let write = bin()
        .args(["--store", &reader, "tick", "--now", "2026-12-02T00:00:00Z"])
        .output()
        .expect("run");

    // The writer of docs/postgres.md: no CREATE, no UPDATE or DELETE on
    // the ledger's tables.
    let writer_role = format!("{schema}_writer");
    admin
        .execute_raw_sql_for_tests(&format!(
            "CREATE ROLE {writer_role} LOGIN; \
             GRANT CONNECT ON DATABASE {db} TO {writer_role}; \
             GRANT USAGE ON SCHEMA {schema} TO {writer_role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {writer_role}; \
             GRANT INSERT ON {schema}.events, {schema}.idempotency_keys, {schema}.merkle_nodes \
               TO {writer_role}; \
             GRANT INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.rm_checkpoints, \
               {schema}.rm_order_state, {schema}.rm_lines, {schema}.rm_transactions \
               TO {writer_role};",
            db = base.rsplit('/').next().unwrap().split('?').next().unwrap()
        ))
        .expect("create the writer role");
    let writer = in_schema(&with_user(&base, &writer_role), &schema);
    for args in [
        &[
            "contact",
            "change",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--email",
            "new@customer.example",
            "--as",
            OLIVIA,
            "--at",
            "2026-11-21T09:00:00Z",
        ][..],
        &["tick", "--now", "2026-12-02T00:00:00Z"],
        &["project"],
        &["rebuild"],
        &["verify"],
    ] {
        let out = bin()
            .args(["--store", &writer])
            .args(args)
            .output()
            .expect("run");
        if !out.status.success() {
            failures.push(format!("writer {args:?}: {}", text(&out)));
        }
    }
    let tampering = admin.execute_raw_sql_for_tests(&format!(
        "SET ROLE {writer_role}; UPDATE events SET hash = 'x'; RESET ROLE;"
    ));
    let _ = admin.execute_raw_sql_for_tests("RESET ROLE;");
    drop(admin);
    let cleanup = PostgresStore::connect_in_schema(&base, &schema).expect("schema");
    let _ = cleanup.execute_raw_sql_for_tests(&format!(
        "SET client_min_messages TO warning; DROP SCHEMA {schema} CASCADE; \
         DROP OWNED BY {role}; DROP ROLE {role}; \
         DROP OWNED BY {writer_role}; DROP ROLE {writer_role};"
    ));
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(write.status.code(), Some(4), "{}", text(&write));
    assert!(tampering.is_err(), "the writer cannot update events");
}

#[test]
fn a_postgres_password_is_never_printed() {
    let Some(base) = test_url() else {
        return;
    };
    const SECRET: &str = "s3cr3t-Pa55";
    let user = base
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map(|(u, _)| u.split(':').next().unwrap_or(u).to_string())
        .unwrap_or_else(|| "postgres".into());
    let schema = unique_test_schema("harden_pw");
    let admin = PostgresStore::connect_in_schema(&base, &schema).expect("schema");
    let url = in_schema(&with_user(&base, &format!("{user}:{SECRET}")), &schema);
    let runs = [
        bin().args(["--store", &url, "init"]).output().unwrap(),
        bin().args(["--store", &url, "demo"]).output().unwrap(),
        bin()
            .args(["--store", &url, "--format", "json", "demo"])
            .output()
            .unwrap(),
        bin().args(["--store", &url, "verify"]).output().unwrap(),
        bin()
            .args(["--store", &url, "lines", "--order", "bad id!"])
            .output()
            .unwrap(),
    ];
    let _ = admin.execute_raw_sql_for_tests(&format!(
        "SET client_min_messages TO warning; DROP SCHEMA {schema} CASCADE;"
    ));
    assert!(runs[0].status.success(), "{}", text(&runs[0]));
    for out in &runs {
        assert!(
            !text(out).contains(SECRET),
            "password printed: {}",
            text(out)
        );
    }
}

// ---------------------------------------------------------------------------
// Import replays the rules; input is bounded.

fn export_events(db: &Path) -> Vec<RecordedEvent> {
    let out = on(db)
        .args(["export", "--out", "-"])
        .output()
        .expect("export");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an exported event"))
        .collect()
}

/// A correctly hashed event continuing `events` on `stream_id`.
fn forged(
    events: &[RecordedEvent],
    stream_id: &str,
    event_type: &str,
    schema_version: u32,
    payload: serde_json::Value,
    actor: &str,
    at: &str,
) -> RecordedEvent {
    let last = events.last().expect("events");
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut event = RecordedEvent {
        position: last.position + 1,
        stream_id: stream_id.to_string(),
        stream_version: events.iter().filter(|e| e.stream_id == stream_id).count() as u64 + 1,
        event_type: event_type.to_string(),
        schema_version,
        payload,
        metadata: Metadata {
            actor: actor.to_string(),
            transaction_id: format!("TX-forged-{}", last.position + 1),
            ..Metadata::default()
        },
        occurred_at: at,
        recorded_at: last.recorded_at,
        prev_hash: last.hash.clone(),
        hash: String::new(),
    };
    event.hash = provledger_store::hash::event_hash(&event);
    event
}

fn write_jsonl(path: &Path, events: &[RecordedEvent]) {
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(path, text).expect("write");
}

/// A fresh ledger made by `init` at `dir/name`.
fn fresh(dir: &Path, name: &str) -> PathBuf {
    let db = dir.join(name);
    on(&db)
        .args(["init", "--clock", "simulated"])
        .assert()
        .success();
    db
}

/// An empty ledger for an export to fill (`init --for-import`).
fn for_import(dir: &Path, name: &str) -> PathBuf {
    let db = dir.join(name);
    on(&db).args(["init", "--for-import"]).assert().success();
    db
}

#[test]
fn a_forged_contact_change_after_ponr_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = demo_ledger(dir.path(), "demo.db");
    let mut events = export_events(&demo);
    let line: serde_json::Value = serde_json::from_slice(
        &on(&demo)
            .args(["--format", "json", "lines", "--order", "WO-1004"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let old = line[0]["provisioning_contact"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(line[0]["status"], "provisioned");
    let forgery = forged(
        &events,
        "order-WO-1004",
        "ProvisioningContactChanged",
        1,
        serde_json::json!({
            "at": "2026-12-20T09:00:00Z",
            "line_id": "1.1",
            "old_email": old,
            "new_email": "attacker@evil.example",
            "applied_to_all_lines": false,
            "email_sent": true,
        }),
        "olivia@acme-partner.example",
        "2026-12-20T09:00:00Z",
    );
    let position = forgery.position;
    events.push(forgery);
    let file = dir.path().join("forged.jsonl");
    write_jsonl(&file, &events);
    let target = for_import(dir.path(), "target.db");
    on(&target)
        .arg("import")
        .arg("--file")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("position {position}")))
        .stderr(predicate::str::contains("Point of No Return"));
    assert_eq!(event_count(&target), 0, "nothing of the batch was written");
    let lines = on(&target)
        .args(["lines", "--order", "WO-1004"])
        .output()
        .unwrap();
    assert!(!text(&lines).contains("attacker@evil.example"));
    // The honest export imports whole.
    events.pop();
    write_jsonl(&file, &events);
    on(&target)
        .arg("import")
        .arg("--file")
        .arg(&file)
        .assert()
        .success();
    assert_eq!(event_count(&target), events.len());
}

#[test]
fn undecodable_or_unplaced_events_never_poison_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = placed(dir.path());
    let events = export_events(&source);
    let at = "2026-11-21T09:00:00Z";
    let poisons = [
        (
            "garbage payload",
            forged(
                &events,
                "order-WO-1001",
                "ProvisioningContactChanged",
                1,
                serde_json::json!({"garbage": true}),
                OLIVIA,
                at,
            ),
        ),
        (
            "unknown type",
            forged(
                &events,
                "order-WO-1001",
                "ContactTeleported",
                1,
                serde_json::json!({"at": at}),
                OLIVIA,
                at,
            ),
        ),
        (
            "schema 99",
            forged(
                &events,
                "order-WO-1001",
                "SetupStarted",
                99,
                serde_json::json!({"at": at}),
                OLIVIA,
                at,
            ),
        ),
        (
            "no OrderPlaced",
            forged(
                &events,
                "order-WO-9999",
                "SetupStarted",
                1,
                serde_json::json!({"at": at}),
                OLIVIA,
                at,
            ),
        ),
        (
            "unknown stream",
            forged(
                &events,
                "mystery-1",
                "SetupStarted",
                1,
                serde_json::json!({"at": at}),
                OLIVIA,
                at,
            ),
        ),
    ];
    for (what, poison) in poisons {
        let target = for_import(dir.path(), &format!("{}.db", what.replace(' ', "-")));
        let mut file_events = events.clone();
        file_events.push(poison);
        let file = dir.path().join(format!("{}.jsonl", what.replace(' ', "-")));
        write_jsonl(&file, &file_events);
        let out = on(&target)
            .arg("import")
            .arg("--file")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("position {}", events.len() + 1)),
            "{what}: {}",
            text(&out)
        );
        assert_eq!(event_count(&target), 0, "{what}: nothing written");
        // Every read and write still works.
        on(&target).arg("verify").assert().success();
        on(&target).arg("rebuild").assert().success();
        on(&target).arg("lines").assert().success();
        on(&target)
            .arg("import")
            .arg("--file")
            .arg({
                let honest = dir.path().join("honest.jsonl");
                write_jsonl(&honest, &events);
                honest
            })
            .assert()
            .success();
        on(&target)
            .args(["tick", "--now", "2026-12-02T00:00:00Z"])
            .assert()
            .success();
    }
}

#[test]
fn importing_dev_zero_stops_at_the_line_limit_under_a_memory_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fresh(dir.path(), "ledger.db");
    let before = event_count(&db);
    let exe = assert_cmd::cargo::cargo_bin("provledger");
    // 512 MiB of address space is far more than a 1 MiB line needs and far
    // less than reading /dev/zero without a limit would take.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 524288 && exec \"$0\" --db \"$1\" import --file /dev/zero")
        .arg(&exe)
        .arg(&db)
        .env_remove("PROVLEDGER_STORE")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("line longer than 1 MiB"),
        "{}",
        text(&out)
    );
    assert_eq!(event_count(&db), before);
}

#[cfg(unix)]
#[test]
fn attachments_must_be_regular_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = placed(dir.path());
    let before = event_count(&db);
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    let mut specials = vec![PathBuf::from("/dev/zero"), dir.path().to_path_buf()];
    if made {
        specials.push(fifo);
    }
    for special in specials {
        on(&db)
            .args([
                "case",
                "open",
                "--order",
                "WO-1001",
                "--line",
                "1.1",
                "--type",
                "resend-provisioning-email",
                "--as",
                OLIVIA,
                "--at",
                "2026-11-21T09:00:00Z",
                "--attach",
            ])
            .arg(&special)
            .timeout(std::time::Duration::from_secs(20))
            .assert()
            .code(2)
            .stderr(predicate::str::contains("not a regular file"));
    }
    // A regular file over the limit is refused too (sparse: no disk used).
    let big = dir.path().join("big.png");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(26 << 20))
        .expect("sparse file");
    on(&db)
        .args([
            "case",
            "open",
            "--order",
            "WO-1001",
            "--line",
            "1.1",
            "--type",
            "resend-provisioning-email",
            "--as",
            OLIVIA,
            "--at",
            "2026-11-21T09:00:00Z",
            "--attach",
        ])
        .arg(&big)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("larger than 25 MiB"));
    assert_eq!(event_count(&db), before);
}

// ---------------------------------------------------------------------------
// Docs and behaviour agree.

#[test]
fn a_script_with_a_malformed_line_runs_nothing_and_a_bad_step_does_not_stop_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fresh(dir.path(), "ledger.db");
    let before = event_count(&db);
    let place = format!(
        "{{\"step\":\"place_order\",\"as\":\"{OLIVIA}\",\"at\":\"2026-11-20T09:00:00Z\",\"order\":{}}}",
        ORDER.replace('\n', " ")
    );
    let malformed = dir.path().join("malformed.jsonl");
    std::fs::write(&malformed, format!("{place}\n{{\"step\": \"teleport\"}}\n")).unwrap();
    on(&db)
        .arg("run")
        .arg("--file")
        .arg(&malformed)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("script line 2"));
    assert_eq!(event_count(&db), before, "no step ran");
    let bad_step = dir.path().join("bad-step.jsonl");
    std::fs::write(
        &bad_step,
        format!(
            "{{\"step\":\"resend_email\",\"as\":\"{OLIVIA}\",\"at\":\"2026-11-20T08:00:00Z\",\"order\":\"WO-404\",\"line\":\"1.1\"}}\n{place}\n"
        ),
    )
    .unwrap();
    on(&db)
        .arg("run")
        .arg("--file")
        .arg(&bad_step)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("error (nothing written)"));
    assert!(
        event_count(&db) > before,
        "the script went on after the bad step"
    );
}

#[test]
fn business_times_are_kept_to_the_microsecond_in_payload_and_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fresh(dir.path(), "ledger.db");
    on(&db)
        .args(["order", "place", "--file", "-", "--as", OLIVIA])
        .args(["--at", "2026-11-20T09:00:00.123456789Z"])
        .write_stdin(ORDER)
        .assert()
        .success();
    let events = export_events(&db);
    let placed = events
        .iter()
        .find(|e| e.event_type == "OrderPlaced")
        .expect("the order");
    let at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(placed.payload["at"].clone()).unwrap();
    assert_eq!(at, placed.occurred_at);
    assert_eq!(at.timestamp_subsec_nanos(), 123_456_000);
}

#[test]
fn a_read_on_lagging_read_models_is_exact_or_says_how_far_behind() {
    use provledger::Ledger;
    use provledger_domain::{Actor, Command, Context, Email, OrderId, OrderRequest};
    use provledger_projections::{HistoryQuery, LineQuery, TransactionQuery};
    use provledger_store::OpenMode;

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ledger.db");
    let url = format!("sqlite:{}", db.display());
    let writer = Ledger::open_with(&url, OpenMode::Create).expect("init");
    writer.set_deferred_projections(true);
    let order: OrderRequest = serde_json::from_str(ORDER).unwrap();
    let ctx = Context::new(
        Actor::User(Email::parse(OLIVIA).unwrap()),
        "2026-11-20T09:00:00Z".parse().unwrap(),
    );
    let id = OrderId::parse("WO-1001").unwrap();
    writer
        .execute(
            &id,
            Command::PlaceOrder(order.validate().unwrap()),
            &ctx,
            None,
        )
        .expect("place");
    let reader = Ledger::open_with(&url, OpenMode::ReadOnly).expect("read-only");
    let head = reader.store().head().unwrap().map_or(0, |h| h.position);
    assert_eq!(
        reader.lag().unwrap(),
        head,
        "the read models lag the placement (its order and reservation events)"
    );
    let lines = reader.lines(&LineQuery::default(), None).unwrap();
    assert_eq!(lines.len(), 1, "lines replays the log");
    let history = reader
        .history(
            &HistoryQuery {
                order_id: Some(id.clone()),
                subscription_id: None,
            },
            None,
        )
        .unwrap();
    assert_eq!(history.len(), 1, "history replays the log");
    reader.transactions(&TransactionQuery::default()).unwrap();
    assert_eq!(reader.lag().unwrap(), head, "a read wrote nothing");
    // The CLI says so on stderr.
    on(&db)
        .arg("transactions")
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("{head} events behind")));
    // A worker catches them up; the answers are the same.
    writer.catch_up().unwrap();
    assert_eq!(reader.lag().unwrap(), 0);
    assert_eq!(reader.lines(&LineQuery::default(), None).unwrap(), lines);
}

#[test]
fn reads_work_on_a_ledger_whose_read_models_were_never_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = placed(dir.path());
    let events = export_events(&source);
    let bare = dir.path().join("bare.db");
    let store = provledger_store::open(&format!("sqlite:{}", bare.display())).expect("store");
    store.import_batch(&events).expect("import");
    drop(store);
    on(&bare)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "verified {} events",
            events.len()
        )));
    on(&bare)
        .args(["lines", "--order", "WO-1001"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Sub100042"));
    on(&bare)
        .arg("transactions")
        .assert()
        .success()
        .stderr(predicate::str::contains("events behind"));
    // A writer builds them.
    on(&bare).arg("project").assert().success();
    on(&bare)
        .arg("transactions")
        .assert()
        .success()
        .stderr(predicate::str::is_empty());
}
