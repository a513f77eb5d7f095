//! The imperative shell around the pure decider: load a stream, decide,
//! append at the expected version, bring the read models up to date.
//!
//! This is the only place where the domain meets the store. It owns the
//! conventions that tie them together: one stream per order, transaction ids,
//! event metadata, the bounded retry on a version conflict, idempotency keys,
//! and the scheduler's `tick`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use provledger_domain::{
    describe_services, due_events, Actor, ClockMode, Context, Event, LedgerCommand, LineId,
    OrderId, OrderState, OrgId, WhoSetsUp,
};
use provledger_projections::{
    AsOf, HistoryQuery, HistoryRow, LineQuery, LineRow, ReadModels, TransactionQuery,
    TransactionRow,
};
use provledger_store::{
    to_stored_precision, AppendRequest, EventStore, ExpectedVersion, OpenMode, RecordedEvent,
    VerifyReport,
};
use serde::Serialize;

use crate::shell::{to_new_events, Envelope, Origin, Submission};
use crate::state_cache::OrderCache;
use crate::AppError;

/// How many times a command is decided before a version conflict is
/// reported. Generous: several processes writing one order keep winning
/// and losing to each other under load, and a valid command should not fail
/// for that (at most about 3 s of backoff in all).
pub const MAX_ATTEMPTS: u32 = 25;

/// Wait a little before re-deciding after the `attempt`-th conflict: a
/// random time up to 2^attempt ms (at most 128 ms), so that writers racing
/// for one stream stop colliding in lock-step (without it, four processes
/// writing one order lose to each other often enough to exhaust the retries).
pub(crate) fn backoff(attempt: u32) {
    let ceiling_ms = 1u64 << attempt.min(7);
    let random = (uuid::Uuid::new_v4().as_u128() & 0xffff_ffff) as u64;
    let micros = random % (ceiling_ms * 1000);
    std::thread::sleep(std::time::Duration::from_micros(micros));
}

/// Due orders whose events one transaction of a `tick` appends at most,
/// so that the database's write lock is held for one such batch at a time.
pub const TICK_BATCH: usize = 256;

/// Actor name recorded for scheduled events.
pub const SYSTEM_ACTOR: &str = "system";

/// Whether a command was carried out or refused by a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Accepted: its events were appended.
    Success,
    /// Refused by a rule: the refusal was appended (R12).
    Failed,
}

/// The result of one write command, as printed by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandOutcome {
    /// The transaction the command's events belong to.
    pub transaction_id: String,
    /// Success or failed (refused).
    pub status: OutcomeStatus,
    /// What happened, or why it was refused and what to do.
    pub message: String,
    /// Positions of every event appended (scheduled catch-up included).
    pub positions: Vec<u64>,
    /// True when an idempotency key made this a replay of an earlier result.
    pub replayed: bool,
}

/// What a `tick` appended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Orders that had something due.
    pub orders: u64,
    /// R2 initial provisioning emails sent.
    pub initial_emails_sent: u64,
    /// R7 lines closed.
    pub lines_closed: u64,
    /// R11 escalations raised.
    pub escalations_raised: u64,
    /// Positions appended.
    pub positions: Vec<u64>,
}

/// A ledger: an event store plus its read models.
pub struct Ledger {
    store: Box<dyn EventStore>,
    read_models: ReadModels,
    /// Order states recently folded or decided (see [`OrderCache`]).
    states: OrderCache,
    /// When set, commands leave the read models to be brought up to date
    /// by the next read or by a background projector.
    deferred_projections: AtomicBool,
    /// The clock mode, once the ledger's first event has fixed it.
    clock: OnceLock<ClockMode>,
    /// Opened read-only: reads never catch the read models up (that is the
    /// writers' and the projection workers' job); a read on read models that
    /// lag the log replays the log instead (see [`Ledger::lag`]).
    read_only: bool,
}

/// The stream and transaction id conventions.
pub fn transaction_id(order_id: &OrderId, stream_version: u64) -> String {
    format!("TX-{order_id}-{stream_version}")
}

