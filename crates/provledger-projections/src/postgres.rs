//! The PostgreSQL backend of the read models: `rm_` tables in the ledger's schema.
//!
//! This module exists so that the scale-out backend keeps the same read
//! models, with the same guarantees, as the embedded SQLite file. Several
//! projection workers (on several machines) may run at once: each batch is one
//! transaction that first takes a transaction-scoped advisory lock for this
//! schema's read models and only then re-reads the checkpoint, so no two
//! workers apply the same event, and a killed worker's successor resumes from
//! the last committed checkpoint. Rows are written with one `unnest` statement
//! per table per batch, to keep round trips per batch constant.
//!
//! Text columns use the "C" collation so that they sort by bytes, exactly as
//! in SQLite and in Rust, which keeps `dump()` identical across backends.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement, ToStatement};
use provledger_domain::{OrderId, OrderState};
use provledger_store::migrations::{self, Migration};
use provledger_store::postgres::{
    create_schema, table_lock_key, InlineCall, InlineTx, PostgresMigrator,
};
use provledger_store::{Position, RecordedEvent, StreamVersion};

use crate::backend::{
    fmt_date, fmt_lower_bound, fmt_time, fmt_upper_bound, inline_batch, line_row, migration_error,
    plan, to_i64, to_u64, transaction_ids, transaction_row, Applied, Backend, Plan, StoredRow,
    StoredState, CHECKPOINT, LINE_COLUMNS, TX_COLUMNS,
};
use crate::project::{
    check_applied, fold_batch, fold_stored, load_unknown, BatchOutput, Decoded, DirtyOrder,
    FoldedStates, StateCache,
};
use crate::{LineQuery, LineRow, ProjectionError, TransactionQuery, TransactionRow};

/// Advisory-lock class of the batch lock: ASCII `pvlp`. The second key is
/// the OID of this schema's `rm_checkpoints`, so ledgers in different
/// schemas do not serialize each other.
const BATCH_LOCK_CLASS: i32 = 0x7076_6c70;
/// Rows per `unnest` INSERT.
const CHUNK: usize = 5_000;

/// Every migration this build knows, oldest first; the same tables as the
/// SQLite backend (docs/adr/0004-read-models.md).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "order states, lines, transactions, history, checkpoints",
        sql: r#"
CREATE TABLE rm_checkpoints (
    projection TEXT COLLATE "C" PRIMARY KEY,
    position   BIGINT NOT NULL CHECK (position >= 0)
);
INSERT INTO rm_checkpoints (projection, position) VALUES ('orders', 0);

CREATE TABLE rm_order_state (
    order_id    TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    next_due_at TEXT COLLATE "C",
    state_json  TEXT NOT NULL
);
CREATE INDEX rm_order_state_due ON rm_order_state (next_due_at) WHERE next_due_at IS NOT NULL;

CREATE TABLE rm_lines (
    order_id              TEXT COLLATE "C" NOT NULL,
    line_index            BIGINT NOT NULL,
    line_id               TEXT COLLATE "C" NOT NULL,
    subscription_id       TEXT COLLATE "C" NOT NULL,
    offer                 TEXT NOT NULL,
    rsd                   TEXT NOT NULL,
    provisioning_contact  TEXT NOT NULL,
    status                TEXT NOT NULL,
    status_label          TEXT NOT NULL,
    provisioning_pending  BOOLEAN NOT NULL,
    initial_email_sent_at TEXT,
    closes_at             TEXT,
    billing_started       BOOLEAN NOT NULL,
    org_id                TEXT,
    escalated_at          TEXT,
    resend_count          BIGINT NOT NULL,
    partner               TEXT NOT NULL,
    end_customer          TEXT NOT NULL,
    PRIMARY KEY (order_id, line_index)
);
CREATE INDEX rm_lines_subscription ON rm_lines (subscription_id);

CREATE TABLE rm_transactions (
    id                   BIGINT PRIMARY KEY,
    position             BIGINT NOT NULL,
    transaction_id       TEXT COLLATE "C" NOT NULL,
    tx_type              TEXT COLLATE "C" NOT NULL,
    order_id             TEXT COLLATE "C" NOT NULL,
    line_id              TEXT COLLATE "C" NOT NULL,
    subscription_id      TEXT COLLATE "C" NOT NULL,
    submitted_by         TEXT NOT NULL,
    submitted_at         TEXT COLLATE "C" NOT NULL,
    status               TEXT COLLATE "C" NOT NULL,
    reason               TEXT,
    reason_code          TEXT,
    old_email            TEXT,
    new_email            TEXT,
    applied_to_all_lines BOOLEAN NOT NULL,
    detail               TEXT
);
CREATE INDEX rm_transactions_type_sub ON rm_transactions (tx_type, subscription_id, submitted_at, id);
CREATE INDEX rm_transactions_sub ON rm_transactions (subscription_id, submitted_at, id);
CREATE INDEX rm_transactions_type ON rm_transactions (tx_type, submitted_at, id);
CREATE INDEX rm_transactions_order ON rm_transactions (order_id, submitted_at, id);
CREATE INDEX rm_transactions_status ON rm_transactions (status, submitted_at, id);
CREATE INDEX rm_transactions_time ON rm_transactions (submitted_at, id);

