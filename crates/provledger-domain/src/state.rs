//! The state of one order, folded from its events by [`evolve`].
//!
//! This is the only place that says what an event *does* to an order. The
//! lines read model reuses it, so the CLI's `lines` view and the decider can
//! never disagree about a line's status.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    CaseOutcome, Email, Event, LineId, Offer, OrderId, OrgId, Subdomain, SubscriptionId, WhoSetsUp,
};

/// A line's status as shown in the ordering tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// Waiting for the provisioning contact to set up.
    AwaitingProvisioningDetails,
    /// R7: the policy window ran out; billing started, provisioning pending.
    Closed,
    /// R5: the order is onboarded to an organisation (PONR).
    Onboarded,
    /// R18: the subscription is activated.
    Provisioned,
}

impl LineStatus {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LineStatus::AwaitingProvisioningDetails => "awaiting_provisioning_details",
            LineStatus::Closed => "closed",
            LineStatus::Onboarded => "onboarded",
            LineStatus::Provisioned => "provisioned",
        }
    }

    /// The label shown in the ordering tool.
    pub fn label(self) -> &'static str {
        match self {
            LineStatus::AwaitingProvisioningDetails => "Awaiting Provisioning Details",
            LineStatus::Closed => "Closed",
            LineStatus::Onboarded => "Onboarded",
            LineStatus::Provisioned => "Provisioned",
        }
    }
}

/// One subscription line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Line id.
    pub line_id: LineId,
    /// Subscription id.
    pub subscription_id: SubscriptionId,
    /// Offer.
    pub offer: Offer,
    /// Requested start date.
    pub rsd: NaiveDate,
    /// Current provisioning contact.
    pub provisioning_contact: Email,
    /// Status.
    pub status: LineStatus,
    /// When the initial provisioning email went out (R2).
    pub initial_email_sent_at: Option<DateTime<Utc>>,
    /// When the line closes / closed (R7).
    pub closes_at: Option<DateTime<Utc>>,
    /// Whether billing has started (R7 closure or R18 provisioning).
    pub billing_started: bool,
    /// When the R11 escalation was raised.
    pub escalated_at: Option<DateTime<Utc>>,
    /// How many times the provisioning email was resent.
    pub resend_count: u32,
}

impl Line {
    /// R8: provisioning is still pending until the line is provisioned.
    pub fn provisioning_pending(&self) -> bool {
        self.status != LineStatus::Provisioned
    }
}

/// An order as folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub order_id: OrderId,
    /// Who placed it.
    pub ordering_contact: Email,
    /// Partner name.
    pub partner: String,
    /// End customer name.
    pub end_customer: String,
    /// Partner users with access.
    pub partner_contacts: Vec<Email>,
    /// Distributor users with access.
    pub distributor_contacts: Vec<Email>,
    /// Lines, in order-file order.
    pub lines: Vec<Line>,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// R5: the organisation, once onboarded (PONR).
    pub org_id: Option<OrgId>,
    /// When it was onboarded.
    pub onboarded_at: Option<DateTime<Utc>>,
    /// R13: when setup was first started.
    pub setup_started_at: Option<DateTime<Utc>>,
    /// Support cases opened so far.
    pub support_cases: u32,
    /// R10: each support case and, once resolved, its outcome.
    #[serde(default)]
    pub cases: Vec<SupportCase>,
    /// R14: the people the setup was handed to ("someone else in my company").
    #[serde(default)]
    pub delegates: Vec<Email>,
    /// R13–R17: the completed setup wizard.
    #[serde(default)]
    pub setup: Option<SetupRecord>,
    /// R18: the latest saved service settings.
    #[serde(default)]
    pub services: Option<ServicesRecord>,
    /// R18: when the order was provisioned and billing started.
    #[serde(default)]
    pub provisioned_at: Option<DateTime<Utc>>,
}

/// A support case of the order (R10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportCase {
    /// Case id, `<order>-C<n>`.
    pub case_id: String,
    /// The line it was opened for.
    pub line_id: LineId,
    /// What support did, once resolved; `None` while pending.
    pub outcome: Option<CaseOutcome>,
}

