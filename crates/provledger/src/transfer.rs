//! Export, import and migration: moving whole ledgers in and out as JSON
//! Lines or between stores, position for position with hashes preserved.
//!
//! This module exists so that bulk transfer — the one way events enter a
//! ledger without being decided — has one home, apart from the CLI.

use std::io::{BufRead, Write};
use std::path::Path;

use std::collections::HashMap;

use provledger_domain::{admit, AdmissionState, Candidate, Inadmissible};
use provledger_store::{redact_url, EventStore, OpenMode, RecordedEvent, StoreError, StoreUrl};

use crate::output::progress;
use crate::{AppError, Ledger};

/// Write every event as JSON Lines to `out` (`-` for `stdout`), refusing
/// an existing file: [`export_to`] without the ledger's URL and `--force`.
pub fn export(ledger: &Ledger, out: &Path, stdout: &mut dyn Write) -> Result<u64, AppError> {
    export_to(ledger, "", out, false, stdout)
}

/// Write every event as JSON Lines. Returns how many.
///
/// `out` is `-` (standard output) or a file that must not be the ledger
/// itself (nor its `-wal`/`-shm`/`-journal` files) and must not exist unless
/// `force`; the export is written to a temporary file (mode 0600) beside it
/// and renamed into place once complete, so a failed export leaves nothing
/// half-written and never truncates anything.
pub fn export_to(
    ledger: &Ledger,
    store_url: &str,
    out: &Path,
    force: bool,
    stdout: &mut dyn Write,
) -> Result<u64, AppError> {
    if out == Path::new("-") {
        let mut writer = std::io::BufWriter::new(stdout);
        let n = write_events(ledger, &mut writer)?;
        writer
            .flush()
            .map_err(|e| AppError::io("cannot write the export", e))?;
        return Ok(n);
    }
    check_export_target(store_url, out, force)?;
    let (temp, file) = temp_file_beside(out)?;
    let result = (|| {
        let mut writer = std::io::BufWriter::new(file);
        let n = write_events(ledger, &mut writer)?;
        let file = writer
            .into_inner()
            .map_err(|e| AppError::io("cannot write the export", e.into_error()))?;
        file.sync_all()
            .map_err(|e| AppError::io("cannot write the export", e))?;
        Ok::<u64, AppError>(n)
    })();
    let n = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    if !force && out.exists() {
        let _ = std::fs::remove_file(&temp);
        return Err(exists_error(out));
    }
    std::fs::rename(&temp, out).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        AppError::io(
            format!("cannot move the export into place at {}", out.display()),
            e,
        )
    })?;
    Ok(n)
}

fn write_events(ledger: &Ledger, writer: &mut dyn Write) -> Result<u64, AppError> {
    let mut n = 0;
    for event in ledger.store().read_all(0)? {
        let event = event?;
        let line = serde_json::to_string(&event).map_err(|e| {
            AppError::internal(format!("cannot serialise event {}: {e}", event.position))
        })?;
        writer
            .write_all(line.as_bytes())
            .and_then(|_| writer.write_all(b"\n"))
            .map_err(|e| AppError::io("cannot write the export", e))?;
        n += 1;
    }
    Ok(n)
}

fn exists_error(out: &Path) -> AppError {
    AppError::BadInput(format!(
        "{} already exists; give another --out path, or add --force to replace it",
        out.display()
    ))
}

/// `path` made absolute with its directory resolved (the file itself may
/// not exist yet).
fn resolved(path: &Path) -> Option<std::path::PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    Some(parent.canonicalize().ok()?.join(name))
}

