//! Whether an event that did not come from [`crate::decide`] (an imported or
//! migrated one) is one the domain could have produced from its stream's
//! state at that point.
//!
//! This module exists because `import` and `migrate` are the only ways
//! events enter a ledger without being decided: a correctly hashed line
//! proves only that someone computed a hash, not that the rules allowed the
//! event (a contact change after the Point of No Return, an event on an
//! order that was never placed, a second claim on a reserved email). The
//! checks here are the rules of `decide`, `due_events` and `decide_setup`
//! read backwards; a property test checks that everything those emit is
//! admissible. The dispatch is by stream prefix, so a new kind of stream
//! adds one arm.

use chrono::{DateTime, SubsecRound, Utc};

use crate::{
    due_events, evolve, evolve_org, evolve_reservation, Email, Event, LedgerEvent, Order, OrderId,
    OrderState, OrgEvent, OrgState, ReservationEvent, ReservationKey, ReservationState,
    LEDGER_STREAM, ORDER_STREAM_PREFIX, ORG_STREAM_PREFIX, PROVISIONING_SENDER,
    RESERVATION_STREAM_PREFIX,
};

/// The actor recorded on scheduled events.
const SYSTEM: &str = "system";

/// Why an event is not admissible: what the domain could not have done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Inadmissible(pub String);

fn no(reason: impl Into<String>) -> Inadmissible {
    Inadmissible(reason.into())
}

/// An event as stored, borrowed: what [`admit`] needs to judge it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Global position (1-based).
    pub position: u64,
    /// Stream id.
    pub stream_id: &'a str,
    /// Event type name.
    pub event_type: &'a str,
    /// Payload schema version.
    pub schema_version: u32,
    /// The payload.
    pub payload: &'a serde_json::Value,
    /// The actor recorded in the metadata (`system` for scheduled events).
    pub actor: &'a str,
    /// The stored business time.
    pub occurred_at: DateTime<Utc>,
}

/// The state of one stream, as far as admission is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionState {
    /// An order stream (`order-…`).
    Order(Box<OrderState>),
    /// An organisation stream (`org-…`).
    Org(OrgState),
    /// A reservation stream (`reservation-…`).
    Reservation(ReservationState),
    /// The ledger stream; the flag says whether it holds an event yet.
    Ledger(bool),
    /// A token stream (`token-…`, the HTTP API's tokens).
    Token(crate::TokenStreamState),
}

impl AdmissionState {
    /// The empty state of the stream `stream_id`, or why no such stream can
    /// exist (an unknown prefix).
    pub fn empty(stream_id: &str) -> Result<AdmissionState, Inadmissible> {
        if stream_id.starts_with(ORDER_STREAM_PREFIX) {
            Ok(AdmissionState::Order(Box::default()))
        } else if stream_id.starts_with(ORG_STREAM_PREFIX) {
            Ok(AdmissionState::Org(OrgState::default()))
        } else if stream_id.starts_with(RESERVATION_STREAM_PREFIX) {
            Ok(AdmissionState::Reservation(ReservationState::default()))
        } else if stream_id == LEDGER_STREAM {
            Ok(AdmissionState::Ledger(false))
        } else if stream_id.starts_with(crate::TOKEN_STREAM_PREFIX) {
            Ok(AdmissionState::Token(crate::TokenStreamState::Empty))
        } else {
            Err(no(format!(
                "stream {stream_id:?} is of no kind this ledger knows (order-…, org-…, reservation-…, ledger)"
            )))
        }
    }
}

