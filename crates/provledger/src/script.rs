//! Scenario scripts: a JSON Lines file of steps (place an order, change a
//! contact, tick, …) run against a ledger.
//!
//! One format serves `demo` (fixtures/demo.jsonl), `provledger run` and the
//! data-driven scenario tests, so adding a scenario is adding a file. Each
//! line is one object with a `step` field; see docs/cli.md for the format.

use chrono::{DateTime, Utc};
use provledger_domain::{
    Actor, Command, Context, LedgerCommand, OrderId, OrderRequest, ServicesRequest, SetupCommand,
    SetupRequest,
};
use serde::{Deserialize, Serialize};

use crate::input::{self, Targeted};
use crate::shell::{Origin, RequestedTime, Submission};
use crate::{AppError, CommandOutcome, Ledger, TickReport};

/// One step of a scenario script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// R1: place an order.
    PlaceOrder {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// The order file.
        order: OrderRequest,
    },
    /// R4: change a line's provisioning contact.
    ChangeContact {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// Order id.
        order: String,
        /// Line id.
        line: String,
        /// New contact.
        email: String,
        /// Apply to all lines.
        #[serde(default)]
        all_lines: bool,
    },
    /// R3: resend the provisioning email.
    ResendEmail {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// Order id.
        order: String,
        /// Line id.
        line: String,
    },
    /// R5: onboard the order to an organisation.
    OnboardOrg {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// Order id.
        order: String,
        /// Organisation id.
        org: String,
    },
    /// R10: open a support case.
    OpenCase {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// Order id.
        order: String,
        /// Line id.
        line: String,
        /// `resend-provisioning-email` or `change-provisioning-contact-email`.
        #[serde(rename = "type")]
        request_type: String,
        /// Free text.
        #[serde(default)]
        note: Option<String>,
    },
    /// R13: start the setup wizard.
    ResolveCase {
        /// Acting user (support).
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// The case id, e.g. WO-1001-C1.
        case: String,
        /// resent, contact-changed or rejected.
        outcome: String,
        /// Free text.
        #[serde(default)]
        note: Option<String>,
    },
    /// R13: the setup wizard was started.
    StartSetup {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// Order id.
        order: String,
    },
    /// R13–R17: complete (or hand over) the setup wizard.
    CompleteSetup {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// The setup file (its `order_id` names the order).
        setup: SetupRequest,
    },
    /// R18: save the service settings.
    ConfigureServices {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// Order id.
        order: String,
        /// The service settings file.
        services: ServicesRequest,
    },
    /// R18: provision and start billing.
    Provision {
        /// Acting user.
        #[serde(rename = "as")]
        actor: String,
        /// Business time.
        at: DateTime<Utc>,
        /// Order id.
        order: String,
    },
    /// Run what is due at `now` (R2, R7, R11).
    Tick {
        /// The time to run at.
        now: DateTime<Utc>,
    },
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepResult {
    /// A command's outcome (success or recorded refusal).
    Command(CommandOutcome),
    /// A tick's report.
    Tick(TickReport),
    /// Bad input: nothing was written.
    Error {
        /// The error message.
        message: String,
        /// The CLI exit status it would have.
        exit_code: i32,
    },
}

/// A parsed setup step: the order it targets, its multi-stream command and
/// context (run with [`Ledger::execute_setup`]).
pub struct PreparedSetup {
    /// Target order.
    pub order_id: OrderId,
    /// The command.
    pub command: SetupCommand,
    /// Actor and time.
    pub context: Context,
}

/// A parsed step: the order it targets, its command and context.
pub struct PreparedCommand {
    /// Target order.
    pub order_id: OrderId,
    /// The command.
    pub command: Command,
    /// Actor and time.
    pub context: Context,
}

fn actor(raw: &str) -> Result<Actor, AppError> {
    match Actor::parse(raw)? {
        Actor::System => Err(AppError::BadInput(
            "a command must be done by a user: give an email, not `system`".into(),
        )),
        user => Ok(user),
    }
}

