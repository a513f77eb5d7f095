//! The setup wizard, service setup and provisioning through the real binary
//! (R13–R18): the three who-sets-up paths end to end, bad input, the
//! `subdomain check` answers, and races for one administrator email or one
//! subdomain — between threads, between two OS processes, and a
//! deterministic interleaving — each leaving exactly one winner and one
//! recorded refusal.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use assert_cmd::Command;
use chrono::{DateTime, TimeZone, Utc};
use predicates::prelude::*;
use provledger::{Ledger, OutcomeStatus};
use provledger_domain::{Actor, Context, OrderId, ServicesRequest, SetupCommand, SetupRequest};
use provledger_projections::ReadModels;
use provledger_store::testing::FaultyStore;
use serde_json::{json, Value};

const OLIVIA: &str = "olivia@partner.example";
const PAT: &str = "pat@partner.example";
const ADMIN: &str = "admin@contoso.example";

fn order(order_id: &str, subscription_base: u32) -> Value {
    json!({
        "order_id": order_id, "ordering_contact": OLIVIA,
        "partner": "Acme Partner", "end_customer": "Contoso Ltd",
        "partner_contacts": [PAT], "distributor_contacts": [],
        "lines": [
            {"line_id": "1.1", "subscription_id": format!("Sub{subscription_base}1"), "offer": "A-Flex",
             "rsd": "2026-12-01", "provisioning_contact": "it@customer.example"},
            {"line_id": "1.2", "subscription_id": format!("Sub{subscription_base}2"), "offer": "A-WX",
             "rsd": "2026-12-01", "provisioning_contact": "it@customer.example"}
        ]
    })
}

/// A completed wizard with new organisations.
fn wizard(order_id: &str, who: &str, admin: &str) -> Value {
    json!({
        "order_id": order_id, "role": "partner", "who_sets_up": who,
        "partner_organisation": {"new": {}}, "customer_organisation": {"new": {}},
        "customer_admin_email": admin, "confirm_customer": true, "confirm_partner": true
    })
}

