//! The ledger's trust rules through the one write path (DESIGN.md §2):
//! whose clock counts, bound idempotency keys, unique ids, identity hygiene,
//! bounded dates, support cases that resolve, and stored events that cannot
//! be decoded reported as integrity failures. Each test names the attack it
//! stops.

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use chrono::{Duration, Utc};
use predicates::prelude::*;
use provledger::{AppError, Ledger as AppLedger, Origin, OutcomeStatus, Submission};
use provledger_domain::{Actor, ClockMode, Command as DomainCommand, Email, OrderId, OrderRequest};
use provledger_store::{AppendRequest, ExpectedVersion, Metadata, NewEvent};
use serde_json::Value;

const OLIVIA: &str = "olivia@partner.example";
const MALLORY: &str = "mallory@elsewhere.example";

fn order_json(order_id: &str, subscription: &str, rsd: &str) -> String {
    serde_json::json!({
        "order_id": order_id,
        "ordering_contact": OLIVIA,
        "partner": "Acme Partner",
        "end_customer": "Contoso Ltd",
        "partner_contacts": ["pat@partner.example"],
        "lines": [
            {"line_id": "1.1", "subscription_id": subscription, "offer": "A-Flex",
             "rsd": rsd, "provisioning_contact": "it@customer.example"},
            {"line_id": "1.2", "subscription_id": format!("{subscription}-B"), "offer": "A-WX",
             "rsd": rsd, "provisioning_contact": "it@customer.example"}
        ]
    })
    .to_string()
}

/// A ledger file in a temporary directory, driven through the binary.
struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    /// A new ledger with the given clock mode.
    fn init(clock: &str) -> Cli {
        let cli = Cli {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        cli.run(&["init", "--clock", clock]).success();
        cli
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    fn url(&self) -> String {
        format!("sqlite:{}", self.db().display())
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("provledger").expect("binary");
        cmd.env_remove("PROVLEDGER_STORE")
            .env_remove("PROVLEDGER_AS")
            .arg("--db")
            .arg(self.db());
        cmd
    }

    fn run(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.cmd().args(args).assert()
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self
            .cmd()
            .arg("--format")
            .arg("json")
            .args(args)
            .output()
            .expect("run");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} did not print JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    fn place(&self, order_id: &str, subscription: &str, extra: &[&str]) -> Output {
        let path = self
            .dir
            .path()
            .join(format!("{order_id}-{subscription}.json"));
        std::fs::write(&path, order_json(order_id, subscription, "2026-12-01")).expect("write");
        let mut args = vec![
            "order",
            "place",
            "--file",
            path.to_str().unwrap(),
            "--as",
            OLIVIA,
        ];
        args.extend_from_slice(extra);
        self.output(&args)
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- Whose clock ---------------------------------------------------------

#[test]
fn a_live_ledger_refuses_caller_times_so_no_one_can_freeze_an_order() {
    let cli = Cli::init("live");
    assert_eq!(code(&cli.place("WO-1", "Sub1", &[])), 0);
    // The attack: a refused change dated 2099 used to freeze the order.
    cli.run(&[
        "contact",
        "change",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--email",
        "evil@x.example",
        "--as",
        MALLORY,
        "--at",
        "2099-12-31T00:00:00Z",
    ])
    .code(2)
    .stderr(
        predicate::str::contains("--at").and(predicate::str::contains("init --clock simulated")),
    );
    cli.run(&["tick", "--now", "2099-01-01T00:00:00Z"])
        .code(2)
        .stderr(predicate::str::contains("--now"));
    // Nothing was written, and a normal command goes through.
    cli.run(&[
        "contact",
        "change",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--email",
        "new@customer.example",
        "--as",
        OLIVIA,
    ])
    .success();
    cli.run(&["tick"]).success();
}

#[test]
fn a_live_command_is_dated_at_its_stream_latest_event_when_the_clock_reads_earlier() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("l.db").display());
    let ledger = AppLedger::open(&url).unwrap();
    ledger.initialise(ClockMode::Live).unwrap();
    let olivia = Email::parse(OLIVIA).unwrap();
    let request: OrderRequest =
        serde_json::from_str(&order_json("WO-1", "Sub1", "2030-01-01")).unwrap();
    let order = request.validate().unwrap();
    let order_id = OrderId::parse("WO-1").unwrap();
    ledger
        .submit(Submission::new(
            order_id.clone(),
            DomainCommand::PlaceOrder(order),
            olivia.clone(),
            Origin::cli(),
        ))
        .unwrap();
    // A concurrent writer whose clock ran ahead appended an event dated
    // an hour from now (what 5 of 400 racing processes used to trip on).
    let ahead = provledger_store::to_stored_precision(Utc::now() + Duration::hours(1));
    let event = provledger_domain::Event::SetupStarted { at: ahead };
    ledger
        .store()
        .append(AppendRequest::single(
            order_id.stream_id(),
            ExpectedVersion::Exact(1),
            vec![NewEvent {
                event_type: "SetupStarted".into(),
                schema_version: 1,
                payload: event.to_payload(),
                metadata: Metadata {
                    actor: OLIVIA.into(),
                    transaction_id: "TX-WO-1-2".into(),
                    ..Metadata::default()
                },
                occurred_at: ahead,
            }],
        ))
        .unwrap();
    let ledger = AppLedger::open(&url).unwrap();
    let outcome = ledger
        .submit(Submission::new(
            order_id.clone(),
            DomainCommand::OpenSupportCase {
                line_id: provledger_domain::LineId::parse("1.1").unwrap(),
                request_type: provledger_domain::SupportRequestType::ResendProvisioningEmail,
                note: None,
                attachments: Vec::new(),
            },
            olivia,
            Origin::cli(),
        ))
        .expect("a valid command is never refused for a later concurrent one");
    assert_eq!(outcome.status, OutcomeStatus::Success);
    let last = ledger
        .store()
        .read_stream(&order_id.stream_id(), 2)
        .unwrap();
    assert_eq!(
        last[0].occurred_at, ahead,
        "dated at the stream's latest event"
    );
}

#[test]
fn four_processes_without_at_on_one_order_all_succeed() {
    let cli = Cli::init("live");
    assert_eq!(code(&cli.place("WO-1", "Sub1", &[])), 0);
    let db = cli.db();
    let children: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                for _ in 0..15 {
                    let out =
                        std::process::Command::new(assert_cmd::cargo::cargo_bin("provledger"))
                            .env_remove("PROVLEDGER_STORE")
                            .args(["--db", db.to_str().unwrap()])
                            .args([
                                "case",
                                "open",
                                "--order",
                                "WO-1",
                                "--line",
                                "1.1",
                                "--type",
                                "resend-provisioning-email",
                                "--as",
                                OLIVIA,
                            ])
                            .output()
                            .expect("run");
                    codes.push((code(&out), stderr(&out)));
                }
                codes
            })
        })
        .collect();
    for child in children {
        for (code, err) in child.join().unwrap() {
            assert_eq!(code, 0, "{err}");
        }
    }
    let rows = cli.json(&["transactions", "--type", "support_case"]);
    assert_eq!(rows.as_array().unwrap().len(), 60);
    cli.run(&["verify"]).success();
}