/// Refuse to export onto the ledger's own files, or onto an existing file
/// without `force`.
fn check_export_target(store_url: &str, out: &Path, force: bool) -> Result<(), AppError> {
    if out.is_dir() {
        return Err(AppError::BadInput(format!(
            "{} is a directory; give a file path to --out",
            out.display()
        )));
    }
    if let Ok(StoreUrl::Sqlite(db)) = StoreUrl::parse(store_url) {
        if let (Some(target), Some(db)) = (resolved(out), resolved(&db)) {
            let mut own = vec![db.clone()];
            for suffix in ["-wal", "-shm", "-journal"] {
                let mut p = db.clone().into_os_string();
                p.push(suffix);
                own.push(p.into());
            }
            if own.contains(&target) {
                return Err(AppError::BadInput(format!(
                    "refusing to export onto the ledger's own file {}: give another --out path",
                    out.display()
                )));
            }
        }
    }
    if !force && out.exists() {
        return Err(exists_error(out));
    }
    Ok(())
}

/// A new, empty file (mode 0600) in the directory of `out`.
fn temp_file_beside(out: &Path) -> Result<(std::path::PathBuf, std::fs::File), AppError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(&temp)
        .map_err(|e| AppError::io(format!("cannot create {}", temp.display()), e))?;
    Ok((temp, file))
}

/// Events per `import_batch` call.
pub const IMPORT_BATCH: usize = 5_000;

/// Bytes of import lines per batch: a batch is cut at [`IMPORT_BATCH`]
/// events or this many bytes, whichever comes first, so that memory stays
/// bounded however large the events are.
pub const IMPORT_BATCH_BYTES: usize = 64 << 20;

/// Stream states kept between batches; beyond this many the quarter
/// touched longest ago is forgotten, and folded again from the store if a
/// later event needs it.
const ADMISSION_CACHE: usize = 20_000;

/// Append a JSON Lines export, checking every hash and every rule. Returns
/// how many events.
///
/// Lines are read with a bounded length ([`crate::bounded::MAX_LINE_BYTES`])
/// into batches of at most [`IMPORT_BATCH`] events and
/// [`IMPORT_BATCH_BYTES`] bytes; each batch is one transaction, written only
/// if every line in it parses, continues the hash chain and is admissible
/// ([`provledger_domain::admit`]: the domain could have produced it from its
/// stream's state at that point). A bad line refuses its whole batch with
/// exit 2 naming the line and position; batches before it stay imported.
/// A helper thread reads and parses the batches; each checked batch is
/// written by the store on another thread while the next one is checked
/// against the rules.
pub fn import(ledger: &Ledger, file: &Path) -> Result<u64, AppError> {
    let reader: Box<dyn BufRead + Send> = if file == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(file).map_err(
            |e| AppError::io(format!("cannot open {}", file.display()), e),
        )?))
    };
    let bar = progress("importing");
    let mut n = 0u64;
    let mut admission = Admission::default();
    std::thread::scope(|scope| -> Result<(), AppError> {
        let (batches, parsed) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            let mut reader = reader;
            let mut batch = Batch::default();
            let mut line = Vec::new();
            let mut number = 0usize;
            loop {
                number += 1;
                let event = match crate::bounded::read_line(&mut *reader, &mut line, number) {
                    Ok(false) => break,
                    Ok(true) => parse_import_line(number, &line),
                    Err(e) => Err(e),
                };
                match event {
                    Ok(None) => {}
                    Ok(Some(event)) => {
                        batch.bytes += line.len();
                        batch.events.push(event);
                        batch.lines.push(number);
                        let full =
                            batch.events.len() == IMPORT_BATCH || batch.bytes >= IMPORT_BATCH_BYTES;
                        if full && batches.send(Ok(std::mem::take(&mut batch))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // The bad line's batch is refused whole: only the
                        // error goes on.
                        let _ = batches.send(Err(e));
                        return;
                    }
                }
            }
            if !batch.events.is_empty() {
                let _ = batches.send(Ok(batch));
            }
        });
        // The store writes one batch on its own thread while the next is
        // checked against the rules: the check needs only the states the
        // batches before it left, which admission keeps, never the store's
        // copy of them (see `Admission::committed`).
        let store = ledger.store();
        let mut writing: Writing<'_> = None;
        let mut first_batch = true;
        for batch in parsed {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    // A batch being written reports its own failure first.
                    finish_write(&mut writing)?;
                    return Err(e);
                }
            };
            if std::mem::take(&mut first_batch) {
                let head = store.head()?.map_or(0, |h| h.position);
                let first = batch.events.first().map_or(head + 1, |e| e.position);
                if first != head + 1 {
                    return Err(AppError::BadInput(format!(
                        "the file starts at position {first} but the store holds {head} events, so it would continue at position {}; import a full export into an empty store (a new --db path after `provledger init --for-import`), or a file that continues this ledger",
                        head + 1
                    )));
                }
            }
            let checked = admission.check(store, &batch.events, u64::MAX, |i| {
                format!("import line {}", batch.lines[i])
            });
            n += finish_write(&mut writing)?;
            bar.set_position(n);
            checked?;
            admission.committed();
            writing = Some(scope.spawn(move || write_batch(store, batch)));
        }
        n += finish_write(&mut writing)?;
        Ok(())
    })?;
    bar.finish_and_clear();
    // The admission states are not needed to project: free them first, so
    // that the import's peak memory is the larger of its two phases, not
    // their sum.
    drop(admission);
    let bar = progress("projecting");
    ledger.catch_up_bulk(&mut |done| bar.set_position(done))?;
    bar.finish_and_clear();
    Ok(n)
}

