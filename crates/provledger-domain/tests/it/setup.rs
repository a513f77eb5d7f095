//! R13–R18: the setup wizard, organisations, reservations, service setup and
//! provisioning, given / when / then across streams.
//!
//! A [`World`] holds the streams a setup touches — the sample order's, the
//! organisations' and the reservations' — as plain vectors of events;
//! `decide` folds them into a [`SetupView`] and runs [`decide_setup`];
//! `run` also appends the decision, as the shell would.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use provledger_domain::{
    decide, decide_setup, setup_needs, Actor, CallingSettings, Command, Context, DomainError,
    Email, Event, LineStatus, OrderState, OrgChoice, OrgEvent, OrgId, OrgKind, OrgState,
    RefusalCode, RefusedAction, ReservationEvent, ReservationKey, ReservationState, SetupCommand,
    SetupDecision, SetupRequest, SetupView, Subdomain, ValidServices, ValidSetup, WhoSetsUp,
    WizardAnswers,
};

use crate::harness::*;

/// The customer's administrator named in the wizard.
const ADMIN: &str = "admin@contoso.example";
/// Someone else in the partner's company (R14).
const SAM: &str = "sam@partner.example";

fn org(id: &str) -> OrgId {
    OrgId::parse(id).expect("test org id")
}

/// The organisations a setup of the sample order creates (decided ids).
fn porg() -> OrgId {
    org("PORG-WO-1001")
}
fn corg() -> OrgId {
    org("ORG-WO-1001")
}

/// A time on 2026-11-`day` at `hour`:00, before the sample order's RSD.
fn nov(day: u32, hour: u32) -> DateTime<Utc> {
    at(2026, 11, day, hour, 0)
}

fn new_org() -> OrgChoice {
    OrgChoice::New {
        name: None,
        admin_email: None,
    }
}

fn existing(id: &str) -> OrgChoice {
    OrgChoice::Existing(org(id))
}

/// The completed wizard for `order_id`.
fn wizard_for(
    order_id: &str,
    who: WhoSetsUp,
    partner: OrgChoice,
    customer: OrgChoice,
    admin: &str,
) -> SetupCommand {
    SetupCommand::Setup(ValidSetup::Complete {
        order_id: provledger_domain::OrderId::parse(order_id).unwrap(),
        answers: WizardAnswers {
            who_sets_up: who,
            partner_org: partner,
            customer_org: customer,
            customer_admin_email: email(admin),
        },
    })
}

/// The completed wizard for the sample order.
fn wizard(who: WhoSetsUp, partner: OrgChoice, customer: OrgChoice, admin: &str) -> SetupCommand {
    wizard_for(ORDER, who, partner, customer, admin)
}

/// The usual first setup: new partner and customer organisations.
fn first_setup(who: WhoSetsUp) -> SetupCommand {
    wizard(who, new_org(), new_org(), ADMIN)
}

fn hand_over(to: &str) -> SetupCommand {
    SetupCommand::Setup(ValidSetup::HandOver {
        order_id: order_id(),
        to: email(to),
    })
}

fn services(subdomain: Option<&str>) -> SetupCommand {
    SetupCommand::ConfigureServices(ValidServices {
        calling: Some(CallingSettings {
            country: "PL".into(),
            location: "Warsaw HQ".into(),
        }),
        meeting: None,
        subdomain: subdomain.map(|s| Subdomain::parse(s).unwrap()),
    })
}

/// Every stream a setup may touch, as plain event vectors.
#[derive(Default, Clone)]
struct World {
    orders: BTreeMap<String, Vec<Event>>,
    orgs: BTreeMap<OrgId, Vec<OrgEvent>>,
    reservations: BTreeMap<ReservationKey, Vec<ReservationEvent>>,
}

impl World {
    /// The sample order, placed.
    fn placed() -> World {
        let mut world = World::default();
        world.orders.insert(ORDER.into(), vec![placed()]);
        world
    }

