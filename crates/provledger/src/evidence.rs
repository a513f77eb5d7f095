//! Evidence an auditor can check without trusting the server: key pairs,
//! signed checkpoints, `verify --against` a kept checkpoint, and per-
//! subscription evidence bundles (DESIGN.md §5, docs/audit.md).
//!
//! This module exists so that the commands that produce and check evidence
//! live apart from the everyday commands in `cli.rs`: they read and write
//! key files and JSON documents and combine the store's Merkle tree
//! (`provledger_store::merkle`) with the pure checks of `provledger-proof`.
//! A mismatch with a checkpoint is an integrity failure (exit 4); an
//! unreadable key or checkpoint file is bad input (exit 2).

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use provledger_domain::{LineId, OrderId, SubscriptionId};
use provledger_projections::LineQuery;
use provledger_proof::bundle::{Bundle, BundleEvent, BUNDLE_FORMAT};
use provledger_proof::checkpoint::{
    encode_public_key, encode_secret_key, key_id, parse_public_key, parse_secret_key,
    signing_key_from_seed, Checkpoint, TreeHead,
};
use provledger_proof::merkle::{parse_hash, verify_consistency};
use provledger_proof::{ProofError, SigningKey, VerifyingKey};
use provledger_store::merkle::{consistency_proof, inclusion_proof, root_at};
use provledger_store::{hash, EventStore};
use serde::Serialize;

use crate::cli::Io;
use crate::output::{self, Format};
use crate::{fold_stream, AppError, Ledger, EXIT_OK};

/// Type of the event that opens a ledger and records its clock mode.
pub const LEDGER_CREATED: &str = "LedgerCreated";

/// The clock mode of a ledger whose first event does not record one.
pub const DEFAULT_CLOCK_MODE: &str = "simulated";

/// A proof error: unreadable input is bad input, evidence that does not
/// check out is an integrity failure.
fn proof_error(context: &str, e: ProofError) -> AppError {
    if e.is_integrity() {
        AppError::Evidence {
            reason: format!("{context}: {e}"),
        }
    } else {
        AppError::BadInput(format!("{context}: {e}"))
    }
}

fn read_text(path: &Path, what: &str) -> Result<String, AppError> {
    std::fs::read_to_string(path)
        .map_err(|e| AppError::io(format!("cannot read the {what} {}", path.display()), e))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Read a secret key file.
pub fn load_secret_key(path: &Path) -> Result<SigningKey, AppError> {
    parse_secret_key(&read_text(path, "secret key")?)
        .map_err(|e| proof_error(&path.display().to_string(), e))
}

/// Read a public key file.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, AppError> {
    parse_public_key(&read_text(path, "public key")?)
        .map_err(|e| proof_error(&path.display().to_string(), e))
}

/// Read a checkpoint file (not yet verified).
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, AppError> {
    serde_json::from_str(&read_text(path, "checkpoint")?).map_err(|e| {
        AppError::BadInput(format!(
            "{} is not a provledger checkpoint: {e}",
            path.display()
        ))
    })
}

/// Write `text` to a new file (never overwriting one), with `mode` on Unix.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), AppError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            AppError::BadInput(format!(
                "{} already exists; keygen never overwrites a key: choose another --out",
                path.display()
            ))
        } else {
            AppError::io(format!("cannot create {}", path.display()), e)
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| AppError::io(format!("cannot write {}", path.display()), e))
}

/// Write `text` to `path`, replacing it.
fn write_file(path: &Path, text: &str) -> Result<(), AppError> {
    std::fs::write(path, text)
        .map_err(|e| AppError::io(format!("cannot write {}", path.display()), e))
}

fn emit(io: &mut Io<'_>, text: &str) -> Result<(), AppError> {
    io.out
        .write_all(text.as_bytes())
        .map_err(|e| AppError::io("cannot write the output", e))
}

