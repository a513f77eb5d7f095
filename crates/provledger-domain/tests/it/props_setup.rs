//! Property tests of the multi-stream setup decider (R14–R18) against a
//! plain in-memory store with optimistic concurrency.
//!
//! Three orders for the same customer and partner run random setups,
//! hand-overs, service setups and provisionings by random actors, naming
//! administrators and subdomains from small overlapping pools. Some steps
//! race: two commands are decided against the same snapshot and appended one
//! after the other, each stream checked at the version it was read at; the
//! loser is re-decided, as the shell does. Whatever happens:
//!
//! * no email is ever an administrator of two organisations (R16), and every
//!   administrator is reserved to their organisation;
//! * no reservation stream holds more than one event: no subdomain or email
//!   is ever reserved twice (R16, R18), and an organisation's subdomain is
//!   the one reserved to it;
//! * no line is provisioned before its order's Point of No Return, and only
//!   in the organisation the order is onboarded to.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use provledger_domain::{
    decide_setup, setup_needs, Actor, CallingSettings, Context, Email, Event, OrderState,
    OrgChoice, OrgEvent, OrgId, OrgState, ReservationEvent, ReservationKey, ReservationState,
    SetupCommand, SetupDecision, SetupView, Subdomain, ValidServices, ValidSetup, WhoSetsUp,
    WizardAnswers,
};

use crate::harness::{placed_order, sample_order, AUDREY, DANA, OLIVIA, PAT};

const ORDERS: usize = 3;
/// Customer administrators: overlapping with each other (case) and with
/// the partner's people.
const ADMINS: [&str; 6] = [
    "a1@contoso.example",
    "A1@Contoso.example",
    "a2@contoso.example",
    "a3@contoso.example",
    PAT,
    OLIVIA,
];
const SUBDOMAINS: [&str; 2] = ["contoso", "contoso-eu"];
const ACTORS: [&str; 6] = [
    OLIVIA,
    PAT,
    DANA,
    "a1@contoso.example",
    "sam@partner.example",
    AUDREY,
];

