//! The one place where the server submits writes to the ledger.
//!
//! This module exists so that every HTTP write takes the ledger's single
//! command path ([`Ledger::submit`]): the token's user as the actor, the
//! channel `via=http` and the token id in every event's metadata, and the
//! idempotency key scoped to the user and bound to a fingerprint of the
//! request (a reused key with another request is bad input). A
//! process-wide write lock makes concurrent requests in one process take
//! turns; across processes the store's optimistic concurrency and the
//! ledger's retry keep every update.

use provledger_domain::{Actor, DomainError, LedgerCommand, OrderId};

use super::auth::Caller;
use crate::{AppError, CommandOutcome, Ledger, Origin, Submission};

fn origin(caller: &Caller) -> Origin {
    Origin::http(caller.token_id.clone())
}

/// Submit `command` on `order_id` as `caller`.
pub fn submit(
    ledger: &Ledger,
    caller: &Caller,
    order_id: &OrderId,
    command: LedgerCommand,
    idempotency_key: Option<&str>,
) -> Result<CommandOutcome, AppError> {
    let mut submission = Submission::new(
        order_id.clone(),
        command,
        Actor::User(caller.principal.user.clone()),
        origin(caller),
    )
    .with_role(caller.principal.role)
    .with_key(idempotency_key.map(str::to_string));
    // A live ledger dates a command at its streams' latest event when its
    // clock reads earlier. A simulated one (served with --allow-simulated)
    // takes the server's clock as the caller's time; when another server
    // won the race, the command is dated at the event that won.
    for _ in 0..crate::MAX_ATTEMPTS {
        match ledger.submit(submission.clone()) {
            Err(AppError::Domain(
                DomainError::OutOfOrder { latest, .. }
                | DomainError::StreamOutOfOrder { latest, .. },
            )) => {
                submission = submission.at(latest, "the server's clock");
            }
            other => return other,
        }
    }
    Err(AppError::ConflictRetriesExhausted {
        order_id: order_id.to_string(),
        attempts: crate::MAX_ATTEMPTS,
    })
}