/// `keygen --out PREFIX`: write `PREFIX.key` (mode 0600) and `PREFIX.pub`.
pub fn keygen(prefix: &Path, format: Format, io: &mut Io<'_>) -> Result<i32, AppError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AppError::Io {
        context: "cannot read random bytes for a key".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = signing_key_from_seed(&seed);
    seed.fill(0);
    let secret_path = with_suffix(prefix, ".key");
    let public_path = with_suffix(prefix, ".pub");
    if public_path.exists() {
        return Err(AppError::BadInput(format!(
            "{} already exists; keygen never overwrites a key: choose another --out",
            public_path.display()
        )));
    }
    write_new(&secret_path, &encode_secret_key(&key), 0o600)?;
    write_new(
        &public_path,
        &encode_public_key(&key.verifying_key()),
        0o644,
    )?;
    let id = key_id(&key.verifying_key());
    match format {
        Format::Json => emit(
            io,
            &output::json(&serde_json::json!({
                "key_id": id,
                "secret_key": secret_path.display().to_string(),
                "public_key": public_path.display().to_string(),
            }))?,
        )?,
        _ => emit(
            io,
            &format!(
                "wrote {} (secret, mode 0600: keep it private) and {} (give it to auditors); key id {id}\n",
                secret_path.display(),
                public_path.display()
            ),
        )?,
    }
    Ok(EXIT_OK)
}

/// The ledger's id and clock mode, from its first event: a `LedgerCreated`
/// event's `ledger_id` and `clock` fields when it has them; otherwise the
/// id is `sha256:` and the first event's hash, and the clock `simulated`.
pub fn ledger_identity(store: &dyn EventStore) -> Result<Option<(String, String)>, AppError> {
    let Some(first) = store.read_all(0)?.next().transpose()? else {
        return Ok(None);
    };
    let created = first.event_type == LEDGER_CREATED;
    let field = |name: &str| {
        created
            .then(|| first.payload.get(name).and_then(|v| v.as_str()))
            .flatten()
            .map(str::to_string)
    };
    let id = field("ledger_id").unwrap_or_else(|| format!("sha256:{}", first.hash));
    let clock = field("clock").unwrap_or_else(|| DEFAULT_CLOCK_MODE.to_string());
    Ok(Some((id, clock)))
}

/// The signed tree head of the ledger as it is now.
fn sign_current_head(ledger: &Ledger, key: &SigningKey) -> Result<Checkpoint, AppError> {
    let store = ledger.store();
    let Some((ledger_id, clock_mode)) = ledger_identity(store)? else {
        return Err(AppError::BadInput(
            "the ledger is empty: there is nothing to checkpoint yet".into(),
        ));
    };
    let head = store
        .head()?
        .ok_or_else(|| AppError::BadInput("the ledger is empty".into()))?;
    let root = root_at(store, head.position)?;
    let tree_head = TreeHead {
        ledger_id,
        clock_mode,
        size: head.position,
        root,
        head_hash: head.hash,
        time: hash::format_time(&provledger_store::to_stored_precision(Utc::now())),
    };
    Ok(Checkpoint::sign(&tree_head, key))
}

/// `checkpoint --key PREFIX.key --out FILE`.
pub fn checkpoint(
    ledger: &Ledger,
    key: &Path,
    out: &Path,
    format: Format,
    io: &mut Io<'_>,
) -> Result<i32, AppError> {
    let key = load_secret_key(key)?;
    let checkpoint = sign_current_head(ledger, &key)?;
    write_file(out, &output::json(&checkpoint)?)?;
    match format {
        Format::Json => emit(io, &output::json(&checkpoint)?)?,
        _ => emit(
            io,
            &format!(
                "wrote checkpoint {}: {} events, root {}, head hash {}, signed by {}; keep it away from this server\n",
                out.display(),
                checkpoint.size,
                checkpoint.root,
                checkpoint.head_hash,
                checkpoint.key_id
            ),
        )?,
    }
    Ok(EXIT_OK)
}