CREATE TABLE rm_history (
    position        BIGINT PRIMARY KEY,
    stream_id       TEXT COLLATE "C" NOT NULL,
    stream_version  BIGINT NOT NULL,
    order_id        TEXT COLLATE "C" NOT NULL,
    line_id         TEXT COLLATE "C",
    subscription_id TEXT COLLATE "C",
    event_type      TEXT NOT NULL,
    schema_version  BIGINT NOT NULL,
    occurred_at     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    actor           TEXT NOT NULL,
    transaction_id  TEXT NOT NULL,
    payload         TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX rm_history_order ON rm_history (order_id, position);
CREATE INDEX rm_history_subscription ON rm_history (subscription_id, position) WHERE subscription_id IS NOT NULL;
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
    Migration {
        version: 5,
        name: "one function writes the read models of an append, in the append's transaction",
        // Called with the store's append, in the same statement or the same
        // transaction (see `project_inline` and `inline_call`): moves the
        // checkpoint from `old_checkpoint` to `new_checkpoint` and writes
        // the rows only if it stood there; returns whether it did. The
        // checkpoint row's lock orders it after any worker's batch.
        sql: r#"
CREATE FUNCTION provledger_rm_inline(
    checkpoint_name TEXT, new_checkpoint BIGINT, old_checkpoint BIGINT,
    tx_ids BIGINT[], tx_transaction_ids TEXT[], tx_types TEXT[], tx_order_ids TEXT[],
    tx_line_ids TEXT[], tx_subscription_ids TEXT[], tx_submitted_by TEXT[],
    tx_submitted_at TEXT[], tx_statuses TEXT[], tx_reasons TEXT[], tx_reason_codes TEXT[],
    tx_old_emails TEXT[], tx_new_emails TEXT[], tx_all_lines BOOLEAN[], tx_details TEXT[],
    tx_positions BIGINT[],
    st_order_ids TEXT[], st_versions BIGINT[], st_next_due_at TEXT[],
    ln_indexes BIGINT[], ln_order_ids TEXT[], ln_line_ids TEXT[], ln_subscription_ids TEXT[],
    ln_offers TEXT[], ln_rsds TEXT[], ln_contacts TEXT[], ln_statuses TEXT[],
    ln_status_labels TEXT[], ln_pending BOOLEAN[], ln_initial_email_sent_at TEXT[],
    ln_closes_at TEXT[], ln_billing_started BOOLEAN[], ln_org_ids TEXT[],
    ln_escalated_at TEXT[], ln_resend_counts BIGINT[], ln_partners TEXT[],
    ln_end_customers TEXT[]
) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE rm_checkpoints SET position = new_checkpoint
        WHERE projection = checkpoint_name AND position = old_checkpoint;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO rm_transactions (id, transaction_id, tx_type, order_id, line_id,
            subscription_id, submitted_by, submitted_at, status, reason, reason_code,
            old_email, new_email, applied_to_all_lines, detail, position)
        SELECT * FROM unnest(tx_ids, tx_transaction_ids, tx_types, tx_order_ids, tx_line_ids,
            tx_subscription_ids, tx_submitted_by, tx_submitted_at, tx_statuses, tx_reasons,
            tx_reason_codes, tx_old_emails, tx_new_emails, tx_all_lines, tx_details,
            tx_positions);
    INSERT INTO rm_order_state (order_id, version, next_due_at)
        SELECT * FROM unnest(st_order_ids, st_versions, st_next_due_at)
        ON CONFLICT (order_id) DO UPDATE SET version = excluded.version,
            next_due_at = excluded.next_due_at;
    INSERT INTO rm_lines (line_index, order_id, line_id, subscription_id, offer, rsd,
            provisioning_contact, status, status_label, provisioning_pending,
            initial_email_sent_at, closes_at, billing_started, org_id, escalated_at,
            resend_count, partner, end_customer)
        SELECT * FROM unnest(ln_indexes, ln_order_ids, ln_line_ids, ln_subscription_ids,
            ln_offers, ln_rsds, ln_contacts, ln_statuses, ln_status_labels, ln_pending,
            ln_initial_email_sent_at, ln_closes_at, ln_billing_started, ln_org_ids,
            ln_escalated_at, ln_resend_counts, ln_partners, ln_end_customers)
        ON CONFLICT (order_id, line_index) DO UPDATE SET
            line_id = excluded.line_id, subscription_id = excluded.subscription_id,
            offer = excluded.offer, rsd = excluded.rsd,
            provisioning_contact = excluded.provisioning_contact, status = excluded.status,
            status_label = excluded.status_label,
            provisioning_pending = excluded.provisioning_pending,
            initial_email_sent_at = excluded.initial_email_sent_at,
            closes_at = excluded.closes_at, billing_started = excluded.billing_started,
            org_id = excluded.org_id, escalated_at = excluded.escalated_at,
            resend_count = excluded.resend_count, partner = excluded.partner,
            end_customer = excluded.end_customer;
    RETURN true;
END
$$;
"#,
    },
];

