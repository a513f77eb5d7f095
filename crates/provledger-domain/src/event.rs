//! The events of an order stream: the ledger's facts.
//!
//! Each variant is one documented, versioned JSON shape (docs/events.md); the
//! store keeps the type name and schema version beside the payload, so the
//! payload itself carries no `type` field. Every event carries `at`, its
//! business time, which the application also records as the store's
//! `occurred_at`. Events are never changed once written: a new shape gets a
//! new schema version and an upcaster in [`Event::from_stored`].

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    CallingSettings, DecodeError, DomainError, Email, LineId, MeetingSettings, Offer, OrderId,
    OrgId, Subdomain, SubscriptionId, WhoSetsUp,
};

/// Sender of every provisioning email (R2).
pub const PROVISIONING_SENDER: &str = "webex_comm@webex.com";

/// Current schema version of every event type.
pub const SCHEMA_VERSION: u32 = 1;

/// One line as ordered (R1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineSpec {
    /// Line id within the order.
    pub line_id: LineId,
    /// Subscription id of the line.
    pub subscription_id: SubscriptionId,
    /// The offer.
    pub offer: Offer,
    /// Requested start date.
    pub rsd: NaiveDate,
    /// Who receives the provisioning email (may be an alias).
    pub provisioning_contact: Email,
}

/// Which support request a case is (R10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportRequestType {
    /// "Resend Provisioning Email".
    ResendProvisioningEmail,
    /// "Change Provisioning Contact Email".
    ChangeProvisioningContactEmail,
}

impl SupportRequestType {
    /// Parse the CLI spelling (`resend-provisioning-email`, …; `_` also accepted).
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match raw.trim().replace('_', "-").as_str() {
            "resend-provisioning-email" => Ok(Self::ResendProvisioningEmail),
            "change-provisioning-contact-email" => Ok(Self::ChangeProvisioningContactEmail),
            _ => Err(DomainError::InvalidField {
                field: "type".into(),
                reason: format!(
                    "{raw:?} is not a support request type; use resend-provisioning-email or change-provisioning-contact-email"
                ),
            }),
        }
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Self::ResendProvisioningEmail => "Resend Provisioning Email",
            Self::ChangeProvisioningContactEmail => "Change Provisioning Contact Email",
        }
    }
}

/// A file attached to a support case: the ledger records its identity, not its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name as given.
    pub file_name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// How a support case ended (R10): what support did about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseOutcome {
    /// Support resent the provisioning email.
    Resent,
    /// Support changed the provisioning contact.
    ContactChanged,
    /// Support rejected the request.
    Rejected,
}

impl CaseOutcome {
    /// Parse the CLI spelling (`resent`, `contact-changed`, `rejected`; `_` also accepted).
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match raw.trim().replace('_', "-").as_str() {
            "resent" => Ok(Self::Resent),
            "contact-changed" => Ok(Self::ContactChanged),
            "rejected" => Ok(Self::Rejected),
            _ => Err(DomainError::InvalidField {
                field: "outcome".into(),
                reason: format!(
                    "{raw:?} is not a case outcome; use resent, contact-changed or rejected"
                ),
            }),
        }
    }

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resent => "resent",
            Self::ContactChanged => "contact_changed",
            Self::Rejected => "rejected",
        }
    }

    /// Whether the case ended with what was asked for done.
    pub fn is_success(self) -> bool {
        !matches!(self, Self::Rejected)
    }
}

/// The action a refusal refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedAction {
    /// Change of provisioning contact (R4).
    ChangeContact,
    /// Resend of the provisioning email (R3).
    ResendEmail,
    /// Organisation onboarding (R5).
    OnboardOrg,
    /// Opening a support case (R10).
    OpenSupportCase,
    /// Resolving a support case (R10).
    ResolveSupportCase,
    /// Starting the setup wizard (R13).
    StartSetup,
    /// Completing the setup wizard, or handing it over (R13–R17).
    CompleteSetup,
    /// The service setup wizard's settings (R18).
    ConfigureServices,
    /// "Provision and start billing" (R18).
    Provision,
}

