//! The harness: builds ledgers of each size, measures P1–P6 and group commit
//! on provledger and on the raw baselines, and collects the [`Report`].
//!
//! This module exists so that one command (`provledger-bench run`) measures
//! everything the performance issue asks for, in one run, in a fixed order
//! that keeps phases from polluting each other:
//!
//! 1. synthesize the workload into a JSON Lines export of N events;
//! 2. P2/P5: `import` it into a fresh ledger in a child process (time and
//!    peak RSS of that process alone); raw: copy the same rows into a bare
//!    table in transactions of the same size;
//! 3. P3/P5: `rebuild` every read model in a child process; raw: read back
//!    and decode every row;
//! 4. P4: Transaction Manager queries through the ledger and as bare SQL;
//! 5. P1: the next commands of the workload, one durable transaction each,
//!    through `Ledger::execute`; raw: the same rows, same grouping;
//! 6. group commit: the commands after those, from many submitting threads
//!    through a `GroupCommitter`;
//! 7. P6: how each per-unit cost changed between the smallest and the
//!    largest ledger.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use provledger::group_commit::{
    BatchCommand, GroupCommitOptions, GroupCommitter, Projection, Projector,
};
use provledger::Ledger;
use serde::{Deserialize, Serialize};

use crate::queries::{self, Latency, QueryKind};
use crate::raw;
use crate::report::{Better, Figure, Report, RunInfo};
use crate::synth::{SynthStats, Synthesizer};
use crate::workload::{Workload, WorkloadSpec};

/// Events per transaction of `import` (and of the raw bulk baseline).
pub const IMPORT_BATCH: usize = provledger::transfer::IMPORT_BATCH;

/// Bytes in a MiB (peak memory is reported in MiB; the target is in MB).
const MIB: f64 = 1024.0 * 1024.0;

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Ledger sizes, in events (P1–P3, P5, P6 at each).
    pub sizes: Vec<u64>,
    /// P4 is measured on a ledger with at least this many Transaction
    /// Manager rows (0: on the largest ledger of `sizes`).
    pub transactions: u64,
    /// Commands timed for P1 (after a warm-up of a tenth as many).
    pub p1_commands: usize,
    /// Commands timed for group commit.
    pub gc_commands: usize,
    /// Concurrent submitters for group commit.
    pub submitters: usize,
    /// Orders in the sequential scenario script (0: skip it).
    pub scenario_orders: u32,
    /// Queries timed per query kind for P4.
    pub queries: usize,
    /// Workload seed.
    pub seed: u64,
    /// A PostgreSQL server to measure as well (`postgres://…`).
    pub postgres: Option<String>,
    /// Ledger sizes measured on PostgreSQL.
    pub postgres_sizes: Vec<u64>,
    /// Where ledgers and exports go (default: a temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Keep the files after the run.
    pub keep: bool,
    /// The harness executable, re-run as a child for P2, P3 and P5.
    pub exe: PathBuf,
    /// The command line, for the report.
    pub command_line: String,
}

impl RunOptions {
    /// The full run of docs/performance.md.
    pub fn full(exe: PathBuf) -> RunOptions {
        RunOptions {
            sizes: vec![100_000, 1_000_000],
            transactions: 1_000_000,
            p1_commands: 3_000,
            gc_commands: 8_000,
            submitters: 16,
            scenario_orders: 10_000,
            queries: 1_000,
            seed: 42,
            postgres: None,
            postgres_sizes: vec![100_000],
            work_dir: None,
            keep: false,
            exe,
            command_line: String::new(),
        }
    }

    /// A tiny run that only proves the harness works (CI).
    pub fn quick(exe: PathBuf) -> RunOptions {
        RunOptions {
            sizes: vec![1_000, 3_000],
            transactions: 0,
            p1_commands: 60,
            gc_commands: 120,
            submitters: 4,
            scenario_orders: 100,
            queries: 10,
            postgres_sizes: vec![1_000],
            ..RunOptions::full(exe)
        }
    }
}

/// What a child process measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChildResult {
    /// Seconds the work took (process start-up excluded).
    pub seconds: f64,
    /// Events imported or replayed.
    pub events: u64,
    /// Peak resident memory of the process, KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