#[test]
fn a_simulated_ledger_says_so_in_every_view() {
    let cli = Cli::init("simulated");
    assert_eq!(
        code(&cli.place("WO-1", "Sub1", &["--at", "2026-11-20T09:00:00Z"])),
        0
    );
    for view in [
        &["lines"][..],
        &["transactions"],
        &["history", "--order", "WO-1"],
    ] {
        let table = cli.output(view);
        assert!(
            String::from_utf8_lossy(&table.stdout).contains("simulated clock"),
            "{view:?}"
        );
        let rows = cli.json(view);
        for row in rows.as_array().unwrap() {
            assert_eq!(row["clock"], "simulated", "{view:?}");
        }
    }
    let live = Cli::init("live");
    assert_eq!(code(&live.place("WO-1", "Sub1", &[])), 0);
    let table = live.output(&["lines"]);
    assert!(!String::from_utf8_lossy(&table.stdout).contains("simulated clock"));
    assert!(live.json(&["lines"])[0].get("clock").is_none());
}

// ---- Idempotency keys ---------------------------------------------------

#[test]
fn an_idempotency_key_reused_for_another_request_is_refused_naming_the_first() {
    let cli = Cli::init("live");
    assert_eq!(
        code(&cli.place("WO-1", "Sub1", &["--idempotency-key", "K"])),
        0
    );
    // The same request again: the first result, nothing appended.
    let again = cli.place("WO-1", "Sub1", &["--idempotency-key", "K"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("replayed"));
    // Another order under the same key: refused, and WO-3 is not placed.
    let other = cli.place("WO-3", "Sub3", &["--idempotency-key", "K"]);
    assert_eq!(code(&other), 2);
    assert!(stderr(&other).contains("TX-WO-1-1"), "{}", stderr(&other));
    cli.run(&["lines", "--order", "WO-3"])
        .success()
        .stdout(predicate::str::contains("WO-3").not());
    // Another email under a key already used for a change: refused.
    let change = |email: &str| {
        cli.output(&[
            "contact",
            "change",
            "--order",
            "WO-1",
            "--line",
            "1.1",
            "--email",
            email,
            "--as",
            OLIVIA,
            "--idempotency-key",
            "C",
        ])
    };
    assert_eq!(code(&change("a@customer.example")), 0);
    let second = change("b@customer.example");
    assert_eq!(code(&second), 2, "{}", stderr(&second));
    // An empty key is not a key.
    let empty = cli.place("WO-4", "Sub4", &["--idempotency-key", ""]);
    assert_eq!(code(&empty), 2);
    assert!(stderr(&empty).contains("empty"), "{}", stderr(&empty));
}

#[test]
fn an_idempotency_key_belongs_to_its_user() {
    let cli = Cli::init("live");
    assert_eq!(code(&cli.place("WO-1", "Sub1", &[])), 0);
    // Mallory uses the key first; Olivia's request is still carried out.
    let mallory = cli.output(&[
        "contact",
        "change",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--email",
        "a@customer.example",
        "--as",
        MALLORY,
        "--idempotency-key",
        "shared",
    ]);
    assert_eq!(code(&mallory), 3, "refused: no access");
    let olivia = cli.json(&[
        "contact",
        "change",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--email",
        "a@customer.example",
        "--as",
        OLIVIA,
        "--idempotency-key",
        "shared",
    ]);
    assert_eq!(olivia["status"], "success", "{olivia}");
    assert_eq!(olivia["replayed"], false);
}

fn idempotency_on(url: &str) {
    let ledger = AppLedger::open(url).unwrap();
    let olivia = Email::parse(OLIVIA).unwrap();
    let place = |id: &str, sub: &str| {
        let request: OrderRequest =
            serde_json::from_str(&order_json(id, sub, "2026-12-01")).unwrap();
        let order = request.validate().unwrap();
        Submission::new(
            order.order_id.clone(),
            DomainCommand::PlaceOrder(order),
            olivia.clone(),
            Origin::cli(),
        )
        .at(Utc::now(), "--at")
        .with_key(Some("K".into()))
    };
    let first = ledger.submit(place("WO-1", "Sub1")).unwrap();
    let replay = ledger.submit(place("WO-1", "Sub1")).unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.transaction_id, first.transaction_id);
    match ledger.submit(place("WO-3", "Sub3")) {
        Err(AppError::IdempotencyKeyReused { transaction_id, .. }) => {
            assert_eq!(transaction_id, "TX-WO-1-1")
        }
        other => panic!("expected a refused key, got {other:?}"),
    }
    assert!(ledger
        .load(&OrderId::parse("WO-3").unwrap())
        .unwrap()
        .order
        .is_none());
    // Scoped per user: the same key by another user is another request.
    let pat = Submission::new(
        OrderId::parse("WO-1").unwrap(),
        DomainCommand::StartSetup,
        Actor::User(Email::parse("pat@partner.example").unwrap()),
        Origin::cli(),
    )
    .at(Utc::now(), "--at")
    .with_key(Some("K".into()));
    assert!(!ledger.submit(pat).unwrap().replayed);
}

