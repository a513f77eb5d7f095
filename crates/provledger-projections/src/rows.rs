//! The rows and queries of the three read models, as callers see them.
//!
//! This module exists so that the CLI, the HTTP server and both storage
//! backends share one definition of what a `lines`, `transactions` or
//! `history` row is (DESIGN.md §3). The rows are plain data: every id is a
//! `String`, every time a `DateTime<Utc>`, and the serde field names are the
//! contract that `--format json` prints.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use provledger_domain::{OrderId, SubscriptionId};
use provledger_store::Position;
use serde::{Deserialize, Serialize};

use crate::ProjectionError;

/// Which lines [`crate::ReadModels::lines`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineQuery {
    /// Only the lines of this order.
    pub order_id: Option<OrderId>,
    /// Only the line(s) with this subscription id.
    pub subscription_id: Option<SubscriptionId>,
}

/// Which transactions [`crate::ReadModels::transactions`] returns (R9).
///
/// Every `Some` field narrows the result; rows come in chronological order
/// (`submitted_at`, then position, then line id) and `limit` keeps the first
/// `limit` rows of that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionQuery {
    /// Only this transaction type.
    pub tx_type: Option<TransactionType>,
    /// Only rows of this subscription.
    pub subscription_id: Option<SubscriptionId>,
    /// Only rows of this order.
    pub order_id: Option<OrderId>,
    /// Only rows with this status.
    pub status: Option<TransactionStatus>,
    /// Only rows submitted at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows submitted at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many rows (the earliest ones).
    pub limit: Option<usize>,
}

/// Which events [`crate::ReadModels::history`] returns.
///
/// By order: every event of the order. By subscription: the events of that
/// subscription's line plus the order-level events (those about no single
/// line: placement, onboarding, setup) of its order. Both: the intersection.
/// Neither: every order event. Always in position order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only this order's events.
    pub order_id: Option<OrderId>,
    /// Only this subscription's events (and its order's order-level events).
    pub subscription_id: Option<SubscriptionId>,
}

/// The kind of a Transaction Manager row (R9).
///
/// `as_str` is the JSON / CLI name; `label` the name shown in tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    /// R4: a change of a line's provisioning contact email.
    ProvisioningEmailUpdate,
    /// R3: a resend of the provisioning email.
    ProvisioningEmailResend,
    /// R5: the order was mapped to an organisation (PONR).
    OrgOnboarding,
    /// R10: a support case was opened.
    SupportCase,
    /// R13: the setup wizard was started.
    SetupStart,
    /// R14: the setup was handed over to someone else in the partner's company.
    SetupHandover,
    /// R13–R17: the setup wizard was completed (organisations, administrator).
    SetupCompletion,
    /// R18: the service settings were saved.
    ServiceSetup,
    /// R18: "Provision and start billing" for a line.
    Provisioning,
}

impl TransactionType {
    /// Every type, in catalogue order.
    pub const ALL: [TransactionType; 9] = [
        TransactionType::ProvisioningEmailUpdate,
        TransactionType::ProvisioningEmailResend,
        TransactionType::OrgOnboarding,
        TransactionType::SupportCase,
        TransactionType::SetupStart,
        TransactionType::SetupHandover,
        TransactionType::SetupCompletion,
        TransactionType::ServiceSetup,
        TransactionType::Provisioning,
    ];

