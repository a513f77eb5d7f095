//! The shell of the commands that span several streams: the setup wizard
//! (`setup complete`), service setup (`setup services`) and "Provision and
//! start billing" (`provision`), plus the read-only `subdomain check`.
//!
//! This module exists beside [`Ledger::execute`] because these commands read
//! and write more than one order: they load the order's stream and every
//! organisation and reservation stream the pure decider asks for
//! ([`setup_needs`]), decide ([`decide_setup`]), and append ONE request with
//! a per-stream append at the version each stream was read at — a
//! reservation stream that did not exist is appended with "no stream". Two
//! racing setups for the same email or subdomain therefore cannot both be
//! written: the store accepts one append and refuses the other with a
//! version conflict; that one is re-decided on fresh state (bounded, like
//! `execute`), finds the value taken, and records a refusal on its order
//! stream (R12). One winner, one recorded refusal.

use provledger_domain::{
    decide_setup, evolve_org, evolve_reservation, setup_needs, Actor, Context, OrderId, OrgEvent,
    OrgId, OrgState, ReservationEvent, ReservationKey, ReservationState, SetupCommand,
    SetupDecision, SetupView, Subdomain,
};
use provledger_store::{
    to_stored_precision, AppendRequest, ExpectedVersion, Metadata, NewEvent, StreamAppend,
};
use serde::Serialize;

use crate::{
    fold_stream, outcome_of, to_new_events, transaction_id, AppError, CommandOutcome, Ledger,
    MAX_ATTEMPTS,
};

/// The answer of `subdomain check` (R18's "Check availability").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubdomainCheck {
    /// The name as asked.
    pub subdomain: String,
    /// `available`, `taken` or `invalid`.
    pub status: SubdomainStatus,
    /// For `invalid`: the rule it broke; for `taken`: who holds it.
    pub reason: Option<String>,
    /// For `taken`: the organisation holding it.
    pub org_id: Option<String>,
}

/// Whether a subdomain can be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubdomainStatus {
    /// Valid and not reserved by any organisation.
    Available,
    /// Reserved by an organisation.
    Taken,
    /// Breaks the syntax rule.
    Invalid,
}

impl SubdomainStatus {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubdomainStatus::Available => "available",
            SubdomainStatus::Taken => "taken",
            SubdomainStatus::Invalid => "invalid",
        }
    }
}

fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

impl Ledger {
    /// Fold one organisation stream.
    pub fn load_org(&self, org_id: &OrgId) -> Result<OrgState, AppError> {
        let mut state = OrgState::default();
        for recorded in self.store().read_stream(&org_id.stream_id(), 0)? {
            let event = OrgEvent::from_stored(
                &recorded.event_type,
                recorded.schema_version,
                &recorded.payload,
            )?;
            state = evolve_org(state, &event);
        }
        Ok(state)
    }

    /// Fold one reservation stream.
    pub fn load_reservation(&self, key: &ReservationKey) -> Result<ReservationState, AppError> {
        let mut state = ReservationState::default();
        for recorded in self.store().read_stream(&key.stream_id(), 0)? {
            let event = ReservationEvent::from_stored(
                &recorded.event_type,
                recorded.schema_version,
                &recorded.payload,
            )?;
            state = evolve_reservation(state, &event);
        }
        Ok(state)
    }

    /// Load the order and every stream `command` by `actor` needs.
    pub fn load_setup_view(
        &self,
        order_id: &OrderId,
        command: &SetupCommand,
        actor: &Actor,
    ) -> Result<SetupView, AppError> {
        let order = fold_stream(&self.store().read_stream(&order_id.stream_id(), 0)?)?;
        let needs = setup_needs(command, &order, actor)?;
        let mut view = SetupView {
            order,
            ..SetupView::default()
        };
        for org_id in needs.orgs {
            let state = self.load_org(&org_id)?;
            view.orgs.insert(org_id, state);
        }
        for key in needs.reservations {
            let state = self.load_reservation(&key)?;
            view.reservations.insert(key, state);
        }
        Ok(view)
    }

