//! The SQLite backend of the read models: `rm_` tables in the ledger's own file.
//!
//! This module exists so that the embedded default keeps everything in one
//! file: the read models live beside the events (separate connection, same
//! file, WAL), so a copy of the file is a complete, consistent ledger. Each
//! batch is one `BEGIN IMMEDIATE` transaction that re-reads the checkpoint
//! under SQLite's write lock, so two processes catching up at once never
//! apply an event twice and a crash never leaves half a batch. Batches are
//! kept short because the same write lock also serializes the store's appends.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use provledger_domain::{OrderId, OrderState};
use provledger_store::migrations::{self, Migration};
use provledger_store::sqlite::{read_stream_on, SqliteMigrator};
use provledger_store::{Position, StreamVersion};
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::backend::{
    fmt_date, fmt_lower_bound, fmt_time, fmt_upper_bound, inline_batch, line_row, migration_error,
    plan, to_i64, to_u64, transaction_ids, transaction_row, Applied, Backend, Plan, StoredRow,
    StoredState, CHECKPOINT, LINE_COLUMNS, TX_COLUMNS,
};
use crate::project::{
    check_applied, fold_batch, fold_stored, load_unknown, BatchOutput, Decoded, FoldedStates,
    StateCache,
};
use crate::{LineQuery, LineRow, ProjectionError, TransactionQuery, TransactionRow};

/// How long a statement waits for another connection's write lock (as the store).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One schema migration; applied in order, each exactly once.
/// Every migration this build knows, oldest first. The layout is explained
/// in docs/adr/0004-read-models.md.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "order states, lines, transactions, history, checkpoints",
        sql: r#"
CREATE TABLE rm_checkpoints (
    projection TEXT PRIMARY KEY,
    position   INTEGER NOT NULL CHECK (position >= 0)
);
INSERT INTO rm_checkpoints (projection, position) VALUES ('orders', 0);

CREATE TABLE rm_order_state (
    order_id    TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    next_due_at TEXT,
    state_json  TEXT NOT NULL
);
CREATE INDEX rm_order_state_due ON rm_order_state (next_due_at) WHERE next_due_at IS NOT NULL;

CREATE TABLE rm_lines (
    order_id              TEXT NOT NULL,
    line_index            INTEGER NOT NULL,
    line_id               TEXT NOT NULL,
    subscription_id       TEXT NOT NULL,
    offer                 TEXT NOT NULL,
    rsd                   TEXT NOT NULL,
    provisioning_contact  TEXT NOT NULL,
    status                TEXT NOT NULL,
    status_label          TEXT NOT NULL,
    provisioning_pending  INTEGER NOT NULL,
    initial_email_sent_at TEXT,
    closes_at             TEXT,
    billing_started       INTEGER NOT NULL,
    org_id                TEXT,
    escalated_at          TEXT,
    resend_count          INTEGER NOT NULL,
    partner               TEXT NOT NULL,
    end_customer          TEXT NOT NULL,
    PRIMARY KEY (order_id, line_index)
) WITHOUT ROWID;
CREATE INDEX rm_lines_subscription ON rm_lines (subscription_id);

CREATE TABLE rm_transactions (
    id                   INTEGER PRIMARY KEY,
    position             INTEGER NOT NULL,
    transaction_id       TEXT NOT NULL,
    tx_type              TEXT NOT NULL,
    order_id             TEXT NOT NULL,
    line_id              TEXT NOT NULL,
    subscription_id      TEXT NOT NULL,
    submitted_by         TEXT NOT NULL,
    submitted_at         TEXT NOT NULL,
    status               TEXT NOT NULL,
    reason               TEXT,
    reason_code          TEXT,
    old_email            TEXT,
    new_email            TEXT,
    applied_to_all_lines INTEGER NOT NULL,
    detail               TEXT
);
CREATE INDEX rm_transactions_type_sub ON rm_transactions (tx_type, subscription_id, submitted_at);
CREATE INDEX rm_transactions_sub ON rm_transactions (subscription_id, submitted_at);
CREATE INDEX rm_transactions_type ON rm_transactions (tx_type, submitted_at);
CREATE INDEX rm_transactions_order ON rm_transactions (order_id, submitted_at);
CREATE INDEX rm_transactions_status ON rm_transactions (status, submitted_at);
CREATE INDEX rm_transactions_time ON rm_transactions (submitted_at);

