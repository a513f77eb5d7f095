//! The in-memory sink: point-in-time views replayed straight from the store.
//!
//! This module exists for `--as-of`: the state of a line or the history as
//! it was at a time (or position) is a replay of the events up to that
//! point, folded in memory with the same [`crate::project`] code the SQL
//! read models use, so the two can never disagree. Only the orders the query
//! is about are folded: a query by order reads that one stream; a query by
//! subscription keeps only the orders whose placement lists it.
//!
//! It also folds order states straight from the log for the catch-up and
//! rebuild pipeline ([`load_from_log`]): its folding stage runs ahead of the
//! writes, so it cannot read the read models' own tables.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use provledger_domain::{OrderId, OrderState, SubscriptionId};
use provledger_store::{EventStore, Position, RecordedEvent, StreamVersion};

use crate::project::{
    decode_order_event, fold_stored, history_row, line_rows, project, OrderEvent,
};
use crate::{HistoryQuery, HistoryRow, LineQuery, LineRow, ProjectionError};

/// A point in the ledger's past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event whose business time (`occurred_at`) is at or before this time.
    Time(DateTime<Utc>),
    /// Every event at or before this global position.
    Position(Position),
}

impl AsOf {
    fn includes(self, event: &RecordedEvent) -> bool {
        match self {
            AsOf::Time(t) => event.occurred_at <= t,
            AsOf::Position(p) => event.position <= p,
        }
    }

    /// True once no later event (in position order) can be included.
    fn past(self, event: &RecordedEvent) -> bool {
        matches!(self, AsOf::Position(p) if event.position > p)
    }
}

/// Order states and history rows folded in memory.
struct Replay {
    subscription: Option<SubscriptionId>,
    keep_history: bool,
    states: BTreeMap<OrderId, OrderState>,
    history: Vec<HistoryRow>,
}

