//! Bounded reading of everything the CLI takes from outside: command files,
//! import lines and attachments.
//!
//! This module exists so that no input can make the program read (or hold
//! in memory) without limit: `/dev/zero`, a FIFO that never ends or a
//! multi-gigabyte line is refused as bad input, naming the limit.

use std::io::{BufRead, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::AppError;

/// Longest import line (one event), in bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Largest command file (order, setup, services, script), in bytes.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;
/// Largest attachment, in bytes.
pub const MAX_ATTACHMENT_BYTES: u64 = 25 << 20;

/// Read a command file (`-` for standard input) as UTF-8 text, at most
/// [`MAX_INPUT_BYTES`].
pub fn read_input(path: &Path) -> Result<String, AppError> {
    let (what, reader): (String, Box<dyn Read>) = if path == Path::new("-") {
        ("standard input".into(), Box::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| AppError::io(format!("cannot read {}", path.display()), e))?;
        (path.display().to_string(), Box::new(file))
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AppError::io(format!("cannot read {what}"), e))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(AppError::BadInput(format!(
            "{what} is larger than {} MiB; give a smaller file",
            MAX_INPUT_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        AppError::io(
            format!("cannot read {what}"),
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("stream did not contain valid UTF-8: {e}"),
            ),
        )
    })
}

/// One line of at most [`MAX_LINE_BYTES`] (without its newline) into
/// `line`; `Ok(false)` at the end of the input. `number` is the 1-based line
/// number, for the message.
pub fn read_line(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
    number: usize,
) -> Result<bool, AppError> {
    line.clear();
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = reader
        .take(limit)
        .read_until(b'\n', line)
        .map_err(|e| AppError::io("cannot read the import file", e))?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > MAX_LINE_BYTES {
        return Err(AppError::BadInput(format!(
            "import line {number}: line longer than {} MiB; each line must be one event as written by `provledger export`",
            MAX_LINE_BYTES >> 20
        )));
    }
    Ok(true)
}

/// Name, size and SHA-256 of an attachment: a regular file of at most
/// [`MAX_ATTACHMENT_BYTES`], read once, streaming.
pub fn attachment(path: &Path) -> Result<(String, u64, String), AppError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| AppError::io(format!("cannot read attachment {shown}"), e))?;
    if !meta.is_file() {
        return Err(AppError::BadInput(format!(
            "attachment {shown} is not a regular file (a directory, device or pipe); attach a file"
        )));
    }
    let too_big = || {
        AppError::BadInput(format!(
            "attachment {shown} is larger than {} MiB; attach a smaller file",
            MAX_ATTACHMENT_BYTES >> 20
        ))
    };
    if meta.len() > MAX_ATTACHMENT_BYTES {
        return Err(too_big());
    }
    let file = std::fs::File::open(path)
        .map_err(|e| AppError::io(format!("cannot read attachment {shown}"), e))?;
    let mut reader = file.take(MAX_ATTACHMENT_BYTES + 1);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| AppError::io(format!("cannot read attachment {shown}"), e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    if size > MAX_ATTACHMENT_BYTES {
        return Err(too_big());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok((name, size, hex::encode(hasher.finalize())))
}
