//! The PostgreSQL backend gives the same read models as SQLite, and workers
//! sharing a database apply each event once.
//!
//! Runs when `PROVLEDGER_TEST_POSTGRES_URL` is set (each test in its own
//! schema, dropped afterwards); `PROVLEDGER_REQUIRE_POSTGRES=1` makes a
//! missing URL a failure.

use std::sync::Barrier;

use provledger_projections::{
    HistoryQuery, LineQuery, ReadModels, TransactionQuery, TransactionStatus, TransactionType,
};
use provledger_store::postgres::{drop_schema, test_url, unique_test_schema, PostgresStore};
use provledger_store::EventStore;

use crate::concurrency::busy_ledger;
use crate::support::*;

/// A test schema, dropped when the test ends (pass or fail).
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str, tag: &str) -> Schema {
        Schema {
            url: url.to_string(),
            name: unique_test_schema(tag),
        }
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::connect_in_schema(&self.url, &self.name).unwrap()
    }

    fn models(&self) -> ReadModels {
        ReadModels::open_in_schema(&self.url, &self.name).unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = drop_schema(&self.url, &self.name);
    }
}

/// Copy every event of `from` into `to`, hashes and times included.
fn copy_events(from: &dyn EventStore, to: &dyn EventStore) {
    let events: Vec<_> = from.read_all(0).unwrap().map(Result::unwrap).collect();
    to.import_batch(&events).unwrap();
}

#[test]
fn postgres_read_models_equal_sqlites() {
    let Some(url) = test_url() else { return };
    let ledger = busy_ledger(12);
    let sqlite = ledger.models();
    sqlite.catch_up(&ledger.store).unwrap();

    let schema = Schema::new(&url, "rm_equal");
    let store = schema.store();
    copy_events(&ledger.store, &store);
    let pg = schema.models().with_batch_size(17);
    assert_eq!(pg.catch_up(&store).unwrap(), ledger.head());
    assert_eq!(pg.dump().unwrap(), sqlite.dump().unwrap());

    for q in [
        LineQuery::default(),
        LineQuery {
            subscription_id: Some(sub("Sub00031")),
            ..LineQuery::default()
        },
        LineQuery {
            order_id: Some(order("WO-0004")),
            subscription_id: Some(sub("Sub00042")),
        },
    ] {
        assert_eq!(pg.lines(&q).unwrap(), sqlite.lines(&q).unwrap(), "{q:?}");
    }
    for q in [
        TransactionQuery {
            tx_type: Some(TransactionType::ProvisioningEmailUpdate),
            subscription_id: Some(sub("Sub00021")),
            ..TransactionQuery::default()
        },
        TransactionQuery {
            status: Some(TransactionStatus::Success),
            since: Some(t("2026-12-02T10:00:00Z")),
            until: Some(t("2026-12-04T10:00:00Z")),
            limit: Some(5),
            ..TransactionQuery::default()
        },
        TransactionQuery {
            order_id: Some(order("WO-0003")),
            ..TransactionQuery::default()
        },
    ] {
        let rows = pg.transactions(&q).unwrap();
        assert!(!rows.is_empty(), "{q:?}");
        assert_eq!(rows, sqlite.transactions(&q).unwrap(), "{q:?}");
    }
    for q in [
        HistoryQuery {
            subscription_id: Some(sub("Sub00032")),
            ..HistoryQuery::default()
        },
        HistoryQuery {
            order_id: Some(order("WO-0007")),
            ..HistoryQuery::default()
        },
    ] {
        assert_eq!(
            pg.history(&store, &q).unwrap(),
            sqlite.history(&ledger.store, &q).unwrap(),
            "{q:?}"
        );
    }
    let now = t("2026-12-20T00:00:00Z");
    assert_eq!(pg.orders_due(now).unwrap(), sqlite.orders_due(now).unwrap());

    let mut reports = Vec::new();
    pg.rebuild(&store, &mut |n| reports.push(n)).unwrap();
    assert_eq!(reports, vec![ledger.head()]);
    assert_eq!(pg.dump().unwrap(), sqlite.dump().unwrap());
}

#[test]
fn postgres_workers_apply_each_event_once() {
    let Some(url) = test_url() else { return };
    let ledger = busy_ledger(30);
    let schema = Schema::new(&url, "rm_workers");
    copy_events(&ledger.store, &schema.store());

    let workers: Vec<ReadModels> = (0..3).map(|_| schema.models().with_batch_size(7)).collect();
    let barrier = Barrier::new(workers.len());
    let applied: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter()
            .map(|models| {
                let barrier = &barrier;
                let schema = &schema;
                scope.spawn(move || {
                    let store = schema.store();
                    barrier.wait();
                    models.catch_up(&store).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(applied.iter().sum::<u64>(), ledger.head(), "{applied:?}");

    let sqlite = ledger.models();
    sqlite.catch_up(&ledger.store).unwrap();
    assert_eq!(workers[0].dump().unwrap(), sqlite.dump().unwrap());
}

#[test]
fn postgres_schemas_keep_ledgers_apart() {
    let Some(url) = test_url() else { return };
    let one = Schema::new(&url, "rm_one");
    let two = Schema::new(&url, "rm_two");
    let ledger = busy_ledger(2);
    let store = one.store();
    copy_events(&ledger.store, &store);
    let models = one.models();
    models.catch_up(&store).unwrap();
    assert_eq!(models.checkpoint().unwrap(), ledger.head());
    assert_eq!(two.models().checkpoint().unwrap(), 0);
    assert!(two
        .models()
        .lines(&LineQuery::default())
        .unwrap()
        .is_empty());
    assert!(ReadModels::open_in_schema(&url, "Bad-Name").is_err());
}

#[test]
fn postgres_a_failed_batch_leaves_the_checkpoint_and_a_successor_resumes() {
    let Some(url) = test_url() else { return };
    let ledger = busy_ledger(3);
    let schema = Schema::new(&url, "rm_resume");
    let store = schema.store();
    copy_events(&ledger.store, &store);
    let models = schema.models();
    // A trigger refuses every new line, as a broken database would: the
    // first batch (it places orders) fails as a whole.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE FUNCTION \"{0}\".refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON \"{0}\".rm_lines \
             FOR EACH ROW EXECUTE FUNCTION \"{0}\".refuse();",
            schema.name
        ))
        .unwrap();
    assert!(models.catch_up(&store).is_err());
    assert_eq!(models.checkpoint().unwrap(), 0);
    assert!(models.lines(&LineQuery::default()).unwrap().is_empty());
    client
        .batch_execute(&format!(
            "DROP TRIGGER refuse ON \"{}\".rm_lines",
            schema.name
        ))
        .unwrap();
    // A successor (a new handle) resumes from the checkpoint.
    let successor = schema.models();
    assert_eq!(successor.catch_up(&store).unwrap(), ledger.head());
    let sqlite = ledger.models();
    sqlite.catch_up(&ledger.store).unwrap();
    assert_eq!(successor.dump().unwrap(), sqlite.dump().unwrap());
}
