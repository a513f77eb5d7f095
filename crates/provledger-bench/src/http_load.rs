//! The HTTP load check of `provledger serve` (docs/performance.md): many
//! concurrent clients on loopback for a fixed time, mixing reads and
//! writes, on SQLite (one server) or PostgreSQL (two servers on one
//! ledger). Reports requests/s, p50/p99 latency, the 5xx count and the
//! events lost (acknowledged writes that are not in the ledger afterwards).
//!
//! This module exists because throughput and tail latency of the server are
//! measured facts, never timed assertions in tests. Each server runs on its
//! own runtime and its own [`Ledger`] (own connections, caches and write
//! lock): nothing is shared between them but the database.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use chrono::Utc;
use provledger::http::{serve_on, AppState};
use provledger::{tokens, Ledger, Origin, Submission};
use provledger_domain::{Actor, ClockMode, Command, Email, OrderId, OrderRequest, Role};
use serde::Serialize;
use serde_json::json;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent clients.
    pub clients: usize,
    /// How long the clients run.
    pub duration: Duration,
    /// Orders seeded (two lines each).
    pub orders: usize,
    /// Percentage of requests that are writes.
    pub write_percent: u32,
    /// `None`: SQLite in a temporary directory, one server; `Some(url)`:
    /// PostgreSQL in a fresh schema, two servers.
    pub postgres: Option<String>,
}

/// The result of one load check.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Servers sharing the ledger.
    pub servers: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Seconds the clients ran.
    pub seconds: f64,
    /// Requests answered.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Transport errors (no answer at all).
    pub transport_errors: u64,
    /// Writes acknowledged (200 or a recorded refusal, 409 with a transaction).
    pub writes_acknowledged: u64,
    /// Acknowledged writes whose transaction is not in the ledger.
    pub events_lost: u64,
    /// Whether the hash chain verifies afterwards.
    pub chain_intact: bool,
}

/// A live ledger (the production case: the ledger's clock dates every
/// command) with `orders` orders whose RSD is ahead, so contact changes
/// succeed and resends are refused and recorded (R3: nothing to resend yet).
fn seed(ledger: &Ledger, orders: usize) -> anyhow::Result<()> {
    ledger.initialise(ClockMode::Live)?;
    let olivia = Email::parse("olivia@partner.example")?;
    for i in 0..orders {
        let id = format!("WO-{}", 10_000 + i);
        let request: OrderRequest = serde_json::from_value(json!({
            "order_id": id, "ordering_contact": "olivia@partner.example",
            "partner": "Acme Partner", "end_customer": "Contoso",
            "partner_contacts": ["pat@partner.example"], "distributor_contacts": [],
            "lines": [
                {"line_id": "1.1", "subscription_id": format!("Sub{}", 500_000 + 2 * i), "offer": "A-WX",
                 "rsd": "2099-01-10", "provisioning_contact": "it@customer.example"},
                {"line_id": "1.2", "subscription_id": format!("Sub{}", 500_001 + 2 * i), "offer": "A-Flex",
                 "rsd": "2099-01-10", "provisioning_contact": "it@customer.example"}
            ]
        }))?;
        ledger.submit(Submission::new(
            OrderId::parse(&id)?,
            Command::PlaceOrder(request.validate()?),
            Actor::User(olivia.clone()),
            Origin::cli(),
        ))?;
    }
    Ok(())
}

struct Running {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

/// Start one server on its own runtime (two worker threads) and ledger.
fn start_server(url: &str) -> anyhow::Result<Running> {
    let ledger = Ledger::open(url)?;
    let std_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    std_listener.set_nonblocking(true)?;
    let base = format!("http://{}", std_listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || -> anyhow::Result<()> {
        let ledger = Arc::new(ledger);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let state = AppState::shared(Arc::clone(&ledger));
        let served = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            serve_on(listener, state, async {
                let _ = stopped.await;
            })
            .await
        });
        drop(runtime);
        drop(ledger);
        served?;
        Ok(())
    });
    Ok(Running { base, stop, thread })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Run the load check.