/// Why an action was refused; stable codes for scripts and the Transaction Manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// R6: the actor is not the ordering contact nor a partner/distributor contact.
    NoAccess,
    /// R5: the order is onboarded (Point of No Return).
    AfterPonr,
    /// R3: the initial provisioning email has not gone out yet.
    InitialEmailNotSent,
    /// R5: the order is already onboarded to an organisation.
    AlreadyOnboarded,
    /// R16: the email already belongs to another organisation.
    EmailTaken,
    /// R18: the subdomain is reserved by another organisation.
    SubdomainTaken,
    /// R18 (decided): the organisation already has another subdomain.
    SubdomainAlreadySet,
    /// R15: the existing organisation chosen is not recognised.
    OrgNotRecognised,
    /// R14: the customer sets up the services, so partners have no access to
    /// manage the customer organisation.
    PartnerNoAccess,
    /// R18: service setup and provisioning need the order onboarded (PONR).
    NotOnboarded,
    /// R18 (decided): the order was onboarded without the setup wizard.
    SetupNotCompleted,
    /// R18 (decided): provisioning needs the services set up first.
    ServicesNotSetUp,
    /// R18: the order is already provisioned.
    AlreadyProvisioned,
}

impl RefusalCode {
    /// Stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::NoAccess => "no_access",
            RefusalCode::AfterPonr => "after_ponr",
            RefusalCode::InitialEmailNotSent => "initial_email_not_sent",
            RefusalCode::AlreadyOnboarded => "already_onboarded",
            RefusalCode::EmailTaken => "email_taken",
            RefusalCode::SubdomainTaken => "subdomain_taken",
            RefusalCode::SubdomainAlreadySet => "subdomain_already_set",
            RefusalCode::OrgNotRecognised => "org_not_recognised",
            RefusalCode::PartnerNoAccess => "partner_no_access",
            RefusalCode::NotOnboarded => "not_onboarded",
            RefusalCode::SetupNotCompleted => "setup_not_completed",
            RefusalCode::ServicesNotSetUp => "services_not_set_up",
            RefusalCode::AlreadyProvisioned => "already_provisioned",
        }
    }
}

