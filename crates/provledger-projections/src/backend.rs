//! What a storage backend of the read models does, and the batch protocol
//! every backend follows.
//!
//! This module exists so that SQLite and PostgreSQL differ only in SQL: the
//! decision which events of a batch to apply ([`plan`]), the encoding of
//! times and the Transaction Manager row ids are shared, and so is the
//! contract in [`Backend`]'s docs.

use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use provledger_domain::OrderId;
use provledger_store::{hash::format_time, Position};

use crate::project::{BatchOutput, Decoded, StateCache};
use crate::{LineQuery, LineRow, ProjectionError, TransactionQuery, TransactionRow};
use provledger_store::RecordedEvent;

/// Events applied per database transaction.
pub(crate) const BATCH_SIZE: usize = 5_000;

/// Name of the checkpoint row of the order read models (lines,
/// transactions, history and the order states they share).
pub(crate) const CHECKPOINT: &str = "orders";

/// Transaction Manager row id = position × this + the row's rank (by line
/// id) among the rows of its event. An order has at most 500 lines.
pub(crate) const ROWS_PER_EVENT: i64 = 4096;

/// Result of one [`Backend::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The batch (or its part past the stored checkpoint) was committed.
    Done {
        /// Events the checkpoint moved over.
        events: u64,
        /// The new checkpoint.
        checkpoint: Position,
    },
    /// The stored checkpoint is not where the batch starts (another worker
    /// went further, or a rebuild went back): nothing was written; read again
    /// from the stored checkpoint.
    Restart,
}

/// A stored order's progress, as [`crate::ReadModels::dump`] prints it.
pub(crate) struct StoredState {
    pub order_id: String,
    pub version: i64,
    pub next_due_at: Option<String>,
}

/// A storage backend of the read models.
///
/// Contract of [`Backend::apply`]: in ONE database transaction that
/// excludes every other writer of the read models, read the stored
/// checkpoint `found`, let [`plan`] choose the events to apply, fold them
/// with [`crate::project::fold_batch`] (after [`StateCache::validate`] at
/// `found`), write every row and the new checkpoint, commit, and only then
/// call [`StateCache::committed`]. An error leaves the database and the
/// cache as they were.
pub(crate) trait Backend: Send {
    /// The stored checkpoint.
    fn checkpoint(&mut self) -> Result<Position, ProjectionError>;
    /// Apply `events` (consecutive, the first right after `expected`).
    fn apply(
        &mut self,
        expected: Position,
        events: &[Decoded],
        cache: &mut StateCache,
    ) -> Result<Applied, ProjectionError>;
    /// Write a batch folded ahead of time (on top of the states at
    /// `expected`) in ONE transaction that excludes every other writer: if
    /// the stored checkpoint is not `expected`, write nothing and answer
    /// [`Applied::Restart`]; otherwise write every row and the new
    /// checkpoint, and commit.
    fn write(&mut self, expected: Position, out: &BatchOutput) -> Result<Applied, ProjectionError>;
    /// Delete every read-model row and set the checkpoint to 0, atomically,
    /// for a rebuild (a backend may drop its secondary indexes here).
    fn reset(&mut self) -> Result<(), ProjectionError>;
    /// The rebuild that [`Backend::reset`] began has ended (done or not):
    /// put back whatever `reset` took away for speed.
    fn finish_rebuild(&mut self) -> Result<(), ProjectionError>;
    /// The `lines` view.
    fn lines(&mut self, q: &LineQuery) -> Result<Vec<LineRow>, ProjectionError>;
    /// The Transaction Manager.
    fn transactions(
        &mut self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRow>, ProjectionError>;
    /// Orders with something due at or before `now`, sorted.
    fn orders_due(&mut self, now: DateTime<Utc>) -> Result<Vec<OrderId>, ProjectionError>;
    /// Every stored order state, sorted by order id.
    fn order_states(&mut self) -> Result<Vec<StoredState>, ProjectionError>;
}

/// What to do with a batch, given the checkpoint stored under the lock.
#[derive(Debug)]
pub(crate) enum Plan<'a> {
    /// Apply these events (they continue the stored checkpoint exactly).
    Apply(&'a [Decoded]),
    /// Nothing to apply here: read again from the stored checkpoint.
    Restart,
}

/// Which of `events` to apply when the stored checkpoint is `found` and the
/// batch was read after `expected`.
///
/// Errors with [`ProjectionError::Gap`] when the events do not continue the
/// checkpoint one position at a time (a store that lost events).
pub(crate) fn plan(
    found: Position,
    expected: Position,
    events: &[Decoded],
) -> Result<Plan<'_>, ProjectionError> {
    if found < expected {
        return Ok(Plan::Restart);
    }
    let Some(start) = events.iter().position(|e| e.recorded.position > found) else {
        return Ok(Plan::Restart);
    };
    let rest = &events[start..];
    let mut previous = found;
    for event in rest {
        let position = event.recorded.position;
        if position != previous + 1 {
            return Err(ProjectionError::Gap {
                after: previous,
                next: position,
            });
        }
        previous = position;
    }
    Ok(Plan::Apply(rest))
}