/// Column types of `rm_transactions` rows in `unnest` form: the id, then
/// [`TX_COLUMNS`].
const TX_TYPES: &[&str] = &[
    "int8", "text", "text", "text", "text", "text", "text", "text", "text", "text", "text", "text",
    "text", "bool", "text", "int8",
];
/// Column types of `rm_order_state` rows: order id, version, next due time.
const STATE_TYPES: &[&str] = &["text", "int8", "text"];
/// Column types of `rm_lines` rows: the line index, then [`LINE_COLUMNS`].
const LINE_TYPES: &[&str] = &[
    "int8", "text", "text", "text", "text", "text", "text", "text", "text", "bool", "text", "text",
    "bool", "text", "text", "int8", "text", "text",
];
const STATE_UPSERT: &str = "ON CONFLICT (order_id) DO UPDATE SET version = excluded.version, \
                            next_due_at = excluded.next_due_at";
const LINE_UPSERT: &str = "ON CONFLICT (order_id, line_index) DO UPDATE SET \
     line_id = excluded.line_id, subscription_id = excluded.subscription_id, \
     offer = excluded.offer, rsd = excluded.rsd, \
     provisioning_contact = excluded.provisioning_contact, status = excluded.status, \
     status_label = excluded.status_label, \
     provisioning_pending = excluded.provisioning_pending, \
     initial_email_sent_at = excluded.initial_email_sent_at, \
     closes_at = excluded.closes_at, billing_started = excluded.billing_started, \
     org_id = excluded.org_id, escalated_at = excluded.escalated_at, \
     resend_count = excluded.resend_count, partner = excluded.partner, \
     end_customer = excluded.end_customer";
const CHECKPOINT_SQL: &str = "SELECT position FROM rm_checkpoints WHERE projection = $1";
const LOAD_STATES: &str =
    "SELECT order_id, version FROM rm_order_state WHERE order_id = ANY($1::text[])";

/// `SELECT * FROM unnest($first::type[], …)`, with `filter` after it.
fn select_unnest(first: usize, types: &[&str], filter: &str) -> String {
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect();
    format!("SELECT * FROM unnest({}) {filter}", arrays.join(", "))
}

fn insert_transactions_sql(first: usize, filter: &str) -> String {
    format!(
        "INSERT INTO rm_transactions (id, {TX_COLUMNS}) {}",
        select_unnest(first, TX_TYPES, filter)
    )
}

fn upsert_states_sql(first: usize, filter: &str) -> String {
    format!(
        "INSERT INTO rm_order_state (order_id, version, next_due_at) {} {STATE_UPSERT}",
        select_unnest(first, STATE_TYPES, filter)
    )
}

fn upsert_lines_sql(first: usize, filter: &str) -> String {
    format!(
        "INSERT INTO rm_lines (line_index, {LINE_COLUMNS}) {} {LINE_UPSERT}",
        select_unnest(first, LINE_TYPES, filter)
    )
}

/// The function that writes the read models of a store append, in the
/// append's transaction (migration 5), and how many arguments it takes: the
/// checkpoint's name, new and old position, then the [`TX_TYPES`],
/// [`STATE_TYPES`] and [`LINE_TYPES`] arrays.
const RM_INLINE_FUNCTION: &str = "provledger_rm_inline";
const RM_INLINE_ARGS: usize = 3 + TX_TYPES.len() + STATE_TYPES.len() + LINE_TYPES.len();

/// `SELECT provledger_rm_inline($1, …)`: for the locked append path.
fn rm_inline_sql() -> String {
    let args: Vec<String> = (1..=RM_INLINE_ARGS).map(|i| format!("${i}")).collect();
    format!("SELECT {RM_INLINE_FUNCTION}({})", args.join(", "))
}

/// Statements prepared once per connection.
struct Statements {
    lock: Statement,
    checkpoint: Statement,
    set_checkpoint: Statement,
    load_states: Statement,
    insert_transactions: Statement,
    upsert_states: Statement,
    upsert_lines: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Self, ProjectionError> {
        Ok(Statements {
            lock: client.prepare("SELECT pg_advisory_xact_lock($1::int4, $2::int4)")?,
            checkpoint: client.prepare(CHECKPOINT_SQL)?,
            set_checkpoint: client
                .prepare("UPDATE rm_checkpoints SET position = $2 WHERE projection = $1")?,
            load_states: client.prepare(LOAD_STATES)?,
            insert_transactions: client.prepare(&insert_transactions_sql(1, ""))?,
            upsert_states: client.prepare(&upsert_states_sql(1, ""))?,
            upsert_lines: client.prepare(&upsert_lines_sql(1, ""))?,
        })
    }
}

/// The read models in a PostgreSQL schema.
pub(crate) struct PostgresModels {
    url: String,
    schema: Option<String>,
    /// The schema the tables are in (`schema`, or the one the connection's
    /// `search_path` resolved to).
    current_schema: String,
    lock_key: i32,
    client: Client,
    statements: Statements,
    /// Statements of run-time built queries, by SQL text (few shapes).
    queries: HashMap<String, Statement>,
}