    /// Another order for the same customer, by the same partner.
    fn with_order(mut self, order_id: &str, at: DateTime<Utc>) -> World {
        let mut order = sample_order();
        order.order_id = provledger_domain::OrderId::parse(order_id).unwrap();
        self.orders
            .insert(order_id.into(), vec![placed_order(order, at)]);
        self
    }

    fn view(&self, order_id: &str, command: &SetupCommand, actor: &Actor) -> SetupView {
        let order = OrderState::from_events(self.orders.get(order_id).into_iter().flatten());
        let needs = setup_needs(command, &order, actor).expect("needs");
        SetupView {
            orgs: needs
                .orgs
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        OrgState::from_events(self.orgs.get(id).into_iter().flatten()),
                    )
                })
                .collect(),
            reservations: needs
                .reservations
                .iter()
                .map(|key| {
                    (
                        key.clone(),
                        ReservationState::from_events(
                            self.reservations.get(key).into_iter().flatten(),
                        ),
                    )
                })
                .collect(),
            order,
        }
    }

    fn decide_on(
        &self,
        order_id: &str,
        command: SetupCommand,
        actor: &str,
        t: DateTime<Utc>,
    ) -> Result<SetupDecision, DomainError> {
        let actor = Actor::parse(actor).expect("test actor");
        let view = self.view(order_id, &command, &actor);
        decide_setup(&view, command, &Context::new(actor, t))
    }

    fn decide(
        &self,
        command: SetupCommand,
        actor: &str,
        t: DateTime<Utc>,
    ) -> Result<SetupDecision, DomainError> {
        self.decide_on(ORDER, command, actor, t)
    }

    fn apply(&mut self, order_id: &str, decision: &SetupDecision) {
        self.orders
            .entry(order_id.into())
            .or_default()
            .extend(decision.order.iter().cloned());
        for (id, events) in &decision.orgs {
            self.orgs
                .entry(id.clone())
                .or_default()
                .extend(events.clone());
        }
        for (key, events) in &decision.reservations {
            self.reservations
                .entry(key.clone())
                .or_default()
                .extend(events.clone());
        }
    }

    /// Decide and append; the decision is returned for inspection.
    #[track_caller]
    fn run_on(
        &mut self,
        order_id: &str,
        command: SetupCommand,
        actor: &str,
        t: DateTime<Utc>,
    ) -> SetupDecision {
        let decision = self
            .decide_on(order_id, command, actor, t)
            .unwrap_or_else(|e| panic!("expected a decision, got the error: {e}"));
        self.apply(order_id, &decision);
        decision
    }

    #[track_caller]
    fn run(&mut self, command: SetupCommand, actor: &str, t: DateTime<Utc>) -> SetupDecision {
        self.run_on(ORDER, command, actor, t)
    }

    /// Run an order command (change, resend, …) on the sample order.
    fn order_command(&mut self, command: Command, actor: &str, t: DateTime<Utc>) -> Vec<Event> {
        let state = self.order_state(ORDER);
        let events = decide(
            &state,
            command,
            &Context::new(Actor::parse(actor).unwrap(), t),
        )
        .expect("decided");
        self.orders.get_mut(ORDER).unwrap().extend(events.clone());
        events
    }

    fn order_state(&self, order_id: &str) -> OrderState {
        OrderState::from_events(self.orders.get(order_id).into_iter().flatten())
    }

    fn org_state(&self, id: &OrgId) -> provledger_domain::Organisation {
        OrgState::from_events(self.orgs.get(id).into_iter().flatten())
            .org
            .expect("organisation exists")
    }
}

/// The refusal a decision ends with; every other order event is scheduled,
/// and no other stream is written (R12).
#[track_caller]
fn refused(decision: &SetupDecision, code: RefusalCode) -> (RefusedAction, String, Option<Email>) {
    assert!(decision.orgs.is_empty(), "a refusal wrote organisations");
    assert!(
        decision.reservations.is_empty(),
        "a refusal wrote reservations"
    );
    let (last, before) = decision.order.split_last().expect("no events");
    assert!(before.iter().all(Event::is_scheduled), "{before:?}");
    match last {
        Event::CommandRefused {
            action,
            code: actual,
            reason,
            requested_email,
            ..
        } => {
            assert_eq!(*actual, code, "refused for another reason: {reason}");
            (*action, reason.clone(), requested_email.clone())
        }
        other => panic!("expected a refusal ({code:?}), got {other:?}"),
    }
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::event_type).collect()
}

