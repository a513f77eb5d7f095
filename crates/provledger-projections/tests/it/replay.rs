//! Rebuild equals incremental maintenance, and point-in-time replay equals
//! the read model: the projections are a pure function of the events.

use proptest::prelude::*;
use provledger_domain::Command;
use provledger_projections::{
    history_as_of, lines_as_of, AsOf, HistoryQuery, LineQuery, ReadModels,
};

use provledger_store::EventStore;

use crate::support::*;

#[test]
fn lines_as_of_the_last_event_equal_the_read_model() {
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    ledger
        .exec(
            "WO-1001",
            PAT,
            "2026-11-21T09:00:00Z",
            change("1.2", "new@customer.example", false),
        )
        .unwrap();
    ledger
        .exec("WO-1001", OLIVIA, "2026-12-03T09:00:00Z", resend("1.1"))
        .unwrap();
    ledger.tick("WO-1001", "2026-12-20T00:00:00Z");
    let models = ledger.models();
    models.catch_up(&ledger.store).unwrap();

    let last = ledger.store.read_all(0).unwrap().last().unwrap().unwrap();
    for q in [
        LineQuery::default(),
        LineQuery {
            order_id: Some(order("WO-1001")),
            ..LineQuery::default()
        },
        LineQuery {
            subscription_id: Some(sub("Sub100043")),
            ..LineQuery::default()
        },
    ] {
        let expected = models.lines(&q).unwrap();
        assert!(!expected.is_empty());
        assert_eq!(
            lines_as_of(&ledger.store, &q, AsOf::Time(last.occurred_at)).unwrap(),
            expected
        );
        assert_eq!(
            lines_as_of(&ledger.store, &q, AsOf::Position(last.position)).unwrap(),
            expected
        );
    }
    for q in [
        HistoryQuery {
            order_id: Some(order("WO-1001")),
            ..HistoryQuery::default()
        },
        HistoryQuery {
            subscription_id: Some(sub("Sub100042")),
            ..HistoryQuery::default()
        },
    ] {
        let expected = models.history(&ledger.store, &q).unwrap();
        assert_eq!(
            history_as_of(&ledger.store, &q, AsOf::Position(last.position)).unwrap(),
            expected
        );
    }
}

#[test]
fn read_models_as_of_reads_few_streams_and_agrees_with_the_full_replay() {
    let mut ledger = crate::concurrency::busy_ledger(6);
    // The same subscription id in two orders (ids are unique per order only).
    ledger
        .exec(
            "WO-X",
            OLIVIA,
            "2026-12-03T00:00:00Z",
            place(
                "WO-X",
                &[("9", "Sub00021", "A-WX", "2027-01-01", "x@customer.example")],
            ),
        )
        .unwrap();
    let models = ledger.models();
    for sub_id in ["Sub00021", "Sub00052", "Sub99999"] {
        for at in [
            "2026-11-01T00:00:00Z",
            "2026-11-21T10:00:00Z",
            "2026-12-02T10:00:00Z",
            "2027-01-01T00:00:00Z",
        ] {
            let as_of = AsOf::Time(t(at));
            let q = LineQuery {
                subscription_id: Some(sub(sub_id)),
                ..LineQuery::default()
            };
            assert_eq!(
                models.lines_as_of(&ledger.store, &q, as_of).unwrap(),
                lines_as_of(&ledger.store, &q, as_of).unwrap(),
                "{sub_id} at {at}"
            );
            let q = HistoryQuery {
                subscription_id: Some(sub(sub_id)),
                ..HistoryQuery::default()
            };
            assert_eq!(
                models.history_as_of(&ledger.store, &q, as_of).unwrap(),
                history_as_of(&ledger.store, &q, as_of).unwrap(),
                "{sub_id} at {at}"
            );
        }
    }
    let q = LineQuery {
        subscription_id: Some(sub("Sub00021")),
        ..LineQuery::default()
    };
    let both = models
        .lines_as_of(&ledger.store, &q, AsOf::Position(ledger.head()))
        .unwrap();
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both, models.lines(&q).unwrap());
}