fn services(subdomain: &str) -> Value {
    json!({
        "calling": {"country": "PL", "location": "Warsaw HQ"},
        "meeting": {"language": "pl", "recording": true},
        "enterprise": {"subdomain": subdomain}
    })
}

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    /// An empty ledger made by `init` (the only command that creates one).
    fn new() -> Cli {
        let cli = Cli {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        cli.run(&["init", "--clock", "simulated"]).success();
        cli
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    fn url(&self) -> String {
        format!("sqlite:{}", self.db().display())
    }

    fn file(&self, name: &str, value: &Value) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, value.to_string()).expect("write");
        path.display().to_string()
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

    fn json(&self, args: &[&str]) -> Value {
        let out = self
            .cmd()
            .args(["--format", "json"])
            .args(args)
            .output()
            .expect("run");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Places WO-1001 (and WO-1002 when `two`), before the RSD.
    fn placed(two: bool) -> Cli {
        let cli = Cli::new();
        let orders: &[(&str, u32)] = if two {
            &[("WO-1001", 10004), ("WO-1002", 20004)]
        } else {
            &[("WO-1001", 10004)]
        };
        for (id, base) in orders {
            let file = cli.file(&format!("{id}.json"), &order(id, *base));
            cli.run(&[
                "order",
                "place",
                "--file",
                &file,
                "--as",
                OLIVIA,
                "--at",
                "2026-11-20T09:00:00Z",
            ])
            .success();
        }
        cli
    }

    fn setup(&self, setup: &Value, actor: &str, at: &str) -> assert_cmd::assert::Assert {
        let file = self.file("setup.json", setup);
        self.run(&[
            "setup", "complete", "--file", &file, "--as", actor, "--at", at,
        ])
    }

    fn services(
        &self,
        order: &str,
        value: &Value,
        actor: &str,
        at: &str,
    ) -> assert_cmd::assert::Assert {
        let file = self.file("services.json", value);
        self.run(&[
            "setup", "services", "--order", order, "--file", &file, "--as", actor, "--at", at,
        ])
    }

    fn provision(&self, order: &str, actor: &str, at: &str) -> assert_cmd::assert::Assert {
        self.run(&["provision", "--order", order, "--as", actor, "--at", at])
    }

    fn lines(&self, order: &str) -> Vec<Value> {
        self.json(&["lines", "--order", order])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn transactions(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["transactions"];
        all.extend_from_slice(args);
        self.json(&all).as_array().cloned().unwrap_or_default()
    }

    fn event_count(&self) -> usize {
        let out = self
            .cmd()
            .args(["export", "--out", "-"])
            .output()
            .expect("export");
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    fn verify(&self) {
        self.run(&["verify"])
            .success()
            .stdout(predicate::str::contains("intact"));
    }
}

/// Distinct transaction ids among rows.
fn transactions_of(rows: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r["transaction_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn assert_statuses(lines: &[Value], status: &str, billing: bool) {
    assert!(!lines.is_empty());
    for line in lines {
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["billing_started"], billing, "{line}");
    }
}

// ---------------------------------------------------------------------------
// The three who-sets-up paths (R14), end to end.

#[test]
fn r14_me_path_end_to_end() {
    let cli = Cli::placed(false);
    cli.run(&["subdomain", "check", "contoso"])
        .success()
        .stdout("contoso: available\n");
    let out = cli.json(&[
        "setup",
        "complete",
        "--file",
        &cli.file("s.json", &wizard("WO-1001", "me", ADMIN)),
        "--as",
        PAT,
        "--at",
        "2026-11-25T09:00:00Z",
    ]);
    assert_eq!(out["status"], "success");
    assert_eq!(out["transaction_id"], "TX-WO-1001-2");
    assert!(
        out["message"].as_str().unwrap().contains("ORG-WO-1001"),
        "{out}"
    );
    // setup, onboarding, two organisations, two reservations
    assert_eq!(out["positions"].as_array().unwrap().len(), 6, "{out}");
    assert_statuses(&cli.lines("WO-1001"), "onboarded", false);
    // R5: the Point of No Return.
    cli.run(&[
        "contact",
        "change",
        "--order",
        "WO-1001",
        "--line",
        "1.1",
        "--email",
        "x@customer.example",
        "--as",
        OLIVIA,
        "--at",
        "2026-11-25T10:00:00Z",
    ])
    .code(3)
    .stderr(predicate::str::contains("Point of No Return"));
    cli.services("WO-1001", &services("contoso"), PAT, "2026-11-26T09:00:00Z")
        .success()
        .stdout(predicate::str::contains("subdomain contoso"));
    cli.run(&["subdomain", "check", "contoso"])
        .success()
        .stdout(predicate::str::starts_with(
            "contoso: taken (reserved by organisation ORG-WO-1001",
        ));
    cli.provision("WO-1001", PAT, "2026-11-26T10:00:00Z")
        .success()
        .stdout(predicate::str::contains("billing started"));
    assert_statuses(&cli.lines("WO-1001"), "provisioned", true);
    for (ty, rows) in [
        ("setup_completion", 2),
        ("service_setup", 2),
        ("provisioning", 2),
    ] {
        let found = cli.transactions(&["--type", ty, "--status", "success"]);
        assert_eq!(found.len(), rows, "{ty}: {found:?}");
    }
    cli.verify();
}

#[test]
fn r14_someone_else_path_end_to_end() {
    let cli = Cli::placed(false);
    let sam = "sam@partner.example";
    let hand_over = json!({
        "order_id": "WO-1001", "role": "partner", "who_sets_up": "someone_else",
        "someone_else_email": sam
    });
    cli.setup(&hand_over, PAT, "2026-11-25T09:00:00Z")
        .success()
        .stdout(predicate::str::contains(
            "handed over to sam@partner.example",
        ));
    assert_statuses(
        &cli.lines("WO-1001"),
        "awaiting_provisioning_details",
        false,
    );
    // R11: the escalation is stopped by the hand-over.
    let tick = cli.json(&["tick", "--now", "2026-12-03T00:00:00Z"]);
    assert_eq!(tick["escalations_raised"], 0, "{tick}");
    cli.setup(&wizard("WO-1001", "me", ADMIN), sam, "2026-12-03T09:00:00Z")
        .success()
        .stdout(predicate::str::contains(
            "sam@partner.example sets up the services",
        ));
    cli.services("WO-1001", &services("contoso"), sam, "2026-12-03T10:00:00Z")
        .success();
    cli.provision("WO-1001", sam, "2026-12-03T11:00:00Z")
        .success();
    assert_statuses(&cli.lines("WO-1001"), "provisioned", true);
    let handovers = cli.transactions(&["--type", "setup_handover"]);
    assert_eq!(transactions_of(&handovers).len(), 1);
    cli.verify();
}

#[test]
fn r14_customer_path_end_to_end_and_partner_actions_are_refused() {
    let cli = Cli::placed(false);
    cli.setup(
        &wizard("WO-1001", "customer", ADMIN),
        PAT,
        "2026-11-25T09:00:00Z",
    )
    .success()
    .stdout(predicate::str::contains(
        "the customer sets up the services",
    ));
    // R14: the partner has no access to manage the customer organisation.
    cli.services("WO-1001", &services("contoso"), PAT, "2026-11-25T10:00:00Z")
        .code(3)
        .stderr(predicate::str::contains("R14"));
    cli.provision("WO-1001", OLIVIA, "2026-11-25T11:00:00Z")
        .code(3)
        .stderr(predicate::str::contains(ADMIN));
    let failed = cli.transactions(&["--status", "failed"]);
    assert_eq!(transactions_of(&failed).len(), 2);
    assert!(failed
        .iter()
        .all(|r| r["reason_code"] == "partner_no_access"));
    // The customer's administrator sets up and provisions.
    cli.services(
        "WO-1001",
        &services("contoso"),
        ADMIN,
        "2026-11-26T09:00:00Z",
    )
    .success();
    cli.provision("WO-1001", ADMIN, "2026-11-26T10:00:00Z")
        .success();
    assert_statuses(&cli.lines("WO-1001"), "provisioned", true);
    cli.verify();
}

// ---------------------------------------------------------------------------
// Bad input and the subdomain check.

#[test]
fn r13_unfinished_or_malformed_setups_are_bad_input_and_write_nothing() {
    let cli = Cli::placed(false);
    let before = cli.event_count();
    let mut unconfirmed = wizard("WO-1001", "me", ADMIN);
    unconfirmed["confirm_partner"] = json!(false);
    let mut unknown_field = wizard("WO-1001", "me", ADMIN);
    unknown_field["colour"] = json!("blue");
    let mut bad_admin = wizard("WO-1001", "me", ADMIN);
    bad_admin["customer_admin_email"] = json!("admin-at-contoso");
    let mut customer_role = wizard("WO-1001", "me", ADMIN);
    customer_role["role"] = json!("customer");
    let mut unknown_org = wizard("WO-1001", "me", ADMIN);
    unknown_org["partner_organisation"] = json!({"existing": "PORG-NOPE"});
    let mut unknown_order = wizard("WO-9999", "me", ADMIN);
    unknown_order["order_id"] = json!("WO-9999");
    for (setup, message) in [
        (unconfirmed, "confirm_partner"),
        (unknown_field, "colour"),
        (bad_admin, "customer_admin_email"),
        (customer_role, "role"),
        (unknown_org, "PORG-NOPE"),
        (unknown_order, "unknown order WO-9999"),
    ] {
        cli.setup(&setup, PAT, "2026-11-25T09:00:00Z")
            .code(2)
            .stderr(predicate::str::starts_with("error: "))
            .stderr(predicate::str::contains(message));
    }
    // Services: an invalid subdomain names the rule; a misspelt section is refused.
    for (value, message) in [
        (
            json!({"enterprise": {"subdomain": "-contoso"}}),
            "starts or ends with a hyphen",
        ),
        (json!({"enterprise": {"subdomain": "ab"}}), "shorter than 3"),
        (
            json!({"calling": {"country": "Poland", "location": "HQ"}}),
            "calling.country",
        ),
        (json!({"meetings": {}}), "meetings"),
    ] {
        cli.services("WO-1001", &value, PAT, "2026-11-25T09:00:00Z")
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    cli.run(&[
        "setup",
        "complete",
        "--file",
        "/nonexistent/setup.json",
        "--as",
        PAT,
    ])
    .code(2);
    assert_eq!(cli.event_count(), before, "bad input wrote events");
}

#[test]
fn r18_subdomain_check_answers_available_taken_or_invalid() {
    let cli = Cli::placed(false);
    let available = cli.json(&["subdomain", "check", "contoso"]);
    assert_eq!(
        available,
        json!({"subdomain": "contoso", "status": "available", "reason": null, "org_id": null})
    );
    let out = cli
        .cmd()
        .args(["--format", "json", "subdomain", "check", "Contoso"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let invalid: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(invalid["status"], "invalid");
    assert!(invalid["reason"].as_str().unwrap().contains("uppercase"));
    cli.run(&["subdomain", "check", "con--"])
        .code(2)
        .stderr(predicate::str::contains("hyphen"));
    cli.setup(&wizard("WO-1001", "me", ADMIN), PAT, "2026-11-25T09:00:00Z")
        .success();
    cli.services("WO-1001", &services("contoso"), PAT, "2026-11-25T10:00:00Z")
        .success();
    let taken = cli.json(&["subdomain", "check", "contoso"]);
    assert_eq!(taken["status"], "taken");
    assert_eq!(taken["org_id"], "ORG-WO-1001");
}

// ---------------------------------------------------------------------------
// Races: exactly one winner and one recorded refusal.

/// Both orders are onboarded by PAT with distinct administrators, ready for
/// a subdomain race.
fn two_onboarded_orders() -> Cli {
    let cli = Cli::placed(true);
    cli.setup(&wizard("WO-1001", "me", ADMIN), PAT, "2026-11-25T09:00:00Z")
        .success();
    let mut second = wizard("WO-1002", "me", "admin@fabrikam.example");
    second["partner_organisation"] = json!({"existing": "PORG-WO-1001"});
    cli.setup(&second, PAT, "2026-11-25T09:30:00Z").success();
    cli
}

/// The failed transactions after a race: exactly one, with `code`.
fn assert_one_winner_one_refusal(cli: &Cli, codes: &[Option<i32>], code: &str) {
    let mut codes: Vec<Option<i32>> = codes.to_vec();
    codes.sort();
    assert_eq!(codes, vec![Some(0), Some(3)], "one success, one refusal");
    let failed = cli.transactions(&["--status", "failed"]);
    assert_eq!(transactions_of(&failed).len(), 1, "{failed:?}");
    assert!(
        failed.iter().all(|r| r["reason_code"] == code),
        "{failed:?}"
    );
    cli.verify();
}

/// Spawn every command at once, then wait for all: two OS processes racing.
fn race(cli: &Cli, commands: Vec<Vec<String>>) -> Vec<Option<i32>> {
    let binary = env!("CARGO_BIN_EXE_provledger");
    let children: Vec<_> = commands
        .into_iter()
        .map(|args| {
            std::process::Command::new(binary)
                .env_remove("PROVLEDGER_STORE")
                .env_remove("PROVLEDGER_AS")
                .arg("--db")
                .arg(cli.db())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn provledger")
        })
        .collect();
    children
        .into_iter()
        .map(|child| child.wait_with_output().expect("wait").status.code())
        .collect()
}

#[test]
fn r16_two_processes_racing_for_one_admin_email_leave_one_winner_and_one_refusal() {
    for round in 0..3 {
        let cli = Cli::placed(true);
        let a = cli.file(&format!("a{round}.json"), &wizard("WO-1001", "me", ADMIN));
        // The other order's partner user is OLIVIA, so only the customer
        // administrator is contested.
        let b = cli.file(&format!("b{round}.json"), &wizard("WO-1002", "me", ADMIN));
        let args = |file: &str, actor: &str| {
            [
                "setup",
                "complete",
                "--file",
                file,
                "--as",
                actor,
                "--at",
                "2026-11-25T09:00:00Z",
            ]
            .map(str::to_string)
            .to_vec()
        };
        let codes = race(&cli, vec![args(&a, PAT), args(&b, OLIVIA)]);
        assert_one_winner_one_refusal(&cli, &codes, "email_taken");
        let onboarded: Vec<Value> = cli
            .json(&["lines"])
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l["status"] == "onboarded")
            .collect();
        assert_eq!(
            onboarded.len(),
            2,
            "exactly one order (two lines) onboarded"
        );
    }
}

#[test]
fn r18_two_processes_racing_for_one_subdomain_leave_one_winner_and_one_refusal() {
    for round in 0..3 {
        let cli = two_onboarded_orders();
        let file = cli.file(&format!("svc{round}.json"), &services("contoso"));
        let args = |order: &str| {
            [
                "setup",
                "services",
                "--order",
                order,
                "--file",
                &file,
                "--as",
                PAT,
                "--at",
                "2026-11-26T09:00:00Z",
            ]
            .map(str::to_string)
            .to_vec()
        };
        let codes = race(&cli, vec![args("WO-1001"), args("WO-1002")]);
        assert_one_winner_one_refusal(&cli, &codes, "subdomain_taken");
    }
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
        .single()
        .expect("time")
}

fn setup_command(value: &Value) -> SetupCommand {
    let request: SetupRequest = serde_json::from_value(value.clone()).expect("setup file");
    SetupCommand::Setup(request.validate().expect("valid setup"))
}

fn services_command(value: &Value) -> SetupCommand {
    let request: ServicesRequest = serde_json::from_value(value.clone()).expect("services file");
    SetupCommand::ConfigureServices(request.validate().expect("valid services"))
}

fn ctx(actor: &str, t: DateTime<Utc>) -> Context {
    Context::new(Actor::parse(actor).expect("actor"), t)
}

#[test]
fn r16_r18_threads_racing_leave_one_winner_and_one_refusal() {
    // Admin email: two threads, two ledger handles on one file, released together.
    let cli = Cli::placed(true);
    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<OutcomeStatus> = std::thread::scope(|s| {
        let handles: Vec<_> = [("WO-1001", PAT), ("WO-1002", OLIVIA)]
            .into_iter()
            .map(|(order, actor)| {
                let barrier = Arc::clone(&barrier);
                let url = cli.url();
                s.spawn(move || {
                    let ledger = Ledger::open(&url).expect("open");
                    let command = setup_command(&wizard(order, "me", ADMIN));
                    barrier.wait();
                    ledger
                        .execute_setup(
                            &OrderId::parse(order).expect("id"),
                            command,
                            &ctx(actor, at(25, 9)),
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
    });
    let codes: Vec<Option<i32>> = results
        .iter()
        .map(|s| Some(if *s == OutcomeStatus::Success { 0 } else { 3 }))
        .collect();
    assert_one_winner_one_refusal(&cli, &codes, "email_taken");

    // Subdomain: the same, on two onboarded orders.
    let cli = two_onboarded_orders();
    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<Option<i32>> = std::thread::scope(|s| {
        let handles: Vec<_> = ["WO-1001", "WO-1002"]
            .into_iter()
            .map(|order| {
                let barrier = Arc::clone(&barrier);
                let url = cli.url();
                s.spawn(move || {
                    let ledger = Ledger::open(&url).expect("open");
                    barrier.wait();
                    let outcome = ledger
                        .execute_setup(
                            &OrderId::parse(order).expect("id"),
                            services_command(&services("contoso")),
                            &ctx(PAT, at(26, 9)),
                            None,
                        )
                        .expect("decided");
                    Some(if outcome.status == OutcomeStatus::Success {
                        0
                    } else {
                        3
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_one_winner_one_refusal(&cli, &results, "subdomain_taken");
}

#[test]
fn r16_a_setup_that_loses_the_race_is_redecided_into_a_recorded_refusal() {
    let cli = Cli::placed(true);
    let url = cli.url();
    let rival_url = url.clone();
    let appends = Arc::new(AtomicU32::new(0));
    // Just before the first append reaches the real store, the competing
    // writer of a lost race runs: deterministically between our
    // load/decide and our append.
    let before_first_append: Mutex<Option<Box<dyn FnOnce() + Send>>> =
        Mutex::new(Some(Box::new(move || {
            // WO-1002 claims the administrator first.
            let rival = Ledger::open(&rival_url).expect("open");
            let outcome = rival
                .execute_setup(
                    &OrderId::parse("WO-1002").expect("id"),
                    setup_command(&wizard("WO-1002", "me", ADMIN)),
                    &ctx(OLIVIA, at(25, 9)),
                    None,
                )
                .expect("rival decided");
            assert_eq!(outcome.status, OutcomeStatus::Success);
        })));
    let counted = Arc::clone(&appends);
    let store = FaultyStore::new(provledger_store::open(&url).expect("store"), move |_| {
        let hook = before_first_append.lock().expect("lock").take();
        if let Some(hook) = hook {
            hook();
        }
        counted.fetch_add(1, Ordering::SeqCst);
        None
    });
    let ledger = Ledger::from_parts(
        Box::new(store),
        ReadModels::open(&url).expect("read models"),
    );
    let outcome = ledger
        .execute_setup(
            &OrderId::parse("WO-1001").expect("id"),
            setup_command(&wizard("WO-1001", "me", ADMIN)),
            &ctx(PAT, at(25, 9)),
            None,
        )
        .expect("decided");
    assert_eq!(outcome.status, OutcomeStatus::Failed, "{outcome:?}");
    assert!(
        outcome
            .message
            .contains("already belongs to organisation ORG-WO-1002"),
        "{}",
        outcome.message
    );
    assert_eq!(
        appends.load(Ordering::SeqCst),
        2,
        "one conflict, then one re-decided append"
    );
    assert_one_winner_one_refusal(&cli, &[Some(0), Some(3)], "email_taken");
}

#[test]
fn setup_commands_honour_idempotency_keys() {
    let cli = Cli::placed(false);
    let file = cli.file("s.json", &wizard("WO-1001", "me", ADMIN));
    let args = [
        "setup",
        "complete",
        "--file",
        &file,
        "--as",
        PAT,
        "--at",
        "2026-11-25T09:00:00Z",
        "--idempotency-key",
        "wizard-1",
    ];
    let first = cli.json(&args);
    let count = cli.event_count();
    let again = cli.json(&args);
    assert_eq!(again["transaction_id"], first["transaction_id"]);
    assert_eq!(
        again["positions"], first["positions"],
        "organisation and reservation events included"
    );
    assert_eq!(again["status"], "success");
    assert_eq!(again["replayed"], true);
    assert_eq!(cli.event_count(), count);
    // Without the key, the same wizard is refused: the order is onboarded.
    cli.setup(&wizard("WO-1001", "me", ADMIN), PAT, "2026-11-25T10:00:00Z")
        .code(3)
        .stderr(predicate::str::contains("already onboarded"));
}
