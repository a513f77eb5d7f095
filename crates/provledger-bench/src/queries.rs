//! P4: the Transaction Manager queries a partner runs, timed through the
//! ledger and through a bare SQL statement on the same table.
//!
//! This module exists so that query latency is measured on realistic
//! parameters (subscriptions, orders and days that exist in the ledger,
//! drawn with the run's seed) and compared with the ceiling: the very same
//! SQL, prepared once, rows read into plain values.

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, Utc};
use provledger::Ledger;
use provledger_domain::{OrderId, SubscriptionId};
use provledger_projections::{TransactionQuery, TransactionStatus, TransactionType};
use provledger_store::hash::format_time;

use crate::rng::Rng;

/// The three query shapes of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// Type *Provisioning Email Update* + one subscription (R9).
    TypeSubscription,
    /// Every transaction of one order.
    Order,
    /// Failed transactions in a 24-hour window, first page (100 rows).
    StatusRange,
}

impl QueryKind {
    /// All kinds, in report order.
    pub const ALL: [QueryKind; 3] = [
        QueryKind::TypeSubscription,
        QueryKind::Order,
        QueryKind::StatusRange,
    ];

    /// Short name for the report.
    pub fn name(self) -> &'static str {
        match self {
            QueryKind::TypeSubscription => "type+subscription",
            QueryKind::Order => "order",
            QueryKind::StatusRange => "status+24h range (page of 100)",
        }
    }
}

/// Rows per page of the range query.
pub const PAGE: usize = 100;

/// One query's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Shape.
    pub kind: QueryKind,
    /// Subscription (type + subscription).
    pub subscription: String,
    /// Order (order).
    pub order: String,
    /// Window start (range).
    pub since: DateTime<Utc>,
}

impl Sample {
    /// The query as the ledger takes it.
    pub fn to_query(&self) -> anyhow::Result<TransactionQuery> {
        Ok(match self.kind {
            QueryKind::TypeSubscription => TransactionQuery {
                tx_type: Some(TransactionType::ProvisioningEmailUpdate),
                subscription_id: Some(SubscriptionId::parse(&self.subscription)?),
                ..TransactionQuery::default()
            },
            QueryKind::Order => TransactionQuery {
                order_id: Some(OrderId::parse(&self.order)?),
                ..TransactionQuery::default()
            },
            QueryKind::StatusRange => TransactionQuery {
                status: Some(TransactionStatus::Failed),
                since: Some(self.since),
                until: Some(self.since + Span::hours(24)),
                limit: Some(PAGE),
                ..TransactionQuery::default()
            },
        })
    }

    /// The same query as SQL with `?N` (`sqlite`) or `$N` placeholders, and
    /// its parameters as text (the limit last, as an integer).
    pub fn sql(&self, dollar: bool) -> (String, Vec<String>, Option<i64>) {
        let p = |n: usize| {
            if dollar {
                format!("${n}")
            } else {
                format!("?{n}")
            }
        };
        let columns = "transaction_id, tx_type, order_id, line_id, subscription_id, \
             submitted_by, submitted_at, status, reason, reason_code, old_email, new_email, \
             applied_to_all_lines, detail, position";
        match self.kind {
            QueryKind::TypeSubscription => (
                format!(
                    "SELECT {columns} FROM rm_transactions WHERE {} = {} AND subscription_id = {} \
                     ORDER BY submitted_at, id",
                    // The read models' own plan on SQLite: the subscription
                    // index, the type filtered (see docs/adr/0004).
                    if dollar { "tx_type" } else { "+tx_type" },
                    p(1),
                    p(2)
                ),
                vec!["provisioning_email_update".into(), self.subscription.clone()],
                None,
            ),
            QueryKind::Order => (
                format!(
                    "SELECT {columns} FROM rm_transactions WHERE order_id = {} ORDER BY submitted_at, id",
                    p(1)
                ),
                vec![self.order.clone()],
                None,
            ),
            QueryKind::StatusRange => (
                format!(
                    "SELECT {columns} FROM rm_transactions WHERE status = {} AND submitted_at >= {} \
                     AND submitted_at <= {} ORDER BY submitted_at, id LIMIT {}",
                    p(1),
                    p(2),
                    p(3),
                    p(4)
                ),
                vec![
                    "failed".into(),
                    format_time(&self.since),
                    format_time(&(self.since + Span::hours(24))),
                ],
                Some(PAGE as i64),
            ),
        }
    }
}