#[test]
fn as_of_in_the_past_shows_the_earlier_contact() {
    let mut ledger = Ledger::new();
    place_wo1001_now(&mut ledger);
    ledger
        .exec(
            "WO-1001",
            PAT,
            "2026-11-25T09:00:00Z",
            change("1.1", "new@customer.example", false),
        )
        .unwrap();
    let q = LineQuery {
        subscription_id: Some(sub("Sub100042")),
        ..LineQuery::default()
    };
    let before = lines_as_of(&ledger.store, &q, AsOf::Time(t("2026-11-25T08:59:59Z"))).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].provisioning_contact, "it@customer.example");
    let at = lines_as_of(&ledger.store, &q, AsOf::Time(t("2026-11-25T09:00:00Z"))).unwrap();
    assert_eq!(at[0].provisioning_contact, "new@customer.example");
    // Before the order existed there was nothing.
    assert!(
        lines_as_of(&ledger.store, &q, AsOf::Time(t("2026-01-01T00:00:00Z")))
            .unwrap()
            .is_empty()
    );
    // By position: after the placement only.
    let first = lines_as_of(&ledger.store, &LineQuery::default(), AsOf::Position(1)).unwrap();
    assert_eq!(first[0].provisioning_contact, "it@customer.example");
    let history = history_as_of(
        &ledger.store,
        &HistoryQuery {
            order_id: Some(order("WO-1001")),
            ..HistoryQuery::default()
        },
        AsOf::Time(t("2026-11-24T00:00:00Z")),
    )
    .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].event_type, "OrderPlaced");
}

#[test]
fn rebuild_reports_progress_and_equals_incremental() {
    let mut ledger = Ledger::new();
    let models = ledger.models().with_batch_size(3);
    place_wo1001_now(&mut ledger);
    models.catch_up(&ledger.store).unwrap();
    change_all_lines(&mut ledger);
    ledger
        .exec("WO-1001", OLIVIA, "2026-12-03T09:00:00Z", resend("1.1"))
        .unwrap();
    assert_eq!(models.catch_up(&ledger.store).unwrap(), ledger.head() - 1);
    assert_eq!(models.catch_up(&ledger.store).unwrap(), 0);
    let incremental = models.dump().unwrap();

    let mut reports = Vec::new();
    let applied = models
        .rebuild(&ledger.store, &mut |n| reports.push(n))
        .unwrap();
    assert_eq!(applied, ledger.head());
    assert_eq!(reports, vec![applied]);
    assert_eq!(models.dump().unwrap(), incremental);
    assert_eq!(models.checkpoint().unwrap(), ledger.head());

    // A fresh handle with the default batch size agrees too.
    let fresh = ReadModels::open(&ledger.url).unwrap();
    assert_eq!(fresh.dump().unwrap(), incremental);
}

/// One step of a random life of two orders.
#[derive(Debug, Clone)]
enum Step {
    Change {
        order: usize,
        line: usize,
        to: usize,
        all: bool,
        actor: usize,
    },
    Resend {
        order: usize,
        line: usize,
        actor: usize,
    },
    Onboard {
        order: usize,
        actor: usize,
    },
    Case {
        order: usize,
        line: usize,
        actor: usize,
    },
    Setup {
        order: usize,
        actor: usize,
    },
    Tick {
        order: usize,
    },
    CatchUp,
}

const ORDERS: [&str; 2] = ["WO-1", "WO-2"];
const ACTORS: [&str; 3] = [OLIVIA, PAT, EVE];
const EMAILS: [&str; 3] = [
    "a@customer.example",
    "b@customer.example",
    "it@customer.example",
];

