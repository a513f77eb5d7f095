//! Export, import and migration: moving whole ledgers in and out as JSON
//! Lines or between stores, position for position with hashes preserved.
//!
//! This module exists so that bulk transfer — the one way events enter a
//! ledger without being decided — has one home, apart from the CLI.

use std::io::{BufRead, Write};
use std::path::Path;

use provledger_store::{redact_url, OpenMode, RecordedEvent, StoreUrl};

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
            AppError::BadInput(format!("cannot serialise event {}: {e}", event.position))
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
    let source = Ledger::open_with(from, OpenMode::ReadOnly)?;
    let target = Ledger::open_with(to, OpenMode::Create)?;
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
