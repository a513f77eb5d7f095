//! The harness itself: the synthesizer records what the ledger records,
//! batches equal sequential execution on a generated workload, and the
//! documented command runs end to end on a tiny workload. No timings are
//! asserted anywhere: benchmarks are not timed tests.

use std::process::Command;

use provledger::group_commit::BatchCommand;
use provledger::script::{parse_script, run_script, Step};
use provledger::Ledger;
use provledger_bench::synth::Synthesizer;
use provledger_bench::{Workload, WorkloadSpec};
use provledger_store::{EventStore, RecordedEvent};

fn content(events: &[RecordedEvent]) -> Vec<serde_json::Value> {
    events
        .iter()
        .map(|e| {
            serde_json::json!([
                e.position,
                e.stream_id,
                e.stream_version,
                e.event_type,
                e.schema_version,
                e.payload,
                e.metadata,
                e.occurred_at
            ])
        })
        .collect()
}

fn stored(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store.read_all(0).unwrap().map(Result::unwrap).collect()
}

#[test]
fn the_synthesizer_records_what_the_ledger_records() {
    let workload = Workload::generate(WorkloadSpec::new(25, 3));
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&format!("sqlite:{}", dir.path().join("l.db").display())).unwrap();
    let steps: Vec<Step> = (0..workload.len())
        .filter_map(|i| workload.step(i))
        .collect();
    run_script(&ledger, &steps).unwrap();
    let real = stored(ledger.store());

    let mut synthesized = Vec::new();
    let mut synth = Synthesizer::new(&workload);
    let stats = synth
        .run_until(u64::MAX, &mut |e| {
            synthesized.push(e);
            Ok(())
        })
        .unwrap();
    assert!(stats.refusals > 0 && stats.ticks > 0, "{stats:?}");
    assert_eq!(content(&synthesized), content(&real));
    // The synthesized chain verifies on its own.
    let mut checker = provledger_store::hash::ChainChecker::new();
    for e in &synthesized {
        checker.check(e).unwrap();
    }
    // Nothing is kept for orders that are finished.
    assert!(stats.live_orders < 25, "{stats:?}");
}

#[test]
fn a_generated_workload_in_batches_equals_sequential_execution() {
    let workload = Workload::generate(WorkloadSpec::new(30, 5));
    let dir = tempfile::tempdir().unwrap();
    let open =
        |name: &str| Ledger::open(&format!("sqlite:{}", dir.path().join(name).display())).unwrap();
    let commands: Vec<BatchCommand> = workload
        .steps()
        .iter()
        .filter(|s| !s.is_tick())
        .filter_map(|s| workload.materialise(s).prepare().unwrap())
        .map(|p| BatchCommand::new(p.order_id, p.command, p.context))
        .collect();
    let sequential = open("seq.db");
    let expected: Vec<_> = commands
        .iter()
        .map(|c| {
            sequential
                .submit(c.submission.clone())
                .map(|o| (o.status, o.message, o.positions))
                .map_err(|e| e.to_string())
        })
        .collect();
    let batched = open("batch.db");
    let mut got = Vec::new();
    for chunk in commands.chunks(16) {
        for r in batched.execute_batch(chunk.to_vec()) {
            got.push(
                r.map(|o| (o.status, o.message, o.positions))
                    .map_err(|e| e.to_string()),
            );
        }
    }
    assert_eq!(got, expected);
    assert_eq!(
        content(&stored(batched.store())),
        content(&stored(sequential.store()))
    );
}

#[test]
fn generate_writes_a_script_provledger_can_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("script.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_provledger-bench"))
        .args(["generate", "--orders", "12", "--seed", "9", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let steps = parse_script(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let workload = Workload::generate(WorkloadSpec::new(12, 9));
    assert_eq!(steps.len(), workload.len());
    let places = steps
        .iter()
        .filter(|s| matches!(s, Step::PlaceOrder { .. }))
        .count();
    assert_eq!(places, 12);
}

#[test]
fn the_harness_runs_on_a_tiny_workload() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provledger-bench"));
    cmd.args(["run", "--quick", "--work-dir"])
        .arg(dir.path().join("work"))
        .arg("--json")
        .arg(&json)
        .env_remove("PROVLEDGER_BENCH_POSTGRES");
    if let Some(url) = provledger_store::postgres::test_url() {
        cmd.arg("--postgres").arg(url);
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("| id | backend |"), "{table}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let figures = report["figures"].as_array().unwrap();
    for id in ["P1", "P2", "P3", "P4", "P5", "P6", "GC", "SEQ"] {
        assert!(
            figures.iter().any(|f| f["id"] == id),
            "no {id} figure in {report}"
        );
    }
    // Every throughput and latency was measured (positive, finite).
    for f in figures {
        let ours = f["ours"].as_f64().unwrap();
        assert!(ours.is_finite() && ours > 0.0, "{f}");
    }
}

/// The HTTP load check runs end to end on a tiny load: every acknowledged
/// write is in the ledger, no 5xx, the chain verifies (no timing asserted).
#[test]
fn serve_load_runs_end_to_end_on_a_tiny_load() {
    let opts = provledger_bench::http_load::LoadOptions {
        clients: 4,
        duration: std::time::Duration::from_millis(500),
        orders: 3,
        write_percent: 50,
        postgres: None,
    };
    let report = provledger_bench::http_load::run(&opts, &mut std::io::sink()).expect("load ran");
    assert!(report.requests > 0, "{report:?}");
    assert_eq!(report.server_errors, 0, "{report:?}");
    assert_eq!(report.transport_errors, 0, "{report:?}");
    assert_eq!(report.events_lost, 0, "{report:?}");
    assert!(report.chain_intact, "{report:?}");
}
