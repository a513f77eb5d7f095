//! Replay properties over random scenario scripts (tests/src/lib.rs `gen`):
//! a rebuild from position 0 equals the incrementally maintained read models
//! byte for byte; `--as-of` the last event equals the current state; and the
//! rules hold on every stream of the resulting ledger.

use std::collections::HashMap;

use proptest::prelude::*;
use provledger::script::run_script;
use provledger::Ledger;
use provledger_domain::{Event, OrderId, ORG_STREAM_PREFIX, RESERVATION_STREAM_PREFIX};
use provledger_projections::{AsOf, HistoryQuery, LineQuery, TransactionQuery, TransactionStatus};
use provledger_tests::{gen, sqlite_url};

/// Check R3–R8, R12 over every order stream of the ledger.
pub fn assert_rules_hold(ledger: &Ledger) {
    let mut streams: HashMap<String, Vec<(chrono::DateTime<chrono::Utc>, Event)>> = HashMap::new();
    for recorded in ledger.store().read_all(0).expect("read") {
        let recorded = recorded.expect("event");
        if OrderId::from_stream_id(&recorded.stream_id).is_none() {
            // Organisation and reservation streams (R14-R18) hold other event
            // types; tests/it/setup_props.rs checks them.
            assert!(
                recorded.stream_id.starts_with(ORG_STREAM_PREFIX)
                    || recorded.stream_id.starts_with(RESERVATION_STREAM_PREFIX),
                "unexpected stream {}",
                recorded.stream_id
            );
            continue;
        }
        let event = Event::from_stored(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        )
        .expect("decodable");
        assert_eq!(
            recorded.occurred_at,
            event.at(),
            "occurred_at is the event's business time"
        );
        streams
            .entry(recorded.stream_id.clone())
            .or_default()
            .push((recorded.occurred_at, event));
    }
    let refusals: usize = streams
        .values()
        .flatten()
        .filter(|(_, e)| e.is_refusal())
        .count();
    for (stream, events) in &streams {
        assert!(
            OrderId::from_stream_id(stream).is_some(),
            "unexpected stream {stream}"
        );
        let mut onboarded = false;
        let mut last = None;
        for (at, event) in events {
            if let Some(prev) = last {
                assert!(*at >= prev, "{stream}: business time went backwards");
            }
            last = Some(*at);
            if onboarded {
                assert!(
                    !matches!(
                        event,
                        Event::ProvisioningContactChanged { .. }
                            | Event::ProvisioningEmailResent { .. }
                            | Event::SupportCaseOpened { .. }
                            | Event::InitialEmailSent { .. }
                            | Event::LineClosed { .. }
                            | Event::EscalationRaised { .. }
                    ),
                    "{stream}: {} accepted after PONR (R5)",
                    event.event_type()
                );
            }
            if matches!(event, Event::LineProvisioned { .. }) {
                assert!(onboarded, "{stream}: a line provisioned before PONR (R18)");
            }
            if matches!(event, Event::OrgOnboarded { .. }) {
                onboarded = true;
            }
        }
    }
    // R12: every refusal is visible in the Transaction Manager as failed.
    let failed = ledger
        .transactions(&TransactionQuery {
            status: Some(TransactionStatus::Failed),
            ..TransactionQuery::default()
        })
        .expect("transactions");
    let failed_transactions: std::collections::HashSet<_> =
        failed.iter().map(|t| t.transaction_id.clone()).collect();
    assert_eq!(
        failed_transactions.len(),
        refusals,
        "every refusal is a failed transaction"
    );
    assert!(failed
        .iter()
        .all(|t| t.reason.as_deref().is_some_and(|r| !r.is_empty())));
    assert!(ledger.verify(&mut |_| {}).expect("verify").is_intact());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn rebuild_equals_incremental_and_as_of_equals_current(steps in gen::script(25)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&sqlite_url(dir.path())).expect("open");
        run_script(&ledger, &steps).expect("script runs");
        assert_rules_hold(&ledger);

        let incremental = ledger.read_models().dump().expect("dump");
        ledger.rebuild(&mut |_| {}).expect("rebuild");
        prop_assert_eq!(&ledger.read_models().dump().expect("dump"), &incremental);

        let last = ledger.store().head().expect("head").expect("events").position;
        // The latest business time, which need not be the last position's:
        // one tick appends several orders' transitions, each at its due time.
        let last_at = ledger
            .store()
            .read_all(0)
            .expect("read")
            .map(|e| e.expect("event").occurred_at)
            .max()
            .expect("events");
        let lines = ledger.lines(&LineQuery::default(), None).expect("lines");
        prop_assert_eq!(ledger.lines(&LineQuery::default(), Some(AsOf::Time(last_at))).expect("as of"), lines.clone());
        prop_assert_eq!(ledger.lines(&LineQuery::default(), Some(AsOf::Position(last))).expect("as of"), lines);
        for order in 0..3 {
            let query = HistoryQuery { order_id: Some(OrderId::parse(&format!("WO-{}", 1000 + order)).expect("id")), ..HistoryQuery::default() };
            prop_assert_eq!(
                ledger.history(&query, Some(AsOf::Position(last))).expect("as of"),
                ledger.history(&query, None).expect("history")
            );
        }
    }
}