/// The result of `verify --against`.
#[derive(Debug, Serialize)]
pub struct AgainstReport {
    /// Events in the ledger now (all checked).
    pub events_checked: u64,
    /// Events the checkpoint covers.
    pub checkpoint_size: u64,
    /// When the checkpoint was taken.
    pub checkpoint_time: String,
    /// The key that signed it.
    pub key_id: String,
    /// The ledger's root now.
    pub root: String,
    /// Hashes in the consistency proof from the checkpoint to now.
    pub consistency_proof_length: usize,
}

/// `verify --against FILE --pubkey PREFIX.pub`: the ledger verifies, still
/// holds the checkpoint's exact prefix, and extends it.
pub fn verify_against(
    ledger: &Ledger,
    checkpoint_path: &Path,
    pubkey: &Path,
    progress: &mut dyn FnMut(u64),
    format: Format,
    io: &mut Io<'_>,
) -> Result<i32, AppError> {
    let key = load_public_key(pubkey)?;
    let checkpoint = load_checkpoint(checkpoint_path)?;
    let signed = checkpoint
        .verify(&key)
        .map_err(|e| proof_error("the checkpoint", e))?;
    let report = verify_against_head(ledger, &signed, progress)?;
    let report = AgainstReport {
        key_id: checkpoint.key_id.clone(),
        checkpoint_time: checkpoint.time.clone(),
        ..report
    };
    match format {
        Format::Json => emit(io, &output::json(&report)?)?,
        _ => emit(
            io,
            &format!(
                "verified {} events: the hash chain and Merkle tree are intact, the ledger still \
                 holds the {} events of checkpoint {} (signed by {}) and extends them \
                 (consistency proof of {} hashes); root {}\n",
                report.events_checked,
                report.checkpoint_size,
                report.checkpoint_time,
                report.key_id,
                report.consistency_proof_length,
                report.root
            ),
        )?,
    }
    Ok(EXIT_OK)
}

fn mismatch(reason: String) -> AppError {
    AppError::Evidence { reason }
}

/// Check the ledger against a verified tree head.
fn verify_against_head(
    ledger: &Ledger,
    signed: &TreeHead,
    progress: &mut dyn FnMut(u64),
) -> Result<AgainstReport, AppError> {
    let store = ledger.store();
    let (report, snapshot) =
        provledger_store::verify_with_snapshot(store, progress, Some(signed.size))?;
    if let Some(broken) = &report.first_broken {
        return Err(AppError::VerificationFailed {
            position: broken.position,
            reason: broken.reason.clone(),
        });
    }
    let n = report.events_checked;
    let Some(prefix) = snapshot else {
        return Err(mismatch(format!(
            "the checkpoint covers {} events but the ledger holds only {n}: \
             events {}..{} are missing (a truncated log or a deleted tail)",
            signed.size,
            n + 1,
            signed.size
        )));
    };
    match ledger_identity(store)? {
        Some((id, clock)) => {
            if id != signed.ledger_id {
                return Err(mismatch(format!(
                    "the checkpoint is of ledger {} but this is ledger {id}: \
                     the first event was rewritten, or this is another ledger",
                    signed.ledger_id
                )));
            }
            if clock != signed.clock_mode {
                return Err(mismatch(format!(
                    "the checkpoint says clock mode {:?} but the ledger's is {clock:?}",
                    signed.clock_mode
                )));
            }
        }
        None if signed.size == 0 => {}
        None => {
            return Err(mismatch(format!(
                "the checkpoint covers {} events but the ledger is empty",
                signed.size
            )))
        }
    }
    if prefix.head_hash != signed.head_hash {
        return Err(mismatch(format!(
            "the event at position {} has hash {} but the checkpoint says {}: \
             the log was rewritten up to that position",
            signed.size, prefix.head_hash, signed.head_hash
        )));
    }
    if prefix.root != signed.root {
        return Err(mismatch(format!(
            "the Merkle root of the first {} events is {} but the checkpoint says {}: \
             the log was rewritten",
            signed.size,
            hex::encode(prefix.root),
            hex::encode(signed.root)
        )));
    }
    let new_root = parse_hash(&report.root).map_err(|e| proof_error("the ledger's root", e))?;
    let proof = consistency_proof(store, signed.size, n)?;
    verify_consistency(signed.size, n, &signed.root, &new_root, &proof).map_err(|e| {
        mismatch(format!(
            "the ledger of {n} events does not extend the checkpoint of {}: {e}",
            signed.size
        ))
    })?;
    Ok(AgainstReport {
        events_checked: n,
        checkpoint_size: signed.size,
        checkpoint_time: String::new(),
        key_id: String::new(),
        root: report.root,
        consistency_proof_length: proof.len(),
    })
}