#[test]
fn idempotency_keys_behave_alike_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    idempotency_on(&format!("sqlite:{}", dir.path().join("k.db").display()));
    let Some(base) = provledger_store::postgres::test_url() else {
        return;
    };
    let schema = provledger_store::postgres::unique_test_schema("idem");
    provledger_store::postgres::PostgresStore::connect_in_schema(&base, &schema).expect("schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    idempotency_on(&url);
    let _ = provledger_store::postgres::drop_schema(&base, &schema);
}

// ---- Unique ids ------------------------------------------------------------

#[test]
fn a_subscription_names_one_line_and_order_ids_ignore_case() {
    let cli = Cli::init("live");
    assert_eq!(code(&cli.place("WO-1", "Sub1", &[])), 0);
    let reuse = cli.place("WO-2", "Sub1", &[]);
    assert_eq!(code(&reuse), 2);
    assert!(
        stderr(&reuse).contains("Sub1") && stderr(&reuse).contains("WO-1"),
        "{}",
        stderr(&reuse)
    );
    let lower = cli.place("wo-1", "Sub9", &[]);
    assert_eq!(code(&lower), 2);
    assert!(stderr(&lower).contains("WO-1"), "{}", stderr(&lower));
    // Nothing of either was written; history stays one order's.
    let rows = cli.json(&["history", "--subscription", "Sub1"]);
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["order_id"] == "WO-1" || r["stream_id"] == "order-WO-1"));
    cli.run(&["lines", "--order", "WO-2"])
        .success()
        .stdout(predicate::str::contains("WO-2").not());
}