impl PostgresModels {
    /// Connect to `url`; keep the read models in `schema` (created if
    /// missing) or, for `None`, in the connection's current schema.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self, ProjectionError> {
        Self::connect_in_mode(url, schema, false)
    }

    /// [`PostgresModels::connect`], or with `read_only` without creating
    /// or migrating anything: the read models must exist at this build's
    /// version, and SELECT on them suffices.
    pub fn connect_in_mode(
        url: &str,
        schema: Option<&str>,
        read_only: bool,
    ) -> Result<Self, ProjectionError> {
        if let Some(schema) = schema {
            check_schema_name(url, schema)?;
        }
        let mut client = if read_only {
            let mut client = Client::connect(url, NoTls)?;
            if let Some(schema) = schema {
                client.batch_execute(&format!("SET search_path TO \"{schema}\""))?;
            }
            client
        } else {
            connect_client(url, schema)?
        };
        let current: Option<String> = client.query_one("SELECT current_schema()", &[])?.get(0);
        let Some(current) = current else {
            return Err(ProjectionError::InvalidUrl {
                url: redact(url),
                reason: "the connection's search_path names no existing schema; create one or \
                         set search_path for the user"
                    .into(),
            });
        };
        let found = rm_version(&mut client, &current)?;
        let supported = migrations::latest(MIGRATIONS);
        if found > supported {
            return Err(ProjectionError::SchemaTooNew { found, supported });
        }
        if read_only && found < supported {
            return Err(ProjectionError::NotReady {
                reason: format!(
                    "the read models in schema {current} are at version {found} and this build needs {supported}"
                ),
            });
        }
        // Read models at this build's version need no migration, so a role
        // without CREATE on the schema can maintain them.
        if found < supported {
            migrate(&mut client, &current)?;
        }
        let lock_key = table_lock_key(&mut client, "rm_checkpoints")?;
        let statements = Statements::prepare(&mut client)?;
        Ok(PostgresModels {
            url: url.to_string(),
            schema: schema.map(str::to_string),
            current_schema: current,
            lock_key,
            client,
            statements,
            queries: HashMap::new(),
        })
    }

    /// The URL and the schema of these read models: a store append on the
    /// same may write them in its own transaction ([`project_inline`]).
    pub fn location(&self) -> (String, String) {
        (self.url.clone(), self.current_schema.clone())
    }

    /// Reconnect if the server closed the connection.
    fn ensure_open(&mut self) -> Result<(), ProjectionError> {
        if self.client.is_closed() {
            let mut client = connect_client(&self.url, self.schema.as_deref())?;
            self.statements = Statements::prepare(&mut client)?;
            self.client = client;
            self.queries.clear();
        }
        Ok(())
    }

    /// Run a query built at run time, preparing it once per connection.
    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, ProjectionError> {
        self.ensure_open()?;
        let statement = match self.queries.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = self.client.prepare(sql)?;
                self.queries.insert(sql.to_string(), s.clone());
                s
            }
        };
        Ok(self.client.query(&statement, params)?)
    }
}

fn connect_client(url: &str, schema: Option<&str>) -> Result<Client, ProjectionError> {
    let mut client = Client::connect(url, NoTls)?;
    if let Some(schema) = schema {
        create_schema(&mut client, schema)?;
        client.batch_execute(&format!("SET search_path TO \"{schema}\""))?;
    }
    Ok(client)
}

/// The read models' schema version in `schema` (0 when absent), read
/// without creating or locking anything.
fn rm_version(client: &mut Client, schema: &str) -> Result<i64, ProjectionError> {
    let table: Option<String> = client
        .query_one(
            "SELECT to_regclass(format('%I.rm_schema_migrations', $1::text))::text",
            &[&schema],
        )?
        .get(0);
    Ok(match table {
        Some(_) => client
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::int8 FROM rm_schema_migrations",
                &[],
            )?
            .try_get(0)?,
        None => 0,
    })
}

/// Apply the migrations this schema lacks (the store's migration runner,
/// under the schema's migration lock, so that processes starting at once do
/// not race).
fn migrate(client: &mut Client, schema: &str) -> Result<(), ProjectionError> {
    migrations::run(
        &mut PostgresMigrator::new(client, schema, "rm_schema_migrations"),
        MIGRATIONS,
    )
    .map_err(migration_error)
}

fn read_checkpoint(
    client: &mut impl GenericClient,
    statements: &Statements,
) -> Result<Position, ProjectionError> {
    match client.query_opt(&statements.checkpoint, &[&CHECKPOINT])? {
        Some(row) => to_u64(
            "rm_checkpoints",
            &|| CHECKPOINT.to_string(),
            row.try_get(0)?,
        ),
        None => Err(ProjectionError::Corrupt {
            table: "rm_checkpoints",
            key: CHECKPOINT.to_string(),
            reason: "the checkpoint row is missing".into(),
        }),
    }
}

/// The states of `wanted` orders, each folded again from the first
/// `version` events of its stream, read on this connection inside the
/// batch's transaction; the read models must say they applied exactly that
/// many.
///
/// `load` is [`LOAD_STATES`] and `read_stream` the store's `READ_STREAM`,
/// prepared on `client` or not.
fn load_states<L, R>(
    client: &mut impl GenericClient,
    load: &L,
    read_stream: &R,
    wanted: &[(OrderId, StreamVersion)],
) -> Result<HashMap<OrderId, OrderState>, ProjectionError>
where
    L: ToStatement + ?Sized,
    R: ToStatement + ?Sized,
{
    let names: Vec<&str> = wanted.iter().map(|(id, _)| id.as_str()).collect();
    let mut applied: HashMap<String, u64> = HashMap::new();
    for row in client.query(load, &[&names])? {
        let id: String = row.try_get(0)?;
        let version: i64 = row.try_get(1)?;
        let version = to_u64("rm_order_state", &|| id.clone(), version)?;
        applied.insert(id, version);
    }
    let mut out = HashMap::new();
    for (id, version) in wanted {
        check_applied(id, applied.get(id.as_str()).copied(), *version)?;
        let events = client
            .query(read_stream, &[&id.stream_id(), &0_i64, &to_i64(*version)?])?
            .iter()
            .map(provledger_store::postgres::decode_event)
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(id.clone(), fold_stored(id, *version, events)?);
    }
    Ok(out)
}

