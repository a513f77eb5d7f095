//! Tidy checks: architectural invariants that code review would otherwise
//! have to remember (docs/architecture.md lists them).

use std::path::{Path, PathBuf};

use provledger_tests::repo_root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn crate_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let crates = repo_root().join("crates");
    for entry in std::fs::read_dir(&crates)
        .expect("crates/ exists")
        .flatten()
    {
        rust_files(&entry.path().join("src"), &mut files);
    }
    files.sort();
    files
}

#[test]
fn every_module_says_why_it_exists() {
    let files = crate_sources();
    assert!(
        files.len() > 10,
        "expected the crates' sources, found {files:?}"
    );
    let mut missing = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            missing.push(file.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "these modules lack a `//!` doc saying why they exist: {missing:#?}"
    );
}

#[test]
fn the_domain_core_does_no_io_and_reads_no_clock() {
    let manifest = std::fs::read_to_string(repo_root().join("crates/provledger-domain/Cargo.toml"))
        .expect("domain manifest");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or("");
    for forbidden in [
        "rusqlite",
        "postgres",
        "tokio",
        "axum",
        "reqwest",
        "hyper",
        "provledger",
    ] {
        assert!(
            !deps.contains(forbidden),
            "provledger-domain must not depend on {forbidden}"
        );
    }
    let mut files = Vec::new();
    rust_files(
        &repo_root().join("crates/provledger-domain/src"),
        &mut files,
    );
    assert_none_names(
        &files,
        &[
            "Utc::now",
            "Local::now",
            "SystemTime",
            "Instant::now",
            "std::fs",
            "std::net",
            "std::env",
            "std::process",
            "println!",
        ],
        "the domain core does no I/O and reads no clock",
    );
}

/// Assert that no file of `files` contains any of `forbidden`; `why` says
/// what the rule protects.
fn assert_none_names(files: &[PathBuf], forbidden: &[&str], why: &str) {
    for file in files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} uses {word}: {why}",
                file.display()
            );
        }
    }
}

#[test]
fn the_projection_core_is_pure() {
    // Decoding, folding and the rows to write live in `project.rs`; loading
    // and writing live in the backends (sqlite.rs, postgres.rs, memory.rs).
    let file = repo_root().join("crates/provledger-projections/src/project.rs");
    assert_none_names(
        &[file],
        &[
            "EventStore",
            "rusqlite",
            "postgres",
            "std::fs",
            "std::net",
            "std::env",
            "std::process",
            "Utc::now",
            "println!",
        ],
        "the projection core does no I/O; load and write in a backend",
    );
}

#[test]
fn the_store_knows_nothing_of_the_domain() {
    let manifest = std::fs::read_to_string(repo_root().join("crates/provledger-store/Cargo.toml"))
        .expect("store manifest");
    assert!(
        !manifest.contains("provledger-domain"),
        "provledger-store must not depend on the domain"
    );
}

#[test]
fn nothing_depends_on_the_application_crate() {
    for krate in [
        "provledger-domain",
        "provledger-proof",
        "provledger-store",
        "provledger-projections",
        "provledger-verify",
    ] {
        let manifest =
            std::fs::read_to_string(repo_root().join(format!("crates/{krate}/Cargo.toml")))
                .expect("manifest");
        assert!(
            !manifest.contains("provledger.workspace") && !manifest.contains("crates/provledger\""),
            "{krate} must not depend on the application crate"
        );
    }
}

#[test]
fn the_bench_drives_the_application_not_its_command_line() {
    let mut files = Vec::new();
    rust_files(&repo_root().join("crates/provledger-bench"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            !text.contains("provledger::cli"),
            "{} imports the CLI module; use the application's API (Ledger, transfer, script)",
            file.display()
        );
    }
}

#[test]
fn every_command_is_decided_in_the_one_write_path() {
    let mut files = Vec::new();
    rust_files(&repo_root().join("crates/provledger/src"), &mut files);
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&file).expect("read");
        for decider in ["decide(", "decide_setup(", "decide_command("] {
            let calls = text
                .match_indices(decider)
                .filter(|(i, _)| {
                    // `fn decide(`, `::decide(` in docs and `.decide(` are not calls of the domain's deciders.
                    let before = &text[..*i];
                    !before.ends_with("fn ") && !before.ends_with('_') && !before.ends_with('`')
                })
                .count();
            assert!(
                calls == 0 || name == "shell.rs",
                "{} calls the domain's {decider}…) itself; every command goes through Ledger::submit (shell.rs)",
                file.display()
            );
        }
    }
}

/// The `[dependencies]` section of a crate's manifest.
fn dependencies_of(krate: &str) -> String {
    let manifest = std::fs::read_to_string(repo_root().join(format!("crates/{krate}/Cargo.toml")))
        .expect("manifest");
    manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn the_proof_crate_is_pure() {
    let deps = dependencies_of("provledger-proof");
    for forbidden in [
        "rusqlite",
        "postgres",
        "tokio",
        "reqwest",
        "hyper",
        "provledger-domain.workspace",
        "provledger-store.workspace",
        "provledger-projections.workspace",
    ] {
        assert!(
            !deps.contains(forbidden),
            "provledger-proof must not depend on {forbidden}: it is pure and knows neither \
             a database nor the domain"
        );
    }
    let mut files = Vec::new();
    rust_files(&repo_root().join("crates/provledger-proof/src"), &mut files);
    assert!(!files.is_empty());
    assert_none_names(
        &files,
        &[
            "Utc::now",
            "SystemTime",
            "std::fs",
            "std::net",
            "std::env",
            "std::process",
            "println!",
        ],
        "the proof crate does no I/O and reads no clock",
    );
}

#[test]
fn the_offline_verifier_needs_no_database_and_no_network() {
    let deps = dependencies_of("provledger-verify");
    for forbidden in [
        "rusqlite",
        "postgres",
        "tokio",
        "reqwest",
        "hyper",
        "axum",
        "provledger-store",
        "provledger-projections",
        "provledger.workspace",
    ] {
        assert!(
            !deps.contains(forbidden),
            "provledger-verify must not depend on {forbidden}: an auditor runs it with \
             nothing but the bundle and the public key"
        );
    }
    for required in ["provledger-domain", "provledger-proof"] {
        assert!(
            deps.contains(required),
            "provledger-verify re-folds with {required}"
        );
    }
}

#[test]
fn the_http_server_writes_only_through_the_one_write_path() {
    let mut files = Vec::new();
    rust_files(&repo_root().join("crates/provledger/src/http"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for forbidden in [".append(", ".append_batch(", "to_new_events("] {
            assert!(
                !text.contains(forbidden),
                "{} calls {forbidden}…) itself; HTTP writes go through Ledger::submit",
                file.display()
            );
        }
    }
}