/// Decode and fold an order stream's recorded events.
pub fn fold_stream(events: &[RecordedEvent]) -> Result<OrderState, AppError> {
    crate::shell::fold(events)
}

impl Ledger {
    /// Open (creating on first use) the store at `url` and its read models:
    /// [`Ledger::open_with`] in [`OpenMode::Create`].
    pub fn open(url: &str) -> Result<Ledger, AppError> {
        Ledger::open_with(url, OpenMode::Create)
    }

    /// Open the ledger at `url` in `mode`: only [`OpenMode::Create`] makes
    /// a new ledger; [`OpenMode::ReadOnly`] writes nothing at all (see
    /// [`OpenMode`]) and needs only read access to the database.
    pub fn open_with(url: &str, mode: OpenMode) -> Result<Ledger, AppError> {
        let store = provledger_store::open_with_mode(url, mode)?;
        let read_models = ReadModels::open_with_mode(url, mode)?;
        let mut ledger = Ledger::from_parts(store, read_models);
        ledger.read_only = mode.is_read_only();
        Ok(ledger)
    }

    /// True when this ledger was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// How many events the read models are behind the log (0: current).
    pub fn lag(&self) -> Result<u64, AppError> {
        let head = self.store.head()?.map_or(0, |h| h.position);
        let checkpoint = self.read_models.checkpoint()?;
        Ok(head.saturating_sub(checkpoint))
    }

    /// Assemble a ledger from parts (tests, other backends).
    pub fn from_parts(store: Box<dyn EventStore>, read_models: ReadModels) -> Ledger {
        Ledger {
            store,
            read_models,
            states: OrderCache::default(),
            deferred_projections: AtomicBool::new(false),
            clock: OnceLock::new(),
            read_only: false,
        }
    }

    /// Whether commands bring the read models up to date before they
    /// return (the default) or leave that to the next read, to a background
    /// projector ([`crate::group_commit::Projector`]) or to `provledger
    /// project`. Either way every read through the ledger catches up first,
    /// so what a read returns is the same; deferring takes the projection
    /// work off each command's path and lets it run in batches.
    pub fn set_deferred_projections(&self, deferred: bool) {
        self.deferred_projections.store(deferred, Ordering::Relaxed);
    }

    /// True when commands leave the read models for later.
    pub fn deferred_projections(&self) -> bool {
        self.deferred_projections.load(Ordering::Relaxed)
    }

    /// Where the clock mode is remembered.
    pub(crate) fn clock_cache(&self) -> &OnceLock<ClockMode> {
        &self.clock
    }

    /// The order states this ledger keeps between commands.
    pub(crate) fn states(&self) -> &OrderCache {
        &self.states
    }

    /// An order's state: from the cache, else folded from its stream.
    pub(crate) fn current_state(&self, order_id: &OrderId) -> Result<OrderState, AppError> {
        if let Some(state) = self.states.get(order_id) {
            return Ok(state);
        }
        self.load(order_id)
    }

    /// Load `order_id` into the state cache if it is not there, so that a
    /// later decision (e.g. on a group committer's thread) needs no read.
    /// Errors are left for that decision to report.
    pub(crate) fn warm(&self, order_id: &OrderId) {
        if self.states.get(order_id).is_none() {
            if let Ok(state) = self.load(order_id) {
                self.states.put_if_absent(order_id.clone(), state);
            }
        }
    }

    /// The event store.
    pub fn store(&self) -> &dyn EventStore {
        self.store.as_ref()
    }

    /// The read models.
    pub fn read_models(&self) -> &ReadModels {
        &self.read_models
    }

    /// Load one order's state.
    pub fn load(&self, order_id: &OrderId) -> Result<OrderState, AppError> {
        fold_stream(&self.store.read_stream(&order_id.stream_id(), 0)?)
    }