/// Where query parameters are drawn from: a random existing row.
pub trait RowSource {
    /// The smallest and largest Transaction Manager row id and the first and
    /// last submission times.
    fn bounds(&mut self) -> anyhow::Result<(i64, i64, DateTime<Utc>, DateTime<Utc>)>;
    /// The subscription and order of the first row with id ≥ `id`.
    fn row_at(&mut self, id: i64) -> anyhow::Result<Option<(String, String)>>;
}

/// `count` samples of each kind, drawn with `seed`.
pub fn samples(source: &mut dyn RowSource, count: usize, seed: u64) -> anyhow::Result<Vec<Sample>> {
    let (low, high, first, last) = source.bounds()?;
    let mut rng = Rng::new(seed ^ 0x9e7);
    let span = (last - first - Span::hours(24)).num_seconds().max(1) as u64;
    let mut out = Vec::with_capacity(count * 3);
    for _ in 0..count {
        let id = rng.range(low.max(0) as u64, high.max(0) as u64) as i64;
        let (subscription, order) = source
            .row_at(id)?
            .or(source.row_at(low)?)
            .unwrap_or_default();
        let since = first + Span::seconds(rng.range(0, span) as i64);
        for kind in QueryKind::ALL {
            out.push(Sample {
                kind,
                subscription: subscription.clone(),
                order: order.clone(),
                since,
            });
        }
    }
    Ok(out)
}

/// Median and 99th percentile of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Latency {
    /// Median, milliseconds.
    pub median_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Mean rows returned.
    pub mean_rows: f64,
    /// Queries timed.
    pub queries: usize,
}

impl Latency {
    /// Summarise latencies (and the rows each query returned).
    pub fn of(mut times: Vec<Duration>, rows: u64) -> Latency {
        if times.is_empty() {
            return Latency::default();
        }
        times.sort_unstable();
        let n = times.len();
        let pick = |q: f64| {
            let index = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            times[index].as_secs_f64() * 1000.0
        };
        Latency {
            median_ms: pick(0.5),
            p99_ms: pick(0.99),
            mean_rows: rows as f64 / n as f64,
            queries: n,
        }
    }
}

/// Time every sample of `kind` through the ledger (its real read path:
/// catch up, then query).
pub fn time_ledger(
    ledger: &Ledger,
    samples: &[Sample],
    kind: QueryKind,
) -> anyhow::Result<Latency> {
    let mut times = Vec::new();
    let mut rows = 0u64;
    for s in samples.iter().filter(|s| s.kind == kind) {
        let q = s.to_query()?;
        let started = Instant::now();
        let found = ledger.transactions(&q)?;
        times.push(started.elapsed());
        rows += found.len() as u64;
    }
    Ok(Latency::of(times, rows))
}

/// A raw row of the Transaction Manager, read into plain values.
type RawTxRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
    i64,
);

/// Time every sample of `kind` as bare SQL on SQLite.
pub fn time_raw_sqlite(
    conn: &rusqlite::Connection,
    samples: &[Sample],
    kind: QueryKind,
) -> anyhow::Result<Latency> {
    let mut times = Vec::new();
    let mut total = 0u64;
    for s in samples.iter().filter(|s| s.kind == kind) {
        let (sql, params, limit) = s.sql(false);
        let started = Instant::now();
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut values: Vec<&dyn rusqlite::ToSql> =
            params.iter().map(|p| p as &dyn rusqlite::ToSql).collect();
        if let Some(limit) = &limit {
            values.push(limit);
        }
        let mut rows = stmt.query(values.as_slice())?;
        let mut found: Vec<RawTxRow> = Vec::new();
        while let Some(r) = rows.next()? {
            found.push((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
                r.get(14)?,
            ));
        }
        times.push(started.elapsed());
        total += found.len() as u64;
    }
    Ok(Latency::of(times, total))
}

