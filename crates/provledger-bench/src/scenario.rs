//! The sequential scenario figure: `provledger run --file` of a generated
//! script, one durable command per step, against raw rusqlite doing a load
//! and an insert per command in the same run.
//!
//! This module exists because P1 times commands submitted through the
//! library, one by one, on a ledger built by import; an operator (and a
//! test author) meets the ledger through scenario scripts instead. Here a
//! fresh simulated ledger (`provledger init --clock simulated`: a script
//! carries its own business times, which a live ledger refuses) runs a
//! script of places, contact changes and resends as `provledger run --file`
//! does (the application's script runner, in a fresh process); the raw side then writes the
//! very same rows into a bare table, one transaction per command, each
//! reading the order's earlier rows first (the load a command needs).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use provledger::script::StepResult;
use provledger::OutcomeStatus;
use provledger_domain::ClockMode;
use provledger_store::Metadata;
use rusqlite::{params, Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::raw::{self, RawRow, COLUMNS};
use crate::workload::{Action, Workload, WorkloadSpec};

/// What the child process running the script measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScriptResult {
    /// Seconds `provledger run --file` took (process start-up excluded).
    pub seconds: f64,
    /// Steps in the script.
    pub steps: u64,
    /// Exit status `run` returned (3 when some step was refused).
    pub exit_code: i32,
}

/// Write the scenario script of `orders` orders: every order's placement,
/// contact changes and resends in business-time order (no ticks, no other
/// actions). Returns the number of steps.
pub fn write_script(orders: u32, seed: u64, out: &Path) -> anyhow::Result<u64> {
    use std::io::Write as _;
    let workload = Workload::generate(WorkloadSpec::new(orders, seed));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    let mut n = 0;
    for planned in workload.steps() {
        if !matches!(
            planned.action,
            Action::Place | Action::Change { .. } | Action::Resend { .. }
        ) {
            continue;
        }
        serde_json::to_writer(&mut w, &workload.materialise(planned))?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// The child's side: what `provledger --db DB run --file SCRIPT` does (read
/// and parse the script, open the ledger, run every step through the one
/// write path; printing left out), timed in a fresh process.
pub fn child_script(db: &Path, script: &Path) -> anyhow::Result<ScriptResult> {
    let started = Instant::now();
    let text = std::fs::read_to_string(script)?;
    let steps = provledger::script::parse_script(&text)?;
    let ledger = provledger::Ledger::open(&format!("sqlite:{}", db.display()))?;
    let results = provledger::script::run_script(&ledger, &steps)?;
    let seconds = started.elapsed().as_secs_f64();
    let refused = results.iter().any(|r| match r {
        StepResult::Error { .. } => true,
        StepResult::Command(o) => o.status == OutcomeStatus::Failed,
        _ => false,
    });
    Ok(ScriptResult {
        seconds,
        steps: steps.len() as u64,
        exit_code: if refused {
            provledger::EXIT_REFUSED
        } else {
            provledger::EXIT_OK
        },
    })
}

/// The ledger's rows after its first (`LedgerCreated`), grouped by the
/// command that wrote them: consecutive rows of one correlation (a
/// command's own events, its scheduled catch-up and its reservations share
/// it) were one append.
pub fn command_groups(ledger: &Connection) -> anyhow::Result<Vec<Vec<RawRow>>> {
    let last: i64 = ledger.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
        r.get(0)
    })?;
    let rows = raw::sqlite::read_range(ledger, 2, last)?;
    let mut groups: Vec<Vec<RawRow>> = Vec::new();
    let mut current_key = String::new();
    for row in rows {
        let metadata: Metadata = serde_json::from_str(&row.metadata)?;
        let key = metadata.correlation_id.unwrap_or(metadata.transaction_id);
        match groups.last_mut() {
            Some(group) if key == current_key => group.push(row),
            _ => groups.push(vec![row]),
        }
        current_key = key;
    }
    Ok(groups)
}

/// The raw side: for each command, one `BEGIN IMMEDIATE`, read every
/// earlier row of its first stream (the order), insert its rows, commit
/// (`synchronous=FULL`). Returns the total time.
pub fn raw_load_insert(
    target: &mut Connection,
    groups: &[Vec<RawRow>],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for rows in groups {
        let Some(first) = rows.first() else {
            continue;
        };
        let tx = target.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut load = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE stream_id = ?1 ORDER BY stream_version"
            ))?;
            let mut loaded = load.query(params![first.stream_id])?;
            let mut bytes = 0usize;
            while let Some(r) = loaded.next()? {
                let payload: String = r.get(5)?;
                bytes += payload.len();
            }
            std::hint::black_box(bytes);
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO events ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?;
            for r in rows {
                insert.execute(params![
                    r.position,
                    r.stream_id,
                    r.stream_version,
                    r.event_type,
                    r.schema_version,
                    r.payload,
                    r.metadata,
                    r.occurred_at,
                    r.recorded_at,
                    r.prev_hash,
                    r.hash
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

/// The figure, both sides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    /// Steps in the script.
    pub steps: u64,
    /// Commands that wrote (one append each; bad input writes nothing).
    pub commands: u64,
    /// Events they wrote.
    pub events: u64,
    /// provledger: seconds for `run --file`.
    pub ours_seconds: f64,
    /// Raw: seconds for the same commands' loads and inserts.
    pub raw_seconds: f64,
    /// Exit status of `run`.
    pub exit_code: i32,
}

/// Measure the scenario of `orders` orders in `work`: init, the script in a
/// child process of `exe` (a fresh process, as an operator runs it), then
/// the raw side in this one.
pub fn measure(exe: &Path, work: &Path, orders: u32, seed: u64) -> anyhow::Result<Scenario> {
    let script = work.join(format!("scenario-{orders}.jsonl"));
    let db = work.join(format!("scenario-{orders}.db"));
    let raw_db = work.join(format!("scenario-{orders}-raw.db"));
    for path in [&db, &raw_db] {
        crate::measure::remove_db(path);
    }
    write_script(orders, seed, &script)?;
    let db_text = db.display().to_string();
    // `provledger init --clock simulated`.
    provledger::Ledger::open(&format!("sqlite:{db_text}"))?.initialise(ClockMode::Simulated)?;
    let script_text = script.display().to_string();
    let output = std::process::Command::new(exe)
        .args(["child", "script", "--db", &db_text, "--file", &script_text])
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !output.status.success() {
        bail!(
            "the scenario child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let ours: ScriptResult = serde_json::from_str(text.lines().last().unwrap_or(""))
        .with_context(|| format!("unexpected child output {text:?}"))?;
    let groups = command_groups(&raw::sqlite::open_existing(&db)?)?;
    let mut target = raw::sqlite::open(&raw_db)?;
    let raw_took = raw_load_insert(&mut target, &groups)?;
    Ok(Scenario {
        steps: ours.steps,
        commands: groups.len() as u64,
        events: groups.iter().map(|g| g.len() as u64).sum(),
        ours_seconds: ours.seconds,
        raw_seconds: raw_took.as_secs_f64(),
        exit_code: ours.exit_code,
    })
}
