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

#[test]
fn postgres_read_models_written_in_the_append_equal_sqlites() {
    let Some(url) = test_url() else { return };
    let ledger = busy_ledger(12);
    let sqlite = ledger.models();
    sqlite.catch_up(&ledger.store).unwrap();
    let requests = commands_of(&ledger.store);
    let commands = requests.len();

    let schema = Schema::new(&url, "rm_inline");
    let store = schema.store();
    let pg = schema.models();
    let inline = append_inline(&store, &pg, requests);
    // A new handle reads the checkpoint once; every other command carries
    // its read models, except those resolving a support case.
    assert!(inline * 10 >= commands * 9, "{inline} of {commands}");
    // And all but the first go in with one statement, read models and all
    // (the handle wrote the head each predicts).
    let one_statement = store.one_statement_appends_for_tests() as usize;
    assert_eq!(one_statement, commands - 1);
    assert_eq!(
        store.head().unwrap().map(|h| h.position),
        Some(ledger.head())
    );
    assert_eq!(pg.checkpoint().unwrap(), ledger.head());
    assert_eq!(pg.dump().unwrap(), sqlite.dump().unwrap());
}

/// A PostgreSQL copy of a small ledger, made with the read models inline,
/// but for its last command; also the ledger.
struct AllButLast {
    ledger: crate::support::Ledger,
    schema: Schema,
    store: PostgresStore,
    models: ReadModels,
    last: Vec<provledger_store::AppendRequest>,
}

fn all_but_last(url: &str, tag: &str) -> AllButLast {
    let ledger = busy_ledger(3);
    let mut requests = commands_of(&ledger.store);
    let last = requests.split_off(requests.len() - 1);
    let schema = Schema::new(url, tag);
    let store = schema.store();
    let models = schema.models();
    append_inline(&store, &models, requests);
    AllButLast {
        ledger,
        schema,
        store,
        models,
        last,
    }
}

#[test]
fn postgres_inline_writes_nothing_where_the_read_models_moved() {
    let Some(url) = test_url() else { return };
    let AllButLast {
        schema: _schema,
        store,
        models: pg,
        last,
        ..
    } = all_but_last(&url, "rm_inline_moved");
    let before = pg.checkpoint().unwrap();
    let rows = store
        .execute_raw_sql_for_tests("SELECT 1 FROM rm_transactions")
        .unwrap();

    // Another writer moved the checkpoint behind this handle's back.
    store
        .execute_raw_sql_for_tests(&format!(
            "UPDATE rm_checkpoints SET position = {}",
            before - 1
        ))
        .unwrap();
    let mut writer = pg.inline().unwrap();
    let appended = store.append_batch_inline(last, &mut writer).unwrap();
    assert!(appended[0].is_ok());
    assert!(!writer.finish(true), "nothing written inline");
    assert_eq!(pg.checkpoint().unwrap(), before - 1);
    assert_eq!(
        store
            .execute_raw_sql_for_tests("SELECT 1 FROM rm_transactions")
            .unwrap(),
        rows
    );
}

#[test]
fn postgres_a_failing_inline_write_still_commits_the_events_once() {
    let Some(url) = test_url() else { return };
    let AllButLast {
        ledger,
        schema: _schema,
        store,
        models: pg,
        last,
    } = all_but_last(&url, "rm_inline_fails");
    let sqlite = ledger.models();
    sqlite.catch_up(&ledger.store).unwrap();
    let head = store.head().unwrap().unwrap().position;

    // Every order state written is refused: the inline statement
    // fails, which aborts the append's transaction.
    store
        .execute_raw_sql_for_tests(
            "ALTER TABLE rm_order_state ADD CONSTRAINT refuse_new CHECK (false) NOT VALID",
        )
        .unwrap();
    let events: usize = last[0].appends.iter().map(|a| a.events.len()).sum();
    let mut writer = pg.inline().unwrap();
    let appended = store.append_batch_inline(last, &mut writer).unwrap();
    assert!(appended[0].is_ok(), "{appended:?}");
    assert!(!writer.finish(true));
    // The append was made again without the writer: its events, once.
    assert_eq!(
        store.head().unwrap().map(|h| h.position),
        Some(head + events as u64)
    );
    assert_eq!(
        store.head().unwrap().map(|h| h.position),
        Some(ledger.head())
    );
    store
        .execute_raw_sql_for_tests("ALTER TABLE rm_order_state DROP CONSTRAINT refuse_new")
        .unwrap();
    pg.catch_up(&store).unwrap();
    assert_eq!(pg.dump().unwrap(), sqlite.dump().unwrap());
}