CREATE TABLE rm_history (
    position        INTEGER PRIMARY KEY,
    stream_id       TEXT NOT NULL,
    stream_version  INTEGER NOT NULL,
    order_id        TEXT NOT NULL,
    line_id         TEXT,
    subscription_id TEXT,
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL,
    occurred_at     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    actor           TEXT NOT NULL,
    transaction_id  TEXT NOT NULL,
    payload         TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX rm_history_order ON rm_history (order_id);
CREATE INDEX rm_history_subscription ON rm_history (subscription_id) WHERE subscription_id IS NOT NULL;
"#,
    },
    Migration {
        version: 2,
        name: "history is read from the event log itself: drop the copy",
        sql: "DROP TABLE rm_history;",
    },
    Migration {
        version: 3,
        name: "order states are folded again from the log: drop their JSON copy",
        sql: "ALTER TABLE rm_order_state DROP COLUMN state_json;",
    },
    Migration {
        version: 4,
        name: "drop the type+subscription index: the subscription index serves those queries",
        sql: "DROP INDEX IF EXISTS rm_transactions_type_sub;",
    },
];

/// The secondary indexes of the read models (name, table and columns), as
/// the migrations create them.
///
/// A rebuild drops them (all but [`KEPT_IN_REBUILD`]) while it refills the
/// tables and builds each once at the end: one sort per index instead of a
/// B-tree insert per row. Every
/// open makes sure they exist, so a rebuild cut short leaves none missing
/// beyond the next start.
const SECONDARY_INDEXES: &[(&str, &str)] = &[
    ("rm_lines_subscription", "rm_lines (subscription_id)"),
    (
        "rm_transactions_sub",
        "rm_transactions (subscription_id, submitted_at)",
    ),
    (
        "rm_transactions_type",
        "rm_transactions (tx_type, submitted_at)",
    ),
    (
        "rm_transactions_order",
        "rm_transactions (order_id, submitted_at)",
    ),
    (
        "rm_transactions_status",
        "rm_transactions (status, submitted_at)",
    ),
    ("rm_transactions_time", "rm_transactions (submitted_at)"),
];

/// A support case's outcome, written on the row its opening wrote: status,
/// reason; order, `detail` prefix (`case <id>:`).
const RESOLVE_CASE: &str = "UPDATE rm_transactions SET status = ?1, reason = ?2 \
     WHERE order_id = ?3 AND tx_type = 'support_case' \
     AND substr(detail, 1, length(?4)) = ?4";

/// The one secondary index a rebuild keeps: a support case's outcome
/// updates the row its opening wrote, found by order
/// ([`RESOLVE_CASE`]); without the index each outcome
/// would read the whole Transaction Manager table, and a rebuild would
/// slow down with the square of the ledger's size.
const KEPT_IN_REBUILD: &str = "rm_transactions_order";

/// Create the [`SECONDARY_INDEXES`] that are missing.
fn ensure_indexes(conn: &Connection) -> Result<(), ProjectionError> {
    for (name, on) in SECONDARY_INDEXES {
        conn.execute_batch(&format!("CREATE INDEX IF NOT EXISTS {name} ON {on};"))?;
    }
    Ok(())
}

/// Every read-model table whose content a rebuild drops.
const CONTENT_TABLES: &[&str] = &["rm_order_state", "rm_lines", "rm_transactions"];

/// The read models in an SQLite file.
pub(crate) struct SqliteModels {
    conn: Connection,
}

impl SqliteModels {
    /// Open the read models in the ledger file at `path` without writing
    /// anything (see [`provledger_store::OpenMode::ReadOnly`]); they must
    /// exist at this build's version.
    pub fn open_read_only(path: &Path) -> Result<Self, ProjectionError> {
        let conn = provledger_store::sqlite::open_read_only(path)?;
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = 'rm_schema_migrations')",
            [],
            |r| r.get(0),
        )?;
        let found: i64 = if exists {
            conn.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM rm_schema_migrations",
                [],
                |r| r.get(0),
            )?
        } else {
            0
        };
        check_read_only_version(found)?;
        Ok(SqliteModels { conn })
    }

    /// Open (creating if needed) the read models in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, ProjectionError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode answers with a row; the others do not.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        // NORMAL, not FULL: a read-model commit need not reach the disk
        // before it returns. The read models are derived from the events and
        // carry their checkpoint in the same transaction; the events' own
        // FULL commits sync the shared WAL, so a crash can only lose a
        // suffix of read-model batches (never make them run ahead of the
        // events), which the next catch-up applies again. This saves one
        // fsync per catch-up, i.e. per command.
        conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        set_page_budget(&conn, &ORDINARY_PAGES)?;
        conn.set_prepared_statement_cache_capacity(160);
        migrate(&mut conn)?;
        ensure_indexes(&conn)?;
        Ok(SqliteModels { conn })
    }
}