/// An event of an order stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// R1: an order was placed.
    OrderPlaced {
        /// When.
        at: DateTime<Utc>,
        /// The order.
        order_id: OrderId,
        /// Who placed it.
        ordering_contact: Email,
        /// The partner (reseller).
        partner: String,
        /// The end customer.
        end_customer: String,
        /// Partner users with access (R6).
        partner_contacts: Vec<Email>,
        /// Distributor users with access (R6).
        distributor_contacts: Vec<Email>,
        /// The lines.
        lines: Vec<LineSpec>,
    },
    /// R2: the initial provisioning email went out on the RSD; the R7 window starts.
    InitialEmailSent {
        /// When (the RSD's start, or the order's placement if later).
        at: DateTime<Utc>,
        /// Line.
        line_id: LineId,
        /// Recipient.
        to: Email,
        /// Sender, always [`PROVISIONING_SENDER`].
        sender: String,
        /// R7: when the line closes if not provisioned by then.
        closes_at: DateTime<Utc>,
    },
    /// R3: the provisioning email was resent.
    ProvisioningEmailResent {
        /// When.
        at: DateTime<Utc>,
        /// Line.
        line_id: LineId,
        /// Recipient.
        to: Email,
        /// Sender, always [`PROVISIONING_SENDER`].
        sender: String,
    },
    /// R4: a line's provisioning contact changed.
    ProvisioningContactChanged {
        /// When.
        at: DateTime<Utc>,
        /// Line.
        line_id: LineId,
        /// Previous contact.
        old_email: Email,
        /// New contact.
        new_email: Email,
        /// Whether the user chose *apply to all lines*.
        applied_to_all_lines: bool,
        /// Whether the provisioning email was sent to the new contact
        /// (true when the initial email had already gone out).
        email_sent: bool,
    },
    /// R5: the order's organisation is onboarded: the Point of No Return.
    OrgOnboarded {
        /// When.
        at: DateTime<Utc>,
        /// The organisation the order is mapped to.
        org_id: OrgId,
    },
    /// R7: the policy window ran out; the line closes, billing starts,
    /// provisioning stays pending (R8).
    LineClosed {
        /// When (the end of the window).
        at: DateTime<Utc>,
        /// Line.
        line_id: LineId,
        /// The window that ran out, in days.
        policy_days: i64,
        /// Always true: billing starts on closure.
        billing_started: bool,
    },
    /// R11: setup had not started a day after the RSD; the account
    /// representative is asked to contact the partner.
    EscalationRaised {
        /// When (one day after the RSD).
        at: DateTime<Utc>,
        /// Line.
        line_id: LineId,
        /// Human-readable reason.
        reason: String,
    },
    /// R10: a support case was opened.
    SupportCaseOpened {
        /// When.
        at: DateTime<Utc>,
        /// Case id, `<order>-C<n>`.
        case_id: String,
        /// Line.
        line_id: LineId,
        /// Request type.
        request_type: SupportRequestType,
        /// Free text.
        note: Option<String>,
        /// Attached files.
        attachments: Vec<Attachment>,
    },
    /// R10: support resolved a case.
    SupportCaseResolved {
        /// When.
        at: DateTime<Utc>,
        /// The case, `<order>-C<n>`.
        case_id: String,
        /// The line the case was opened for.
        line_id: LineId,
        /// What support did.
        outcome: CaseOutcome,
        /// Free text.
        note: Option<String>,
    },
    /// R13: the setup wizard was started from the "Set up now" link.
    SetupStarted {
        /// When.
        at: DateTime<Utc>,
    },
    /// R14: "someone else in my company" sets up: the setup is handed to
    /// another email, which may then complete it.
    SetupHandedOver {
        /// When.
        at: DateTime<Utc>,
        /// Who takes the setup over.
        to: Email,
    },
    /// R13–R17: the setup wizard was completed: organisations chosen or
    /// created, the customer administrator named, customer and partner
    /// information confirmed. Followed in the same transaction by
    /// [`Event::OrgOnboarded`], the Point of No Return.
    SetupCompleted {
        /// When.
        at: DateTime<Utc>,
        /// Who completed the wizard.
        completed_by: Email,
        /// R14: who sets up the services (`me` or `customer`).
        who_sets_up: WhoSetsUp,
        /// R15: the partner organisation.
        partner_org_id: OrgId,
        /// R15: whether the partner organisation was created by this setup.
        partner_org_created: bool,
        /// The customer organisation the order is onboarded to.
        customer_org_id: OrgId,
        /// Whether the customer organisation was created by this setup.
        customer_org_created: bool,
        /// R16: the customer administrator.
        customer_admin_email: Email,
    },
    /// R18: the service setup wizard's settings were saved.
    ServicesConfigured {
        /// When.
        at: DateTime<Utc>,
        /// The customer organisation.
        org_id: OrgId,
        /// Calling settings, if set up.
        calling: Option<CallingSettings>,
        /// Meeting settings, if set up.
        meeting: Option<MeetingSettings>,
        /// Enterprise settings: the organisation's subdomain, if set up.
        subdomain: Option<Subdomain>,
    },
    /// R18: "Provision and start billing": the line's subscription is
    /// activated in the organisation and billing starts.
    LineProvisioned {
        /// When.
        at: DateTime<Utc>,
        /// Line.
        line_id: LineId,
        /// The organisation the subscription is activated in.
        org_id: OrgId,
        /// Always true: billing starts on provisioning.
        billing_started: bool,
    },
    /// R12: an action was refused by a rule; nothing else changed.
    CommandRefused {
        /// When.
        at: DateTime<Utc>,
        /// What was attempted.
        action: RefusedAction,
        /// The line, for line actions.
        line_id: Option<LineId>,
        /// Stable reason code.
        code: RefusalCode,
        /// The message shown to the user: what was wrong and what to do.
        reason: String,
        /// For a refused contact change: the email that was asked for.
        requested_email: Option<Email>,
        /// For a refused contact change: whether *apply to all lines* was chosen.
        applied_to_all_lines: bool,
    },
}

