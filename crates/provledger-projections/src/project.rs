//! The pure heart of the projections: what one event does to the read models.
//!
//! This module exists so that the SQL read models and the point-in-time
//! replay (`--as-of`) run exactly the same code. It does no I/O: given an
//! order's folded state and a recorded event it returns the next state (by
//! the domain's own [`evolve`], never a re-implementation of the line rules),
//! the history row and the Transaction Manager rows. [`fold_batch`] applies a
//! batch of events on top of a state cache; the storage backends only write
//! what it returns.
//!
//! Loading is the callers' part: an order state the cache lacks comes from
//! a `load` function they pass in (the SQL backends fold it from the log on
//! their own connection, the pipeline from the store: `memory::load_from_log`),
//! and [`fold_stored`] folds the events they read. This module names no
//! store, database client, file or socket (a workspace tidy test checks it).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use provledger_domain::{
    evolve, DecodeError, Event, Line, LineId, Order, OrderId, OrderState, RefusedAction,
    SupportRequestType, WhoSetsUp,
};
use provledger_store::{Position, RecordedEvent, StreamVersion};

use crate::{
    HistoryRow, LineRow, ProjectionError, TransactionRow, TransactionStatus, TransactionType,
};

/// A recorded event, decoded if it belongs to an order stream.
///
/// Batches are decoded on a helper thread while the previous batch is
/// written (see `ReadModels::run_from`), so everything done here is off the
/// applying thread. The payload is dropped once decoded: the read models
/// keep no copy of it (the history view reads the log itself).
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The event as stored, except for what the read models never read:
    /// its `payload` is `Null` (it is decoded into `order`), its hashes are
    /// empty and its metadata holds only the actor and the transaction id.
    /// A batch in flight thus holds no more than is used.
    pub recorded: RecordedEvent,
    /// The order and the decoded event; `None` for other streams
    /// (organisations, reservations), which these read models skip.
    pub order: Option<(OrderId, Event)>,
}

impl Decoded {
    /// Decode a recorded event (see [`decode_order_event`]).
    pub fn new(recorded: RecordedEvent) -> Result<Decoded, ProjectionError> {
        let order = decode_order_event(&recorded)?;
        Ok(Decoded {
            recorded: slim(recorded),
            order,
        })
    }

