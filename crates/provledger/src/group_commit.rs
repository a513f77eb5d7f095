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
//! date once, after the last round — or, inline on SQLite, written in each
//! round's own transaction with its events (one commit, one fsync).
//!
//! **State cache.** Orders are decided on the ledger's cached states
//! ([`crate::state_cache`]), so a busy order is not re-read and re-folded
//! for every command; a stale entry conflicts and is reloaded.
//!
//! **Projection.** The committer answers as soon as a batch is durable and
//! then has a [`Projector`] thread bring the read models up to date, in
//! batches, while it commits the next commands. Reads through the ledger
//! catch up first, so they always see every acknowledged command.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use provledger_domain::{Context, LedgerCommand, OrderId, OrderState};
use provledger_store::{AppendOutcome, AppendRequest, StoreError};

use crate::ledger::{outcome_of, MAX_ATTEMPTS};
use crate::shell::{replay_of as replay_of_first, Envelope, Origin, Submission};
use crate::{AppError, CommandOutcome, Ledger};

/// One command of a batch: a [`Submission`], as [`Ledger::submit`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCommand {
    /// The command and everything the trust rules need.
    pub submission: Submission,
}

impl BatchCommand {
    /// A command dated by the caller (simulated ledgers), without an
    /// idempotency key, as [`Ledger::execute`] takes it.
    pub fn new(
        order_id: OrderId,
        command: impl Into<LedgerCommand>,
        context: Context,
    ) -> BatchCommand {
        BatchCommand {
            submission: Submission::new(order_id, command, context.actor, Origin::cli())
                .at(context.at, "--at"),
        }
    }

    /// The order the command targets.
    pub fn order_id(&self) -> &OrderId {
        &self.submission.order_id
    }
}

impl From<Submission> for BatchCommand {
    fn from(submission: Submission) -> Self {
        BatchCommand { submission }
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
    /// command not yet written [`AppError::BatchFailed`]. Unless projections
    /// are deferred ([`Ledger::set_deferred_projections`]), the read models
    /// are brought up to date once, after the batch; if that fails, the
    /// written commands still report success (they are durable) and the
    /// next read catches up and reports the failure.
    pub fn execute_batch(
        &self,
        commands: Vec<BatchCommand>,
    ) -> Vec<Result<CommandOutcome, AppError>> {
        let inline = !self.deferred_projections();
        let (results, written) = self.append_batch_of_commands(commands, inline);
        if written && inline {
            // Derived data: a failure here does not undo durable commands.
            let _ = self.catch_up();
        }
        results
    }

    /// Decide and append a batch; returns each command's result and whether
    /// anything was written. With `inline` on SQLite the read-model rows of
    /// each round are written in its append's own transaction (one commit,
    /// one fsync for the events and the read models); otherwise the read
    /// models are left to the caller.
    fn append_batch_of_commands(
        &self,
        commands: Vec<BatchCommand>,
        inline: bool,
    ) -> (Vec<Result<CommandOutcome, AppError>>, bool) {
        let mut results: Vec<Option<Result<CommandOutcome, AppError>>> =
            commands.iter().map(|_| None).collect();
        let written = run_batch(self, &commands, &mut results, inline);
        let results = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(AppError::BatchFailed {
                        reason: "the command was not decided (internal error)".into(),
                    })
                })
            })
            .collect();
        (results, written)
    }
}