/// The type names of every event, in catalogue order.
pub const EVENT_TYPES: &[&str] = &[
    "OrderPlaced",
    "InitialEmailSent",
    "ProvisioningEmailResent",
    "ProvisioningContactChanged",
    "OrgOnboarded",
    "LineClosed",
    "EscalationRaised",
    "SupportCaseOpened",
    "SupportCaseResolved",
    "SetupStarted",
    "SetupHandedOver",
    "SetupCompleted",
    "ServicesConfigured",
    "LineProvisioned",
    "CommandRefused",
];

impl Event {
    /// The event's type name, as stored.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::OrderPlaced { .. } => "OrderPlaced",
            Event::InitialEmailSent { .. } => "InitialEmailSent",
            Event::ProvisioningEmailResent { .. } => "ProvisioningEmailResent",
            Event::ProvisioningContactChanged { .. } => "ProvisioningContactChanged",
            Event::OrgOnboarded { .. } => "OrgOnboarded",
            Event::LineClosed { .. } => "LineClosed",
            Event::EscalationRaised { .. } => "EscalationRaised",
            Event::SupportCaseOpened { .. } => "SupportCaseOpened",
            Event::SupportCaseResolved { .. } => "SupportCaseResolved",
            Event::SetupStarted { .. } => "SetupStarted",
            Event::SetupHandedOver { .. } => "SetupHandedOver",
            Event::SetupCompleted { .. } => "SetupCompleted",
            Event::ServicesConfigured { .. } => "ServicesConfigured",
            Event::LineProvisioned { .. } => "LineProvisioned",
            Event::CommandRefused { .. } => "CommandRefused",
        }
    }

    /// The schema version this build writes for the event's type.
    pub fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// Business time of the event.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Event::OrderPlaced { at, .. }
            | Event::InitialEmailSent { at, .. }
            | Event::ProvisioningEmailResent { at, .. }
            | Event::ProvisioningContactChanged { at, .. }
            | Event::OrgOnboarded { at, .. }
            | Event::LineClosed { at, .. }
            | Event::EscalationRaised { at, .. }
            | Event::SupportCaseOpened { at, .. }
            | Event::SupportCaseResolved { at, .. }
            | Event::SetupStarted { at }
            | Event::SetupHandedOver { at, .. }
            | Event::SetupCompleted { at, .. }
            | Event::ServicesConfigured { at, .. }
            | Event::LineProvisioned { at, .. }
            | Event::CommandRefused { at, .. } => *at,
        }
    }

    /// The line the event is about, if it is about one line.
    pub fn line_id(&self) -> Option<&LineId> {
        match self {
            Event::InitialEmailSent { line_id, .. }
            | Event::ProvisioningEmailResent { line_id, .. }
            | Event::ProvisioningContactChanged { line_id, .. }
            | Event::LineClosed { line_id, .. }
            | Event::EscalationRaised { line_id, .. }
            | Event::SupportCaseOpened { line_id, .. }
            | Event::SupportCaseResolved { line_id, .. }
            | Event::LineProvisioned { line_id, .. } => Some(line_id),
            Event::CommandRefused { line_id, .. } => line_id.as_ref(),
            _ => None,
        }
    }

    /// True for a refusal (R12).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Event::CommandRefused { .. })
    }

    /// True for events the scheduler appends on its own (R2, R7, R11).
    pub fn is_scheduled(&self) -> bool {
        matches!(
            self,
            Event::InitialEmailSent { .. }
                | Event::LineClosed { .. }
                | Event::EscalationRaised { .. }
        )
    }

    /// The JSON payload as stored: the event's fields without the type tag.
    pub fn to_payload(&self) -> serde_json::Value {
        payload_of(self)
    }

    /// Decode a stored event, upcasting older schema versions.
    pub fn from_stored(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Event, DecodeError> {
        decode_stored(EVENT_TYPES, event_type, schema_version, payload)
    }

    /// [`Event::from_stored`] for a payload in its stored JSON text, parsed
    /// once (no intermediate JSON value). Accepts and refuses exactly what
    /// `from_stored` does with the parsed text.
    pub fn from_stored_json(
        event_type: &str,
        schema_version: u32,
        payload: &str,
    ) -> Result<Event, DecodeError> {
        decode_stored_json(EVENT_TYPES, event_type, schema_version, payload)
    }
}

