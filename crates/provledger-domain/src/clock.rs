//! Whose clock counts: the ledger's clock mode and the event that records it.
//!
//! A ledger is created `live` (business time is the ledger's own clock when
//! a command is decided; callers cannot choose it) or `simulated` (callers
//! give the time: demos, scenario scripts, tests, benchmarks). The mode is
//! the ledger's first event, [`LedgerEvent::LedgerCreated`] on the stream
//! [`LEDGER_STREAM`], so it is covered by the hash chain, every export and
//! every evidence bundle (DESIGN.md §2, "Whose clock").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{decode_stored, payload_of};
use crate::{DecodeError, DomainError, SCHEMA_VERSION};

/// The stream holding the ledger's own events.
pub const LEDGER_STREAM: &str = "ledger";

/// Whose clock dates commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// The ledger's own clock; `--at`/`--now` are refused.
    Live,
    /// The caller's time; every view says "simulated clock".
    Simulated,
}

impl ClockMode {
    /// Parse `live` or `simulated`.
    pub fn parse(raw: &str) -> Result<ClockMode, DomainError> {
        match raw.trim() {
            "live" => Ok(ClockMode::Live),
            "simulated" => Ok(ClockMode::Simulated),
            _ => Err(DomainError::InvalidField {
                field: "clock".into(),
                reason: format!("{raw:?} is not a clock mode; use live or simulated"),
            }),
        }
    }

    /// `live` or `simulated`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockMode::Live => "live",
            ClockMode::Simulated => "simulated",
        }
    }
}

impl std::fmt::Display for ClockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event of the ledger's own stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LedgerEvent {
    /// The ledger was created (`provledger init`): always position 1.
    LedgerCreated {
        /// When (the real clock, whatever the mode).
        at: DateTime<Utc>,
        /// Whose clock dates commands from now on.
        clock: ClockMode,
        /// A random id naming this ledger in checkpoints and bundles.
        ledger_id: String,
    },
}

/// The type names of every ledger event.
pub const LEDGER_EVENT_TYPES: &[&str] = &["LedgerCreated"];

impl LedgerEvent {
    /// The event's type name, as stored.
    pub fn event_type(&self) -> &'static str {
        match self {
            LedgerEvent::LedgerCreated { .. } => "LedgerCreated",
        }
    }

    /// The schema version this build writes.
    pub fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// Business time of the event.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            LedgerEvent::LedgerCreated { at, .. } => *at,
        }
    }

    /// The JSON payload as stored.
    pub fn to_payload(&self) -> serde_json::Value {
        payload_of(self)
    }

    /// Decode a stored ledger event.
    pub fn from_stored(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<LedgerEvent, DecodeError> {
        decode_stored(LEDGER_EVENT_TYPES, event_type, schema_version, payload)
    }
}