    /// Decode an event read with its payload as the stored text
    /// (the store's `read_all_json`): the text is parsed
    /// once, straight into the domain's event.
    pub fn from_json(recorded: RecordedEvent<String>) -> Result<Decoded, ProjectionError> {
        let (recorded, payload) = recorded.replace_payload(());
        let order = match OrderId::from_stream_id(&recorded.stream_id) {
            Some(order_id) => Some((
                order_id,
                Event::from_stored_json(&recorded.event_type, recorded.schema_version, &payload)
                    .map_err(|source| undecodable(&recorded, source))?,
            )),
            None => None,
        };
        Ok(Decoded {
            recorded: slim(recorded),
            order,
        })
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

/// What [`Decoded`] keeps of a recorded event (see its `recorded`).
fn slim<P>(recorded: RecordedEvent<P>) -> RecordedEvent {
    let (mut kept, _) = recorded.replace_payload(serde_json::Value::Null);
    kept.metadata = provledger_store::Metadata {
        actor: std::mem::take(&mut kept.metadata.actor),
        transaction_id: std::mem::take(&mut kept.metadata.transaction_id),
        ..Default::default()
    };
    kept.prev_hash = String::new();
    kept.hash = String::new();
    kept
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
    .map_err(|source| undecodable(recorded, source))?;
    Ok(Some((order_id, event)))
}

/// The error for an order event the domain cannot decode.
fn undecodable<P>(recorded: &RecordedEvent<P>, source: DecodeError) -> ProjectionError {
    ProjectionError::UndecodableEvent {
        position: recorded.position,
        stream_id: recorded.stream_id.clone(),
        source,
    }
}

/// Check that the read models applied `version` events of an order's
/// stream (`applied`: what `rm_order_state` says; `None`: no row).
pub(crate) fn check_applied(
    order_id: &OrderId,
    applied: Option<u64>,
    version: StreamVersion,
) -> Result<(), ProjectionError> {
    if applied == Some(version) {
        return Ok(());
    }
    Err(ProjectionError::Corrupt {
        table: "rm_order_state",
        key: order_id.to_string(),
        reason: format!(
            "the next event continues the order's stream after version {version}, but the \
             read models applied {}; rebuild the read models (`provledger rebuild`)",
            applied.map_or_else(|| "none of it".to_string(), |v| v.to_string())
        ),
    })
}

/// An order's state at the read models' checkpoint, folded from the first
/// `version` events of its stream (what `rm_order_state` says was applied).
///
/// The read models keep no copy of the state: on a cache miss it is folded
/// again from the log, read on the backend's own connection. `events` must
/// be exactly those events, in version order.
pub(crate) fn fold_stored(
    order_id: &OrderId,
    version: u64,
    events: Vec<RecordedEvent>,
) -> Result<OrderState, ProjectionError> {
    if events.len() as u64 != version {
        return Err(ProjectionError::Corrupt {
            table: "rm_order_state",
            key: order_id.to_string(),
            reason: format!(
                "the read models applied {version} events of the order's stream, but the \
                 store holds {}; rebuild the read models (`provledger rebuild`)",
                events.len()
            ),
        });
    }
    let mut state = OrderState::default();
    for recorded in events {
        let Some((_, event)) = decode_order_event(&recorded)? else {
            continue;
        };
        state = evolve(state, &event);
    }
    Ok(state)
}

/// The `lines` rows of one order, in order-file order (empty before placement).
pub(crate) fn line_rows(state: &OrderState) -> Vec<LineRow> {
    let Some(order) = &state.order else {
        return Vec::new();
    };
    order
        .lines
        .iter()
        .map(|line| line_row(order, line))
        .collect()
}

/// The `lines` row of one line of `order`.
fn line_row(order: &Order, line: &Line) -> LineRow {
    LineRow {
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
    }
}

/// Where a history row belongs: its line and that line's subscription
/// (`None` for order-level events). `state` is the order's state after the
/// event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryPlace {
    /// Order id.
    pub order_id: String,
    /// The line the event is about.
    pub line_id: Option<String>,
    /// That line's subscription.
    pub subscription_id: Option<String>,
}

/// Resolve where the history row of `e` belongs.
pub(crate) fn history_place(e: &OrderEvent<'_>, state: &OrderState) -> HistoryPlace {
    let line_id = e.event.line_id();
    let subscription_id = line_id.and_then(|id| {
        state
            .order
            .as_ref()
            .and_then(|o| o.line(id))
            .map(|l| l.subscription_id.to_string())
    });
    HistoryPlace {
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
        | Event::SupportCaseResolved { .. }
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
                status: TransactionStatus::Pending,
                ..Tx::success(TransactionType::SupportCase)
            },
            None,
        ),
        Event::SetupStarted { .. } => (Lines::All, Tx::success(TransactionType::SetupStart), None),
        Event::SetupHandedOver { to, .. } => (
            Lines::All,
            Tx {
                new_email: Some(to.to_string()),
                detail: Some(format!("setup handed over to {to}")),
                ..Tx::success(TransactionType::SetupHandover)
            },
            None,
        ),
        Event::SetupCompleted {
            who_sets_up,
            partner_org_id,
            partner_org_created,
            customer_org_id,
            customer_org_created,
            customer_admin_email,
            ..
        } => (
            Lines::All,
            Tx {
                detail: Some(format!(
                    "customer organisation {customer_org_id}{}, partner organisation \
                     {partner_org_id}{}, customer administrator {customer_admin_email}, \
                     services set up by {}",
                    if *customer_org_created {
                        " (created)"
                    } else {
                        ""
                    },
                    if *partner_org_created {
                        " (created)"
                    } else {
                        ""
                    },
                    match who_sets_up {
                        WhoSetsUp::Me => "the partner user who completed the wizard",
                        WhoSetsUp::SomeoneElse => "the partner colleague it was handed to",
                        WhoSetsUp::Customer => "the customer (the partner no longer manages it)",
                    },
                )),
                ..Tx::success(TransactionType::SetupCompletion)
            },
            None,
        ),
        Event::ServicesConfigured {
            org_id, subdomain, ..
        } => (
            Lines::All,
            Tx {
                detail: Some(match subdomain {
                    Some(subdomain) => format!("organisation {org_id}, subdomain {subdomain}"),
                    None => format!("organisation {org_id}"),
                }),
                ..Tx::success(TransactionType::ServiceSetup)
            },
            None,
        ),
        Event::LineProvisioned {
            line_id, org_id, ..
        } => (
            Lines::One(line_id),
            Tx {
                detail: Some(format!(
                    "activated in organisation {org_id}; billing started"
                )),
                ..Tx::success(TransactionType::Provisioning)
            },
            None,
        ),
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
                RefusedAction::OpenSupportCase | RefusedAction::ResolveSupportCase => {
                    TransactionType::SupportCase
                }
                RefusedAction::StartSetup => TransactionType::SetupStart,
                RefusedAction::CompleteSetup => TransactionType::SetupCompletion,
                RefusedAction::ConfigureServices => TransactionType::ServiceSetup,
                RefusedAction::Provision => TransactionType::Provisioning,
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
    format!("{} {}", case_detail_prefix(case_id), request_type.label())
}

/// What a resolved case's row says, if `event` resolves one.
pub(crate) fn case_resolution(order_id: &OrderId, event: &Event) -> Option<CaseResolution> {
    let Event::SupportCaseResolved {
        case_id,
        outcome,
        note,
        ..
    } = event
    else {
        return None;
    };
    let mut reason = format!(
        "resolved by support: {}",
        outcome.as_str().replace('_', " ")
    );
    if let Some(note) = note {
        reason.push_str(" — ");
        reason.push_str(note);
    }
    Some(CaseResolution {
        order_id: order_id.to_string(),
        detail_prefix: case_detail_prefix(case_id),
        status: if outcome.is_success() {
            TransactionStatus::Success
        } else {
            TransactionStatus::Failed
        },
        reason,
    })
}