    /// The snake_case name used in JSON, CSV and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionType::ProvisioningEmailUpdate => "provisioning_email_update",
            TransactionType::ProvisioningEmailResend => "provisioning_email_resend",
            TransactionType::OrgOnboarding => "org_onboarding",
            TransactionType::SupportCase => "support_case",
            TransactionType::SetupStart => "setup_start",
            TransactionType::SetupHandover => "setup_handover",
            TransactionType::SetupCompletion => "setup_completion",
            TransactionType::ServiceSetup => "service_setup",
            TransactionType::Provisioning => "provisioning",
        }
    }

    /// The name shown to people, e.g. `Provisioning Email Update`.
    pub fn label(self) -> &'static str {
        match self {
            TransactionType::ProvisioningEmailUpdate => "Provisioning Email Update",
            TransactionType::ProvisioningEmailResend => "Provisioning Email Resend",
            TransactionType::OrgOnboarding => "Org Onboarding",
            TransactionType::SupportCase => "Support Case",
            TransactionType::SetupStart => "Setup Start",
            TransactionType::SetupHandover => "Setup Handover",
            TransactionType::SetupCompletion => "Setup Completion",
            TransactionType::ServiceSetup => "Service Setup",
            TransactionType::Provisioning => "Provisioning",
        }
    }
}

impl fmt::Display for TransactionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransactionType {
    type Err = ProjectionError;

    /// Accepts `provisioning_email_update`, `provisioning-email-update` and
    /// `Provisioning Email Update` (any case, surrounding spaces ignored).
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let wanted = normalise(raw);
        TransactionType::ALL
            .into_iter()
            .find(|t| t.as_str() == wanted)
            .ok_or_else(|| ProjectionError::InvalidQuery {
                field: "type",
                reason: format!(
                    "{raw:?} is not a transaction type; use one of: {}",
                    TransactionType::ALL.map(TransactionType::as_str).join(", ")
                ),
            })
    }
}

/// The outcome of a transaction (R9, R12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    /// The action took effect.
    Success,
    /// The action was refused by a rule; `reason` says why and what to do.
    Failed,
    /// An asynchronous step has not finished yet.
    Pending,
}

impl TransactionStatus {
    /// Every status.
    pub const ALL: [TransactionStatus; 3] = [
        TransactionStatus::Success,
        TransactionStatus::Failed,
        TransactionStatus::Pending,
    ];

    /// The snake_case name used in JSON, CSV and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Success => "success",
            TransactionStatus::Failed => "failed",
            TransactionStatus::Pending => "pending",
        }
    }

    /// The name shown to people: `Success`, `Failed`, `Pending`.
    pub fn label(self) -> &'static str {
        match self {
            TransactionStatus::Success => "Success",
            TransactionStatus::Failed => "Failed",
            TransactionStatus::Pending => "Pending",
        }
    }
}

impl fmt::Display for TransactionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransactionStatus {
    type Err = ProjectionError;

    /// Accepts `success`, `failed`, `pending` in any case.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let wanted = normalise(raw);
        TransactionStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == wanted)
            .ok_or_else(|| ProjectionError::InvalidQuery {
                field: "status",
                reason: format!(
                    "{raw:?} is not a transaction status; use success, failed or pending"
                ),
            })
    }
}

/// Lowercase, trim, and turn `-` and spaces into `_`.
fn normalise(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// One order line as the `lines` view shows it (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRow {
    /// Order id.
    pub order_id: String,
    /// Line id within the order.
    pub line_id: String,
    /// Subscription id.
    pub subscription_id: String,
    /// Offer name, e.g. `A-Flex`.
    pub offer: String,
    /// Requested start date.
    pub rsd: NaiveDate,
    /// Current provisioning contact email.
    pub provisioning_contact: String,
    /// Status: `awaiting_provisioning_details`, `closed`, `onboarded`, `provisioned`.
    pub status: String,
    /// Status as shown in the ordering tool, e.g. `Awaiting Provisioning Details`.
    pub status_label: String,
    /// R8: provisioning is still pending (the line is not provisioned).
    pub provisioning_pending: bool,
    /// R2: when the initial provisioning email went out.
    pub initial_email_sent_at: Option<DateTime<Utc>>,
    /// R7: when the line closes (or closed) if not provisioned.
    pub closes_at: Option<DateTime<Utc>>,
    /// R7/R18: billing has started.
    pub billing_started: bool,
    /// R5: the organisation the order is onboarded to.
    pub org_id: Option<String>,
    /// R11: when the escalation was raised.
    pub escalated_at: Option<DateTime<Utc>>,
    /// R3: how many times the provisioning email was resent.
    pub resend_count: u32,
    /// The partner (reseller) of the order.
    pub partner: String,
    /// The end customer of the order.
    pub end_customer: String,
}

