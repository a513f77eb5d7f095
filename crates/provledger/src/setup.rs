//! The shell of the commands that span several streams: the setup wizard
//! (`setup complete`), service setup (`setup services`) and "Provision and
//! start billing" (`provision`), plus the read-only `subdomain check`.
//!
//! This module exists beside [`Ledger::execute`] because these commands read
//! and write more than one order: they load the order's stream and every
//! organisation and reservation stream the pure decider asks for
//! ([`provledger_domain::setup_needs`]), decide
//! ([`provledger_domain::decide_setup`]), and append ONE request with a
//! per-stream append at the version each stream was read at — a
//! reservation stream that did not exist is appended with "no stream". Two
//! racing setups for the same email or subdomain therefore cannot both be
//! written: the store accepts one append and refuses the other with a
//! version conflict; that one is re-decided on fresh state (bounded, like
//! `execute`), finds the value taken, and records a refusal on its order
//! stream (R12). One winner, one recorded refusal.

use provledger_domain::{
    Context, OrderId, OrgId, OrgState, ReservationKey, ReservationState, SetupCommand, Subdomain,
};
use serde::Serialize;

use crate::{AppError, CommandOutcome, Ledger};

/// The answer of `subdomain check` (R18's "Check availability").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubdomainCheck {
    /// The name as asked.
    pub subdomain: String,
    /// `available`, `taken` or `invalid`.
    pub status: SubdomainStatus,
    /// For `invalid`: the rule it broke; for `taken`: who holds it.
    pub reason: Option<String>,
    /// For `taken`: the organisation holding it.
    pub org_id: Option<String>,
}

/// Whether a subdomain can be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubdomainStatus {
    /// Valid and not reserved by any organisation.
    Available,
    /// Reserved by an organisation.
    Taken,
    /// Breaks the syntax rule.
    Invalid,
}

impl SubdomainStatus {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubdomainStatus::Available => "available",
            SubdomainStatus::Taken => "taken",
            SubdomainStatus::Invalid => "invalid",
        }
    }
}

impl Ledger {
    /// Fold one organisation stream.
    pub fn load_org(&self, org_id: &OrgId) -> Result<OrgState, AppError> {
        self.load_stream(&org_id.stream_id())
    }

    /// Fold one reservation stream.
    pub fn load_reservation(&self, key: &ReservationKey) -> Result<ReservationState, AppError> {
        self.load_stream(&key.stream_id())
    }

    /// Carry out a setup command (R13–R18) dated by the caller: see
    /// [`Ledger::execute`]; both go through [`Ledger::submit`].
    pub fn execute_setup(
        &self,
        order_id: &OrderId,
        command: SetupCommand,
        ctx: &Context,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, AppError> {
        self.execute(order_id, command, ctx, idempotency_key)
    }

    /// R18's "Check availability": whether `raw` is a valid subdomain and
    /// whether an organisation holds it. Reads only the reservation stream.
    pub fn check_subdomain(&self, raw: &str) -> Result<SubdomainCheck, AppError> {
        let subdomain = match Subdomain::parse(raw) {
            Ok(s) => s,
            Err(e) => {
                return Ok(SubdomainCheck {
                    subdomain: raw.to_string(),
                    status: SubdomainStatus::Invalid,
                    reason: Some(e.to_string()),
                    org_id: None,
                })
            }
        };
        let state = self.load_reservation(&ReservationKey::Subdomain(subdomain.clone()))?;
        Ok(match state.holder {
            None => SubdomainCheck {
                subdomain: subdomain.to_string(),
                status: SubdomainStatus::Available,
                reason: None,
                org_id: None,
            },
            Some(holder) => SubdomainCheck {
                subdomain: subdomain.to_string(),
                status: SubdomainStatus::Taken,
                reason: Some(format!(
                    "reserved by organisation {} (order {}) since {}",
                    holder.org_label(),
                    holder.order_id,
                    holder
                        .since
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                )),
                org_id: holder.org_id.map(|o| o.to_string()),
            },
        })
    }
}