/// What one order event does to an order's replayed history.
pub(crate) struct Projected {
    /// The order's state after the event.
    pub state: OrderState,
    /// Where its history row belongs.
    pub history: HistoryPlace,
}

/// Apply one order event to the order's state, placing its history row.
pub(crate) fn project(e: &OrderEvent<'_>, before: OrderState) -> Projected {
    let state = evolve(before, e.event);
    let history = history_place(e, &state);
    Projected { state, history }
}

/// An order whose state a batch changed.
pub(crate) struct DirtyOrder {
    /// The order.
    pub order_id: OrderId,
    /// Events of its stream applied after the batch.
    pub version: StreamVersion,
    /// Its next scheduled transition after the batch (the domain's `next_due`).
    pub next_due_at: Option<DateTime<Utc>>,
    /// The line rows (with their index in the order) that differ from the
    /// stored ones and must be written.
    pub changed_lines: Vec<(usize, LineRow)>,
    /// How many line rows of the order are stored already (`None`: the
    /// order itself is not stored yet), so that a backend can update rows
    /// in place rather than try an insert first.
    pub stored_lines: Option<usize>,
}

/// The rows of `after`'s lines that differ from those of `before` (the
/// state as stored; `None`: not stored yet).
pub(crate) fn changed_lines(
    before: Option<&OrderState>,
    after: &OrderState,
) -> Vec<(usize, LineRow)> {
    let Some(after) = &after.order else {
        return Vec::new();
    };
    let before = before.and_then(|s| s.order.as_ref());
    // A row is made of its line and of these order-level fields.
    let same_order_fields = before.is_some_and(|b| {
        b.order_id == after.order_id
            && b.org_id == after.org_id
            && b.partner == after.partner
            && b.end_customer == after.end_customer
    });
    after
        .lines
        .iter()
        .enumerate()
        .filter(|(i, line)| {
            !same_order_fields || before.and_then(|b| b.lines.get(*i)) != Some(*line)
        })
        .map(|(i, line)| (i, line_row(after, line)))
        .collect()
}

/// A support case's outcome, applied to the Transaction Manager row its
/// opening wrote (R10: pending until resolved, then success or failed).
pub(crate) struct CaseResolution {
    /// The order.
    pub order_id: String,
    /// The start of the opening row's `detail`: `case <id>:`.
    pub detail_prefix: String,
    /// `success` or `failed`.
    pub status: TransactionStatus,
    /// What support did, and its note.
    pub reason: String,
}

/// The `detail` prefix of a support case's row.
fn case_detail_prefix(case_id: &str) -> String {
    format!("case {case_id}:")
}

/// Everything a batch of events writes, in the order it must be written.
pub(crate) struct BatchOutput {
    /// Transaction Manager rows, in position order.
    pub transactions: Vec<TransactionRow>,
    /// Orders whose state changed, sorted by order id.
    pub orders: Vec<DirtyOrder>,
    /// Support cases resolved in the batch: their rows (written before, or
    /// earlier in this batch) change from `pending` to the outcome.
    pub case_resolutions: Vec<CaseResolution>,
    /// Position of the batch's last event (the new checkpoint).
    pub last_position: Position,
    /// Events consumed (order events and skipped ones).
    pub events: u64,
}

impl BatchOutput {
    /// Join the batch that follows this one (folded on top of this one's
    /// states) into one batch that writes the same rows: Transaction
    /// Manager rows and case outcomes in position order, each order's last
    /// state, the union of its changed lines (the later row wins) and what
    /// was stored of it before the first batch.
    ///
    /// A rebuild writes several folded batches in one commit this way: an
    /// order touched by many of them is written once.
    pub fn absorb(&mut self, next: BatchOutput) {
        self.transactions.extend(next.transactions);
        self.case_resolutions.extend(next.case_resolutions);
        self.last_position = next.last_position;
        self.events += next.events;
        let earlier = std::mem::take(&mut self.orders);
        let mut merged = Vec::with_capacity(earlier.len() + next.orders.len());
        let mut earlier = earlier.into_iter().peekable();
        let mut later = next.orders.into_iter().peekable();
        loop {
            let order = match (earlier.peek(), later.peek()) {
                (Some(a), Some(b)) => match a.order_id.cmp(&b.order_id) {
                    Ordering::Less => earlier.next(),
                    Ordering::Greater => later.next(),
                    Ordering::Equal => earlier
                        .next()
                        .zip(later.next())
                        .map(|(a, b)| a.followed_by(b)),
                },
                (Some(_), None) => earlier.next(),
                (None, _) => later.next(),
            };
            match order {
                Some(order) => merged.push(order),
                None => break,
            }
        }
        self.orders = merged;
    }
}