/// The import batch being written, if any.
type Writing<'scope> = Option<std::thread::ScopedJoinHandle<'scope, Result<u64, AppError>>>;

/// Wait for the batch being written (if any); returns how many events it
/// wrote.
fn finish_write(writing: &mut Writing<'_>) -> Result<u64, AppError> {
    match writing.take() {
        Some(handle) => handle
            .join()
            .map_err(|_| AppError::Internal("the import's writing thread panicked".into()))?,
        None => Ok(0),
    }
}

/// Append one checked import batch; returns how many events.
fn write_batch(store: &dyn EventStore, batch: Batch) -> Result<u64, AppError> {
    store.import_batch(&batch.events).map_err(|e| match e {
        StoreError::ChainBroken { position, reason } => {
            let line = batch
                .events
                .iter()
                .position(|e| e.position == position)
                .map(|i| format!("import line {}: ", batch.lines[i]))
                .unwrap_or_default();
            AppError::BadInput(format!(
                "{line}import refused at position {position}: {reason}; nothing of its batch was written{}",
                kept(&batch.events)
            ))
        }
        other => other.into(),
    })?;
    Ok(batch.events.len() as u64)
}

/// What stays after a refused batch.
fn kept(batch: &[RecordedEvent]) -> String {
    match batch.first() {
        Some(first) if first.position > 1 => format!(
            " (the events before position {} are kept; fix the line and import the file from there)",
            first.position
        ),
        _ => String::new(),
    }
}

/// Parsed lines of one import batch.
#[derive(Default)]
struct Batch {
    events: Vec<RecordedEvent>,
    /// The line number of each event.
    lines: Vec<usize>,
    bytes: usize,
}

/// The rules' check on events that were not decided (import, migrate): the
/// state of every stream touched, folded with [`provledger_domain::admit`],
/// and the ledger's own transaction conventions (see [`Transactions`]).
#[derive(Default)]
struct Admission {
    /// Stream states, each with the number of the last batch that touched
    /// it and whether the scheduler still has something due for it.
    states: HashMap<String, (Stream, u64, bool)>,
    /// States after the batch being checked, kept once it is written.
    pending: HashMap<String, Stream>,
    /// Batches kept so far.
    batches: u64,
    /// The checked events start at position 1: a stream not in `seen` has
    /// no events before them, so its state needs no read.
    from_start: bool,
    /// Every stream of the events checked and kept so far (with `from_start`).
    seen: std::collections::HashSet<String>,
}

/// What admission knows of one stream.
#[derive(Clone)]
struct Stream {
    state: AdmissionState,
    transactions: Transactions,
}

/// The transactions of one stream, as the shell writes them: a
/// transaction's events are contiguous in the stream (a transaction id
/// never comes back once another has followed it), and a scheduled event, a
/// refusal, a resend, a support case and an order placement are each the
/// only event of their transaction. So a duplicated, spliced or re-labelled
/// event cannot pass as a transaction of its own.
#[derive(Clone, Default)]
struct Transactions {
    used: std::collections::HashSet<String>,
    last: Option<(String, bool)>,
}