/// How many pages a read-model connection keeps in memory and lets the WAL
/// hold before a commit of its own checkpoints it.
struct PageBudget {
    /// The connection's page cache, in KiB.
    cache_kib: u32,
    /// `wal_autocheckpoint`, in pages.
    wal_pages: u32,
}

/// Catch-up and inline commits: a 16 MiB cache and the store's checkpoint
/// threshold ([`provledger_store::sqlite::WAL_AUTOCHECKPOINT_PAGES`]).
const ORDINARY_PAGES: PageBudget = PageBudget {
    cache_kib: 16 * 1024,
    wal_pages: provledger_store::sqlite::WAL_AUTOCHECKPOINT_PAGES,
};

/// A rebuild's commits, from [`Backend::reset`] until
/// [`Backend::finish_rebuild`] builds the indexes (with the ordinary budget:
/// each index's sort takes as much memory as the cache may hold).
///
/// A rebuild writes the rows of the orders still open, a set that grows with
/// the ledger: in the 1M-event benchmark ledger about 14,000 orders, whose
/// lines and Transaction Manager index entries take a little more than
/// 16 MiB, so that with the ordinary cache nearly every commit read them
/// back from the file. 24 MiB holds them; 32 MiB gained little more and took
/// peak memory close to its 200 MB bound. Letting the WAL grow to 128 MiB
/// before a checkpoint copies each page that several commits rewrite once.
/// Measured on the 1M ledger (docs/performance.md): 5–11 % less wall time
/// for the rebuild, about 7 % for the import, and 5–8 MB more peak memory.
const REBUILD_PAGES: PageBudget = PageBudget {
    cache_kib: 24 * 1024,
    wal_pages: 32_768,
};

fn set_page_budget(conn: &Connection, budget: &PageBudget) -> Result<(), ProjectionError> {
    // A negative cache_size is in KiB.
    conn.pragma_update(None, "cache_size", -i64::from(budget.cache_kib))?;
    conn.pragma_update(None, "wal_autocheckpoint", budget.wal_pages)?;
    Ok(())
}

/// A read-only open needs the read models at exactly this build's version.
fn check_read_only_version(found: i64) -> Result<(), ProjectionError> {
    let supported = migrations::latest(MIGRATIONS);
    if found > supported {
        return Err(ProjectionError::SchemaTooNew { found, supported });
    }
    if found < supported {
        return Err(ProjectionError::NotReady {
            reason: format!(
                "the read models are at schema version {found} and this build needs {supported}"
            ),
        });
    }
    Ok(())
}

/// Apply the migrations this file lacks (the store's migration runner,
/// under SQLite's write lock, so that processes starting at once do not
/// race).
fn migrate(conn: &mut Connection) -> Result<(), ProjectionError> {
    migrations::run(
        &mut SqliteMigrator::new(conn, "rm_schema_migrations"),
        MIGRATIONS,
    )
    .map_err(migration_error)
}

fn read_checkpoint(conn: &Connection) -> Result<Position, ProjectionError> {
    let position: Option<i64> = conn
        .prepare_cached("SELECT position FROM rm_checkpoints WHERE projection = ?1")?
        .query_row([CHECKPOINT], |r| r.get(0))
        .optional()?;
    match position {
        Some(p) => to_u64("rm_checkpoints", &|| CHECKPOINT.to_string(), p),
        None => Err(ProjectionError::Corrupt {
            table: "rm_checkpoints",
            key: CHECKPOINT.to_string(),
            reason: "the checkpoint row is missing".into(),
        }),
    }
}

fn write_checkpoint(tx: &Transaction<'_>, position: Position) -> Result<(), ProjectionError> {
    tx.prepare_cached("UPDATE rm_checkpoints SET position = ?2 WHERE projection = ?1")?
        .execute(params![CHECKPOINT, to_i64(position)?])?;
    Ok(())
}