/// What the completed setup wizard decided (R14–R17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupRecord {
    /// When it was completed.
    pub completed_at: DateTime<Utc>,
    /// Who completed it.
    pub completed_by: Email,
    /// R14: who sets up the services (`Me` or `Customer`).
    pub who_sets_up: WhoSetsUp,
    /// R15: the partner organisation.
    pub partner_org_id: OrgId,
    /// The customer organisation the order is onboarded to.
    pub customer_org_id: OrgId,
    /// R16: the customer administrator named in the wizard.
    pub customer_admin_email: Email,
}

/// The latest service settings saved for the order (R18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesRecord {
    /// When they were saved.
    pub configured_at: DateTime<Utc>,
    /// The subdomain given, if any.
    pub subdomain: Option<Subdomain>,
}

impl Order {
    /// The line with this id.
    pub fn line(&self, line_id: &LineId) -> Option<&Line> {
        self.lines.iter().find(|l| &l.line_id == line_id)
    }

    fn line_mut(&mut self, line_id: &LineId) -> Option<&mut Line> {
        self.lines.iter_mut().find(|l| &l.line_id == line_id)
    }

    /// R5: the Point of No Return has been passed.
    pub fn past_ponr(&self) -> bool {
        self.org_id.is_some()
    }

    /// R6: users with access are the ordering contact and the partner and
    /// distributor contacts listed on the order.
    /// Emails are compared case-insensitively (DESIGN.md §2).
    pub fn has_access(&self, user: &Email) -> bool {
        crate::access::named_on(self, user)
    }

    /// Whether `user` is the provisioning contact of any line.
    pub fn is_provisioning_contact(&self, user: &Email) -> bool {
        self.lines.iter().any(|l| &l.provisioning_contact == user)
    }

    /// R13/R14: who may open and complete the setup wizard: users with
    /// access (R6), the lines' provisioning contacts (who got the "Set up
    /// now" link), and anyone the setup was handed to.
    pub fn may_set_up(&self, user: &Email) -> bool {
        self.has_access(user)
            || self.is_provisioning_contact(user)
            || self.delegates.iter().any(|d| d.same_user(user))
    }
}

/// The state of one order stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OrderState {
    /// `None` until the order is placed.
    pub order: Option<Order>,
    /// Business time of the latest event; commands may not be dated earlier.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Events folded so far (equals the stream version).
    pub version: u64,
}

impl OrderState {
    /// Fold a whole stream from scratch.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> OrderState {
        events.into_iter().fold(OrderState::default(), evolve)
    }
}

