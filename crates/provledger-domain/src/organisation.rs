//! Organisations as their own streams: customer and partner organisations
//! (Webex organisations in Control Hub), their administrators, who manages
//! them and their subdomain.
//!
//! An organisation outlives the order that created it: a later order for the
//! same customer reviews it (R15), adds administrators to it, or takes the
//! partner's access away (R14). So it cannot live in an order stream; each
//! has its own stream `org-<org_id>`, written only together with an order
//! stream in one atomic append (see [`crate::decide_setup`]). This module
//! says what those events are and what they do ([`evolve_org`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{decode_stored, payload_of};
use crate::{DomainError, Email, OrderId, OrgId, Subdomain, SCHEMA_VERSION};

/// Prefix of every organisation stream id.
pub const ORG_STREAM_PREFIX: &str = "org-";

impl OrgId {
    /// The event stream holding this organisation: `org-<id>`.
    pub fn stream_id(&self) -> String {
        format!("{ORG_STREAM_PREFIX}{}", self.as_str())
    }

    /// The organisation id of an organisation stream id, if it is one.
    pub fn from_stream_id(stream_id: &str) -> Option<OrgId> {
        stream_id
            .strip_prefix(ORG_STREAM_PREFIX)
            .and_then(|id| OrgId::parse(id).ok())
    }

    /// **(decided)** The id of the customer organisation a setup creates for
    /// `order_id`: `ORG-<order_id>`, so tests and snapshots are stable.
    pub fn new_customer_org(order_id: &OrderId) -> Result<OrgId, DomainError> {
        derived(order_id, "ORG-", "customer_organisation")
    }

    /// **(decided)** The id of the partner organisation a setup creates for
    /// `order_id`: `PORG-<order_id>`.
    pub fn new_partner_org(order_id: &OrderId) -> Result<OrgId, DomainError> {
        derived(order_id, "PORG-", "partner_organisation")
    }
}

fn derived(order_id: &OrderId, prefix: &str, field: &str) -> Result<OrgId, DomainError> {
    OrgId::parse(&format!("{prefix}{order_id}")).map_err(|_| DomainError::InvalidField {
        field: field.to_string(),
        reason: format!(
            "the new organisation's id {prefix}{order_id} would be longer than 64 characters; choose an existing organisation"
        ),
    })
}

/// Whether an organisation is a customer's or a partner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// A partner (reseller) organisation (R15).
    Partner,
    /// A customer organisation: the one an order is onboarded to.
    Customer,
}

impl OrgKind {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Partner => "partner",
            OrgKind::Customer => "customer",
        }
    }
}

/// An event of an organisation stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OrgEvent {
    /// R15/R17: an organisation was created as part of an order's setup.
    OrganisationCreated {
        /// When.
        at: DateTime<Utc>,
        /// The organisation.
        org_id: OrgId,
        /// Partner or customer.
        kind: OrgKind,
        /// Its name.
        name: String,
        /// The order whose setup created it.
        order_id: OrderId,
        /// Its first administrators (R16: each reserved to it).
        administrators: Vec<Email>,
        /// For a customer organisation: the partner organisation managing it,
        /// or null when the customer sets up alone (R14).
        managing_partner: Option<OrgId>,
    },
    /// R16: a user was made an administrator of the organisation.
    AdministratorAdded {
        /// When.
        at: DateTime<Utc>,
        /// The administrator.
        email: Email,
        /// The order whose setup added them.
        order_id: OrderId,
    },
    /// R14: the customer chose to set up; the partner organisation no longer
    /// manages this customer organisation.
    PartnerAccessRemoved {
        /// When.
        at: DateTime<Utc>,
        /// The partner organisation that lost access.
        partner_org_id: OrgId,
        /// The order whose setup chose the customer.
        order_id: OrderId,
    },
    /// R18: the organisation's enterprise subdomain was saved.
    SubdomainAssigned {
        /// When.
        at: DateTime<Utc>,
        /// The subdomain (reserved to this organisation).
        subdomain: Subdomain,
        /// The order whose service setup saved it.
        order_id: OrderId,
    },
}

/// The type names of every organisation event, in catalogue order.
pub const ORG_EVENT_TYPES: &[&str] = &[
    "OrganisationCreated",
    "AdministratorAdded",
    "PartnerAccessRemoved",
    "SubdomainAssigned",
];

