//! The pure heart of the projections: what one event does to the read models.
//!
//! This module exists so that the SQL read models and the point-in-time
//! replay (`--as-of`) run exactly the same code. It does no I/O: given an
//! order's folded state and a recorded event it returns the next state (by
//! the domain's own [`evolve`], never a re-implementation of the line rules),
//! the history row and the Transaction Manager rows. [`fold_batch`] applies a
//! batch of events on top of a state cache; the storage backends only write
//! what it returns.

use std::collections::HashMap;

use provledger_domain::{
    evolve, Event, LineId, OrderId, OrderState, RefusedAction, SupportRequestType,
};
use provledger_store::{Position, RecordedEvent};

use crate::{
    HistoryRow, LineRow, ProjectionError, TransactionRow, TransactionStatus, TransactionType,
};

/// A recorded event, decoded if it belongs to an order stream.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The event as stored.
    pub recorded: RecordedEvent,
    /// The order and the decoded event; `None` for other streams
    /// (organisations, reservations), which these read models skip.
    pub order: Option<(OrderId, Event)>,
}

impl Decoded {
    /// Decode a recorded event (see [`decode_order_event`]).
    pub fn new(recorded: RecordedEvent) -> Result<Decoded, ProjectionError> {
        let order = decode_order_event(&recorded)?;
        Ok(Decoded { recorded, order })
    }

    /// The borrowed view [`project`] works on, for an order event.
    pub fn as_order_event(&self) -> Option<OrderEvent<'_>> {
        self.order.as_ref().map(|(order_id, event)| OrderEvent {
            order_id,
            event,
            recorded: &self.recorded,
        })
    }
}

/// An event of an order stream, decoded, with the record it came from.
pub(crate) struct OrderEvent<'a> {
    /// The order (from the stream id).
    pub order_id: &'a OrderId,
    /// The decoded event.
    pub event: &'a Event,
    /// The event as stored.
    pub recorded: &'a RecordedEvent,
}

/// Decode a recorded event with the domain's own decoder (upcasting old
/// schema versions) if it belongs to an order stream; `Ok(None)` otherwise.
pub(crate) fn decode_order_event(
    recorded: &RecordedEvent,
) -> Result<Option<(OrderId, Event)>, ProjectionError> {
    let Some(order_id) = OrderId::from_stream_id(&recorded.stream_id) else {
        return Ok(None);
    };
    let event = Event::from_stored(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.payload,
    )
    .map_err(|source| ProjectionError::UndecodableEvent {
        position: recorded.position,
        stream_id: recorded.stream_id.clone(),
        source,
    })?;
    Ok(Some((order_id, event)))
}

/// The `lines` rows of one order, in order-file order (empty before placement).
pub(crate) fn line_rows(state: &OrderState) -> Vec<LineRow> {
    let Some(order) = &state.order else {
        return Vec::new();
    };
    order
        .lines
        .iter()
        .map(|line| LineRow {
            order_id: order.order_id.to_string(),
            line_id: line.line_id.to_string(),
            subscription_id: line.subscription_id.to_string(),
            offer: line.offer.name().to_string(),
            rsd: line.rsd,
            provisioning_contact: line.provisioning_contact.to_string(),
            status: line.status.as_str().to_string(),
            status_label: line.status.label().to_string(),
            provisioning_pending: line.provisioning_pending(),
            initial_email_sent_at: line.initial_email_sent_at,
            closes_at: line.closes_at,
            billing_started: line.billing_started,
            org_id: order.org_id.as_ref().map(ToString::to_string),
            escalated_at: line.escalated_at,
            resend_count: line.resend_count,
            partner: order.partner.clone(),
            end_customer: order.end_customer.clone(),
        })
        .collect()
}

/// Where a history row belongs: its line and that line's subscription
/// (`None` for order-level events). `state` is the order's state after the
/// event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryPlace {
    /// The event (index into the batch it came in).
    pub index: usize,
    /// Order id.
    pub order_id: String,
    /// The line the event is about.
    pub line_id: Option<String>,
    /// That line's subscription.
    pub subscription_id: Option<String>,
}

