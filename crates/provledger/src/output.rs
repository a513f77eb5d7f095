//! Rendering read results as tables, JSON or CSV.
//!
//! Exists so that every read command formats the same way: tables fit an
//! 80-column terminal (long cells are shortened with `…`, long reasons wrap
//! onto indented lines below their row), JSON is one array or object on
//! stdout, and CSV cells that a spreadsheet would run as a formula are
//! neutralised with a leading `'`.

use std::io::IsTerminal;

use serde::Serialize;
use serde_json::Value;

use crate::AppError;

/// Output format of read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON array or object.
    Json,
    /// Comma-separated values with a header row.
    Csv,
}

/// Width of the terminal tables are laid out for.
pub const TABLE_WIDTH: usize = 80;

/// A column: its header, the JSON field it shows in a table, and how.
pub struct Column {
    /// Header text.
    pub header: &'static str,
    /// How to compute the cell from the row's JSON.
    pub cell: fn(&Value) -> String,
    /// Whether the column may be shortened to fit the width (others never are).
    pub flex: bool,
}

fn fixed(header: &'static str, cell: fn(&Value) -> String) -> Column {
    Column {
        header,
        cell,
        flex: false,
    }
}

fn flex(header: &'static str, cell: fn(&Value) -> String) -> Column {
    Column {
        header,
        cell,
        flex: true,
    }
}

/// A kind of row: its table columns, its CSV fields, and an optional note
/// printed under a table row (e.g. a refusal's reason).
pub struct RowKind {
    /// Table columns.
    pub columns: Vec<Column>,
    /// Every field, in order, for CSV.
    pub csv_fields: &'static [&'static str],
    /// A note to print under a table row.
    pub note: Option<fn(&Value) -> Option<String>>,
}

/// Text of a JSON value for a cell: strings raw, null empty, others as JSON.
pub fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A field's text.
pub fn field(row: &Value, name: &str) -> String {
    text(row.get(name))
}

/// A time field shortened to `YYYY-MM-DD HH:MM`.
pub fn short_time(row: &Value, name: &str) -> String {
    let full = field(row, name);
    if full.len() >= 16 {
        full[..16].replace('T', " ")
    } else {
        full
    }
}

/// Render rows in the chosen format.
pub fn render<T: Serialize>(
    rows: &[T],
    kind: &RowKind,
    format: Format,
) -> Result<String, AppError> {
    render_view(rows, kind, format, None)
}

/// The banner a table of a simulated ledger starts with.
pub const SIMULATED_BANNER: &str =
    "simulated clock: times on this ledger were given by its callers, not read from a clock";

/// [`render`] a view of a ledger; a simulated ledger's view says so — a
/// banner above a table, a `clock` field in every JSON row and CSV record
/// (DESIGN.md §2, "Whose clock").
pub fn render_view<T: Serialize>(
    rows: &[T],
    kind: &RowKind,
    format: Format,
    clock: Option<provledger_domain::ClockMode>,
) -> Result<String, AppError> {
    let simulated = clock == Some(provledger_domain::ClockMode::Simulated);
    let mut values: Vec<Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(|e| AppError::internal(format!("cannot serialise output: {e}")))?;
    if simulated {
        for value in &mut values {
            if let Some(map) = value.as_object_mut() {
                map.insert("clock".into(), Value::String("simulated".into()));
            }
        }
        match format {
            Format::Json => return json(&values),
            Format::Csv => {
                let mut fields = kind.csv_fields.to_vec();
                fields.push("clock");
                return csv_text(&values, &fields);
            }
            Format::Table => {
                let table = render_values(&values, kind, format)?;
                return Ok(format!("== {SIMULATED_BANNER} ==\n{table}"));
            }
        }
    }
    render_values(&values, kind, format)
}

fn render_values(values: &[Value], kind: &RowKind, format: Format) -> Result<String, AppError> {
    match format {
        Format::Json => json(values),
        Format::Csv => csv_text(values, kind.csv_fields),
        Format::Table => Ok(table(values, kind)),
    }
}

/// Pretty JSON of any value, with a trailing newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, AppError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| AppError::internal(format!("cannot serialise output: {e}")))
}