#[test]
fn postgres_concurrent_inline_writers_and_a_worker_apply_each_event_once() {
    let Some(url) = test_url() else { return };
    let ledger = busy_ledger(24);
    let requests = commands_of(&ledger.store);
    // Commands touching no order (the ledger's set-up) first, then each
    // order's commands on one of three writers.
    let (setup, orders): (Vec<_>, Vec<_>) = requests.into_iter().partition(|r| {
        !r.appends.iter().any(|a| {
            a.stream_id
                .starts_with(provledger_domain::ORDER_STREAM_PREFIX)
        })
    });
    let mut shares: Vec<Vec<_>> = vec![Vec::new(); 3];
    for request in orders {
        let order = request
            .appends
            .iter()
            .find(|a| {
                a.stream_id
                    .starts_with(provledger_domain::ORDER_STREAM_PREFIX)
            })
            .map(|a| a.stream_id.clone())
            .unwrap_or_default();
        let share = order.bytes().map(usize::from).sum::<usize>() % shares.len();
        shares[share].push(request);
    }
    let schema = Schema::new(&url, "rm_inline_race");
    let first = schema.models();
    append_inline(&schema.store(), &first, setup);

    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writers: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let schema = &schema;
                scope.spawn(move || {
                    let store = schema.store();
                    let models = schema.models();
                    append_inline(&store, &models, share)
                })
            })
            .collect();
        let worker = scope.spawn(|| {
            let store = schema.store();
            let models = schema.models().with_batch_size(5);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                models.catch_up(&store).unwrap();
            }
        });
        let inline: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        worker.join().unwrap();
        assert!(inline > 0);
    });
    let store = schema.store();
    let head = store.head().unwrap().unwrap().position;
    assert_eq!(head, ledger.head());
    first.catch_up(&store).unwrap();
    assert_eq!(first.checkpoint().unwrap(), head);
    let incremental = first.dump().unwrap();
    let rebuilt = schema.models();
    rebuilt.rebuild(&store, &mut |_| {}).unwrap();
    assert_eq!(incremental, rebuilt.dump().unwrap());
}

#[test]
fn postgres_read_models_of_another_schema_are_not_written_inline() {
    let Some(url) = test_url() else { return };
    let AllButLast {
        schema,
        store,
        models: own,
        last,
        ..
    } = all_but_last(&url, "rm_inline_own");
    // Read models of this ledger's events kept in another schema, caught up
    // to the same position: the store's connection resolves their table
    // names to this schema's tables, so they must not be written inline.
    let elsewhere = Schema::new(&url, "rm_inline_elsewhere");
    let other = elsewhere.models();
    other.catch_up(&store).unwrap();
    let before = own.checkpoint().unwrap();
    assert_eq!(other.checkpoint().unwrap(), before);

    let mut writer = other.inline().unwrap();
    let appended = store.append_batch_inline(last, &mut writer).unwrap();
    assert!(appended[0].is_ok());
    assert!(!writer.finish(true), "written in the wrong schema");
    assert_eq!(own.checkpoint().unwrap(), before, "{}", schema.name);
    assert_eq!(other.checkpoint().unwrap(), before);
    other.catch_up(&store).unwrap();
    own.catch_up(&store).unwrap();
    assert_eq!(other.dump().unwrap(), own.dump().unwrap());
}
