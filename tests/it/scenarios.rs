//! Seed scenarios, data-driven: every `fixtures/scenarios/*.jsonl` script is
//! run against a fresh SQLite ledger and its whole output (each step's
//! result, the lines view, the Transaction Manager, the chain check) is
//! compared with the `.expected` file beside it. Adding a case is adding a
//! file; `UPDATE_EXPECT=1 cargo test -p provledger-tests scenarios` writes the
//! expected files (review the diff before committing it).
//!
//! Each scenario also checks two replay invariants: a rebuild from position 0
//! gives byte-identical read models, and `lines --as-of` the last event's time
//! equals the current lines.

use std::path::{Path, PathBuf};

use provledger::cli::{print_step_results, Io};
use provledger::output::{self, Format};
use provledger::script::{parse_script, run_script};
use provledger::Ledger;
use provledger_domain::ClockMode;
use provledger_projections::{AsOf, LineQuery, TransactionQuery};
use provledger_tests::{repo_root, sqlite_url};

fn scenario_files() -> Vec<PathBuf> {
    let dir = repo_root().join("fixtures/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/scenarios exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

fn run_scenario(script: &Path) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&sqlite_url(dir.path())).expect("open ledger");
    let clock = ledger
        .initialise(ClockMode::Simulated)
        .expect("a simulated ledger");
    let text = std::fs::read_to_string(script).expect("readable script");
    let steps = parse_script(&text).expect("valid script");
    let results = run_script(&ledger, &steps).expect("script runs");

    let mut out = Vec::new();
    let mut err = Vec::new();
    {
        let mut io = Io {
            out: &mut out,
            err: &mut err,
        };
        print_step_results(&mut io, Format::Table, &results).expect("print");
    }
    let mut report = String::from("== steps ==\n");
    report.push_str(&String::from_utf8(out).expect("utf-8"));

    let lines = ledger.lines(&LineQuery::default(), None).expect("lines");
    report.push_str("\n== lines ==\n");
    report.push_str(
        &output::render_view(&lines, &output::lines_kind(), Format::Table, Some(clock))
            .expect("render"),
    );

    let transactions = ledger
        .transactions(&TransactionQuery::default())
        .expect("transactions");
    report.push_str("\n== transactions ==\n");
    report.push_str(
        &output::render_view(
            &transactions,
            &output::transactions_kind(),
            Format::Table,
            Some(clock),
        )
        .expect("render"),
    );

    let verified = ledger.verify(&mut |_| {}).expect("verify");
    report.push_str(&format!(
        "\n== verify ==\n{} events, intact: {}\n",
        verified.events_checked,
        verified.is_intact()
    ));

    // Replay invariants.
    let incremental = ledger.read_models().dump().expect("dump");
    ledger.rebuild(&mut |_| {}).expect("rebuild");
    let rebuilt = ledger.read_models().dump().expect("dump");
    assert_eq!(
        incremental,
        rebuilt,
        "{}: rebuild differs from incremental",
        script.display()
    );
    let last_at = ledger
        .store()
        .read_all(0)
        .expect("read")
        .map(|e| e.expect("event").occurred_at)
        .max()
        .expect("events");
    let as_of = ledger
        .lines(&LineQuery::default(), Some(AsOf::Time(last_at)))
        .expect("as of");
    assert_eq!(
        as_of,
        lines,
        "{}: --as-of the last event differs from the current lines",
        script.display()
    );
    report
}

#[test]
fn seed_scenarios_match_their_expected_output() {
    let files = scenario_files();
    assert!(
        files.len() >= 5,
        "expected the seed scenarios, found {files:?}"
    );
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut mismatches = Vec::new();
    for script in files {
        let actual = run_scenario(&script);
        let expected_path = script.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).expect("write expected");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => mismatches.push(format!(
                "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
                script.display()
            )),
            Err(_) => mismatches.push(format!(
                "{} has no .expected file; run with UPDATE_EXPECT=1 and review it",
                script.display()
            )),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