/// Time every sample of `kind` as bare SQL on PostgreSQL.
pub fn time_raw_pg(
    client: &mut postgres::Client,
    samples: &[Sample],
    kind: QueryKind,
) -> anyhow::Result<Latency> {
    let mut times = Vec::new();
    let mut total = 0u64;
    let mut prepared = std::collections::HashMap::new();
    for s in samples.iter().filter(|s| s.kind == kind) {
        let (sql, params, limit) = s.sql(true);
        let started = Instant::now();
        if !prepared.contains_key(&sql) {
            let stmt = client.prepare(&sql)?;
            prepared.insert(sql.clone(), stmt);
        }
        let stmt = &prepared[&sql];
        let mut values: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        if let Some(limit) = &limit {
            values.push(limit);
        }
        let rows = client.query(stmt, &values)?;
        let mut found: Vec<RawTxRow> = Vec::with_capacity(rows.len());
        for r in &rows {
            found.push((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
                r.try_get(8)?,
                r.try_get(9)?,
                r.try_get(10)?,
                r.try_get(11)?,
                r.try_get(12)?,
                r.try_get(13)?,
                r.try_get(14)?,
            ));
        }
        times.push(started.elapsed());
        total += found.len() as u64;
    }
    Ok(Latency::of(times, total))
}

/// Draws parameters from an SQLite ledger.
pub struct SqliteSource<'c>(pub &'c rusqlite::Connection);

fn parse(raw: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(raw)?.with_timezone(&Utc))
}

impl RowSource for SqliteSource<'_> {
    fn bounds(&mut self) -> anyhow::Result<(i64, i64, DateTime<Utc>, DateTime<Utc>)> {
        let (low, high): (Option<i64>, Option<i64>) =
            self.0
                .query_row("SELECT MIN(id), MAX(id) FROM rm_transactions", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let first: Option<String> = self
            .0
            .query_row(
                "SELECT submitted_at FROM rm_transactions ORDER BY submitted_at LIMIT 1",
                [],
                |r| r.get(0),
            )
            .ok();
        let last: Option<String> = self
            .0
            .query_row(
                "SELECT submitted_at FROM rm_transactions ORDER BY submitted_at DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .ok();
        let first = first.as_deref().map(parse).transpose()?.unwrap_or_default();
        let last = last.as_deref().map(parse).transpose()?.unwrap_or(first);
        Ok((low.unwrap_or(0), high.unwrap_or(0), first, last))
    }

    fn row_at(&mut self, id: i64) -> anyhow::Result<Option<(String, String)>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .0
            .prepare_cached(
                "SELECT subscription_id, order_id FROM rm_transactions WHERE id >= ?1 \
                 AND subscription_id <> '' ORDER BY id LIMIT 1",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }
}

/// Draws parameters from a PostgreSQL ledger.
pub struct PgSource<'c>(pub &'c mut postgres::Client);

impl RowSource for PgSource<'_> {
    fn bounds(&mut self) -> anyhow::Result<(i64, i64, DateTime<Utc>, DateTime<Utc>)> {
        let row = self.0.query_one(
            "SELECT MIN(id), MAX(id), MIN(submitted_at), MAX(submitted_at) FROM rm_transactions",
            &[],
        )?;
        let low: Option<i64> = row.try_get(0)?;
        let high: Option<i64> = row.try_get(1)?;
        let first: Option<String> = row.try_get(2)?;
        let last: Option<String> = row.try_get(3)?;
        let first = first.as_deref().map(parse).transpose()?.unwrap_or_default();
        let last = last.as_deref().map(parse).transpose()?.unwrap_or(first);
        Ok((low.unwrap_or(0), high.unwrap_or(0), first, last))
    }

    fn row_at(&mut self, id: i64) -> anyhow::Result<Option<(String, String)>> {
        let rows = self.0.query(
            "SELECT subscription_id, order_id FROM rm_transactions WHERE id >= $1 \
             AND subscription_id <> '' ORDER BY id LIMIT 1",
            &[&id],
        )?;
        Ok(match rows.first() {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }
}
