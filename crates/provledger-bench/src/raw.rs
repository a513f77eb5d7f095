//! Raw baselines: the same rows through bare `rusqlite` and `postgres`
//! calls, with nothing of provledger in the way.
//!
//! This module exists so that every figure the harness reports is compared,
//! in the same run on the same machine, with the ceiling the database itself
//! sets: the same event rows (same columns, same text, same unique index),
//! the same grouping into transactions and the same durability settings, but
//! no decisions, no hashing, no JSON encoding and no read models. The rows
//! are copied from the ledger under test, so both sides write identical bytes.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use provledger_store::Metadata;
use rusqlite::{params, Connection, TransactionBehavior};

/// One `events` row, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    /// Global position.
    pub position: i64,
    /// Stream id.
    pub stream_id: String,
    /// Stream version.
    pub stream_version: i64,
    /// Event type.
    pub event_type: String,
    /// Schema version.
    pub schema_version: i64,
    /// Canonical JSON payload.
    pub payload: String,
    /// Canonical JSON metadata.
    pub metadata: String,
    /// Business time, as stored.
    pub occurred_at: String,
    /// Recording time, as stored.
    pub recorded_at: String,
    /// Previous hash.
    pub prev_hash: String,
    /// Hash.
    pub hash: String,
}

/// The columns of [`RawRow`], in order.
pub const COLUMNS: &str = "position, stream_id, stream_version, event_type, schema_version, \
     payload, metadata, occurred_at, recorded_at, prev_hash, hash";

/// The raw table: the store's `events` table without its triggers (which
/// fire only on UPDATE and DELETE), so the same unique index is maintained.
const SQLITE_DDL: &str = "CREATE TABLE IF NOT EXISTS {table} (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    occurred_at    TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    UNIQUE (stream_id, stream_version)
)";

/// What an event decodes to when read back: the least a replay needs.
#[derive(Debug)]
pub struct Decoded {
    /// Position.
    pub position: i64,
    /// Stream id.
    pub stream_id: String,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub payload: serde_json::Value,
    /// Metadata.
    pub metadata: Metadata,
    /// Business time.
    pub occurred_at: DateTime<Utc>,
    /// Recording time.
    pub recorded_at: DateTime<Utc>,
    /// Hash.
    pub hash: String,
}

fn parse_time(raw: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(raw)
        .with_context(|| format!("bad time {raw:?}"))?
        .with_timezone(&Utc))
}

/// Decode a raw row the way a replay must: JSON payload and metadata, times.
pub fn decode(row: RawRow) -> anyhow::Result<Decoded> {
    Ok(Decoded {
        position: row.position,
        payload: serde_json::from_str(&row.payload)?,
        metadata: serde_json::from_str(&row.metadata)?,
        occurred_at: parse_time(&row.occurred_at)?,
        recorded_at: parse_time(&row.recorded_at)?,
        stream_id: row.stream_id,
        event_type: row.event_type,
        hash: row.hash,
    })
}

/// Raw SQLite.
pub mod sqlite {
    use super::*;

    /// Open a raw database at `path` with the store's pragmas (WAL,
    /// `synchronous=FULL`) and the raw `events` table.
    pub fn open(path: &std::path::Path) -> anyhow::Result<Connection> {
        let conn = Connection::open(path)?;
        let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        for table in ["events", "events_grouped"] {
            conn.execute_batch(&SQLITE_DDL.replace("{table}", table))?;
        }
        Ok(conn)
    }