/// `evidence --subscription S --key PREFIX.key --out FILE`.
pub fn evidence(
    ledger: &Ledger,
    subscription: &str,
    key: &Path,
    out: &Path,
    format: Format,
    io: &mut Io<'_>,
) -> Result<i32, AppError> {
    let subscription_id = SubscriptionId::parse(subscription)?;
    let key = load_secret_key(key)?;
    let rows = ledger.lines(
        &LineQuery {
            order_id: None,
            subscription_id: Some(subscription_id.clone()),
        },
        None,
    )?;
    let Some(row) = rows.first() else {
        return Err(AppError::BadInput(format!(
            "unknown subscription {subscription}: no line of any order has it; check it with `provledger lines`"
        )));
    };
    let order_id = OrderId::parse(&row.order_id)?;
    let stream_id = order_id.stream_id();
    let checkpoint = sign_current_head(ledger, &key)?;
    let store = ledger.store();
    let events: Vec<_> = store
        .read_stream(&stream_id, 0)?
        .into_iter()
        .filter(|e| e.position <= checkpoint.size)
        .collect();
    let state = fold_stream(&events)?;
    let held = state.order.as_ref().is_some_and(|order| {
        order
            .lines
            .iter()
            .any(|line| line.subscription_id == subscription_id)
    });
    if !held {
        return Err(AppError::BadInput(format!(
            "subscription {subscription} is not on order {order_id} as of the checkpoint; \
             run `provledger project` and try again"
        )));
    }
    let mut bundle_events = Vec::with_capacity(events.len());
    for event in events {
        let proof = inclusion_proof(store, event.position, checkpoint.size)?;
        bundle_events.push(BundleEvent {
            event,
            inclusion_proof: proof.iter().map(hex::encode).collect(),
        });
    }
    let bundle = Bundle {
        format: BUNDLE_FORMAT.to_string(),
        subscription: subscription_id.to_string(),
        stream_id,
        clock_mode: checkpoint.clock_mode.clone(),
        key_id: checkpoint.key_id.clone(),
        checkpoint,
        events: bundle_events,
    };
    write_file(out, &output::json(&bundle)?)?;
    let line: Option<LineId> = state.order.as_ref().and_then(|o| {
        o.lines
            .iter()
            .find(|l| l.subscription_id == subscription_id)
            .map(|l| l.line_id.clone())
    });
    match format {
        Format::Json => emit(
            io,
            &output::json(&serde_json::json!({
                "bundle": out.display().to_string(),
                "subscription": bundle.subscription,
                "order_id": order_id.to_string(),
                "events": bundle.events.len(),
                "checkpoint_size": bundle.checkpoint.size,
                "key_id": bundle.key_id,
            }))?,
        )?,
        _ => emit(
            io,
            &format!(
                "wrote evidence bundle {}: subscription {} (order {order_id}, line {}), {} events \
                 with inclusion proofs against a checkpoint of {} events signed by {}\n",
                out.display(),
                bundle.subscription,
                line.map_or_else(|| "?".to_string(), |l| l.to_string()),
                bundle.events.len(),
                bundle.checkpoint.size,
                bundle.key_id
            ),
        )?,
    }
    Ok(EXIT_OK)
}