fn step() -> impl Strategy<Value = (u32, Step)> {
    let o = 0..ORDERS.len();
    let a = 0..ACTORS.len();
    let step = prop_oneof![
        3 => (o.clone(), 0..2usize, 0..EMAILS.len(), any::<bool>(), a.clone())
            .prop_map(|(order, line, to, all, actor)| Step::Change { order, line, to, all, actor }),
        2 => (o.clone(), 0..2usize, a.clone())
            .prop_map(|(order, line, actor)| Step::Resend { order, line, actor }),
        1 => (o.clone(), a.clone()).prop_map(|(order, actor)| Step::Onboard { order, actor }),
        1 => (o.clone(), 0..2usize, a.clone())
            .prop_map(|(order, line, actor)| Step::Case { order, line, actor }),
        1 => (o.clone(), a).prop_map(|(order, actor)| Step::Setup { order, actor }),
        2 => o.prop_map(|order| Step::Tick { order }),
        2 => Just(Step::CatchUp),
    ];
    // Hours since the previous step: the RSD, escalations and the 7-day
    // window all fall inside a run.
    (0..72u32, step)
}

fn command(step: &Step) -> Option<(usize, usize, Command)> {
    let line_id = |line: usize| if line == 0 { "1" } else { "2" };
    Some(match step {
        Step::Change {
            order,
            line,
            to,
            all,
            actor,
        } => (*order, *actor, change(line_id(*line), EMAILS[*to], *all)),
        Step::Resend { order, line, actor } => (*order, *actor, resend(line_id(*line))),
        Step::Onboard { order, actor } => (*order, *actor, onboard("org-9")),
        Step::Case { order, line, actor } => (*order, *actor, case(line_id(*line))),
        Step::Setup { order, actor } => (*order, *actor, Command::StartSetup),
        Step::Tick { .. } | Step::CatchUp => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// DESIGN.md §2: a rebuild equals the incrementally maintained result,
    /// byte for byte, whatever the batch boundaries; and the in-memory
    /// replay agrees with the read model.
    #[test]
    fn rebuild_equals_incremental(
        steps in proptest::collection::vec(step(), 1..40),
        batch in 1..6usize,
    ) {
        let mut ledger = Ledger::new();
        let models = ledger.models().with_batch_size(batch);
        let mut now = t("2026-11-25T00:00:00Z");
        for (i, order_id) in ORDERS.iter().enumerate() {
            let offer = if i == 0 { "A-Flex" } else { "A-WX" };
            ledger.exec(order_id, OLIVIA, &now.to_rfc3339(), place(order_id, &[
                ("1", &format!("Sub{i}01"), offer, "2026-12-01", "it@customer.example"),
                ("2", &format!("Sub{i}02"), "A-Flex-3", "2026-12-03", "ops@customer.example"),
            ])).unwrap();
        }
        for (hours, step) in &steps {
            now += chrono::Duration::hours(i64::from(*hours));
            let at = now.to_rfc3339();
            match (step, command(step)) {
                (Step::CatchUp, _) => {
                    models.catch_up(&ledger.store).unwrap();
                }
                (Step::Tick { order }, _) => {
                    ledger.tick(ORDERS[*order], &at);
                }
                (_, Some((order, actor, command))) => {
                    // Bad input (no change to make) writes nothing; fine.
                    let _ = ledger.exec(ORDERS[order], ACTORS[actor], &at, command);
                }
                (_, None) => {}
            }
        }
        models.catch_up(&ledger.store).unwrap();
        prop_assert_eq!(models.checkpoint().unwrap(), ledger.head());
        let incremental = models.dump().unwrap();
        let lines = models.lines(&LineQuery::default()).unwrap();
        let replayed = lines_as_of(&ledger.store, &LineQuery::default(), AsOf::Position(ledger.head())).unwrap();
        prop_assert_eq!(&replayed, &lines);
        let history = models.history(&ledger.store, &HistoryQuery::default()).unwrap();
        let replayed = history_as_of(&ledger.store, &HistoryQuery::default(), AsOf::Position(ledger.head())).unwrap();
        prop_assert_eq!(&replayed, &history);

        let rebuilt = ReadModels::open(&ledger.url).unwrap();
        rebuilt.rebuild(&ledger.store, &mut |_| {}).unwrap();
        prop_assert_eq!(rebuilt.dump().unwrap(), incremental);
    }
}
