//! Every command the ledger takes, decided through one entry point.
//!
//! A [`LedgerCommand`] is either an order command ([`Command`], decided by
//! [`crate::decide`] on one order stream) or a setup command
//! ([`SetupCommand`], decided by [`crate::decide_setup`] across order,
//! organisation and reservation streams). Placing an order also claims
//! reservation streams — its order id (unique without regard to case) and
//! each line's subscription id (one line in the whole ledger) — so the shell
//! treats every command alike: ask [`command_needs`] which streams to load,
//! fold them into a [`SetupView`], [`decide_command`], and append the
//! per-stream events of the [`SetupDecision`] at the versions read. Two
//! racing placements of the same id cannot both be written: the store
//! accepts one append and refuses the other with a version conflict, whose
//! re-decision finds the id taken.

use crate::{
    decide, decide_setup, due_events, setup_needs, Actor, Command, Context, DomainError, Event,
    LineId, OrderId, OrderState, RefusalCode, RefusedAction, ReservationEvent, ReservationKey,
    Role, SetupCommand, SetupDecision, SetupNeeds, SetupView, ValidSetup, WriteKind,
};

/// A command against one order, of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerCommand {
    /// A command on the order's own stream (R1–R10, R13's start).
    Order(Command),
    /// A setup command (R13–R18) that also writes organisation and
    /// reservation streams.
    Setup(SetupCommand),
}

impl LedgerCommand {
    /// Short name for messages and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            LedgerCommand::Order(c) => c.name(),
            LedgerCommand::Setup(c) => c.name(),
        }
    }

    /// True for the command that creates the order.
    pub fn places_order(&self) -> bool {
        matches!(self, LedgerCommand::Order(Command::PlaceOrder(_)))
    }

    /// The kind of write, as roles are granted it (DESIGN.md §2).
    pub fn write_kind(&self) -> WriteKind {
        match self {
            LedgerCommand::Order(Command::PlaceOrder(_)) => WriteKind::PlaceOrder,
            LedgerCommand::Order(Command::ChangeContact { .. } | Command::ResendEmail { .. }) => {
                WriteKind::LineAction
            }
            LedgerCommand::Order(
                Command::OpenSupportCase { .. } | Command::ResolveSupportCase { .. },
            ) => WriteKind::SupportCase,
            LedgerCommand::Order(Command::OnboardOrg { .. } | Command::StartSetup)
            | LedgerCommand::Setup(_) => WriteKind::Setup,
        }
    }

    /// What a refusal of this command records as attempted (`None` for
    /// placing an order, which has no order to record it on).
    pub fn refused_action(&self) -> Option<RefusedAction> {
        Some(match self {
            LedgerCommand::Order(command) => match command {
                Command::PlaceOrder(_) => return None,
                Command::ChangeContact { .. } => RefusedAction::ChangeContact,
                Command::ResendEmail { .. } => RefusedAction::ResendEmail,
                Command::OnboardOrg { .. } => RefusedAction::OnboardOrg,
                Command::OpenSupportCase { .. } => RefusedAction::OpenSupportCase,
                Command::ResolveSupportCase { .. } => RefusedAction::ResolveSupportCase,
                Command::StartSetup => RefusedAction::StartSetup,
            },
            LedgerCommand::Setup(command) => match command {
                SetupCommand::Setup(ValidSetup::Complete { .. } | ValidSetup::HandOver { .. }) => {
                    RefusedAction::CompleteSetup
                }
                SetupCommand::ConfigureServices(_) => RefusedAction::ConfigureServices,
                SetupCommand::Provision => RefusedAction::Provision,
            },
        })
    }

    /// The line the command is about, if it is about one.
    fn line_id(&self, order: &OrderState) -> Option<LineId> {
        match self {
            LedgerCommand::Order(
                Command::ChangeContact { line_id, .. }
                | Command::ResendEmail { line_id }
                | Command::OpenSupportCase { line_id, .. },
            ) => Some(line_id.clone()),
            LedgerCommand::Order(Command::ResolveSupportCase { case_id, .. }) => order
                .order
                .as_ref()
                .and_then(|o| o.cases.iter().find(|c| &c.case_id == case_id))
                .map(|c| c.line_id.clone()),
            _ => None,
        }
    }
}

/// When `role` may not submit `command` at all (an auditor writes nothing;
/// support only opens and resolves cases), the events that record the
/// attempt on the order (R12): the scheduled catch-up due at `ctx.at`, then
/// one `CommandRefused` saying which role may not. `None` when the role may
/// (R6 and the rules then decide), or when there is no order to record it on.
pub fn refuse_for_role(
    order: &OrderState,
    command: &LedgerCommand,
    role: Role,
    ctx: &Context,
) -> Option<Vec<Event>> {
    if role.may(command.write_kind()) || order.order.is_none() {
        return None;
    }
    let action = command.refused_action()?;
    let mut events = due_events(order, ctx.at);
    events.push(Event::CommandRefused {
        at: ctx.at,
        action,
        line_id: command.line_id(order),
        code: RefusalCode::NoAccess,
        reason: format!(
            "{} has the role {role}, which may not do this; ask a user with access to the order, or an operator",
            ctx.actor
        ),
        requested_email: None,
        applied_to_all_lines: false,
    });
    Some(events)
}