// ---- Identity hygiene ------------------------------------------------------

#[test]
fn emails_compare_without_regard_to_case_for_access_and_nothing_to_change() {
    let cli = Cli::init("live");
    assert_eq!(code(&cli.place("WO-1", "Sub1", &[])), 0);
    let ok = cli.json(&[
        "contact",
        "change",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--email",
        "a@customer.example",
        "--as",
        "OLIVIA@Partner.Example",
    ]);
    assert_eq!(ok["status"], "success", "{ok}");
    cli.run(&[
        "contact",
        "change",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--email",
        "A@Customer.example",
        "--as",
        OLIVIA,
    ])
    .code(2)
    .stderr(predicate::str::contains("nothing to change"));
}

#[test]
fn spoofing_characters_are_refused_in_emails_names_and_notes() {
    let cli = Cli::init("live");
    assert_eq!(code(&cli.place("WO-1", "Sub1", &[])), 0);
    for actor in [
        "olivia\u{202E}@partner.example",
        "oli\u{200B}via@partner.example",
    ] {
        cli.run(&[
            "email", "resend", "--order", "WO-1", "--line", "1.1", "--as", actor,
        ])
        .code(2)
        .stderr(predicate::str::contains("U+"));
    }
    cli.run(&[
        "contact",
        "change",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--email",
        "it\u{2066}@customer.example",
        "--as",
        OLIVIA,
    ])
    .code(2);
    cli.run(&[
        "case",
        "open",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--type",
        "resend-provisioning-email",
        "--note",
        "see \u{202E}txt.exe",
        "--as",
        OLIVIA,
    ])
    .code(2)
    .stderr(predicate::str::contains("U+202E"));
    let path = cli.dir.path().join("spoof.json");
    std::fs::write(
        &path,
        order_json("WO-2", "Sub2", "2026-12-01").replace("Contoso Ltd", "Contoso\u{202E} Ltd"),
    )
    .unwrap();
    cli.run(&[
        "order",
        "place",
        "--file",
        path.to_str().unwrap(),
        "--as",
        OLIVIA,
    ])
    .code(2);
}

#[test]
fn a_requested_start_date_far_in_the_future_is_refused() {
    let cli = Cli::init("simulated");
    let path = cli.dir.path().join("far.json");
    std::fs::write(&path, order_json("WO-9", "Sub9", "9999-12-31")).unwrap();
    cli.run(&[
        "order",
        "place",
        "--file",
        path.to_str().unwrap(),
        "--as",
        OLIVIA,
        "--at",
        "2026-11-20T09:00:00Z",
    ])
    .code(2)
    .stderr(predicate::str::contains("2100-12-31"));
    // The ledger stays readable, and the simulated clock is bounded too.
    cli.run(&["lines"]).success();
    cli.run(&["tick", "--now", "9999-01-01T00:00:00Z"]).code(2);
}

// ---- Support cases ----------------------------------------------------------

#[test]
fn r10_a_support_case_is_pending_until_support_resolves_it() {
    let cli = Cli::init("live");
    assert_eq!(code(&cli.place("WO-1", "Sub1", &[])), 0);
    let opened = cli.json(&[
        "case",
        "open",
        "--order",
        "WO-1",
        "--line",
        "1.1",
        "--type",
        "resend-provisioning-email",
        "--as",
        OLIVIA,
    ]);
    assert_eq!(opened["status"], "success");
    let rows = cli.json(&["transactions", "--type", "support_case"]);
    assert_eq!(rows[0]["status"], "pending", "{rows}");
    let resolved = cli.json(&[
        "case",
        "resolve",
        "--case",
        "WO-1-C1",
        "--outcome",
        "rejected",
        "--note",
        "duplicate of an earlier case",
        "--as",
        "support@provider.example",
    ]);
    assert_eq!(resolved["status"], "success", "{resolved}");
    let rows = cli.json(&["transactions", "--type", "support_case"]);
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["status"], "failed");
    assert!(rows[0]["reason"].as_str().unwrap().contains("rejected"));
    cli.run(&[
        "case",
        "resolve",
        "--case",
        "WO-1-C1",
        "--outcome",
        "resent",
        "--as",
        "support@provider.example",
    ])
    .code(2)
    .stderr(predicate::str::contains("already resolved"));
    cli.run(&[
        "case",
        "resolve",
        "--case",
        "WO-1-C7",
        "--outcome",
        "resent",
        "--as",
        "support@provider.example",
    ])
    .code(2)
    .stderr(predicate::str::contains("no support case"));
    // A rebuild gives the same answer.
    cli.run(&["rebuild"]).success();
    let rows = cli.json(&["transactions", "--type", "support_case"]);
    assert_eq!(rows[0]["status"], "failed");
}