/// An error of the store's migration runner, as a read-model error: a
/// schema newer than this build is the read models' own
/// [`ProjectionError::SchemaTooNew`].
pub(crate) fn migration_error(e: provledger_store::StoreError) -> ProjectionError {
    match e {
        provledger_store::StoreError::SchemaTooNew { found, supported } => {
            ProjectionError::SchemaTooNew { found, supported }
        }
        other => other.into(),
    }
}

/// A time as stored: RFC 3339, UTC, six fractional digits (sorts as text).
pub(crate) fn fmt_time(t: &DateTime<Utc>) -> String {
    format_time(t)
}

/// Stored text of the earliest stored time at or after `t` (stored times
/// have microsecond precision, so a finer `t` rounds up).
pub(crate) fn fmt_lower_bound(t: &DateTime<Utc>) -> String {
    let truncated = t.trunc_subsecs(6);
    if truncated < *t {
        format_time(&(truncated + Duration::microseconds(1)))
    } else {
        format_time(&truncated)
    }
}

/// Stored text of the latest stored time at or before `t`.
pub(crate) fn fmt_upper_bound(t: &DateTime<Utc>) -> String {
    format_time(&t.trunc_subsecs(6))
}

/// Parse a stored time.
pub(crate) fn parse_time(
    table: &'static str,
    key: &dyn Fn() -> String,
    text: &str,
) -> Result<DateTime<Utc>, ProjectionError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ProjectionError::Corrupt {
            table,
            key: key(),
            reason: format!("{text:?} is not an RFC 3339 time: {e}"),
        })
}

/// Parse an optional stored time.
pub(crate) fn parse_opt_time(
    table: &'static str,
    key: &dyn Fn() -> String,
    text: Option<String>,
) -> Result<Option<DateTime<Utc>>, ProjectionError> {
    text.map(|t| parse_time(table, key, &t)).transpose()
}

/// A date as stored: `YYYY-MM-DD`.
pub(crate) fn fmt_date(d: &NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Parse a stored date.
pub(crate) fn parse_date(
    table: &'static str,
    key: &dyn Fn() -> String,
    text: &str,
) -> Result<NaiveDate, ProjectionError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| ProjectionError::Corrupt {
        table,
        key: key(),
        reason: format!("{text:?} is not a date: {e}"),
    })
}

/// Parse a stored enum name.
pub(crate) fn parse_name<T: std::str::FromStr>(
    table: &'static str,
    key: &dyn Fn() -> String,
    text: &str,
) -> Result<T, ProjectionError> {
    text.parse().map_err(|_| ProjectionError::Corrupt {
        table,
        key: key(),
        reason: format!("{text:?} is not a known name"),
    })
}

/// Convert a stored integer to an unsigned one.
pub(crate) fn to_u64(
    table: &'static str,
    key: &dyn Fn() -> String,
    value: i64,
) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::Corrupt {
        table,
        key: key(),
        reason: format!("{value} is negative"),
    })
}

/// Convert a position (or count) to the signed integer databases store.
pub(crate) fn to_i64(value: u64) -> Result<i64, ProjectionError> {
    i64::try_from(value).map_err(|_| ProjectionError::Corrupt {
        table: "rm_checkpoints",
        key: value.to_string(),
        reason: "the position exceeds the largest integer the database stores".into(),
    })
}

/// A row of a read-model query, whatever the database client: the typed
/// getters that [`line_row`] and [`transaction_row`] need, so that both
/// backends decode their rows with one piece of code.
pub(crate) trait StoredRow {
    /// A `TEXT` column.
    fn text(&self, i: usize) -> Result<String, ProjectionError>;
    /// A nullable `TEXT` column.
    fn opt_text(&self, i: usize) -> Result<Option<String>, ProjectionError>;
    /// An integer column.
    fn int(&self, i: usize) -> Result<i64, ProjectionError>;
    /// A boolean column.
    fn flag(&self, i: usize) -> Result<bool, ProjectionError>;
}

/// The `rm_lines` columns a [`line_row`] is read from, in order.
pub(crate) const LINE_COLUMNS: &str = "order_id, line_id, subscription_id, offer, rsd, \
     provisioning_contact, status, status_label, provisioning_pending, initial_email_sent_at, \
     closes_at, billing_started, org_id, escalated_at, resend_count, partner, end_customer";

/// The `rm_transactions` columns a [`transaction_row`] is read from, in order.
pub(crate) const TX_COLUMNS: &str = "transaction_id, tx_type, order_id, line_id, \
     subscription_id, submitted_by, submitted_at, status, reason, reason_code, old_email, \
     new_email, applied_to_all_lines, detail, position";