/// One Transaction Manager row: one transaction on one line (R9).
///
/// A transaction that touched several lines (a change with *apply to all
/// lines*, an onboarding) has one row per line, all with the same
/// `transaction_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRow {
    /// The transaction (user action) id, from the event metadata.
    pub transaction_id: String,
    /// Transaction type.
    #[serde(rename = "type")]
    pub tx_type: TransactionType,
    /// Transaction type as shown to people.
    pub type_label: String,
    /// Order id.
    pub order_id: String,
    /// Line id.
    pub line_id: String,
    /// Subscription id of the line.
    pub subscription_id: String,
    /// Who submitted it (the acting user).
    pub submitted_by: String,
    /// When (the event's business time, `occurred_at`).
    pub submitted_at: DateTime<Utc>,
    /// Outcome.
    pub status: TransactionStatus,
    /// For a failed transaction: what was wrong and what to do.
    pub reason: Option<String>,
    /// For a failed transaction: the stable refusal code, e.g. `after_ponr`.
    pub reason_code: Option<String>,
    /// For a contact change: the contact before (for a failed one, the
    /// contact the line had at that moment).
    pub old_email: Option<String>,
    /// For a contact change: the requested contact; for a resend: the recipient.
    pub new_email: Option<String>,
    /// For a contact change: whether *apply to all lines* was chosen.
    pub applied_to_all_lines: bool,
    /// Extra facts for people: the organisation of an onboarding, the case of
    /// a support case, whether a changed contact was sent the email.
    pub detail: Option<String>,
    /// Global position of the event the row comes from.
    pub position: Position,
}

/// One event as the `history` view shows it, with where it sits in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// Global position.
    pub position: Position,
    /// Stream, `order-<id>`.
    pub stream_id: String,
    /// Version of the stream after this event.
    pub stream_version: u64,
    /// Order id.
    pub order_id: String,
    /// The line the event is about; `None` for order-level events.
    pub line_id: Option<String>,
    /// The subscription of that line; `None` for order-level events.
    pub subscription_id: Option<String>,
    /// Event type name.
    pub event_type: String,
    /// Schema version of the payload.
    pub schema_version: u32,
    /// Business time.
    pub occurred_at: DateTime<Utc>,
    /// When the store wrote the event.
    pub recorded_at: DateTime<Utc>,
    /// The acting user, or `system`.
    pub actor: String,
    /// The transaction the event belongs to.
    pub transaction_id: String,
    /// The event's payload as stored.
    pub payload: serde_json::Value,
    /// Hash of the previous event in the ledger.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_type_parses_every_spelling() {
        for t in TransactionType::ALL {
            assert_eq!(t.as_str().parse::<TransactionType>().unwrap(), t);
            assert_eq!(
                t.as_str()
                    .replace('_', "-")
                    .parse::<TransactionType>()
                    .unwrap(),
                t
            );
            assert_eq!(t.label().parse::<TransactionType>().unwrap(), t);
            assert_eq!(
                t.label().to_uppercase().parse::<TransactionType>().unwrap(),
                t
            );
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.as_str().into())
            );
        }
        let err = "email".parse::<TransactionType>().unwrap_err().to_string();
        assert!(err.contains("provisioning_email_update"), "{err}");
    }

    #[test]
    fn transaction_status_parses() {
        for s in TransactionStatus::ALL {
            assert_eq!(s.as_str().parse::<TransactionStatus>().unwrap(), s);
            assert_eq!(s.label().parse::<TransactionStatus>().unwrap(), s);
        }
        assert!("ok".parse::<TransactionStatus>().is_err());
    }
}