/// The states of `wanted` orders, each folded again from the first
/// `version` events of its stream, read on this connection inside the
/// batch's transaction; the read models must say they applied exactly that
/// many.
fn load_states(
    tx: &Transaction<'_>,
    wanted: &[(OrderId, StreamVersion)],
) -> Result<HashMap<OrderId, OrderState>, ProjectionError> {
    let mut stmt = tx.prepare_cached("SELECT version FROM rm_order_state WHERE order_id = ?1")?;
    let mut out = HashMap::new();
    for (id, version) in wanted {
        let applied: Option<i64> = stmt.query_row([id.as_str()], |r| r.get(0)).optional()?;
        let applied = applied
            .map(|v| to_u64("rm_order_state", &|| id.to_string(), v))
            .transpose()?;
        check_applied(id, applied, *version)?;
        let events = read_stream_on(tx, &id.stream_id(), 0, *version)?;
        out.insert(id.clone(), fold_stored(id, *version, events)?);
    }
    Ok(out)
}

/// The read-model rows of `events` (just appended, in position order),
/// written on the store's own transaction `tx`: `None` (nothing written)
/// unless the read models stand exactly before the first of them.
pub(crate) fn project_inline(
    tx: &Transaction<'_>,
    events: Vec<provledger_store::RecordedEvent>,
    cache: &mut StateCache,
    known: &HashMap<OrderId, OrderState>,
) -> Result<Option<FoldedStates>, ProjectionError> {
    let Some((before, decoded)) = inline_batch(events)? else {
        return Ok(None);
    };
    let found = read_checkpoint(tx)?;
    if found != before {
        return Ok(None);
    }
    cache.validate(found);
    let (out, states) = fold_batch(&decoded, cache, |ids| {
        load_unknown(ids, known, |ids| load_states(tx, ids))
    })?;
    write_batch(tx, &out)?;
    write_checkpoint(tx, out.last_position)?;
    Ok(Some(states))
}

/// Write every row of `out` and its checkpoint, and commit.
fn commit_batch(tx: Transaction<'_>, out: &BatchOutput) -> Result<Applied, ProjectionError> {
    write_batch(&tx, out)?;
    write_checkpoint(&tx, out.last_position)?;
    tx.commit()?;
    Ok(Applied::Done {
        events: out.events,
        checkpoint: out.last_position,
    })
}