// ---------------------------------------------------------------------------
// R13: only a completed setup is an event.

#[test]
fn r13_an_unfinished_wizard_is_bad_input_and_saves_nothing() {
    let request = SetupRequest {
        order_id: ORDER.into(),
        role: Some("partner".into()),
        who_sets_up: Some("me".into()),
        partner_organisation: Some(provledger_domain::OrgChoiceRequest {
            new: Some(Default::default()),
            existing: None,
        }),
        customer_organisation: Some(provledger_domain::OrgChoiceRequest {
            new: Some(Default::default()),
            existing: None,
        }),
        customer_admin_email: Some(ADMIN.into()),
        confirm_customer: Some(true),
        confirm_partner: None,
        ..SetupRequest::default()
    };
    let err = request.validate().unwrap_err();
    assert!(err.to_string().contains("confirm_partner"), "{err}");
    assert!(err.to_string().contains("R13"), "{err}");
}

#[test]
fn r13_a_completed_setup_is_one_transaction_ending_in_the_ponr() {
    let mut world = World::placed();
    let decision = world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    assert_eq!(types(&decision.order), ["SetupCompleted", "OrgOnboarded"]);
    let order = world.order_state(ORDER).order.unwrap();
    assert_eq!(order.org_id, Some(corg()));
    assert_eq!(order.setup_started_at, Some(nov(25, 9)));
    assert!(order
        .lines
        .iter()
        .all(|l| l.status == LineStatus::Onboarded));
}

#[test]
fn r13_the_setup_sees_the_order_as_it_was_at_its_time() {
    // Completed a week after the RSD: the R2 emails and the R11 escalations
    // due before it are decided first, in the same transaction.
    let mut world = World::placed();
    let decision = world.run(first_setup(WhoSetsUp::Me), PAT, at(2026, 12, 5, 9, 0));
    assert_eq!(
        types(&decision.order),
        [
            "InitialEmailSent",
            "InitialEmailSent",
            "EscalationRaised",
            "EscalationRaised",
            "SetupCompleted",
            "OrgOnboarded"
        ]
    );
}

#[test]
fn r13_a_hand_over_stops_the_r11_escalation() {
    let mut world = World::placed();
    world.run(hand_over(SAM), PAT, nov(25, 9));
    let due = provledger_domain::due_events(&world.order_state(ORDER), at(2026, 12, 20, 0, 0));
    assert!(
        due.iter()
            .all(|e| !matches!(e, Event::EscalationRaised { .. })),
        "{due:?}"
    );
}

// ---------------------------------------------------------------------------
// R14: who sets up.

#[test]
fn r14_me_the_partner_manages_the_new_customer_organisation() {
    let mut world = World::placed();
    let decision = world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    assert_eq!(
        decision.order[0],
        Event::SetupCompleted {
            at: nov(25, 9),
            completed_by: email(PAT),
            who_sets_up: WhoSetsUp::Me,
            partner_org_id: porg(),
            partner_org_created: true,
            customer_org_id: corg(),
            customer_org_created: true,
            customer_admin_email: email(ADMIN),
        }
    );
    let customer = world.org_state(&corg());
    assert_eq!(customer.kind, OrgKind::Customer);
    assert_eq!(customer.name, "Contoso Ltd");
    assert_eq!(customer.managing_partner, Some(porg()));
    assert_eq!(customer.administrators, vec![email(ADMIN)]);
    let partner = world.org_state(&porg());
    assert_eq!(partner.kind, OrgKind::Partner);
    assert_eq!(partner.name, "Acme Partner");
    assert_eq!(partner.administrators, vec![email(PAT)]);
    // The partner sets up the services and provisions.
    world.run(services(Some("contoso")), PAT, nov(26, 9));
    let provisioned = world.run(SetupCommand::Provision, OLIVIA, nov(27, 9));
    assert_eq!(
        types(&provisioned.order),
        ["LineProvisioned", "LineProvisioned", "LineProvisioned"]
    );
}