    /// Open an existing database (e.g. the ledger under test) to read from.
    pub fn open_existing(path: &std::path::Path) -> anyhow::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(conn)
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            position: r.get(0)?,
            stream_id: r.get(1)?,
            stream_version: r.get(2)?,
            event_type: r.get(3)?,
            schema_version: r.get(4)?,
            payload: r.get(5)?,
            metadata: r.get(6)?,
            occurred_at: r.get(7)?,
            recorded_at: r.get(8)?,
            prev_hash: r.get(9)?,
            hash: r.get(10)?,
        })
    }

    /// Rows with positions `first..=last`.
    pub fn read_range(conn: &Connection, first: i64, last: i64) -> anyhow::Result<Vec<RawRow>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE position BETWEEN ?1 AND ?2 ORDER BY position"
        ))?;
        let rows = stmt.query_map(params![first, last], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Insert `rows` into `table` in one `BEGIN IMMEDIATE … COMMIT`;
    /// returns the time it took.
    pub fn insert_transaction(
        conn: &mut Connection,
        rows: &[RawRow],
        table: &str,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO {table} ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?;
            for r in rows {
                stmt.execute(params![
                    r.position,
                    r.stream_id,
                    r.stream_version,
                    r.event_type,
                    r.schema_version,
                    r.payload,
                    r.metadata,
                    r.occurred_at,
                    r.recorded_at,
                    r.prev_hash,
                    r.hash
                ])?;
            }
        }
        tx.commit()?;
        Ok(started.elapsed())
    }

    /// Copy every row of `source` into `target` in transactions of `batch`
    /// rows; returns the time spent inserting (reading is not counted).
    pub fn copy_all(
        source: &Connection,
        target: &mut Connection,
        batch: usize,
    ) -> anyhow::Result<(u64, Duration)> {
        let mut after = 0i64;
        let mut total = Duration::ZERO;
        let mut n = 0u64;
        loop {
            let rows = {
                let mut stmt = source.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![after, batch as i64], row)?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let Some(last) = rows.last() else {
                break;
            };
            after = last.position;
            total += insert_transaction(target, &rows, "events")?;
            n += rows.len() as u64;
        }
        Ok((n, total))
    }

    /// Read back and decode every event, in position order.
    pub fn replay(conn: &Connection) -> anyhow::Result<(u64, Duration)> {
        let started = Instant::now();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM events ORDER BY position"))?;
        let mut rows = stmt.query([])?;
        let mut n = 0u64;
        while let Some(r) = rows.next()? {
            let decoded = decode(row(r)?)?;
            std::hint::black_box(&decoded);
            n += 1;
        }
        Ok((n, started.elapsed()))
    }
}

/// Raw PostgreSQL.
pub mod pg {
    use super::*;
    use postgres::{Client, NoTls};

    /// Connect to `url` and create (or empty) the raw table in `schema`.
    pub fn connect(url: &str, schema: &str) -> anyhow::Result<Client> {
        let mut client = Client::connect(url, NoTls)?;
        client.batch_execute(&format!(
            "SET client_min_messages TO warning;
             CREATE SCHEMA IF NOT EXISTS {schema};
             SET search_path TO {schema};
             DROP TABLE IF EXISTS events;
             DROP TABLE IF EXISTS events_grouped;
             CREATE TABLE events (
                position       BIGINT PRIMARY KEY,
                stream_id      TEXT COLLATE \"C\" NOT NULL,
                stream_version BIGINT NOT NULL,
                event_type     TEXT NOT NULL,
                schema_version BIGINT NOT NULL,
                payload        TEXT NOT NULL,
                metadata       TEXT NOT NULL,
                occurred_at    TEXT NOT NULL,
                recorded_at    TEXT NOT NULL,
                prev_hash      TEXT NOT NULL,
                hash           TEXT NOT NULL,
                UNIQUE (stream_id, stream_version)
             );
             CREATE TABLE events_grouped (LIKE events INCLUDING ALL);"
        ))?;
        Ok(client)
    }

    fn row(r: &postgres::Row) -> anyhow::Result<RawRow> {
        Ok(RawRow {
            position: r.try_get(0)?,
            stream_id: r.try_get(1)?,
            stream_version: r.try_get(2)?,
            event_type: r.try_get(3)?,
            schema_version: r.try_get(4)?,
            payload: r.try_get(5)?,
            metadata: r.try_get(6)?,
            occurred_at: r.try_get(7)?,
            recorded_at: r.try_get(8)?,
            prev_hash: r.try_get(9)?,
            hash: r.try_get(10)?,
        })
    }

    /// Rows with positions `first..=last` of the ledger's `events`.
    pub fn read_range(client: &mut Client, first: i64, last: i64) -> anyhow::Result<Vec<RawRow>> {
        let rows = client.query(
            &format!(
                "SELECT {COLUMNS} FROM events WHERE position BETWEEN $1 AND $2 ORDER BY position"
            ),
            &[&first, &last],
        )?;
        rows.iter().map(row).collect()
    }