/// Write the read models of `events`, which a store append has just
/// written in its open transaction `tx` (on the store's connection, in the
/// schema of these read models), in that transaction: one more statement,
/// a call of [`RM_INLINE_FUNCTION`], so that they commit with the events.
///
/// Without a round trip to read the checkpoint first, this relies on
/// `cache`: when it says that the read models stood right before the first
/// event (this handle wrote them last), the function moves the checkpoint
/// only if they still do; a cache valid elsewhere is checked first.
/// `Ok(None)`: nothing was written (the read models are elsewhere, or the
/// batch resolves a support case, which updates earlier rows); the caller
/// catches up after the commit.
pub(crate) fn project_inline(
    tx: &mut InlineTx<'_>,
    events: Vec<RecordedEvent>,
    cache: &mut StateCache,
    known: &HashMap<OrderId, OrderState>,
) -> Result<Option<FoldedStates>, ProjectionError> {
    let Some((before, decoded)) = inline_batch(events)? else {
        return Ok(None);
    };
    if !cache.is_valid_at(before) {
        // A cold cache (a new process): one round trip to learn where the
        // read models stand; the function still checks it.
        let checkpoint = tx.prepare_cached(CHECKPOINT_SQL)?;
        let row = tx.client().query_one(&checkpoint, &[&CHECKPOINT])?;
        if to_u64(
            "rm_checkpoints",
            &|| CHECKPOINT.to_string(),
            row.try_get(0)?,
        )? != before
        {
            return Ok(None);
        }
        cache.validate(before);
    }
    let (out, states) = fold_batch(&decoded, cache, |ids| {
        load_unknown(ids, known, |ids| {
            let load = tx.prepare_cached(LOAD_STATES)?;
            let read_stream = tx.prepare_cached(provledger_store::postgres::READ_STREAM)?;
            load_states(tx.client(), &load, &read_stream, ids)
        })
    })?;
    let batch = InlineBatch {
        before,
        out,
        states,
    };
    if !batch.fits() {
        return Ok(None);
    }
    static RM_INLINE: OnceLock<String> = OnceLock::new();
    let statement = tx.prepare_cached(RM_INLINE.get_or_init(rm_inline_sql))?;
    let written: bool = {
        let args = batch.args()?;
        tx.client()
            .query_one(&statement, &refs(&args))?
            .try_get(0)?
    };
    if !written {
        // Another writer moved the read models: this cache is stale.
        cache.clear();
        return Ok(None);
    }
    Ok(Some(batch.states))
}

/// The read models of a store append, folded and ready to be written with
/// it.
pub(crate) struct InlineBatch {
    /// The checkpoint they were folded on: the position before the first event.
    before: Position,
    out: BatchOutput,
    /// The orders' states after the batch, for the cache once committed.
    pub(crate) states: FoldedStates,
}

/// What [`fold_for_call`] found.
pub(crate) enum InlineFold {
    /// Folded without reading anything: write it with the events.
    Ready(InlineBatch),
    /// Nothing to write with the events: the caller catches up after the commit.
    Skip,
    /// The fold would need to read the read models or the log first.
    NeedsReads,
}

/// Fold the read models of `events` for the store's one-statement append,
/// reading nothing: only when `cache` says they stand right before the
/// first event and every order the batch touches is cached or `known`
/// (the function still checks the checkpoint).
pub(crate) fn fold_for_call(
    events: Vec<RecordedEvent>,
    cache: &StateCache,
    known: &HashMap<OrderId, OrderState>,
) -> InlineFold {
    let Ok(Some((before, decoded))) = inline_batch(events) else {
        return InlineFold::Skip;
    };
    if !cache.is_valid_at(before) {
        return InlineFold::NeedsReads;
    }
    let mut needs_reads = false;
    let folded = fold_batch(&decoded, cache, |ids| {
        load_unknown(ids, known, |_| {
            // What was folded is thrown away below.
            needs_reads = true;
            Ok(HashMap::new())
        })
    });
    match folded {
        _ if needs_reads => InlineFold::NeedsReads,
        Ok((out, states)) => {
            let batch = InlineBatch {
                before,
                out,
                states,
            };
            if batch.fits() {
                InlineFold::Ready(batch)
            } else {
                InlineFold::Skip
            }
        }
        Err(_) => InlineFold::Skip,
    }
}

impl InlineBatch {
    /// Whether the function can write it: no support case is resolved
    /// (which updates earlier rows) and no table gets more than [`CHUNK`]
    /// rows.
    fn fits(&self) -> bool {
        let lines: usize = self.out.orders.iter().map(|o| o.changed_lines.len()).sum();
        self.out.case_resolutions.is_empty()
            && [self.out.transactions.len(), self.out.orders.len(), lines]
                .iter()
                .all(|n| *n <= CHUNK)
    }

