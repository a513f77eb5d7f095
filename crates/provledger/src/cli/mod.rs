//! The `provledger` command line: raw arguments → validated commands → the
//! ledger → formatted output and an exit status.
//!
//! The command names, options, JSON fields and exit statuses are a contract
//! (DESIGN.md §3, docs/cli.md); scripts depend on them.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use provledger_domain::{
    Actor, Attachment, ClockMode, LedgerCommand, OrderId, OrderRequest, ServicesRequest,
    SetupRequest, SubscriptionId,
};
use provledger_projections::{
    AsOf, HistoryQuery, LineQuery, TransactionQuery, TransactionStatus, TransactionType,
};
use provledger_store::{redact_url, OpenMode};

use crate::input::{self, Targeted};
use crate::output::{self, progress, Format};
use crate::script::{parse_script, run_script, StepResult};
use crate::setup::SubdomainStatus;
use crate::shell::{Origin, RequestedTime, Submission};
use crate::transfer::{export_to, import, migrate};
use crate::{
    AppError, CommandOutcome, Ledger, OutcomeStatus, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK,
    EXIT_REFUSED,
};

mod args;

pub use args::*;

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
    crate::bounded::read_input(path)
}

/// The submission of `command` on `order` with the write options: the
/// operator acts for `--as` through the CLI, at `--at` if given (which
/// only a simulated ledger accepts).
fn submission(
    order: &OrderId,
    command: impl Into<LedgerCommand>,
    write: &WriteOpts,
) -> Result<Submission, AppError> {
    let actor = match Actor::parse(&write.actor)? {
        Actor::System => {
            return Err(AppError::BadInput(
                "--as must be a user's email, not `system`".into(),
            ))
        }
        user => user,
    };
    let mut submission = Submission::new(order.clone(), command, actor, Origin::cli())
        .with_key(write.idempotency_key.clone());
    if let Some(raw) = &write.at {
        submission = submission.at(parse_time("--at", raw)?, "--at");
    }
    Ok(submission)
}

fn attachment(path: &Path) -> Result<Attachment, AppError> {
    let (file_name, size_bytes, sha256) = crate::bounded::attachment(path)?;
    Ok(Attachment {
        file_name,
        size_bytes,
        sha256,
    })
}

/// The resolved store URL: `--db`, else `--store`, else `PROVLEDGER_STORE`,
/// else the default (an explicit flag wins over the environment).
pub fn store_url(cli: &Cli) -> String {
    if let Some(path) = &cli.db {
        format!("sqlite:{}", path.display())
    } else if let Some(store) = &cli.store {
        store.clone()
    } else {
        std::env::var("PROVLEDGER_STORE")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_STORE.to_string())
    }
}