/// Read one `rm_lines` row selected with [`LINE_COLUMNS`].
pub(crate) fn line_row(r: &impl StoredRow) -> Result<LineRow, ProjectionError> {
    const T: &str = "rm_lines";
    let order_id = r.text(0)?;
    let line_id = r.text(1)?;
    let key = || format!("order {order_id} line {line_id}");
    let resend_count = r.int(14)?;
    Ok(LineRow {
        subscription_id: r.text(2)?,
        offer: r.text(3)?,
        rsd: parse_date(T, &key, &r.text(4)?)?,
        provisioning_contact: r.text(5)?,
        status: r.text(6)?,
        status_label: r.text(7)?,
        provisioning_pending: r.flag(8)?,
        initial_email_sent_at: parse_opt_time(T, &key, r.opt_text(9)?)?,
        closes_at: parse_opt_time(T, &key, r.opt_text(10)?)?,
        billing_started: r.flag(11)?,
        org_id: r.opt_text(12)?,
        escalated_at: parse_opt_time(T, &key, r.opt_text(13)?)?,
        resend_count: u32::try_from(resend_count).map_err(|_| ProjectionError::Corrupt {
            table: T,
            key: key(),
            reason: format!("resend_count {resend_count} is out of range"),
        })?,
        partner: r.text(15)?,
        end_customer: r.text(16)?,
        order_id,
        line_id,
    })
}

/// Read one `rm_transactions` row selected with [`TX_COLUMNS`].
pub(crate) fn transaction_row(r: &impl StoredRow) -> Result<TransactionRow, ProjectionError> {
    const T: &str = "rm_transactions";
    let position = r.int(14)?;
    let line_id = r.text(3)?;
    let key = || format!("position {position} line {line_id}");
    let tx_type: crate::TransactionType = parse_name(T, &key, &r.text(1)?)?;
    Ok(TransactionRow {
        transaction_id: r.text(0)?,
        tx_type,
        type_label: tx_type.label().to_string(),
        order_id: r.text(2)?,
        subscription_id: r.text(4)?,
        submitted_by: r.text(5)?,
        submitted_at: parse_time(T, &key, &r.text(6)?)?,
        status: parse_name(T, &key, &r.text(7)?)?,
        reason: r.opt_text(8)?,
        reason_code: r.opt_text(9)?,
        old_email: r.opt_text(10)?,
        new_email: r.opt_text(11)?,
        applied_to_all_lines: r.flag(12)?,
        detail: r.opt_text(13)?,
        position: to_u64(T, &key, position)?,
        line_id,
    })
}

/// `events` decoded, with the position before the first of them, if they
/// are consecutive: what a store append's inline writer applies as one
/// batch. `None` for no events or a gap.
pub(crate) fn inline_batch(
    events: Vec<RecordedEvent>,
) -> Result<Option<(Position, Vec<Decoded>)>, ProjectionError> {
    let Some(first) = events.first().map(|e| e.position) else {
        return Ok(None);
    };
    let consecutive = events
        .iter()
        .enumerate()
        .all(|(i, e)| e.position == first + i as u64);
    if !consecutive {
        return Ok(None);
    }
    let decoded = events
        .into_iter()
        .map(Decoded::new)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((first - 1, decoded)))
}

/// The row ids of Transaction Manager rows given in position order: the
/// position × [`ROWS_PER_EVENT`] plus the rank of the row's line id among
/// its event's rows, so that id order is (position, line id) order.
pub(crate) fn transaction_ids(rows: &[TransactionRow]) -> Result<Vec<i64>, ProjectionError> {
    let mut ids = vec![0; rows.len()];
    let mut start = 0;
    while start < rows.len() {
        let position = rows[start].position;
        let end = start
            + rows[start..]
                .iter()
                .take_while(|r| r.position == position)
                .count();
        let mut order: Vec<usize> = (start..end).collect();
        order.sort_by(|a, b| rows[*a].line_id.cmp(&rows[*b].line_id));
        let base = to_i64(position)?
            .checked_mul(ROWS_PER_EVENT)
            .ok_or_else(|| ProjectionError::Corrupt {
                table: "rm_transactions",
                key: format!("position {position}"),
                reason: "the position is too large for a Transaction Manager row id".into(),
            })?;
        for (rank, index) in order.into_iter().enumerate() {
            let rank = i64::try_from(rank)
                .ok()
                .filter(|r| *r < ROWS_PER_EVENT)
                .ok_or_else(|| ProjectionError::Corrupt {
                    table: "rm_transactions",
                    key: format!("position {position}"),
                    reason: format!("one event yields more than {ROWS_PER_EVENT} rows"),
                })?;
            ids[index] = base + rank;
        }
        start = end;
    }
    Ok(ids)
}

