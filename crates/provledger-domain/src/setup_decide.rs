//! The multi-stream decider: the setup wizard (R13–R17), service setup and
//! "Provision and start billing" (R18).
//!
//! These commands read and write more than the order's stream: the
//! organisations they create or change and the reservations that keep emails
//! and subdomains unique. [`decide_setup`] is still pure: it takes a
//! [`SetupView`] — the order's state and the state (with version) of every
//! other stream it needs, as listed by [`setup_needs`] — and returns the
//! events per stream ([`SetupDecision`]). The shell appends them in one
//! atomic request, each stream at the version it was read at, and re-decides
//! on a conflict; a re-decision after losing a race for an email or
//! subdomain sees it taken and yields a recorded refusal (R12), written to
//! the order stream only.

use std::collections::BTreeMap;

use crate::{
    due_events, evolve, Actor, CallingSettings, Context, DomainError, Email, Event,
    MeetingSettings, Order, OrderState, OrgChoice, OrgEvent, OrgId, OrgKind, OrgState,
    Organisation, RefusalCode, RefusedAction, ReservationEvent, ReservationKey, ReservationState,
    SetupCommand, Subdomain, ValidServices, ValidSetup, WhoSetsUp, WizardAnswers,
};

/// Everything [`decide_setup`] may look at: the order and the other streams
/// [`setup_needs`] named, each folded with its version. A stream missing from
/// a map is taken to be empty (version 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupView {
    /// The order's stream.
    pub order: OrderState,
    /// Organisation streams, by id.
    pub orgs: BTreeMap<OrgId, OrgState>,
    /// Reservation streams, by key.
    pub reservations: BTreeMap<ReservationKey, ReservationState>,
}

impl SetupView {
    /// The state of an organisation stream (empty if not loaded).
    pub fn org(&self, org_id: &OrgId) -> OrgState {
        self.orgs.get(org_id).cloned().unwrap_or_default()
    }

    /// The state of a reservation stream (empty if not loaded).
    pub fn reservation(&self, key: &ReservationKey) -> ReservationState {
        self.reservations.get(key).cloned().unwrap_or_default()
    }
}

/// The streams besides the order's that a setup command needs loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupNeeds {
    /// Organisation streams.
    pub orgs: Vec<OrgId>,
    /// Reservation streams.
    pub reservations: Vec<ReservationKey>,
}

/// The events a setup command decided, per stream. Only the order stream
/// receives events when the command is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupDecision {
    /// Events for the order stream: due scheduled events first (as in
    /// [`crate::decide`]), then the command's own events or one refusal.
    pub order: Vec<Event>,
    /// Events per organisation stream, sorted by organisation id.
    pub orgs: Vec<(OrgId, Vec<OrgEvent>)>,
    /// Events per reservation stream, sorted by key.
    pub reservations: Vec<(ReservationKey, Vec<ReservationEvent>)>,
}

impl SetupDecision {
    /// True when the command was refused by a rule.
    pub fn is_refusal(&self) -> bool {
        self.order.last().is_some_and(Event::is_refusal)
    }
}

