//! Shared helpers for the workspace-level tests: paths into the repository
//! and fresh temporary ledgers.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A store URL for a new SQLite ledger inside `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("ledger.db").display())
}