impl DirtyOrder {
    /// This order's writes followed by `later`'s (same order, next batch).
    fn followed_by(self, later: DirtyOrder) -> DirtyOrder {
        let mut lines = Vec::with_capacity(self.changed_lines.len() + later.changed_lines.len());
        let mut earlier = self.changed_lines.into_iter().peekable();
        let mut newer = later.changed_lines.into_iter().peekable();
        loop {
            let line = match (earlier.peek(), newer.peek()) {
                (Some(a), Some(b)) => match a.0.cmp(&b.0) {
                    Ordering::Less => earlier.next(),
                    Ordering::Greater => newer.next(),
                    Ordering::Equal => {
                        earlier.next();
                        newer.next()
                    }
                },
                (Some(_), None) => earlier.next(),
                (None, _) => newer.next(),
            };
            match line {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        DirtyOrder {
            order_id: later.order_id,
            version: later.version,
            next_due_at: later.next_due_at,
            changed_lines: lines,
            stored_lines: self.stored_lines,
        }
    }
}

/// The states of the orders a batch changed, for the [`StateCache`] once
/// the batch is written (the rows to write are in the [`BatchOutput`]).
pub(crate) struct FoldedStates {
    /// Each changed order and its state after the batch.
    states: Vec<(OrderId, OrderState)>,
    /// Position of the batch's last event.
    last_position: Position,
}

/// Make room in a cache of folded states for `incoming` more entries
/// under `limit`: past it, forget the lowest-ranked entries (`rank`: the
/// greater stays), a quarter of them or as many as needed, whichever is
/// more. Exactly that many go, however many ranks are equal. Shared by the
/// read models' `StateCache` and import's admission cache.
pub fn forget_to_fit<K, V, R>(
    cache: &mut HashMap<K, V>,
    incoming: usize,
    limit: usize,
    rank: impl Fn(&V) -> R,
) where
    K: Clone + Eq + std::hash::Hash,
    R: Ord,
{
    let over = (cache.len() + incoming).saturating_sub(limit);
    if over == 0 {
        return;
    }
    let mut ranked: Vec<(R, &K)> = cache.iter().map(|(k, v)| (rank(v), k)).collect();
    let forget = over.max(ranked.len() / 4).min(ranked.len());
    if forget < ranked.len() {
        ranked.select_nth_unstable_by(forget, |a, b| a.0.cmp(&b.0));
    }
    let forgotten: Vec<K> = ranked[..forget].iter().map(|(_, k)| (*k).clone()).collect();
    for key in forgotten {
        cache.remove(&key);
    }
}

/// Order states kept in memory between batches, valid at one checkpoint.
///
/// A cache hit saves folding the order's stream again. The cache is trusted
/// only while the stored checkpoint equals `valid_at`: any other writer
/// (another process, a rebuild) moves the checkpoint and so empties the
/// cache. When full, it forgets a quarter of the orders: first those with
/// nothing scheduled (every line closed, or nothing left for the scheduler),
/// then those touched longest ago. Orders are busy for a while and then
/// fall quiet, so the busy ones stay; an order still waiting for its
/// initial emails or its closure will be touched again by the scheduler
/// however long it has been quiet, and stays too.
#[derive(Default)]
pub(crate) struct StateCache {
    states: HashMap<OrderId, Cached>,
    valid_at: Option<Position>,
}

/// A cached state, the last batch that touched it, and whether anything is
/// scheduled for it.
struct Cached {
    state: OrderState,
    touched: Position,
    scheduled: bool,
}

impl Cached {
    /// Which states stay when the cache makes room: the greater.
    fn keep_order(&self) -> (bool, Position) {
        (self.scheduled, self.touched)
    }
}

/// Most order states the cache keeps.
const CACHE_LIMIT: usize = 20_000;

impl StateCache {
    /// Make sure the cache describes the read models at `checkpoint`.
    pub fn validate(&mut self, checkpoint: Position) {
        if self.valid_at != Some(checkpoint) {
            self.states.clear();
            self.valid_at = Some(checkpoint);
        }
    }

    /// True when the cache describes the read models at `checkpoint`.
    pub fn is_valid_at(&self, checkpoint: Position) -> bool {
        self.valid_at == Some(checkpoint)
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.states.clear();
        self.valid_at = None;
    }

    /// The cached state of `order_id`.
    fn get(&self, order_id: &OrderId) -> Option<&OrderState> {
        self.states.get(order_id).map(|c| &c.state)
    }

    /// Make room for `incoming` more orders: past the limit, forget a
    /// quarter, those with nothing scheduled first, then the ones touched
    /// longest ago (see [`StateCache`]).
    fn make_room(&mut self, incoming: usize) {
        forget_to_fit(&mut self.states, incoming, CACHE_LIMIT, Cached::keep_order);
    }

    /// Record the states of a batch that will be committed, for a fold
    /// running ahead of the writes: see `ReadModels::run_from`.
    pub fn remember(&mut self, states: FoldedStates) {
        self.insert_all(states);
    }

    /// Record the states of a committed batch.
    pub fn committed(&mut self, states: FoldedStates) {
        self.insert_all(states);
    }

    /// Cache the states a batch left, moved in (no copy).
    fn insert_all(&mut self, folded: FoldedStates) {
        self.make_room(folded.states.len());
        let touched = folded.last_position;
        for (order_id, state) in folded.states {
            let scheduled = provledger_domain::next_due(&state).is_some();
            self.states.insert(
                order_id,
                Cached {
                    state,
                    touched,
                    scheduled,
                },
            );
        }
        self.valid_at = Some(touched);
    }
}

/// What `load` gives for the orders of `wanted`, except those `known` holds
/// at the wanted version (states the caller already has: they are not
/// folded again from the log); those are taken as they are.
pub(crate) fn load_unknown(
    wanted: &[(OrderId, StreamVersion)],
    known: &HashMap<OrderId, OrderState>,
    load: impl FnOnce(
        &[(OrderId, StreamVersion)],
    ) -> Result<HashMap<OrderId, OrderState>, ProjectionError>,
) -> Result<HashMap<OrderId, OrderState>, ProjectionError> {
    let (hits, unknown): (Vec<_>, Vec<_>) = wanted
        .iter()
        .cloned()
        .partition(|(id, version)| known.get(id).is_some_and(|s| s.version == *version));
    let mut out = if unknown.is_empty() {
        HashMap::new()
    } else {
        load(&unknown)?
    };
    for (id, _) in hits {
        if let Some(state) = known.get(&id) {
            out.insert(id, state.clone());
        }
    }
    Ok(out)
}

/// Fold a batch of consecutive events on top of the cached or stored states.
///
/// `load` fetches the stored states of orders the cache lacks (absent ones
/// are simply not returned). Returns the rows to write and the orders'
/// new states. Nothing is changed in `cache`: give it the states with
/// [`StateCache::committed`] once the rows are durably written.
pub(crate) fn fold_batch(
    events: &[Decoded],
    cache: &StateCache,
    load: impl FnOnce(
        &[(OrderId, StreamVersion)],
    ) -> Result<HashMap<OrderId, OrderState>, ProjectionError>,
) -> Result<(BatchOutput, FoldedStates), ProjectionError> {
    let last_position = events.last().map_or(0, |e| e.recorded.position);
    // Each order the cache lacks, with the version its stream had before
    // this batch (its first event here comes next); an order that starts
    // in this batch has nothing to load.
    let mut seen: HashSet<&OrderId> = HashSet::new();
    let mut missing: Vec<(OrderId, StreamVersion)> = Vec::new();
    for e in events {
        let Some((id, _)) = &e.order else { continue };
        if seen.insert(id) && cache.get(id).is_none() && e.recorded.stream_version > 1 {
            missing.push((id.clone(), e.recorded.stream_version - 1));
        }
    }
    let loaded = if missing.is_empty() {
        HashMap::new()
    } else {
        load(&missing)?
    };

    // The cache is left as it is (a failed batch must leave it valid): each
    // order's working state is one clone of its cached or stored state.
    let stored = |id: &OrderId| cache.get(id).or_else(|| loaded.get(id));
    let mut working: HashMap<&OrderId, OrderState> = HashMap::new();
    let mut transactions = Vec::new();
    let mut case_resolutions = Vec::new();
    for decoded in events {
        let Some(e) = decoded.as_order_event() else {
            continue;
        };
        let state = working
            .entry(e.order_id)
            .or_insert_with(|| stored(e.order_id).cloned().unwrap_or_default());
        let before = std::mem::take(state);
        transactions.extend(transaction_rows(&e, &before));
        case_resolutions.extend(case_resolution(e.order_id, e.event));
        *state = evolve(before, e.event);
    }
    let mut orders = Vec::with_capacity(working.len());
    let mut states = Vec::with_capacity(working.len());
    for (order_id, after) in working {
        let before = stored(order_id);
        orders.push(DirtyOrder {
            changed_lines: changed_lines(before, &after),
            stored_lines: before.map(|b| b.order.as_ref().map_or(0, |o| o.lines.len())),
            order_id: order_id.clone(),
            version: after.version,
            next_due_at: provledger_domain::next_due(&after),
        });
        states.push((order_id.clone(), after));
    }
    orders.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
    let out = BatchOutput {
        transactions,
        orders,
        case_resolutions,
        last_position,
        events: events.len() as u64,
    };
    let states = FoldedStates {
        states,
        last_position,
    };
    Ok((out, states))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use provledger_domain::{
        Email, LineSpec, Offer, OrgId, RefusalCode, SubscriptionId, WhoSetsUp,
    };
    use provledger_store::Metadata;

    use super::*;

    #[test]
    fn known_states_at_the_wanted_version_are_not_loaded() {
        let id = |n: &str| OrderId::parse(n).unwrap();
        let at = |version| OrderState {
            version,
            ..OrderState::default()
        };
        let known: HashMap<OrderId, OrderState> = [(id("WO-1"), at(3)), (id("WO-2"), at(5))].into();
        let wanted = [(id("WO-1"), 3), (id("WO-2"), 4), (id("WO-3"), 1)];
        let mut asked = Vec::new();
        let got = load_unknown(&wanted, &known, |ids| {
            asked = ids.to_vec();
            Ok(ids.iter().map(|(id, v)| (id.clone(), at(*v))).collect())
        })
        .unwrap();
        // WO-2 is known at another version: loaded like WO-3.
        assert_eq!(asked, vec![(id("WO-2"), 4), (id("WO-3"), 1)]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[&id("WO-1")].version, 3);
        assert_eq!(got[&id("WO-2")].version, 4);

        let mut called = false;
        let all_known = load_unknown(&wanted[..1], &known, |_| {
            called = true;
            Ok(HashMap::new())
        })
        .unwrap();
        assert!(!called, "nothing left to load");
        assert_eq!(all_known.len(), 1);
    }

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn email(text: &str) -> Email {
        Email::parse(text).unwrap()
    }

    fn placed() -> Event {
        Event::OrderPlaced {
            at: t("2026-11-20T10:00:00Z"),
            order_id: OrderId::parse("WO-1").unwrap(),
            ordering_contact: email("olivia@partner.example"),
            partner: "Acme".into(),
            end_customer: "Contoso".into(),
            partner_contacts: vec![],
            distributor_contacts: vec![],
            lines: ["1", "2"]
                .iter()
                .map(|l| LineSpec {
                    line_id: LineId::parse(l).unwrap(),
                    subscription_id: SubscriptionId::parse(&format!("Sub{l}")).unwrap(),
                    offer: Offer::AFlex,
                    rsd: "2026-12-01".parse().unwrap(),
                    provisioning_contact: email(&format!("c{l}@customer.example")),
                })
                .collect(),
        }
    }

    fn initial_email_to_line_1() -> Event {
        Event::InitialEmailSent {
            at: t("2026-12-01T00:00:00Z"),
            line_id: LineId::parse("1").unwrap(),
            to: email("c1@customer.example"),
            sender: "webex_comm@webex.com".into(),
            closes_at: t("2026-12-08T00:00:00Z"),
        }
    }

    /// Fold `events` as one batch; returns the output and the decoded batch.
    fn run(events: &[Event]) -> (BatchOutput, Vec<Decoded>) {
        let decoded = decode(events);
        let (out, _) =
            fold_batch(&decoded, &StateCache::default(), |_| Ok(HashMap::new())).unwrap();
        (out, decoded)
    }

    /// `events` as recorded on one order's stream from position 1.
    fn decode(events: &[Event]) -> Vec<Decoded> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let position = i as u64 + 1;
                Decoded::new(RecordedEvent {
                    position,
                    stream_id: "order-WO-1".into(),
                    stream_version: position,
                    event_type: e.event_type().into(),
                    schema_version: e.schema_version(),
                    payload: e.to_payload(),
                    metadata: Metadata {
                        actor: "pat@partner.example".into(),
                        transaction_id: format!("tx-{position}"),
                        ..Metadata::default()
                    },
                    occurred_at: e.at(),
                    recorded_at: e.at(),
                    prev_hash: String::new(),
                    hash: String::new(),
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn joined_batches_write_what_one_batch_writes() {
        let events = [
            placed(),
            initial_email_to_line_1(),
            Event::ProvisioningEmailResent {
                at: t("2026-12-02T00:00:00Z"),
                line_id: LineId::parse("1").unwrap(),
                to: email("c1@customer.example"),
                sender: "webex_comm@webex.com".into(),
            },
            refused(RefusedAction::ChangeContact, Some("2"), false),
            Event::OrgOnboarded {
                at: t("2026-12-03T00:00:00Z"),
                org_id: OrgId::parse("org-1").unwrap(),
            },
        ];
        let decoded = decode(&events);
        let none = |_: &[(OrderId, StreamVersion)]| Ok(HashMap::new());
        let (whole, _) = fold_batch(&decoded, &StateCache::default(), none).unwrap();
        for cut in 1..decoded.len() {
            let mut cache = StateCache::default();
            let (mut joined, states) = fold_batch(&decoded[..cut], &cache, none).unwrap();
            cache.remember(states);
            let (rest, _) = fold_batch(&decoded[cut..], &cache, none).unwrap();
            joined.absorb(rest);
            assert_eq!(joined.transactions, whole.transactions, "cut {cut}");
            assert_eq!(joined.events, whole.events);
            assert_eq!(joined.last_position, whole.last_position);
            assert_eq!(joined.orders.len(), whole.orders.len());
            for (a, b) in joined.orders.iter().zip(&whole.orders) {
                assert_eq!(a.order_id, b.order_id);
                assert_eq!(a.version, b.version);
                assert_eq!(a.next_due_at, b.next_due_at);
                assert_eq!(a.stored_lines, b.stored_lines);
                assert_eq!(a.changed_lines, b.changed_lines, "cut {cut}");
            }
        }
    }

    fn refused(action: RefusedAction, line: Option<&str>, all: bool) -> Event {
        Event::CommandRefused {
            at: t("2026-11-21T10:00:00Z"),
            action,
            line_id: line.map(|l| LineId::parse(l).unwrap()),
            code: RefusalCode::AfterPonr,
            reason: "too late".into(),
            requested_email: (action == RefusedAction::ChangeContact)
                .then(|| email("new@customer.example")),
            applied_to_all_lines: all,
        }
    }

    #[test]
    fn r12_a_refused_change_to_all_lines_fails_on_every_line_with_its_contact() {
        let (out, _) = run(&[
            placed(),
            refused(RefusedAction::ChangeContact, Some("1"), true),
        ]);
        let rows: Vec<_> = out
            .transactions
            .iter()
            .map(|r| {
                (
                    r.line_id.as_str(),
                    r.old_email.as_deref(),
                    r.new_email.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "1",
                    Some("c1@customer.example"),
                    Some("new@customer.example")
                ),
                (
                    "2",
                    Some("c2@customer.example"),
                    Some("new@customer.example")
                ),
            ]
        );
        assert!(out
            .transactions
            .iter()
            .all(|r| r.status == TransactionStatus::Failed
                && r.reason_code.as_deref() == Some("after_ponr")
                && r.applied_to_all_lines
                && r.transaction_id == "tx-2"));
        // Without "all lines", only the line asked for.
        let (out, _) = run(&[
            placed(),
            refused(RefusedAction::ChangeContact, Some("2"), false),
        ]);
        assert_eq!(out.transactions.len(), 1);
        assert_eq!(out.transactions[0].line_id, "2");
        assert!(!out.transactions[0].applied_to_all_lines);
    }

    #[test]
    fn every_refused_action_maps_to_its_transaction_type() {
        for (action, line, tx_type, rows) in [
            (
                RefusedAction::ResendEmail,
                Some("1"),
                TransactionType::ProvisioningEmailResend,
                1,
            ),
            (
                RefusedAction::OnboardOrg,
                None,
                TransactionType::OrgOnboarding,
                2,
            ),
            (
                RefusedAction::OpenSupportCase,
                Some("2"),
                TransactionType::SupportCase,
                1,
            ),
            (
                RefusedAction::StartSetup,
                None,
                TransactionType::SetupStart,
                2,
            ),
            (
                RefusedAction::CompleteSetup,
                None,
                TransactionType::SetupCompletion,
                2,
            ),
            (
                RefusedAction::ConfigureServices,
                None,
                TransactionType::ServiceSetup,
                2,
            ),
            (
                RefusedAction::Provision,
                Some("1"),
                TransactionType::Provisioning,
                1,
            ),
        ] {
            let (out, _) = run(&[placed(), refused(action, line, false)]);
            assert_eq!(out.transactions.len(), rows, "{action:?}");
            assert!(out.transactions.iter().all(|r| r.tx_type == tx_type
                && r.status == TransactionStatus::Failed
                && r.old_email.is_none()
                && r.reason.as_deref() == Some("too late")));
        }
    }

    #[test]
    fn setup_events_are_transactions_and_scheduled_events_are_not() {
        let org = OrgId::parse("org-9").unwrap();
        let events = [
            placed(),
            initial_email_to_line_1(),
            Event::SetupHandedOver {
                at: t("2026-12-02T00:00:00Z"),
                to: email("sam@partner.example"),
            },
            Event::SetupCompleted {
                at: t("2026-12-03T00:00:00Z"),
                completed_by: email("sam@partner.example"),
                who_sets_up: WhoSetsUp::Me,
                partner_org_id: OrgId::parse("org-p").unwrap(),
                partner_org_created: true,
                customer_org_id: org.clone(),
                customer_org_created: false,
                customer_admin_email: email("admin@customer.example"),
            },
            Event::OrgOnboarded {
                at: t("2026-12-03T00:00:00Z"),
                org_id: org.clone(),
            },
            Event::ServicesConfigured {
                at: t("2026-12-04T00:00:00Z"),
                org_id: org.clone(),
                calling: None,
                meeting: None,
                subdomain: None,
            },
            Event::LineProvisioned {
                at: t("2026-12-05T00:00:00Z"),
                line_id: LineId::parse("2").unwrap(),
                org_id: org,
                billing_started: true,
            },
        ];
        let (out, decoded) = run(&events);
        let types: Vec<_> = out
            .transactions
            .iter()
            .map(|r| (r.tx_type, r.line_id.as_str()))
            .collect();
        use TransactionType::*;
        assert_eq!(
            types,
            vec![
                (SetupHandover, "1"),
                (SetupHandover, "2"),
                (SetupCompletion, "1"),
                (SetupCompletion, "2"),
                (OrgOnboarding, "1"),
                (OrgOnboarding, "2"),
                (ServiceSetup, "1"),
                (ServiceSetup, "2"),
                (Provisioning, "2"),
            ]
        );
        assert_eq!(
            out.transactions[0].new_email.as_deref(),
            Some("sam@partner.example")
        );
        assert!(out.transactions[2]
            .detail
            .as_deref()
            .unwrap()
            .contains("org-p (created)"));

        // History: line events carry their subscription, order-level ones none.
        let mut state = OrderState::default();
        let places: Vec<_> = decoded
            .iter()
            .map(|d| {
                let e = d.as_order_event().unwrap();
                let projected = project(&e, std::mem::take(&mut state));
                state = projected.state;
                projected.history
            })
            .collect();
        let places: Vec<_> = places
            .iter()
            .map(|p| (p.line_id.as_deref(), p.subscription_id.as_deref()))
            .collect();
        assert_eq!(places[0], (None, None));
        assert_eq!(places[1], (Some("1"), Some("Sub1")));
        assert_eq!(places[6], (Some("2"), Some("Sub2")));
        assert_eq!(decoded[0].recorded.payload, serde_json::Value::Null);

        // Lines: one dirty order, both rows new; line 2 provisioned.
        let [order] = &out.orders[..] else {
            panic!("one order")
        };
        let lines = &order.changed_lines;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].1.status, "provisioned");
        assert!(!lines[1].1.provisioning_pending);
        assert_eq!(lines[0].1.status, "onboarded");
        assert_eq!(lines[0].1.org_id.as_deref(), Some("org-9"));
    }

    #[test]
    fn only_changed_lines_are_rewritten() {
        let state = evolve(OrderState::default(), &placed());
        let resend = Event::ProvisioningEmailResent {
            at: t("2026-12-02T00:00:00Z"),
            line_id: LineId::parse("2").unwrap(),
            to: email("c2@customer.example"),
            sender: "webex_comm@webex.com".into(),
        };
        let after = evolve(state.clone(), &resend);
        let changed = changed_lines(Some(&state), &after);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].0, 1);
        assert_eq!(changed[0].1.resend_count, 1);
        // An order-level change (onboarding) rewrites every line.
        let onboarded = evolve(
            state.clone(),
            &Event::OrgOnboarded {
                at: t("2026-12-02T00:00:00Z"),
                org_id: OrgId::parse("org-1").unwrap(),
            },
        );
        assert_eq!(changed_lines(Some(&state), &onboarded).len(), 2);
        // An order not stored yet: every line.
        assert_eq!(changed_lines(None, &state).len(), 2);
    }