fn order_id(i: usize) -> String {
    format!("WO-{}", i + 1)
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Complete {
        order: usize,
        customer_sets_up: bool,
        /// `None`: a new partner organisation; `Some(k)`: `PORG-WO-k`.
        partner: Option<usize>,
        /// `None`: a new customer organisation; `Some(k)`: `ORG-WO-k`.
        customer: Option<usize>,
        admin: usize,
    },
    HandOver {
        order: usize,
    },
    Services {
        order: usize,
        subdomain: Option<usize>,
    },
    Provision {
        order: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let order = 0..ORDERS;
    let org = prop::option::of(0..ORDERS);
    prop_oneof![
        4 => (order.clone(), any::<bool>(), org.clone(), org, 0..ADMINS.len()).prop_map(
            |(order, customer_sets_up, partner, customer, admin)| Step::Complete {
                order, customer_sets_up, partner, customer, admin,
            }
        ),
        1 => order.clone().prop_map(|order| Step::HandOver { order }),
        3 => (order.clone(), prop::option::of(0..SUBDOMAINS.len()))
            .prop_map(|(order, subdomain)| Step::Services { order, subdomain }),
        2 => order.prop_map(|order| Step::Provision { order }),
    ]
}

/// (minutes later, actor, step, and — for a race — a second step by a second actor).
type Timed = (i64, usize, Step, Option<(usize, Step)>);

fn timed() -> impl Strategy<Value = Timed> {
    // Mostly the partner's people, who may set up every order.
    let actor = || prop_oneof![3 => 0..3usize, 1 => 0..ACTORS.len()];
    (
        0i64..3000,
        actor(),
        step(),
        prop::option::weighted(0.3, (actor(), step())),
    )
}

fn command(step: &Step) -> SetupCommand {
    let id = |i: usize| provledger_domain::OrderId::parse(&order_id(i)).unwrap();
    match step {
        Step::Complete {
            order,
            customer_sets_up,
            partner,
            customer,
            admin,
        } => SetupCommand::Setup(ValidSetup::Complete {
            order_id: id(*order),
            answers: WizardAnswers {
                who_sets_up: if *customer_sets_up {
                    WhoSetsUp::Customer
                } else {
                    WhoSetsUp::Me
                },
                partner_org: match partner {
                    None => OrgChoice::New {
                        name: None,
                        admin_email: None,
                    },
                    Some(k) => OrgChoice::Existing(
                        OrgId::parse(&format!("PORG-{}", order_id(*k))).unwrap(),
                    ),
                },
                customer_org: match customer {
                    None => OrgChoice::New {
                        name: None,
                        admin_email: None,
                    },
                    Some(k) => {
                        OrgChoice::Existing(OrgId::parse(&format!("ORG-{}", order_id(*k))).unwrap())
                    }
                },
                customer_admin_email: Email::parse(ADMINS[*admin]).unwrap(),
            },
        }),
        Step::HandOver { order } => SetupCommand::Setup(ValidSetup::HandOver {
            order_id: id(*order),
            to: Email::parse("sam@partner.example").unwrap(),
        }),
        Step::Services { subdomain, .. } => SetupCommand::ConfigureServices(ValidServices {
            calling: Some(CallingSettings {
                country: "PL".into(),
                location: "HQ".into(),
            }),
            meeting: None,
            subdomain: subdomain.map(|s| Subdomain::parse(SUBDOMAINS[s]).unwrap()),
        }),
        Step::Provision { .. } => SetupCommand::Provision,
    }
}

fn order_of(step: &Step) -> usize {
    match step {
        Step::Complete { order, .. }
        | Step::HandOver { order }
        | Step::Services { order, .. }
        | Step::Provision { order } => *order,
    }
}

/// A stored event of any stream.
#[derive(Debug, Clone)]
enum Stored {
    Order(Event),
    Org(OrgEvent),
    Reservation(ReservationEvent),
}

/// The in-memory store: streams of events, appended all-or-nothing with a
/// version check per stream.
#[derive(Default)]
struct Store {
    streams: BTreeMap<String, Vec<Stored>>,
}

/// A decision with the version of every stream it writes, as read.
struct Prepared {
    order: String,
    decision: SetupDecision,
    expected: BTreeMap<String, u64>,
}

impl Store {
    fn version(&self, stream: &str) -> u64 {
        self.streams.get(stream).map_or(0, |s| s.len() as u64)
    }

    fn order_state(&self, order: &str) -> OrderState {
        let events: Vec<Event> = self
            .streams
            .get(&format!("order-{order}"))
            .into_iter()
            .flatten()
            .filter_map(|s| match s {
                Stored::Order(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        OrderState::from_events(&events)
    }

    fn org_state(&self, id: &OrgId) -> OrgState {
        let events: Vec<OrgEvent> = self
            .streams
            .get(&id.stream_id())
            .into_iter()
            .flatten()
            .filter_map(|s| match s {
                Stored::Org(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        OrgState::from_events(&events)
    }

    fn reservation_state(&self, key: &ReservationKey) -> ReservationState {
        let events: Vec<ReservationEvent> = self
            .streams
            .get(&key.stream_id())
            .into_iter()
            .flatten()
            .filter_map(|s| match s {
                Stored::Reservation(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        ReservationState::from_events(&events)
    }

    /// Load what the command needs and decide it; `None` for bad input.
    fn prepare(&self, order: &str, command: &SetupCommand, ctx: &Context) -> Option<Prepared> {
        let state = self.order_state(order);
        let needs = setup_needs(command, &state, &ctx.actor).ok()?;
        let view = SetupView {
            orgs: needs
                .orgs
                .iter()
                .map(|id| (id.clone(), self.org_state(id)))
                .collect(),
            reservations: needs
                .reservations
                .iter()
                .map(|k| (k.clone(), self.reservation_state(k)))
                .collect(),
            order: state,
        };
        let decision = decide_setup(&view, command.clone(), ctx).ok()?;
        let mut expected = BTreeMap::new();
        let order_stream = format!("order-{order}");
        expected.insert(order_stream.clone(), view.order.version);
        for (id, _) in &decision.orgs {
            expected.insert(id.stream_id(), view.org(id).version);
        }
        for (key, _) in &decision.reservations {
            expected.insert(key.stream_id(), view.reservation(key).version);
        }
        Some(Prepared {
            order: order_stream,
            decision,
            expected,
        })
    }

    /// Append all or nothing; `false` on a version conflict.
    fn commit(&mut self, prepared: &Prepared) -> bool {
        if prepared
            .expected
            .iter()
            .any(|(stream, v)| self.version(stream) != *v)
        {
            return false;
        }
        let d = &prepared.decision;
        let order = self.streams.entry(prepared.order.clone()).or_default();
        order.extend(d.order.iter().cloned().map(Stored::Order));
        for (id, events) in &d.orgs {
            let stream = self.streams.entry(id.stream_id()).or_default();
            stream.extend(events.iter().cloned().map(Stored::Org));
        }
        for (key, events) in &d.reservations {
            let stream = self.streams.entry(key.stream_id()).or_default();
            stream.extend(events.iter().cloned().map(Stored::Reservation));
        }
        true
    }

    /// Decide and append, re-deciding after a conflict (bounded).
    fn execute(&mut self, order: &str, command: &SetupCommand, ctx: &Context) {
        for _ in 0..5 {
            let Some(prepared) = self.prepare(order, command, ctx) else {
                return;
            };
            if self.commit(&prepared) {
                return;
            }
        }
        panic!("five conflicts in a row without any other writer");
    }

    fn check_invariants(&self) {
        let mut admins: BTreeMap<String, BTreeSet<OrgId>> = BTreeMap::new();
        let mut subdomains: BTreeMap<Subdomain, BTreeSet<OrgId>> = BTreeMap::new();
        for stream in self.streams.keys() {
            if let Some(id) = OrgId::from_stream_id(stream) {
                let Some(org) = self.org_state(&id).org else {
                    panic!("{stream} has no OrganisationCreated");
                };
                for admin in &org.administrators {
                    admins
                        .entry(admin.identity())
                        .or_default()
                        .insert(id.clone());
                    let holder = self.reservation_state(&ReservationKey::email(admin)).holder;
                    assert_eq!(
                        holder.and_then(|h| h.org_id),
                        Some(id.clone()),
                        "{admin} administers {id} without being reserved to it"
                    );
                }
                if let Some(sd) = &org.subdomain {
                    subdomains.entry(sd.clone()).or_default().insert(id.clone());
                    let holder = self
                        .reservation_state(&ReservationKey::Subdomain(sd.clone()))
                        .holder;
                    assert_eq!(holder.and_then(|h| h.org_id), Some(id.clone()));
                }
            }
            if stream.starts_with("reservation-") {
                assert_eq!(self.version(stream), 1, "{stream} was reserved twice");
            }
        }
        for (email, orgs) in &admins {
            assert_eq!(orgs.len(), 1, "{email} is in two organisations: {orgs:?}");
        }
        for (sd, orgs) in &subdomains {
            assert_eq!(orgs.len(), 1, "{sd} belongs to {orgs:?}");
        }
        for i in 0..ORDERS {
            let mut onboarded_to: Option<OrgId> = None;
            for stored in self
                .streams
                .get(&format!("order-{}", order_id(i)))
                .into_iter()
                .flatten()
            {
                match stored {
                    Stored::Order(Event::OrgOnboarded { org_id, .. }) => {
                        onboarded_to = Some(org_id.clone())
                    }
                    Stored::Order(Event::LineProvisioned {
                        org_id, line_id, ..
                    }) => {
                        assert_eq!(
                            onboarded_to.as_ref(),
                            Some(org_id),
                            "{} line {line_id} provisioned before its PONR or elsewhere",
                            order_id(i)
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn r16_r18_uniqueness_and_provisioning_after_ponr_hold_under_races(
        steps in prop::collection::vec(timed(), 1..40)
    ) {
        let mut store = Store::default();
        for i in 0..ORDERS {
            let mut order = sample_order();
            order.order_id = provledger_domain::OrderId::parse(&order_id(i)).unwrap();
            let placed = placed_order(order, start());
            store
                .streams
                .insert(format!("order-{}", order_id(i)), vec![Stored::Order(placed)]);
        }
        let mut at = start();
        for (minutes, actor, first, race) in steps {
            at += Duration::minutes(minutes);
            let ctx = |a: usize| Context::new(Actor::parse(ACTORS[a]).unwrap(), at);
            match race {
                None => store.execute(&order_id(order_of(&first)), &command(&first), &ctx(actor)),
                Some((other_actor, second)) => {
                    // Both decided against the same snapshot.
                    let a = store.prepare(&order_id(order_of(&first)), &command(&first), &ctx(actor));
                    let b = store.prepare(&order_id(order_of(&second)), &command(&second), &ctx(other_actor));
                    if let Some(a) = a {
                        prop_assert!(store.commit(&a), "the first append of a race cannot conflict");
                    }
                    if let Some(b) = b {
                        if !store.commit(&b) {
                            store.execute(&order_id(order_of(&second)), &command(&second), &ctx(other_actor));
                        }
                    }
                }
            }
            store.check_invariants();
        }
    }
}