/// Apply one event to the state. Pure and total: an event that does not fit
/// (which the decider never produces) leaves the state unchanged apart from
/// the version and time.
pub fn evolve(mut state: OrderState, event: &Event) -> OrderState {
    state.version += 1;
    let at = event.at();
    state.last_event_at = Some(state.last_event_at.map_or(at, |t| t.max(at)));
    if let Event::OrderPlaced {
        at,
        order_id,
        ordering_contact,
        partner,
        end_customer,
        partner_contacts,
        distributor_contacts,
        lines,
    } = event
    {
        if state.order.is_none() {
            state.order = Some(Order {
                order_id: order_id.clone(),
                ordering_contact: ordering_contact.clone(),
                partner: partner.clone(),
                end_customer: end_customer.clone(),
                partner_contacts: partner_contacts.clone(),
                distributor_contacts: distributor_contacts.clone(),
                // A line id seen twice (never decided, only hand-made) keeps
                // its first line, so every line id names exactly one line.
                lines: lines
                    .iter()
                    .enumerate()
                    .filter(|(i, spec)| !lines[..*i].iter().any(|s| s.line_id == spec.line_id))
                    .map(|(_, spec)| Line {
                        line_id: spec.line_id.clone(),
                        subscription_id: spec.subscription_id.clone(),
                        offer: spec.offer.clone(),
                        rsd: spec.rsd,
                        provisioning_contact: spec.provisioning_contact.clone(),
                        status: LineStatus::AwaitingProvisioningDetails,
                        initial_email_sent_at: None,
                        closes_at: None,
                        billing_started: false,
                        escalated_at: None,
                        resend_count: 0,
                    })
                    .collect(),
                placed_at: *at,
                org_id: None,
                onboarded_at: None,
                setup_started_at: None,
                support_cases: 0,
                cases: Vec::new(),
                delegates: Vec::new(),
                setup: None,
                services: None,
                provisioned_at: None,
            });
        }
        return state;
    }
    let Some(order) = state.order.as_mut() else {
        return state;
    };
    match event {
        Event::OrderPlaced { .. } => {}
        Event::InitialEmailSent {
            at,
            line_id,
            closes_at,
            ..
        } => {
            if let Some(line) = order.line_mut(line_id) {
                line.initial_email_sent_at = Some(*at);
                line.closes_at = Some(*closes_at);
            }
        }
        Event::ProvisioningEmailResent { line_id, .. } => {
            if let Some(line) = order.line_mut(line_id) {
                line.resend_count += 1;
            }
        }
        Event::ProvisioningContactChanged {
            line_id, new_email, ..
        } => {
            if let Some(line) = order.line_mut(line_id) {
                line.provisioning_contact = new_email.clone();
            }
        }
        Event::OrgOnboarded { at, org_id } => {
            order.org_id = Some(org_id.clone());
            order.onboarded_at = Some(*at);
            for line in &mut order.lines {
                if line.status != LineStatus::Provisioned {
                    line.status = LineStatus::Onboarded;
                }
            }
        }
        Event::LineClosed {
            at,
            line_id,
            billing_started,
            ..
        } => {
            if let Some(line) = order.line_mut(line_id) {
                if line.status == LineStatus::AwaitingProvisioningDetails {
                    line.status = LineStatus::Closed;
                }
                line.closes_at = Some(*at);
                line.billing_started |= *billing_started;
            }
        }
        Event::EscalationRaised { at, line_id, .. } => {
            if let Some(line) = order.line_mut(line_id) {
                line.escalated_at = Some(*at);
            }
        }
        Event::SupportCaseOpened {
            case_id, line_id, ..
        } => {
            order.support_cases += 1;
            order.cases.push(SupportCase {
                case_id: case_id.clone(),
                line_id: line_id.clone(),
                outcome: None,
            });
        }
        Event::SupportCaseResolved {
            case_id, outcome, ..
        } => {
            if let Some(case) = order.cases.iter_mut().find(|c| &c.case_id == case_id) {
                case.outcome.get_or_insert(*outcome);
            }
        }
        Event::SetupStarted { at } => {
            order.setup_started_at.get_or_insert(*at);
        }
        Event::SetupHandedOver { at, to } => {
            order.setup_started_at.get_or_insert(*at);
            if !order.delegates.iter().any(|d| d.same_user(to)) {
                order.delegates.push(to.clone());
            }
        }
        Event::SetupCompleted {
            at,
            completed_by,
            who_sets_up,
            partner_org_id,
            customer_org_id,
            customer_admin_email,
            ..
        } => {
            order.setup_started_at.get_or_insert(*at);
            order.setup = Some(SetupRecord {
                completed_at: *at,
                completed_by: completed_by.clone(),
                who_sets_up: *who_sets_up,
                partner_org_id: partner_org_id.clone(),
                customer_org_id: customer_org_id.clone(),
                customer_admin_email: customer_admin_email.clone(),
            });
        }
        Event::ServicesConfigured { at, subdomain, .. } => {
            order.services = Some(ServicesRecord {
                configured_at: *at,
                subdomain: subdomain.clone(),
            });
        }
        Event::LineProvisioned {
            at,
            line_id,
            billing_started,
            ..
        } => {
            order.provisioned_at.get_or_insert(*at);
            if let Some(line) = order.line_mut(line_id) {
                line.status = LineStatus::Provisioned;
                line.billing_started |= *billing_started;
            }
        }
        Event::CommandRefused { .. } => {}
    }
    state
}
