//! Group commit: many commands, one durable transaction, one result each.
//!
//! This module exists because a durable commit costs a flush to disk
//! (`synchronous=FULL` on SQLite, a WAL flush on PostgreSQL), and that flush,
//! not the CPU, bounds how many commands a ledger accepts per second when
//! each command has its own transaction. When many commands arrive at once
//! (the HTTP server, a batch file) they can share one transaction and one
//! flush — without giving up anything a single command is promised:
//!
//! * **Own result.** Each command gets its own outcome, its own recorded
//!   refusal (R12), its own bad-input error or conflict. One command's
//!   failure never undoes another's events.
//! * **Same decisions.** Commands are decided in submission order against
//!   the batch's evolving state, so two commands on one order in one batch
//!   are decided exactly as if they had been executed one after the other
//!   (a test checks that a batch appends the same events as sequential
//!   [`Ledger::execute`] calls).
//! * **Durable before acknowledged.** No result is returned before the
//!   transaction holding its events has committed durably; a batch whose
//!   transaction fails reports [`AppError::BatchFailed`] to every command
//!   in it, none of which was written.
//!
//! [`Ledger::execute_batch`] runs one batch; [`GroupCommitter`] is a
//! committer thread fed by any number of submitting threads, each blocked
//! until its own command is durable. Batches form by themselves: while one
//! transaction is being flushed, the next commands queue up.
//!
//! **How a batch is appended.** Each command becomes one stream append at
//! the version its decision was based on. Consecutive commands without an
//! idempotency key form one request (all or nothing), so a command is never
//! applied on top of an earlier one of the same order that failed; a command
//! with a key is a request of its own, so the key covers exactly its events.
//! All requests go to the store in one `append_batch`: one transaction, each
//! request with its own result, positions in submission order. An order is
//! in one request per round; a command that would put it in a second one
//! (after a keyed command of that order) waits for the next round. A request
//! that meets a version conflict is decided again on fresh state in the next
//! round; the order whose stream moved counts an attempt, and gives up after
//! [`MAX_ATTEMPTS`] as `execute` does. The read models are brought up to
//! date once, after the last round.
//!
//! **State cache.** The committer keeps recently used order states in an
//! [`OrderCache`], so a busy order is not re-read and re-folded for every
//! command. A stale entry (another process wrote the stream) cannot cause a
//! wrong decision to be stored: its append names the version the entry was
//! folded to, conflicts, and the order is reloaded from the store.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use provledger_domain::{decide, evolve, Command, Context, OrderId, OrderState};
use provledger_store::{
    to_stored_precision, AppendOutcome, AppendRequest, ExpectedVersion, NewEvent, StoreError,
    StreamAppend,
};

use crate::ledger::{fold_stream, outcome_of, to_new_events, MAX_ATTEMPTS};
use crate::{AppError, CommandOutcome, Ledger};

/// One command of a batch: the same arguments as [`Ledger::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCommand {
    /// The order the command targets.
    pub order_id: OrderId,
    /// The command.
    pub command: Command,
    /// Who and when.
    pub context: Context,
    /// A key that makes a retry return the first result.
    pub idempotency_key: Option<String>,
}

impl BatchCommand {
    /// A command without an idempotency key.
    pub fn new(order_id: OrderId, command: Command, context: Context) -> BatchCommand {
        BatchCommand {
            order_id,
            command,
            context,
            idempotency_key: None,
        }
    }
}

/// Order states kept between batches, each exactly the fold of the first
/// `version` events of its stream.
///
/// Entries are trusted without a read: a stale one makes its append
/// conflict, which evicts it (see the module docs).
#[derive(Debug, Default)]
pub struct OrderCache {
    states: HashMap<OrderId, OrderState>,
    capacity: usize,
}

impl OrderCache {
    /// A cache holding at most `capacity` orders (0: caching disabled).
    pub fn new(capacity: usize) -> OrderCache {
        OrderCache {
            states: HashMap::new(),
            capacity,
        }
    }

    /// Orders currently cached.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    fn get(&self, order_id: &OrderId) -> Option<OrderState> {
        self.states.get(order_id).cloned()
    }

    fn put(&mut self, order_id: OrderId, state: OrderState) {
        if self.capacity == 0 {
            return;
        }
        if self.states.len() >= self.capacity && !self.states.contains_key(&order_id) {
            // Simple and bounded: start afresh rather than track recency.
            self.states.clear();
        }
        self.states.insert(order_id, state);
    }

    fn evict(&mut self, order_id: &OrderId) {
        self.states.remove(order_id);
    }
}

/// A command decided in this round, waiting for its unit's append.
struct Decided {
    /// Index of the command in the batch.
    index: usize,
    /// How many events it contributes to its unit's request.
    events: usize,
}