/// Judge `event` against its stream's `state`: `Ok` with the state after it
/// when the domain could have produced it there, else why not.
///
/// Decoding is part of admission: an unknown type, an unsupported schema
/// version or a payload that does not decode is inadmissible, and so is a
/// payload time that differs from the stored business time.
pub fn admit(
    state: &AdmissionState,
    event: &Candidate<'_>,
) -> Result<AdmissionState, Inadmissible> {
    match state {
        AdmissionState::Order(order) => {
            let decoded = Event::from_stored(event.event_type, event.schema_version, event.payload)
                .map_err(|e| no(e.to_string()))?;
            same_time(decoded.at(), event.occurred_at)?;
            let order_id = OrderId::from_stream_id(event.stream_id)
                .ok_or_else(|| no(format!("{:?} is not an order stream id", event.stream_id)))?;
            if let Event::OrderPlaced {
                order_id: placed, ..
            } = &decoded
            {
                if placed != &order_id {
                    return Err(no(format!(
                        "OrderPlaced for order {placed} in the stream of order {order_id}"
                    )));
                }
            }
            admissible(order, &decoded, event.actor)?;
            Ok(AdmissionState::Order(Box::new(evolve(
                (**order).clone(),
                &decoded,
            ))))
        }
        AdmissionState::Org(org) => {
            let decoded =
                OrgEvent::from_stored(event.event_type, event.schema_version, event.payload)
                    .map_err(|e| no(e.to_string()))?;
            same_time(decoded.at(), event.occurred_at)?;
            admissible_org(org, &decoded, event.stream_id)?;
            Ok(AdmissionState::Org(evolve_org(org.clone(), &decoded)))
        }
        AdmissionState::Reservation(reservation) => {
            let decoded = ReservationEvent::from_stored(
                event.event_type,
                event.schema_version,
                event.payload,
            )
            .map_err(|e| no(e.to_string()))?;
            same_time(decoded.at(), event.occurred_at)?;
            admissible_reservation(reservation, &decoded, event.stream_id)?;
            Ok(AdmissionState::Reservation(evolve_reservation(
                reservation.clone(),
                &decoded,
            )))
        }
        AdmissionState::Ledger(started) => {
            if *started || event.position != 1 {
                return Err(no(
                    "the ledger stream holds only LedgerCreated, as the ledger's first event",
                ));
            }
            let decoded =
                LedgerEvent::from_stored(event.event_type, event.schema_version, event.payload)
                    .map_err(|e| no(e.to_string()))?;
            same_time(decoded.at(), event.occurred_at)?;
            Ok(AdmissionState::Ledger(true))
        }
        AdmissionState::Token(token) => crate::admit_token_event(
            *token,
            event.stream_id,
            event.event_type,
            event.schema_version,
            event.payload,
        )
        .map(AdmissionState::Token)
        .map_err(no),
    }
}

/// The payload's time must be the stored business time (which the store
/// keeps to the microsecond; ledgers written before business times were
/// truncated kept finer payload times).
fn same_time(payload: DateTime<Utc>, stored: DateTime<Utc>) -> Result<(), Inadmissible> {
    if payload.trunc_subsecs(6) == stored {
        Ok(())
    } else {
        Err(no(format!(
            "the payload's time {payload} differs from the stored business time {stored}"
        )))
    }
}

