//! Read models of provledger, rebuilt from events: line state (`lines`), the
//! Transaction Manager (`transactions`, R9) and the audit trail (`history`).
//!
//! This crate exists so that every view of the ledger is derived from the
//! events in one tested place, and can be thrown away and rebuilt from
//! position 0 at any time. Invariants:
//!
//! * **One rule book.** Line state is the domain's own fold
//!   ([`provledger_domain::evolve`]); nothing here re-implements a line rule.
//!   The pure code in `project` turns one event into row changes; the SQL
//!   backends and the point-in-time replay ([`lines_as_of`],
//!   [`history_as_of`]) are sinks of that same code.
//! * **Same database as the events.** The `rm_` tables live in the store's
//!   SQLite file or PostgreSQL schema, versioned by `rm_schema_migrations`.
//! * **Exactly once.** Each batch of events is applied in one database
//!   transaction together with its checkpoint, re-read under an exclusive
//!   lock, so concurrent workers never apply an event twice and a crash never
//!   leaves half a batch.
//! * **Deterministic.** A rebuild gives byte-for-byte the [`ReadModels::dump`]
//!   of incremental maintenance.
//!
//! The layout and the reasons behind it are in docs/adr/0004-read-models.md.

#![warn(missing_docs)]

mod backend;
mod error;
mod memory;
mod postgres;
mod project;
mod rows;
mod sqlite;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use provledger_domain::{OrderId, OrderState, SubscriptionId};
use provledger_store::postgres::{CallOutcome, InlinePlan};
use provledger_store::{EventStore, Position, RecordedEvent, StoreUrl};

pub use error::ProjectionError;
pub use memory::{history_as_of, lines_as_of, AsOf};
pub use project::forget_to_fit;
pub use rows::{
    HistoryQuery, HistoryRow, LineQuery, LineRow, TransactionQuery, TransactionRow,
    TransactionStatus, TransactionType,
};

use backend::{Applied, Backend, BATCH_SIZE};
use project::{fold_batch, BatchOutput, Decoded, FoldedStates, StateCache};

/// How often [`ReadModels::rebuild`] reports progress, in events.
pub const PROGRESS_EVERY: u64 = 10_000;

/// The read models of one ledger, stored in the ledger's own database.
///
/// A handle is `Send + Sync` and may be shared between threads: calls take
/// turns on one database connection, one batch at a time, so queries are not
/// held up for a whole rebuild. Several handles (threads or processes) may
/// maintain the same read models at once; every event is still applied once.
pub struct ReadModels {
    inner: Mutex<Inner>,
}

struct Inner {
    backend: Box<dyn Backend>,
    cache: StateCache,
    batch_size: usize,
    /// Where read-write read models live, so that a store append there can
    /// write them in its own transaction; `None` for read-only ones.
    inline_target: Option<InlineTarget>,
    /// The file name an inline writer last saw on a store's connection, and
    /// whether it is `sqlite_path`: resolved once, not on every append.
    inline_checked: Option<(String, bool)>,
}

/// Where a store append may write the read models in its own transaction.
#[derive(Clone)]
enum InlineTarget {
    /// The ledger file (canonical path).
    Sqlite(std::path::PathBuf),
    /// The store URL and the schema.
    Postgres { url: String, schema: String },
}

impl std::fmt::Debug for ReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModels").finish_non_exhaustive()
    }
}

