//! The `provledger` command line: raw arguments → validated commands → the
//! ledger → formatted output and an exit status.
//!
//! The command names, options, JSON fields and exit statuses are a contract
//! (DESIGN.md §3, docs/cli.md); scripts depend on them.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use provledger_domain::{
    Actor, Attachment, Command, Context, Email, LineId, OrderId, OrderRequest, OrgId,
    ServicesRequest, SetupCommand, SetupRequest, SubscriptionId, SupportRequestType,
};
use provledger_projections::{
    AsOf, HistoryQuery, LineQuery, TransactionQuery, TransactionStatus, TransactionType,
};
use provledger_store::{redact_url, RecordedEvent};
use sha2::{Digest, Sha256};

use crate::output::{self, Format};
use crate::script::{parse_script, run_script, StepResult};
use crate::setup::SubdomainStatus;
use crate::{
    AppError, CommandOutcome, Ledger, OutcomeStatus, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK,
    EXIT_REFUSED,
};

/// Default store when neither `--store`, `--db` nor `PROVLEDGER_STORE` is given.
pub const DEFAULT_STORE: &str = "sqlite:provledger.db";

/// provledger: an append-only, hash-chained ledger of subscription provisioning.
#[derive(Debug, Parser)]
#[command(
    name = "provledger",
    version,
    about = "provledger: an append-only, hash-chained ledger of subscription provisioning",
    long_about = None
)]
pub struct Cli {
    /// Store URL: sqlite:PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, global = true, env = "PROVLEDGER_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Shorthand for --store sqlite:PATH.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "store")]
    pub db: Option<PathBuf>,
    /// Output format of reads (and of write results).
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub format: Format,
    /// The command.
    #[command(subcommand)]
    pub command: TopCommand,
}

