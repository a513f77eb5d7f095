//! Signed tree heads ("checkpoints") and the Ed25519 keys that sign them.
//!
//! This module exists so that an auditor can hold the ledger to what it once
//! said: a checkpoint commits, under the operator's signature, to the size,
//! Merkle root and head hash of the log at one moment. Kept away from the
//! server, it later proves that the log still holds that exact prefix and
//! that today's log extends it. Pure: keys and checkpoints go in and out as
//! text; reading and writing the files is the caller's job.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{parse_hash, Hash};
use crate::ProofError;

/// The `format` of a checkpoint this build writes and reads.
pub const CHECKPOINT_FORMAT: &str = "provledger-checkpoint/1";

/// First line of a secret key file.
const SECRET_KEY_HEADER: &str = "provledger ed25519 secret key";
/// First line of a public key file.
const PUBLIC_KEY_HEADER: &str = "provledger ed25519 public key";

/// A signing key from its 32-byte seed (e.g. fresh random bytes).
pub fn signing_key_from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

/// The text of a secret key file (keep it private: it signs checkpoints).
pub fn encode_secret_key(key: &SigningKey) -> String {
    format!("{SECRET_KEY_HEADER}\n{}\n", hex::encode(key.to_bytes()))
}

/// The text of a public key file.
pub fn encode_public_key(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_HEADER}\n{}\n", hex::encode(key.to_bytes()))
}

fn key_bytes(text: &str, header: &str, what: &str) -> Result<[u8; 32], ProofError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let malformed = |detail: &str| ProofError::Malformed {
        what: format!(
            "not a provledger {what} file ({detail}); create one with `provledger keygen`"
        ),
    };
    if lines.next() != Some(header) {
        return Err(malformed(&format!("its first line is not {header:?}")));
    }
    let body = lines
        .next()
        .ok_or_else(|| malformed("the key is missing"))?;
    let bytes = hex::decode(body).map_err(|_| malformed("the key is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| malformed("the key is not 32 bytes"))
}

/// Read a secret key file's text.
pub fn parse_secret_key(text: &str) -> Result<SigningKey, ProofError> {
    Ok(SigningKey::from_bytes(&key_bytes(
        text,
        SECRET_KEY_HEADER,
        "secret key",
    )?))
}

/// Read a public key file's text.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, ProofError> {
    let bytes = key_bytes(text, PUBLIC_KEY_HEADER, "public key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| ProofError::Malformed {
        what: format!("the public key is not a valid Ed25519 point: {e}"),
    })
}

/// A short, stable name of a public key: `ed25519:` and the first 16 bytes
/// of the SHA-256 of its 32 bytes, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.to_bytes());
    format!("ed25519:{}", hex::encode(&digest[..16]))
}

/// What a checkpoint states, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// The ledger's id (`sha256:` and its first event's hash).
    pub ledger_id: String,
    /// The ledger's clock mode: `live` or `simulated`.
    pub clock_mode: String,
    /// Number of events (leaves) covered.
    pub size: u64,
    /// The Merkle root over those events.
    pub root: Hash,
    /// The hash of the event at position `size` (64 zeros for size 0).
    pub head_hash: String,
    /// When the checkpoint was taken (RFC 3339, UTC).
    pub time: String,
}

/// A signed tree head, as kept by an auditor: small JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// The ledger's id.
    pub ledger_id: String,
    /// `live` or `simulated`.
    pub clock_mode: String,
    /// Number of events covered.
    pub size: u64,
    /// Merkle root, hex.
    pub root: String,
    /// Hash of the event at position `size`, hex.
    pub head_hash: String,
    /// When it was taken (RFC 3339, UTC).
    pub time: String,
    /// Which key signed it ([`key_id`]).
    pub key_id: String,
    /// Ed25519 signature over [`Checkpoint::signed_message`], hex.
    pub signature: String,
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Checkpoint {
    /// Sign `head` with `key`.
    pub fn sign(head: &TreeHead, key: &SigningKey) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            format: CHECKPOINT_FORMAT.to_string(),
            ledger_id: head.ledger_id.clone(),
            clock_mode: head.clock_mode.clone(),
            size: head.size,
            root: hex::encode(head.root),
            head_hash: head.head_hash.clone(),
            time: head.time.clone(),
            key_id: key_id(&key.verifying_key()),
            signature: String::new(),
        };
        let signature = key.sign(&checkpoint.signed_message());
        checkpoint.signature = hex::encode(signature.to_bytes());
        checkpoint
    }

    /// The bytes the signature covers: every field but the signature, each
    /// as its length (u64, big-endian) and its UTF-8 bytes.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut out = Vec::new();
        field(&mut out, self.format.as_bytes());
        field(&mut out, self.ledger_id.as_bytes());
        field(&mut out, self.clock_mode.as_bytes());
        field(&mut out, self.size.to_string().as_bytes());
        field(&mut out, self.root.as_bytes());
        field(&mut out, self.head_hash.as_bytes());
        field(&mut out, self.time.as_bytes());
        field(&mut out, self.key_id.as_bytes());
        out
    }

    /// Check the signature with `key` and return the tree head it vouches for.
    pub fn verify(&self, key: &VerifyingKey) -> Result<TreeHead, ProofError> {
        if self.format != CHECKPOINT_FORMAT {
            return Err(ProofError::Malformed {
                what: format!(
                    "checkpoint format {:?} is not {CHECKPOINT_FORMAT:?}",
                    self.format
                ),
            });
        }
        let expected_id = key_id(key);
        if self.key_id != expected_id {
            return Err(ProofError::BadSignature {
                reason: format!(
                    "the checkpoint was signed by key {} but the public key given is {expected_id}",
                    self.key_id
                ),
            });
        }
        let bad = |reason: String| ProofError::BadSignature { reason };
        let raw = hex::decode(&self.signature)
            .map_err(|_| bad("the checkpoint's signature is not hex".into()))?;
        let raw: [u8; 64] = raw
            .try_into()
            .map_err(|_| bad("the checkpoint's signature is not 64 bytes".into()))?;
        key.verify(&self.signed_message(), &Signature::from_bytes(&raw))
            .map_err(|_| {
                bad(format!(
                    "the checkpoint's signature does not verify with key {expected_id}: \
                     the checkpoint was altered or signed by another key"
                ))
            })?;
        let root = parse_hash(&self.root).map_err(|_| ProofError::BadSignature {
            reason: "the checkpoint's root is not a hex SHA-256".into(),
        })?;
        Ok(TreeHead {
            ledger_id: self.ledger_id.clone(),
            clock_mode: self.clock_mode.clone(),
            size: self.size,
            root,
            head_hash: self.head_hash.clone(),
            time: self.time.clone(),
        })
    }
}