/// The payload of a serde-tagged event enum: its fields without the tag.
pub(crate) fn payload_of<T: Serialize>(event: &T) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("type");
    }
    value
}

/// Decode a stored payload of one of `types` (the variants of a
/// `#[serde(tag = "type")]` enum), checking the type and schema version first.
/// Every stream's event enum (orders, organisations, reservations) reads its
/// events through this one function (or [`decode_stored_json`], its twin
/// for payloads still in their stored text), so they all follow
/// docs/events.md §9.
pub(crate) fn decode_stored<T: serde::de::DeserializeOwned>(
    types: &[&str],
    event_type: &str,
    schema_version: u32,
    payload: &serde_json::Value,
) -> Result<T, DecodeError> {
    check_stored(types, event_type, schema_version)?;
    let invalid = |reason: String| DecodeError::InvalidPayload {
        event_type: event_type.to_string(),
        reason,
    };
    let serde_json::Value::Object(map) = payload else {
        return Err(invalid(NOT_AN_OBJECT.into()));
    };
    if map.contains_key(TAG) {
        return Err(invalid(TAGGED.into()));
    }
    let mut object = map.clone();
    object.insert(TAG.into(), serde_json::Value::String(event_type.into()));
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| invalid(e.to_string()))
}

/// [`decode_stored`] for a payload in its stored JSON text: the text is
/// parsed once, straight into `T`, with no intermediate JSON value (the
/// read models decode every event of the log this way). It accepts and
/// refuses exactly what [`decode_stored`] does with the parsed text.
pub(crate) fn decode_stored_json<T: serde::de::DeserializeOwned>(
    types: &[&str],
    event_type: &str,
    schema_version: u32,
    payload: &str,
) -> Result<T, DecodeError> {
    check_stored(types, event_type, schema_version)?;
    let invalid = |reason: String| DecodeError::InvalidPayload {
        event_type: event_type.to_string(),
        reason,
    };
    // The tag goes in front of the object's members. `event_type` is one of
    // `types`, plain identifiers that need no escaping.
    let Some(members) = payload.trim_start().strip_prefix('{') else {
        return Err(invalid(NOT_AN_OBJECT.into()));
    };
    let separator = if members.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let tagged = format!("{{\"{TAG}\":\"{event_type}\"{separator}{members}");
    // A payload carrying its own tag fails here as a duplicate field.
    serde_json::from_str(&tagged).map_err(|e| invalid(e.to_string()))
}

/// The key naming the variant of a `#[serde(tag = "type")]` enum. A stored
/// payload never carries it: the type is the row's own column.
const TAG: &str = "type";
const NOT_AN_OBJECT: &str = "the payload is not a JSON object";
const TAGGED: &str = "the payload carries a `type` member; the event type is stored beside it";

/// The checks of a stored event's type and schema version.
fn check_stored(types: &[&str], event_type: &str, schema_version: u32) -> Result<(), DecodeError> {
    if !types.contains(&event_type) {
        return Err(DecodeError::UnknownEventType {
            event_type: event_type.to_string(),
        });
    }
    if schema_version == 0 || schema_version > SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedSchemaVersion {
            event_type: event_type.to_string(),
            schema_version,
        });
    }
    Ok(())
}