    /// The prepared single-row INSERT into `table`.
    pub fn prepare_insert(client: &mut Client, table: &str) -> anyhow::Result<postgres::Statement> {
        Ok(client.prepare(&format!(
            "INSERT INTO {table} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))?)
    }

    /// Insert `rows` in one transaction with `stmt` (from
    /// [`prepare_insert`]) once per row, as a command does; returns the time
    /// it took.
    pub fn insert_transaction(
        client: &mut Client,
        rows: &[RawRow],
        stmt: &postgres::Statement,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut tx = client.transaction()?;
        for r in rows {
            tx.execute(
                stmt,
                &[
                    &r.position,
                    &r.stream_id,
                    &r.stream_version,
                    &r.event_type,
                    &r.schema_version,
                    &r.payload,
                    &r.metadata,
                    &r.occurred_at,
                    &r.recorded_at,
                    &r.prev_hash,
                    &r.hash,
                ],
            )?;
        }
        tx.commit()?;
        Ok(started.elapsed())
    }

    fn copy_escape(out: &mut String, text: &str) {
        for c in text.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
    }

    /// Insert `rows` in one transaction with `COPY … FROM STDIN` (the fastest
    /// way into PostgreSQL); returns the time it took, encoding included.
    pub fn copy_transaction(client: &mut Client, rows: &[RawRow]) -> anyhow::Result<Duration> {
        use std::io::Write;
        let started = Instant::now();
        let mut tx = client.transaction()?;
        {
            let mut writer = tx.copy_in(&format!("COPY events ({COLUMNS}) FROM STDIN"))?;
            let mut buf = String::with_capacity(1 << 20);
            for r in rows {
                buf.push_str(&r.position.to_string());
                buf.push('\t');
                copy_escape(&mut buf, &r.stream_id);
                buf.push('\t');
                buf.push_str(&r.stream_version.to_string());
                buf.push('\t');
                copy_escape(&mut buf, &r.event_type);
                buf.push('\t');
                buf.push_str(&r.schema_version.to_string());
                for text in [
                    &r.payload,
                    &r.metadata,
                    &r.occurred_at,
                    &r.recorded_at,
                    &r.prev_hash,
                    &r.hash,
                ] {
                    buf.push('\t');
                    copy_escape(&mut buf, text);
                }
                buf.push('\n');
                if buf.len() > (1 << 20) {
                    writer.write_all(buf.as_bytes())?;
                    buf.clear();
                }
            }
            writer.write_all(buf.as_bytes())?;
            writer.finish()?;
        }
        tx.commit()?;
        Ok(started.elapsed())
    }

    /// Copy every row of the ledger's `events` (through `source`) into the
    /// raw table (through `target`) in transactions of `batch` rows; returns
    /// the time spent writing.
    pub fn copy_all(
        source: &mut Client,
        target: &mut Client,
        batch: usize,
    ) -> anyhow::Result<(u64, Duration)> {
        let mut after = 0i64;
        let mut total = Duration::ZERO;
        let mut n = 0u64;
        loop {
            let rows = source.query(
                &format!(
                    "SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
                ),
                &[&after, &(batch as i64)],
            )?;
            let rows: Vec<RawRow> = rows.iter().map(row).collect::<anyhow::Result<_>>()?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.position;
            total += copy_transaction(target, &rows)?;
            n += rows.len() as u64;
        }
        Ok((n, total))
    }

    /// Read back and decode every event of the raw table, streamed.
    pub fn replay(client: &mut Client) -> anyhow::Result<(u64, Duration)> {
        let started = Instant::now();
        let mut tx = client.transaction()?;
        let portal = tx.bind(
            &format!("SELECT {COLUMNS} FROM events ORDER BY position"),
            &[],
        )?;
        let mut n = 0u64;
        loop {
            let rows = tx.query_portal(&portal, 5000)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let decoded = decode(row(r)?)?;
                std::hint::black_box(&decoded);
                n += 1;
            }
        }
        tx.commit()?;
        Ok((n, started.elapsed()))
    }
}