// ---- Errors at the right boundary ------------------------------------------

#[test]
fn an_undecodable_stored_event_is_an_integrity_failure_naming_its_position() {
    let cli = Cli::init("live");
    assert_eq!(code(&cli.place("WO-1", "Sub1", &[])), 0);
    let conn = rusqlite::Connection::open(cli.db()).unwrap();
    let triggers: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap();
    for t in triggers {
        conn.execute(&format!("DROP TRIGGER {t}"), []).unwrap();
    }
    conn.execute(
        "UPDATE events SET payload = '{\"garbage\":true}' WHERE position = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let out = cli.output(&[
        "email", "resend", "--order", "WO-1", "--line", "1.1", "--as", OLIVIA,
    ]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("position 2"), "{}", stderr(&out));
    let _ = cli.url();
}

// ---- Property: concurrent writers on a live ledger -------------------------

/// One valid command a thread may send.
#[derive(Debug, Clone)]
enum Valid {
    OpenCase,
    ChangeContact,
    Resend,
    StartSetup,
}

fn valid_command() -> impl proptest::strategy::Strategy<Value = Valid> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Valid::OpenCase),
        Just(Valid::ChangeContact),
        Just(Valid::Resend),
        Just(Valid::StartSetup),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 6,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    /// Random interleavings of valid commands from several threads, each
    /// with its own connection to one live ledger: none is ever bad input
    /// (exit 2) — the clock never makes a valid command fail — and the
    /// chain verifies afterwards.
    #[test]
    fn concurrent_valid_commands_on_a_live_ledger_are_never_bad_input(
        plans in proptest::collection::vec(proptest::collection::vec(valid_command(), 1..6), 2..4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("p.db").display());
        let ledger = AppLedger::open(&url).unwrap();
        ledger.initialise(ClockMode::Live).unwrap();
        let request: OrderRequest =
            serde_json::from_str(&order_json("WO-1", "Sub1", "2026-01-01")).unwrap();
        let order = request.validate().unwrap();
        let olivia = Email::parse(OLIVIA).unwrap();
        ledger
            .submit(Submission::new(
                OrderId::parse("WO-1").unwrap(),
                DomainCommand::PlaceOrder(order),
                olivia.clone(),
                Origin::cli(),
            ))
            .unwrap();
        let errors: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = plans
                .iter()
                .enumerate()
                .map(|(thread, plan)| {
                    let url = url.clone();
                    let olivia = olivia.clone();
                    scope.spawn(move || {
                        let ledger = AppLedger::open(&url).unwrap();
                        let mut errors = Vec::new();
                        for (i, step) in plan.iter().enumerate() {
                            let line = provledger_domain::LineId::parse("1.1").unwrap();
                            let command = match step {
                                Valid::OpenCase => DomainCommand::OpenSupportCase {
                                    line_id: line,
                                    request_type:
                                        provledger_domain::SupportRequestType::ResendProvisioningEmail,
                                    note: None,
                                    attachments: Vec::new(),
                                },
                                Valid::ChangeContact => DomainCommand::ChangeContact {
                                    line_id: line,
                                    new_email: Email::parse(&format!(
                                        "t{thread}-{i}@customer.example"
                                    ))
                                    .unwrap(),
                                    apply_to_all_lines: false,
                                },
                                Valid::Resend => DomainCommand::ResendEmail { line_id: line },
                                Valid::StartSetup => DomainCommand::StartSetup,
                            };
                            if let Err(e) = ledger.submit(Submission::new(
                                OrderId::parse("WO-1").unwrap(),
                                command,
                                olivia.clone(),
                                Origin::cli(),
                            )) {
                                errors.push(format!("{step:?}: exit {}: {e}", e.exit_code()));
                            }
                        }
                        errors
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        proptest::prop_assert!(errors.is_empty(), "{errors:?}");
        let report = ledger.verify(&mut |_| {}).unwrap();
        proptest::prop_assert!(report.is_intact());
    }
}