/// Decide and append every command; fills `results`. Returns whether
/// anything was written.
fn run_batch(
    ledger: &Ledger,
    commands: &[BatchCommand],
    results: &mut [Option<Result<CommandOutcome, AppError>>],
    inline: bool,
) -> bool {
    let store = ledger.store();
    let cache = ledger.states();
    // Idempotency: a key used before replays the first result; a key used
    // twice in this batch replays the first use in the batch.
    let mut pending: Vec<usize> = Vec::with_capacity(commands.len());
    let mut replay_of: Vec<(usize, usize)> = Vec::new();
    let mut first_use: HashMap<String, usize> = HashMap::new();
    for (i, command) in commands.iter().enumerate() {
        let submission = &command.submission;
        let scoped = match submission.scoped_key() {
            Ok(scoped) => scoped,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        if let Some(key) = scoped {
            if let Some(&first) = first_use.get(&key) {
                if commands[first].submission.fingerprint() == submission.fingerprint() {
                    replay_of.push((i, first));
                } else {
                    results[i] = Some(Err(AppError::IdempotencyKeyReused {
                        key: submission.idempotency_key.clone().unwrap_or_default(),
                        transaction_id: "an earlier command of this batch".into(),
                    }));
                }
                continue;
            }
            match store.find_idempotent(&key) {
                Ok(Some(events)) => {
                    results[i] = Some(replay_of_first(
                        &events,
                        &submission.fingerprint(),
                        submission.idempotency_key.as_deref().unwrap_or_default(),
                    ));
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
        let round = decide_round(ledger, commands, &pending, results);
        pending = round.deferred;
        let mut states = round.states;
        if round.units.is_empty() {
            continue;
        }
        let requests: Vec<AppendRequest> = round.units.iter().map(|u| u.request.clone()).collect();
        // If the read models were not written inline, the caller's
        // catch-up does it.
        let known = round.before.into_iter().collect();
        let appended = match ledger.append_requests(requests, inline, known) {
            Ok((appended, _)) => appended,
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
                    match conflicted {
                        Some(order_id) => cache.evict(order_id),
                        None => unit.orders.iter().for_each(|o| cache.evict(o)),
                    }
                    for c in unit.commands {
                        let order_id = commands[c.index].order_id();
                        // (A conflict naming no order of the unit cannot
                        // happen; if it did, everyone counts, so that the
                        // retries stay bounded.)
                        if conflicted.is_none() || Some(order_id) == conflicted {
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
    /// Each order's state before the round (what it was decided on first).
    before: HashMap<OrderId, OrderState>,
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
    results: &mut [Option<Result<CommandOutcome, AppError>>],
) -> Round {
    let mut units: Vec<Unit> = Vec::new();
    let mut open: Option<usize> = None;
    let mut unit_of: HashMap<&OrderId, usize> = HashMap::new();
    let mut waiting: HashSet<&OrderId> = HashSet::new();
    let mut states: HashMap<OrderId, OrderState> = HashMap::new();
    let mut before: HashMap<OrderId, OrderState> = HashMap::new();
    let mut deferred = Vec::new();

    for &i in pending {
        let submission = &commands[i].submission;
        let order_id = &submission.order_id;
        let keyed = submission.idempotency_key.is_some();
        let placed_elsewhere = unit_of
            .get(order_id)
            .is_some_and(|u| keyed || Some(*u) != open);
        if waiting.contains(order_id) || placed_elsewhere {
            waiting.insert(order_id);
            deferred.push(i);
            continue;
        }
        // The order's state before this round, the first time the round
        // meets it: the read models are handed it with the append.
        let state = match states.get(order_id) {
            Some(state) => state.clone(),
            None => match ledger.current_state(order_id) {
                Ok(state) => before.entry(order_id.clone()).or_insert(state).clone(),
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            },
        };
        let decided = decide_one(ledger, submission, Some(state));
        let decided = match decided {
            Ok(decided) => decided,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        let decided_command = Decided {
            index: i,
            events: decided.appends.iter().map(|a| a.events.len()).sum(),
        };
        let u = match open {
            Some(u) if !keyed => u,
            _ => {
                units.push(Unit {
                    request: AppendRequest {
                        appends: Vec::new(),
                        idempotency_key: submission.scoped_key().ok().flatten(),
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
        unit.request.appends.extend(decided.appends);
        unit.commands.push(decided_command);
        if unit_of.insert(order_id, u).is_none() {
            unit.orders.push(order_id.clone());
        }
        states.insert(order_id.clone(), decided.order_after);
    }
    Round {
        units,
        deferred,
        states,
        before,
    }
}

/// Decide one submission of a round through the shell's own steps: its
/// time, the streams it needs (the order from this round's or the cache's
/// state), the decision and its appends.
fn decide_one(
    ledger: &Ledger,
    submission: &Submission,
    order_state: Option<OrderState>,
) -> Result<crate::shell::Decided, AppError> {
    let now = ledger.command_time(submission.requested_at)?;
    let fingerprint = submission.fingerprint();
    let envelope = Envelope {
        actor: &submission.actor,
        origin: &submission.origin,
        fingerprint: Some(&fingerprint),
    };
    let view = ledger.load_view(
        &submission.order_id,
        &submission.command,
        &submission.actor,
        order_state,
    )?;
    ledger.decide_appends(
        &submission.order_id,
        &view,
        submission.command.clone(),
        now,
        submission.role,
        &envelope,
    )
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
        // (The fingerprint was checked before deciding; a key another
        // process used in the meantime replays its result here.)
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

/// Who brings the read models up to date after a [`GroupCommitter`]'s
/// batches. Whichever is chosen, every read through the ledger catches up
/// first, so reads see every acknowledged command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// The committer thread, after answering each batch.
    Inline,
    /// A [`Projector`] thread, in batches, while the committer goes on.
    Background,
    /// Nobody here: the next read, or a separate worker (`provledger
    /// project`). For bursts: the read models catch up once, afterwards.
    Deferred,
}

/// Settings of a [`GroupCommitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// Most commands per batch.
    pub max_batch: usize,
    /// Who brings the read models up to date.
    pub projection: Projection,
    /// How long the projector rests after each catch-up (see
    /// [`Projector::start_with_pause`]).
    pub projection_pause: Duration,
    /// How long the committer waits, once a batch has started, for more
    /// commands to join it. Submitters answered by the previous batch need
    /// a moment to send their next command; without this wait, batches
    /// alternate between full and nearly empty.
    pub linger: Duration,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        GroupCommitOptions {
            max_batch: 256,
            projection: Projection::Background,
            projection_pause: Duration::from_millis(50),
            linger: Duration::from_micros(100),
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
    ledger: Arc<Ledger>,
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
    /// Start the committer thread on `ledger` (and, with
    /// [`Projection::Background`], a [`Projector`] thread).
    pub fn start(ledger: Arc<Ledger>, options: GroupCommitOptions) -> GroupCommitter {
        let (sender, receiver) = mpsc::channel::<Job>();
        let counters = Arc::new(Counters::default());
        let worker_counters = Arc::clone(&counters);
        let committer_ledger = Arc::clone(&ledger);
        let worker = std::thread::spawn(move || {
            let ledger = committer_ledger;
            let projector = (options.projection == Projection::Background).then(|| {
                Projector::start_with_pause(Arc::clone(&ledger), options.projection_pause)
            });
            let max_batch = options.max_batch.max(1);
            while let Ok(first) = receiver.recv() {
                let started = Instant::now();
                let mut jobs = vec![first];
                // Gather what arrives within the linger time, sleeping (not
                // spinning: the submitters need the CPU to submit).
                while jobs.len() < max_batch {
                    let waited = started.elapsed();
                    let next = if waited < options.linger {
                        receiver
                            .recv_timeout(options.linger - waited)
                            .map_err(|_| ())
                    } else {
                        receiver.try_recv().map_err(|_| ())
                    };
                    match next {
                        Ok(job) => jobs.push(job),
                        Err(()) => break,
                    }
                }
                let (commands, replies): (Vec<_>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.command, j.reply)).unzip();
                let n = commands.len() as u64;
                let inline =
                    options.projection == Projection::Inline && !ledger.deferred_projections();
                let (results, written) = ledger.append_batch_of_commands(commands, inline);
                worker_counters.batches.fetch_add(1, Ordering::Relaxed);
                worker_counters.commands.fetch_add(n, Ordering::Relaxed);
                worker_counters.largest.fetch_max(n, Ordering::Relaxed);
                // Durable: answer first, project after.
                for (reply, result) in replies.into_iter().zip(results) {
                    // A submitter that gave up waiting is no reason to stop.
                    let _ = reply.send(result);
                }
                if written {
                    match (&projector, options.projection) {
                        (Some(projector), _) => projector.poke(),
                        (None, Projection::Inline) => {
                            let _ = ledger.catch_up();
                        }
                        (None, _) => {}
                    }
                }
            }
            if let Some(projector) = projector {
                projector.stop();
            }
        });
        GroupCommitter {
            ledger,
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
        // Load the order on this thread, in parallel with the committer
        // (the store reads on its own connection): the committer then
        // decides from the cache. A state that turns out stale only costs a
        // conflict and a re-decision there.
        self.ledger.warm(command.order_id());
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

    /// Finish the queued commands, stop the threads (the projector after
    /// one last catch-up) and return the stats.
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

/// A thread that brings a ledger's read models up to date whenever poked.
///
/// Pokes that arrive while a catch-up runs are folded into one more
/// catch-up, so the read models are updated in batches as large as the
/// backlog. Reads through the ledger always catch up first themselves, so
/// a projector only takes that work off the path of the commands and the
/// reads; it never decides what they see. A failed catch-up is left for
/// the next one (and for the next read, which reports it).
pub struct Projector {
    sender: Option<mpsc::SyncSender<()>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector").finish_non_exhaustive()
    }
}

impl Projector {
    /// Start the thread on `ledger`, catching up as soon as poked.
    pub fn start(ledger: Arc<Ledger>) -> Projector {
        Projector::start_with_pause(ledger, Duration::ZERO)
    }

    /// Start the thread on `ledger`; after each catch-up it rests for
    /// `pause`, so that the next one applies a larger batch (fewer, larger
    /// read-model transactions competing with the commands for the
    /// database's write lock).
    pub fn start_with_pause(ledger: Arc<Ledger>, pause: Duration) -> Projector {
        let (sender, receiver) = mpsc::sync_channel::<()>(1);
        let worker = std::thread::spawn(move || {
            while receiver.recv().is_ok() {
                let _ = ledger.catch_up();
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
            // Stopped: leave nothing behind that was poked for.
            let _ = ledger.catch_up();
        });
        Projector {
            sender: Some(sender),
            worker: Some(worker),
        }
    }

    /// Ask for a catch-up; returns at once. Pokes made while one is already
    /// pending are merged with it.
    pub fn poke(&self) {
        if let Some(sender) = &self.sender {
            // Full: a catch-up is already pending and will see these events.
            let _ = sender.try_send(());
        }
    }

    /// Run a last catch-up and stop the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.sender.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        self.halt();
    }
}