    /// Carry out a setup command (R13–R18): load the order and the streams
    /// it needs → [`decide_setup`] → append one request with every stream at
    /// its expected version (retrying a conflict up to [`MAX_ATTEMPTS`]
    /// times, re-deciding on fresh state) → update the read models.
    ///
    /// A retry with an idempotency key already used returns the first
    /// result and appends nothing.
    pub fn execute_setup(
        &self,
        order_id: &OrderId,
        command: SetupCommand,
        ctx: &Context,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, AppError> {
        if let Some(key) = idempotency_key {
            if let Some(first) = self.store().find_idempotent(key)? {
                return outcome_of(&first, true);
            }
        }
        let ctx = &Context::new(ctx.actor.clone(), to_stored_precision(ctx.at));
        for _ in 0..MAX_ATTEMPTS {
            let view = self.load_setup_view(order_id, &command, &ctx.actor)?;
            if view.order.order.is_none() {
                return Err(AppError::UnknownOrder {
                    order_id: order_id.to_string(),
                });
            }
            let decision = decide_setup(&view, command.clone(), ctx)?;
            let request = setup_request(order_id, &view, &decision, &ctx.actor)
                .with_idempotency_key(idempotency_key.map(str::to_string));
            match self.store().append(request) {
                Ok(appended) => {
                    self.catch_up()?;
                    return outcome_of(&appended.events, appended.replayed);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::ConflictRetriesExhausted {
            order_id: order_id.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// R18's "Check availability": whether `raw` is a valid subdomain and
    /// whether an organisation holds it. Reads only the reservation stream.
    pub fn check_subdomain(&self, raw: &str) -> Result<SubdomainCheck, AppError> {
        let subdomain = match Subdomain::parse(raw) {
            Ok(s) => s,
            Err(e) => {
                return Ok(SubdomainCheck {
                    subdomain: raw.to_string(),
                    status: SubdomainStatus::Invalid,
                    reason: Some(e.to_string()),
                    org_id: None,
                })
            }
        };
        let state = self.load_reservation(&ReservationKey::Subdomain(subdomain.clone()))?;
        Ok(match state.holder {
            None => SubdomainCheck {
                subdomain: subdomain.to_string(),
                status: SubdomainStatus::Available,
                reason: None,
                org_id: None,
            },
            Some(holder) => SubdomainCheck {
                subdomain: subdomain.to_string(),
                status: SubdomainStatus::Taken,
                reason: Some(format!(
                    "reserved by organisation {} (order {}) since {}",
                    holder.org_id,
                    holder.order_id,
                    holder
                        .since
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                )),
                org_id: Some(holder.org_id.to_string()),
            },
        })
    }
}

/// The one append of a setup decision: the order stream first, then the
/// organisations, then the reservations, each at the version it was read at.
/// Organisation and reservation events share the order command's actor,
/// transaction and correlation id.
pub fn setup_request(
    order_id: &OrderId,
    view: &SetupView,
    decision: &SetupDecision,
    actor: &Actor,
) -> AppendRequest {
    let base = view.order.version;
    let order_events = to_new_events(order_id, base, &decision.order, actor);
    let command_tx = decision
        .order
        .iter()
        .position(|e| !e.is_scheduled())
        .map(|i| transaction_id(order_id, base + 1 + i as u64))
        .unwrap_or_else(|| transaction_id(order_id, base + 1));
    let metadata = Metadata {
        actor: actor.to_string(),
        transaction_id: command_tx.clone(),
        correlation_id: Some(command_tx),
        causation_id: None,
        idempotency_key: None,
    };
    let new_event = |event_type: &str, schema_version: u32, payload, at| NewEvent {
        event_type: event_type.to_string(),
        schema_version,
        payload,
        metadata: metadata.clone(),
        occurred_at: at,
    };
    let mut appends = vec![StreamAppend {
        stream_id: order_id.stream_id(),
        expected: expected(base),
        events: order_events,
    }];
    for (org_id, events) in &decision.orgs {
        appends.push(StreamAppend {
            stream_id: org_id.stream_id(),
            expected: expected(view.org(org_id).version),
            events: events
                .iter()
                .map(|e| new_event(e.event_type(), e.schema_version(), e.to_payload(), e.at()))
                .collect(),
        });
    }
    for (key, events) in &decision.reservations {
        appends.push(StreamAppend {
            stream_id: key.stream_id(),
            expected: expected(view.reservation(key).version),
            events: events
                .iter()
                .map(|e| new_event(e.event_type(), e.schema_version(), e.to_payload(), e.at()))
                .collect(),
        });
    }
    AppendRequest {
        appends,
        idempotency_key: None,
    }
}
