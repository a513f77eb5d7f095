//! Commands: what a user (or the scheduler) asks the ledger to do.
//!
//! Commands hold validated values; the raw order file is [`OrderRequest`],
//! whose [`OrderRequest::validate`] turns every bad field into a
//! [`DomainError`] naming the field. Time and actor travel in [`Context`],
//! never read from a clock here.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Attachment, CaseOutcome, DomainError, Email, LineId, LineSpec, Offer, OrderId, OrgId,
    SubscriptionId, SupportRequestType,
};

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Actor {
    /// A signed-in user.
    User(Email),
    /// The scheduler (R2, R7, R11).
    System,
}

impl Actor {
    /// Parse `system` or an email.
    pub fn parse(raw: &str) -> Result<Actor, DomainError> {
        if raw.trim() == "system" {
            Ok(Actor::System)
        } else {
            Email::parse(raw).map(Actor::User)
        }
    }

    /// The user's email, if a user.
    pub fn email(&self) -> Option<&Email> {
        match self {
            Actor::User(email) => Some(email),
            Actor::System => None,
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::User(email) => email.fmt(f),
            Actor::System => f.write_str("system"),
        }
    }
}

impl TryFrom<String> for Actor {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Actor::parse(&value)
    }
}

impl From<Actor> for String {
    fn from(value: Actor) -> Self {
        value.to_string()
    }
}

/// Who acts and when: everything `decide` needs from the outside world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The acting user.
    pub actor: Actor,
    /// The business time of the command.
    pub at: DateTime<Utc>,
}

impl Context {
    /// A context for `actor` at `at`.
    pub fn new(actor: Actor, at: DateTime<Utc>) -> Self {
        Context { actor, at }
    }
}

/// A command against one order stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// R1: place an order.
    PlaceOrder(ValidOrder),
    /// R4: change a line's provisioning contact (optionally every line).
    ChangeContact {
        /// Line.
        line_id: LineId,
        /// New contact.
        new_email: Email,
        /// Cascade to every line of the order.
        apply_to_all_lines: bool,
    },
    /// R3: resend the provisioning email of a line.
    ResendEmail {
        /// Line.
        line_id: LineId,
    },
    /// R5: map the order to an organisation (PONR).
    OnboardOrg {
        /// The organisation.
        org_id: OrgId,
    },
    /// R10: open a support case.
    OpenSupportCase {
        /// Line.
        line_id: LineId,
        /// Request type.
        request_type: SupportRequestType,
        /// Free text.
        note: Option<String>,
        /// Attached files (identity only).
        attachments: Vec<Attachment>,
    },
    /// R10: support resolves a case.
    ResolveSupportCase {
        /// The case, `<order>-C<n>`.
        case_id: String,
        /// What support did.
        outcome: CaseOutcome,
        /// Free text.
        note: Option<String>,
    },
    /// R13: the setup wizard was opened (stops the R11 escalation).
    StartSetup,
}

/// The order a support case id belongs to: `WO-1001-C2` → `WO-1001`.
pub fn case_order_id(case_id: &str) -> Result<OrderId, DomainError> {
    let fail = || {
        DomainError::InvalidField {
        field: "case".into(),
        reason: format!(
            "{case_id:?} is not a support case id; case ids look like WO-1001-C1 (see `provledger transactions --type support_case`)"
        ),
    }
    };
    let (order, number) = case_id.trim().rsplit_once("-C").ok_or_else(fail)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail());
    }
    OrderId::parse(order).map_err(|_| fail())
}

impl Command {
    /// Short name for messages and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::PlaceOrder(_) => "place order",
            Command::ChangeContact { .. } => "change contact",
            Command::ResendEmail { .. } => "resend email",
            Command::OnboardOrg { .. } => "onboard org",
            Command::OpenSupportCase { .. } => "open support case",
            Command::ResolveSupportCase { .. } => "resolve support case",
            Command::StartSetup => "start setup",
        }
    }
}

/// A validated order, ready to be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidOrder {
    /// Order id.
    pub order_id: OrderId,
    /// Who places it.
    pub ordering_contact: Email,
    /// Partner name.
    pub partner: String,
    /// End customer name.
    pub end_customer: String,
    /// Partner users with access.
    pub partner_contacts: Vec<Email>,
    /// Distributor users with access.
    pub distributor_contacts: Vec<Email>,
    /// Lines.
    pub lines: Vec<LineSpec>,
}

/// The order file as written by a person (DESIGN.md §3), before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// Order id.
    pub order_id: String,
    /// Who places it.
    pub ordering_contact: String,
    /// Partner name.
    #[serde(default)]
    pub partner: String,
    /// End customer name.
    #[serde(default)]
    pub end_customer: String,
    /// Partner users with access.
    #[serde(default)]
    pub partner_contacts: Vec<String>,
    /// Distributor users with access.
    #[serde(default)]
    pub distributor_contacts: Vec<String>,
    /// Lines.
    #[serde(default)]
    pub lines: Vec<LineRequest>,
}

/// One line of the order file, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// Line id.
    pub line_id: String,
    /// Subscription id.
    pub subscription_id: String,
    /// Offer name.
    pub offer: String,
    /// Requested start date, `YYYY-MM-DD`.
    pub rsd: String,
    /// Provisioning contact email.
    pub provisioning_contact: String,
}