fn write_batch(tx: &Transaction<'_>, out: &BatchOutput) -> Result<(), ProjectionError> {
    let ids = transaction_ids(&out.transactions)?;
    let mut insert_tx = tx.prepare_cached(&format!(
        "INSERT INTO rm_transactions (id, {TX_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?;
    for (t, id) in out.transactions.iter().zip(ids) {
        insert_tx.execute(params![
            id,
            t.transaction_id,
            t.tx_type.as_str(),
            t.order_id,
            t.line_id,
            t.subscription_id,
            t.submitted_by,
            fmt_time(&t.submitted_at),
            t.status.as_str(),
            t.reason,
            t.reason_code,
            t.old_email,
            t.new_email,
            t.applied_to_all_lines,
            t.detail,
            to_i64(t.position)?,
        ])?;
    }

    let mut resolve_case = tx.prepare_cached(RESOLVE_CASE)?;
    for r in &out.case_resolutions {
        resolve_case.execute(params![
            r.status.as_str(),
            r.reason,
            r.order_id,
            r.detail_prefix
        ])?;
    }

    // Rows known to be stored are updated in place (one B-tree seek); the
    // others are inserted. An update that finds no row falls back to an
    // insert, so a wrong guess costs time, never a row.
    let mut insert_state = tx.prepare_cached(
        "INSERT INTO rm_order_state (order_id, version, next_due_at) VALUES (?1, ?2, ?3)",
    )?;
    let mut update_state = tx.prepare_cached(
        "UPDATE rm_order_state SET version = ?2, next_due_at = ?3 WHERE order_id = ?1",
    )?;
    let mut insert_line = tx.prepare_cached(&format!(
        "INSERT INTO rm_lines (line_index, {LINE_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    ))?;
    let mut update_line = tx.prepare_cached(
        "UPDATE rm_lines SET line_id = ?3, subscription_id = ?4, offer = ?5, rsd = ?6, \
         provisioning_contact = ?7, status = ?8, status_label = ?9, provisioning_pending = ?10, \
         initial_email_sent_at = ?11, closes_at = ?12, billing_started = ?13, org_id = ?14, \
         escalated_at = ?15, resend_count = ?16, partner = ?17, end_customer = ?18 \
         WHERE order_id = ?2 AND line_index = ?1",
    )?;
    for order in &out.orders {
        let state = params![
            order.order_id.as_str(),
            to_i64(order.version)?,
            order.next_due_at.map(|t| fmt_time(&t)),
        ];
        if order.stored_lines.is_none() || update_state.execute(state)? == 0 {
            insert_state.execute(state)?;
        }
        let stored_lines = order.stored_lines.unwrap_or(0);
        for (index, l) in &order.changed_lines {
            let rsd = fmt_date(&l.rsd);
            let initial_email_sent_at = l.initial_email_sent_at.map(|t| fmt_time(&t));
            let closes_at = l.closes_at.map(|t| fmt_time(&t));
            let escalated_at = l.escalated_at.map(|t| fmt_time(&t));
            let row = params![
                to_i64(*index as u64)?,
                l.order_id,
                l.line_id,
                l.subscription_id,
                l.offer,
                rsd,
                l.provisioning_contact,
                l.status,
                l.status_label,
                l.provisioning_pending,
                initial_email_sent_at,
                closes_at,
                l.billing_started,
                l.org_id,
                escalated_at,
                l.resend_count,
                l.partner,
                l.end_customer,
            ];
            if *index >= stored_lines || update_line.execute(row)? == 0 {
                insert_line.execute(row)?;
            }
        }
    }
    Ok(())
}

/// The getters the shared row decoders need (see [`StoredRow`]).
impl StoredRow for Row<'_> {
    fn text(&self, i: usize) -> Result<String, ProjectionError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, ProjectionError> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, ProjectionError> {
        Ok(self.get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, ProjectionError> {
        Ok(self.get(i)?)
    }
}

/// Run a query built at run time (its text is one of few shapes, so the
/// statement cache keeps them all) and decode every row.
fn query<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    decode: impl Fn(&Row<'_>) -> Result<T, ProjectionError>,
) -> Result<Vec<T>, ProjectionError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

impl Backend for SqliteModels {
    fn checkpoint(&mut self) -> Result<Position, ProjectionError> {
        read_checkpoint(&self.conn)
    }

    fn apply(
        &mut self,
        expected: Position,
        events: &[Decoded],
        cache: &mut StateCache,
    ) -> Result<Applied, ProjectionError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = read_checkpoint(&tx)?;
        let events = match plan(found, expected, events)? {
            Plan::Apply(events) => events,
            Plan::Restart => return Ok(Applied::Restart),
        };
        cache.validate(found);
        let (out, states) = fold_batch(events, cache, |ids| load_states(&tx, ids))?;
        let applied = commit_batch(tx, &out)?;
        cache.committed(states);
        Ok(applied)
    }

    fn write(&mut self, expected: Position, out: &BatchOutput) -> Result<Applied, ProjectionError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if read_checkpoint(&tx)? != expected {
            return Ok(Applied::Restart);
        }
        commit_batch(tx, out)
    }

    fn reset(&mut self) -> Result<(), ProjectionError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (name, _) in SECONDARY_INDEXES {
            if *name != KEPT_IN_REBUILD {
                tx.execute_batch(&format!("DROP INDEX IF EXISTS {name};"))?;
            }
        }
        for table in CONTENT_TABLES {
            tx.execute_batch(&format!("DELETE FROM {table};"))?;
        }
        write_checkpoint(&tx, 0)?;
        tx.commit()?;
        set_page_budget(&self.conn, &REBUILD_PAGES)
    }

    fn finish_rebuild(&mut self) -> Result<(), ProjectionError> {
        // The ordinary budget first: the sort that builds each index takes
        // as much memory as the page cache may hold, on top of the cache.
        set_page_budget(&self.conn, &ORDINARY_PAGES)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_indexes(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn lines(&mut self, q: &LineQuery) -> Result<Vec<LineRow>, ProjectionError> {
        let mut sql = format!("SELECT {LINE_COLUMNS} FROM rm_lines");
        let mut conditions = Vec::new();
        let mut params: Vec<&dyn ToSql> = Vec::new();
        let order_id = q.order_id.as_ref().map(OrderId::as_str);
        let subscription_id = q.subscription_id.as_ref().map(|s| s.as_str());
        if let Some(order_id) = &order_id {
            params.push(order_id);
            conditions.push(format!("order_id = ?{}", params.len()));
        }
        if let Some(subscription_id) = &subscription_id {
            params.push(subscription_id);
            conditions.push(format!("subscription_id = ?{}", params.len()));
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY order_id, line_index");
        query(&self.conn, &sql, &params, |r| line_row(r))
    }

    fn transactions(
        &mut self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRow>, ProjectionError> {
        let mut sql = format!("SELECT {TX_COLUMNS} FROM rm_transactions");
        let mut conditions = Vec::new();
        let mut params: Vec<&dyn ToSql> = Vec::new();
        let tx_type = q.tx_type.map(|t| t.as_str());
        let subscription_id = q.subscription_id.as_ref().map(|s| s.as_str());
        let order_id = q.order_id.as_ref().map(OrderId::as_str);
        let status = q.status.map(|s| s.as_str());
        let since = q.since.as_ref().map(fmt_lower_bound);
        let until = q.until.as_ref().map(fmt_upper_bound);
        let limit = q.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        for (value, condition) in [
            // With a subscription, its index finds the handful of rows and
            // the type filters them: `+` keeps the planner (which has no
            // statistics) from walking every row of the type instead.
            (
                tx_type.as_ref().map(|v| v as &dyn ToSql),
                if subscription_id.is_some() {
                    "+tx_type = "
                } else {
                    "tx_type = "
                },
            ),
            (
                subscription_id.as_ref().map(|v| v as &dyn ToSql),
                "subscription_id = ",
            ),
            (order_id.as_ref().map(|v| v as &dyn ToSql), "order_id = "),
            (status.as_ref().map(|v| v as &dyn ToSql), "status = "),
            (since.as_ref().map(|v| v as &dyn ToSql), "submitted_at >= "),
            (until.as_ref().map(|v| v as &dyn ToSql), "submitted_at <= "),
        ] {
            if let Some(value) = value {
                params.push(value);
                conditions.push(format!("{condition}?{}", params.len()));
            }
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        // id order is (position, line id) order: see backend::transaction_ids.
        sql.push_str(" ORDER BY submitted_at, id");
        if let Some(limit) = &limit {
            params.push(limit);
            sql.push_str(&format!(" LIMIT ?{}", params.len()));
        }
        query(&self.conn, &sql, &params, |r| transaction_row(r))
    }

    fn orders_due(&mut self, now: DateTime<Utc>) -> Result<Vec<OrderId>, ProjectionError> {
        let now = fmt_upper_bound(&now);
        query(
            &self.conn,
            "SELECT order_id FROM rm_order_state \
             WHERE next_due_at IS NOT NULL AND next_due_at <= ?1 ORDER BY order_id",
            &[&now],
            |r| {
                let id: String = r.get(0)?;
                OrderId::parse(&id).map_err(|e| ProjectionError::Corrupt {
                    table: "rm_order_state",
                    key: id.clone(),
                    reason: e.to_string(),
                })
            },
        )
    }

    fn order_states(&mut self) -> Result<Vec<StoredState>, ProjectionError> {
        query(
            &self.conn,
            "SELECT order_id, version, next_due_at FROM rm_order_state ORDER BY order_id",
            &[],
            |r| {
                Ok(StoredState {
                    order_id: r.get(0)?,
                    version: r.get(1)?,
                    next_due_at: r.get(2)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        migrations::check_numbering(MIGRATIONS).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_rebuild_finds_a_support_case_s_row_by_index_not_by_reading_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut models = SqliteModels::open(&dir.path().join("ledger.db")).unwrap();
        models.reset().unwrap();
        let plan: Vec<String> = models
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {RESOLVE_CASE}"))
            .unwrap()
            .query_map(params!["success", "done", "WO-1", "case WO-1-C1:"], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains(KEPT_IN_REBUILD)),
            "during a rebuild the outcome's update must use {KEPT_IN_REBUILD}: {plan:?}"
        );
        models.finish_rebuild().unwrap();
    }

    /// The connection's cache size (KiB) and checkpoint threshold (pages).
    fn page_budget(models: &SqliteModels) -> (i64, i64) {
        let cache: i64 = models
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        let wal: i64 = models
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        (-cache, wal)
    }

    #[test]
    fn a_rebuild_takes_its_larger_page_budget_and_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut models = SqliteModels::open(&dir.path().join("ledger.db")).unwrap();
        let ordinary = (
            i64::from(ORDINARY_PAGES.cache_kib),
            i64::from(ORDINARY_PAGES.wal_pages),
        );
        assert_eq!(page_budget(&models), ordinary);
        models.reset().unwrap();
        assert_eq!(
            page_budget(&models),
            (
                i64::from(REBUILD_PAGES.cache_kib),
                i64::from(REBUILD_PAGES.wal_pages)
            )
        );
        models.finish_rebuild().unwrap();
        assert_eq!(page_budget(&models), ordinary);
    }
}
