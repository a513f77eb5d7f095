//! Shared helpers for the workspace-level tests: paths into the repository
//! and fresh temporary ledgers.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A store URL for a new SQLite ledger inside `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("ledger.db").display())
}

pub mod gen {
    //! Random scenario scripts for property tests: a few orders, random
    //! contact changes, resends, onboardings, support cases, setup starts and
    //! ticks by random actors (with and without access), at non-decreasing times.

    use chrono::{DateTime, Duration, TimeZone, Utc};
    use proptest::prelude::*;
    use provledger::script::Step;
    use provledger_domain::{LineRequest, OrderRequest};

    const OFFERS: &[&str] = &["A-Flex", "A-Flex-3", "A-WX", "A-SPK", "A-MSG"];
    const CONTACTS: &[&str] = &[
        "it@customer.example",
        "webex@customer.example",
        "admin@customer.example",
        "shared@customer.example",
    ];
    /// Ordering contact, partner contact, distributor contact, and a stranger.
    const ACTORS: &[&str] = &[
        "olivia@partner.example",
        "pat@partner.example",
        "dana@distri.example",
        "mallory@else.example",
    ];

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[derive(Debug, Clone)]
    enum Action {
        Change {
            order: usize,
            line: usize,
            contact: usize,
            all: bool,
        },
        Resend {
            order: usize,
            line: usize,
        },
        Onboard {
            order: usize,
        },
        Case {
            order: usize,
            line: usize,
            resend: bool,
        },
        Setup {
            order: usize,
        },
        Tick,
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            4 => (0..3usize, 0..4usize, 0..CONTACTS.len(), any::<bool>())
                .prop_map(|(order, line, contact, all)| Action::Change { order, line, contact, all }),
            3 => (0..3usize, 0..4usize).prop_map(|(order, line)| Action::Resend { order, line }),
            1 => (0..3usize).prop_map(|order| Action::Onboard { order }),
            1 => (0..3usize, 0..4usize, any::<bool>())
                .prop_map(|(order, line, resend)| Action::Case { order, line, resend }),
            1 => (0..3usize).prop_map(|order| Action::Setup { order }),
            2 => Just(Action::Tick),
        ]
    }

    /// A random script: 1–3 orders of 1–4 lines, then up to `max_actions` actions.
    pub fn script(max_actions: usize) -> impl Strategy<Value = Vec<Step>> {
        let orders = prop::collection::vec(
            prop::collection::vec((0..OFFERS.len(), 0..12i64, 0..CONTACTS.len()), 1..=4),
            1..=3,
        );
        let actions =
            prop::collection::vec((action(), 0..4usize, 0..(3 * 24 * 60i64)), 0..=max_actions);
        (orders, actions).prop_map(|(orders, actions)| {
            let mut steps = Vec::new();
            let mut at = start();
            let line_counts: Vec<usize> = orders.iter().map(Vec::len).collect();
            for (o, lines) in orders.iter().enumerate() {
                at += Duration::minutes(1);
                let order = OrderRequest {
                    order_id: format!("WO-{}", 1000 + o),
                    ordering_contact: ACTORS[0].into(),
                    partner: "Acme Partner".into(),
                    end_customer: format!("Customer {o}"),
                    partner_contacts: vec![ACTORS[1].into()],
                    distributor_contacts: vec![ACTORS[2].into()],
                    lines: lines
                        .iter()
                        .enumerate()
                        .map(|(l, (offer, rsd_days, contact))| LineRequest {
                            line_id: format!("1.{}", l + 1),
                            subscription_id: format!("Sub{}{:02}", 100 + o, l + 1),
                            offer: OFFERS[*offer].into(),
                            rsd: (start() + Duration::days(*rsd_days))
                                .date_naive()
                                .to_string(),
                            provisioning_contact: CONTACTS[*contact].into(),
                        })
                        .collect(),
                };
                steps.push(Step::PlaceOrder {
                    actor: ACTORS[0].into(),
                    at,
                    order,
                });
            }
            for (action, actor, minutes) in actions {
                at += Duration::minutes(minutes);
                let actor = ACTORS[actor].to_string();
                let order_of = |o: usize| o % line_counts.len();
                let id = |o: usize| format!("WO-{}", 1000 + order_of(o));
                let line = |o: usize, l: usize| format!("1.{}", l % line_counts[order_of(o)] + 1);
                steps.push(match action {
                    Action::Change {
                        order,
                        line: l,
                        contact,
                        all,
                    } => Step::ChangeContact {
                        actor,
                        at,
                        order: id(order),
                        line: line(order, l),
                        email: CONTACTS[contact].into(),
                        all_lines: all,
                    },
                    Action::Resend { order, line: l } => Step::ResendEmail {
                        actor,
                        at,
                        order: id(order),
                        line: line(order, l),
                    },
                    Action::Onboard { order } => Step::OnboardOrg {
                        actor,
                        at,
                        order: id(order),
                        org: format!("ORG-{order}"),
                    },
                    Action::Case {
                        order,
                        line: l,
                        resend,
                    } => Step::OpenCase {
                        actor,
                        at,
                        order: id(order),
                        line: line(order, l),
                        request_type: if resend {
                            "resend-provisioning-email"
                        } else {
                            "change-provisioning-contact-email"
                        }
                        .into(),
                        note: None,
                    },
                    Action::Setup { order } => Step::StartSetup {
                        actor,
                        at,
                        order: id(order),
                    },
                    Action::Tick => Step::Tick { now: at },
                });
            }
            steps.push(Step::Tick {
                now: at + Duration::days(40),
            });
            steps
        })
    }
}

pub mod pg {
    //! PostgreSQL test support: a URL for a fresh, private schema, dropped on drop.

    use provledger_store::postgres::{drop_schema, test_url, unique_test_schema, PostgresStore};

    /// A private schema in the test database; dropped when this is dropped.
    pub struct TestSchema {
        base: String,
        /// The schema's name.
        pub schema: String,
        /// A store URL whose connections use only this schema.
        pub url: String,
    }

    impl TestSchema {
        /// A fresh schema, or `None` (with a printed note) when PostgreSQL tests
        /// are not enabled; panics if they are required but not configured.
        pub fn create(tag: &str) -> Option<TestSchema> {
            let base = test_url()?;
            let schema = unique_test_schema(tag);
            PostgresStore::connect_in_schema(&base, &schema).expect("create test schema");
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
            Some(TestSchema { base, schema, url })
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            let _ = drop_schema(&self.base, &self.schema);
        }
    }
}