    /// The arguments of [`RM_INLINE_FUNCTION`].
    fn args(&self) -> Result<Vec<Param<'_>>, ProjectionError> {
        let out = &self.out;
        let ids = transaction_ids(&out.transactions)?;
        let lines = changed_lines(&out.orders)?;
        let mut args: Vec<Param<'_>> = vec![
            Box::new(CHECKPOINT),
            Box::new(to_i64(out.last_position)?),
            Box::new(to_i64(self.before)?),
        ];
        args.extend(transaction_params(&out.transactions, &ids)?);
        args.extend(state_params(&out.orders)?);
        args.extend(line_params(&lines));
        Ok(args)
    }

    /// The call of [`RM_INLINE_FUNCTION`] for the store's one-statement
    /// append; `None` when a value cannot be stored (the caller then
    /// catches up, and reports it).
    pub(crate) fn call(&self) -> Option<InlineCall<'_>> {
        Some(InlineCall {
            function: RM_INLINE_FUNCTION,
            args: self.args().ok()?,
        })
    }
}

/// Open a batch's transaction: exclude every other worker first, only then
/// read the checkpoint (READ COMMITTED: each statement sees the latest
/// commit). Returns the transaction and the stored checkpoint.
fn begin_batch<'c>(
    client: &'c mut Client,
    statements: &Statements,
    lock_key: i32,
) -> Result<(postgres::Transaction<'c>, Position), ProjectionError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()?;
    // Derived data, committed with its checkpoint: a batch lost in a server
    // crash is applied again by the next catch-up, so it need not wait for
    // its WAL flush (the events' own commits stay synchronous).
    tx.batch_execute("SET LOCAL synchronous_commit = off")?;
    tx.execute(&statements.lock, &[&BATCH_LOCK_CLASS, &lock_key])?;
    let found = read_checkpoint(&mut tx, statements)?;
    Ok((tx, found))
}

/// Write every row of `out` and its checkpoint, and commit.
fn commit_batch(
    mut tx: postgres::Transaction<'_>,
    statements: &Statements,
    out: &BatchOutput,
) -> Result<Applied, ProjectionError> {
    write_batch(&mut tx, statements, out)?;
    tx.execute(
        &statements.set_checkpoint,
        &[&CHECKPOINT, &to_i64(out.last_position)?],
    )?;
    tx.commit()?;
    Ok(Applied::Done {
        events: out.events,
        checkpoint: out.last_position,
    })
}

fn opt_time(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(fmt_time)
}

/// A statement parameter that owns or borrows its value.
type Param<'a> = Box<dyn ToSql + Sync + 'a>;

fn refs<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The [`TX_TYPES`] arrays of `rows`, whose ids are `ids`.
fn transaction_params<'a>(
    rows: &'a [TransactionRow],
    ids: &[i64],
) -> Result<Vec<Param<'a>>, ProjectionError> {
    let text = |f: fn(&TransactionRow) -> &str| -> Param<'a> {
        Box::new(rows.iter().map(f).collect::<Vec<&str>>())
    };
    let opt = |f: fn(&TransactionRow) -> Option<&str>| -> Param<'a> {
        Box::new(rows.iter().map(f).collect::<Vec<Option<&str>>>())
    };
    let submitted_at: Vec<String> = rows.iter().map(|t| fmt_time(&t.submitted_at)).collect();
    let all: Vec<bool> = rows.iter().map(|t| t.applied_to_all_lines).collect();
    let mut position = Vec::with_capacity(rows.len());
    for t in rows {
        position.push(to_i64(t.position)?);
    }
    Ok(vec![
        Box::new(ids.to_vec()),
        text(|t| &t.transaction_id),
        text(|t| t.tx_type.as_str()),
        text(|t| &t.order_id),
        text(|t| &t.line_id),
        text(|t| &t.subscription_id),
        text(|t| &t.submitted_by),
        Box::new(submitted_at),
        text(|t| t.status.as_str()),
        opt(|t| t.reason.as_deref()),
        opt(|t| t.reason_code.as_deref()),
        opt(|t| t.old_email.as_deref()),
        opt(|t| t.new_email.as_deref()),
        Box::new(all),
        opt(|t| t.detail.as_deref()),
        Box::new(position),
    ])
}

/// The [`STATE_TYPES`] arrays of `orders`.
fn state_params(orders: &[DirtyOrder]) -> Result<Vec<Param<'_>>, ProjectionError> {
    let mut order_id = Vec::with_capacity(orders.len());
    let mut version = Vec::with_capacity(orders.len());
    let mut next_due = Vec::with_capacity(orders.len());
    for order in orders {
        order_id.push(order.order_id.as_str());
        version.push(to_i64(order.version)?);
        next_due.push(order.next_due_at.map(|t| fmt_time(&t)));
    }
    Ok(vec![
        Box::new(order_id),
        Box::new(version),
        Box::new(next_due),
    ])
}

/// The changed line rows of `orders`, with their index in the order.
fn changed_lines(orders: &[DirtyOrder]) -> Result<Vec<(i64, &LineRow)>, ProjectionError> {
    let mut lines = Vec::new();
    for order in orders {
        for (index, row) in &order.changed_lines {
            lines.push((to_i64(*index as u64)?, row));
        }
    }
    Ok(lines)
}