/// Whether `decide` (with the scheduled catch-up before each command) or
/// `decide_setup` could have appended `event`, recorded as done by `actor`,
/// to an order stream in `state`.
pub fn admissible(state: &OrderState, event: &Event, actor: &str) -> Result<(), Inadmissible> {
    let at = event.at();
    if let Some(latest) = state.last_event_at {
        if at < latest {
            return Err(no(format!(
                "{} at {at} is earlier than the stream's latest event ({latest})",
                event.event_type()
            )));
        }
    }
    let Some(order) = &state.order else {
        return match event {
            Event::OrderPlaced { lines, .. } => {
                user(actor, event)?;
                if lines.is_empty() {
                    return Err(no("OrderPlaced with no lines"));
                }
                for (i, line) in lines.iter().enumerate() {
                    if lines[..i].iter().any(|l| l.line_id == line.line_id) {
                        return Err(no(format!("OrderPlaced names line {} twice", line.line_id)));
                    }
                }
                Ok(())
            }
            other => Err(no(format!(
                "{} on an order that was never placed (no OrderPlaced before it)",
                other.event_type()
            ))),
        };
    };
    if event.is_scheduled() {
        if actor != SYSTEM {
            return Err(no(format!(
                "{} is scheduled and recorded by `system`, not by {actor}",
                event.event_type()
            )));
        }
        let due = due_events(state, at);
        return if due.first() == Some(event) {
            Ok(())
        } else {
            Err(no(format!(
                "{} is not what was due at {at} ({})",
                event.event_type(),
                match due.first() {
                    Some(d) => format!(
                        "{} for line {}",
                        d.event_type(),
                        d.line_id().map_or("-", |l| l.as_str())
                    ),
                    None => "nothing was due".into(),
                }
            )))
        };
    }
    let actor_email = user(actor, event)?;
    if let Some(first) = due_events(state, at).first() {
        return Err(no(format!(
            "{} at {at} skips {} due at {} (scheduled events are appended before a command)",
            event.event_type(),
            first.event_type(),
            first.at()
        )));
    }
    let open_line = |line_id: &crate::LineId, what: &str| -> Result<&crate::Line, Inadmissible> {
        let line = order.line(line_id).ok_or_else(|| {
            no(format!(
                "{what} on line {line_id}, which order {} does not have",
                order.order_id
            ))
        })?;
        if !order.has_access(&actor_email) {
            return Err(no(format!(
                "{what} by {actor_email}, who has no access to order {} (R6)",
                order.order_id
            )));
        }
        if order.past_ponr() {
            return Err(no(format!(
                "{what} after order {} was onboarded (Point of No Return, R5)",
                order.order_id
            )));
        }
        Ok(line)
    };
    match event {
        Event::OrderPlaced { .. } => Err(no(format!(
            "a second OrderPlaced for order {}",
            order.order_id
        ))),
        Event::ProvisioningContactChanged {
            line_id,
            old_email,
            new_email,
            email_sent,
            ..
        } => {
            let line = open_line(line_id, "a contact change")?;
            if &line.provisioning_contact != old_email {
                return Err(no(format!(
                    "a contact change from {old_email}, but line {line_id}'s contact is {}",
                    line.provisioning_contact
                )));
            }
            if old_email == new_email {
                return Err(no("a contact change to the same email"));
            }
            if *email_sent != line.initial_email_sent_at.is_some() {
                return Err(no(
                    "a contact change whose email_sent does not match whether the initial email went out",
                ));
            }
            Ok(())
        }
        Event::ProvisioningEmailResent {
            line_id,
            to,
            sender,
            ..
        } => {
            let line = open_line(line_id, "a resend")?;
            if line.initial_email_sent_at.is_none() {
                return Err(no(format!(
                    "a resend on line {line_id} before its initial email was sent (R3)"
                )));
            }
            if to != &line.provisioning_contact || sender != PROVISIONING_SENDER {
                return Err(no(format!(
                    "a resend to {to} from {sender}, not to the line's contact {} from {PROVISIONING_SENDER}",
                    line.provisioning_contact
                )));
            }
            Ok(())
        }
        Event::SupportCaseOpened {
            line_id, case_id, ..
        } => {
            open_line(line_id, "a support case")?;
            let expected = format!("{}-C{}", order.order_id, order.support_cases + 1);
            if case_id != &expected {
                return Err(no(format!(
                    "support case {case_id}, but the next case of this order is {expected}"
                )));
            }
            Ok(())
        }
        Event::SupportCaseResolved {
            case_id, line_id, ..
        } => {
            let Some(case) = order.cases.iter().find(|c| &c.case_id == case_id) else {
                return Err(no(format!(
                    "support case {case_id} resolved, but order {} has no such case",
                    order.order_id
                )));
            };
            if &case.line_id != line_id {
                return Err(no(format!(
                    "support case {case_id} was opened for line {}, not {line_id}",
                    case.line_id
                )));
            }
            if case.outcome.is_some() {
                return Err(no(format!("support case {case_id} resolved twice")));
            }
            Ok(())
        }
        Event::OrgOnboarded { .. } => {
            may_set_up(order, &actor_email, "onboarding")?;
            before_ponr(order, "onboarding")
        }
        Event::SetupStarted { .. } | Event::SetupHandedOver { .. } => {
            may_set_up(order, &actor_email, "a setup")?;
            before_ponr(order, "a setup")
        }
        Event::SetupCompleted { .. } => {
            may_set_up(order, &actor_email, "a completed setup")?;
            before_ponr(order, "a completed setup")?;
            if order.setup.is_some() {
                return Err(no("a second completed setup"));
            }
            Ok(())
        }
        Event::ServicesConfigured { .. } => {
            if order.setup.is_none() {
                return Err(no("services configured before the setup was completed"));
            }
            if order.provisioned_at.is_some() {
                return Err(no("services configured after the order was provisioned"));
            }
            Ok(())
        }
        Event::LineProvisioned { line_id, .. } => {
            let line = order
                .line(line_id)
                .ok_or_else(|| no(format!("line {line_id} does not exist")))?;
            if !order.past_ponr() || order.services.is_none() {
                return Err(no(
                    "a line provisioned before the order was onboarded and its services set up",
                ));
            }
            if line.status == crate::LineStatus::Provisioned {
                return Err(no(format!("line {line_id} provisioned twice")));
            }
            Ok(())
        }
        Event::CommandRefused { line_id, .. } => match line_id {
            Some(line_id) if order.line(line_id).is_none() => Err(no(format!(
                "a refusal on line {line_id}, which the order does not have"
            ))),
            _ => Ok(()),
        },
        Event::InitialEmailSent { .. }
        | Event::LineClosed { .. }
        | Event::EscalationRaised { .. } => {
            // Scheduled: handled above.
            Ok(())
        }
    }
}