impl OrgEvent {
    /// The event's type name, as stored.
    pub fn event_type(&self) -> &'static str {
        match self {
            OrgEvent::OrganisationCreated { .. } => "OrganisationCreated",
            OrgEvent::AdministratorAdded { .. } => "AdministratorAdded",
            OrgEvent::PartnerAccessRemoved { .. } => "PartnerAccessRemoved",
            OrgEvent::SubdomainAssigned { .. } => "SubdomainAssigned",
        }
    }

    /// The schema version this build writes for the event's type.
    pub fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// Business time of the event.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            OrgEvent::OrganisationCreated { at, .. }
            | OrgEvent::AdministratorAdded { at, .. }
            | OrgEvent::PartnerAccessRemoved { at, .. }
            | OrgEvent::SubdomainAssigned { at, .. } => *at,
        }
    }

    /// The JSON payload as stored: the event's fields without the type tag.
    pub fn to_payload(&self) -> serde_json::Value {
        payload_of(self)
    }

    /// Decode a stored organisation event (docs/events.md §9).
    pub fn from_stored(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<OrgEvent, crate::DecodeError> {
        decode_stored(ORG_EVENT_TYPES, event_type, schema_version, payload)
    }
}

/// An organisation as folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organisation {
    /// Its id.
    pub org_id: OrgId,
    /// Partner or customer.
    pub kind: OrgKind,
    /// Its name.
    pub name: String,
    /// Its administrators, in the order they were added.
    pub administrators: Vec<Email>,
    /// Customer organisations: the partner organisation managing it (R14).
    pub managing_partner: Option<OrgId>,
    /// R18: its enterprise subdomain, once saved.
    pub subdomain: Option<Subdomain>,
    /// The order whose setup created it.
    pub created_for: OrderId,
}

impl Organisation {
    /// Whether `user` administers this organisation (R16 identity).
    pub fn is_admin(&self, user: &Email) -> bool {
        self.administrators.iter().any(|a| a.same_user(user))
    }

    /// R15 recognition by name: the names match, ignoring case and
    /// surrounding spaces (an empty name matches nothing).
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.trim();
        !name.is_empty() && self.name.trim().to_lowercase() == name.to_lowercase()
    }
}

/// The state of one organisation stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OrgState {
    /// `None` until the organisation is created.
    pub org: Option<Organisation>,
    /// Business time of the latest event.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Events folded so far (equals the stream version).
    pub version: u64,
}

impl OrgState {
    /// Fold a whole stream from scratch.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a OrgEvent>) -> OrgState {
        events.into_iter().fold(OrgState::default(), evolve_org)
    }
}

/// Apply one event to an organisation. Pure and total, like
/// [`crate::evolve`]: an event that does not fit leaves the organisation as
/// it was apart from the version and time.
pub fn evolve_org(mut state: OrgState, event: &OrgEvent) -> OrgState {
    state.version += 1;
    let at = event.at();
    state.last_event_at = Some(state.last_event_at.map_or(at, |t| t.max(at)));
    match (event, state.org.as_mut()) {
        (
            OrgEvent::OrganisationCreated {
                org_id,
                kind,
                name,
                order_id,
                administrators,
                managing_partner,
                ..
            },
            None,
        ) => {
            let mut admins: Vec<Email> = Vec::new();
            for a in administrators {
                if !admins.iter().any(|x| x.same_user(a)) {
                    admins.push(a.clone());
                }
            }
            state.org = Some(Organisation {
                org_id: org_id.clone(),
                kind: *kind,
                name: name.clone(),
                administrators: admins,
                managing_partner: managing_partner.clone(),
                subdomain: None,
                created_for: order_id.clone(),
            });
        }
        (OrgEvent::AdministratorAdded { email, .. }, Some(org)) if !org.is_admin(email) => {
            org.administrators.push(email.clone());
        }
        (OrgEvent::PartnerAccessRemoved { partner_org_id, .. }, Some(org))
            if org.managing_partner.as_ref() == Some(partner_org_id) =>
        {
            org.managing_partner = None;
        }
        (OrgEvent::SubdomainAssigned { subdomain, .. }, Some(org)) => {
            org.subdomain.get_or_insert_with(|| subdomain.clone());
        }
        _ => {}
    }
    state
}
