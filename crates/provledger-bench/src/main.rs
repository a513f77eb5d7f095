//! `provledger-bench`: generate workloads and run the benchmark harness.
//!
//! This binary exists so that the whole performance story is one documented
//! command: `cargo run --release -p provledger-bench -- run`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use provledger_bench::measure::{self, RunOptions};
use provledger_bench::{Workload, WorkloadSpec};

/// The allocator of the `provledger` binary, so that the phases measured in
/// child processes of this one (import, rebuild) run as they do there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmark harness of provledger (docs/performance.md).
#[derive(Debug, Parser)]
#[command(name = "provledger-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Write a generated workload as a scenario script (`provledger run --file`).
    Generate {
        /// Number of orders.
        #[arg(long, default_value_t = 100)]
        orders: u32,
        /// Seed: the same seed gives the same workload.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Orders placed per hour of business time.
        #[arg(long, default_value_t = 20)]
        orders_per_hour: u32,
        /// Hours of business time between scheduler ticks.
        #[arg(long, default_value_t = 6)]
        tick_every_hours: u32,
        /// Output file (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Measure P1–P6 and group commit against the raw baselines.
    Run {
        /// Ledger sizes in events, comma-separated.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<u64>>,
        /// Build a ledger of at least this many Transaction Manager rows for
        /// P4 (0: use the largest ledger).
        #[arg(long)]
        transactions: Option<u64>,
        /// Commands timed for P1.
        #[arg(long)]
        p1_commands: Option<usize>,
        /// Commands timed for group commit.
        #[arg(long)]
        gc_commands: Option<usize>,
        /// Concurrent submitters for group commit.
        #[arg(long)]
        submitters: Option<usize>,
        /// Queries timed per kind for P4.
        #[arg(long)]
        queries: Option<usize>,
        /// Orders in the sequential scenario script (0: skip it).
        #[arg(long)]
        scenario_orders: Option<u32>,
        /// Workload seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Also measure PostgreSQL at this URL (postgres://USER@HOST:PORT/DB).
        #[arg(long, env = "PROVLEDGER_BENCH_POSTGRES", value_name = "URL")]
        postgres: Option<String>,
        /// Ledger sizes measured on PostgreSQL, comma-separated.
        #[arg(long, value_delimiter = ',')]
        postgres_events: Option<Vec<u64>>,
        /// A tiny run that only proves the harness works (CI).
        #[arg(long)]
        quick: bool,
        /// Where ledgers and exports go (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Keep the ledgers and exports.
        #[arg(long)]
        keep: bool,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Load check of `provledger serve`: concurrent clients on loopback
    /// mixing reads and writes; SQLite with one server, or PostgreSQL with
    /// two servers on one ledger (docs/performance.md).
    ServeLoad {
        /// Concurrent clients.
        #[arg(long, default_value_t = 200)]
        clients: usize,
        /// Seconds the clients run.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Orders seeded (two lines each).
        #[arg(long, default_value_t = 200)]
        orders: usize,
        /// Percentage of requests that are writes.
        #[arg(long, default_value_t = 20)]
        write_percent: u32,
        /// Run on PostgreSQL at this URL (two servers) instead of SQLite.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Internal: one measured phase in a fresh process (for peak RSS).
    #[command(hide = true, subcommand)]
    Child(Child),
}

#[derive(Debug, Subcommand)]
enum Child {
    Import {
        #[arg(long)]
        store: String,
        #[arg(long)]
        file: PathBuf,
    },
    Rebuild {
        #[arg(long)]
        store: String,
    },
    Script {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provledger-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Top::Generate {
            orders,
            seed,
            orders_per_hour,
            tick_every_hours,
            out,
        } => {
            let spec = WorkloadSpec {
                orders_per_hour,
                tick_every_hours,
                ..WorkloadSpec::new(orders, seed)
            };
            let workload = Workload::generate(spec);
            let n = if out.as_os_str() == "-" {
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                let n = workload.write_script(&mut w)?;
                w.flush()?;
                n
            } else {
                let mut w = std::io::BufWriter::new(
                    std::fs::File::create(&out)
                        .with_context(|| format!("cannot create {}", out.display()))?,
                );
                let n = workload.write_script(&mut w)?;
                w.flush()?;
                n
            };
            eprintln!("wrote {n} steps for {orders} orders (seed {seed})");
            Ok(())
        }
        Top::Run {
            events,
            transactions,
            p1_commands,
            gc_commands,
            submitters,
            queries,
            scenario_orders,
            seed,
            postgres,
            postgres_events,
            quick,
            work_dir,
            keep,
            json,
        } => {
            let exe = std::env::current_exe().context("cannot find the harness executable")?;
            let base = if quick {
                RunOptions::quick(exe)
            } else {
                RunOptions::full(exe)
            };
            let opts = RunOptions {
                sizes: events.unwrap_or(base.sizes.clone()),
                transactions: transactions.unwrap_or(base.transactions),
                p1_commands: p1_commands.unwrap_or(base.p1_commands),
                gc_commands: gc_commands.unwrap_or(base.gc_commands),
                submitters: submitters.unwrap_or(base.submitters),
                queries: queries.unwrap_or(base.queries),
                scenario_orders: scenario_orders.unwrap_or(base.scenario_orders),
                seed: seed.unwrap_or(base.seed),
                postgres,
                postgres_sizes: postgres_events.unwrap_or(base.postgres_sizes.clone()),
                work_dir,
                keep,
                command_line: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
                ..base
            };
            let mut stderr = std::io::stderr();
            let report = measure::run(&opts, &mut stderr)?;
            let mut stdout = std::io::stdout();
            writeln!(stdout, "\n{}\n{}", report.header(), report.table())?;
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
        Top::ServeLoad {
            clients,
            seconds,
            orders,
            write_percent,
            postgres,
            json,
        } => {
            let opts = provledger_bench::http_load::LoadOptions {
                clients: clients.max(1),
                duration: std::time::Duration::from_secs(seconds.max(1)),
                orders: orders.max(1),
                write_percent: write_percent.min(100),
                postgres,
            };
            let report = provledger_bench::http_load::run(&opts, &mut std::io::stderr())?;
            println!(
                "{}\n{}",
                provledger_bench::http_load::LoadReport::header(),
                report.row()
            );
            println!(
                "statuses: {:?}; transport errors: {}",
                report.statuses, report.transport_errors
            );
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
        Top::Child(child) => {
            let line = match child {
                Child::Import { store, file } => {
                    serde_json::to_string(&measure::child_import(&store, &file)?)?
                }
                Child::Rebuild { store } => {
                    serde_json::to_string(&measure::child_rebuild(&store)?)?
                }
                Child::Script { db, file } => {
                    serde_json::to_string(&provledger_bench::scenario::child_script(&db, &file)?)?
                }
            };
            println!("{line}");
            Ok(())
        }
    }
}