fn user(actor: &str, event: &Event) -> Result<Email, Inadmissible> {
    Email::parse(actor).map_err(|_| {
        no(format!(
            "{} must be recorded as done by a user, not by {actor:?}",
            event.event_type()
        ))
    })
}

fn may_set_up(order: &Order, actor: &Email, what: &str) -> Result<(), Inadmissible> {
    if order.may_set_up(actor) {
        Ok(())
    } else {
        Err(no(format!(
            "{what} by {actor}, who may not set up order {}",
            order.order_id
        )))
    }
}

fn before_ponr(order: &Order, what: &str) -> Result<(), Inadmissible> {
    if order.past_ponr() {
        Err(no(format!(
            "{what} after order {} was onboarded (Point of No Return)",
            order.order_id
        )))
    } else {
        Ok(())
    }
}

/// Whether `decide_setup` could have appended `event` to the organisation
/// stream `stream_id` in `state`.
pub fn admissible_org(
    state: &OrgState,
    event: &OrgEvent,
    stream_id: &str,
) -> Result<(), Inadmissible> {
    match (event, &state.org) {
        (OrgEvent::OrganisationCreated { org_id, .. }, None) => {
            if org_id.stream_id() != stream_id {
                return Err(no(format!(
                    "organisation {org_id} created in stream {stream_id}"
                )));
            }
            Ok(())
        }
        (OrgEvent::OrganisationCreated { .. }, Some(_)) => Err(no("an organisation created twice")),
        (_, None) => Err(no(format!(
            "{} before the organisation was created",
            event.event_type()
        ))),
        (OrgEvent::AdministratorAdded { email, .. }, Some(org)) => {
            if org.is_admin(email) {
                Err(no(format!("{email} is already an administrator")))
            } else {
                Ok(())
            }
        }
        (OrgEvent::PartnerAccessRemoved { partner_org_id, .. }, Some(org)) => {
            if org.managing_partner.as_ref() == Some(partner_org_id) {
                Ok(())
            } else {
                Err(no(format!(
                    "partner access of {partner_org_id} removed, but it does not manage this organisation"
                )))
            }
        }
        (OrgEvent::SubdomainAssigned { .. }, Some(org)) => {
            if org.subdomain.is_some() {
                Err(no("a second subdomain for one organisation"))
            } else {
                Ok(())
            }
        }
    }
}

/// Whether `decide_setup` could have appended `event` to the reservation
/// stream `stream_id` in `state`: only the first claim, on its own stream.
pub fn admissible_reservation(
    state: &ReservationState,
    event: &ReservationEvent,
    stream_id: &str,
) -> Result<(), Inadmissible> {
    let key = match event {
        ReservationEvent::EmailReserved { email, .. } => ReservationKey::email(email),
        ReservationEvent::SubdomainReserved { subdomain, .. } => {
            ReservationKey::Subdomain(subdomain.clone())
        }
        ReservationEvent::OrderIdReserved { order_id, .. } => ReservationKey::order_id(order_id),
        ReservationEvent::SubscriptionReserved {
            subscription_id, ..
        } => ReservationKey::subscription(subscription_id),
    };
    if key.stream_id() != stream_id {
        return Err(no(format!(
            "a reservation of {} in stream {stream_id}",
            key.stream_id()
        )));
    }
    if let Some(holder) = &state.holder {
        return Err(no(format!(
            "already reserved (to order {}, organisation {}, since {}); order {} cannot claim it too",
            holder.order_id,
            holder.org_label(),
            holder.since,
            event.order_id()
        )));
    }
    Ok(())
}