impl ReadModels {
    /// Open the read models of the ledger at `store_url` (the store's own URL:
    /// `sqlite:PATH` or `postgres://…`), creating or migrating the `rm_`
    /// tables as needed.
    ///
    /// For SQLite the file is created if missing; for PostgreSQL the tables
    /// go in the connection's current schema (see [`ReadModels::open_in_schema`]).
    pub fn open(store_url: &str) -> Result<ReadModels, ProjectionError> {
        let backend = match parse_url(store_url)? {
            StoreUrl::Sqlite(path) => {
                let backend = Box::new(sqlite::SqliteModels::open(&path)?);
                let models = Self::with_backend(backend);
                if let Ok(canonical) = std::fs::canonicalize(&path) {
                    models.inner().inline_target = Some(InlineTarget::Sqlite(canonical));
                }
                return Ok(models);
            }
            StoreUrl::Postgres(url) => postgres::PostgresModels::connect(&url, None)?,
        };
        let (url, schema) = backend.location();
        let models = Self::with_backend(Box::new(backend));
        models.inner().inline_target = Some(InlineTarget::Postgres { url, schema });
        Ok(models)
    }

    /// Open the read models of a PostgreSQL ledger kept in `schema` (as
    /// `provledger_store::postgres::PostgresStore::connect_in_schema` keeps
    /// it), creating the schema if missing.
    ///
    /// `schema` must match `[a-z_][a-z0-9_]*`, at most 63 bytes, not starting
    /// with `pg_`; `store_url` must be a `postgres://` URL. Otherwise
    /// [`ProjectionError::InvalidUrl`].
    pub fn open_in_schema(store_url: &str, schema: &str) -> Result<ReadModels, ProjectionError> {
        match parse_url(store_url)? {
            StoreUrl::Postgres(url) => {
                let backend = postgres::PostgresModels::connect(&url, Some(schema))?;
                let (url, schema) = backend.location();
                let models = Self::with_backend(Box::new(backend));
                models.inner().inline_target = Some(InlineTarget::Postgres { url, schema });
                Ok(models)
            }
            StoreUrl::Sqlite(_) => Err(ProjectionError::InvalidUrl {
                url: store_url.to_string(),
                reason: "a schema applies only to PostgreSQL; give a postgres:// URL, or use \
                         ReadModels::open for SQLite"
                    .into(),
            }),
        }
    }

    /// Open the read models of the ledger at `store_url` in `mode`: as
    /// [`ReadModels::open`] unless `mode` is read-only, in which case
    /// nothing is created, migrated or written. When the `rm_` tables are
    /// missing or older than this build, the read models stand at position
    /// 0 and hold nothing (reads replay the log; writing them is
    /// [`ProjectionError::NotReady`]). Catching up is left to writers and
    /// projection workers.
    pub fn open_with_mode(
        store_url: &str,
        mode: provledger_store::OpenMode,
    ) -> Result<ReadModels, ProjectionError> {
        if !mode.is_read_only() {
            return Self::open(store_url);
        }
        let opened: Result<Box<dyn Backend>, ProjectionError> = match parse_url(store_url)? {
            StoreUrl::Sqlite(path) => {
                sqlite::SqliteModels::open_read_only(&path).map(|b| Box::new(b) as Box<dyn Backend>)
            }
            StoreUrl::Postgres(url) => postgres::PostgresModels::connect_in_mode(&url, None, true)
                .map(|b| Box::new(b) as Box<dyn Backend>),
        };
        let backend = match opened {
            Ok(backend) => backend,
            // Read models never built (or older than this build): every read
            // replays the log instead; a reader cannot build them.
            Err(ProjectionError::NotReady { reason }) => Box::new(backend::Absent { reason }),
            Err(e) => return Err(e),
        };
        Ok(Self::with_backend(backend))
    }

    fn with_backend(backend: Box<dyn Backend>) -> ReadModels {
        ReadModels {
            inner: Mutex::new(Inner {
                backend,
                cache: StateCache::default(),
                inline_target: None,
                inline_checked: None,
                batch_size: BATCH_SIZE,
            }),
        }
    }

