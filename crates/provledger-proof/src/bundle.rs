//! Evidence bundles: one order's events with a proof of each against one
//! signed checkpoint, checkable offline.
//!
//! This module exists so that the CLI that writes a bundle and the
//! `provledger-verify` binary that checks it agree on its shape and on what
//! "checks out" means, without the verifier touching a database. It checks
//! everything that does not need the domain: the signature, every event's
//! hash, every inclusion proof, one stream with gapless versions from 1. The
//! verifier then re-folds the events with the domain.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, TreeHead};
use crate::hash::event_hash;
use crate::merkle::{event_leaf, parse_hash, verify_inclusion, Hash};
use crate::record::RecordedEvent;
use crate::ProofError;

/// The `format` of a bundle this build writes and reads.
pub const BUNDLE_FORMAT: &str = "provledger-evidence/1";

/// One event of a bundle, in full, with its inclusion proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleEvent {
    /// The event as stored: envelope, metadata, payload, hashes.
    pub event: RecordedEvent,
    /// Sibling hashes (hex) from the event's leaf up to the checkpoint's
    /// root, leaf first (RFC 9162 §2.1.3).
    pub inclusion_proof: Vec<String>,
}

/// Everything an auditor needs to check one subscription's history offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The subscription asked for.
    pub subscription: String,
    /// The order stream holding it; every event belongs to it.
    pub stream_id: String,
    /// The ledger's clock mode (as signed in the checkpoint).
    pub clock_mode: String,
    /// The key that signed the checkpoint.
    pub key_id: String,
    /// The signed tree head every proof leads to.
    pub checkpoint: Checkpoint,
    /// Every event of the stream, in stream order.
    pub events: Vec<BundleEvent>,
}

fn bad(reason: String) -> ProofError {
    ProofError::BadBundle { reason }
}

/// Check a bundle against the public key: the checkpoint's signature, that
/// the bundle's key id and clock mode are the checkpoint's, and for each
/// event in turn its recomputed hash, its inclusion proof, that it belongs
/// to the bundle's stream at the next version (from 1), and — where two
/// events are adjacent in the log — the chain link between them. Returns
/// the verified tree head; the first problem is the error.
pub fn verify_bundle(bundle: &Bundle, key: &VerifyingKey) -> Result<TreeHead, ProofError> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(ProofError::Malformed {
            what: format!("bundle format {:?} is not {BUNDLE_FORMAT:?}", bundle.format),
        });
    }
    let head = bundle.checkpoint.verify(key)?;
    if bundle.key_id != bundle.checkpoint.key_id {
        return Err(bad(format!(
            "the bundle names key {} but its checkpoint was signed by {}",
            bundle.key_id, bundle.checkpoint.key_id
        )));
    }
    if bundle.clock_mode != head.clock_mode {
        return Err(bad(format!(
            "the bundle says clock mode {:?} but its signed checkpoint says {:?}",
            bundle.clock_mode, head.clock_mode
        )));
    }
    if bundle.events.is_empty() {
        return Err(bad("the bundle holds no events".into()));
    }
    let mut previous: Option<&RecordedEvent> = None;
    for (i, item) in bundle.events.iter().enumerate() {
        let event = &item.event;
        let at = format!("event {} (position {})", i + 1, event.position);
        if event.stream_id != bundle.stream_id {
            return Err(bad(format!(
                "{at} belongs to stream {} but the bundle is for stream {}",
                event.stream_id, bundle.stream_id
            )));
        }
        let expected_version = i as u64 + 1;
        if event.stream_version != expected_version {
            return Err(bad(format!(
                "{at} is version {} of {} but version {expected_version} comes next \
                 (an event is missing, duplicated or out of order)",
                event.stream_version, event.stream_id
            )));
        }
        if let Some(prev) = previous {
            if event.position <= prev.position {
                return Err(bad(format!(
                    "{at} does not come after position {} in the log",
                    prev.position
                )));
            }
            if event.position == prev.position + 1 && event.prev_hash != prev.hash {
                return Err(bad(format!(
                    "{at}: its prev_hash is not the hash of the event just before it"
                )));
            }
        }
        if event.position == 0 || event.position > head.size {
            return Err(bad(format!(
                "{at} is not within the checkpoint's {} events",
                head.size
            )));
        }
        let computed = event_hash(event);
        if computed != event.hash {
            return Err(bad(format!(
                "{at}: its content hashes to {computed} but it claims hash {} \
                 (the event was altered)",
                event.hash
            )));
        }
        let leaf = event_leaf(&event.hash).map_err(|e| bad(format!("{at}: {e}")))?;
        let proof = item
            .inclusion_proof
            .iter()
            .map(|h| parse_hash(h))
            .collect::<Result<Vec<Hash>, _>>()
            .map_err(|e| bad(format!("{at}: its inclusion proof is unreadable: {e}")))?;
        verify_inclusion(event.position - 1, head.size, &leaf, &proof, &head.root)
            .map_err(|e| bad(format!("{at}: its inclusion proof fails: {e}")))?;
        previous = Some(event);
    }
    Ok(head)
}