/// Which streams `command` by `actor` on the order in `order` needs besides
/// the order's own. Depends on the order's state (the organisations of a
/// completed setup), so the shell asks again on every attempt.
pub fn setup_needs(
    command: &SetupCommand,
    order: &OrderState,
    actor: &Actor,
) -> Result<SetupNeeds, DomainError> {
    let mut needs = SetupNeeds::default();
    match command {
        SetupCommand::Setup(ValidSetup::HandOver { .. }) => {}
        SetupCommand::Setup(ValidSetup::Complete { order_id, answers }) => {
            let partner = org_of(&answers.partner_org, || OrgId::new_partner_org(order_id))?;
            let customer = org_of(&answers.customer_org, || OrgId::new_customer_org(order_id))?;
            needs.orgs = vec![partner, customer];
            needs
                .reservations
                .push(ReservationKey::email(&answers.customer_admin_email));
            // A new partner organisation's administrator: as given, or the actor.
            if let OrgChoice::New { admin_email, .. } = &answers.partner_org {
                if let Some(admin) = admin_email.as_ref().or(actor.email()) {
                    needs.reservations.push(ReservationKey::email(admin));
                }
            }
        }
        SetupCommand::ConfigureServices(_) | SetupCommand::Provision => {
            if let Some(setup) = order.order.as_ref().and_then(|o| o.setup.as_ref()) {
                needs.orgs = vec![setup.partner_org_id.clone(), setup.customer_org_id.clone()];
            }
            if let SetupCommand::ConfigureServices(ValidServices {
                subdomain: Some(subdomain),
                ..
            }) = command
            {
                needs
                    .reservations
                    .push(ReservationKey::Subdomain(subdomain.clone()));
            }
        }
    }
    needs.orgs.sort();
    needs.orgs.dedup();
    needs.reservations.sort();
    needs.reservations.dedup();
    Ok(needs)
}

fn org_of(
    choice: &OrgChoice,
    new_id: impl FnOnce() -> Result<OrgId, DomainError>,
) -> Result<OrgId, DomainError> {
    match choice {
        OrgChoice::New { .. } => new_id(),
        OrgChoice::Existing(id) => Ok(id.clone()),
    }
}

/// Decide a setup command at `ctx.at` by `ctx.actor` against `view`.
///
/// Bad input (an unknown or wrong-kind organisation, a hand-over outside the
/// company, a time before a written stream's latest event) is an `Err` and
/// nothing may be written. A rule refusal (R5, R6, R14–R18) is a
/// `CommandRefused` on the order stream and nothing else.
pub fn decide_setup(
    view: &SetupView,
    command: SetupCommand,
    ctx: &Context,
) -> Result<SetupDecision, DomainError> {
    let state = &view.order;
    if let Some(latest) = state.last_event_at {
        if ctx.at < latest {
            return Err(DomainError::OutOfOrder { at: ctx.at, latest });
        }
    }
    let actor = match &ctx.actor {
        Actor::User(email) => email.clone(),
        Actor::System => {
            return Err(DomainError::UserRequired {
                command: command.name(),
            })
        }
    };
    if state.order.is_none() {
        return Err(DomainError::OrderNotPlaced);
    }
    let due = due_events(state, ctx.at);
    let caught_up = due.iter().fold(state.clone(), evolve);
    let order = caught_up
        .order
        .as_ref()
        .ok_or(DomainError::OrderNotPlaced)?;
    let d = Decider {
        view,
        order,
        actor: &actor,
        ctx,
    };
    let mut decision = match command {
        SetupCommand::Setup(setup) => d.setup(setup)?,
        SetupCommand::ConfigureServices(services) => d.services(services)?,
        SetupCommand::Provision => d.provision()?,
    };
    decision.order.splice(0..0, due);
    decision.orgs.sort_by(|a, b| a.0.cmp(&b.0));
    decision.reservations.sort_by(|a, b| a.0.cmp(&b.0));
    for (org_id, _) in &decision.orgs {
        in_time(&org_id.stream_id(), view.org(org_id).last_event_at, ctx)?;
    }
    for (key, _) in &decision.reservations {
        in_time(&key.stream_id(), view.reservation(key).last_event_at, ctx)?;
    }
    Ok(decision)
}