    /// Carry out a command against one order, dated by the caller (for
    /// programs and tests on simulated ledgers; the CLI and HTTP build a
    /// [`Submission`] themselves). Goes through [`Ledger::submit`].
    pub fn execute(
        &self,
        order_id: &OrderId,
        command: impl Into<LedgerCommand>,
        ctx: &Context,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, AppError> {
        self.submit(
            Submission::new(order_id.clone(), command, ctx.actor.clone(), Origin::cli())
                .at(ctx.at, "--at")
                .with_key(idempotency_key.map(str::to_string)),
        )
    }

    /// Run what is due at `now` for every order: R2 initial emails, R7
    /// closures, R11 escalations. Each event is dated at its due time.
    /// Idempotent: a second tick at the same time appends nothing.
    ///
    /// The due orders' events are appended `TICK_BATCH` orders per
    /// transaction, with their read-model rows (one commit, one
    /// fsync per batch): the read models never lag what a tick committed.
    /// Orders whose stream moved meanwhile are decided again; if a tick
    /// fails, the batches before the failure stay appended, and running it
    /// again appends only what is still due.
    pub fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, AppError> {
        let now = to_stored_precision(now);
        self.read_models.catch_up(self.store.as_ref())?;
        let mut report = TickReport::default();
        let due = self.read_models.orders_due(now)?;
        for orders in due.chunks(TICK_BATCH) {
            self.tick_orders(orders.to_vec(), now, &mut report)?;
        }
        self.read_models.catch_up(self.store.as_ref())?;
        Ok(report)
    }

    /// Append what is due at `now` for `orders` in one transaction per
    /// round, retrying (in the next round) the orders whose stream moved.
    fn tick_orders(
        &self,
        mut orders: Vec<OrderId>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), AppError> {
        let origin = Origin::scheduler();
        let envelope = Envelope {
            actor: &Actor::System,
            origin: &origin,
            fingerprint: None,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let mut units = Vec::new();
            let mut requests = Vec::new();
            let mut known = Vec::new();
            for order_id in orders.drain(..) {
                let state = self.current_state(&order_id)?;
                let due = due_events(&state, now);
                if due.is_empty() {
                    continue;
                }
                known.push((order_id.clone(), state.clone()));
                requests.push(AppendRequest::single(
                    order_id.stream_id(),
                    ExpectedVersion::Exact(state.version),
                    to_new_events(&order_id, state.version, &due, &envelope),
                ));
                let after = due.iter().fold(state, provledger_domain::evolve);
                units.push((order_id, due, after));
            }
            if requests.is_empty() {
                return Ok(());
            }
            // Read models not written inline are caught up by the caller.
            let appended = match self.append_requests(requests, !self.deferred_projections(), known)
            {
                Ok((appended, _)) => appended,
                Err(e) => {
                    // Nothing of this round was written.
                    units
                        .iter()
                        .for_each(|(order_id, ..)| self.states.evict(order_id));
                    return Err(e.into());
                }
            };
            let mut failed = None;
            for ((order_id, due, after), result) in units.into_iter().zip(appended) {
                match result {
                    Ok(appended) => {
                        report.orders += 1;
                        for event in &due {
                            match event {
                                Event::InitialEmailSent { .. } => report.initial_emails_sent += 1,
                                Event::LineClosed { .. } => report.lines_closed += 1,
                                Event::EscalationRaised { .. } => report.escalations_raised += 1,
                                _ => {}
                            }
                        }
                        report.positions.extend(appended.positions());
                        self.states.put(order_id, after);
                    }
                    Err(e) => {
                        self.states.evict(&order_id);
                        if e.is_conflict() {
                            orders.push(order_id);
                        } else {
                            failed.get_or_insert(e);
                        }
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e.into());
            }
            if orders.is_empty() {
                return Ok(());
            }
            if attempt < MAX_ATTEMPTS {
                backoff(attempt);
            }
        }
        Err(AppError::ConflictRetriesExhausted {
            order_id: orders.first().map(ToString::to_string).unwrap_or_default(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Line state, current or at a point in time (replayed, not read-model).
    pub fn lines(&self, query: &LineQuery, as_of: Option<AsOf>) -> Result<Vec<LineRow>, AppError> {
        if self.read_only {
            let store = self.store.as_ref();
            return Ok(match as_of {
                Some(point) => provledger_projections::lines_as_of(store, query, point)?,
                None => match self.current_head_if_lagging()? {
                    Some(head) => {
                        provledger_projections::lines_as_of(store, query, AsOf::Position(head))?
                    }
                    None => self.read_models.lines(query)?,
                },
            });
        }
        match as_of {
            Some(point) => Ok(self
                .read_models
                .lines_as_of(self.store.as_ref(), query, point)?),
            None => {
                self.read_models.catch_up(self.store.as_ref())?;
                Ok(self.read_models.lines(query)?)
            }
        }
    }

    /// The Transaction Manager view (R9).
    ///
    /// On a read-only ledger the rows are those of the read models as they
    /// stand; [`Ledger::lag`] says how far behind the log they are.
    pub fn transactions(&self, query: &TransactionQuery) -> Result<Vec<TransactionRow>, AppError> {
        if !self.read_only {
            self.read_models.catch_up(self.store.as_ref())?;
        }
        Ok(self.read_models.transactions(query)?)
    }

    /// Every event of an order or subscription, current or up to a point.
    pub fn history(
        &self,
        query: &HistoryQuery,
        as_of: Option<AsOf>,
    ) -> Result<Vec<HistoryRow>, AppError> {
        if self.read_only {
            let store = self.store.as_ref();
            return Ok(match as_of {
                Some(point) => provledger_projections::history_as_of(store, query, point)?,
                None => match self.current_head_if_lagging()? {
                    Some(head) => {
                        provledger_projections::history_as_of(store, query, AsOf::Position(head))?
                    }
                    None => self.read_models.history(store, query)?,
                },
            });
        }
        match as_of {
            Some(point) => Ok(self
                .read_models
                .history_as_of(self.store.as_ref(), query, point)?),
            None => {
                self.read_models.catch_up(self.store.as_ref())?;
                Ok(self.read_models.history(self.store.as_ref(), query)?)
            }
        }
    }

    /// The log's head position when the read models lag behind it.
    fn current_head_if_lagging(&self) -> Result<Option<u64>, AppError> {
        let head = self.store.head()?.map_or(0, |h| h.position);
        let checkpoint = self.read_models.checkpoint()?;
        Ok((checkpoint < head).then_some(head))
    }

    /// Recompute the hash chain.
    pub fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, AppError> {
        Ok(provledger_store::verify(self.store.as_ref(), progress)?)
    }

    /// Rebuild every read model from position 0.
    pub fn rebuild(&self, progress: &mut dyn FnMut(u64)) -> Result<u64, AppError> {
        Ok(self.read_models.rebuild(self.store.as_ref(), progress)?)
    }

    /// Bring the read models up to date with the store.
    pub fn catch_up(&self) -> Result<u64, AppError> {
        Ok(self.read_models.catch_up(self.store.as_ref())?)
    }

    /// Bring the read models up to date after a bulk load (see
    /// [`ReadModels::catch_up_bulk`]); returns the events applied.
    pub fn catch_up_bulk(&self, progress: &mut dyn FnMut(u64)) -> Result<u64, AppError> {
        Ok(self
            .read_models
            .catch_up_bulk(self.store.as_ref(), progress)?)
    }
}

/// Summarise the events a command appended as the outcome the user sees.
pub fn outcome_of(events: &[RecordedEvent], replayed: bool) -> Result<CommandOutcome, AppError> {
    let positions = events.iter().map(|e| e.position).collect();
    // Setup commands also write organisation and reservation streams; the
    // outcome is told by the order stream's events.
    let order_events: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| OrderId::from_stream_id(&e.stream_id).is_some())
        .collect();
    let Some(last) = order_events.last() else {
        return Err(AppError::BadInput("the command appended no events".into()));
    };
    let transaction_id = last.metadata.transaction_id.clone();
    let mut decoded = Vec::new();
    for recorded in order_events
        .into_iter()
        .filter(|e| e.metadata.transaction_id == transaction_id)
    {
        decoded.push(crate::shell::decode::<OrderState>(recorded)?);
    }
    let (status, message) = describe(&decoded);
    Ok(CommandOutcome {
        transaction_id,
        status,
        message,
        positions,
        replayed,
    })
}

fn describe(events: &[Event]) -> (OutcomeStatus, String) {
    if let Some(Event::CommandRefused { reason, .. }) = events.iter().find(|e| e.is_refusal()) {
        return (OutcomeStatus::Failed, format!("refused: {reason}"));
    }
    let mut parts = Vec::new();
    for event in events {
        let text = match event {
            Event::OrderPlaced {
                order_id, lines, ..
            } => format!("order {order_id} placed with {} line(s)", lines.len()),
            Event::ProvisioningContactChanged {
                line_id,
                old_email,
                new_email,
                email_sent,
                ..
            } => {
                let mut s = format!(
                    "line {line_id}: provisioning contact changed from {old_email} to {new_email}"
                );
                if *email_sent {
                    s.push_str(&format!("; provisioning email sent to {new_email}"));
                } else {
                    s.push_str("; the initial email will go to the new contact on the RSD");
                }
                s
            }
            Event::ProvisioningEmailResent { line_id, to, .. } => {
                format!("line {line_id}: provisioning email resent to {to}")
            }
            Event::OrgOnboarded { org_id, .. } => format!(
                "order onboarded to organisation {org_id} (Point of No Return): the contact can no longer be changed nor the email resent here"
            ),
            Event::SupportCaseOpened {
                case_id,
                line_id,
                request_type,
                ..
            } => format!(
                "support case {case_id} opened for line {line_id}: {}",
                request_type.label()
            ),
            Event::SupportCaseResolved {
                case_id, outcome, ..
            } => format!(
                "support case {case_id} resolved: {}",
                outcome.as_str().replace('_', " ")
            ),
            Event::SetupStarted { .. } => "setup started".to_string(),
            Event::SetupHandedOver { to, .. } => format!(
                "setup handed over to {to}, who can now complete it from the \"Set up now\" link"
            ),
            Event::SetupCompleted {
                who_sets_up,
                partner_org_id,
                partner_org_created,
                customer_org_id,
                customer_org_created,
                customer_admin_email,
                completed_by,
                ..
            } => {
                let created = |yes: bool| if yes { "new" } else { "existing" };
                let mut s = format!(
                    "setup completed: customer organisation {customer_org_id} ({}) with administrator {customer_admin_email}, partner organisation {partner_org_id} ({})",
                    created(*customer_org_created),
                    created(*partner_org_created)
                );
                if *partner_org_created {
                    s.push_str("; its administrator sets its password next (R17)");
                }
                if *who_sets_up == WhoSetsUp::Customer {
                    s.push_str("; the customer sets up the services, and the partner has no access to manage the customer organisation");
                } else {
                    s.push_str(&format!("; {completed_by} sets up the services"));
                }
                s
            }
            Event::ServicesConfigured {
                org_id,
                calling,
                meeting,
                subdomain,
                ..
            } => format!(
                "services set up for organisation {org_id}: {}",
                describe_services(calling.as_ref(), meeting.as_ref(), subdomain.as_ref())
            ),
            Event::LineProvisioned { .. } => continue,
            other => other.event_type().to_string(),
        };
        parts.push(text);
    }
    let provisioned: Vec<(&LineId, &OrgId)> = events
        .iter()
        .filter_map(|e| match e {
            Event::LineProvisioned {
                line_id, org_id, ..
            } => Some((line_id, org_id)),
            _ => None,
        })
        .collect();
    if let Some((_, org_id)) = provisioned.first() {
        let lines: Vec<&str> = provisioned.iter().map(|(l, _)| l.as_str()).collect();
        parts.push(format!(
            "provisioned in organisation {org_id}: line(s) {} activated and billing started for every purchased service",
            lines.join(", ")
        ));
    }
    (OutcomeStatus::Success, parts.join("; "))
}
