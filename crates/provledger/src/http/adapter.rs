//! The one place where the server submits writes to the ledger.
//!
//! This module exists so that switching the server to the ledger's single
//! command path (principal, channel `via=http`, token id, idempotency key
//! bound to a fingerprint) is a change here and nowhere else. Until then it
//! calls [`Ledger::execute`] / [`Ledger::execute_setup`] with the token's
//! user as the actor, scopes the idempotency key to that user, and holds a
//! process-wide write lock so that concurrent requests in one process take
//! turns (across processes the store's optimistic concurrency and the
//! ledger's retry keep every update).

use chrono::{DateTime, Utc};
use provledger_domain::{
    due_events, Actor, Command, Context, DomainError, Event, LineId, OrderId, RefusalCode,
    RefusedAction, SetupCommand,
};
use provledger_store::{to_stored_precision, AppendRequest, ExpectedVersion};

use super::auth::Caller;
use crate::{outcome_of, to_new_events, AppError, CommandOutcome, Ledger};

/// A write the server may submit.
#[derive(Debug, Clone)]
pub enum Write {
    /// An order command (place, contact change, resend, case).
    Order(Command),
    /// A setup command (wizard, services, provision).
    Setup(SetupCommand),
}

/// The idempotency key as stored: scoped to the caller's user, so two
/// principals cannot collide on a key.
pub fn scoped_key(caller: &Caller, key: Option<&str>) -> Option<String> {
    key.map(|k| format!("{}:{k}", caller.principal.user.identity()))
}

/// Submit `write` on `order_id` as `caller`.
pub fn submit(
    ledger: &Ledger,
    caller: &Caller,
    order_id: &OrderId,
    write: Write,
    idempotency_key: Option<&str>,
) -> Result<CommandOutcome, AppError> {
    let actor = Actor::User(caller.principal.user.clone());
    let key = scoped_key(caller, idempotency_key);
    let mut at = to_stored_precision(Utc::now());
    // The server's clock is the business time; when it reads earlier than
    // the order's latest event (another server won the race, a clock step),
    // the command is dated at that event instead of being refused.
    for _ in 0..crate::MAX_ATTEMPTS {
        let ctx = Context::new(actor.clone(), at);
        let result = match write.clone() {
            Write::Order(command) => ledger.execute(order_id, command, &ctx, key.as_deref()),
            Write::Setup(command) => ledger.execute_setup(order_id, command, &ctx, key.as_deref()),
        };
        match result {
            Err(AppError::Domain(
                DomainError::OutOfOrder { latest, .. }
                | DomainError::StreamOutOfOrder { latest, .. },
            )) if latest > at => {
                ledger.states().evict(order_id);
                at = latest.max(to_stored_precision(Utc::now()));
            }
            other => return other,
        }
    }
    Err(AppError::ConflictRetriesExhausted {
        order_id: order_id.to_string(),
        attempts: crate::MAX_ATTEMPTS,
    })
}

/// Resolve support case `case_id`. The ledger on this branch has no
/// resolve command yet; this reports that as bad input until it does.
pub fn resolve_case(
    _ledger: &Ledger,
    _caller: &Caller,
    case_id: &str,
    _idempotency_key: Option<&str>,
) -> Result<CommandOutcome, AppError> {
    Err(AppError::BadInput(format!(
        "support case {case_id} cannot be resolved: case resolution is not available in this build"
    )))
}

/// Record that `caller` tried `action` on a visible order and their role
/// does not allow it (R12: every refusal is recorded). Scheduled
/// transitions due now are appended first, as for any command.
pub fn record_role_refusal(
    ledger: &Ledger,
    caller: &Caller,
    order_id: &OrderId,
    action: RefusedAction,
    line_id: Option<LineId>,
) -> Result<Option<CommandOutcome>, AppError> {
    let now = to_stored_precision(Utc::now());
    let actor = Actor::User(caller.principal.user.clone());
    for _ in 0..crate::MAX_ATTEMPTS {
        let state = ledger.load(order_id)?;
        if state.order.is_none() {
            return Ok(None);
        }
        let mut events = due_events(&state, now);
        let at = events
            .iter()
            .map(Event::at)
            .chain(state.last_event_at)
            .fold(now, DateTime::max);
        events.push(Event::CommandRefused {
            at,
            action,
            line_id: line_id.clone(),
            code: RefusalCode::NoAccess,
            reason: format!(
                "{} has the role {}, which may not do this; ask a user with access to the order, or an operator",
                caller.principal.user, caller.principal.role
            ),
            requested_email: None,
            applied_to_all_lines: false,
        });
        let new_events = to_new_events(order_id, state.version, &events, &actor);
        let request = AppendRequest::single(
            order_id.stream_id(),
            ExpectedVersion::Exact(state.version),
            new_events,
        );
        match ledger.store().append(request) {
            Ok(appended) => {
                ledger.states().evict(order_id);
                return outcome_of(&appended.events, false).map(Some);
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::ConflictRetriesExhausted {
        order_id: order_id.to_string(),
        attempts: crate::MAX_ATTEMPTS,
    })
}