/// Options every write command takes.
#[derive(Debug, Args, Clone)]
pub struct WriteOpts {
    /// The acting user's email.
    #[arg(long = "as", env = "PROVLEDGER_AS", value_name = "EMAIL")]
    pub actor: String,
    /// Business time of the action (RFC 3339, or YYYY-MM-DD for midnight UTC); default now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// A retry with the same key returns the first result and appends nothing.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Create an empty ledger (the store is also created on first use).
    Init,
    /// Orders (R1).
    #[command(subcommand)]
    Order(OrderCmd),
    /// Provisioning contacts (R4).
    #[command(subcommand)]
    Contact(ContactCmd),
    /// Provisioning emails (R3).
    #[command(subcommand)]
    Email(EmailCmd),
    /// Organisations (R5: the Point of No Return).
    #[command(subcommand)]
    Org(OrgCmd),
    /// Support cases (R10).
    #[command(subcommand)]
    Case(CaseCmd),
    /// The setup wizard (R13–R17) and service setup (R18).
    #[command(subcommand)]
    Setup(SetupCmd),
    /// "Provision and start billing" (R18): activate the order's
    /// subscriptions and start billing for every purchased service.
    Provision {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
    /// Enterprise subdomains (R18).
    #[command(subcommand)]
    Subdomain(SubdomainCmd),
    /// Run what is due: R2 emails, R7 closures, R11 escalations. Idempotent.
    Tick {
        /// The time to run at (RFC 3339); default now.
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
    /// Line state (point-in-time with --as-of).
    Lines {
        /// Only this order.
        #[arg(long)]
        order: Option<String>,
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
        /// State as of this time (RFC 3339), replayed from the events.
        #[arg(long, value_name = "TIME", conflicts_with = "as_of_position")]
        as_of: Option<String>,
        /// State as of this global position, replayed from the events.
        #[arg(long, value_name = "POSITION")]
        as_of_position: Option<u64>,
    },
    /// The Transaction Manager (R9).
    Transactions {
        /// Transaction type, e.g. provisioning_email_update.
        #[arg(long = "type", value_name = "TYPE")]
        tx_type: Option<String>,
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
        /// Only this order.
        #[arg(long)]
        order: Option<String>,
        /// success, failed or pending.
        #[arg(long)]
        status: Option<String>,
        /// Submitted at or after (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Submitted at or before (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Every event of an order or a subscription, with position and hash.
    History {
        /// The subscription.
        #[arg(long, required_unless_present = "order", conflicts_with = "order")]
        subscription: Option<String>,
        /// The order.
        #[arg(long)]
        order: Option<String>,
        /// Only events that occurred up to this time (RFC 3339).
        #[arg(long, value_name = "TIME", conflicts_with = "as_of_position")]
        as_of: Option<String>,
        /// Only events up to this global position.
        #[arg(long, value_name = "POSITION")]
        as_of_position: Option<u64>,
    },
    /// Recompute the hash chain and the Merkle tree; report the first broken
    /// position. With --against: also prove the ledger still holds a kept
    /// checkpoint's exact prefix and extends it.
    Verify {
        /// A checkpoint file written by `checkpoint` (needs --pubkey).
        #[arg(long, value_name = "FILE", requires = "pubkey")]
        against: Option<PathBuf>,
        /// The public key (PREFIX.pub) the checkpoint must be signed with.
        #[arg(long, value_name = "FILE", requires = "against")]
        pubkey: Option<PathBuf>,
    },
    /// Create an Ed25519 key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Sign the current tree head {ledger id, clock mode, size, root, head
    /// hash, time} and write it as a small JSON checkpoint to keep elsewhere.
    Checkpoint {
        /// The secret key (PREFIX.key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the checkpoint.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a self-contained evidence bundle for one subscription: every
    /// event of its order, each with an inclusion proof against a signed
    /// checkpoint. Check it offline with `provledger-verify`.
    Evidence {
        /// The subscription.
        #[arg(long)]
        subscription: String,
        /// The secret key (PREFIX.key) that signs the bundle's checkpoint.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the bundle.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the projections: bring every read model up to date (a projection
    /// worker). Several workers may share a database; each event is applied
    /// once, and a worker that dies leaves the last committed checkpoint.
    Project {
        /// Keep following the log, polling for new events.
        #[arg(long)]
        follow: bool,
        /// With --follow: how long to wait when there is nothing new.
        #[arg(long, value_name = "MS", default_value_t = 500)]
        poll_ms: u64,
        /// With --follow: stop once the read models have reached this position.
        #[arg(long, value_name = "POSITION")]
        until_position: Option<u64>,
        /// Events applied per read-model transaction (default 5000).
        #[arg(long, value_name = "EVENTS")]
        batch_size: Option<usize>,
    },
    /// Rebuild every read model from position 0.
    Rebuild,
    /// Write every event as JSON Lines, hashes included.
    Export {
        /// Output file (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Append the events of a JSON Lines export, checking every hash.
    Import {
        /// Input file (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Copy a whole ledger to another store (SQLite ⇄ PostgreSQL), position
    /// for position with hashes preserved, then verify the copy. The target
    /// must be empty.
    Migrate {
        /// Source store URL.
        #[arg(long, value_name = "URL")]
        from: String,
        /// Target store URL (must hold no events).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Run a scenario script (JSON Lines of steps; see docs/cli.md).
    Run {
        /// The script (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Build a ledger from fixtures/ in a fresh store and show the views.
    Demo,
}

/// `order …`
#[derive(Debug, Subcommand)]
pub enum OrderCmd {
    /// Place an order from a JSON file (R1).
    Place {
        /// The order file (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `contact …`
#[derive(Debug, Subcommand)]
pub enum ContactCmd {
    /// Change a line's provisioning contact email (R4).
    Change {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Line id.
        #[arg(long)]
        line: String,
        /// The new provisioning contact email.
        #[arg(long)]
        email: String,
        /// Apply the change to every line of the order.
        #[arg(long)]
        all_lines: bool,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `email …`
#[derive(Debug, Subcommand)]
pub enum EmailCmd {
    /// Resend a line's provisioning email (R3).
    Resend {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Line id.
        #[arg(long)]
        line: String,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `org …`
#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    /// Map the order to an organisation: the Point of No Return (R5).
    Onboard {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Organisation id.
        #[arg(long)]
        org: String,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `case …`
#[derive(Debug, Subcommand)]
pub enum CaseCmd {
    /// Open a support case (R10).
    Open {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Line id.
        #[arg(long)]
        line: String,
        /// resend-provisioning-email or change-provisioning-contact-email.
        #[arg(long = "type", value_name = "TYPE")]
        request_type: String,
        /// Free text.
        #[arg(long)]
        note: Option<String>,
        /// A file to attach (repeatable); its name, size and SHA-256 are recorded.
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<PathBuf>,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `setup …`
#[derive(Debug, Subcommand)]
pub enum SetupCmd {
    /// Record that the setup wizard was started (stops the R11 escalation).
    Start {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
    /// Complete the setup wizard from a file (R13–R17): who sets up, the
    /// partner and customer organisations, the customer administrator, the
    /// confirmations. Onboards the order (PONR), or hands the setup over.
    Complete {
        /// The setup file (`-` for stdin); see docs/cli.md.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
    /// Save the service settings (R18): calling, meeting, enterprise
    /// subdomain (reserved for the organisation).
    Services {
        /// Order id.
        #[arg(long)]
        order: String,
        /// The service settings file (`-` for stdin); see docs/cli.md.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `subdomain …`
#[derive(Debug, Subcommand)]
pub enum SubdomainCmd {
    /// Whether a subdomain is available, taken or invalid (R18).
    Check {
        /// The subdomain, e.g. contoso.
        name: String,
    },
}

/// Parse a time argument: RFC 3339, or a date meaning midnight UTC.
pub fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, AppError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(AppError::BadInput(format!(
        "invalid {name} {raw:?}: write an RFC 3339 time like 2026-12-01T09:30:00Z, or a date like 2026-12-01"
    )))
}

fn read_input(path: &Path) -> Result<String, AppError> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| AppError::io("cannot read standard input", e))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| AppError::io(format!("cannot read {}", path.display()), e))?;
    }
    Ok(text)
}

fn context(write: &WriteOpts) -> Result<Context, AppError> {
    let actor = match Actor::parse(&write.actor)? {
        Actor::System => {
            return Err(AppError::BadInput(
                "--as must be a user's email, not `system`".into(),
            ))
        }
        user => user,
    };
    let at = match &write.at {
        Some(raw) => parse_time("--at", raw)?,
        None => Utc::now(),
    };
    Ok(Context::new(
        actor,
        provledger_store::to_stored_precision(at),
    ))
}

fn attachment(path: &Path) -> Result<Attachment, AppError> {
    let bytes = std::fs::read(path)
        .map_err(|e| AppError::io(format!("cannot read attachment {}", path.display()), e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(Attachment {
        file_name,
        size_bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

/// A progress reporter on stderr, shown only when stderr is a terminal.
fn progress(label: &str) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} {pos} events ({per_sec})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(label.to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// The resolved store URL.
pub fn store_url(cli: &Cli) -> String {
    if let Some(path) = &cli.db {
        format!("sqlite:{}", path.display())
    } else {
        cli.store
            .clone()
            .unwrap_or_else(|| DEFAULT_STORE.to_string())
    }
}

/// Where the CLI writes.
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

fn emit(io: &mut Io<'_>, text: &str) -> Result<(), AppError> {
    io.out
        .write_all(text.as_bytes())
        .map_err(|e| AppError::io("cannot write output", e))
}

fn report_outcome(
    io: &mut Io<'_>,
    format: Format,
    outcome: &CommandOutcome,
) -> Result<i32, AppError> {
    match format {
        Format::Json => emit(io, &output::json(outcome)?)?,
        Format::Csv | Format::Table => {
            let replay = if outcome.replayed {
                " (replayed: idempotency key seen before; nothing appended)"
            } else {
                ""
            };
            if outcome.status == OutcomeStatus::Success {
                emit(
                    io,
                    &format!(
                        "{} success{replay}: {}\n",
                        outcome.transaction_id, outcome.message
                    ),
                )?;
            } else {
                let _ = writeln!(
                    io.err,
                    "{} {}{replay}",
                    outcome.transaction_id, outcome.message
                );
            }
        }
    }
    Ok(if outcome.status == OutcomeStatus::Success {
        EXIT_OK
    } else {
        EXIT_REFUSED
    })
}

fn as_of(time: &Option<String>, position: Option<u64>) -> Result<Option<AsOf>, AppError> {
    Ok(match (time, position) {
        (Some(t), _) => Some(AsOf::Time(parse_time("--as-of", t)?)),
        (None, Some(p)) => Some(AsOf::Position(p)),
        (None, None) => None,
    })
}

fn opt<T>(
    raw: &Option<String>,
    parse: impl Fn(&str) -> Result<T, AppError>,
) -> Result<Option<T>, AppError> {
    raw.as_deref().map(parse).transpose()
}

/// Run a parsed command line; returns the exit status.
pub fn run(cli: Cli, io: &mut Io<'_>) -> Result<i32, AppError> {
    let url = store_url(&cli);
    let format = cli.format;
    match cli.command {
        TopCommand::Demo => {
            return crate::demo::run_demo(cli.store.is_some() || cli.db.is_some(), &url, format, io)
        }
        TopCommand::Migrate { from, to } => {
            let report = migrate(&from, &to)?;
            match format {
                Format::Json => emit(io, &output::json(&report)?)?,
                _ => emit(
                    io,
                    &format!(
                        "migrated {} events from {} to {}; the copy verifies (head hash {})\n",
                        report.events, report.from, report.to, report.head_hash
                    ),
                )?,
            }
            return Ok(EXIT_OK);
        }
        TopCommand::Keygen { out } => return crate::evidence::keygen(&out, format, io),
        TopCommand::Init => {
            let ledger = Ledger::open(&url)?;
            ledger.catch_up()?;
            let head = ledger.store().head()?.map_or(0, |h| h.position);
            emit(io, &format!("ledger ready at {url} ({head} events)\n"))?;
            return Ok(EXIT_OK);
        }
        _ => {}
    }
    let ledger = Ledger::open(&url)?;
    let write = |ledger: &Ledger,
                 io: &mut Io<'_>,
                 order: &str,
                 command: Command,
                 w: &WriteOpts|
     -> Result<i32, AppError> {
        let order_id = OrderId::parse(order)?;
        let ctx = context(w)?;
        let outcome = ledger.execute(&order_id, command, &ctx, w.idempotency_key.as_deref())?;
        report_outcome(io, format, &outcome)
    };
    match cli.command {
        TopCommand::Init
        | TopCommand::Demo
        | TopCommand::Migrate { .. }
        | TopCommand::Keygen { .. } => Ok(EXIT_OK),
        TopCommand::Checkpoint { key, out } => {
            crate::evidence::checkpoint(&ledger, &key, &out, format, io)
        }
        TopCommand::Evidence {
            subscription,
            key,
            out,
        } => crate::evidence::evidence(&ledger, &subscription, &key, &out, format, io),
        TopCommand::Verify {
            against: Some(checkpoint),
            pubkey: Some(pubkey),
        } => {
            let bar = progress("verifying");
            let result = crate::evidence::verify_against(
                &ledger,
                &checkpoint,
                &pubkey,
                &mut |n| bar.set_position(n),
                format,
                io,
            );
            bar.finish_and_clear();
            result
        }
        TopCommand::Order(OrderCmd::Place { file, write: w }) => {
            let text = read_input(&file)?;
            let request: OrderRequest = serde_json::from_str(&text).map_err(|e| {
                AppError::BadInput(format!(
                    "the order file {} is not a valid order: {e}; see docs/cli.md for the format",
                    file.display()
                ))
            })?;
            let order = request.validate()?;
            let order_id = order.order_id.to_string();
            write(&ledger, io, &order_id, Command::PlaceOrder(order), &w)
        }
        TopCommand::Contact(ContactCmd::Change {
            order,
            line,
            email,
            all_lines,
            write: w,
        }) => {
            let command = Command::ChangeContact {
                line_id: LineId::parse(&line)?,
                new_email: Email::parse(&email)?,
                apply_to_all_lines: all_lines,
            };
            write(&ledger, io, &order, command, &w)
        }
        TopCommand::Email(EmailCmd::Resend {
            order,
            line,
            write: w,
        }) => {
            let command = Command::ResendEmail {
                line_id: LineId::parse(&line)?,
            };
            write(&ledger, io, &order, command, &w)
        }
        TopCommand::Org(OrgCmd::Onboard {
            order,
            org,
            write: w,
        }) => {
            let command = Command::OnboardOrg {
                org_id: OrgId::parse(&org)?,
            };
            write(&ledger, io, &order, command, &w)
        }
        TopCommand::Case(CaseCmd::Open {
            order,
            line,
            request_type,
            note,
            attach,
            write: w,
        }) => {
            let attachments = attach
                .iter()
                .map(|p| attachment(p))
                .collect::<Result<Vec<_>, _>>()?;
            let command = Command::OpenSupportCase {
                line_id: LineId::parse(&line)?,
                request_type: SupportRequestType::parse(&request_type)?,
                note,
                attachments,
            };
            write(&ledger, io, &order, command, &w)
        }
        TopCommand::Setup(SetupCmd::Start { order, write: w }) => {
            write(&ledger, io, &order, Command::StartSetup, &w)
        }
        TopCommand::Setup(SetupCmd::Complete { file, write: w }) => {
            let text = read_input(&file)?;
            let request: SetupRequest = serde_json::from_str(&text).map_err(|e| {
                AppError::BadInput(format!(
                    "the setup file {} is not a valid setup: {e}; see docs/cli.md for the format",
                    file.display()
                ))
            })?;
            let setup = request.validate()?;
            let order_id = setup.order_id().clone();
            let ctx = context(&w)?;
            let outcome = ledger.execute_setup(
                &order_id,
                SetupCommand::Setup(setup),
                &ctx,
                w.idempotency_key.as_deref(),
            )?;
            report_outcome(io, format, &outcome)
        }
        TopCommand::Setup(SetupCmd::Services {
            order,
            file,
            write: w,
        }) => {
            let order_id = OrderId::parse(&order)?;
            let text = read_input(&file)?;
            let request: ServicesRequest = serde_json::from_str(&text).map_err(|e| {
                AppError::BadInput(format!(
                    "the services file {} is not valid service settings: {e}; see docs/cli.md for the format",
                    file.display()
                ))
            })?;
            let services = request.validate()?;
            let ctx = context(&w)?;
            let outcome = ledger.execute_setup(
                &order_id,
                SetupCommand::ConfigureServices(services),
                &ctx,
                w.idempotency_key.as_deref(),
            )?;
            report_outcome(io, format, &outcome)
        }
        TopCommand::Provision { order, write: w } => {
            let order_id = OrderId::parse(&order)?;
            let ctx = context(&w)?;
            let outcome = ledger.execute_setup(
                &order_id,
                SetupCommand::Provision,
                &ctx,
                w.idempotency_key.as_deref(),
            )?;
            report_outcome(io, format, &outcome)
        }
        TopCommand::Subdomain(SubdomainCmd::Check { name }) => {
            let check = ledger.check_subdomain(&name)?;
            match format {
                Format::Json => emit(io, &output::json(&check)?)?,
                _ => match check.status {
                    SubdomainStatus::Invalid => {
                        let _ = writeln!(
                            io.err,
                            "error: {}",
                            check.reason.as_deref().unwrap_or("invalid subdomain")
                        );
                    }
                    status => emit(
                        io,
                        &format!(
                            "{}: {}{}\n",
                            check.subdomain,
                            status.as_str(),
                            check
                                .reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        ),
                    )?,
                },
            }
            Ok(if check.status == SubdomainStatus::Invalid {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            })
        }
        TopCommand::Tick { now } => {
            let now = match now {
                Some(raw) => parse_time("--now", &raw)?,
                None => Utc::now(),
            };
            let report = ledger.tick(provledger_store::to_stored_precision(now))?;
            match format {
                Format::Json => emit(io, &output::json(&report)?)?,
                _ => emit(
                    io,
                    &format!(
                        "tick at {}: {} order(s); {} initial email(s) sent, {} line(s) closed, {} escalation(s) raised\n",
                        provledger_store::hash::format_time(&now),
                        report.orders,
                        report.initial_emails_sent,
                        report.lines_closed,
                        report.escalations_raised
                    ),
                )?,
            }
            Ok(EXIT_OK)
        }
        TopCommand::Lines {
            order,
            subscription,
            as_of: t,
            as_of_position,
        } => {
            let query = LineQuery {
                order_id: opt(&order, |s| Ok(OrderId::parse(s)?))?,
                subscription_id: opt(&subscription, |s| Ok(SubscriptionId::parse(s)?))?,
            };
            let rows = ledger.lines(&query, as_of(&t, as_of_position)?)?;
            emit(io, &output::render(&rows, &output::lines_kind(), format)?)?;
            Ok(EXIT_OK)
        }
        TopCommand::Transactions {
            tx_type,
            subscription,
            order,
            status,
            since,
            until,
            limit,
        } => {
            let query = TransactionQuery {
                tx_type: opt(&tx_type, |s| {
                    s.parse::<TransactionType>()
                        .map_err(|e| AppError::BadInput(e.to_string()))
                })?,
                subscription_id: opt(&subscription, |s| Ok(SubscriptionId::parse(s)?))?,
                order_id: opt(&order, |s| Ok(OrderId::parse(s)?))?,
                status: opt(&status, |s| {
                    s.parse::<TransactionStatus>()
                        .map_err(|e| AppError::BadInput(e.to_string()))
                })?,
                since: opt(&since, |s| parse_time("--since", s))?,
                until: opt(&until, |s| parse_time("--until", s))?,
                limit,
            };
            let rows = ledger.transactions(&query)?;
            emit(
                io,
                &output::render(&rows, &output::transactions_kind(), format)?,
            )?;
            Ok(EXIT_OK)
        }
        TopCommand::History {
            subscription,
            order,
            as_of: t,
            as_of_position,
        } => {
            let query = HistoryQuery {
                order_id: opt(&order, |s| Ok(OrderId::parse(s)?))?,
                subscription_id: opt(&subscription, |s| Ok(SubscriptionId::parse(s)?))?,
            };
            let rows = ledger.history(&query, as_of(&t, as_of_position)?)?;
            emit(io, &output::render(&rows, &output::history_kind(), format)?)?;
            Ok(EXIT_OK)
        }
        TopCommand::Verify { .. } => {
            let bar = progress("verifying");
            let report = ledger.verify(&mut |n| bar.set_position(n))?;
            bar.finish_and_clear();
            match format {
                Format::Json => emit(io, &output::json(&report)?)?,
                _ => match &report.first_broken {
                    None => emit(
                        io,
                        &format!(
                            "verified {} events: the hash chain is intact (head hash {})\n",
                            report.events_checked, report.head_hash
                        ),
                    )?,
                    Some(broken) => {
                        let _ = writeln!(
                            io.err,
                            "verification failed: the chain breaks at position {}: {} ({} events before it check out); restore from a verified export",
                            broken.position, broken.reason, report.events_checked
                        );
                    }
                },
            }
            Ok(if report.is_intact() {
                EXIT_OK
            } else {
                EXIT_FAILURE
            })
        }
        TopCommand::Project {
            follow,
            poll_ms,
            until_position,
            batch_size,
        } => {
            let ledger = match batch_size {
                Some(n) => Ledger::from_parts(
                    provledger_store::open(&url)?,
                    provledger_projections::ReadModels::open(&url)?.with_batch_size(n),
                ),
                None => ledger,
            };
            let mut applied = 0u64;
            loop {
                let n = ledger.catch_up()?;
                applied += n;
                let checkpoint = ledger.read_models().checkpoint()?;
                let reached = until_position.is_some_and(|p| checkpoint >= p);
                if !follow || reached {
                    match format {
                        Format::Json => emit(
                            io,
                            &output::json(&serde_json::json!({
                                "events_applied": applied,
                                "checkpoint": checkpoint,
                            }))?,
                        )?,
                        _ => emit(
                            io,
                            &format!(
                                "applied {applied} events; the read models are at position {checkpoint}\n"
                            ),
                        )?,
                    }
                    return Ok(EXIT_OK);
                }
                if n == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(poll_ms));
                }
            }
        }
        TopCommand::Rebuild => {
            let bar = progress("rebuilding");
            let n = ledger.rebuild(&mut |n| bar.set_position(n))?;
            bar.finish_and_clear();
            match format {
                Format::Json => emit(
                    io,
                    &output::json(&serde_json::json!({ "events_replayed": n }))?,
                )?,
                _ => emit(io, &format!("rebuilt every read model from {n} events\n"))?,
            }
            Ok(EXIT_OK)
        }
        TopCommand::Export { out } => {
            let n = export(&ledger, &out, io)?;
            if out != Path::new("-") {
                emit(io, &format!("exported {n} events to {}\n", out.display()))?;
            }
            Ok(EXIT_OK)
        }
        TopCommand::Import { file } => {
            let n = import(&ledger, &file)?;
            emit(io, &format!("imported {n} events; the chain checks out and the read models are up to date\n"))?;
            Ok(EXIT_OK)
        }
        TopCommand::Run { file } => {
            let steps = parse_script(&read_input(&file)?)?;
            let results = run_script(&ledger, &steps)?;
            print_step_results(io, format, &results)?;
            Ok(results
                .iter()
                .map(|r| match r {
                    StepResult::Error { exit_code, .. } => *exit_code,
                    StepResult::Command(o) if o.status == OutcomeStatus::Failed => EXIT_REFUSED,
                    _ => EXIT_OK,
                })
                .max()
                .unwrap_or(EXIT_OK))
        }
    }
}

/// Print the results of a script, one line per step (or JSON).
pub fn print_step_results(
    io: &mut Io<'_>,
    format: Format,
    results: &[StepResult],
) -> Result<(), AppError> {
    if format == Format::Json {
        return emit(io, &output::json(results)?);
    }
    for result in results {
        let line = match result {
            StepResult::Command(o) => format!(
                "{} {}: {}\n",
                o.transaction_id,
                if o.status == OutcomeStatus::Success {
                    "success"
                } else {
                    "failed"
                },
                o.message.strip_prefix("refused: ").unwrap_or(&o.message)
            ),
            StepResult::Tick(t) => format!(
                "tick: {} initial email(s) sent, {} line(s) closed, {} escalation(s) raised\n",
                t.initial_emails_sent, t.lines_closed, t.escalations_raised
            ),
            StepResult::Error { message, .. } => format!("error (nothing written): {message}\n"),
        };
        emit(io, &line)?;
    }
    Ok(())
}

/// Write every event as JSON Lines. Returns how many.
pub fn export(ledger: &Ledger, out: &Path, io: &mut Io<'_>) -> Result<u64, AppError> {
    let mut file;
    let mut buffered_stdout;
    let writer: &mut dyn Write = if out == Path::new("-") {
        buffered_stdout = std::io::BufWriter::new(&mut *io.out);
        &mut buffered_stdout
    } else {
        file = std::io::BufWriter::new(
            std::fs::File::create(out)
                .map_err(|e| AppError::io(format!("cannot create {}", out.display()), e))?,
        );
        &mut file
    };
    let mut n = 0;
    for event in ledger.store().read_all(0)? {
        let event = event?;
        let line = serde_json::to_string(&event).map_err(|e| {
            AppError::BadInput(format!("cannot serialise event {}: {e}", event.position))
        })?;
        writer
            .write_all(line.as_bytes())
            .and_then(|_| writer.write_all(b"\n"))
            .map_err(|e| AppError::io("cannot write the export", e))?;
        n += 1;
    }
    writer
        .flush()
        .map_err(|e| AppError::io("cannot write the export", e))?;
    Ok(n)
}

/// Events per `import_batch` call.
pub const IMPORT_BATCH: usize = 10_000;

/// Append a JSON Lines export, checking every hash. Returns how many events.
///
/// A helper thread reads and parses the next batch of lines while the store
/// checks and writes the current one. Batches before a bad line are kept
/// (each is one transaction); the error names the line.
pub fn import(ledger: &Ledger, file: &Path) -> Result<u64, AppError> {
    let reader: Box<dyn BufRead + Send> = if file == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(file).map_err(
            |e| AppError::io(format!("cannot open {}", file.display()), e),
        )?))
    };
    let bar = progress("importing");
    let mut n = 0u64;
    std::thread::scope(|scope| -> Result<(), AppError> {
        let (batches, parsed) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            let mut batch: Vec<RecordedEvent> = Vec::with_capacity(IMPORT_BATCH);
            for (index, line) in reader.lines().enumerate() {
                let event = line
                    .map_err(|e| AppError::io("cannot read the import file", e))
                    .and_then(|line| parse_import_line(index, &line));
                match event {
                    Ok(None) => {}
                    Ok(Some(event)) => {
                        batch.push(event);
                        if batch.len() == IMPORT_BATCH {
                            let full =
                                std::mem::replace(&mut batch, Vec::with_capacity(IMPORT_BATCH));
                            if batches.send(Ok(full)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        if !batch.is_empty() && batches.send(Ok(batch)).is_err() {
                            return;
                        }
                        let _ = batches.send(Err(e));
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = batches.send(Ok(batch));
            }
        });
        for batch in parsed {
            let batch = batch?;
            if n == 0 {
                let head = ledger.store().head()?.map_or(0, |h| h.position);
                let first = batch.first().map_or(head + 1, |e| e.position);
                if first != head + 1 {
                    return Err(AppError::BadInput(format!(
                        "the file starts at position {first} but the store holds {head} events, so it would continue at position {}; import a full export into an empty store (a new --db path), or a file that continues this ledger",
                        head + 1
                    )));
                }
            }
            ledger.store().import_batch(&batch)?;
            n += batch.len() as u64;
            bar.set_position(n);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let bar = progress("projecting");
    ledger.catch_up_bulk(&mut |done| bar.set_position(done))?;
    bar.finish_and_clear();
    Ok(n)
}

/// One line of an import file: `None` for a blank line.
fn parse_import_line(index: usize, line: &str) -> Result<Option<RecordedEvent>, AppError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(line).map(Some).map_err(|e| {
        AppError::BadInput(format!(
            "import line {}: {e}; each line must be one event as written by `provledger export`",
            index + 1
        ))
    })
}

/// What `migrate` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrateReport {
    /// Source URL (without credentials).
    pub from: String,
    /// Target URL (without credentials).
    pub to: String,
    /// Events copied.
    pub events: u64,
    /// Hash of the last event, identical in both stores.
    pub head_hash: String,
}

/// Copy every event of `from` into the empty store `to`, preserving
/// positions and hashes, then verify the copy and build its read models.
pub fn migrate(from: &str, to: &str) -> Result<MigrateReport, AppError> {
    let source = Ledger::open(from)?;
    let target = Ledger::open(to)?;
    if let Some(head) = target.store().head()? {
        return Err(AppError::BadInput(format!(
            "the target {} already holds {} events; migrate only into an empty store",
            redact_url(to),
            head.position
        )));
    }
    let bar = progress("migrating");
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut copied = 0u64;
    for event in source.store().read_all(0)? {
        batch.push(event?);
        if batch.len() == IMPORT_BATCH {
            target.store().import_batch(&batch)?;
            copied += batch.len() as u64;
            bar.set_position(copied);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        target.store().import_batch(&batch)?;
        copied += batch.len() as u64;
    }
    bar.finish_and_clear();
    let report = target.verify(&mut |_| {})?;
    if let Some(broken) = report.first_broken {
        return Err(AppError::VerificationFailed {
            position: broken.position,
            reason: broken.reason,
        });
    }
    let source_head = source.store().head()?.map(|h| h.hash).unwrap_or_default();
    if report.events_checked != copied || (copied > 0 && report.head_hash != source_head) {
        return Err(AppError::VerificationFailed {
            position: report.events_checked + 1,
            reason: format!(
                "the copy holds {} events ending in hash {} but the source ends in {} after {copied} events (the source changed during the migration?)",
                report.events_checked, report.head_hash, source_head
            ),
        });
    }
    let bar = progress("projecting");
    target.catch_up_bulk(&mut |done| bar.set_position(done))?;
    bar.finish_and_clear();
    Ok(MigrateReport {
        from: redact_url(from),
        to: redact_url(to),
        events: copied,
        head_hash: report.head_hash,
    })
}