/// One append request of a round: a run of commands without idempotency
/// keys (one stream append each, in submission order, all or nothing), or
/// a single command with a key.
struct Unit {
    request: AppendRequest,
    commands: Vec<Decided>,
    /// The orders the unit touches; each order is in one unit per round.
    orders: Vec<OrderId>,
}

impl Ledger {
    /// Carry out several commands in one durable transaction, each with its
    /// own result, in submission order (see the module docs).
    ///
    /// Equivalent to calling [`Ledger::execute`] for each command in turn,
    /// except that the commands share transactions: nothing is returned
    /// before the events are durable. A failed transaction gives every
    /// command not yet written [`AppError::BatchFailed`]. If the read models
    /// cannot be brought up to date afterwards, the written commands still
    /// report success (they are durable); the next read catches up.
    pub fn execute_batch(
        &self,
        commands: Vec<BatchCommand>,
    ) -> Vec<Result<CommandOutcome, AppError>> {
        self.execute_batch_cached(commands, &mut OrderCache::new(0))
    }

    /// [`Ledger::execute_batch`] with a state cache kept between batches.
    pub fn execute_batch_cached(
        &self,
        commands: Vec<BatchCommand>,
        cache: &mut OrderCache,
    ) -> Vec<Result<CommandOutcome, AppError>> {
        let mut results: Vec<Option<Result<CommandOutcome, AppError>>> =
            commands.iter().map(|_| None).collect();
        let written = run_batch(self, &commands, cache, &mut results);
        if written {
            // Derived data: a failure here does not undo durable commands;
            // every read catches up first and reports it.
            let _ = self.read_models().catch_up(self.store());
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(AppError::BatchFailed {
                        reason: "the command was not decided (internal error)".into(),
                    })
                })
            })
            .collect()
    }
}

/// Decide and append every command; fills `results`. Returns whether
/// anything was written.
fn run_batch(
    ledger: &Ledger,
    commands: &[BatchCommand],
    cache: &mut OrderCache,
    results: &mut [Option<Result<CommandOutcome, AppError>>],
) -> bool {
    let store = ledger.store();
    // Idempotency: a key used before replays the first result; a key used
    // twice in this batch replays the first use in the batch.
    let mut pending: Vec<usize> = Vec::with_capacity(commands.len());
    let mut replay_of: Vec<(usize, usize)> = Vec::new();
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    for (i, command) in commands.iter().enumerate() {
        if let Some(key) = command.idempotency_key.as_deref() {
            if let Some(&first) = first_use.get(key) {
                replay_of.push((i, first));
                continue;
            }
            match store.find_idempotent(key) {
                Ok(Some(events)) => {
                    results[i] = Some(outcome_of(&events, true));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    results[i] = Some(Err(e.into()));
                    continue;
                }
            }
            first_use.insert(key, i);
        }
        pending.push(i);
    }

    let mut attempts = vec![0u32; commands.len()];
    let mut written = false;
    while !pending.is_empty() {
        let round = decide_round(ledger, commands, &pending, cache, results);
        pending = round.deferred;
        let mut states = round.states;
        if round.units.is_empty() {
            continue;
        }
        let requests: Vec<AppendRequest> = round.units.iter().map(|u| u.request.clone()).collect();
        let appended = match store.append_batch(requests) {
            Ok(appended) => appended,
            Err(e) => {
                // Nothing of this round was written; earlier rounds were.
                let reason = e.to_string();
                for unit in &round.units {
                    for order_id in &unit.orders {
                        cache.evict(order_id);
                    }
                    for c in &unit.commands {
                        results[c.index] = Some(Err(AppError::BatchFailed {
                            reason: reason.clone(),
                        }));
                    }
                }
                for i in pending.drain(..) {
                    results[i] = Some(Err(AppError::BatchFailed {
                        reason: reason.clone(),
                    }));
                }
                break;
            }
        };
        let mut retry = Vec::new();
        for (unit, result) in round.units.into_iter().zip(appended) {
            match result {
                Ok(outcome) => {
                    written = true;
                    for order_id in &unit.orders {
                        match states.remove(order_id) {
                            Some(state) if !outcome.replayed => cache.put(order_id.clone(), state),
                            // A replay: another process used the key first,
                            // so the state folded here is not the stream's.
                            _ => cache.evict(order_id),
                        }
                    }
                    split_outcome(&unit.commands, outcome, results);
                }
                Err(StoreError::Conflict { stream_id, .. }) => {
                    // Nothing of the unit was written. Only the order whose
                    // stream moved counts an attempt; the others were
                    // merely in the same request and go again as they are.
                    let conflicted = unit.orders.iter().find(|o| o.stream_id() == stream_id);
                    if let Some(order_id) = conflicted {
                        cache.evict(order_id);
                    }
                    for c in unit.commands {
                        let order_id = &commands[c.index].order_id;
                        if Some(order_id) == conflicted {
                            attempts[c.index] += 1;
                        }
                        if attempts[c.index] >= MAX_ATTEMPTS {
                            results[c.index] = Some(Err(AppError::ConflictRetriesExhausted {
                                order_id: order_id.to_string(),
                                attempts: MAX_ATTEMPTS,
                            }));
                        } else {
                            retry.push(c.index);
                        }
                    }
                }
                Err(e) => {
                    for order_id in &unit.orders {
                        cache.evict(order_id);
                    }
                    fail_unit(&unit.commands, e, results);
                }
            }
        }
        // Keep submission order overall.
        retry.append(&mut pending);
        retry.sort_unstable();
        pending = retry;
    }

    for (i, first) in replay_of {
        results[i] = Some(match &results[first] {
            Some(Ok(outcome)) => Ok(CommandOutcome {
                replayed: true,
                ..outcome.clone()
            }),
            Some(Err(e)) => Err(AppError::BatchFailed {
                reason: format!("the first use of this idempotency key in the batch failed: {e}"),
            }),
            None => Err(AppError::BatchFailed {
                reason: "the first use of this idempotency key was not decided".into(),
            }),
        });
    }
    written
}

