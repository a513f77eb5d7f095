//! Setup properties through the whole application (SQLite, scripts, read
//! models): random setups, hand-overs, service setups and provisionings
//! across three orders, naming administrators and subdomains from small
//! overlapping pools, mixed with contact changes and ticks. Whatever
//! happens:
//!
//! * no email is ever an administrator of two organisations, and every
//!   administrator is reserved to their own (R16);
//! * no reservation stream holds more than one event — no email or
//!   subdomain is ever reserved twice — and an organisation's subdomain is
//!   reserved to it (R18);
//! * no line is provisioned before its order's PONR (R18), and a provisioned
//!   line shows `provisioned` with billing started;
//! * the order-stream rules and the replay invariants of `replay.rs` hold
//!   (every refusal a failed transaction; rebuild equals incremental).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use provledger::script::{run_script, Step};
use provledger::Ledger;
use provledger_domain::{
    CallingRequest, EnterpriseRequest, LineRequest, NewOrgRequest, OrderRequest, OrgChoiceRequest,
    OrgId, ReservationKey, ServicesRequest, SetupRequest, Subdomain, ORG_STREAM_PREFIX,
    RESERVATION_STREAM_PREFIX,
};
use provledger_projections::LineQuery;
use provledger_tests::sqlite_url;

use crate::replay::assert_rules_hold;

const ORDERS: usize = 3;
const PARTNER: [&str; 3] = [
    "olivia@partner.example",
    "pat@partner.example",
    "sam@partner.example",
];
const ADMINS: [&str; 4] = [
    "a1@customer.example",
    "A1@Customer.example",
    "a2@customer.example",
    "pat@partner.example",
];
const SUBDOMAINS: [&str; 2] = ["contoso", "contoso-eu"];

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

fn order_id(i: usize) -> String {
    format!("WO-{}", 1000 + i)
}

#[derive(Debug, Clone)]
enum Action {
    Complete {
        order: usize,
        who: usize,
        partner: Option<usize>,
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
    Change {
        order: usize,
    },
    Tick,
}

fn action() -> impl Strategy<Value = Action> {
    let o = 0..ORDERS;
    prop_oneof![
        4 => (o.clone(), 0..2usize, prop::option::of(0..ORDERS), prop::option::of(0..ORDERS), 0..ADMINS.len())
            .prop_map(|(order, who, partner, customer, admin)| Action::Complete { order, who, partner, customer, admin }),
        1 => o.clone().prop_map(|order| Action::HandOver { order }),
        3 => (o.clone(), prop::option::of(0..SUBDOMAINS.len()))
            .prop_map(|(order, subdomain)| Action::Services { order, subdomain }),
        2 => o.clone().prop_map(|order| Action::Provision { order }),
        1 => o.prop_map(|order| Action::Change { order }),
        1 => Just(Action::Tick),
    ]
}

/// The actor: a partner user, or a customer administrator (index past PARTNER).
fn actor(index: usize) -> String {
    if index < PARTNER.len() {
        PARTNER[index].to_string()
    } else {
        ADMINS[(index - PARTNER.len()) % ADMINS.len()].to_string()
    }
}

/// Order `i`: two lines (A-Flex, A-WX), RSD 2026-11-23, for the same
/// partner and customer.
fn place(i: usize, at: DateTime<Utc>) -> Step {
    Step::PlaceOrder {
        actor: PARTNER[0].into(),
        at,
        order: OrderRequest {
            order_id: order_id(i),
            ordering_contact: PARTNER[0].into(),
            partner: "Acme Partner".into(),
            end_customer: "Contoso Ltd".into(),
            partner_contacts: vec![PARTNER[1].into()],
            distributor_contacts: vec![],
            lines: ["A-Flex", "A-WX"]
                .iter()
                .enumerate()
                .map(|(l, offer)| LineRequest {
                    line_id: format!("1.{}", l + 1),
                    subscription_id: format!("Sub{}{}", 500 + i, l + 1),
                    offer: (*offer).into(),
                    rsd: "2026-11-23".into(),
                    provisioning_contact: "it@customer.example".into(),
                })
                .collect(),
        },
    }
}

fn script() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((action(), 0..(PARTNER.len() + 2), 0..600i64), 1..28).prop_map(
        |actions| {
            let mut steps = Vec::new();
            let mut at = start();
            for i in 0..ORDERS {
                at += Duration::minutes(1);
                steps.push(place(i, at));
            }
            for (action, who, minutes) in actions {
                at += Duration::minutes(minutes);
                let actor = actor(who);
                steps.push(match action {
                    Action::Complete {
                        order,
                        who,
                        partner,
                        customer,
                        admin,
                    } => {
                        let choice = |existing: Option<usize>, prefix: &str| match existing {
                            None => OrgChoiceRequest {
                                new: Some(NewOrgRequest::default()),
                                existing: None,
                            },
                            Some(k) => OrgChoiceRequest {
                                new: None,
                                existing: Some(format!("{prefix}{}", order_id(k))),
                            },
                        };
                        Step::CompleteSetup {
                            actor,
                            at,
                            setup: SetupRequest {
                                order_id: order_id(order),
                                role: Some("partner".into()),
                                who_sets_up: Some(["me", "customer"][who].into()),
                                partner_organisation: Some(choice(partner, "PORG-")),
                                customer_organisation: Some(choice(customer, "ORG-")),
                                customer_admin_email: Some(ADMINS[admin].into()),
                                confirm_customer: Some(true),
                                confirm_partner: Some(true),
                                ..SetupRequest::default()
                            },
                        }
                    }
                    Action::HandOver { order } => Step::CompleteSetup {
                        actor,
                        at,
                        setup: SetupRequest {
                            order_id: order_id(order),
                            role: Some("partner".into()),
                            who_sets_up: Some("someone_else".into()),
                            someone_else_email: Some(PARTNER[2].into()),
                            ..SetupRequest::default()
                        },
                    },
                    Action::Services { order, subdomain } => Step::ConfigureServices {
                        actor,
                        at,
                        order: order_id(order),
                        services: ServicesRequest {
                            calling: Some(CallingRequest {
                                country: "PL".into(),
                                location: "HQ".into(),
                            }),
                            meeting: None,
                            enterprise: subdomain.map(|s| EnterpriseRequest {
                                subdomain: SUBDOMAINS[s].into(),
                            }),
                        },
                    },
                    Action::Provision { order } => Step::Provision {
                        actor,
                        at,
                        order: order_id(order),
                    },
                    Action::Change { order } => Step::ChangeContact {
                        actor,
                        at,
                        order: order_id(order),
                        line: "1.1".into(),
                        email: format!("contact-{}@customer.example", at.timestamp()),
                        all_lines: false,
                    },
                    Action::Tick => Step::Tick { now: at },
                });
            }
            steps.push(Step::Tick {
                now: at + Duration::days(40),
            });
            steps
        },
    )
}