/// The [`LINE_TYPES`] arrays of `lines`.
fn line_params<'a>(lines: &[(i64, &'a LineRow)]) -> Vec<Param<'a>> {
    let text = |f: fn(&LineRow) -> &str| -> Param<'a> {
        Box::new(lines.iter().map(|(_, l)| f(l)).collect::<Vec<&str>>())
    };
    let opt = |f: fn(&LineRow) -> Option<&str>| -> Param<'a> {
        Box::new(
            lines
                .iter()
                .map(|(_, l)| f(l))
                .collect::<Vec<Option<&str>>>(),
        )
    };
    let time = |f: fn(&LineRow) -> &Option<DateTime<Utc>>| -> Param<'a> {
        Box::new(
            lines
                .iter()
                .map(|(_, l)| opt_time(f(l)))
                .collect::<Vec<Option<String>>>(),
        )
    };
    let flag = |f: fn(&LineRow) -> bool| -> Param<'a> {
        Box::new(lines.iter().map(|(_, l)| f(l)).collect::<Vec<bool>>())
    };
    let index: Vec<i64> = lines.iter().map(|(i, _)| *i).collect();
    let rsd: Vec<String> = lines.iter().map(|(_, l)| fmt_date(&l.rsd)).collect();
    let resend_count: Vec<i64> = lines
        .iter()
        .map(|(_, l)| i64::from(l.resend_count))
        .collect();
    vec![
        Box::new(index),
        text(|l| &l.order_id),
        text(|l| &l.line_id),
        text(|l| &l.subscription_id),
        text(|l| &l.offer),
        Box::new(rsd),
        text(|l| &l.provisioning_contact),
        text(|l| &l.status),
        text(|l| &l.status_label),
        flag(|l| l.provisioning_pending),
        time(|l| &l.initial_email_sent_at),
        time(|l| &l.closes_at),
        flag(|l| l.billing_started),
        opt(|l| l.org_id.as_deref()),
        time(|l| &l.escalated_at),
        Box::new(resend_count),
        text(|l| &l.partner),
        text(|l| &l.end_customer),
    ]
}

fn write_batch(
    client: &mut impl GenericClient,
    statements: &Statements,
    out: &BatchOutput,
) -> Result<(), ProjectionError> {
    let ids = transaction_ids(&out.transactions)?;
    for (chunk, ids) in out.transactions.chunks(CHUNK).zip(ids.chunks(CHUNK)) {
        let params = transaction_params(chunk, ids)?;
        client.execute(&statements.insert_transactions, &refs(&params))?;
    }

    for r in &out.case_resolutions {
        client.execute(
            "UPDATE rm_transactions SET status = $1, reason = $2 \
             WHERE order_id = $3 AND tx_type = 'support_case' \
             AND substr(detail, 1, length($4)) = $4",
            &[&r.status.as_str(), &r.reason, &r.order_id, &r.detail_prefix],
        )?;
    }

    for chunk in out.orders.chunks(CHUNK) {
        let params = state_params(chunk)?;
        client.execute(&statements.upsert_states, &refs(&params))?;
    }

    let lines = changed_lines(&out.orders)?;
    for chunk in lines.chunks(CHUNK) {
        let params = line_params(chunk);
        client.execute(&statements.upsert_lines, &refs(&params))?;
    }
    Ok(())
}

