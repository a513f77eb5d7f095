//! The synthesizer: turns a workload into the exact events the ledger would
//! record, in memory, without a database.
//!
//! This module exists because building a ledger of a million events through
//! durable one-command transactions would take most of an hour. The
//! synthesizer runs the same pure code the application runs — the domain's
//! `decide`, `due_events` and `evolve`, the application's `to_new_events`
//! and the store's hash chain — step by step exactly as `Ledger::execute`
//! and `Ledger::tick` would (a test checks the two give the same events), and
//! hands out [`RecordedEvent`]s with positions and hashes, ready to be
//! written as a JSON Lines export and imported.
//!
//! Memory stays bounded: an order's state is dropped once it has no step
//! left and nothing left to become due.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use provledger::script::Step;
use provledger::shell::{decision_appends, request_fingerprint};
use provledger::{to_new_events, AppError, Envelope, Origin};
use provledger_domain::{
    decide_command, due_events, evolve, next_due, Actor, Command, Event, LedgerCommand, OrderId,
    OrderState, RefusedAction, SetupView,
};
use provledger_store::hash::{event_hash, GENESIS_HASH};
use provledger_store::{
    to_stored_precision, ExpectedVersion, NewEvent, RecordedEvent, StreamAppend,
};

use crate::workload::{Action, Workload};

/// What the synthesizer has produced so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynthStats {
    /// Events recorded.
    pub events: u64,
    /// Command steps that appended events (accepted or refused by a rule).
    pub commands: u64,
    /// Command steps refused by a rule (a `CommandRefused` recorded).
    pub refusals: u64,
    /// Command steps that were bad input (nothing recorded).
    pub errors: u64,
    /// Ticks run.
    pub ticks: u64,
    /// Transaction Manager rows the events will produce (an estimate used
    /// to size ledgers; the read models hold the real count).
    pub transaction_rows: u64,
    /// Order states held in memory at the moment.
    pub live_orders: u64,
}

/// Replays a workload's steps into recorded events.
pub struct Synthesizer<'w> {
    workload: &'w Workload,
    states: HashMap<u32, OrderState>,
    due: BTreeSet<(DateTime<Utc>, u32)>,
    due_of: HashMap<u32, DateTime<Utc>>,
    remaining: Vec<u32>,
    position: u64,
    last_hash: String,
    next_step: usize,
    stats: SynthStats,
}