/// R16 and R18 over the organisation and reservation streams.
fn assert_uniqueness(ledger: &Ledger) {
    let store = ledger.store();
    let mut admins: BTreeMap<String, BTreeSet<OrgId>> = BTreeMap::new();
    let mut subdomains: BTreeMap<Subdomain, BTreeSet<OrgId>> = BTreeMap::new();
    for stream in store.stream_ids(ORG_STREAM_PREFIX).expect("org streams") {
        let org_id = OrgId::from_stream_id(&stream).expect("an organisation stream");
        let org = ledger
            .load_org(&org_id)
            .expect("readable")
            .org
            .expect("created first");
        for admin in &org.administrators {
            admins
                .entry(admin.identity())
                .or_default()
                .insert(org_id.clone());
            let holder = ledger
                .load_reservation(&ReservationKey::email(admin))
                .expect("readable")
                .holder;
            assert_eq!(
                holder.and_then(|h| h.org_id),
                Some(org_id.clone()),
                "{admin}"
            );
        }
        if let Some(sd) = org.subdomain {
            let holder = ledger
                .load_reservation(&ReservationKey::Subdomain(sd.clone()))
                .expect("readable")
                .holder;
            assert_eq!(holder.and_then(|h| h.org_id), Some(org_id.clone()), "{sd}");
            subdomains.entry(sd).or_default().insert(org_id);
        }
    }
    for (email, orgs) in admins {
        assert_eq!(orgs.len(), 1, "{email} is in {orgs:?} (R16)");
    }
    for (sd, orgs) in subdomains {
        assert_eq!(orgs.len(), 1, "{sd} belongs to {orgs:?} (R18)");
    }
    for stream in store
        .stream_ids(RESERVATION_STREAM_PREFIX)
        .expect("reservations")
    {
        assert_eq!(
            store.stream_version(&stream).expect("version"),
            1,
            "{stream} was reserved twice"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn r16_r18_setups_keep_emails_and_subdomains_unique_and_provision_after_ponr(steps in script()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&sqlite_url(dir.path())).expect("open");
        run_script(&ledger, &steps).expect("script runs");
        assert_rules_hold(&ledger);
        assert_uniqueness(&ledger);
        for line in ledger.lines(&LineQuery::default(), None).expect("lines") {
            if line.status == "provisioned" {
                prop_assert!(line.billing_started && !line.provisioning_pending && line.org_id.is_some());
            }
        }
        let incremental = ledger.read_models().dump().expect("dump");
        ledger.rebuild(&mut |_| {}).expect("rebuild");
        prop_assert_eq!(ledger.read_models().dump().expect("dump"), incremental);
    }
}

/// Two threads, each with its own ledger handle, released together.
fn race_on(url: &str, steps: [Step; 2]) -> Vec<provledger::OutcomeStatus> {
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = steps
            .iter()
            .map(|step| {
                let barrier = &barrier;
                s.spawn(move || {
                    let ledger = Ledger::open(url).expect("open");
                    let prepared = step.prepare_setup().expect("valid").expect("a setup step");
                    barrier.wait();
                    ledger
                        .execute_setup(
                            &prepared.order_id,
                            prepared.command,
                            &prepared.context,
                            None,
                        )
                        .expect("decided")
                        .status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
}

#[test]
fn r16_r18_races_on_postgres_leave_one_winner_and_one_refusal() {
    use provledger::OutcomeStatus::{Failed, Success};
    use provledger_projections::{TransactionQuery, TransactionStatus};
    let Some(schema) = provledger_tests::pg::TestSchema::create("setup_race") else {
        return;
    };
    let ledger = Ledger::open(&schema.url).expect("open");
    let places: Vec<Step> = (0..ORDERS).map(|i| place(i, start())).collect();
    run_script(&ledger, &places).expect("placed");
    let at = start() + Duration::days(1);
    let complete = |order: usize, actor: &str, partner: Option<&str>| Step::CompleteSetup {
        actor: actor.into(),
        at,
        setup: SetupRequest {
            order_id: order_id(order),
            role: Some("partner".into()),
            who_sets_up: Some("me".into()),
            partner_organisation: Some(OrgChoiceRequest {
                new: partner.is_none().then(NewOrgRequest::default),
                existing: partner.map(str::to_string),
            }),
            customer_organisation: Some(OrgChoiceRequest {
                new: Some(NewOrgRequest::default()),
                existing: None,
            }),
            customer_admin_email: Some(ADMINS[0].into()),
            confirm_customer: Some(true),
            confirm_partner: Some(true),
            ..SetupRequest::default()
        },
    };
    // R16: the same administrator for two orders.
    let mut outcomes = race_on(
        &schema.url,
        [complete(0, PARTNER[1], None), complete(1, PARTNER[0], None)],
    );
    outcomes.sort_by_key(|s| *s == Failed);
    assert_eq!(outcomes, vec![Success, Failed]);
    // Whichever won, order 2 is onboarded too (its own partner organisation
    // with its own administrator), for a subdomain race.
    let mut third = complete(2, PARTNER[1], None);
    if let Step::CompleteSetup { setup, .. } = &mut third {
        setup.customer_admin_email = Some(ADMINS[2].into());
        setup.partner_organisation = Some(OrgChoiceRequest {
            new: Some(NewOrgRequest {
                name: None,
                admin_email: Some("partner-admin@partner.example".into()),
            }),
            existing: None,
        });
    }
    run_script(&ledger, &[third]).expect("third setup");
    let onboarded: Vec<String> = ledger
        .lines(&LineQuery::default(), None)
        .expect("lines")
        .into_iter()
        .filter(|l| l.status == "onboarded")
        .map(|l| l.order_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(onboarded.len(), 2, "{onboarded:?}");
    let services = |order: &str| Step::ConfigureServices {
        actor: PARTNER[1].into(),
        at: at + Duration::hours(1),
        order: order.into(),
        services: ServicesRequest {
            enterprise: Some(EnterpriseRequest {
                subdomain: SUBDOMAINS[0].into(),
            }),
            ..ServicesRequest::default()
        },
    };
    let mut outcomes = race_on(
        &schema.url,
        [services(&onboarded[0]), services(&onboarded[1])],
    );
    outcomes.sort_by_key(|s| *s == Failed);
    assert_eq!(outcomes, vec![Success, Failed]);
    let failed = ledger
        .transactions(&TransactionQuery {
            status: Some(TransactionStatus::Failed),
            ..TransactionQuery::default()
        })
        .expect("transactions");
    let mut codes: Vec<String> = failed
        .iter()
        .filter(|t| t.reason_code.as_deref() != Some("services_not_set_up"))
        .map(|t| {
            format!(
                "{} {}",
                t.transaction_id,
                t.reason_code.clone().unwrap_or_default()
            )
        })
        .collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 2, "{codes:?}");
    assert!(
        codes.iter().any(|c| c.ends_with("email_taken")),
        "{codes:?}"
    );
    assert!(
        codes.iter().any(|c| c.ends_with("subdomain_taken")),
        "{codes:?}"
    );
    assert!(ledger.verify(&mut |_| {}).expect("verify").is_intact());
    assert_uniqueness(&ledger);
}