    /// Order `WO-n` of a full cache.
    fn id(n: usize) -> OrderId {
        OrderId::parse(&format!("WO-{n}")).unwrap()
    }

    /// A cache holding its limit of orders, `WO-n` touched at position `n`
    /// and scheduled as `scheduled(n)` says.
    fn full_cache(scheduled: impl Fn(usize) -> bool) -> StateCache {
        let mut cache = StateCache::default();
        for n in 0..CACHE_LIMIT {
            cache.states.insert(
                id(n),
                Cached {
                    state: OrderState::default(),
                    touched: n as Position,
                    scheduled: scheduled(n),
                },
            );
        }
        cache
    }

    #[test]
    fn a_full_cache_forgets_the_orders_touched_longest_ago() {
        let mut cache = full_cache(|_| false);
        cache.make_room(0);
        assert_eq!(cache.states.len(), CACHE_LIMIT, "not over the limit yet");
        cache.make_room(1);
        assert!(cache.states.len() <= CACHE_LIMIT * 3 / 4 + 1);
        assert!(cache.get(&id(0)).is_none(), "the oldest is forgotten");
        assert!(
            cache.get(&id(CACHE_LIMIT - 1)).is_some(),
            "the newest is kept"
        );
        assert!(cache
            .states
            .values()
            .all(|c| c.touched >= (CACHE_LIMIT / 4) as Position));
    }