/// How a command opens the ledger: only `init` (and `demo`, which builds a
/// fresh one) creates; reads open read-only and write nothing.
pub fn open_mode(command: &TopCommand) -> OpenMode {
    match command {
        TopCommand::Init { .. } | TopCommand::Demo => OpenMode::Create,
        TopCommand::Lines { .. }
        | TopCommand::Transactions { .. }
        | TopCommand::History { .. }
        | TopCommand::Verify { .. }
        | TopCommand::Checkpoint { .. }
        | TopCommand::Evidence { .. }
        | TopCommand::Export { .. }
        | TopCommand::Subdomain(_) => OpenMode::ReadOnly,
        _ => OpenMode::ReadWrite,
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

/// On a read-only ledger whose read models lag the log, say so on stderr
/// (views that replay the log are exact anyway; the Transaction Manager
/// shows the read models as they stand).
fn report_lag(ledger: &Ledger, io: &mut Io<'_>) -> Result<(), AppError> {
    if ledger.is_read_only() {
        let behind = ledger.lag()?;
        if behind > 0 {
            let _ = writeln!(
                io.err,
                "note: the read models are {behind} events behind the log, so the last {behind} events are not shown; run `provledger project` to bring them up to date"
            );
        }
    }
    Ok(())
}

/// Run a parsed command line; returns the exit status.
pub fn run(cli: Cli, io: &mut Io<'_>) -> Result<i32, AppError> {
    let url = store_url(&cli);
    let format = cli.format;
    match cli.command {
        TopCommand::Demo => {
            let explicit = cli.store.is_some()
                || cli.db.is_some()
                || std::env::var("PROVLEDGER_STORE").is_ok_and(|s| !s.trim().is_empty());
            return crate::demo::run_demo(explicit, &url, format, io);
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
        TopCommand::Serve(args) => return crate::http::run_serve(&url, &args),
        TopCommand::Token(cmd) => return crate::http::run_token(&url, format, &cmd, io),
        TopCommand::Keygen { out } => return crate::evidence::keygen(&out, format, io),
        TopCommand::Init { clock, for_import } => {
            let ledger = Ledger::open_with(&url, OpenMode::Create)?;
            let head = ledger.store().head()?.map_or(0, |h| h.position);
            if for_import {
                if head > 0 {
                    return Err(AppError::BadInput(format!(
                        "{} already holds {head} events; `init --for-import` makes an empty ledger for an import — give a new path",
                        redact_url(&url)
                    )));
                }
                emit(
                    io,
                    &format!(
                        "empty ledger ready at {} for `provledger import`: the export's first event brings its clock mode\n",
                        redact_url(&url)
                    ),
                )?;
                return Ok(EXIT_OK);
            }
            let clock = ledger.initialise(ClockMode::parse(&clock)?)?;
            ledger.catch_up()?;
            let head = ledger.store().head()?.map_or(0, |h| h.position);
            emit(
                io,
                &format!(
                    "ledger ready at {} ({head} events; {clock} clock)\n",
                    redact_url(&url)
                ),
            )?;
            return Ok(EXIT_OK);
        }
        _ => {}
    }
    let ledger = Ledger::open_with(&url, open_mode(&cli.command))?;
    let clock = ledger.clock()?;
    let write = |io: &mut Io<'_>, (order_id, command): Targeted, w: &WriteOpts| {
        let outcome = ledger.submit(submission(&order_id, command, w)?)?;
        report_outcome(io, format, &outcome)
    };
    match cli.command {
        TopCommand::Init { .. }
        | TopCommand::Demo
        | TopCommand::Migrate { .. }
        | TopCommand::Serve(_)
        | TopCommand::Token(_)
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
            write(io, input::place_order(&request)?, &w)
        }
        TopCommand::Contact(ContactCmd::Change {
            order,
            line,
            email,
            all_lines,
            write: w,
        }) => write(
            io,
            input::change_contact(&order, &line, &email, all_lines)?,
            &w,
        ),
        TopCommand::Email(EmailCmd::Resend {
            order,
            line,
            write: w,
        }) => write(io, input::resend_email(&order, &line)?, &w),
        TopCommand::Org(OrgCmd::Onboard {
            order,
            org,
            write: w,
        }) => write(io, input::onboard_org(&order, &org)?, &w),
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
            write(
                io,
                input::open_case(&order, &line, &request_type, note, attachments)?,
                &w,
            )
        }
        TopCommand::Case(CaseCmd::Resolve {
            case_id,
            outcome,
            note,
            write: w,
        }) => write(io, input::resolve_case(&case_id, &outcome, note)?, &w),
        TopCommand::Setup(SetupCmd::Start { order, write: w }) => {
            write(io, input::start_setup(&order)?, &w)
        }
        TopCommand::Setup(SetupCmd::Complete { file, write: w }) => {
            let text = read_input(&file)?;
            let request: SetupRequest = serde_json::from_str(&text).map_err(|e| {
                AppError::BadInput(format!(
                    "the setup file {} is not a valid setup: {e}; see docs/cli.md for the format",
                    file.display()
                ))
            })?;
            write(io, input::complete_setup(&request)?, &w)
        }
        TopCommand::Setup(SetupCmd::Services {
            order,
            file,
            write: w,
        }) => {
            let text = read_input(&file)?;
            let request: ServicesRequest = serde_json::from_str(&text).map_err(|e| {
                AppError::BadInput(format!(
                    "the services file {} is not valid service settings: {e}; see docs/cli.md for the format",
                    file.display()
                ))
            })?;
            write(io, input::configure_services(&order, &request)?, &w)
        }
        TopCommand::Provision { order, write: w } => write(io, input::provision(&order)?, &w),
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
            let requested = match now {
                Some(raw) => Some(RequestedTime {
                    at: parse_time("--now", &raw)?,
                    option: "--now",
                }),
                None => None,
            };
            let now = ledger.command_time(requested)?;
            let report = ledger.tick(now)?;
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
            emit(
                io,
                &output::render_view(&rows, &output::lines_kind(), format, Some(clock))?,
            )?;
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
            report_lag(&ledger, io)?;
            emit(
                io,
                &output::render_view(&rows, &output::transactions_kind(), format, Some(clock))?,
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
            emit(
                io,
                &output::render_view(&rows, &output::history_kind(), format, Some(clock))?,
            )?;
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
                    provledger_store::open_with_mode(&url, OpenMode::ReadWrite)?,
                    provledger_projections::ReadModels::open_with_mode(&url, OpenMode::ReadWrite)?
                        .with_batch_size(n),
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
        TopCommand::Export { out, force } => {
            let n = export_to(&ledger, &url, &out, force, &mut *io.out)?;
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
