//! Long work (import, rebuild, migrate, verify) shows progress only on a
//! terminal: when standard error is not one (a pipe, a file, CI), nothing
//! but real errors is written there, so scripts can treat any output on
//! standard error as a problem.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn provledger(db: &Path) -> Command {
    let mut cmd = Command::cargo_bin("provledger").expect("binary");
    cmd.env_remove("PROVLEDGER_STORE")
        .env_remove("PROVLEDGER_AS")
        .arg("--db")
        .arg(db);
    cmd
}

fn provledger_init(db: &Path) -> Command {
    let mut cmd = provledger(db);
    cmd.args(["init", "--clock", "simulated"]);
    cmd
}

fn demo_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/demo.jsonl")
}

/// Run and return stdout, asserting success and an empty standard error.
fn quiet(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {stderr}");
    assert!(
        stderr.is_empty(),
        "{what} wrote to a non-terminal standard error: {stderr:?}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn long_work_is_quiet_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    quiet(provledger_init(&source), "init");
    let mut run = provledger(&source);
    run.arg("run").arg("--file").arg(demo_script());
    // The demo script records refusals (exit 3) on purpose; only its
    // standard error matters here, and refusals are reported there, so
    // build the ledger without checking this step's streams.
    let _ = run.output().expect("run the demo script");

    let export = dir.path().join("export.jsonl");
    let mut cmd = provledger(&source);
    cmd.arg("export").arg("--out").arg(&export);
    quiet(cmd, "export");

    let target = dir.path().join("target.db");
    let mut init = provledger(&target);
    init.args(["init", "--for-import"]);
    quiet(init, "init");
    let mut cmd = provledger(&target);
    cmd.arg("import").arg("--file").arg(&export);
    assert!(quiet(cmd, "import").contains("imported"));

    let mut cmd = provledger(&target);
    cmd.arg("rebuild");
    assert!(quiet(cmd, "rebuild").contains("rebuilt"));

    let mut cmd = provledger(&target);
    cmd.arg("verify");
    assert!(quiet(cmd, "verify").contains("intact"));

    let copy = dir.path().join("copy.db");
    let mut cmd = provledger(&target);
    cmd.arg("migrate")
        .arg("--from")
        .arg(format!("sqlite:{}", target.display()))
        .arg("--to")
        .arg(format!("sqlite:{}", copy.display()));
    assert!(quiet(cmd, "migrate").contains("migrated"));
}