/// Neutralise a CSV cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`,
/// tab, carriage return at the start) by prefixing `'`.
pub fn csv_safe(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

fn csv_text(rows: &[Value], fields: &[&str]) -> Result<String, AppError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| AppError::BadInput(format!("cannot write CSV: {e}"));
    writer.write_record(fields).map_err(fail)?;
    for row in rows {
        let record: Vec<String> = fields
            .iter()
            .map(|f| match row.get(*f) {
                Some(Value::String(s)) => csv_safe(s),
                other => text(other),
            })
            .collect();
        writer.write_record(&record).map_err(fail)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| AppError::BadInput(format!("cannot write CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| AppError::BadInput(format!("cannot write CSV: {e}")))
}

fn shorten(cell: &str, width: usize) -> String {
    let count = cell.chars().count();
    if count <= width {
        cell.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut s: String = cell.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

/// Wrap text into lines of at most `width` characters, breaking at spaces.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let needed =
            current.chars().count() + usize::from(!current.is_empty()) + word.chars().count();
        if needed > width && !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

fn table(rows: &[Value], kind: &RowKind) -> String {
    if rows.is_empty() {
        return "(no rows)\n".to_string();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| kind.columns.iter().map(|c| (c.cell)(row)).collect())
        .collect();
    let n = kind.columns.len();
    let mut widths: Vec<usize> = kind
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let gaps = 2 * n.saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > TABLE_WIDTH {
        let Some((widest, _)) = widths
            .iter()
            .enumerate()
            .filter(|(i, _)| kind.columns[*i].flex)
            .max_by_key(|(_, w)| **w)
        else {
            break;
        };
        if widths[widest] <= 6 {
            break;
        }
        widths[widest] -= 1;
    }
    let line = |values: &[String]| -> String {
        let mut out = String::new();
        for (i, v) in values.iter().enumerate() {
            let cell = shorten(v, widths[i]);
            if i + 1 == n {
                out.push_str(&cell);
            } else {
                out.push_str(&cell);
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let headers: Vec<String> = kind.columns.iter().map(|c| c.header.to_string()).collect();
    let mut out = line(&headers);
    for (row, values) in rows.iter().zip(&cells) {
        out.push_str(&line(values));
        if let Some(note) = kind.note.and_then(|f| f(row)) {
            for l in wrap(&note, TABLE_WIDTH - 4) {
                out.push_str("    ");
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    out
}

fn lines_status(row: &Value) -> String {
    let status = field(row, "status");
    match status.as_str() {
        "awaiting_provisioning_details" => "awaiting details".into(),
        _ => status,
    }
}

/// Columns of the `lines` view.
pub fn lines_kind() -> RowKind {
    RowKind {
        columns: vec![
            flex("ORDER", |r| field(r, "order_id")),
            fixed("LINE", |r| field(r, "line_id")),
            fixed("SUBSCRIPTION", |r| field(r, "subscription_id")),
            flex("OFFER", |r| field(r, "offer")),
            fixed("RSD", |r| field(r, "rsd")),
            fixed("STATUS", lines_status),
        ],
        csv_fields: &[
            "order_id",
            "line_id",
            "subscription_id",
            "offer",
            "rsd",
            "provisioning_contact",
            "status",
            "provisioning_pending",
            "initial_email_sent_at",
            "closes_at",
            "billing_started",
            "org_id",
            "escalated_at",
            "resend_count",
            "partner",
            "end_customer",
        ],
        note: Some(|r| {
            let mut notes = vec![format!("contact {}", field(r, "provisioning_contact"))];
            if field(r, "status") == "closed"
                && r.get("provisioning_pending") == Some(&Value::Bool(true))
            {
                notes.push("provisioning still pending, billing started".to_string());
            }
            let closes = field(r, "closes_at");
            if !closes.is_empty() && field(r, "status") == "awaiting_provisioning_details" {
                notes.push(format!("closes {}", short_time(r, "closes_at")));
            }
            let org = field(r, "org_id");
            if !org.is_empty() {
                notes.push(format!("organisation {org}"));
            }
            (!notes.is_empty()).then(|| notes.join("; "))
        }),
    }
}

fn tx_type_short(row: &Value) -> String {
    match field(row, "type").as_str() {
        "provisioning_email_update" => "Email Update".into(),
        "provisioning_email_resend" => "Email Resend".into(),
        "org_onboarding" => "Onboarding".into(),
        "support_case" => "Support Case".into(),
        "setup_start" => "Setup Start".into(),
        "setup_handover" => "Handover".into(),
        "setup_completion" => "Setup".into(),
        "service_setup" => "Services".into(),
        "provisioning" => "Provisioning".into(),
        _ => field(row, "type_label"),
    }
}

/// Columns of the Transaction Manager view.
pub fn transactions_kind() -> RowKind {
    RowKind {
        columns: vec![
            fixed("SUBMITTED", |r| short_time(r, "submitted_at")),
            fixed("TYPE", tx_type_short),
            fixed("SUBSCRIPTION", |r| field(r, "subscription_id")),
            fixed("STATUS", |r| field(r, "status")),
            flex("BY", |r| field(r, "submitted_by")),
        ],
        csv_fields: &[
            "transaction_id",
            "type",
            "type_label",
            "order_id",
            "line_id",
            "subscription_id",
            "submitted_by",
            "submitted_at",
            "status",
            "reason",
            "reason_code",
            "old_email",
            "new_email",
            "applied_to_all_lines",
            "position",
        ],
        note: Some(|r| {
            let mut note = field(r, "transaction_id");
            let old = field(r, "old_email");
            if !old.is_empty() {
                note.push_str(&format!(": {old} → {}", field(r, "new_email")));
            }
            if r.get("applied_to_all_lines") == Some(&Value::Bool(true)) {
                note.push_str(" (all lines)");
            }
            let detail = field(r, "detail");
            if !detail.is_empty() && old.is_empty() {
                note.push_str(&format!(": {detail}"));
            }
            let reason = field(r, "reason");
            if !reason.is_empty() {
                note.push_str(&format!(" — {reason}"));
            }
            Some(note)
        }),
    }
}

/// Columns of the `history` view.
pub fn history_kind() -> RowKind {
    RowKind {
        columns: vec![
            fixed("POS", |r| field(r, "position")),
            fixed("OCCURRED", |r| short_time(r, "occurred_at")),
            flex("EVENT", |r| field(r, "event_type")),
            fixed("LINE", |r| field(r, "line_id")),
            fixed("HASH", |r| field(r, "hash").chars().take(16).collect()),
        ],
        csv_fields: &[
            "position",
            "stream_id",
            "stream_version",
            "order_id",
            "line_id",
            "subscription_id",
            "event_type",
            "schema_version",
            "occurred_at",
            "recorded_at",
            "actor",
            "transaction_id",
            "payload",
            "prev_hash",
            "hash",
        ],
        note: Some(|r| {
            Some(format!(
                "by {} ({})",
                field(r, "actor"),
                field(r, "transaction_id")
            ))
        }),
    }
}

/// A progress reporter on stderr, shown only when stderr is a terminal.
pub fn progress(label: &str) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} {pos} events ({per_sec})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(label.to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_neutralises_formulas() {
        assert_eq!(csv_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_safe("+1"), "'+1");
        assert_eq!(csv_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_safe("plain"), "plain");
    }

    #[test]
    fn tables_fit_80_columns() {
        let rows = vec![json!({
            "order_id": "WO-1001-VERY-LONG-ORDER-IDENTIFIER",
            "line_id": "1.1", "subscription_id": "Sub100042", "offer": "A-Flex",
            "rsd": "2026-12-01", "provisioning_contact": "a-very-long-provisioning-contact@customer.example",
            "status": "awaiting_provisioning_details", "provisioning_pending": true
        })];
        let out = table(&rows, &lines_kind());
        for l in out.lines() {
            assert!(l.chars().count() <= TABLE_WIDTH, "{l:?} is wider than 80");
        }
        assert!(out.contains('…'));
    }

    #[test]
    fn wrap_breaks_at_spaces() {
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, vec!["aaa bbb", "ccc ddd"]);
    }
}