    /// Apply at most `events` events per database transaction (default
    /// 5,000; at least 1). Smaller batches hold the database's write lock
    /// for less time; larger ones rebuild faster.
    pub fn with_batch_size(self, events: usize) -> ReadModels {
        self.inner().batch_size = events.max(1);
        self
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held rolled back its database
        // transaction (dropped); the cache is only changed after a commit.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A writer of these read models inside a store append's own
    /// transaction ([`EventStore::append_batch_inline`]): the events and
    /// their read-model rows then commit together, in one commit, and the
    /// read models never lag a committed command. It writes only on the
    /// store these read models live in (the same SQLite file; the same
    /// PostgreSQL URL and schema). `None` for read-only read models.
    ///
    /// It takes this handle's cache of order states with it until
    /// [`InlineProjection::finish`] (or drop), but not the handle's lock:
    /// an append may wait for another process's append, and reads of these
    /// read models must not wait with it. A catch-up in the meantime starts
    /// from an empty cache; the cache is trusted only at the stored
    /// checkpoint in any case.
    pub fn inline(&self) -> Option<InlineProjection<'_>> {
        let mut inner = self.inner();
        let target = inner.inline_target.clone()?;
        Some(InlineProjection {
            models: self,
            target,
            cache: std::mem::take(&mut inner.cache),
            inline_checked: inner.inline_checked.take(),
            known: HashMap::new(),
            pending: None,
            proposed: None,
        })
    }

    /// Apply the events after the checkpoint; returns how many events the
    /// checkpoint moved over (events of non-order streams included).
    pub fn catch_up(&self, store: &dyn EventStore) -> Result<u64, ProjectionError> {
        let batch_size = self.inner().batch_size;
        self.run(store, batch_size, batch_size as u64, &mut |_| {})
    }