/// Peak resident set size of this process so far, KiB (0 if unknown).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// The child's side of P2: import `file` into the ledger at `url`.
pub fn child_import(url: &str, file: &Path) -> anyhow::Result<ChildResult> {
    let ledger = Ledger::open(url)?;
    let started = Instant::now();
    let events = provledger::transfer::import(&ledger, file)?;
    Ok(ChildResult {
        seconds: started.elapsed().as_secs_f64(),
        events,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// The child's side of P3: rebuild every read model of the ledger at `url`.
pub fn child_rebuild(url: &str) -> anyhow::Result<ChildResult> {
    let ledger = Ledger::open(url)?;
    let started = Instant::now();
    let events = ledger.rebuild(&mut |_| {})?;
    Ok(ChildResult {
        seconds: started.elapsed().as_secs_f64(),
        events,
        peak_rss_kib: peak_rss_kib(),
    })
}

fn run_child(exe: &Path, args: &[&str]) -> anyhow::Result<ChildResult> {
    let output = Process::new(exe)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !output.status.success() {
        bail!(
            "`{} {}` failed: {}",
            exe.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("unexpected child output {text:?}"))
}

/// Per-workload averages, measured on a small synthesis.
#[derive(Debug, Clone, Copy)]
struct Calibration {
    events_per_order: f64,
    rows_per_order: f64,
    commands_per_order: f64,
}

fn calibrate(seed: u64) -> anyhow::Result<Calibration> {
    let orders = 1_000u32;
    let workload = Workload::generate(WorkloadSpec::new(orders, seed));
    let mut synth = Synthesizer::new(&workload);
    let stats = synth.run_until(u64::MAX, &mut |_| Ok(()))?;
    let commands = workload.steps().iter().filter(|s| !s.is_tick()).count();
    Ok(Calibration {
        events_per_order: stats.events as f64 / f64::from(orders),
        rows_per_order: stats.transaction_rows as f64 / f64::from(orders),
        commands_per_order: commands as f64 / f64::from(orders),
    })
}

/// How big a ledger to build.
#[derive(Debug, Clone, Copy)]
enum Target {
    Events(u64),
    Rows(u64),
}

/// A synthesized export and the workload that continues it.
struct Built {
    export: PathBuf,
    workload: Workload,
    cut: usize,
    stats: SynthStats,
    seconds: f64,
}

fn build_export(
    opts: &RunOptions,
    calibration: &Calibration,
    target: Target,
    live_commands: usize,
    export: PathBuf,
) -> anyhow::Result<Built> {
    let base_orders = match target {
        Target::Events(n) => n as f64 / calibration.events_per_order,
        Target::Rows(n) => n as f64 / calibration.rows_per_order,
    };
    let live_orders = live_commands as f64 / calibration.commands_per_order * 3.0;
    let orders = (base_orders * 1.15 + live_orders + 50.0).ceil() as u32;
    let started = Instant::now();
    let workload = Workload::generate(WorkloadSpec::new(orders, opts.seed));
    let mut file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&export)
            .with_context(|| format!("cannot create {}", export.display()))?,
    );
    let mut synth = Synthesizer::new(&workload);
    let mut sink = |event: provledger_store::RecordedEvent| -> anyhow::Result<()> {
        serde_json::to_writer(&mut file, &event)?;
        file.write_all(b"\n")?;
        Ok(())
    };
    loop {
        let stats = synth.stats();
        let done = match target {
            Target::Events(n) => stats.events >= n,
            Target::Rows(n) => stats.transaction_rows >= n,
        };
        if done || !synth.step(&mut sink)? {
            break;
        }
    }
    file.flush()?;
    drop(file);
    let cut = synth.next_step();
    let stats = synth.stats();
    Ok(Built {
        export,
        cut,
        stats,
        seconds: started.elapsed().as_secs_f64(),
        workload,
    })
}

/// The commands of the workload from step `from` on (ticks skipped).
fn live_commands(
    workload: &Workload,
    from: usize,
    count: usize,
) -> anyhow::Result<Vec<(u32, BatchCommand)>> {
    let mut out = Vec::with_capacity(count);
    for planned in workload.steps().iter().skip(from) {
        if out.len() == count {
            break;
        }
        if planned.is_tick() {
            continue;
        }
        let step = workload.materialise(planned);
        let Some(p) = step.prepare()? else {
            continue;
        };
        out.push((
            planned.order,
            BatchCommand::new(p.order_id, p.command, p.context),
        ));
    }
    Ok(out)
}

/// The raw side of P1 and group commit: reads the rows a command wrote in
/// the ledger under test and writes them again into the raw table.
pub trait RawSide {
    /// The ledger's rows with positions `first..=last`.
    fn rows(&mut self, first: u64, last: u64) -> anyhow::Result<Vec<raw::RawRow>>;
    /// Insert `rows` in one durable transaction into the raw table
    /// (`grouped`: into the second raw table, for the same-grouping
    /// baseline of group commit); returns the time it took.
    fn insert(&mut self, rows: &[raw::RawRow], grouped: bool) -> anyhow::Result<Duration>;
}

/// Raw SQLite: rows read from the ledger's file, written to the raw file.
struct SqliteRaw<'a> {
    source: &'a rusqlite::Connection,
    target: &'a mut rusqlite::Connection,
}

impl RawSide for SqliteRaw<'_> {
    fn rows(&mut self, first: u64, last: u64) -> anyhow::Result<Vec<raw::RawRow>> {
        raw::sqlite::read_range(self.source, first as i64, last as i64)
    }
    fn insert(&mut self, rows: &[raw::RawRow], grouped: bool) -> anyhow::Result<Duration> {
        raw::sqlite::insert_transaction(self.target, rows, table(grouped))
    }
}

/// Raw PostgreSQL: rows read from the ledger's schema, written to the raw one.
struct PgRaw<'a> {
    source: &'a mut postgres::Client,
    target: &'a mut postgres::Client,
    /// The prepared INSERTs into `events` and `events_grouped`.
    inserts: [postgres::Statement; 2],
}

impl RawSide for PgRaw<'_> {
    fn rows(&mut self, first: u64, last: u64) -> anyhow::Result<Vec<raw::RawRow>> {
        raw::pg::read_range(self.source, first as i64, last as i64)
    }
    fn insert(&mut self, rows: &[raw::RawRow], grouped: bool) -> anyhow::Result<Duration> {
        raw::pg::insert_transaction(self.target, rows, &self.inserts[usize::from(grouped)])
    }
}

fn table(grouped: bool) -> &'static str {
    if grouped {
        "events_grouped"
    } else {
        "events"
    }
}

/// Commands run on each side before switching to the other: both sides
/// see the same background load, on a machine shared with other work.
const INTERLEAVE: usize = 50;

/// The same with a background projector: long enough for the projector to
/// work alongside the commands (it is waited for before the raw side runs).
const INTERLEAVE_BACKGROUND: usize = 500;

/// How long the P1 projector rests between catch-ups.
const P1_PROJECTION_PAUSE: Duration = Duration::from_millis(100);

/// P1, on provledger and raw, interleaved.
struct Sequential {
    /// provledger, commands/s.
    ours: f64,
    /// Raw, commands/s.
    raw: f64,
    latencies: Vec<Duration>,
    /// Bytes handed to write system calls per command that wrote
    /// (provledger, raw); `None` where the kernel does not report them.
    written: Option<(f64, f64)>,
    errors: usize,
    first_error: Option<String>,
}

