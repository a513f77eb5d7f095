//! Scale-out: two `provledger serve` processes on one PostgreSQL ledger,
//! no shared memory. Clients mix writes on the same orders through both;
//! afterwards every acknowledged request is in the ledger, no update was
//! lost, and the hash chain verifies. Both servers stop on SIGTERM after
//! draining. Skipped (with a note) without `PROVLEDGER_TEST_POSTGRES_URL`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use provledger::Ledger;
use provledger_domain::{Event, OrderId};
use provledger_store::postgres::{drop_schema, test_url, unique_test_schema, PostgresStore};
use serde_json::json;

use crate::http::{make_tokens, seed};

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(url: &str) -> Serve {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("provledger"))
            .args([
                "--store",
                url,
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--allow-simulated",
            ])
            .env("PROVLEDGER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Serve { child, base }
    }

    /// SIGTERM, then the exit status (0 after a drain).
    fn terminate(mut self) -> Result<i32, String> {
        use std::os::unix::process::ExitStatusExt;
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().map_err(|e| e.to_string())?;
        status
            .code()
            .ok_or_else(|| format!("ended by signal {:?}", status.signal()))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_ledger_lose_no_update() {
    let Some(base) = test_url() else {
        return;
    };
    let schema = unique_test_schema("serve2");
    {
        // The sync PostgreSQL client runs its own runtime: not on this one's threads.
        let (base, schema) = (base.clone(), schema.clone());
        tokio::task::spawn_blocking(move || {
            PostgresStore::connect_in_schema(&base, &schema).map(drop)
        })
        .await
        .expect("joined")
        .expect("schema");
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let seed_url = url.clone();
    let tokens = tokio::task::spawn_blocking(move || {
        let ledger = Ledger::open(&seed_url).expect("ledger");
        seed(&ledger);
        make_tokens(&ledger)
    })
    .await
    .expect("seeded");
    let servers = [Serve::start(&url), Serve::start(&url)];
    let client = reqwest::Client::new();
    for s in &servers {
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/ready", s.base)).send().await {
                if r.status().is_success() {
                    ready = true;
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        assert!(ready, "{} never became ready", s.base);
    }
    // 8 clients × 12 writes, alternating servers, on the same two lines.
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let mut tasks = Vec::new();
    for c in 0..8u32 {
        let client = client.clone();
        let bases = bases.clone();
        let token = if c % 2 == 0 {
            tokens.partner_a.clone()
        } else {
            tokens.partner_a_contact.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut conflicts = 0u32;
            for i in 0..12u32 {
                let base = &bases[((c + i) % 2) as usize];
                let line = if i % 2 == 0 { "1.1" } else { "1.2" };
                let (path, body) = if i % 3 == 2 {
                    (
                        format!("{base}/api/v1/orders/WO-1001/lines/{line}/resend"),
                        json!({}),
                    )
                } else {
                    (
                        format!("{base}/api/v1/orders/WO-1001/lines/{line}/contact"),
                        json!({ "email": format!("c{c}-{i}@customer.example") }),
                    )
                };
                let response = client
                    .post(path)
                    .bearer_auth(&token)
                    .header("Idempotency-Key", format!("scale-{c}-{i}"))
                    .json(&body)
                    .send()
                    .await
                    .expect("response");
                let status = response.status();
                let value: serde_json::Value = response.json().await.expect("json");
                assert!(!status.is_server_error(), "{status}: {value}");
                if status.is_success() {
                    acked.push(value);
                } else {
                    assert_eq!(
                        value["type"], "/problems/version-conflict",
                        "{status}: {value}"
                    );
                    conflicts += 1;
                }
            }
            (acked, conflicts)
        }));
    }
    let mut acked = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (a, c) = task.await.expect("client");
        acked.extend(a);
        conflicts += c;
    }
    assert!(
        acked.len() >= 80,
        "only {} of 96 writes acknowledged ({conflicts} conflicts)",
        acked.len()
    );
    for s in servers {
        assert_eq!(
            s.terminate(),
            Ok(0),
            "serve did not stop cleanly on SIGTERM"
        );
    }
    let check_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let ledger = Ledger::open(&check_url).expect("ledger");
        let events = ledger
            .store()
            .read_stream(&OrderId::parse("WO-1001").expect("id").stream_id(), 0)
            .expect("stream");
        let in_ledger: HashSet<String> = events
            .iter()
            .map(|e| e.metadata.transaction_id.clone())
            .collect();
        let mut changes = 0;
        for e in &events {
            let event =
                Event::from_stored(&e.event_type, e.schema_version, &e.payload).expect("decodes");
            if let Event::ProvisioningContactChanged { new_email, .. } = &event {
                if new_email.as_str().starts_with('c') {
                    changes += 1;
                }
            }
        }
        let mut acked_changes = 0;
        for a in &acked {
            let tx = a["transaction_id"].as_str().expect("transaction id");
            assert!(
                in_ledger.contains(tx),
                "acknowledged {tx} is not in the ledger"
            );
            if a["message"]
                .as_str()
                .is_some_and(|m| m.contains("provisioning contact changed"))
            {
                acked_changes += 1;
            }
        }
        assert_eq!(
            changes, acked_changes,
            "every acknowledged change, and only those, is in the ledger"
        );
        let report = ledger.verify(&mut |_| {}).expect("verify");
        assert!(report.is_intact(), "{report:?}");
    })
    .await
    .expect("checked");
    let _ = tokio::task::spawn_blocking(move || drop_schema(&base, &schema)).await;
}