    #[test]
    fn a_full_cache_forgets_a_quarter_even_when_every_rank_is_equal() {
        let mut cache: HashMap<u32, u8> = (0..100).map(|n| (n, 7)).collect();
        forget_to_fit(&mut cache, 0, 100, |v| *v);
        assert_eq!(cache.len(), 100, "not over the limit");
        forget_to_fit(&mut cache, 1, 100, |v| *v);
        assert_eq!(cache.len(), 75, "a quarter, though all ranks tie");
        forget_to_fit(&mut cache, 60, 100, |v| *v);
        assert_eq!(cache.len(), 40, "as many as the incoming need");
        forget_to_fit(&mut cache, 500, 100, |v| *v);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_keeps_the_orders_something_is_scheduled_for() {
        // The first tenth still waits for the scheduler (an initial email, a
        // closure) and has been quiet longest; the rest is done.
        let waiting = CACHE_LIMIT / 10;
        let mut cache = full_cache(|n| n < waiting);
        cache.make_room(1);
        assert!(cache.states.len() <= CACHE_LIMIT * 3 / 4 + 1);
        assert!(
            (0..waiting).all(|n| cache.get(&id(n)).is_some()),
            "every order waiting for the scheduler is kept"
        );
        assert!(
            cache.get(&id(waiting)).is_none(),
            "the done order touched longest ago is forgotten"
        );
        assert!(cache.get(&id(CACHE_LIMIT - 1)).is_some());
    }

    #[test]
    fn the_cache_knows_which_states_are_scheduled() {
        let mut cache = StateCache::default();
        let placed = provledger_domain::evolve(OrderState::default(), &placed());
        assert!(provledger_domain::next_due(&placed).is_some());
        let id = OrderId::parse("WO-1").unwrap();
        cache.committed(FoldedStates {
            states: vec![
                (id.clone(), placed),
                (OrderId::parse("WO-2").unwrap(), OrderState::default()),
            ],
            last_position: 7,
        });
        assert!(cache.states[&id].scheduled, "initial emails are due");
        assert!(!cache.states[&OrderId::parse("WO-2").unwrap()].scheduled);
    }
}