impl From<Command> for LedgerCommand {
    fn from(command: Command) -> Self {
        LedgerCommand::Order(command)
    }
}

impl From<SetupCommand> for LedgerCommand {
    fn from(command: SetupCommand) -> Self {
        LedgerCommand::Setup(command)
    }
}

/// Which streams besides the order's `command` needs loaded. Depends on the
/// order's state, so the shell asks again on every attempt.
pub fn command_needs(
    command: &LedgerCommand,
    order: &OrderState,
    actor: &Actor,
) -> Result<SetupNeeds, DomainError> {
    match command {
        LedgerCommand::Order(Command::PlaceOrder(placed)) => {
            let mut needs = SetupNeeds::default();
            needs
                .reservations
                .push(ReservationKey::order_id(&placed.order_id));
            for line in &placed.lines {
                needs
                    .reservations
                    .push(ReservationKey::subscription(&line.subscription_id));
            }
            needs.reservations.sort();
            needs.reservations.dedup();
            Ok(needs)
        }
        LedgerCommand::Order(_) => Ok(SetupNeeds::default()),
        LedgerCommand::Setup(setup) => setup_needs(setup, order, actor),
    }
}

/// The business time of the latest event of any stream in `view`: a command
/// must not be dated before it.
pub fn latest_event_at(view: &SetupView) -> Option<chrono::DateTime<chrono::Utc>> {
    let orgs = view.orgs.values().filter_map(|o| o.last_event_at);
    let reservations = view.reservations.values().filter_map(|r| r.last_event_at);
    view.order
        .last_event_at
        .into_iter()
        .chain(orgs)
        .chain(reservations)
        .max()
}

/// Decide `command` on the order `order_id` at `ctx.at` by `ctx.actor`
/// against `view` (the streams [`command_needs`] named).
///
/// Bad input is an `Err` and nothing may be written; a rule refusal is a
/// `CommandRefused` event on the order stream (R12).
pub fn decide_command(
    order_id: &OrderId,
    view: &SetupView,
    command: LedgerCommand,
    ctx: &Context,
) -> Result<SetupDecision, DomainError> {
    match command {
        LedgerCommand::Order(Command::PlaceOrder(placed)) => {
            if &placed.order_id != order_id {
                return Err(DomainError::InvalidField {
                    field: "order_id".into(),
                    reason: format!(
                        "the order file places {} but the command names order {order_id}",
                        placed.order_id
                    ),
                });
            }
            if view.order.order.is_some() {
                return Err(DomainError::OrderAlreadyPlaced {
                    order_id: order_id.to_string(),
                });
            }
            let key = ReservationKey::order_id(order_id);
            if let Some(holder) = view.reservation(&key).holder {
                return Err(DomainError::OrderIdTaken {
                    order_id: order_id.to_string(),
                    existing: holder.order_id.to_string(),
                });
            }
            for line in &placed.lines {
                let key = ReservationKey::subscription(&line.subscription_id);
                if let Some(holder) = view.reservation(&key).holder {
                    return Err(DomainError::SubscriptionTaken {
                        subscription_id: line.subscription_id.to_string(),
                        order_id: holder.order_id.to_string(),
                        line_id: holder
                            .line_id
                            .map_or_else(|| "?".to_string(), |l| l.to_string()),
                    });
                }
            }
            let lines: Vec<_> = placed
                .lines
                .iter()
                .map(|l| (l.subscription_id.clone(), l.line_id.clone()))
                .collect();
            let order = decide(&view.order, Command::PlaceOrder(placed), ctx)?;
            let mut reservations = vec![(
                key,
                vec![ReservationEvent::OrderIdReserved {
                    at: ctx.at,
                    order_id: order_id.clone(),
                }],
            )];
            for (subscription_id, line_id) in lines {
                reservations.push((
                    ReservationKey::subscription(&subscription_id),
                    vec![ReservationEvent::SubscriptionReserved {
                        at: ctx.at,
                        subscription_id,
                        order_id: order_id.clone(),
                        line_id,
                    }],
                ));
            }
            reservations.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(SetupDecision {
                order,
                orgs: Vec::new(),
                reservations,
            })
        }
        LedgerCommand::Order(command) => Ok(SetupDecision {
            order: decide(&view.order, command, ctx)?,
            ..SetupDecision::default()
        }),
        LedgerCommand::Setup(setup) => decide_setup(view, setup, ctx),
    }
}