impl<'w> Synthesizer<'w> {
    /// A synthesizer at the start of `workload`, on an empty ledger.
    pub fn new(workload: &'w Workload) -> Synthesizer<'w> {
        let mut remaining = vec![0u32; workload.spec().orders as usize];
        for s in workload.steps() {
            if let Some(r) = remaining.get_mut(s.order as usize) {
                *r += 1;
            }
        }
        Synthesizer {
            workload,
            states: HashMap::new(),
            due: BTreeSet::new(),
            due_of: HashMap::new(),
            remaining,
            position: 0,
            last_hash: GENESIS_HASH.to_string(),
            next_step: 0,
            stats: SynthStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SynthStats {
        SynthStats {
            live_orders: self.states.len() as u64,
            ..self.stats
        }
    }

    /// Index of the next step to run.
    pub fn next_step(&self) -> usize {
        self.next_step
    }

    /// Run the next step, handing each recorded event to `sink`. Returns
    /// false when the workload is exhausted.
    pub fn step(
        &mut self,
        sink: &mut dyn FnMut(RecordedEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        let Some(planned) = self.workload.steps().get(self.next_step).copied() else {
            return Ok(false);
        };
        self.next_step += 1;
        let step = self.workload.materialise(&planned);
        if let Step::Tick { now } = step {
            self.tick(now, sink)?;
            return Ok(true);
        }
        let prepared = step
            .prepare()
            .context("a generated step does not validate")?
            .context("a command step prepared to nothing")?;
        let order = planned.order;
        if let Some(r) = self.remaining.get_mut(order as usize) {
            *r = r.saturating_sub(1);
        }
        let state = self.states.remove(&order).unwrap_or_default();
        let ctx = provledger_domain::Context::new(
            prepared.context.actor.clone(),
            to_stored_precision(prepared.context.at),
        );
        let is_place = matches!(prepared.command, Command::PlaceOrder(_));
        let command = LedgerCommand::Order(prepared.command);
        let fingerprint = request_fingerprint(&prepared.order_id, &command, &ctx.actor);
        // The workload's ids are unique: every reservation a placement
        // claims is new, as the shell would find it.
        let view = SetupView {
            order: state.clone(),
            ..SetupView::default()
        };
        let decided = if state.order.is_none() && !is_place {
            Err(AppError::UnknownOrder {
                order_id: prepared.order_id.to_string(),
            })
        } else {
            decide_command(&prepared.order_id, &view, command, &ctx).map_err(AppError::from)
        };
        let state = match decided {
            Ok(decision) => {
                self.stats.commands += 1;
                if decision.order.iter().any(Event::is_refusal) {
                    self.stats.refusals += 1;
                }
                let origin = Origin::cli();
                let envelope = Envelope {
                    actor: &ctx.actor,
                    origin: &origin,
                    fingerprint: Some(&fingerprint),
                };
                let appends = decision_appends(&prepared.order_id, &view, &decision, &envelope);
                self.record_appends(state, &decision.order, appends, ctx.at, sink)?
            }
            Err(_) => {
                self.stats.errors += 1;
                state
            }
        };
        self.settle(order, state);
        debug_assert!(planned.action != Action::Tick);
        Ok(true)
    }

    /// Run steps until at least `events` events have been recorded in all
    /// (or the workload ends). Returns the stats.
    pub fn run_until(
        &mut self,
        events: u64,
        sink: &mut dyn FnMut(RecordedEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<SynthStats> {
        while self.stats.events < events {
            if !self.step(sink)? {
                break;
            }
        }
        Ok(self.stats())
    }

    /// `Ledger::tick`: every order due at `now`, in order-id order.
    fn tick(
        &mut self,
        now: DateTime<Utc>,
        sink: &mut dyn FnMut(RecordedEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let now = to_stored_precision(now);
        self.stats.ticks += 1;
        let mut orders: Vec<u32> = self
            .due
            .range(..=(now, u32::MAX))
            .map(|(_, order)| *order)
            .collect();
        orders.sort_unstable();
        for order in orders {
            let state = self.states.remove(&order).unwrap_or_default();
            let due = due_events(&state, now);
            let state = if due.is_empty() {
                state
            } else {
                let order_id = OrderId::parse(&Workload::order_id(order))?;
                self.record(&order_id, state, &due, &Actor::System, now, sink)?
            };
            self.settle(order, state);
        }
        Ok(())
    }

    /// Put an order's state back, re-index when it is next due, or drop it
    /// when nothing more will happen to it.
    fn settle(&mut self, order: u32, state: OrderState) {
        if let Some(old) = self.due_of.remove(&order) {
            self.due.remove(&(old, order));
        }
        let next = next_due(&state);
        let more_steps = self.remaining.get(order as usize).is_some_and(|r| *r > 0);
        if let Some(t) = next {
            self.due.insert((t, order));
            self.due_of.insert(order, t);
        }
        if next.is_some() || more_steps {
            self.states.insert(order, state);
        }
    }

    /// Record a decision's appends (the order stream first, then new
    /// reservation streams) the way the store would.
    fn record_appends(
        &mut self,
        mut state: OrderState,
        order_events: &[Event],
        appends: Vec<StreamAppend>,
        recorded_at: DateTime<Utc>,
        sink: &mut dyn FnMut(RecordedEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<OrderState> {
        let recorded_at = to_stored_precision(recorded_at);
        for (i, append) in appends.into_iter().enumerate() {
            let base = match append.expected {
                ExpectedVersion::Exact(v) => v,
                _ => 0,
            };
            for (k, new) in append.events.into_iter().enumerate() {
                if i == 0 {
                    self.stats.transaction_rows += transaction_rows(&state, &order_events[k]);
                    state = evolve(state, &order_events[k]);
                }
                self.position += 1;
                let version = base + 1 + k as u64;
                let mut recorded = RecordedEvent {
                    position: self.position,
                    stream_id: append.stream_id.clone(),
                    stream_version: version,
                    event_type: new.event_type,
                    schema_version: new.schema_version,
                    payload: new.payload,
                    metadata: new.metadata,
                    occurred_at: to_stored_precision(new.occurred_at),
                    recorded_at,
                    prev_hash: std::mem::take(&mut self.last_hash),
                    hash: String::new(),
                };
                recorded.hash = event_hash(&recorded);
                self.last_hash = recorded.hash.clone();
                self.stats.events += 1;
                sink(recorded)?;
            }
        }
        Ok(state)
    }

    /// Record `events` on the order's stream the way the store would.
    fn record(
        &mut self,
        order_id: &OrderId,
        mut state: OrderState,
        events: &[Event],
        actor: &Actor,
        recorded_at: DateTime<Utc>,
        sink: &mut dyn FnMut(RecordedEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<OrderState> {
        let stream_id = order_id.stream_id();
        let origin = Origin::cli();
        let envelope = Envelope {
            actor,
            origin: &origin,
            fingerprint: None,
        };
        let new_events = to_new_events(order_id, state.version, events, &envelope);
        let recorded_at = to_stored_precision(recorded_at);
        for (event, new) in events.iter().zip(new_events) {
            self.stats.transaction_rows += transaction_rows(&state, event);
            let NewEvent {
                event_type,
                schema_version,
                payload,
                metadata,
                occurred_at,
            } = new;
            self.position += 1;
            let mut recorded = RecordedEvent {
                position: self.position,
                stream_id: stream_id.clone(),
                stream_version: state.version + 1,
                event_type,
                schema_version,
                payload,
                metadata,
                occurred_at: to_stored_precision(occurred_at),
                recorded_at,
                prev_hash: std::mem::take(&mut self.last_hash),
                hash: String::new(),
            };
            recorded.hash = event_hash(&recorded);
            self.last_hash = recorded.hash.clone();
            self.stats.events += 1;
            state = evolve(state, event);
            sink(recorded)?;
        }
        Ok(state)
    }
}

/// How many Transaction Manager rows an event yields (see the projections'
/// `transaction_rows`); `before` is the order's state before it.
fn transaction_rows(before: &OrderState, event: &Event) -> u64 {
    let lines = before.order.as_ref().map_or(0, |o| o.lines.len() as u64);
    match event {
        Event::ProvisioningContactChanged { .. }
        | Event::ProvisioningEmailResent { .. }
        | Event::SupportCaseOpened { .. } => 1,
        Event::OrgOnboarded { .. } | Event::SetupStarted { .. } => lines,
        Event::CommandRefused {
            action,
            line_id,
            applied_to_all_lines,
            ..
        } => {
            if line_id.is_none()
                || (*action == RefusedAction::ChangeContact && *applied_to_all_lines)
            {
                lines
            } else {
                1
            }
        }
        _ => 0,
    }
}
