//! SQLite and PostgreSQL must be interchangeable: the same random command
//! stream gives identical read models on both, and `migrate` round-trips a
//! ledger SQLite → PostgreSQL → SQLite with identical exports. Skipped (with
//! a note) unless PROVLEDGER_TEST_POSTGRES_URL is set; CI requires them.

use proptest::prelude::*;
use provledger::script::{parse_script, run_script};
use provledger::transfer::{export, migrate};
use provledger::Ledger;
use provledger_projections::{HistoryQuery, LineQuery, TransactionQuery};
use provledger_tests::pg::TestSchema;
use provledger_tests::{gen, sqlite_url};
use serde_json::Value;

fn export_text(ledger: &Ledger) -> String {
    let mut out = Vec::new();
    export(ledger, std::path::Path::new("-"), &mut out).expect("export");
    String::from_utf8(out).expect("utf-8")
}

/// The read models as JSON, without what legitimately differs between two
/// ledgers built from the same commands (the time each store wrote an event,
/// and the hashes that cover it).
fn views(ledger: &Ledger) -> Value {
    let mut history = serde_json::to_value(
        ledger
            .history(&HistoryQuery::default(), None)
            .unwrap_or_default(),
    )
    .expect("json");
    if let Some(rows) = history.as_array_mut() {
        for row in rows {
            if let Some(map) = row.as_object_mut() {
                for volatile in ["recorded_at", "hash", "prev_hash"] {
                    map.remove(volatile);
                }
            }
        }
    }
    let mut all_history = Vec::new();
    for order in 0..3 {
        let query = HistoryQuery {
            order_id: provledger_domain::OrderId::parse(&format!("WO-{}", 1000 + order)).ok(),
            ..HistoryQuery::default()
        };
        let mut rows =
            serde_json::to_value(ledger.history(&query, None).expect("history")).expect("json");
        for row in rows.as_array_mut().into_iter().flatten() {
            if let Some(map) = row.as_object_mut() {
                for volatile in ["recorded_at", "hash", "prev_hash"] {
                    map.remove(volatile);
                }
            }
        }
        all_history.push(rows);
    }
    serde_json::json!({
        "lines": ledger.lines(&LineQuery::default(), None).expect("lines"),
        "transactions": ledger.transactions(&TransactionQuery::default()).expect("transactions"),
        "history": all_history,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_and_postgres_give_identical_read_models(steps in gen::script(20)) {
        let Some(schema) = TestSchema::create("replay") else { return Ok(()); };
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = Ledger::open(&sqlite_url(dir.path())).expect("sqlite");
        let postgres = Ledger::open(&schema.url).expect("postgres");
        let a = run_script(&sqlite, &steps).expect("sqlite run");
        let b = run_script(&postgres, &steps).expect("postgres run");
        prop_assert_eq!(a, b);
        prop_assert_eq!(views(&sqlite), views(&postgres));
        crate::replay::assert_rules_hold(&postgres);
    }
}

#[test]
fn migrate_round_trips_the_demo_ledger_with_identical_exports() {
    let Some(schema) = TestSchema::create("migrate") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let first = format!("sqlite:{}", dir.path().join("first.db").display());
    let back = format!("sqlite:{}", dir.path().join("back.db").display());
    let ledger = Ledger::open(&first).expect("open");
    run_script(
        &ledger,
        &parse_script(provledger::demo::DEMO_SCRIPT).expect("script"),
    )
    .expect("demo");
    let original = export_text(&ledger);
    assert!(original.lines().count() > 20);

    let there = migrate(&first, &schema.url).expect("sqlite → postgres");
    let back_report = migrate(&schema.url, &back).expect("postgres → sqlite");
    assert_eq!(there.head_hash, back_report.head_hash);
    assert_eq!(
        export_text(&Ledger::open(&schema.url).expect("pg")),
        original
    );
    assert_eq!(export_text(&Ledger::open(&back).expect("back")), original);
    let refused = migrate(&first, &schema.url).expect_err("non-empty target");
    assert!(refused.to_string().contains("empty store"), "{refused}");
    // The migrated ledgers answer the same views.
    assert_eq!(views(&Ledger::open(&back).expect("back")), views(&ledger));
    assert_eq!(
        views(&Ledger::open(&schema.url).expect("pg")),
        views(&ledger)
    );
}