impl Replay {
    fn new(subscription: Option<SubscriptionId>, keep_history: bool) -> Self {
        Replay {
            subscription,
            keep_history,
            states: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    /// Fold one event if it is about an order this replay follows.
    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
        // Cheap checks first: most events of a large ledger are skipped
        // without decoding their payload.
        let Some(order_id) = OrderId::from_stream_id(&recorded.stream_id) else {
            return Ok(());
        };
        let known = self.states.contains_key(&order_id);
        if !known && recorded.event_type != "OrderPlaced" {
            return Ok(());
        }
        let Some((order_id, event)) = decode_order_event(recorded)? else {
            return Ok(());
        };
        let e = OrderEvent {
            order_id: &order_id,
            event: &event,
            recorded,
        };
        let before = self.states.remove(&order_id).unwrap_or_default();
        let projected = project(&e, before);
        if !known {
            if let Some(sub) = &self.subscription {
                let has = projected
                    .state
                    .order
                    .as_ref()
                    .is_some_and(|o| o.lines.iter().any(|l| &l.subscription_id == sub));
                if !has {
                    return Ok(());
                }
            }
        }
        self.states.insert(order_id, projected.state);
        if self.keep_history {
            self.history.push(history_row(recorded, projected.history));
        }
        Ok(())
    }

    /// Replay the events of `streams` up to `as_of`.
    fn run(
        mut self,
        store: &dyn EventStore,
        streams: Streams<'_>,
        as_of: AsOf,
    ) -> Result<Self, ProjectionError> {
        let mut step = |event: &RecordedEvent| -> Result<bool, ProjectionError> {
            if as_of.past(event) {
                return Ok(false);
            }
            if as_of.includes(event) {
                self.apply(event)?;
            }
            Ok(true)
        };
        match streams {
            Streams::Orders(orders) => {
                for order_id in orders {
                    for event in store.read_stream(&order_id.stream_id(), 0)? {
                        if !step(&event)? {
                            break;
                        }
                    }
                }
            }
            Streams::All => {
                for event in store.read_all(0)? {
                    if !step(&event?)? {
                        break;
                    }
                }
            }
        }
        Ok(self)
    }

    fn lines(self) -> Vec<LineRow> {
        let sub = self.subscription.as_ref().map(SubscriptionId::as_str);
        self.states
            .values()
            .flat_map(line_rows)
            .filter(|row| sub.is_none_or(|s| row.subscription_id == s))
            .collect()
    }

    fn history(self) -> Vec<HistoryRow> {
        let sub = self.subscription.as_ref().map(SubscriptionId::as_str);
        let mut rows: Vec<HistoryRow> = self
            .history
            .into_iter()
            .filter(|row| match sub {
                None => true,
                // The replay kept only orders listing the subscription, so the
                // order-level rows are that order's.
                Some(s) => row.line_id.is_none() || row.subscription_id.as_deref() == Some(s),
            })
            .collect();
        // Streams replayed one after the other: back to the ledger's order.
        rows.sort_by_key(|row| row.position);
        rows
    }
}

/// Which streams a replay reads.
pub(crate) enum Streams<'a> {
    /// The whole log, in position order.
    All,
    /// Only these order streams.
    Orders(&'a [OrderId]),
}

impl<'a> Streams<'a> {
    fn of(order_id: Option<&'a OrderId>) -> Streams<'a> {
        match order_id {
            Some(id) => Streams::Orders(std::slice::from_ref(id)),
            None => Streams::All,
        }
    }
}

/// The `lines` view as it was at `as_of`, replayed from the store in memory
/// (not from the read model): the point-in-time state of R1–R8.
///
/// The rows are sorted like [`crate::ReadModels::lines`]: by order id, then in
/// order-file order. A query by order reads that order's stream only; any
/// other reads the whole log ([`crate::ReadModels::lines_as_of`] avoids that
/// for a query by subscription).
pub fn lines_as_of(
    store: &dyn EventStore,
    q: &LineQuery,
    as_of: AsOf,
) -> Result<Vec<LineRow>, ProjectionError> {
    lines_as_of_in(store, q, Streams::of(q.order_id.as_ref()), as_of)
}

/// [`lines_as_of`], reading only `streams`.
pub(crate) fn lines_as_of_in(
    store: &dyn EventStore,
    q: &LineQuery,
    streams: Streams<'_>,
    as_of: AsOf,
) -> Result<Vec<LineRow>, ProjectionError> {
    Ok(Replay::new(q.subscription_id.clone(), false)
        .run(store, streams, as_of)?
        .lines())
}

/// The `history` view as it was at `as_of`, replayed from the store in
/// memory: the same rows [`crate::ReadModels::history`] gives, but only for
/// events at or before the point.
pub fn history_as_of(
    store: &dyn EventStore,
    q: &HistoryQuery,
    as_of: AsOf,
) -> Result<Vec<HistoryRow>, ProjectionError> {
    history_as_of_in(store, q, Streams::of(q.order_id.as_ref()), as_of)
}

/// [`history_as_of`], reading only `streams`.
pub(crate) fn history_as_of_in(
    store: &dyn EventStore,
    q: &HistoryQuery,
    streams: Streams<'_>,
    as_of: AsOf,
) -> Result<Vec<HistoryRow>, ProjectionError> {
    Ok(Replay::new(q.subscription_id.clone(), true)
        .run(store, streams, as_of)?
        .history())
}

/// The states of `wanted` orders, each folded from the first `version`
/// events of its stream in the store (for a fold that runs ahead of the
/// writes, so cannot read the read models' own tables).
pub(crate) fn load_from_log(
    store: &dyn EventStore,
    wanted: &[(OrderId, StreamVersion)],
) -> Result<HashMap<OrderId, OrderState>, ProjectionError> {
    let mut out = HashMap::new();
    for (id, version) in wanted {
        let events: Vec<RecordedEvent> = store
            .read_stream(&id.stream_id(), 0)?
            .into_iter()
            .take_while(|e| e.stream_version <= *version)
            .collect();
        out.insert(id.clone(), fold_stored(id, *version, events)?);
    }
    Ok(out)
}