#[test]
fn r14_someone_else_in_my_company_takes_the_setup_over() {
    let mut world = World::placed();
    // Sam is not on the order: without the hand-over, Sam has no access.
    let before = world
        .decide(first_setup(WhoSetsUp::Me), SAM, nov(24, 9))
        .unwrap();
    refused(&before, RefusalCode::NoAccess);
    let handed = world.run(hand_over(SAM), PAT, nov(25, 9));
    assert_eq!(
        handed.order,
        vec![Event::SetupHandedOver {
            at: nov(25, 9),
            to: email(SAM)
        }]
    );
    assert!(handed.orgs.is_empty() && handed.reservations.is_empty());
    // Not the PONR: the contact can still be changed.
    let changed = world.order_command(change("1.1", NEW, false), OLIVIA, nov(25, 10));
    assert_eq!(types(&changed), ["ProvisioningContactChanged"]);
    // Sam completes it, and becomes the new partner organisation's administrator.
    let done = world.run(first_setup(WhoSetsUp::Me), SAM, nov(26, 9));
    assert_eq!(types(&done.order), ["SetupCompleted", "OrgOnboarded"]);
    assert_eq!(world.org_state(&porg()).administrators, vec![email(SAM)]);
    // …and may set up the services.
    let svc = world.run(services(None), SAM, nov(27, 9));
    assert_eq!(types(&svc.order), ["ServicesConfigured"]);
}

#[test]
fn r14_someone_else_must_be_in_my_company_and_not_me() {
    let world = World::placed();
    for (to, field_text) in [
        ("sam@elsewhere.example", "not in your company"),
        (PAT, "your own address"),
    ] {
        let err = world.decide(hand_over(to), PAT, nov(25, 9)).unwrap_err();
        assert!(err.to_string().contains(field_text), "{err}");
        assert!(err.to_string().contains("someone_else_email"), "{err}");
    }
}

#[test]
fn r14_choosing_the_customer_removes_the_partners_access() {
    let mut world = World::placed();
    world.run(first_setup(WhoSetsUp::Customer), PAT, nov(25, 9));
    assert_eq!(world.org_state(&corg()).managing_partner, None);
    // Every partner user is refused, and the refusal is recorded.
    for partner_user in [PAT, OLIVIA, DANA] {
        let d = world
            .decide(services(Some("contoso")), partner_user, nov(26, 9))
            .unwrap();
        let (action, reason, _) = refused(&d, RefusalCode::PartnerNoAccess);
        assert_eq!(action, RefusedAction::ConfigureServices);
        assert!(reason.contains(ADMIN), "names the administrators: {reason}");
        assert!(reason.contains("R14"), "{reason}");
        let d = world
            .decide(SetupCommand::Provision, partner_user, nov(26, 9))
            .unwrap();
        assert_eq!(
            refused(&d, RefusalCode::PartnerNoAccess).0,
            RefusedAction::Provision
        );
    }
    // The customer's administrator sets up and provisions.
    world.run(services(Some("contoso")), ADMIN, nov(26, 10));
    world.run(SetupCommand::Provision, ADMIN, nov(26, 11));
    let order = world.order_state(ORDER).order.unwrap();
    assert!(order
        .lines
        .iter()
        .all(|l| l.status == LineStatus::Provisioned));
}