/// P1: each command through `Ledger::execute` (after `warmup` untimed
/// ones); every [`INTERLEAVE`] commands (with a background projector:
/// [`INTERLEAVE_BACKGROUND`]), the same rows in the same grouping through
/// the raw side. Both sides count commands that wrote.
fn p1(
    ledger: &Arc<Ledger>,
    commands: &[(u32, BatchCommand)],
    warmup: usize,
    raw_side: &mut dyn RawSide,
    background: bool,
) -> anyhow::Result<Sequential> {
    ledger.set_deferred_projections(background);
    let projector =
        background.then(|| Projector::start_with_pause(Arc::clone(ledger), P1_PROJECTION_PAUSE));
    let interleave = if background {
        INTERLEAVE_BACKGROUND
    } else {
        INTERLEAVE
    };
    let mut latencies = Vec::new();
    let (mut ours_total, mut raw_total) = (Duration::ZERO, Duration::ZERO);
    let (mut ours_count, mut raw_count) = (0usize, 0usize);
    let (mut ours_bytes, mut raw_bytes) = (Some(0u64), Some(0u64));
    let mut errors = 0;
    let mut first_error = None;
    let (warm, timed) = commands.split_at(warmup.min(commands.len()));
    let chunks = std::iter::once((false, warm)).chain(timed.chunks(interleave).map(|c| (true, c)));
    for (measured, chunk) in chunks {
        // provledger: the chunk's commands, then (with a projector) the
        // projection work they left, all in wall-clock time.
        let started = Instant::now();
        let written_before = written_bytes();
        let mut groups = Vec::new();
        for (_, c) in chunk {
            let one = Instant::now();
            let result = ledger.submit(c.submission.clone());
            if let Some(projector) = &projector {
                projector.poke();
            }
            if measured {
                latencies.push(one.elapsed());
            }
            match result {
                Ok(outcome) => {
                    if let (Some(first), Some(last)) =
                        (outcome.positions.first(), outcome.positions.last())
                    {
                        groups.push((*first, *last));
                    }
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if projector.is_some() {
            // Finished projecting before the raw side runs alone.
            ledger.catch_up()?;
        }
        if measured {
            ours_total += started.elapsed();
            // Commands that wrote (bad input writes nothing, but its time
            // is counted above).
            ours_count += groups.len();
            add_written(&mut ours_bytes, written_before);
        }
        // Raw: the same rows, one transaction per command.
        for (first, last) in groups {
            let rows = raw_side.rows(first, last)?;
            let before = written_bytes();
            let took = raw_side.insert(&rows, false)?;
            if measured {
                raw_total += took;
                raw_count += 1;
                add_written(&mut raw_bytes, before);
            }
        }
    }
    if let Some(projector) = projector {
        projector.stop();
    }
    ledger.set_deferred_projections(false);
    Ok(Sequential {
        ours: ours_count as f64 / ours_total.as_secs_f64(),
        raw: raw_count as f64 / raw_total.as_secs_f64(),
        latencies,
        written: ours_bytes.zip(raw_bytes).map(|(ours, raw)| {
            (
                ours as f64 / ours_count.max(1) as f64,
                raw as f64 / raw_count.max(1) as f64,
            )
        }),
        errors,
        first_error,
    })
}

/// Bytes this process has handed to `write`-family system calls so far
/// (`wchar` of `/proc/self/io`), or `None` where the kernel does not say.
/// Every thread counts, so a phase's delta includes its projector's writes.
fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Add what was written since `before` to `total` (which becomes `None`
/// once a reading is missing).
fn add_written(total: &mut Option<u64>, before: Option<u64>) {
    *total = match (*total, before, written_bytes()) {
        (Some(t), Some(b), Some(a)) => Some(t + a.saturating_sub(b)),
        _ => None,
    };
}

/// Group commit, on provledger and raw.
struct Grouped {
    /// provledger, commands/s until every command has its durable result
    /// (the projector catching up alongside).
    ours: f64,
    /// provledger, commands/s until the read models have caught up too.
    sustained: f64,
    /// Raw, one transaction per command (the per-command ceiling), commands/s.
    raw_per_command: f64,
    /// Raw, the same rows grouped into as many transactions as provledger
    /// used, commands/s.
    raw_grouped: f64,
    /// Bytes handed to write system calls per command that wrote: provledger
    /// (until the read models caught up), raw grouped the same way.
    written: Option<(f64, f64)>,
    commands: usize,
    batches: u64,
    largest: u64,
    errors: usize,
    first_error: Option<String>,
}

/// The committer's settings in the harness: the projector rests between
/// catch-ups (PROVLEDGER_BENCH_PROJECTION_PAUSE_MS, default 200 ms), so that
/// it takes the database's write lock in few, large batches.
fn gc_options(projection: Projection) -> GroupCommitOptions {
    let pause = std::env::var("PROVLEDGER_BENCH_PROJECTION_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    GroupCommitOptions {
        projection,
        projection_pause: Duration::from_millis(pause),
        ..GroupCommitOptions::default()
    }
}

/// Group commit: `submitters` threads, each with its own orders, each
/// command blocking until durable, through one `GroupCommitter`. The
/// commands run in rounds; after each round the raw side writes the same
/// rows one transaction per command, and again in as many transactions as
/// the committer used. Rates count the commands that wrote (bad input is
/// answered without writing; its time is counted all the same).
fn group_commit(
    ledger: Arc<Ledger>,
    commands: &[(u32, BatchCommand)],
    submitters: usize,
    raw_side: &mut dyn RawSide,
    projection: Projection,
) -> anyhow::Result<Grouped> {
    let submitters = submitters.max(1);
    let committer = GroupCommitter::start(Arc::clone(&ledger), gc_options(projection));
    let rounds = 2;
    let per_round = commands.len().div_ceil(rounds).max(1);
    let (mut ours_total, mut raw_total, mut grouped_total) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut ours_ack = Duration::ZERO;
    let mut raw_commands = 0usize;
    let (mut ours_bytes, mut grouped_bytes) = (Some(0u64), Some(0u64));
    let mut errors = 0usize;
    let mut first_error = None;
    for round in commands.chunks(per_round) {
        let mut parts: Vec<Vec<&BatchCommand>> = vec![Vec::new(); submitters];
        for (order, c) in round {
            parts[*order as usize % submitters].push(c);
        }
        let outcomes = Mutex::new(Vec::new());
        let batches_before = committer.stats().batches;
        let written_before = written_bytes();
        let started = Instant::now();
        std::thread::scope(|scope| {
            for part in &parts {
                let committer = &committer;
                let outcomes = &outcomes;
                scope.spawn(move || {
                    let mut mine = Vec::with_capacity(part.len());
                    for c in part {
                        mine.push(committer.submit((*c).clone()));
                    }
                    outcomes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend(mine);
                });
            }
        });
        ours_ack += started.elapsed();
        // The projector's work on this round is part of the sustained cost,
        // and the raw side below runs alone.
        ledger.catch_up()?;
        ours_total += started.elapsed();
        add_written(&mut ours_bytes, written_before);
        let batches = committer.stats().batches - batches_before;
        let mut groups = Vec::new();
        for outcome in outcomes
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            match outcome {
                Ok(o) => {
                    if let (Some(f), Some(l)) = (o.positions.first(), o.positions.last()) {
                        groups.push((*f, *l));
                    }
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        groups.sort_unstable();
        let mut all_rows = Vec::new();
        for (first, last) in &groups {
            let rows = raw_side.rows(*first, *last)?;
            raw_total += raw_side.insert(&rows, false)?;
            raw_commands += 1;
            all_rows.extend(rows);
        }
        let grouped_before = written_bytes();
        for chunk in chunks_of(all_rows, batches) {
            grouped_total += raw_side.insert(&chunk, true)?;
        }
        add_written(&mut grouped_bytes, grouped_before);
    }
    let stats = committer.shutdown();
    Ok(Grouped {
        ours: raw_commands as f64 / ours_ack.as_secs_f64(),
        sustained: raw_commands as f64 / ours_total.as_secs_f64(),
        raw_per_command: raw_commands as f64 / raw_total.as_secs_f64(),
        raw_grouped: raw_commands as f64 / grouped_total.as_secs_f64(),
        written: ours_bytes.zip(grouped_bytes).map(|(ours, grouped)| {
            let per = raw_commands.max(1) as f64;
            (ours as f64 / per, grouped as f64 / per)
        }),
        commands: commands.len(),
        batches: stats.batches,
        largest: stats.largest_batch,
        errors,
        first_error,
    })
}

fn chunks_of(rows: Vec<raw::RawRow>, parts: u64) -> Vec<Vec<raw::RawRow>> {
    let parts = parts.max(1) as usize;
    let per = rows.len().div_ceil(parts).max(1);
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        out.push(rows.by_ref().take(per).collect());
    }
    out
}

fn example(error: &Option<String>) -> String {
    error
        .as_deref()
        .map(|e| format!(", e.g. {e}"))
        .unwrap_or_default()
}

/// Collects figures and prints progress.
struct Run<'a> {
    opts: &'a RunOptions,
    log: &'a mut dyn Write,
    report: Report,
}

impl Run<'_> {
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.log, "[bench] {text}");
        let _ = self.log.flush();
    }

    #[allow(clippy::too_many_arguments)]
    fn figure(
        &mut self,
        id: &str,
        backend: &str,
        events: u64,
        what: &str,
        ours: f64,
        raw: Option<f64>,
        unit: &str,
        better: Better,
        target: &str,
        met: Option<bool>,
    ) {
        let f = Figure {
            id: id.into(),
            backend: backend.into(),
            ledger_events: events,
            what: what.into(),
            ours,
            raw,
            unit: unit.into(),
            better,
            target: target.into(),
            met,
        };
        let ratio = f
            .ratio()
            .map(|r| format!(" ({r:.2}× raw)"))
            .unwrap_or_default();
        let line = format!("{id} {backend} {events} events: {what}: {ours:.3} {unit}{ratio}");
        self.say(&line);
        self.report.figures.push(f);
    }
}

/// Per-size measurements kept for P6.
#[derive(Debug, Clone, Default)]
struct SizeResult {
    events: u64,
    p1: f64,
    p1_raw: f64,
    p2: f64,
    p2_raw: f64,
    p3: f64,
    p3_raw: f64,
    rss_import: f64,
    rss_rebuild: f64,
    p4: Vec<(QueryKind, Latency, Latency)>,
}

/// Run everything `opts` asks for; progress goes to `log`.
pub fn run(opts: &RunOptions, log: &mut dyn Write) -> anyhow::Result<Report> {
    let started = Instant::now();
    let temp;
    let work = match &opts.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("provledger-bench-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut run = Run {
        opts,
        log,
        report: Report {
            info: run_info(opts),
            figures: Vec::new(),
        },
    };
    run.say(&format!("working in {}", work.display()));
    let calibration = calibrate(opts.seed)?;
    run.report.info.notes.push(format!(
        "workload (seed {}): per order {:.2} events, {:.2} commands, {:.2} Transaction Manager rows; \
         orders of 1–5 lines over {} offers, contact changes (30% apply-to-all), resends, \
         onboardings, setup starts, support cases, 8% of actions by users without access, a tick every 6 h",
        opts.seed,
        calibration.events_per_order,
        calibration.commands_per_order,
        calibration.rows_per_order,
        crate::workload::OFFERS.len()
    ));

    let mut sizes = opts.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut results = Vec::new();
    for &n in &sizes {
        let pg_too = opts.postgres.is_some() && opts.postgres_sizes.contains(&n);
        results.push(measure_sqlite_size(
            &mut run,
            &work,
            &calibration,
            Target::Events(n),
            pg_too,
        )?);
    }
    if opts.scenario_orders > 0 {
        scenario(&mut run, &work)?;
    }
    if opts.transactions > 0 {
        p4_dedicated(&mut run, &work, &calibration)?;
    }
    p6(&mut run, &results);
    run.report.info.seconds = started.elapsed().as_secs_f64();
    Ok(run.report)
}

/// The sequential scenario figure (see [`crate::scenario`]).
fn scenario(run: &mut Run<'_>, work: &Path) -> anyhow::Result<()> {
    let orders = run.opts.scenario_orders;
    run.say(&format!(
        "scenario: `provledger run --file` of {orders} orders (places, contact changes, resends)"
    ));
    let s = crate::scenario::measure(&run.opts.exe, work, orders, run.opts.seed)?;
    run.report.info.notes.push(format!(
        "scenario: {orders} orders, {} steps, {} commands that wrote {} events; `run` exited {} \
         (3: some steps refused, as the workload intends); provledger {:.2} s, raw {:.2} s",
        s.steps, s.commands, s.events, s.exit_code, s.ours_seconds, s.raw_seconds
    ));
    run.figure(
        "SEQ",
        "sqlite",
        s.events,
        &format!(
            "sequential scenario: `provledger run --file` of {orders} orders, one durable command per step \
             (raw = load the order's rows + insert per command, 1 tx each, synchronous=FULL)"
        ),
        s.commands as f64 / s.ours_seconds,
        Some(s.commands as f64 / s.raw_seconds),
        "commands/s",
        Better::Higher,
        "",
        None,
    );
    Ok(())
}

fn run_info(opts: &RunOptions) -> RunInfo {
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:").and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            })
        })
        .unwrap_or(0)
        / 1024;
    RunInfo {
        started: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_mib,
        sqlite_version: rusqlite::version().to_string(),
        postgres: None,
        seed: opts.seed,
        command: opts.command_line.clone(),
        seconds: 0.0,
        notes: Vec::new(),
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

pub(crate) fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn measure_sqlite_size(
    run: &mut Run<'_>,
    work: &Path,
    calibration: &Calibration,
    target: Target,
    pg_too: bool,
) -> anyhow::Result<SizeResult> {
    let opts = run.opts;
    let Target::Events(n) = target else {
        bail!("sizes are given in events");
    };
    let warmup = (opts.p1_commands / 10).max(1);
    let live = live_needed(opts, warmup);
    run.say(&format!("size {n}: synthesizing the workload"));
    let built = build_export(
        opts,
        calibration,
        target,
        live,
        work.join(format!("export-{n}.jsonl")),
    )?;
    let events = built.stats.events;
    run.say(&format!(
        "size {n}: {} events, {} commands ({} refused, {} bad input), {} ticks in {:.1} s",
        events,
        built.stats.commands,
        built.stats.refusals,
        built.stats.errors,
        built.stats.ticks,
        built.seconds
    ));
    let db = work.join(format!("ledger-{n}.db"));
    let raw_db = work.join(format!("raw-{n}.db"));
    remove_db(&db);
    remove_db(&raw_db);
    let url = sqlite_url(&db);
    let export = built.export.to_string_lossy().to_string();
    let mut result = SizeResult {
        events,
        ..SizeResult::default()
    };

    // P2 and P5 (import).
    let import = run_child(
        &opts.exe,
        &["child", "import", "--store", &url, "--file", &export],
    )?;
    let mut raw_conn = raw::sqlite::open(&raw_db)?;
    let source = raw::sqlite::open_existing(&db)?;
    let (raw_n, raw_time) = raw::sqlite::copy_all(&source, &mut raw_conn, IMPORT_BATCH)?;
    anyhow::ensure!(
        raw_n == events,
        "the raw copy holds {raw_n} events, not {events}"
    );
    result.p2 = events as f64 / import.seconds;
    result.p2_raw = events as f64 / raw_time.as_secs_f64();
    result.rss_import = import.peak_rss_kib as f64 / 1024.0;
    run.figure(
        "P2",
        "sqlite",
        events,
        "bulk import (hashes checked, read models updated)",
        result.p2,
        Some(result.p2_raw),
        "events/s",
        Better::Higher,
        "≥ 0.5× raw and ≥ 150,000 events/s",
        Some(result.p2 >= 0.5 * result.p2_raw && result.p2 >= 150_000.0),
    );

    // P3 and P5 (rebuild).
    let rebuild = run_child(&opts.exe, &["child", "rebuild", "--store", &url])?;
    let (_, replay) = raw::sqlite::replay(&raw_conn)?;
    result.p3 = rebuild.events as f64 / rebuild.seconds;
    result.p3_raw = events as f64 / replay.as_secs_f64();
    result.rss_rebuild = rebuild.peak_rss_kib as f64 / 1024.0;
    run.figure(
        "P3",
        "sqlite",
        events,
        "rebuild every read model",
        result.p3,
        Some(result.p3_raw),
        "events/s",
        Better::Higher,
        "≥ 150,000 events/s",
        Some(result.p3 >= 150_000.0),
    );
    let big = events >= 1_000_000;
    run.figure(
        "P5",
        "sqlite",
        events,
        "peak RSS of import",
        result.rss_import,
        None,
        "MiB",
        Better::Lower,
        if big { "≤ 200 MB" } else { "" },
        big.then_some(result.rss_import * MIB <= 200e6),
    );
    run.figure(
        "P5",
        "sqlite",
        events,
        "peak RSS of rebuild",
        result.rss_rebuild,
        None,
        "MiB",
        Better::Lower,
        if big { "≤ 200 MB" } else { "" },
        big.then_some(result.rss_rebuild * MIB <= 200e6),
    );

    // P4 at this size (for P6; the 1M-transaction figure is separate).
    let ledger = Ledger::open(&url)?;
    let rows: i64 = source.query_row("SELECT COUNT(*) FROM rm_transactions", [], |r| r.get(0))?;
    result.p4 = p4_sqlite(
        run,
        &ledger,
        &source,
        events,
        rows as u64,
        opts.transactions == 0,
    )?;

    // P1 and group commit.
    let commands = live_commands(&built.workload, built.cut, live)?;
    anyhow::ensure!(
        commands.len() == live,
        "the workload ran out of commands ({} of {live})",
        commands.len()
    );
    let mut raw_side = SqliteRaw {
        source: &source,
        target: &mut raw_conn,
    };
    let ledger = Arc::new(ledger);
    let (p1, p1_raw) = commands_phase(
        run,
        "sqlite",
        &ledger,
        &commands,
        warmup,
        &mut raw_side,
        events,
    )?;
    result.p1 = p1;
    result.p1_raw = p1_raw;
    drop(ledger);
    drop(source);
    drop(raw_conn);

    if pg_too {
        if let Some(pg) = &opts.postgres {
            measure_postgres(run, pg, &built, events, warmup)?;
        }
    }
    if !opts.keep {
        remove_db(&db);
        remove_db(&raw_db);
        let _ = std::fs::remove_file(&built.export);
    }
    Ok(result)
}

/// Live commands a size needs: two P1 runs (with their warm-ups) and the
/// group-commit run.
fn live_needed(opts: &RunOptions, warmup: usize) -> usize {
    2 * (warmup + opts.p1_commands) + opts.gc_commands
}

/// P1 (read models updated inside each command, then by a background
/// projector) and group commit, each against its raw baseline. Returns the
/// background-projector P1 and its raw baseline (commands/s).
#[allow(clippy::too_many_arguments)]
fn commands_phase(
    run: &mut Run<'_>,
    backend: &str,
    ledger: &Arc<Ledger>,
    commands: &[(u32, BatchCommand)],
    warmup: usize,
    raw_side: &mut dyn RawSide,
    events: u64,
) -> anyhow::Result<(f64, f64)> {
    let opts = run.opts;
    let per_run = warmup + opts.p1_commands;
    let (inline_part, rest) = commands.split_at(per_run.min(commands.len()));
    let (background_part, gc_part) = rest.split_at(per_run.min(rest.len()));
    let sync = if backend == "sqlite" {
        ", synchronous=FULL"
    } else {
        ", synchronous_commit=on"
    };
    let (target, check): (&str, fn(f64, f64) -> bool) = if backend == "sqlite" {
        ("≥ 0.8× raw", |ours, raw| ours >= 0.8 * raw)
    } else {
        ("", |_, _| true)
    };
    let mut background = (0.0, 0.0);
    for (mode, part) in [("inline", inline_part), ("background", background_part)] {
        let seq = p1(ledger, part, warmup, raw_side, mode == "background")?;
        let lat = Latency::of(seq.latencies.clone(), 0);
        run.say(&format!(
            "P1 {mode}: latency median {:.3} ms, p99 {:.3} ms; {} commands failed (bad input){}",
            lat.median_ms,
            lat.p99_ms,
            seq.errors,
            example(&seq.first_error)
        ));
        let what = if mode == "inline" {
            format!("durable command, 1 tx/command{sync}; read models updated inside each command")
        } else {
            format!(
                "durable command, 1 tx/command{sync}; read models updated by a background \
                 projector (its time to finish included)"
            )
        };
        run.figure(
            "P1",
            backend,
            events,
            &what,
            seq.ours,
            Some(seq.raw),
            "commands/s",
            Better::Higher,
            target,
            (!target.is_empty()).then(|| check(seq.ours, seq.raw)),
        );
        // Only an embedded database's writes are this process's own.
        if let Some((ours, raw)) = seq.written.filter(|_| backend == "sqlite") {
            run.figure(
                "P1",
                backend,
                events,
                &format!(
                    "{mode}: bytes handed to write system calls per command (WAL frames, \
                     checkpoints; read models included)"
                ),
                ours / 1024.0,
                Some(raw / 1024.0),
                "KiB/command",
                Better::Lower,
                "",
                None,
            );
        }
        if mode == "background" {
            background = (seq.ours, seq.raw);
        }
    }
    let third = gc_part.len() / 3;
    let (alongside, rest) = gc_part.split_at(third);
    let (burst, inline) = rest.split_at(third);
    for (projection, part, how) in [
        (Projection::Background, alongside, "projector alongside"),
        (
            Projection::Deferred,
            burst,
            "read models caught up after each burst",
        ),
        (
            Projection::Inline,
            inline,
            "read models written in each batch's own transaction",
        ),
    ] {
        let gc = group_commit(
            Arc::clone(ledger),
            part,
            opts.submitters,
            raw_side,
            projection,
        )?;
        run.say(&format!(
            "group commit ({how}): {} commands in {} batches (largest {}), {} failed (bad input){}",
            gc.commands,
            gc.batches,
            gc.largest,
            gc.errors,
            example(&gc.first_error),
        ));
        let with_target = backend == "sqlite"
            && matches!(projection, Projection::Background | Projection::Inline);
        run.figure(
            "GC",
            backend,
            events,
            &format!(
                "group commit, {} submitters{sync}, {how}: durable results \
                 (raw = 1 tx/command, measured alongside)",
                opts.submitters
            ),
            gc.ours,
            Some(gc.raw_per_command),
            "commands/s",
            Better::Higher,
            if with_target { "≥ 3× raw" } else { "" },
            with_target.then_some(gc.ours >= 3.0 * gc.raw_per_command),
        );
        run.figure(
            "GC",
            backend,
            events,
            &format!("group commit, {how}: sustained, until the read models have caught up"),
            gc.sustained,
            Some(gc.raw_per_command),
            "commands/s",
            Better::Higher,
            "",
            None,
        );
        run.figure(
            "GC",
            backend,
            events,
            &format!("group commit, {how}: vs raw with the same grouping"),
            gc.ours,
            Some(gc.raw_grouped),
            "commands/s",
            Better::Higher,
            "",
            None,
        );
        if let Some((ours, grouped)) = gc.written.filter(|_| backend == "sqlite") {
            run.figure(
                "GC",
                backend,
                events,
                &format!(
                    "group commit, {how}: bytes handed to write system calls per command \
                     (raw: the same grouping)"
                ),
                ours / 1024.0,
                Some(grouped / 1024.0),
                "KiB/command",
                Better::Lower,
                "",
                None,
            );
        }
    }
    Ok(background)
}

fn p4_sqlite(
    run: &mut Run<'_>,
    ledger: &Ledger,
    source: &rusqlite::Connection,
    events: u64,
    rows: u64,
    with_target: bool,
) -> anyhow::Result<Vec<(QueryKind, Latency, Latency)>> {
    let opts = run.opts;
    let samples = queries::samples(&mut queries::SqliteSource(source), opts.queries, opts.seed)?;
    let mut out = Vec::new();
    for kind in QueryKind::ALL {
        // A warm-up pass for each side, then the timed one.
        queries::time_ledger(ledger, &samples, kind)?;
        queries::time_raw_sqlite(source, &samples, kind)?;
        let ours = queries::time_ledger(ledger, &samples, kind)?;
        let raw = queries::time_raw_sqlite(source, &samples, kind)?;
        out.push((kind, ours, raw));
        let what = format!(
            "{} query at {rows} transactions (median; {:.1} rows)",
            kind.name(),
            ours.mean_rows
        );
        run.figure(
            "P4",
            "sqlite",
            events,
            &what,
            ours.median_ms,
            Some(raw.median_ms),
            "ms",
            Better::Lower,
            "",
            None,
        );
        let what = format!("{} query at {rows} transactions (p99)", kind.name());
        run.figure(
            "P4",
            "sqlite",
            events,
            &what,
            ours.p99_ms,
            Some(raw.p99_ms),
            "ms",
            Better::Lower,
            if with_target { "p99 ≤ 2 ms" } else { "" },
            with_target.then_some(ours.p99_ms <= 2.0),
        );
    }
    Ok(out)
}

/// P4 on a ledger built to hold at least `opts.transactions` rows.
fn p4_dedicated(run: &mut Run<'_>, work: &Path, calibration: &Calibration) -> anyhow::Result<()> {
    let opts = run.opts;
    let target = opts.transactions;
    run.say(&format!(
        "P4: synthesizing a ledger of {target} Transaction Manager rows"
    ));
    let built = build_export(
        opts,
        calibration,
        Target::Rows(target),
        0,
        work.join("export-p4.jsonl"),
    )?;
    let db = work.join("ledger-p4.db");
    remove_db(&db);
    let url = sqlite_url(&db);
    let export = built.export.to_string_lossy().to_string();
    let import = run_child(
        &opts.exe,
        &["child", "import", "--store", &url, "--file", &export],
    )?;
    run.say(&format!(
        "P4: imported {} events in {:.1} s",
        import.events, import.seconds
    ));
    let ledger = Ledger::open(&url)?;
    let source = raw::sqlite::open_existing(&db)?;
    let rows: i64 = source.query_row("SELECT COUNT(*) FROM rm_transactions", [], |r| r.get(0))?;
    p4_sqlite(run, &ledger, &source, import.events, rows as u64, true)?;
    drop(source);
    drop(ledger);
    if let (Some(base), false) = (&opts.postgres, opts.postgres_sizes.is_empty()) {
        run.say("P4: importing the same ledger into PostgreSQL");
        let (url, schema) = pg_schema(base)?;
        let outcome = (|| -> anyhow::Result<()> {
            let import = run_child(
                &opts.exe,
                &["child", "import", "--store", &url, "--file", &export],
            )?;
            let ledger = Ledger::open(&url)?;
            let mut source = postgres::Client::connect(&url, postgres::NoTls)?;
            p4_postgres(run, &ledger, &mut source, import.events)
        })();
        let dropped = provledger_store::postgres::drop_schema(base, &schema);
        outcome?;
        dropped?;
    }
    if !opts.keep {
        remove_db(&db);
        let _ = std::fs::remove_file(&built.export);
    }
    Ok(())
}

/// P4 on PostgreSQL: through the ledger and as bare SQL (no target: the
/// targets are set for SQLite).
fn p4_postgres(
    run: &mut Run<'_>,
    ledger: &Ledger,
    source: &mut postgres::Client,
    events: u64,
) -> anyhow::Result<()> {
    let opts = run.opts;
    let rows: i64 = source
        .query_one("SELECT COUNT(*) FROM rm_transactions", &[])?
        .try_get(0)?;
    let samples = queries::samples(&mut queries::PgSource(source), opts.queries, opts.seed)?;
    for kind in QueryKind::ALL {
        queries::time_ledger(ledger, &samples, kind)?;
        queries::time_raw_pg(source, &samples, kind)?;
        let ours = queries::time_ledger(ledger, &samples, kind)?;
        let raw = queries::time_raw_pg(source, &samples, kind)?;
        let what = format!(
            "{} query at {rows} transactions (median; {:.1} rows)",
            kind.name(),
            ours.mean_rows
        );
        run.figure(
            "P4",
            "postgres",
            events,
            &what,
            ours.median_ms,
            Some(raw.median_ms),
            "ms",
            Better::Lower,
            "",
            None,
        );
        let what = format!("{} query at {rows} transactions (p99)", kind.name());
        run.figure(
            "P4",
            "postgres",
            events,
            &what,
            ours.p99_ms,
            Some(raw.p99_ms),
            "ms",
            Better::Lower,
            "",
            None,
        );
    }
    Ok(())
}

/// A fresh PostgreSQL schema for one ledger: its URL, and the schema
/// name (dropped by [`drop_pg_schema`]).
pub(crate) fn pg_schema(base: &str) -> anyhow::Result<(String, String)> {
    use provledger_store::postgres::PostgresStore;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let schema = format!("bench_{}_{nanos}_{n}", std::process::id());
    PostgresStore::connect_in_schema(base, &schema)?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok((
        format!("{base}{sep}options=-csearch_path%3D{schema}"),
        schema,
    ))
}

fn measure_postgres(
    run: &mut Run<'_>,
    base: &str,
    built: &Built,
    events: u64,
    warmup: usize,
) -> anyhow::Result<()> {
    use provledger_store::postgres::drop_schema;
    let opts = run.opts;
    let (url, schema) = pg_schema(base)?;
    let raw_schema = format!("{schema}_raw");
    let outcome = (|| -> anyhow::Result<()> {
        let mut info_client = postgres::Client::connect(base, postgres::NoTls)?;
        let mut show = |name: &str| -> String {
            info_client
                .query_one(&format!("SHOW {name}"), &[])
                .and_then(|r| r.try_get::<_, String>(0))
                .unwrap_or_else(|_| "?".into())
        };
        run.report.info.postgres = Some(format!(
            "{} (fsync={}, synchronous_commit={}, wal_sync_method={}), same machine, TCP on 127.0.0.1",
            show("server_version"),
            show("fsync"),
            show("synchronous_commit"),
            show("wal_sync_method")
        ));
        let export = built.export.to_string_lossy().to_string();
        let import = run_child(
            &opts.exe,
            &["child", "import", "--store", &url, "--file", &export],
        )?;
        let mut source = postgres::Client::connect(&url, postgres::NoTls)?;
        let mut raw_client = raw::pg::connect(base, &raw_schema)?;
        let (_, raw_time) = raw::pg::copy_all(&mut source, &mut raw_client, IMPORT_BATCH)?;
        let p2 = events as f64 / import.seconds;
        run.figure(
            "P2",
            "postgres",
            events,
            "bulk import (hashes checked, read models updated); raw = COPY",
            p2,
            Some(events as f64 / raw_time.as_secs_f64()),
            "events/s",
            Better::Higher,
            "",
            None,
        );
        let rebuild = run_child(&opts.exe, &["child", "rebuild", "--store", &url])?;
        let (_, replay) = raw::pg::replay(&mut raw_client)?;
        run.figure(
            "P3",
            "postgres",
            events,
            "rebuild every read model",
            rebuild.events as f64 / rebuild.seconds,
            Some(events as f64 / replay.as_secs_f64()),
            "events/s",
            Better::Higher,
            "",
            None,
        );
        let ledger = Ledger::open(&url)?;
        p4_postgres(run, &ledger, &mut source, events)?;
        let commands = live_commands(&built.workload, built.cut, live_needed(opts, warmup))?;
        let inserts = [
            raw::pg::prepare_insert(&mut raw_client, "events")?,
            raw::pg::prepare_insert(&mut raw_client, "events_grouped")?,
        ];
        let mut raw_side = PgRaw {
            source: &mut source,
            target: &mut raw_client,
            inserts,
        };
        let ledger = Arc::new(ledger);
        commands_phase(
            run,
            "postgres",
            &ledger,
            &commands,
            warmup,
            &mut raw_side,
            events,
        )?;
        drop(raw_side);
        raw_client.batch_execute(&format!("DROP SCHEMA IF EXISTS {raw_schema} CASCADE"))?;
        Ok(())
    })();
    let dropped = drop_schema(base, &schema);
    outcome?;
    dropped?;
    Ok(())
}

/// P6: per-unit cost at the largest size over the smallest.
fn p6(run: &mut Run<'_>, results: &[SizeResult]) {
    let (Some(small), Some(large)) = (results.first(), results.last()) else {
        return;
    };
    if results.len() < 2 || large.events <= small.events {
        return;
    }
    let events = large.events;
    let label = format!(
        "per-unit cost at {} / at {} events (1.00 = linear)",
        large.events, small.events
    );
    let growth = |run: &mut Run<'_>, what: &str, ours: f64, raw: Option<f64>| {
        run.figure(
            "P6",
            "sqlite",
            events,
            &format!("{what}: {label}"),
            ours,
            raw,
            "×",
            Better::Lower,
            "≤ 1.25 (linear)",
            Some(ours <= 1.25),
        );
    };
    growth(
        run,
        "P1 time per command",
        small.p1 / large.p1,
        Some(small.p1_raw / large.p1_raw),
    );
    growth(
        run,
        "P2 import time per event",
        small.p2 / large.p2,
        Some(small.p2_raw / large.p2_raw),
    );
    growth(
        run,
        "P3 rebuild time per event",
        small.p3 / large.p3,
        Some(small.p3_raw / large.p3_raw),
    );
    let ratio = large.events as f64 / small.events as f64;
    for ((kind, ours_small, raw_small), (_, ours_large, raw_large)) in
        small.p4.iter().zip(&large.p4)
    {
        // One query's cost, not a per-event cost: linear would be the
        // events ratio; an index lookup should grow like its depth.
        let ours = ours_large.median_ms / ours_small.median_ms;
        run.figure(
            "P6",
            "sqlite",
            events,
            &format!(
                "P4 {} median latency at {} / at {} events ({ratio:.0}× the events)",
                kind.name(),
                large.events,
                small.events
            ),
            ours,
            Some(raw_large.median_ms / raw_small.median_ms),
            "×",
            Better::Lower,
            "≤ events ratio (linear)",
            Some(ours <= ratio),
        );
    }
    run.figure(
        "P6",
        "sqlite",
        events,
        &format!(
            "P5 import peak RSS at {} / at {} events ({ratio:.0}× the events)",
            large.events, small.events
        ),
        large.rss_import / small.rss_import,
        None,
        "×",
        Better::Lower,
        "≤ events ratio (linear)",
        Some(large.rss_import / small.rss_import <= ratio),
    );
    run.figure(
        "P6",
        "sqlite",
        events,
        &format!(
            "P5 rebuild peak RSS at {} / at {} events ({ratio:.0}× the events)",
            large.events, small.events
        ),
        large.rss_rebuild / small.rss_rebuild,
        None,
        "×",
        Better::Lower,
        "≤ events ratio (linear)",
        Some(large.rss_rebuild / small.rss_rebuild <= ratio),
    );
}