/// Event types that are always alone in their transaction.
fn stands_alone(event: &RecordedEvent) -> bool {
    event.metadata.actor == crate::SYSTEM_ACTOR
        || matches!(
            event.event_type.as_str(),
            "CommandRefused"
                | "ProvisioningEmailResent"
                | "SupportCaseOpened"
                | "OrderPlaced"
                | "InitialEmailSent"
                | "LineClosed"
                | "EscalationRaised"
        )
}

impl Transactions {
    /// Whether `event` may come next in this stream's transactions.
    fn check(&self, event: &RecordedEvent) -> Result<(), Inadmissible> {
        let tx = &event.metadata.transaction_id;
        match &self.last {
            Some((last, last_alone)) if last == tx => {
                if stands_alone(event) || *last_alone {
                    return Err(Inadmissible(format!(
                        "transaction {tx} already holds the event before it, and a {} stands alone in its transaction",
                        event.event_type
                    )));
                }
            }
            _ => {
                if tx.is_empty() || self.used.contains(tx) {
                    return Err(Inadmissible(format!(
                        "transaction id {tx:?} is empty or was used by an earlier transaction of this stream"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Record `event` (after [`Transactions::check`]).
    fn record(&mut self, event: &RecordedEvent) {
        let tx = &event.metadata.transaction_id;
        self.used.insert(tx.clone());
        self.last = Some((tx.clone(), stands_alone(event)));
    }
}

impl Admission {
    /// What is known of `stream_id` from its events before position
    /// `before` in `store` (taken out of the cache; the caller puts it back).
    fn take(
        &mut self,
        store: &dyn EventStore,
        stream_id: &str,
        before: u64,
    ) -> Result<Result<Stream, Inadmissible>, AppError> {
        if let Some(known) = self.pending.remove(stream_id) {
            return Ok(Ok(known));
        }
        if let Some((known, ..)) = self.states.remove(stream_id) {
            return Ok(Ok(known));
        }
        let mut stream = match AdmissionState::empty(stream_id) {
            Ok(state) => Stream {
                state,
                transactions: Transactions::default(),
            },
            Err(e) => return Ok(Err(e)),
        };
        if self.from_start && !self.seen.contains(stream_id) {
            return Ok(Ok(stream));
        }
        for stored in store.read_stream(stream_id, 0)? {
            if stored.position >= before {
                break;
            }
            advance(&mut stream, &stored).map_err(|e| AppError::VerificationFailed {
                position: stored.position,
                reason: format!(
                    "the stored event (stream {}) is not one the rules could have produced: {e}",
                    stored.stream_id
                ),
            })?;
        }
        Ok(Ok(stream))
    }

    /// Check every event of `batch` (stream states from `store`'s events
    /// before `before`); `at(i)` says where event `i` came from. On a
    /// refusal the states the batch touched are dropped (they are folded
    /// again from the store when needed).
    fn check(
        &mut self,
        store: &dyn EventStore,
        batch: &[RecordedEvent],
        before: u64,
        at: impl Fn(usize) -> String,
    ) -> Result<(), AppError> {
        self.pending.clear();
        if batch.first().is_some_and(|e| e.position == 1) {
            self.from_start = true;
        }
        for (i, event) in batch.iter().enumerate() {
            let checked = self
                .take(store, &event.stream_id, before)?
                .and_then(|mut stream| advance(&mut stream, event).map(|()| stream));
            match checked {
                Ok(stream) => {
                    self.pending.insert(event.stream_id.clone(), stream);
                }
                Err(reason) => {
                    self.pending.clear();
                    return Err(AppError::BadInput(format!(
                        "{}: the event at position {} ({} on stream {}) is not one the rules could have produced: {reason}; nothing of its batch was written{}",
                        at(i),
                        event.position,
                        event.event_type,
                        event.stream_id,
                        kept(batch)
                    )));
                }
            }
        }
        Ok(())
    }

    /// The batch just checked is written (or is being written, and nothing
    /// is checked against the store until it is): keep its states.
    ///
    /// Past [`ADMISSION_CACHE`] states, a quarter is forgotten (never one of
    /// the batch just kept): first the streams the scheduler has nothing due
    /// for, then those touched longest ago. A stream is busy for a while and
    /// then falls quiet, so the busy ones stay; an order waiting days for
    /// its initial emails or its closure is quiet but will be touched again,
    /// and stays too. Emptying the whole cache instead made every busy
    /// stream be folded again from the store.
    fn committed(&mut self) {
        if self.from_start {
            self.seen.extend(self.pending.keys().cloned());
        }
        self.batches += 1;
        let batch = self.batches;
        provledger_projections::forget_to_fit(
            &mut self.states,
            self.pending.len(),
            ADMISSION_CACHE,
            |(_, touched, scheduled)| (*scheduled, *touched),
        );
        self.states.extend(self.pending.drain().map(|(id, stream)| {
            let scheduled = stream.is_scheduled();
            (id, (stream, batch, scheduled))
        }));
    }
}

impl Stream {
    /// Whether the scheduler has something due for this stream later (an
    /// order's initial emails, closures or escalations).
    fn is_scheduled(&self) -> bool {
        match &self.state {
            AdmissionState::Order(order) => provledger_domain::next_due(order).is_some(),
            _ => false,
        }
    }
}

/// Move `stream` past `event` if the rules and the transaction conventions
/// admit it; otherwise leave it as it was.
fn advance(stream: &mut Stream, event: &RecordedEvent) -> Result<(), Inadmissible> {
    stream.transactions.check(event)?;
    stream.state = admit(&stream.state, &candidate(event))?;
    stream.transactions.record(event);
    Ok(())
}

fn candidate(event: &RecordedEvent) -> Candidate<'_> {
    Candidate {
        position: event.position,
        stream_id: &event.stream_id,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        payload: &event.payload,
        actor: &event.metadata.actor,
        occurred_at: event.occurred_at,
    }
}

/// One line of an import file: `None` for a blank line.
fn parse_import_line(number: usize, line: &[u8]) -> Result<Option<RecordedEvent>, AppError> {
    let line = std::str::from_utf8(line).map_err(|e| {
        AppError::BadInput(format!(
            "import line {number}: not UTF-8 text ({e}); each line must be one event as written by `provledger export`"
        ))
    })?;
    if line.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(line).map(Some).map_err(|e| {
        AppError::BadInput(format!(
            "import line {number}: {e}; each line must be one event as written by `provledger export`"
        ))
    })
}

/// What `migrate` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrateReport {
    /// Source URL (without credentials).
    pub from: String,
    /// Target URL (without credentials).
    pub to: String,
    /// Events copied.
    pub events: u64,
    /// Hash of the last event, identical in both stores.
    pub head_hash: String,
}

/// Copy every event of `from` into the empty store `to`, preserving
/// positions and hashes, then verify the copy and build its read models.
pub fn migrate(from: &str, to: &str) -> Result<MigrateReport, AppError> {
    let source = Ledger::open_with(from, OpenMode::ReadOnly)?;
    let target = Ledger::open_with(to, OpenMode::Create)?;
    if let Some(head) = target.store().head()? {
        return Err(AppError::BadInput(format!(
            "the target {} already holds {} events; migrate only into an empty store",
            redact_url(to),
            head.position
        )));
    }
    // Every event must be admissible before anything is copied, so that a
    // refused migration leaves the target as empty as it was.
    let bar = progress("checking");
    let mut admission = Admission::default();
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut checked = 0u64;
    let mut events = source.store().read_all(0)?.peekable();
    while events.peek().is_some() {
        batch.clear();
        for event in events.by_ref().take(IMPORT_BATCH) {
            batch.push(event?);
        }
        let before = batch.first().map_or(u64::MAX, |e| e.position);
        admission.check(source.store(), &batch, before, |i| {
            format!("source position {}", batch[i].position)
        })?;
        admission.committed();
        checked += batch.len() as u64;
        bar.set_position(checked);
    }
    drop(admission);
    bar.finish_and_clear();
    let bar = progress("migrating");
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut copied = 0u64;
    for event in source.store().read_all(0)? {
        batch.push(event?);
        if batch.len() == IMPORT_BATCH {
            target.store().import_batch(&batch)?;
            copied += batch.len() as u64;
            bar.set_position(copied);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        target.store().import_batch(&batch)?;
        copied += batch.len() as u64;
    }
    bar.finish_and_clear();
    let report = target.verify(&mut |_| {})?;
    if let Some(broken) = report.first_broken {
        return Err(AppError::VerificationFailed {
            position: broken.position,
            reason: broken.reason,
        });
    }
    let source_head = source.store().head()?.map(|h| h.hash).unwrap_or_default();
    if report.events_checked != copied || (copied > 0 && report.head_hash != source_head) {
        return Err(AppError::VerificationFailed {
            position: report.events_checked + 1,
            reason: format!(
                "the copy holds {} events ending in hash {} but the source ends in {} after {copied} events (the source changed during the migration?)",
                report.events_checked, report.head_hash, source_head
            ),
        });
    }
    let bar = progress("projecting");
    target.catch_up_bulk(&mut |done| bar.set_position(done))?;
    bar.finish_and_clear();
    Ok(MigrateReport {
        from: redact_url(from),
        to: redact_url(to),
        events: copied,
        head_hash: report.head_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use provledger_domain::{
        evolve, Email, Event, LineId, LineSpec, Offer, OrderId, OrderState, SubscriptionId,
    };

    /// An order stream's admission state: placed (its initial emails are
    /// due on the RSD) or not.
    fn order_stream(placed: bool) -> Stream {
        let mut state = OrderState::default();
        if placed {
            let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc);
            state = evolve(
                state,
                &Event::OrderPlaced {
                    at,
                    order_id: OrderId::parse("WO-1").unwrap(),
                    ordering_contact: Email::parse("olivia@partner.example").unwrap(),
                    partner: "Acme".into(),
                    end_customer: "Contoso".into(),
                    partner_contacts: vec![],
                    distributor_contacts: vec![],
                    lines: vec![LineSpec {
                        line_id: LineId::parse("1").unwrap(),
                        subscription_id: SubscriptionId::parse("Sub1").unwrap(),
                        offer: Offer::AFlex,
                        rsd: "2026-12-01".parse().unwrap(),
                        provisioning_contact: Email::parse("it@customer.example").unwrap(),
                    }],
                },
            );
        }
        Stream {
            state: AdmissionState::Order(Box::new(state)),
            transactions: Transactions::default(),
        }
    }

    #[test]
    fn a_full_admission_cache_keeps_the_streams_the_scheduler_will_touch() {
        let mut admission = Admission::default();
        // Batch 1: a tenth of the streams still wait for the scheduler.
        let waiting = ADMISSION_CACHE / 10;
        for n in 0..ADMISSION_CACHE {
            admission
                .pending
                .insert(format!("order-WO-{n}"), order_stream(n < waiting));
        }
        admission.committed();
        assert!(admission
            .states
            .values()
            .take(1)
            .all(|(s, ..)| { matches!(&s.state, AdmissionState::Order(_)) }));
        // Batches 2 to 5, one done stream each: then the cache is full.
        for batch in 0..4 {
            admission
                .pending
                .insert(format!("order-WO-new-{batch}"), order_stream(false));
            admission.committed();
        }
        assert!(admission.states.len() < ADMISSION_CACHE);
        for n in 0..waiting {
            assert!(
                admission.states.contains_key(&format!("order-WO-{n}")),
                "order-WO-{n}, touched longest ago but still waiting, is kept"
            );
        }
        assert!(
            admission.states.contains_key("order-WO-new-3"),
            "the batch just kept stays"
        );
    }
}