#[test]
fn r14_choosing_the_customer_on_an_existing_organisation_takes_access_away() {
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    // The second order, for the same customer, chooses the customer.
    let second = world.run_on(
        "WO-1002",
        wizard_for(
            "WO-1002",
            WhoSetsUp::Customer,
            existing("PORG-WO-1001"),
            existing("ORG-WO-1001"),
            ADMIN,
        ),
        PAT,
        nov(26, 9),
    );
    assert_eq!(
        second.orgs,
        vec![(
            corg(),
            vec![OrgEvent::PartnerAccessRemoved {
                at: nov(26, 9),
                partner_org_id: porg(),
                order_id: provledger_domain::OrderId::parse("WO-1002").unwrap(),
            }]
        )]
    );
    assert!(
        second.reservations.is_empty(),
        "the admin is already theirs"
    );
    // The first order's partner can no longer manage the organisation.
    let d = world.decide(services(None), PAT, nov(27, 9)).unwrap();
    refused(&d, RefusalCode::PartnerNoAccess);
    // And cannot take it back by choosing "me" on a third order.
    let mut world = world.with_order("WO-1003", nov(20, 11));
    let d = world
        .decide_on(
            "WO-1003",
            wizard_for(
                "WO-1003",
                WhoSetsUp::Me,
                existing("PORG-WO-1001"),
                existing("ORG-WO-1001"),
                ADMIN,
            ),
            PAT,
            nov(28, 9),
        )
        .unwrap();
    let (_, reason, _) = refused(&d, RefusalCode::PartnerNoAccess);
    assert!(reason.contains("customer sets up"), "{reason}");
    world.apply("WO-1003", &d);
}

#[test]
fn r14_strangers_are_refused_with_the_ordering_contact_named() {
    let mut world = World::placed();
    let d = world
        .decide(first_setup(WhoSetsUp::Me), AUDREY, nov(25, 9))
        .unwrap();
    let (action, reason, _) = refused(&d, RefusalCode::NoAccess);
    assert_eq!(action, RefusedAction::CompleteSetup);
    assert!(reason.contains(OLIVIA), "{reason}");
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 10));
    let d = world
        .decide(SetupCommand::Provision, AUDREY, nov(26, 9))
        .unwrap();
    let (_, reason, _) = refused(&d, RefusalCode::NoAccess);
    assert!(
        reason.contains(ADMIN) && reason.contains(OLIVIA),
        "{reason}"
    );
}

// ---------------------------------------------------------------------------
// R15: a new partner organisation on a first order, an existing one after.

#[test]
fn r15_a_later_order_reviews_the_existing_partner_organisation() {
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    let second = world.run_on(
        "WO-1002",
        wizard_for(
            "WO-1002",
            WhoSetsUp::Me,
            existing("PORG-WO-1001"),
            new_org(),
            "it-admin@contoso.example",
        ),
        PAT,
        nov(26, 9),
    );
    let Event::SetupCompleted {
        partner_org_id,
        partner_org_created,
        customer_org_created,
        ..
    } = &second.order[0]
    else {
        panic!("{:?}", second.order)
    };
    assert_eq!(partner_org_id, &porg());
    assert!(!partner_org_created && *customer_org_created);
    // Only the new customer organisation is created.
    let created: Vec<&OrgId> = second.orgs.iter().map(|(id, _)| id).collect();
    assert_eq!(created, vec![&org("ORG-WO-1002")]);
}

#[test]
fn r15_a_second_new_partner_organisation_for_the_same_admin_is_refused() {
    // PAT already administers PORG-WO-1001 (R16), so "new" is refused and
    // the message points to the existing organisation (R15).
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    let d = world
        .decide_on(
            "WO-1002",
            wizard_for(
                "WO-1002",
                WhoSetsUp::Me,
                new_org(),
                new_org(),
                "x@contoso.example",
            ),
            PAT,
            nov(26, 9),
        )
        .unwrap();
    let (_, reason, requested) = refused(&d, RefusalCode::EmailTaken);
    assert_eq!(requested, Some(email(PAT)));
    assert!(
        reason.contains("existing partner organisation PORG-WO-1001"),
        "{reason}"
    );
}