/// Read models that do not exist (yet) in a ledger opened read-only: they
/// stand at position 0 and hold nothing, so every read replays the log
/// (or reports that it is behind); writing them is refused.
pub(crate) struct Absent {
    /// Why they cannot be read.
    pub reason: String,
}

impl Absent {
    fn refuse<T>(&self) -> Result<T, ProjectionError> {
        Err(ProjectionError::NotReady {
            reason: self.reason.clone(),
        })
    }
}

impl Backend for Absent {
    fn checkpoint(&mut self) -> Result<Position, ProjectionError> {
        Ok(0)
    }
    fn apply(
        &mut self,
        _expected: Position,
        _events: &[Decoded],
        _cache: &mut StateCache,
    ) -> Result<Applied, ProjectionError> {
        self.refuse()
    }
    fn write(
        &mut self,
        _expected: Position,
        _out: &BatchOutput,
    ) -> Result<Applied, ProjectionError> {
        self.refuse()
    }
    fn reset(&mut self) -> Result<(), ProjectionError> {
        self.refuse()
    }
    fn finish_rebuild(&mut self) -> Result<(), ProjectionError> {
        Ok(())
    }
    fn lines(&mut self, _q: &LineQuery) -> Result<Vec<LineRow>, ProjectionError> {
        Ok(Vec::new())
    }
    fn transactions(
        &mut self,
        _q: &TransactionQuery,
    ) -> Result<Vec<TransactionRow>, ProjectionError> {
        Ok(Vec::new())
    }
    fn orders_due(&mut self, _now: DateTime<Utc>) -> Result<Vec<OrderId>, ProjectionError> {
        self.refuse()
    }
    fn order_states(&mut self) -> Result<Vec<StoredState>, ProjectionError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(position: Position) -> Decoded {
        let recorded = provledger_store::RecordedEvent {
            position,
            stream_id: "org-X".into(),
            stream_version: position,
            event_type: "SetupStarted".into(),
            schema_version: 1,
            payload: serde_json::json!({}),
            metadata: Default::default(),
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        Decoded::new(recorded).unwrap()
    }

    #[test]
    fn plan_applies_only_what_continues_the_checkpoint() {
        let batch: Vec<_> = (11..=15).map(event).collect();
        let positions = |plan: Result<Plan<'_>, ProjectionError>| match plan.unwrap() {
            Plan::Apply(s) => Some(s.iter().map(|e| e.recorded.position).collect::<Vec<_>>()),
            Plan::Restart => None,
        };
        assert_eq!(
            positions(plan(10, 10, &batch)),
            Some(vec![11, 12, 13, 14, 15])
        );
        // Another worker applied 11..=12 meanwhile.
        assert_eq!(positions(plan(12, 10, &batch)), Some(vec![13, 14, 15]));
        // Another worker is past the batch.
        assert_eq!(positions(plan(15, 10, &batch)), None);
        assert_eq!(positions(plan(20, 10, &batch)), None);
        // A rebuild went back to 0.
        assert_eq!(positions(plan(0, 10, &batch)), None);
        // A store that skips a position.
        let gappy = vec![event(11), event(13)];
        assert!(matches!(
            plan(10, 10, &gappy),
            Err(ProjectionError::Gap {
                after: 11,
                next: 13
            })
        ));
    }

    #[test]
    fn transaction_ids_order_by_position_then_line_id() {
        let row = |position: Position, line_id: &str| TransactionRow {
            transaction_id: "tx".into(),
            tx_type: crate::TransactionType::OrgOnboarding,
            type_label: String::new(),
            order_id: "WO-1".into(),
            line_id: line_id.into(),
            subscription_id: "S".into(),
            submitted_by: "a@b.example".into(),
            submitted_at: Utc::now(),
            status: crate::TransactionStatus::Success,
            reason: None,
            reason_code: None,
            old_email: None,
            new_email: None,
            applied_to_all_lines: false,
            detail: None,
            position,
        };
        let rows = [row(7, "1.2"), row(7, "1.10"), row(7, "1.1"), row(9, "a")];
        let ids = transaction_ids(&rows).unwrap();
        assert_eq!(ids, vec![7 * 4096 + 2, 7 * 4096 + 1, 7 * 4096, 9 * 4096]);
        assert!(transaction_ids(&[row(u64::MAX, "x")]).is_err());
    }

    #[test]
    fn time_bounds_round_towards_the_stored_precision() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + Duration::nanoseconds(1_500);
        assert_eq!(fmt_lower_bound(&t), "2026-01-02T03:04:05.000002Z");
        assert_eq!(fmt_upper_bound(&t), "2026-01-02T03:04:05.000001Z");
        let exact = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(fmt_lower_bound(&exact), fmt_upper_bound(&exact));
    }
}
