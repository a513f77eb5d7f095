//! What becomes due with the passing of time: R2 initial emails, R7 closures,
//! R11 escalations.
//!
//! Pure: the caller says what time it is. [`due_events`] yields the events
//! due at or before `now`, each dated at its due time and in due-time order,
//! so a stream always stays in business-time order. The same function serves
//! the `tick` command and the catch-up that precedes every command.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::{evolve, Event, LineId, Order, OrderState, PROVISIONING_SENDER};

/// R2: the initial email goes out at the start (00:00 UTC) of the RSD.
pub fn rsd_start(rsd: NaiveDate) -> DateTime<Utc> {
    rsd.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// R11: the escalation is due one day after the start of the RSD.
pub fn escalation_due(rsd: NaiveDate) -> DateTime<Utc> {
    plus_days(rsd_start(rsd), 1)
}

/// `t` plus `days`, saturating at the end of representable time, so that no
/// date (however far off) can make the schedule panic.
fn plus_days(t: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    t.checked_add_signed(Duration::days(days))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InitialEmail,
    Closure,
    Escalation,
}

/// Every transition pending for the order, with its due time (not clamped).
fn pending(order: &Order) -> Vec<(DateTime<Utc>, Kind, usize)> {
    let mut out = Vec::new();
    if order.past_ponr() {
        return out;
    }
    for (index, line) in order.lines.iter().enumerate() {
        match line.initial_email_sent_at {
            None => out.push((rsd_start(line.rsd), Kind::InitialEmail, index)),
            Some(_) => {
                if !line.billing_started {
                    if let Some(closes_at) = line.closes_at {
                        out.push((closes_at, Kind::Closure, index));
                    }
                }
            }
        }
        if order.setup_started_at.is_none() && line.escalated_at.is_none() {
            out.push((escalation_due(line.rsd), Kind::Escalation, index));
        }
    }
    out
}

/// The earliest time something becomes due for this order, if anything will.
pub fn next_due(state: &OrderState) -> Option<DateTime<Utc>> {
    let order = state.order.as_ref()?;
    let latest = state.last_event_at.unwrap_or(order.placed_at);
    pending(order)
        .into_iter()
        .map(|(t, _, _)| t.max(latest))
        .min()
}

/// The events due at or before `now`, in order, each dated at its due time
/// (never earlier than the stream's latest event).
pub fn due_events(state: &OrderState, now: DateTime<Utc>) -> Vec<Event> {
    let mut state = state.clone();
    let mut out = Vec::new();
    loop {
        let Some(order) = state.order.as_ref() else {
            return out;
        };
        let latest = state.last_event_at.unwrap_or(order.placed_at);
        let next = pending(order)
            .into_iter()
            .map(|(t, kind, index)| (t.max(latest), kind, index))
            .filter(|(t, _, _)| *t <= now)
            .min();
        let Some((at, kind, index)) = next else {
            return out;
        };
        let line = &order.lines[index];
        let event = match kind {
            Kind::InitialEmail => Event::InitialEmailSent {
                at,
                line_id: line.line_id.clone(),
                to: line.provisioning_contact.clone(),
                sender: PROVISIONING_SENDER.to_string(),
                closes_at: plus_days(at, line.offer.policy_days()),
            },
            Kind::Closure => Event::LineClosed {
                at,
                line_id: line.line_id.clone(),
                policy_days: line.offer.policy_days(),
                billing_started: true,
            },
            Kind::Escalation => Event::EscalationRaised {
                at,
                line_id: line.line_id.clone(),
                reason: escalation_reason(order, &line.line_id),
            },
        };
        state = evolve(state, &event);
        out.push(event);
    }
}

fn escalation_reason(order: &Order, line_id: &LineId) -> String {
    format!(
        "setup of order {} line {} had not started one day after the requested start date; the account representative should contact the partner {}",
        order.order_id,
        line_id,
        if order.partner.is_empty() { "(unnamed)" } else { &order.partner }
    )
}