fn in_time(
    stream_id: &str,
    latest: Option<chrono::DateTime<chrono::Utc>>,
    ctx: &Context,
) -> Result<(), DomainError> {
    match latest {
        Some(latest) if ctx.at < latest => Err(DomainError::StreamOutOfOrder {
            stream_id: stream_id.to_string(),
            at: ctx.at,
            latest,
        }),
        _ => Ok(()),
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> DomainError {
    DomainError::InvalidField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// One decision in the making.
struct Decider<'a> {
    view: &'a SetupView,
    order: &'a Order,
    actor: &'a Email,
    ctx: &'a Context,
}

impl Decider<'_> {
    fn refuse(
        &self,
        action: RefusedAction,
        code: RefusalCode,
        reason: String,
        requested_email: Option<Email>,
    ) -> SetupDecision {
        SetupDecision {
            order: vec![Event::CommandRefused {
                at: self.ctx.at,
                action,
                line_id: None,
                code,
                reason,
                requested_email,
                applied_to_all_lines: false,
            }],
            ..SetupDecision::default()
        }
    }

    fn after_ponr_text(&self) -> String {
        format!(
            "The provisioning contact or an administrator can complete provisioning by signing in to admin.webex.com directly; the person who placed the order is {}",
            self.order.ordering_contact
        )
    }

    // -- the setup wizard (R13–R17) -----------------------------------------

    fn setup(&self, setup: ValidSetup) -> Result<SetupDecision, DomainError> {
        let order = self.order;
        let actor = self.actor;
        let action = RefusedAction::CompleteSetup;
        // R6 and R5 first: after them, what is wrong with the answers is bad
        // input (nothing written), and only then the wizard's own rules.
        if !order.may_set_up(actor) {
            return Ok(self.refuse(
                action,
                RefusalCode::NoAccess,
                format!(
                    "{actor} has no access to order {}: only the person who placed the order, the partner and distributor contacts listed on it, its provisioning contacts and anyone the setup was handed to can complete the setup. Contact the person who placed the order, {}, and ask them to do it",
                    order.order_id, order.ordering_contact
                ),
                None,
            ));
        }
        if let Some(org) = &order.org_id {
            return Ok(self.refuse(
                action,
                RefusalCode::AlreadyOnboarded,
                format!(
                    "order {} is already onboarded to organisation {org} (Point of No Return): its setup is complete and cannot be done again. {}",
                    order.order_id,
                    self.after_ponr_text()
                ),
                None,
            ));
        }
        match setup {
            ValidSetup::HandOver { to, .. } => {
                if to.same_user(actor) {
                    return Err(invalid(
                        "someone_else_email",
                        format!(
                            "{to} is your own address; choose who_sets_up me to set it up yourself"
                        ),
                    ));
                }
                if to.domain() != actor.domain() {
                    return Err(invalid(
                        "someone_else_email",
                        format!(
                            "{to} is not in your company: someone else in your company has an address at {} like yours (R14, decided)",
                            actor.domain()
                        ),
                    ));
                }
                Ok(SetupDecision {
                    order: vec![Event::SetupHandedOver {
                        at: self.ctx.at,
                        to,
                    }],
                    ..SetupDecision::default()
                })
            }
            ValidSetup::Complete { answers, .. } => {
                let plan = self.prepare_wizard(&answers)?;
                Ok(self.complete(answers, plan))
            }
        }
    }

    /// Resolve the wizard's organisations, checking everything that is bad
    /// input rather than a rule.
    fn prepare_wizard(&self, answers: &WizardAnswers) -> Result<Plan, DomainError> {
        let order = self.order;
        let partner = self.resolve(
            &answers.partner_org,
            OrgKind::Partner,
            "partner_organisation",
            || OrgId::new_partner_org(&order.order_id),
            &order.partner,
        )?;
        let customer = self.resolve(
            &answers.customer_org,
            OrgKind::Customer,
            "customer_organisation",
            || OrgId::new_customer_org(&order.order_id),
            &order.end_customer,
        )?;
        let partner_admin = match &answers.partner_org {
            OrgChoice::New { admin_email, .. } => {
                Some(admin_email.clone().unwrap_or_else(|| self.actor.clone()))
            }
            OrgChoice::Existing(_) => None,
        };
        if let Some(admin) = &partner_admin {
            if admin.same_user(&answers.customer_admin_email) {
                return Err(invalid(
                    "customer_admin_email",
                    format!("{admin} would administer the new partner organisation too; a user belongs to one organisation at a time (R16), so name another customer administrator or another partner administrator"),
                ));
            }
        }
        Ok(Plan {
            partner,
            customer,
            partner_admin,
        })
    }

    fn resolve(
        &self,
        choice: &OrgChoice,
        kind: OrgKind,
        field: &str,
        new_id: impl FnOnce() -> Result<OrgId, DomainError>,
        order_name: &str,
    ) -> Result<Resolved, DomainError> {
        match choice {
            OrgChoice::New { name, .. } => {
                let org_id = new_id()?;
                if self.view.org(&org_id).org.is_some() {
                    return Err(DomainError::OrganisationExists {
                        org_id: org_id.to_string(),
                    });
                }
                let name = match name {
                    Some(name) => name.clone(),
                    None if !order_name.trim().is_empty() => order_name.trim().to_string(),
                    None => {
                        return Err(invalid(
                            &format!("{field}.new.name"),
                            "the order names none; give the new organisation's name",
                        ))
                    }
                };
                Ok(Resolved::New { org_id, name })
            }
            OrgChoice::Existing(org_id) => {
                let Some(org) = self.view.org(org_id).org else {
                    return Err(DomainError::UnknownOrganisation {
                        org_id: org_id.to_string(),
                    });
                };
                if org.kind != kind {
                    return Err(DomainError::WrongOrganisationKind {
                        org_id: org_id.to_string(),
                        expected: kind.as_str(),
                        actual: org.kind.as_str(),
                    });
                }
                Ok(Resolved::Existing(org))
            }
        }
    }

    fn complete(&self, answers: WizardAnswers, plan: Plan) -> SetupDecision {
        let order = self.order;
        let actor = self.actor;
        let at = self.ctx.at;
        let action = RefusedAction::CompleteSetup;
        let cisco = "do not continue; contact your Cisco representative (R15)";
        // R15: an existing organisation must be recognised.
        if let Resolved::Existing(org) = &plan.partner {
            if !(org.is_named(&order.partner) || org.is_admin(actor)) {
                return self.refuse(
                    action,
                    RefusalCode::OrgNotRecognised,
                    format!(
                        "partner organisation {} ({}) is not recognised for order {}: its name is not the order's partner {:?} and {actor} is not one of its administrators; {cisco}",
                        org.org_id, org.name, order.order_id, order.partner
                    ),
                    None,
                );
            }
        }
        if let Resolved::Existing(org) = &plan.customer {
            if !(org.is_named(&order.end_customer) || org.is_admin(&answers.customer_admin_email)) {
                return self.refuse(
                    action,
                    RefusalCode::OrgNotRecognised,
                    format!(
                        "customer organisation {} ({}) is not recognised for order {}: its name is not the order's end customer {:?} and {} is not one of its administrators; {cisco}",
                        org.org_id, org.name, order.order_id, order.end_customer, answers.customer_admin_email
                    ),
                    None,
                );
            }
            // R14: "I'll set it up" on an existing customer organisation
            // needs the chosen partner organisation to manage it.
            if answers.who_sets_up == WhoSetsUp::Me
                && org.managing_partner.as_ref() != Some(plan.partner.org_id())
            {
                let why = match &org.managing_partner {
                    None => "the customer sets up its services itself (R14)".to_string(),
                    Some(other) => format!("it is managed by partner organisation {other}"),
                };
                return self.refuse(
                    action,
                    RefusalCode::PartnerNoAccess,
                    format!(
                        "partner organisation {} has no access to manage customer organisation {}: {why}. Choose who_sets_up customer, or ask its administrators ({})",
                        plan.partner.org_id(),
                        org.org_id,
                        list(&org.administrators)
                    ),
                    None,
                );
            }
        }
        // R16: every administrator named must be free for their organisation.
        let mut claims = vec![(
            answers.customer_admin_email.clone(),
            plan.customer.org_id().clone(),
        )];
        if let Some(admin) = &plan.partner_admin {
            claims.push((admin.clone(), plan.partner.org_id().clone()));
        }
        let mut reservations = Vec::new();
        for (email, org_id) in &claims {
            let key = ReservationKey::email(email);
            let reservation = self.view.reservation(&key);
            match &reservation.holder {
                None => reservations.push((
                    key,
                    vec![ReservationEvent::EmailReserved {
                        at,
                        email: email.clone(),
                        org_id: org_id.clone(),
                        order_id: order.order_id.clone(),
                    }],
                )),
                Some(holder) if holder.org_id.as_ref() == Some(org_id) => {}
                Some(holder) => {
                    return self.refuse(
                        action,
                        RefusalCode::EmailTaken,
                        format!(
                            "{email} already belongs to organisation {} (since order {}); a user belongs to one Webex organisation at a time (R16). Give another administrator email{}",
                            holder.org_label(),
                            holder.order_id,
                            if org_id == plan.partner.org_id() {
                                format!(", or choose the existing partner organisation {} (R15)", holder.org_label())
                            } else {
                                String::new()
                            }
                        ),
                        Some(email.clone()),
                    );
                }
            }
        }
        // The organisations' events.
        let partner_id = plan.partner.org_id().clone();
        let customer_id = plan.customer.org_id().clone();
        let mut orgs = Vec::new();
        if let Resolved::New { org_id, name } = &plan.partner {
            orgs.push((
                org_id.clone(),
                vec![OrgEvent::OrganisationCreated {
                    at,
                    org_id: org_id.clone(),
                    kind: OrgKind::Partner,
                    name: name.clone(),
                    order_id: order.order_id.clone(),
                    administrators: plan.partner_admin.iter().cloned().collect(),
                    managing_partner: None,
                }],
            ));
        }
        let managed = answers.who_sets_up != WhoSetsUp::Customer;
        match &plan.customer {
            Resolved::New { org_id, name } => orgs.push((
                org_id.clone(),
                vec![OrgEvent::OrganisationCreated {
                    at,
                    org_id: org_id.clone(),
                    kind: OrgKind::Customer,
                    name: name.clone(),
                    order_id: order.order_id.clone(),
                    administrators: vec![answers.customer_admin_email.clone()],
                    managing_partner: managed.then(|| partner_id.clone()),
                }],
            )),
            Resolved::Existing(org) => {
                let mut events = Vec::new();
                if !org.is_admin(&answers.customer_admin_email) {
                    events.push(OrgEvent::AdministratorAdded {
                        at,
                        email: answers.customer_admin_email.clone(),
                        order_id: order.order_id.clone(),
                    });
                }
                if let (false, Some(partner)) = (managed, &org.managing_partner) {
                    events.push(OrgEvent::PartnerAccessRemoved {
                        at,
                        partner_org_id: partner.clone(),
                        order_id: order.order_id.clone(),
                    });
                }
                if !events.is_empty() {
                    orgs.push((org.org_id.clone(), events));
                }
            }
        }
        SetupDecision {
            order: vec![
                Event::SetupCompleted {
                    at,
                    completed_by: actor.clone(),
                    who_sets_up: answers.who_sets_up,
                    partner_org_id: partner_id,
                    partner_org_created: matches!(plan.partner, Resolved::New { .. }),
                    customer_org_id: customer_id.clone(),
                    customer_org_created: matches!(plan.customer, Resolved::New { .. }),
                    customer_admin_email: answers.customer_admin_email,
                },
                Event::OrgOnboarded {
                    at,
                    org_id: customer_id,
                },
            ],
            orgs,
            reservations,
        }
    }

    // -- service setup and provisioning (R18) -------------------------------

    /// The checks shared by service setup and provisioning: the order is
    /// onboarded through the wizard, and the actor may manage its customer
    /// organisation (R14). Returns the customer organisation, or a refusal.
    fn organisation(
        &self,
        action: RefusedAction,
        what: &str,
    ) -> Result<Result<Organisation, SetupDecision>, DomainError> {
        let order = self.order;
        let actor = self.actor;
        let no_access = |reason: String| {
            Ok(Err(self.refuse(
                action,
                RefusalCode::NoAccess,
                reason,
                None,
            )))
        };
        let Some(setup) = &order.setup else {
            if !order.may_set_up(actor) {
                return no_access(format!(
                    "{actor} has no access to order {}: only the person who placed the order, the partner and distributor contacts listed on it and its provisioning contacts can {what}. Contact the person who placed the order, {}, and ask them to do it",
                    order.order_id, order.ordering_contact
                ));
            }
            let (code, reason) = match &order.org_id {
                None => (
                    RefusalCode::NotOnboarded,
                    format!(
                        "order {} is not onboarded yet: complete the setup wizard first (setup complete), then {what} (R17, R18)",
                        order.order_id
                    ),
                ),
                Some(org) => (
                    RefusalCode::SetupNotCompleted,
                    format!(
                        "order {} was onboarded to organisation {org} without the setup wizard, so its services cannot be set up here; an administrator can {what} at admin.webex.com",
                        order.order_id
                    ),
                ),
            };
            return Ok(Err(self.refuse(action, code, reason, None)));
        };
        let customer = self.view.org(&setup.customer_org_id).org.ok_or_else(|| {
            DomainError::UnknownOrganisation {
                org_id: setup.customer_org_id.to_string(),
            }
        })?;
        if customer.is_admin(actor) {
            return Ok(Ok(customer));
        }
        let partner_admin = self
            .view
            .org(&setup.partner_org_id)
            .org
            .is_some_and(|p| p.is_admin(actor));
        let partner_side =
            order.may_set_up(actor) || setup.completed_by.same_user(actor) || partner_admin;
        if !partner_side {
            return no_access(format!(
                "{actor} has no access to customer organisation {} of order {}: only its administrators ({}) and, while the partner manages it, the partner's users with access to the order can {what}. Contact the person who placed the order, {}",
                customer.org_id,
                order.order_id,
                list(&customer.administrators),
                order.ordering_contact
            ));
        }
        if customer.managing_partner.as_ref() != Some(&setup.partner_org_id) {
            return Ok(Err(self.refuse(
                action,
                RefusalCode::PartnerNoAccess,
                format!(
                    "{actor} cannot manage customer organisation {}: the customer sets up its services itself (R14), so the partner has no access to it; its administrators ({}) can {what}",
                    customer.org_id,
                    list(&customer.administrators)
                ),
                None,
            )));
        }
        Ok(Ok(customer))
    }

    fn already_provisioned(&self, action: RefusedAction) -> Option<SetupDecision> {
        let at = self.order.provisioned_at?;
        Some(self.refuse(
            action,
            RefusalCode::AlreadyProvisioned,
            format!(
                "order {} was provisioned on {}: its subscriptions are active and billing has started; change its settings at admin.webex.com",
                self.order.order_id,
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            None,
        ))
    }

    fn services(&self, services: ValidServices) -> Result<SetupDecision, DomainError> {
        let action = RefusedAction::ConfigureServices;
        let customer = match self.organisation(action, "set up its services")? {
            Ok(org) => org,
            Err(refusal) => return Ok(refusal),
        };
        if let Some(refusal) = self.already_provisioned(action) {
            return Ok(refusal);
        }
        let order = self.order;
        let at = self.ctx.at;
        let mut decision = SetupDecision::default();
        if let Some(subdomain) = &services.subdomain {
            match &customer.subdomain {
                Some(existing) if existing != subdomain => {
                    return Ok(self.refuse(
                        action,
                        RefusalCode::SubdomainAlreadySet,
                        format!(
                            "organisation {} already has the subdomain {existing}; an organisation has one subdomain (R18, decided). Give {existing} or leave the enterprise settings out",
                            customer.org_id
                        ),
                        None,
                    ))
                }
                Some(_) => {}
                None => {
                    let key = ReservationKey::Subdomain(subdomain.clone());
                    let reservation = self.view.reservation(&key);
                    match &reservation.holder {
                        Some(holder) if holder.org_id.as_ref() != Some(&customer.org_id) => {
                            return Ok(self.refuse(
                                action,
                                RefusalCode::SubdomainTaken,
                                format!(
                                    "the subdomain {subdomain} is already taken by organisation {} (since order {}); a subdomain is unique across organisations (R18). Check another with `provledger subdomain check NAME`",
                                    holder.org_label(), holder.order_id
                                ),
                                None,
                            ))
                        }
                        Some(_) => {}
                        None => decision.reservations.push((
                            key,
                            vec![ReservationEvent::SubdomainReserved {
                                at,
                                subdomain: subdomain.clone(),
                                org_id: customer.org_id.clone(),
                                order_id: order.order_id.clone(),
                            }],
                        )),
                    }
                    decision.orgs.push((
                        customer.org_id.clone(),
                        vec![OrgEvent::SubdomainAssigned {
                            at,
                            subdomain: subdomain.clone(),
                            order_id: order.order_id.clone(),
                        }],
                    ));
                }
            }
        }
        decision.order.push(Event::ServicesConfigured {
            at,
            org_id: customer.org_id,
            calling: services.calling,
            meeting: services.meeting,
            subdomain: services.subdomain,
        });
        Ok(decision)
    }

    fn provision(&self) -> Result<SetupDecision, DomainError> {
        let action = RefusedAction::Provision;
        let customer = match self.organisation(action, "provision it and start billing")? {
            Ok(org) => org,
            Err(refusal) => return Ok(refusal),
        };
        if let Some(refusal) = self.already_provisioned(action) {
            return Ok(refusal);
        }
        let order = self.order;
        if order.services.is_none() {
            return Ok(self.refuse(
                action,
                RefusalCode::ServicesNotSetUp,
                format!(
                    "the services of order {} are not set up yet: save the service settings first (setup services), then provision (R18, decided)",
                    order.order_id
                ),
                None,
            ));
        }
        Ok(SetupDecision {
            order: order
                .lines
                .iter()
                .map(|line| Event::LineProvisioned {
                    at: self.ctx.at,
                    line_id: line.line_id.clone(),
                    org_id: customer.org_id.clone(),
                    billing_started: true,
                })
                .collect(),
            ..SetupDecision::default()
        })
    }
}

/// An organisation of the wizard, resolved against the view.
enum Resolved {
    New { org_id: OrgId, name: String },
    Existing(Organisation),
}

impl Resolved {
    fn org_id(&self) -> &OrgId {
        match self {
            Resolved::New { org_id, .. } => org_id,
            Resolved::Existing(org) => &org.org_id,
        }
    }
}

/// The wizard's organisations and the new partner organisation's administrator.
struct Plan {
    partner: Resolved,
    customer: Resolved,
    partner_admin: Option<Email>,
}

fn list(emails: &[Email]) -> String {
    emails
        .iter()
        .map(Email::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Describe service settings for people: `calling PL (Warsaw HQ); …`.
pub fn describe_services(
    calling: Option<&CallingSettings>,
    meeting: Option<&MeetingSettings>,
    subdomain: Option<&Subdomain>,
) -> String {
    let mut parts = Vec::new();
    if let Some(c) = calling {
        parts.push(format!("calling {} ({})", c.country, c.location));
    }
    if let Some(m) = meeting {
        parts.push(format!(
            "meetings in {} with recording {}",
            m.language,
            if m.recording { "on" } else { "off" }
        ));
    }
    if let Some(s) = subdomain {
        parts.push(format!("subdomain {s}"));
    }
    if parts.is_empty() {
        "subscription details reviewed".to_string()
    } else {
        parts.join(", ")
    }
}