#[test]
fn r15_an_unrecognised_organisation_stops_the_wizard() {
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    // WO-1002's partner is someone else, and OLIVIA does not administer PORG-WO-1001.
    let mut other = sample_order();
    other.order_id = provledger_domain::OrderId::parse("WO-2000").unwrap();
    other.partner = "Globex Reseller".into();
    world
        .orders
        .insert("WO-2000".into(), vec![placed_order(other, nov(20, 11))]);
    let d = world
        .decide_on(
            "WO-2000",
            wizard_for(
                "WO-2000",
                WhoSetsUp::Me,
                existing("PORG-WO-1001"),
                new_org(),
                "y@contoso.example",
            ),
            OLIVIA,
            nov(26, 9),
        )
        .unwrap();
    let (_, reason, _) = refused(&d, RefusalCode::OrgNotRecognised);
    assert!(reason.contains("Cisco representative"), "{reason}");
}

#[test]
fn r15_unknown_or_wrong_kind_organisations_are_bad_input() {
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    let err = world
        .decide(
            wizard(WhoSetsUp::Me, existing("PORG-NOPE"), new_org(), ADMIN),
            PAT,
            nov(25, 9),
        )
        .unwrap_err();
    assert!(
        matches!(err, DomainError::UnknownOrganisation { .. }),
        "{err}"
    );
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    let err = world
        .decide_on(
            "WO-1002",
            wizard_for(
                "WO-1002",
                WhoSetsUp::Me,
                existing("ORG-WO-1001"),
                new_org(),
                ADMIN,
            ),
            PAT,
            nov(26, 9),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            DomainError::WrongOrganisationKind {
                expected: "partner",
                actual: "customer",
                ..
            }
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// R16: a user belongs to one organisation at a time.

#[test]
fn r16_the_admin_email_is_reserved_to_its_organisation() {
    let mut world = World::placed();
    let decision = world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    let reserved: Vec<(String, OrgId)> = decision
        .reservations
        .iter()
        .filter_map(|(key, events)| Some((key.stream_id(), events[0].org_id()?.clone())))
        .collect();
    assert_eq!(
        reserved,
        vec![
            (format!("reservation-email-{ADMIN}"), corg()),
            ("reservation-email-pat@partner.example".into(), porg()),
        ]
    );
}

#[test]
fn r16_an_email_already_in_another_organisation_is_refused_and_recorded() {
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    // Case differences do not make another user (decided).
    let d = world
        .decide_on(
            "WO-1002",
            wizard_for(
                "WO-1002",
                WhoSetsUp::Me,
                existing("PORG-WO-1001"),
                new_org(),
                "ADMIN@Contoso.example",
            ),
            PAT,
            nov(26, 9),
        )
        .unwrap();
    let (action, reason, requested) = refused(&d, RefusalCode::EmailTaken);
    assert_eq!(action, RefusedAction::CompleteSetup);
    assert_eq!(requested, Some(email("ADMIN@Contoso.example")));
    assert!(
        reason.contains("ORG-WO-1001") && reason.contains("R16"),
        "{reason}"
    );
    // The refused order is not onboarded: nothing but the refusal happened.
    world.apply("WO-1002", &d);
    assert_eq!(world.order_state("WO-1002").order.unwrap().org_id, None);
}

#[test]
fn r16_two_setups_racing_for_one_email_leave_one_winner_and_one_refusal() {
    // Both decide against the same snapshot; the store accepts the first
    // append; the second's reservation stream moved, so it is re-decided.
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    let a = first_setup(WhoSetsUp::Me);
    let b = wizard_for("WO-1002", WhoSetsUp::Me, new_org(), new_org(), ADMIN);
    let first = world.decide(a, PAT, nov(25, 9)).unwrap();
    let second = world
        .decide_on("WO-1002", b.clone(), OLIVIA, nov(25, 9))
        .unwrap();
    let key = ReservationKey::email(&email(ADMIN));
    assert!(first.reservations.iter().any(|(k, _)| k == &key));
    assert!(second.reservations.iter().any(|(k, _)| k == &key));
    world.apply(ORDER, &first);
    // The loser's expected version (0) no longer matches: re-decide.
    assert_eq!(world.reservations[&key].len(), 1);
    let redecided = world.decide_on("WO-1002", b, OLIVIA, nov(25, 9)).unwrap();
    refused(&redecided, RefusalCode::EmailTaken);
}

// ---------------------------------------------------------------------------
// R17: confirming completes the setup: the Point of No Return.

#[test]
fn r17_after_completion_resend_change_and_a_second_setup_are_refused() {
    let mut world = World::placed();
    world.run(first_setup(WhoSetsUp::Me), PAT, at(2026, 12, 2, 9, 0));
    let events = world.order_command(resend("1.1"), OLIVIA, at(2026, 12, 2, 10, 0));
    assert!(matches!(
        events.last(),
        Some(Event::CommandRefused {
            code: RefusalCode::AfterPonr,
            ..
        })
    ));
    let d = world
        .decide(first_setup(WhoSetsUp::Me), OLIVIA, at(2026, 12, 2, 11, 0))
        .unwrap();
    let (_, reason, _) = refused(&d, RefusalCode::AlreadyOnboarded);
    assert!(reason.contains("admin.webex.com"), "{reason}");
    // Nothing is scheduled after PONR: no closure, no escalation.
    let due = provledger_domain::due_events(&world.order_state(ORDER), at(2027, 2, 1, 0, 0));
    assert!(due.is_empty(), "{due:?}");
}

#[test]
fn r17_the_new_organisations_take_the_orders_names_unless_given() {
    let mut world = World::placed();
    world.run(
        wizard(
            WhoSetsUp::Me,
            OrgChoice::New {
                name: Some("Acme Partner EMEA".into()),
                admin_email: Some(email("partner-admin@partner.example")),
            },
            new_org(),
            ADMIN,
        ),
        PAT,
        nov(25, 9),
    );
    let partner = world.org_state(&porg());
    assert_eq!(partner.name, "Acme Partner EMEA");
    assert_eq!(
        partner.administrators,
        vec![email("partner-admin@partner.example")]
    );
    assert_eq!(world.org_state(&corg()).name, "Contoso Ltd");
    // The partner organisation's administrator manages the customer organisation.
    let d = world
        .decide(services(None), "partner-admin@partner.example", nov(26, 9))
        .unwrap();
    assert_eq!(types(&d.order), ["ServicesConfigured"]);
}

// ---------------------------------------------------------------------------
// R18: service setup, subdomains, provisioning and billing.

#[test]
fn r18_services_reserve_the_subdomain_for_the_organisation() {
    let mut world = World::placed();
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    let d = world.run(services(Some("contoso")), PAT, nov(26, 9));
    let contoso = Subdomain::parse("contoso").unwrap();
    assert_eq!(
        d.order,
        vec![Event::ServicesConfigured {
            at: nov(26, 9),
            org_id: corg(),
            calling: Some(CallingSettings {
                country: "PL".into(),
                location: "Warsaw HQ".into()
            }),
            meeting: None,
            subdomain: Some(contoso.clone()),
        }]
    );
    assert_eq!(
        d.reservations[0].0.stream_id(),
        "reservation-subdomain-contoso"
    );
    assert_eq!(world.org_state(&corg()).subdomain, Some(contoso));
    // Saving again with the same subdomain reserves nothing new.
    let again = world.run(services(Some("contoso")), PAT, nov(26, 10));
    assert!(again.reservations.is_empty() && again.orgs.is_empty());
    // Another subdomain for the same organisation is refused (decided).
    let d = world
        .decide(services(Some("contoso2")), PAT, nov(26, 11))
        .unwrap();
    refused(&d, RefusalCode::SubdomainAlreadySet);
}

#[test]
fn r18_a_subdomain_is_taken_at_most_once_across_organisations() {
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    world.run_on(
        "WO-1002",
        wizard_for(
            "WO-1002",
            WhoSetsUp::Me,
            existing("PORG-WO-1001"),
            new_org(),
            "other-admin@fabrikam.example",
        ),
        PAT,
        nov(25, 10),
    );
    world.run(services(Some("contoso")), PAT, nov(26, 9));
    let d = world
        .decide_on("WO-1002", services(Some("contoso")), PAT, nov(26, 10))
        .unwrap();
    let (action, reason, _) = refused(&d, RefusalCode::SubdomainTaken);
    assert_eq!(action, RefusedAction::ConfigureServices);
    assert!(reason.contains("ORG-WO-1001"), "{reason}");
}

#[test]
fn r18_nothing_is_set_up_or_provisioned_before_the_ponr() {
    let mut world = World::placed();
    let d = world
        .decide(services(Some("contoso")), PAT, nov(25, 9))
        .unwrap();
    refused(&d, RefusalCode::NotOnboarded);
    let d = world
        .decide(SetupCommand::Provision, PAT, nov(25, 9))
        .unwrap();
    refused(&d, RefusalCode::NotOnboarded);
    // Onboarded without the wizard: the organisation is unknown here.
    world.order_command(onboard("ORG-LEGACY"), OLIVIA, nov(25, 10));
    let d = world
        .decide(SetupCommand::Provision, PAT, nov(25, 11))
        .unwrap();
    refused(&d, RefusalCode::SetupNotCompleted);
}

#[test]
fn r18_provisioning_needs_the_services_set_up_first() {
    let mut world = World::placed();
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(25, 9));
    let d = world
        .decide(SetupCommand::Provision, PAT, nov(25, 10))
        .unwrap();
    refused(&d, RefusalCode::ServicesNotSetUp);
}

#[test]
fn r18_provision_activates_every_line_and_starts_billing_once() {
    let mut world = World::placed();
    // Line 1.1 (A-Flex) closed on 2026-12-08 with billing started (R7).
    world.run(first_setup(WhoSetsUp::Me), PAT, at(2026, 12, 9, 9, 0));
    world.run(services(None), PAT, at(2026, 12, 9, 10, 0));
    let d = world.run(SetupCommand::Provision, PAT, at(2026, 12, 9, 11, 0));
    assert_eq!(d.order.len(), 3);
    let order = world.order_state(ORDER).order.unwrap();
    for line in &order.lines {
        assert_eq!(line.status, LineStatus::Provisioned);
        assert!(line.billing_started);
        assert!(!line.provisioning_pending());
    }
    for command in [SetupCommand::Provision, services(None)] {
        let d = world.decide(command, PAT, at(2026, 12, 10, 9, 0)).unwrap();
        refused(&d, RefusalCode::AlreadyProvisioned);
    }
}

#[test]
fn r18_a_command_dated_before_an_organisations_latest_event_is_bad_input() {
    let mut world = World::placed().with_order("WO-1002", nov(20, 10));
    world.run(first_setup(WhoSetsUp::Me), PAT, nov(26, 9));
    // WO-1002's own stream is older, but the organisation it writes is not.
    let err = world
        .decide_on(
            "WO-1002",
            wizard_for(
                "WO-1002",
                WhoSetsUp::Customer,
                existing("PORG-WO-1001"),
                existing("ORG-WO-1001"),
                "new-admin@contoso.example",
            ),
            PAT,
            nov(25, 9),
        )
        .unwrap_err();
    assert!(
        matches!(&err, DomainError::StreamOutOfOrder { stream_id, .. } if stream_id == "org-ORG-WO-1001"),
        "{err}"
    );
}

#[test]
fn setup_commands_need_a_user_and_a_placed_order() {
    let world = World::placed();
    let err = world
        .decide(first_setup(WhoSetsUp::Me), "system", nov(25, 9))
        .unwrap_err();
    assert!(matches!(err, DomainError::UserRequired { .. }), "{err}");
    let err = World::default()
        .decide(first_setup(WhoSetsUp::Me), PAT, nov(25, 9))
        .unwrap_err();
    assert!(matches!(err, DomainError::OrderNotPlaced), "{err}");
}