/// The getters the shared row decoders need (see [`StoredRow`]).
impl StoredRow for Row {
    fn text(&self, i: usize) -> Result<String, ProjectionError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, ProjectionError> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, ProjectionError> {
        Ok(self.try_get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, ProjectionError> {
        Ok(self.try_get(i)?)
    }
}

fn decode_all<T>(
    rows: Vec<Row>,
    decode: impl Fn(&Row) -> Result<T, ProjectionError>,
) -> Result<Vec<T>, ProjectionError> {
    rows.iter().map(decode).collect()
}

impl Backend for PostgresModels {
    fn checkpoint(&mut self) -> Result<Position, ProjectionError> {
        self.ensure_open()?;
        read_checkpoint(&mut self.client, &self.statements)
    }

    fn apply(
        &mut self,
        expected: Position,
        events: &[Decoded],
        cache: &mut StateCache,
    ) -> Result<Applied, ProjectionError> {
        self.ensure_open()?;
        let statements = &self.statements;
        let (mut tx, found) = begin_batch(&mut self.client, statements, self.lock_key)?;
        let events = match plan(found, expected, events)? {
            Plan::Apply(events) => events,
            Plan::Restart => return Ok(Applied::Restart),
        };
        cache.validate(found);
        let (out, states) = fold_batch(events, cache, |ids| {
            // The store's statement is not prepared with the others: the
            // read models may be opened before the store has created its
            // tables.
            let read_stream = provledger_store::postgres::READ_STREAM;
            load_states(&mut tx, &statements.load_states, read_stream, ids)
        })?;
        let applied = commit_batch(tx, statements, &out)?;
        cache.committed(states);
        Ok(applied)
    }

    fn write(&mut self, expected: Position, out: &BatchOutput) -> Result<Applied, ProjectionError> {
        self.ensure_open()?;
        let statements = &self.statements;
        let (tx, found) = begin_batch(&mut self.client, statements, self.lock_key)?;
        if found != expected {
            return Ok(Applied::Restart);
        }
        commit_batch(tx, statements, out)
    }

    fn reset(&mut self) -> Result<(), ProjectionError> {
        self.ensure_open()?;
        let mut tx = self.client.transaction()?;
        tx.execute(&self.statements.lock, &[&BATCH_LOCK_CLASS, &self.lock_key])?;
        tx.batch_execute("TRUNCATE rm_order_state, rm_lines, rm_transactions")?;
        tx.execute(&self.statements.set_checkpoint, &[&CHECKPOINT, &0_i64])?;
        tx.commit()?;
        Ok(())
    }

    fn finish_rebuild(&mut self) -> Result<(), ProjectionError> {
        // PostgreSQL keeps its indexes through a rebuild: they are
        // maintained in bulk by the `unnest` inserts well enough.
        Ok(())
    }

    fn lines(&mut self, q: &LineQuery) -> Result<Vec<LineRow>, ProjectionError> {
        let mut sql = format!("SELECT {LINE_COLUMNS} FROM rm_lines");
        let mut conditions = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let order_id = q.order_id.as_ref().map(OrderId::as_str);
        let subscription_id = q.subscription_id.as_ref().map(|s| s.as_str());
        if let Some(order_id) = &order_id {
            params.push(order_id);
            conditions.push(format!("order_id = ${}", params.len()));
        }
        if let Some(subscription_id) = &subscription_id {
            params.push(subscription_id);
            conditions.push(format!("subscription_id = ${}", params.len()));
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY order_id, line_index");
        decode_all(self.query(&sql, &params)?, line_row)
    }

    fn transactions(
        &mut self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRow>, ProjectionError> {
        let mut sql = format!("SELECT {TX_COLUMNS} FROM rm_transactions");
        let mut conditions = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let tx_type = q.tx_type.map(|t| t.as_str());
        let subscription_id = q.subscription_id.as_ref().map(|s| s.as_str());
        let order_id = q.order_id.as_ref().map(OrderId::as_str);
        let status = q.status.map(|s| s.as_str());
        let since = q.since.as_ref().map(fmt_lower_bound);
        let until = q.until.as_ref().map(fmt_upper_bound);
        let limit = q.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        for (value, condition) in [
            (
                tx_type.as_ref().map(|v| v as &(dyn ToSql + Sync)),
                "tx_type = ",
            ),
            (
                subscription_id.as_ref().map(|v| v as &(dyn ToSql + Sync)),
                "subscription_id = ",
            ),
            (
                order_id.as_ref().map(|v| v as &(dyn ToSql + Sync)),
                "order_id = ",
            ),
            (
                status.as_ref().map(|v| v as &(dyn ToSql + Sync)),
                "status = ",
            ),
            (
                since.as_ref().map(|v| v as &(dyn ToSql + Sync)),
                "submitted_at >= ",
            ),
            (
                until.as_ref().map(|v| v as &(dyn ToSql + Sync)),
                "submitted_at <= ",
            ),
        ] {
            if let Some(value) = value {
                params.push(value);
                conditions.push(format!("{condition}${}", params.len()));
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
            sql.push_str(&format!(" LIMIT ${}", params.len()));
        }
        decode_all(self.query(&sql, &params)?, transaction_row)
    }

    fn orders_due(&mut self, now: DateTime<Utc>) -> Result<Vec<OrderId>, ProjectionError> {
        let now = fmt_upper_bound(&now);
        let rows = self.query(
            "SELECT order_id FROM rm_order_state \
             WHERE next_due_at IS NOT NULL AND next_due_at <= $1 ORDER BY order_id",
            &[&now],
        )?;
        decode_all(rows, |r| {
            let id: String = r.try_get(0)?;
            OrderId::parse(&id).map_err(|e| ProjectionError::Corrupt {
                table: "rm_order_state",
                key: id.clone(),
                reason: e.to_string(),
            })
        })
    }

    fn order_states(&mut self) -> Result<Vec<StoredState>, ProjectionError> {
        let rows = self.query(
            "SELECT order_id, version, next_due_at FROM rm_order_state \
             ORDER BY order_id",
            &[],
        )?;
        decode_all(rows, |r| {
            Ok(StoredState {
                order_id: r.try_get(0)?,
                version: r.try_get(1)?,
                next_due_at: r.try_get(2)?,
            })
        })
    }
}

/// The store's schema-name rule, reported as a read-model error.
fn check_schema_name(url: &str, schema: &str) -> Result<(), ProjectionError> {
    provledger_store::postgres::check_schema_name(url, schema).map_err(|e| match e {
        provledger_store::StoreError::InvalidUrl { url, reason } => {
            ProjectionError::InvalidUrl { url, reason }
        }
        other => other.into(),
    })
}

use provledger_store::redact_url as redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_validated_and_urls_redacted() {
        assert!(check_schema_name("postgres://h/db", "ledger_1").is_ok());
        for bad in ["", "A", "1a", "a-b", "a\"b", "pg_x"] {
            assert!(check_schema_name("postgres://h/db", bad).is_err(), "{bad}");
        }
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        migrations::check_numbering(MIGRATIONS).unwrap_or_else(|e| panic!("{e}"));
    }
}