/// What one round decided.
struct Round {
    /// The requests, in submission order.
    units: Vec<Unit>,
    /// Commands left for a later round, in submission order.
    deferred: Vec<usize>,
    /// Each order's state after its unit's events.
    states: HashMap<OrderId, OrderState>,
}

/// Decide one round. Commands without keys join the current unit; a
/// command with a key is a unit of its own and closes the current one. An
/// order appears in one unit per round: a command that would put it in a
/// second one waits (with every later command of that order) for the next
/// round, so a request can never be applied on top of an earlier request
/// of the same order that failed.
fn decide_round(
    ledger: &Ledger,
    commands: &[BatchCommand],
    pending: &[usize],
    cache: &OrderCache,
    results: &mut [Option<Result<CommandOutcome, AppError>>],
) -> Round {
    let mut units: Vec<Unit> = Vec::new();
    let mut open: Option<usize> = None;
    let mut unit_of: HashMap<&OrderId, usize> = HashMap::new();
    let mut waiting: HashSet<&OrderId> = HashSet::new();
    let mut states: HashMap<OrderId, OrderState> = HashMap::new();
    let mut deferred = Vec::new();

    for &i in pending {
        let command = &commands[i];
        let order_id = &command.order_id;
        let keyed = command.idempotency_key.is_some();
        let placed_elsewhere = unit_of
            .get(order_id)
            .is_some_and(|u| keyed || Some(*u) != open);
        if waiting.contains(order_id) || placed_elsewhere {
            waiting.insert(order_id);
            deferred.push(i);
            continue;
        }
        let state = match states.get(order_id) {
            Some(state) => state.clone(),
            None => match cache.get(order_id).map(Ok).unwrap_or_else(|| {
                ledger
                    .store()
                    .read_stream(&order_id.stream_id(), 0)
                    .map_err(AppError::from)
                    .and_then(|events| fold_stream(&events))
            }) {
                Ok(state) => state,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            },
        };
        let ctx = Context::new(
            command.context.actor.clone(),
            to_stored_precision(command.context.at),
        );
        let decided = if state.order.is_none() && !matches!(command.command, Command::PlaceOrder(_))
        {
            Err(AppError::UnknownOrder {
                order_id: order_id.to_string(),
            })
        } else {
            decide(&state, command.command.clone(), &ctx).map_err(AppError::from)
        };
        let events = match decided {
            // As `execute`: the store refuses an empty append.
            Ok(events) if events.is_empty() => Err(StoreError::EmptyAppend.into()),
            other => other,
        };
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                results[i] = Some(Err(e));
                states.insert(order_id.clone(), state);
                continue;
            }
        };
        let new_events: Vec<NewEvent> = to_new_events(order_id, state.version, &events, &ctx.actor);
        let append = StreamAppend {
            stream_id: order_id.stream_id(),
            expected: if state.version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(state.version)
            },
            events: new_events,
        };
        let decided = Decided {
            index: i,
            events: append.events.len(),
        };
        let u = match open {
            Some(u) if !keyed => u,
            _ => {
                units.push(Unit {
                    request: AppendRequest {
                        appends: Vec::new(),
                        idempotency_key: command.idempotency_key.clone(),
                    },
                    commands: Vec::new(),
                    orders: Vec::new(),
                });
                let u = units.len() - 1;
                open = if keyed { None } else { Some(u) };
                u
            }
        };
        let unit = &mut units[u];
        unit.request.appends.push(append);
        unit.commands.push(decided);
        if unit_of.insert(order_id, u).is_none() {
            unit.orders.push(order_id.clone());
        }
        states.insert(order_id.clone(), events.iter().fold(state, evolve));
    }
    Round {
        units,
        deferred,
        states,
    }
}