    /// [`ReadModels::catch_up`] after a bulk load (`import`, `migrate`): when
    /// the read models are still empty this takes the rebuild's bulk path
    /// (secondary indexes built once at the end, larger batches), otherwise
    /// it is an ordinary catch-up. `progress` as for [`ReadModels::rebuild`].
    pub fn catch_up_bulk(
        &self,
        store: &dyn EventStore,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectionError> {
        if self.checkpoint()? == 0 {
            self.rebuild(store, progress)
        } else {
            let applied = self.catch_up(store)?;
            progress(applied);
            Ok(applied)
        }
    }

    /// Drop every read-model row and replay the whole ledger from position 0.
    ///
    /// `progress` is called with the number of events applied so far every
    /// [`PROGRESS_EVERY`] events and once at the end. Readers see the read
    /// models fill up batch by batch; the result equals incremental
    /// maintenance. Returns the number of events applied.
    pub fn rebuild(
        &self,
        store: &dyn EventStore,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectionError> {
        let batch_size = {
            let mut inner = self.inner();
            inner.cache.clear();
            inner.backend.reset()?;
            inner.batch_size
        };
        let mut next_report = PROGRESS_EVERY;
        let mut reported = None;
        let commit_events = REBUILD_COMMIT_EVENTS.max(batch_size as u64);
        let run = self.run(store, batch_size, commit_events, &mut |done| {
            while done >= next_report {
                progress(next_report);
                reported = Some(next_report);
                next_report += PROGRESS_EVERY;
            }
        });
        // Whether the replay succeeded or not, the indexes come back. The
        // state cache is freed first: building the indexes needs sort
        // memory, and the next catch-up refills the cache as it goes.
        let finished = {
            let mut inner = self.inner();
            inner.cache.clear();
            inner.backend.finish_rebuild()
        };
        let total = run?;
        finished?;
        if reported != Some(total) {
            progress(total);
        }
        Ok(total)
    }

    /// The batch loop shared by catch-up and rebuild: fold batches of
    /// `batch_size` events until the store has no more, committing them
    /// together once they hold `commit_events` events (see
    /// [`ReadModels::run_from`]); `progress` gets the running total after
    /// each commit.
    fn run(
        &self,
        store: &dyn EventStore,
        batch_size: usize,
        commit_events: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectionError> {
        let mut total = 0;
        loop {
            let start = self.inner().backend.checkpoint()?;
            let flow = self.run_from(
                store,
                start,
                batch_size,
                commit_events,
                &mut total,
                progress,
            );
            match flow {
                Ok(Flow::Finished) => return Ok(total),
                Ok(Flow::Restart) => continue,
                Err(e) => {
                    self.inner().cache.clear();
                    return Err(e);
                }
            }
        }
    }

    /// Apply the events after `start` until the store has no more, or until
    /// the stored checkpoint is found elsewhere ([`Flow::Restart`]).
    ///
    /// When there is more than one batch, the work runs as a pipeline of
    /// three threads: one reads and decodes the log, one folds each batch
    /// into rows (on its own copy of the order states, assuming the batches
    /// before it commit), and this one writes and commits them. A rebuild
    /// then pays for reading, folding and writing at once rather than one
    /// after the other. A batch whose commit finds the checkpoint moved (by
    /// another worker) stops the pipeline; the caller reads again.
    ///
    /// The writer joins consecutive folded batches ([`BatchOutput::absorb`])
    /// until they hold `commit_events` events and commits them as one: a
    /// rebuild thus writes an order touched by many small batches once per
    /// commit, while the reading and folding stages keep small batches
    /// (bounded memory). An ordinary catch-up commits every batch.
    fn run_from(
        &self,
        store: &dyn EventStore,
        start: Position,
        batch_size: usize,
        commit_events: u64,
        total: &mut u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Flow, ProjectionError> {
        let mut events = store.read_all_json(start)?;
        let first = next_batch(&mut events, batch_size)?;
        if first.len() < batch_size {
            // The whole rest of the log fits in one batch: no helper needed.
            if first.is_empty() {
                let head = store.head()?.map_or(0, |h| h.position);
                if head < start {
                    return Err(ProjectionError::AheadOfStore {
                        checkpoint: start,
                        head,
                    });
                }
                return Ok(Flow::Finished);
            }
            return Ok(match self.apply(start, &first)? {
                Applied::Done { events, .. } => {
                    *total += events;
                    progress(*total);
                    Flow::Finished
                }
                Applied::Restart => Flow::Restart,
            });
        }
        // The folding stage takes the handle's cache (valid at `start`, or
        // emptied by `validate`) and gives it back, valid at the new
        // checkpoint, once everything it folded has been written.
        let cache = std::mem::take(&mut self.inner().cache);
        std::thread::scope(|scope| {
            // Bounded channels keep memory bounded. A rebuild's commit is
            // long: while it runs, the folder folds ahead of the writer (and
            // the reader reads ahead of the folder) by up to
            // `FOLDED_AHEAD` batches, so that the stages overlap instead of
            // taking turns.
            let (decoded_out, decoded_in) = std::sync::mpsc::sync_channel(1);
            // Each stage frees what it allocated: a stage hands what it has
            // used back to the stage that allocated it, which drops it before
            // making more. The allocator then reuses the same memory at once;
            // memory freed on another thread came back late, and a rebuild's
            // peak memory grew with it.
            let (spent_batches, batches_to_free) = std::sync::mpsc::channel::<Vec<Decoded>>();
            let (spent_outputs, outputs_to_free) = std::sync::mpsc::channel::<BatchOutput>();
            scope.spawn(move || {
                if decoded_out.send(Ok(first)).is_err() {
                    return;
                }
                loop {
                    batches_to_free.try_iter().for_each(drop);
                    let batch = next_batch(&mut events, batch_size);
                    let last = !matches!(&batch, Ok(b) if b.len() == batch_size);
                    // A send fails once the next stage has stopped.
                    if decoded_out.send(batch).is_err() || last {
                        break;
                    }
                }
            });
            let (folded_out, folded_in) = std::sync::mpsc::sync_channel(FOLDED_AHEAD);
            let folder = scope.spawn(move || {
                let mut cache = cache;
                let mut at = start;
                for batch in decoded_in {
                    outputs_to_free.try_iter().for_each(drop);
                    let folded = match batch {
                        Ok(batch) if batch.is_empty() => break,
                        Ok(batch) => {
                            cache.validate(at);
                            let folded = fold_batch(&batch, &cache, |wanted| {
                                memory::load_from_log(store, wanted)
                            })
                            .map(|(out, states)| {
                                cache.remember(states);
                                at = out.last_position;
                                out
                            });
                            let _ = spent_batches.send(batch);
                            folded
                        }
                        Err(e) => Err(e),
                    };
                    let failed = folded.is_err();
                    if folded_out.send(folded).is_err() || failed {
                        break;
                    }
                }
                cache
            });
            let mut expected = start;
            let mut pending: Option<BatchOutput> = None;
            let mut folded_in = folded_in.into_iter();
            loop {
                let next = folded_in.next().transpose()?;
                let last = next.is_none();
                let out = match (pending.take(), next) {
                    (Some(mut joined), Some(out)) => {
                        joined.absorb(out);
                        joined
                    }
                    (None, Some(out)) => out,
                    (Some(joined), None) => joined,
                    (None, None) => break,
                };
                if !last && out.events < commit_events {
                    pending = Some(out);
                    continue;
                }
                let written = self.inner().backend.write(expected, &out)?;
                let _ = spent_outputs.send(out);
                match written {
                    Applied::Done { events, checkpoint } => {
                        *total += events;
                        expected = checkpoint;
                        progress(*total);
                    }
                    Applied::Restart => return Ok(Flow::Restart),
                }
            }
            // Every folded batch was written: the folder's states are those
            // of the read models at `expected`.
            if let Ok(cache) = folder.join() {
                if cache.is_valid_at(expected) {
                    self.inner().cache = cache;
                }
            }
            Ok(Flow::Finished)
        })
    }

    /// Apply one batch under the handle's lock (held for this batch only).
    fn apply(&self, expected: Position, batch: &[Decoded]) -> Result<Applied, ProjectionError> {
        let mut inner = self.inner();
        let Inner { backend, cache, .. } = &mut *inner;
        backend.apply(expected, batch, cache)
    }

    /// Position of the last event applied to the read models (0: none).
    pub fn checkpoint(&self) -> Result<Position, ProjectionError> {
        self.inner().backend.checkpoint()
    }

    /// Line state (R1–R8), sorted by order id, then in order-file order.
    pub fn lines(&self, q: &LineQuery) -> Result<Vec<LineRow>, ProjectionError> {
        self.inner().backend.lines(q)
    }

    /// The Transaction Manager (R9): rows in chronological order
    /// (`submitted_at`, then position, then line id), at most `q.limit`.
    pub fn transactions(
        &self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRow>, ProjectionError> {
        self.inner().backend.transactions(q)
    }

    /// Every event of an order or a subscription (see [`HistoryQuery`]) up to
    /// the read models' checkpoint, in position order.
    ///
    /// The rows are read from the event log itself, not from a copy: the
    /// order's stream is replayed with the same code as [`history_as_of`]
    /// (a query by subscription finds its orders in the `lines` view, so it
    /// reads only their streams; a query naming neither reads the whole log).
    pub fn history(
        &self,
        store: &dyn EventStore,
        q: &HistoryQuery,
    ) -> Result<Vec<HistoryRow>, ProjectionError> {
        let at = AsOf::Position(self.checkpoint()?);
        match (&q.order_id, &q.subscription_id) {
            (None, Some(sub)) => {
                let orders = self.orders_holding(sub)?;
                memory::history_as_of_in(store, q, memory::Streams::Orders(&orders), at)
            }
            _ => history_as_of(store, q, at),
        }
    }

    /// [`lines_as_of`] (replayed from the store, not read from the read
    /// model), reading only the streams of the orders that hold the
    /// subscription when the query names one but no order.
    ///
    /// The read model is caught up first and used only to find those orders
    /// (a line's subscription never changes), so the result equals
    /// [`lines_as_of`] while reading a few streams instead of the whole log.
    pub fn lines_as_of(
        &self,
        store: &dyn EventStore,
        q: &LineQuery,
        as_of: AsOf,
    ) -> Result<Vec<LineRow>, ProjectionError> {
        match (&q.order_id, &q.subscription_id) {
            (None, Some(sub)) => {
                let orders = self.orders_with_subscription(store, sub)?;
                memory::lines_as_of_in(store, q, memory::Streams::Orders(&orders), as_of)
            }
            _ => lines_as_of(store, q, as_of),
        }
    }

    /// [`history_as_of`], reading only the streams of the orders that hold
    /// the subscription when the query names one but no order (see
    /// [`ReadModels::lines_as_of`]).
    pub fn history_as_of(
        &self,
        store: &dyn EventStore,
        q: &HistoryQuery,
        as_of: AsOf,
    ) -> Result<Vec<HistoryRow>, ProjectionError> {
        match (&q.order_id, &q.subscription_id) {
            (None, Some(sub)) => {
                let orders = self.orders_with_subscription(store, sub)?;
                memory::history_as_of_in(store, q, memory::Streams::Orders(&orders), as_of)
            }
            _ => history_as_of(store, q, as_of),
        }
    }

    /// The orders that have a line with this subscription, sorted, after
    /// catching the read models up.
    fn orders_with_subscription(
        &self,
        store: &dyn EventStore,
        subscription_id: &SubscriptionId,
    ) -> Result<Vec<OrderId>, ProjectionError> {
        self.catch_up(store)?;
        self.orders_holding(subscription_id)
    }

    /// The orders that have a line with this subscription in the `lines`
    /// view as it stands, sorted.
    fn orders_holding(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Vec<OrderId>, ProjectionError> {
        let rows = self.lines(&LineQuery {
            order_id: None,
            subscription_id: Some(subscription_id.clone()),
        })?;
        let mut orders = Vec::with_capacity(rows.len());
        for row in rows {
            let id = OrderId::parse(&row.order_id).map_err(|e| ProjectionError::Corrupt {
                table: "rm_lines",
                key: row.order_id.clone(),
                reason: e.to_string(),
            })?;
            if orders.last() != Some(&id) {
                orders.push(id);
            }
        }
        Ok(orders)
    }

    /// Orders with a scheduled transition (R2, R7, R11) due at or before
    /// `now` by the domain's `next_due`, sorted by order id: what `tick`
    /// must visit.
    pub fn orders_due(&self, now: DateTime<Utc>) -> Result<Vec<OrderId>, ProjectionError> {
        self.inner().backend.orders_due(now)
    }

    /// A canonical text of every read-model table: the checkpoint, then the
    /// order states, lines and transactions, one sorted row per
    /// line. Two read models of the same events give identical text, on
    /// either backend.
    pub fn dump(&self) -> Result<String, ProjectionError> {
        let mut inner = self.inner();
        let backend = &mut inner.backend;
        let mut out = String::new();
        let _ = writeln!(out, "# rm_checkpoints\norders\t{}", backend.checkpoint()?);
        out.push_str("# rm_order_state\n");
        for s in backend.order_states()? {
            let _ = writeln!(
                out,
                "{}\t{}\t{}",
                s.order_id,
                s.version,
                s.next_due_at.as_deref().unwrap_or("-"),
            );
        }
        out.push_str("# rm_lines\n");
        for row in backend.lines(&LineQuery::default())? {
            push_json(&mut out, &row)?;
        }
        out.push_str("# rm_transactions\n");
        for row in backend.transactions(&TransactionQuery::default())? {
            push_json(&mut out, &row)?;
        }
        Ok(out)
    }
}

/// Append `row` as one line of JSON (for [`ReadModels::dump`]).
fn push_json<T: serde::Serialize>(out: &mut String, row: &T) -> Result<(), ProjectionError> {
    let text = serde_json::to_string(row).map_err(|e| ProjectionError::Corrupt {
        table: "dump",
        key: String::new(),
        reason: e.to_string(),
    })?;
    out.push_str(&text);
    out.push('\n');
    Ok(())
}

/// Parse a store URL, reporting a bad one as [`ProjectionError::InvalidUrl`].
fn parse_url(store_url: &str) -> Result<StoreUrl, ProjectionError> {
    StoreUrl::parse(store_url).map_err(|e| match e {
        provledger_store::StoreError::InvalidUrl { url, reason } => {
            ProjectionError::InvalidUrl { url, reason }
        }
        other => ProjectionError::Store(other),
    })
}

/// Events a rebuild commits at once (several folded batches joined): the
/// rows of that many events are held in memory until their commit.
const REBUILD_COMMIT_EVENTS: u64 = 20_000;

/// Folded batches waiting for the writer, at most (see
/// `ReadModels::run_from`): as many as a rebuild commit joins, so that the
/// folder can fold the whole next commit while the writer commits.
const FOLDED_AHEAD: usize = (REBUILD_COMMIT_EVENTS / backend::BATCH_SIZE as u64) as usize;

/// Whether the batch loop is done or must read again from the stored checkpoint.
enum Flow {
    Finished,
    Restart,
}

/// Up to `size` events from the store's stream, decoded.
fn next_batch(
    events: &mut dyn Iterator<Item = Result<RecordedEvent<String>, provledger_store::StoreError>>,
    size: usize,
) -> Result<Vec<Decoded>, ProjectionError> {
    let mut batch = Vec::with_capacity(size.min(8192));
    for event in events.take(size) {
        batch.push(Decoded::from_json(event?)?);
    }
    Ok(batch)
}

/// The read models written inside a store append's transaction (see
/// [`ReadModels::inline`]).
pub struct InlineProjection<'a> {
    models: &'a ReadModels,
    target: InlineTarget,
    /// The handle's cache, given back on drop.
    cache: StateCache,
    /// The handle's memo of the last SQLite file seen, given back on drop.
    inline_checked: Option<(String, bool)>,
    /// States the caller holds of orders as they stand before the append
    /// (see [`InlineProjection::knowing`]).
    known: HashMap<OrderId, OrderState>,
    /// The states of the batch written, until the append is known to have
    /// committed.
    pending: Option<FoldedStates>,
    /// The batch of the last [`InlineWriter::postgres_call`], until the
    /// store says what became of it.
    ///
    /// [`InlineWriter::postgres_call`]: provledger_store::InlineWriter::postgres_call
    proposed: Option<postgres::InlineBatch>,
}

impl InlineProjection<'_> {
    /// Tell the writer the states of orders as they stand before the append
    /// (each at its `version`: what the caller decided on): an order these
    /// read models have not cached is then not folded again from the log.
    /// A state at another version than the one before the append's first
    /// event of its order is ignored.
    pub fn knowing(mut self, states: impl IntoIterator<Item = (OrderId, OrderState)>) -> Self {
        self.known.extend(states);
        self
    }

    /// After the append: `committed` says whether it committed. Returns
    /// true when the read models were written with it (nothing is left to
    /// catch up); false when the caller must catch up as usual.
    pub fn finish(mut self, committed: bool) -> bool {
        match self.pending.take() {
            Some(states) if committed => {
                self.cache.committed(states);
                true
            }
            Some(_) => {
                self.cache.clear();
                false
            }
            None => false,
        }
    }
}

impl InlineProjection<'_> {
    /// Whether these read models live in the PostgreSQL ledger at `url`,
    /// `schema`: only there are they written in its appends.
    fn lives_in(&self, url: &str, schema: &str) -> bool {
        matches!(&self.target, InlineTarget::Postgres { url: u, schema: s } if u == url && s == schema)
    }

    /// Keep the states of the rows just written until the append is known
    /// to have committed; returns true (written).
    fn hold(&mut self, states: FoldedStates) -> bool {
        self.pending = Some(states);
        true
    }
}

/// The events the requests `appended`, in position order.
fn events_of(appended: &[&provledger_store::AppendOutcome]) -> Vec<RecordedEvent> {
    appended
        .iter()
        .flat_map(|o| o.events.iter().cloned())
        .collect()
}

impl Drop for InlineProjection<'_> {
    /// Give the cache back to the handle (emptied if it holds states of an
    /// append not known to have committed).
    fn drop(&mut self) {
        if self.pending.take().is_some() {
            self.cache.clear();
        }
        let mut inner = self.models.inner();
        inner.cache = std::mem::take(&mut self.cache);
        if let Some(checked) = self.inline_checked.take() {
            inner.inline_checked = Some(checked);
        }
    }
}

impl provledger_store::InlineWriter for InlineProjection<'_> {
    fn write_sqlite(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        appended: &[&provledger_store::AppendOutcome],
    ) -> bool {
        // Only on the very file these read models live in.
        let (InlineTarget::Sqlite(path), Some(file)) = (&self.target, tx.path()) else {
            return false;
        };
        let same = match &self.inline_checked {
            Some((checked, same)) if checked == file => *same,
            _ => {
                let same = std::fs::canonicalize(file).is_ok_and(|f| &f == path);
                self.inline_checked = Some((file.to_string(), same));
                same
            }
        };
        if !same {
            return false;
        }
        match sqlite::project_inline(tx, events_of(appended), &mut self.cache, &self.known) {
            Ok(Some(states)) => self.hold(states),
            // Behind the log (or an error): the savepoint is rolled back and
            // the caller's catch-up applies these events with the others.
            Ok(None) | Err(_) => false,
        }
    }

    fn write_postgres(
        &mut self,
        tx: &mut provledger_store::postgres::InlineTx<'_>,
        appended: &[&provledger_store::AppendOutcome],
    ) -> Result<bool, ::postgres::Error> {
        if !self.lives_in(tx.url(), tx.schema()) {
            return Ok(false);
        }
        match postgres::project_inline(tx, events_of(appended), &mut self.cache, &self.known) {
            Ok(Some(states)) => Ok(self.hold(states)),
            Ok(None) => Ok(false),
            // A statement failed: the transaction is aborted, and the store
            // appends again without this writer.
            Err(ProjectionError::Postgres(e)) => Err(e),
            // Nothing was written (decoding or folding failed): the
            // caller's catch-up applies these events and reports it.
            Err(_) => Ok(false),
        }
    }

    fn postgres_call(
        &mut self,
        url: &str,
        schema: &str,
        appended: &[&provledger_store::AppendOutcome],
    ) -> InlinePlan<'_> {
        self.proposed = None;
        if !self.lives_in(url, schema) {
            return InlinePlan::Skip;
        }
        match postgres::fold_for_call(events_of(appended), &self.cache, &self.known) {
            postgres::InlineFold::Ready(batch) => {
                let batch = self.proposed.insert(batch);
                match batch.call() {
                    Some(call) => InlinePlan::Call(call),
                    None => InlinePlan::Skip,
                }
            }
            postgres::InlineFold::Skip => InlinePlan::Skip,
            postgres::InlineFold::NeedsReads => InlinePlan::NeedsReads,
        }
    }

    fn postgres_call_done(&mut self, outcome: CallOutcome) {
        let proposed = self.proposed.take();
        match (outcome, proposed) {
            (CallOutcome::Written, Some(batch)) => {
                self.hold(batch.states);
            }
            // Another writer moved the read models: this cache is stale.
            (CallOutcome::Refused, _) => self.cache.clear(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn read_models_are_send_and_sync() {
        assert_send_sync::<ReadModels>();
    }
}
