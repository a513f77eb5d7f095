//! Export, import and migration: moving whole ledgers in and out as JSON
//! Lines or between stores, position for position with hashes preserved.
//!
//! This module exists so that bulk transfer — the one way events enter a
//! ledger without being decided — has one home, apart from the CLI.

use std::io::{BufRead, Write};
use std::path::Path;

use provledger_store::{redact_url, RecordedEvent};

use crate::output::progress;
use crate::{AppError, Ledger};

/// Write every event as JSON Lines. Returns how many.
pub fn export(ledger: &Ledger, out: &Path, stdout: &mut dyn Write) -> Result<u64, AppError> {
    let mut file;
    let mut buffered_stdout;
    let writer: &mut dyn Write = if out == Path::new("-") {
        buffered_stdout = std::io::BufWriter::new(stdout);
        &mut buffered_stdout
    } else {
        file = std::io::BufWriter::new(
            std::fs::File::create(out)
                .map_err(|e| AppError::io(format!("cannot create {}", out.display()), e))?,
        );
        &mut file
    };
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
    writer
        .flush()
        .map_err(|e| AppError::io("cannot write the export", e))?;
    Ok(n)
}

/// Events per `import_batch` call.
pub const IMPORT_BATCH: usize = 10_000;

/// Append a JSON Lines export, checking every hash. Returns how many events.
///
/// A helper thread reads and parses the next batch of lines while the store
/// checks and writes the current one. Batches before a bad line are kept
/// (each is one transaction); the error names the line.
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
    std::thread::scope(|scope| -> Result<(), AppError> {
        let (batches, parsed) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            let mut batch: Vec<RecordedEvent> = Vec::with_capacity(IMPORT_BATCH);
            for (index, line) in reader.lines().enumerate() {
                let event = line
                    .map_err(|e| AppError::io("cannot read the import file", e))
                    .and_then(|line| parse_import_line(index, &line));
                match event {
                    Ok(None) => {}
                    Ok(Some(event)) => {
                        batch.push(event);
                        if batch.len() == IMPORT_BATCH {
                            let full =
                                std::mem::replace(&mut batch, Vec::with_capacity(IMPORT_BATCH));
                            if batches.send(Ok(full)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        if !batch.is_empty() && batches.send(Ok(batch)).is_err() {
                            return;
                        }
                        let _ = batches.send(Err(e));
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = batches.send(Ok(batch));
            }
        });
        for batch in parsed {
            let batch = batch?;
            if n == 0 {
                let head = ledger.store().head()?.map_or(0, |h| h.position);
                let first = batch.first().map_or(head + 1, |e| e.position);
                if first != head + 1 {
                    return Err(AppError::BadInput(format!(
                        "the file starts at position {first} but the store holds {head} events, so it would continue at position {}; import a full export into an empty store (a new --db path), or a file that continues this ledger",
                        head + 1
                    )));
                }
            }
            ledger.store().import_batch(&batch)?;
            n += batch.len() as u64;
            bar.set_position(n);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let bar = progress("projecting");
    ledger.catch_up_bulk(&mut |done| bar.set_position(done))?;
    bar.finish_and_clear();
    Ok(n)
}

/// One line of an import file: `None` for a blank line.
fn parse_import_line(index: usize, line: &str) -> Result<Option<RecordedEvent>, AppError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(line).map(Some).map_err(|e| {
        AppError::BadInput(format!(
            "import line {}: {e}; each line must be one event as written by `provledger export`",
            index + 1
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
    let source = Ledger::open(from)?;
    let target = Ledger::open(to)?;
    if let Some(head) = target.store().head()? {
        return Err(AppError::BadInput(format!(
            "the target {} already holds {} events; migrate only into an empty store",
            redact_url(to),
            head.position
        )));
    }
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