pub fn run(opts: &LoadOptions, log: &mut dyn std::io::Write) -> anyhow::Result<LoadReport> {
    let dir = tempfile::tempdir()?;
    let (backend, url, servers, schema) = match &opts.postgres {
        None => (
            "sqlite",
            format!("sqlite:{}", dir.path().join("load.db").display()),
            1,
            None,
        ),
        Some(base) => {
            let (url, schema) = crate::measure::pg_schema(base)?;
            ("postgres", url, 2, Some((base.clone(), schema)))
        }
    };
    writeln!(log, "seeding {} orders on {backend}…", opts.orders)?;
    let (user_token, auditor_token) = {
        let ledger = Ledger::open(&url)?;
        seed(&ledger, opts.orders)?;
        let now = Utc::now();
        let user = tokens::create(
            ledger.store(),
            &Email::parse("olivia@partner.example")?,
            Role::User,
            Some(1),
            "bench",
            now,
        )?;
        let auditor = tokens::create(
            ledger.store(),
            &Email::parse("audrey@audit.example")?,
            Role::Auditor,
            Some(1),
            "bench",
            now,
        )?;
        (user.token, auditor.token)
    };
    let running: Vec<Running> = (0..servers)
        .map(|_| start_server(&url))
        .collect::<anyhow::Result<_>>()?;
    let bases: Vec<String> = running.iter().map(|r| r.base.clone()).collect();
    writeln!(
        log,
        "{} client(s) for {:?} against {}…",
        opts.clients,
        opts.duration,
        bases.join(", ")
    )?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let opts2 = opts.clone();
    let (latencies, statuses, transport_errors, acked, elapsed) =
        client_rt.block_on(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(opts2.clients)
                .timeout(Duration::from_secs(60))
                .build()?;
            // Wait until every server answers /ready (bounded).
            for base in &bases {
                let mut ready = false;
                for _ in 0..1000 {
                    if let Ok(r) = client.get(format!("{base}/ready")).send().await {
                        if r.status().is_success() {
                            ready = true;
                            break;
                        }
                    }
                    tokio::task::yield_now().await;
                }
                if !ready {
                    return Err(anyhow!("{base} never became ready"));
                }
            }
            let started = Instant::now();
            let deadline = started + opts2.duration;
            let mut tasks = Vec::new();
            for c in 0..opts2.clients {
                let client = client.clone();
                let bases = bases.clone();
                let user = user_token.clone();
                let auditor = auditor_token.clone();
                let orders = opts2.orders;
                let write_percent = opts2.write_percent;
                tasks.push(tokio::spawn(async move {
                    let mut rng = provledger_bench_rng(c as u64);
                    let mut latencies = Vec::new();
                    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
                    let mut transport = 0u64;
                    let mut acked = Vec::new();
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        i += 1;
                        let base = &bases[(rng() as usize + c) % bases.len()];
                        let order = 10_000 + (rng() as usize % orders);
                        let line = if rng().is_multiple_of(2) {
                            "1.1"
                        } else {
                            "1.2"
                        };
                        let sub = 500_000 + 2 * (order - 10_000) + usize::from(line == "1.2");
                        let dice = (rng() % 100) as u32;
                        let write = dice < write_percent;
                        let request = if write {
                            let key = format!("load-{c}-{i}");
                            if dice.is_multiple_of(4) {
                                client
                                    .post(format!(
                                        "{base}/api/v1/orders/WO-{order}/lines/{line}/resend"
                                    ))
                                    .bearer_auth(&user)
                                    .header("Idempotency-Key", key)
                                    .json(&json!({}))
                            } else {
                                client
                                    .post(format!(
                                        "{base}/api/v1/orders/WO-{order}/lines/{line}/contact"
                                    ))
                                    .bearer_auth(&user)
                                    .header("Idempotency-Key", key)
                                    .json(&json!({ "email": format!("c{c}-{i}@customer.example") }))
                            }
                        } else {
                            match dice % 3 {
                                0 => client
                                    .get(format!(
                                        "{base}/api/v1/transactions?order=WO-{order}&limit=50"
                                    ))
                                    .bearer_auth(&user),
                                1 => client
                                    .get(format!("{base}/api/v1/lines?order=WO-{order}"))
                                    .bearer_auth(&user),
                                _ => client
                                    .get(format!("{base}/api/v1/subscriptions/Sub{sub}/history"))
                                    .bearer_auth(&auditor),
                            }
                        };
                        let t0 = Instant::now();
                        match request.send().await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let body = response.bytes().await.unwrap_or_default();
                                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                                *statuses.entry(status).or_default() += 1;
                                if write && (status == 200 || status == 409) {
                                    if let Ok(v) =
                                        serde_json::from_slice::<serde_json::Value>(&body)
                                    {
                                        if let Some(tx) = v["transaction_id"].as_str() {
                                            acked.push(tx.to_string());
                                        }
                                    }
                                }
                            }
                            Err(_) => transport += 1,
                        }
                    }
                    (latencies, statuses, transport, acked)
                }));
            }
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut transport = 0;
            let mut acked = Vec::new();
            for task in tasks {
                let (l, s, t, a) = task.await?;
                latencies.extend(l);
                for (k, v) in s {
                    *statuses.entry(k).or_default() += v;
                }
                transport += t;
                acked.extend(a);
            }
            Ok::<_, anyhow::Error>((latencies, statuses, transport, acked, started.elapsed()))
        })?;
    drop(client_rt);
    for r in running {
        let _ = r.stop.send(());
        r.thread
            .join()
            .map_err(|_| anyhow!("a server thread panicked"))??;
    }
    writeln!(log, "checking the ledger…")?;
    let ledger = Ledger::open(&url)?;
    let mut in_ledger = HashSet::new();
    for event in ledger.store().read_all(0)? {
        in_ledger.insert(event?.metadata.transaction_id);
    }
    let lost = acked.iter().filter(|tx| !in_ledger.contains(*tx)).count() as u64;
    let chain_intact = ledger.verify(&mut |_| {})?.is_intact();
    drop(ledger);
    if let Some((base, schema)) = schema {
        provledger_store::postgres::drop_schema(&base, &schema).context("drop the load schema")?;
    }
    let mut sorted = latencies;
    sorted.sort_by(f64::total_cmp);
    let seconds = elapsed.as_secs_f64();
    let requests = sorted.len() as u64;
    Ok(LoadReport {
        backend: backend.to_string(),
        servers,
        clients: opts.clients,
        seconds,
        requests,
        requests_per_second: requests as f64 / seconds,
        p50_ms: percentile(&sorted, 0.50),
        p99_ms: percentile(&sorted, 0.99),
        server_errors: statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum(),
        statuses,
        transport_errors,
        writes_acknowledged: acked.len() as u64,
        events_lost: lost,
        chain_intact,
    })
}

/// A small xorshift generator per client (deterministic per seed).
fn provledger_bench_rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

impl LoadReport {
    /// One Markdown table row.
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {:.0} s | {} | {:.0} | {:.1} ms | {:.1} ms | {} | {} | {} | {} |",
            self.backend,
            self.servers,
            self.clients,
            self.seconds,
            self.requests,
            self.requests_per_second,
            self.p50_ms,
            self.p99_ms,
            self.server_errors,
            self.writes_acknowledged,
            self.events_lost,
            if self.chain_intact { "yes" } else { "**no**" }
        )
    }

    /// The table header matching [`LoadReport::row`].
    pub fn header() -> &'static str {
        "| backend | servers | clients | ran | requests | requests/s | p50 | p99 | 5xx | writes acknowledged | events lost | chain verifies |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    }
}