impl Step {
    /// The step's acting user and time, and its validated command with the
    /// order it targets (through [`crate::input`], as the CLI and HTTP do);
    /// `Ok(None)` for a tick.
    pub fn targeted(&self) -> Result<Option<(Actor, DateTime<Utc>, Targeted)>, AppError> {
        let (a, at, targeted) = match self {
            Step::Tick { .. } => return Ok(None),
            Step::PlaceOrder {
                actor: a,
                at,
                order,
            } => (a, at, input::place_order(order)?),
            Step::ChangeContact {
                actor: a,
                at,
                order,
                line,
                email,
                all_lines,
            } => (
                a,
                at,
                input::change_contact(order, line, email, *all_lines)?,
            ),
            Step::ResendEmail {
                actor: a,
                at,
                order,
                line,
            } => (a, at, input::resend_email(order, line)?),
            Step::OnboardOrg {
                actor: a,
                at,
                order,
                org,
            } => (a, at, input::onboard_org(order, org)?),
            Step::OpenCase {
                actor: a,
                at,
                order,
                line,
                request_type,
                note,
            } => (
                a,
                at,
                input::open_case(order, line, request_type, note.clone(), Vec::new())?,
            ),
            Step::ResolveCase {
                actor: a,
                at,
                case,
                outcome,
                note,
            } => (a, at, input::resolve_case(case, outcome, note.clone())?),
            Step::StartSetup {
                actor: a,
                at,
                order,
            } => (a, at, input::start_setup(order)?),
            Step::CompleteSetup {
                actor: a,
                at,
                setup,
            } => (a, at, input::complete_setup(setup)?),
            Step::ConfigureServices {
                actor: a,
                at,
                order,
                services,
            } => (a, at, input::configure_services(order, services)?),
            Step::Provision {
                actor: a,
                at,
                order,
            } => (a, at, input::provision(order)?),
        };
        Ok(Some((actor(a)?, *at, targeted)))
    }

    /// Validate a setup step (`complete_setup`, `configure_services`,
    /// `provision`) into its order, command and context. Returns `Ok(None)`
    /// for every other step.
    pub fn prepare_setup(&self) -> Result<Option<PreparedSetup>, AppError> {
        Ok(match self.targeted()? {
            Some((actor, at, (order_id, LedgerCommand::Setup(command)))) => Some(PreparedSetup {
                order_id,
                command,
                context: Context::new(actor, at),
            }),
            _ => None,
        })
    }

    /// Validate an order step into its order, command and context.
    /// Returns `Ok(None)` for a tick and for the setup steps (see
    /// [`Step::prepare_setup`]).
    pub fn prepare(&self) -> Result<Option<PreparedCommand>, AppError> {
        Ok(match self.targeted()? {
            Some((actor, at, (order_id, LedgerCommand::Order(command)))) => Some(PreparedCommand {
                order_id,
                command,
                context: Context::new(actor, at),
            }),
            _ => None,
        })
    }

    /// Run this step against a (simulated) ledger, through the one write
    /// path: its `at` is the caller's time, which a live ledger refuses.
    pub fn run(&self, ledger: &Ledger) -> Result<StepResult, AppError> {
        if let Step::Tick { now } = self {
            let now = ledger.command_time(Some(RequestedTime {
                at: *now,
                option: "a tick step's `now`",
            }))?;
            return Ok(StepResult::Tick(ledger.tick(now)?));
        }
        let Some((actor, at, (order_id, command))) = self.targeted()? else {
            return Err(AppError::internal("a command step prepared to nothing"));
        };
        let outcome = ledger.submit(
            Submission::new(order_id, command, actor, Origin::cli()).at(at, "a step's `at`"),
        )?;
        Ok(StepResult::Command(outcome))
    }
}

/// Parse a JSON Lines script; blank lines and lines starting with `#` are skipped.
pub fn parse_script(text: &str) -> Result<Vec<Step>, AppError> {
    let mut steps = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let step: Step = serde_json::from_str(trimmed).map_err(|e| {
            AppError::BadInput(format!(
                "script line {}: {e}; each line must be one JSON object with a \"step\" field (see docs/cli.md)",
                index + 1
            ))
        })?;
        steps.push(step);
    }
    Ok(steps)
}

/// Run every step in order. Bad input in a step is reported in its result and
/// the script goes on (nothing was written for that step); storage failures stop it.
pub fn run_script(ledger: &Ledger, steps: &[Step]) -> Result<Vec<StepResult>, AppError> {
    let mut results = Vec::with_capacity(steps.len());
    for step in steps {
        match step.run(ledger) {
            Ok(result) => results.push(result),
            Err(e) if e.exit_code() == crate::EXIT_BAD_INPUT => results.push(StepResult::Error {
                message: e.to_string(),
                exit_code: e.exit_code(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(results)
}