fn in_field<T>(field: &str, result: Result<T, DomainError>) -> Result<T, DomainError> {
    result.map_err(|e| DomainError::InvalidField {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

fn name_field(field: &str, raw: &str) -> Result<String, DomainError> {
    let value = raw.trim();
    if value.chars().count() > 200 || value.chars().any(crate::is_spoofing_char) {
        return Err(DomainError::InvalidField {
            field: field.into(),
            reason: "must be at most 200 characters with no control, bidirectional-override or invisible characters".into(),
        });
    }
    Ok(value.to_string())
}

/// A date written exactly `YYYY-MM-DD`. chrono's `%Y` also takes signed and
/// longer years (`+262142-12-31`), whose schedule (R2, R7, R11) would fall
/// outside the representable time range; those are refused here.
fn parse_rsd(raw: &str) -> Option<NaiveDate> {
    let value = raw.trim();
    let shape_ok = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()
}

/// The earliest requested start date an order may give (DESIGN.md §2).
pub const RSD_MIN: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// The latest requested start date an order may give (DESIGN.md §2): far
/// enough for any real order, near enough that every schedule derived from
/// it (R2, R7, R11) stays a four-digit year.
pub const RSD_MAX: NaiveDate = match NaiveDate::from_ymd_opt(2100, 12, 31) {
    Some(d) => d,
    None => NaiveDate::MAX,
};

/// Check that a requested start date lies within [`RSD_MIN`]..=[`RSD_MAX`].
pub fn check_rsd(field: &str, rsd: NaiveDate) -> Result<NaiveDate, DomainError> {
    if (RSD_MIN..=RSD_MAX).contains(&rsd) {
        Ok(rsd)
    } else {
        Err(DomainError::InvalidField {
            field: field.to_string(),
            reason: format!(
                "{rsd} is outside the dates an order may ask for ({RSD_MIN} to {RSD_MAX}); give the real requested start date"
            ),
        })
    }
}

impl OrderRequest {
    /// R1: validate every field; the first bad one is named in the error.
    pub fn validate(&self) -> Result<ValidOrder, DomainError> {
        let order_id = in_field("order_id", OrderId::parse(&self.order_id))?;
        let ordering_contact = in_field("ordering_contact", Email::parse(&self.ordering_contact))?;
        let partner = name_field("partner", &self.partner)?;
        let end_customer = name_field("end_customer", &self.end_customer)?;
        let emails = |field: &str, raw: &[String]| -> Result<Vec<Email>, DomainError> {
            let mut out: Vec<Email> = Vec::new();
            for (i, e) in raw.iter().enumerate() {
                let email = in_field(&format!("{field}[{i}]"), Email::parse(e))?;
                if !out.contains(&email) {
                    out.push(email);
                }
            }
            Ok(out)
        };
        let partner_contacts = emails("partner_contacts", &self.partner_contacts)?;
        let distributor_contacts = emails("distributor_contacts", &self.distributor_contacts)?;
        if self.lines.is_empty() {
            return Err(DomainError::InvalidField {
                field: "lines".into(),
                reason: "an order needs at least one line".into(),
            });
        }
        if self.lines.len() > 500 {
            return Err(DomainError::InvalidField {
                field: "lines".into(),
                reason: "an order may have at most 500 lines".into(),
            });
        }
        let mut line_ids = HashSet::new();
        let mut subscription_ids = HashSet::new();
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, raw) in self.lines.iter().enumerate() {
            let f = |name: &str| format!("lines[{i}].{name}");
            let line_id = in_field(&f("line_id"), LineId::parse(&raw.line_id))?;
            let subscription_id = in_field(
                &f("subscription_id"),
                SubscriptionId::parse(&raw.subscription_id),
            )?;
            let offer = in_field(&f("offer"), Offer::parse(&raw.offer))?;
            let rsd = parse_rsd(&raw.rsd).ok_or_else(|| DomainError::InvalidField {
                field: f("rsd"),
                reason: format!("{:?} is not a date; write YYYY-MM-DD", raw.rsd),
            })?;
            let rsd = check_rsd(&f("rsd"), rsd)?;
            let provisioning_contact = in_field(
                &f("provisioning_contact"),
                Email::parse(&raw.provisioning_contact),
            )?;
            if !line_ids.insert(line_id.clone()) {
                return Err(DomainError::InvalidField {
                    field: f("line_id"),
                    reason: format!("line {line_id} appears twice in the order"),
                });
            }
            if !subscription_ids.insert(subscription_id.clone()) {
                return Err(DomainError::InvalidField {
                    field: f("subscription_id"),
                    reason: format!("subscription {subscription_id} appears twice in the order"),
                });
            }
            lines.push(LineSpec {
                line_id,
                subscription_id,
                offer,
                rsd,
                provisioning_contact,
            });
        }
        Ok(ValidOrder {
            order_id,
            ordering_contact,
            partner,
            end_customer,
            partner_contacts,
            distributor_contacts,
            lines,
        })
    }
}

impl From<Email> for Actor {
    fn from(email: Email) -> Self {
        Actor::User(email)
    }
}