/// Resolve where the history row of `e` belongs.
pub(crate) fn history_place(e: &OrderEvent<'_>, state: &OrderState, index: usize) -> HistoryPlace {
    let line_id = e.event.line_id();
    let subscription_id = line_id.and_then(|id| {
        state
            .order
            .as_ref()
            .and_then(|o| o.line(id))
            .map(|l| l.subscription_id.to_string())
    });
    HistoryPlace {
        index,
        order_id: e.order_id.to_string(),
        line_id: line_id.map(ToString::to_string),
        subscription_id,
    }
}

/// The history row of a recorded event placed by [`history_place`].
pub(crate) fn history_row(r: &RecordedEvent, place: HistoryPlace) -> HistoryRow {
    HistoryRow {
        position: r.position,
        stream_id: r.stream_id.clone(),
        stream_version: r.stream_version,
        order_id: place.order_id,
        line_id: place.line_id,
        subscription_id: place.subscription_id,
        event_type: r.event_type.clone(),
        schema_version: r.schema_version,
        occurred_at: r.occurred_at,
        recorded_at: r.recorded_at,
        actor: r.metadata.actor.clone(),
        transaction_id: r.metadata.transaction_id.clone(),
        payload: r.payload.clone(),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

/// What one transaction row says beyond the line it is on.
struct Tx {
    tx_type: TransactionType,
    status: TransactionStatus,
    reason: Option<String>,
    reason_code: Option<String>,
    new_email: Option<String>,
    applied_to_all_lines: bool,
    detail: Option<String>,
}

impl Tx {
    fn success(tx_type: TransactionType) -> Tx {
        Tx {
            tx_type,
            status: TransactionStatus::Success,
            reason: None,
            reason_code: None,
            new_email: None,
            applied_to_all_lines: false,
            detail: None,
        }
    }
}

/// Which lines a transaction row is written for.
enum Lines<'a> {
    One(&'a LineId),
    All,
}

/// The Transaction Manager rows of an event (R9, R12); `before` is the
/// order's state just before it. Scheduled events and the placement are not
/// transactions and yield nothing.
pub(crate) fn transaction_rows(e: &OrderEvent<'_>, before: &OrderState) -> Vec<TransactionRow> {
    let Some(order) = &before.order else {
        return Vec::new();
    };
    let (lines, tx, old_email_from_event) = match e.event {
        Event::OrderPlaced { .. }
        | Event::InitialEmailSent { .. }
        | Event::LineClosed { .. }
        | Event::EscalationRaised { .. } => return Vec::new(),
        Event::ProvisioningContactChanged {
            line_id,
            old_email,
            new_email,
            applied_to_all_lines,
            email_sent,
            ..
        } => (
            Lines::One(line_id),
            Tx {
                new_email: Some(new_email.to_string()),
                applied_to_all_lines: *applied_to_all_lines,
                detail: email_sent.then(|| format!("provisioning email sent to {new_email}")),
                ..Tx::success(TransactionType::ProvisioningEmailUpdate)
            },
            Some(old_email.to_string()),
        ),
        Event::ProvisioningEmailResent { line_id, to, .. } => (
            Lines::One(line_id),
            Tx {
                new_email: Some(to.to_string()),
                ..Tx::success(TransactionType::ProvisioningEmailResend)
            },
            None,
        ),
        Event::OrgOnboarded { org_id, .. } => (
            Lines::All,
            Tx {
                detail: Some(format!("organisation {org_id}")),
                ..Tx::success(TransactionType::OrgOnboarding)
            },
            None,
        ),
        Event::SupportCaseOpened {
            case_id,
            line_id,
            request_type,
            ..
        } => (
            Lines::One(line_id),
            Tx {
                detail: Some(case_detail(case_id, *request_type)),
                ..Tx::success(TransactionType::SupportCase)
            },
            None,
        ),
        Event::SetupStarted { .. } => (Lines::All, Tx::success(TransactionType::SetupStart), None),
        Event::CommandRefused {
            action,
            line_id,
            code,
            reason,
            requested_email,
            applied_to_all_lines,
            ..
        } => {
            let tx_type = match action {
                RefusedAction::ChangeContact => TransactionType::ProvisioningEmailUpdate,
                RefusedAction::ResendEmail => TransactionType::ProvisioningEmailResend,
                RefusedAction::OnboardOrg => TransactionType::OrgOnboarding,
                RefusedAction::OpenSupportCase => TransactionType::SupportCase,
                RefusedAction::StartSetup => TransactionType::SetupStart,
            };
            let change = *action == RefusedAction::ChangeContact;
            let lines = match line_id {
                Some(id) if !(change && *applied_to_all_lines) => Lines::One(id),
                _ => Lines::All,
            };
            (
                lines,
                Tx {
                    tx_type,
                    status: TransactionStatus::Failed,
                    reason: Some(reason.clone()),
                    reason_code: Some(code.as_str().to_string()),
                    new_email: requested_email.as_ref().map(ToString::to_string),
                    applied_to_all_lines: change && *applied_to_all_lines,
                    detail: None,
                },
                None,
            )
        }
    };
    let is_change = tx.tx_type == TransactionType::ProvisioningEmailUpdate;
    let r = e.recorded;
    let row = |line_id: String, subscription_id: String, contact: Option<String>| TransactionRow {
        transaction_id: r.metadata.transaction_id.clone(),
        tx_type: tx.tx_type,
        type_label: tx.tx_type.label().to_string(),
        order_id: e.order_id.to_string(),
        line_id,
        subscription_id,
        submitted_by: r.metadata.actor.clone(),
        submitted_at: r.occurred_at,
        status: tx.status,
        reason: tx.reason.clone(),
        reason_code: tx.reason_code.clone(),
        old_email: old_email_from_event
            .clone()
            .or(if is_change { contact } else { None }),
        new_email: tx.new_email.clone(),
        applied_to_all_lines: tx.applied_to_all_lines,
        detail: tx.detail.clone(),
        position: r.position,
    };
    match lines {
        Lines::One(id) => match order.line(id) {
            Some(line) => vec![row(
                line.line_id.to_string(),
                line.subscription_id.to_string(),
                Some(line.provisioning_contact.to_string()),
            )],
            // A line the order does not have (never written by the decider):
            // keep the fact, with no subscription to show.
            None => vec![row(id.to_string(), String::new(), None)],
        },
        Lines::All => order
            .lines
            .iter()
            .map(|line| {
                row(
                    line.line_id.to_string(),
                    line.subscription_id.to_string(),
                    Some(line.provisioning_contact.to_string()),
                )
            })
            .collect(),
    }
}

fn case_detail(case_id: &str, request_type: SupportRequestType) -> String {
    format!("case {case_id}: {}", request_type.label())
}

/// What one order event does to the read models.
pub(crate) struct Projected {
    /// The order's state after the event.
    pub state: OrderState,
    /// Where its history row belongs.
    pub history: HistoryPlace,
    /// Its Transaction Manager rows.
    pub transactions: Vec<TransactionRow>,
}

/// Apply one order event (number `index` of its batch) to the order's state.
pub(crate) fn project(e: &OrderEvent<'_>, before: OrderState, index: usize) -> Projected {
    let transactions = transaction_rows(e, &before);
    let state = evolve(before, e.event);
    let history = history_place(e, &state, index);
    Projected {
        state,
        history,
        transactions,
    }
}

/// An order whose state a batch changed.
pub(crate) struct DirtyOrder {
    /// The order.
    pub order_id: OrderId,
    /// Its state as stored before the batch (`None`: not stored yet).
    pub before: Option<OrderState>,
    /// Its state after the batch.
    pub after: OrderState,
}

impl DirtyOrder {
    /// The line rows (with their index in the order) that differ from the
    /// stored ones and must be written.
    pub fn changed_lines(&self) -> Vec<(usize, LineRow)> {
        let old = self.before.as_ref().map(line_rows).unwrap_or_default();
        line_rows(&self.after)
            .into_iter()
            .enumerate()
            .filter(|(i, row)| old.get(*i) != Some(row))
            .collect()
    }
}

/// Everything a batch of events writes, in the order it must be written.
pub(crate) struct BatchOutput {
    /// One history row per order event, in position order (the rest of the
    /// row is the recorded event itself).
    pub history: Vec<HistoryPlace>,
    /// Transaction Manager rows, in position order.
    pub transactions: Vec<TransactionRow>,
    /// Orders whose state changed, sorted by order id.
    pub orders: Vec<DirtyOrder>,
    /// Position of the batch's last event (the new checkpoint).
    pub last_position: Position,
    /// Events consumed (order events and skipped ones).
    pub events: u64,
}

/// Order states kept in memory between batches, valid at one checkpoint.
///
/// A cache hit saves a read and a JSON decode of the stored state. The cache
/// is trusted only while the stored checkpoint equals `valid_at`: any other
/// writer (another process, a rebuild) moves the checkpoint and so empties
/// the cache.
#[derive(Default)]
pub(crate) struct StateCache {
    states: HashMap<OrderId, OrderState>,
    valid_at: Option<Position>,
}

/// Most order states the cache keeps; past this it starts afresh.
const CACHE_LIMIT: usize = 20_000;

impl StateCache {
    /// Make sure the cache describes the read models at `checkpoint`.
    pub fn validate(&mut self, checkpoint: Position) {
        if self.valid_at != Some(checkpoint) {
            self.states.clear();
            self.valid_at = Some(checkpoint);
        }
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.states.clear();
        self.valid_at = None;
    }

    /// Record a committed batch.
    pub fn committed(&mut self, batch: BatchOutput) {
        if self.states.len() + batch.orders.len() > CACHE_LIMIT {
            self.states.clear();
        }
        for order in batch.orders {
            self.states.insert(order.order_id, order.after);
        }
        self.valid_at = Some(batch.last_position);
    }
}

/// Fold a batch of consecutive events on top of the cached or stored states.
///
/// `load` fetches the stored states of orders the cache lacks (absent ones
/// are simply not returned). Nothing is changed in `cache`: call
/// [`StateCache::committed`] once the output is durably written.
pub(crate) fn fold_batch(
    events: &[Decoded],
    cache: &StateCache,
    load: impl FnOnce(&[OrderId]) -> Result<HashMap<OrderId, OrderState>, ProjectionError>,
) -> Result<BatchOutput, ProjectionError> {
    let last_position = events.last().map_or(0, |e| e.recorded.position);
    let mut missing: Vec<OrderId> = events
        .iter()
        .filter_map(|e| e.order.as_ref().map(|(id, _)| id))
        .filter(|id| !cache.states.contains_key(*id))
        .cloned()
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let mut loaded = if missing.is_empty() {
        HashMap::new()
    } else {
        load(&missing)?
    };

    let mut working: HashMap<&OrderId, DirtyOrder> = HashMap::new();
    let mut history = Vec::with_capacity(events.len());
    let mut transactions = Vec::new();
    for (index, decoded) in events.iter().enumerate() {
        let Some(e) = decoded.as_order_event() else {
            continue;
        };
        let dirty = working.entry(e.order_id).or_insert_with(|| {
            let stored = cache
                .states
                .get(e.order_id)
                .cloned()
                .or_else(|| loaded.remove(e.order_id));
            DirtyOrder {
                order_id: e.order_id.clone(),
                after: stored.clone().unwrap_or_default(),
                before: stored,
            }
        });
        let before = std::mem::take(&mut dirty.after);
        let projected = project(&e, before, index);
        dirty.after = projected.state;
        history.push(projected.history);
        transactions.extend(projected.transactions);
    }
    let mut orders: Vec<DirtyOrder> = working.into_values().collect();
    orders.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
    Ok(BatchOutput {
        history,
        transactions,
        orders,
        last_position,
        events: events.len() as u64,
    })
}