/// Give each command of a unit the outcome of its own events.
fn split_outcome(
    commands: &[Decided],
    outcome: AppendOutcome,
    results: &mut [Option<Result<CommandOutcome, AppError>>],
) {
    if outcome.replayed {
        // A keyed unit is a single command: the first result is its result.
        let result = outcome_of(&outcome.events, true);
        if let Some(c) = commands.first() {
            results[c.index] = Some(result);
        }
        return;
    }
    let mut events = outcome.events.as_slice();
    for c in commands {
        let (own, rest) = events.split_at(c.events.min(events.len()));
        results[c.index] = Some(outcome_of(own, false));
        events = rest;
    }
}

/// Every command of a unit failed with the store's error `e`.
fn fail_unit(
    commands: &[Decided],
    e: StoreError,
    results: &mut [Option<Result<CommandOutcome, AppError>>],
) {
    let reason = e.to_string();
    let mut error = Some(AppError::from(e));
    for c in commands {
        results[c.index] = Some(Err(error.take().unwrap_or_else(|| AppError::BatchFailed {
            reason: reason.clone(),
        })));
    }
}

/// Settings of a [`GroupCommitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// Most commands per batch.
    pub max_batch: usize,
    /// Most order states kept between batches (0: no cache).
    pub cached_orders: usize,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        GroupCommitOptions {
            max_batch: 256,
            cached_orders: 20_000,
        }
    }
}

/// What a [`GroupCommitter`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batches run (each at least one transaction).
    pub batches: u64,
    /// Commands carried.
    pub commands: u64,
    /// The largest batch.
    pub largest_batch: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    commands: AtomicU64,
    largest: AtomicU64,
}

struct Job {
    command: BatchCommand,
    reply: mpsc::SyncSender<Result<CommandOutcome, AppError>>,
}

/// A committer thread that group-commits the commands of many submitters.
///
/// [`GroupCommitter::submit`] may be called from any number of threads at
/// once; each call blocks until its command's transaction is durable (or
/// has failed) and returns that command's own result.
pub struct GroupCommitter {
    sender: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GroupCommitter {
    /// Start the committer thread on `ledger`.
    pub fn start(ledger: Arc<Ledger>, options: GroupCommitOptions) -> GroupCommitter {
        let (sender, receiver) = mpsc::channel::<Job>();
        let counters = Arc::new(Counters::default());
        let worker_counters = Arc::clone(&counters);
        let worker = std::thread::spawn(move || {
            let mut cache = OrderCache::new(options.cached_orders);
            let max_batch = options.max_batch.max(1);
            while let Ok(first) = receiver.recv() {
                let mut jobs = vec![first];
                while jobs.len() < max_batch {
                    match receiver.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let (commands, replies): (Vec<_>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.command, j.reply)).unzip();
                let n = commands.len() as u64;
                let results = ledger.execute_batch_cached(commands, &mut cache);
                worker_counters.batches.fetch_add(1, Ordering::Relaxed);
                worker_counters.commands.fetch_add(n, Ordering::Relaxed);
                worker_counters.largest.fetch_max(n, Ordering::Relaxed);
                for (reply, result) in replies.into_iter().zip(results) {
                    // A submitter that gave up waiting is no reason to stop.
                    let _ = reply.send(result);
                }
            }
        });
        GroupCommitter {
            sender: Some(sender),
            worker: Some(worker),
            counters,
        }
    }

    /// Carry out `command` in the next batch; blocks until its transaction
    /// is durable and returns its own result.
    pub fn submit(&self, command: BatchCommand) -> Result<CommandOutcome, AppError> {
        let stopped = || AppError::BatchFailed {
            reason: "the group committer has stopped".into(),
        };
        let (reply, result) = mpsc::sync_channel(1);
        self.sender
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job { command, reply })
            .map_err(|_| stopped())?;
        result.recv().map_err(|_| stopped())?
    }

    /// Batches and commands so far.
    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            commands: self.counters.commands.load(Ordering::Relaxed),
            largest_batch: self.counters.largest.load(Ordering::Relaxed),
        }
    }

    /// Finish the queued commands, stop the thread and return the stats.
    pub fn shutdown(mut self) -> GroupCommitStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.sender.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.stop();
    }
}
