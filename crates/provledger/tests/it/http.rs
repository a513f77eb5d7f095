//! HTTP integration tests of `provledger serve`: every route and status
//! code, the access matrix (role × route × own/other order), tokens, the
//! problem documents and the generated OpenAPI description.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use provledger::http::{serve_on, AppState};
use provledger::tokens;
use provledger::Ledger;
use provledger_domain::{
    Actor, Command, Context, Email, LineId, OrderId, OrderRequest, OrgId, Role,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A running server on a free loopback port over a seeded SQLite ledger.
pub struct Server {
    /// Keeps the ledger's directory alive.
    pub _dir: Option<tempfile::TempDir>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// One token per role name in [`Tokens`].
    pub tokens: Tokens,
    /// The client.
    pub client: reqwest::Client,
}

/// Tokens of the seeded principals.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// olivia@partner.example, ordering contact of WO-1001 (partner A).
    pub partner_a: String,
    /// pat@partner.example, partner contact of WO-1001 (different case in the token).
    pub partner_a_contact: String,
    /// bob@other.example, ordering contact of WO-2002 (partner B).
    pub partner_b: String,
    /// An auditor.
    pub auditor: String,
    /// Support.
    pub support: String,
    /// An operator.
    pub operator: String,
    /// A revoked token (of partner A).
    pub revoked: String,
    /// An expired token (of partner A).
    pub expired: String,
}

fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 9, 0, 0)
        .single()
        .expect("valid time")
}

fn order(id: &str, ordering: &str, partners: &[&str], lines: &[(&str, &str, &str)]) -> Command {
    let request: OrderRequest = serde_json::from_value(json!({
        "order_id": id,
        "ordering_contact": ordering,
        "partner": "Partner",
        "end_customer": "Customer",
        "partner_contacts": partners,
        "distributor_contacts": [],
        "lines": lines.iter().map(|(line, sub, offer)| json!({
            "line_id": line, "subscription_id": sub, "offer": offer,
            "rsd": "2026-11-01", "provisioning_contact": "it@customer.example"
        })).collect::<Vec<_>>(),
    }))
    .expect("order json");
    Command::PlaceOrder(request.validate().expect("valid order"))
}

/// Seed a ledger: WO-1001 (partner A, two lines), WO-2002 (partner B),
/// WO-3003 (partner A, onboarded: past PONR), initial emails sent.
pub fn seed(ledger: &Ledger) {
    let placed = t(2026, 10, 1);
    let as_user =
        |email: &str, at| Context::new(Actor::User(Email::parse(email).expect("email")), at);
    let place = |id: &str, who: &str, partners: &[&str], lines: &[(&str, &str, &str)]| {
        ledger
            .execute(
                &OrderId::parse(id).expect("id"),
                order(id, who, partners, lines),
                &as_user(who, placed),
                None,
            )
            .expect("placed");
    };
    place(
        "WO-1001",
        "olivia@partner.example",
        &["pat@partner.example"],
        &[("1.1", "Sub100042", "A-WX"), ("1.2", "Sub100043", "A-WX")],
    );
    place(
        "WO-2002",
        "bob@other.example",
        &[],
        &[("1.1", "Sub200001", "A-WX")],
    );
    place(
        "WO-3003",
        "olivia@partner.example",
        &[],
        &[("1.1", "Sub300001", "A-WX")],
    );
    ledger.tick(t(2026, 11, 2)).expect("tick");
    let wo3 = OrderId::parse("WO-3003").expect("id");
    ledger
        .execute(
            &wo3,
            Command::OnboardOrg {
                org_id: OrgId::parse("ORG-3003").expect("org"),
            },
            &as_user("olivia@partner.example", t(2026, 11, 3)),
            None,
        )
        .expect("onboarded");
    // A successful change on WO-1001 line 1.1.
    ledger
        .execute(
            &OrderId::parse("WO-1001").expect("id"),
            Command::ChangeContact {
                line_id: LineId::parse("1.1").expect("line"),
                new_email: Email::parse("first@customer.example").expect("email"),
                apply_to_all_lines: false,
            },
            &as_user("olivia@partner.example", t(2026, 11, 3)),
            None,
        )
        .expect("changed");
    // A refused change (after PONR): a failed row with its reason.
    ledger
        .execute(
            &wo3,
            Command::ChangeContact {
                line_id: LineId::parse("1.1").expect("line"),
                new_email: Email::parse("late@customer.example").expect("email"),
                apply_to_all_lines: false,
            },
            &as_user("olivia@partner.example", t(2026, 11, 4)),
            None,
        )
        .expect("recorded");
}

/// Create the tokens of [`Tokens`].
pub fn make_tokens(ledger: &Ledger) -> Tokens {
    let store = ledger.store();
    let now = Utc::now();
    let mk = |user: &str, role: Role| {
        tokens::create(
            store,
            &Email::parse(user).expect("email"),
            role,
            None,
            "test",
            now,
        )
        .expect("token")
        .token
    };
    let revoked = tokens::create(
        store,
        &Email::parse("olivia@partner.example").expect("email"),
        Role::User,
        None,
        "test",
        now,
    )
    .expect("token");
    tokens::revoke(store, &revoked.id, "test", now).expect("revoke");
    let expired = tokens::create(
        store,
        &Email::parse("olivia@partner.example").expect("email"),
        Role::User,
        Some(1),
        "test",
        now - chrono::Duration::days(2),
    )
    .expect("token");
    Tokens {
        partner_a: mk("olivia@partner.example", Role::User),
        partner_a_contact: mk("PAT@partner.example", Role::User),
        partner_b: mk("bob@other.example", Role::User),
        auditor: mk("audrey@audit.example", Role::Auditor),
        support: mk("sam@support.example", Role::Support),
        operator: mk("oscar@ops.example", Role::Operator),
        revoked: revoked.token,
        expired: expired.token,
    }
}

impl Server {
    /// Start a server over a fresh, seeded SQLite ledger.
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
        let (ledger, tokens) = tokio::task::spawn_blocking(move || {
            let ledger = Ledger::open(&url).expect("ledger");
            seed(&ledger);
            let tokens = make_tokens(&ledger);
            (ledger, tokens)
        })
        .await
        .expect("seeded");
        Server::over(ledger, tokens, Some(dir)).await
    }

    /// Start a server over `ledger`.
    pub async fn over(ledger: Ledger, tokens: Tokens, dir: Option<tempfile::TempDir>) -> Server {
        Server::over_state(AppState::new(ledger), tokens, dir).await
    }

    /// Start a server with `state`.
    pub async fn over_state(
        state: AppState,
        tokens: Tokens,
        dir: Option<tempfile::TempDir>,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_on(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let server = Server {
            _dir: dir,
            base,
            stop: Some(stop),
            task: Some(task),
            tokens,
            client,
        };
        server.wait_ready().await;
        server
    }

    /// Poll `/ready` with bounded retries.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.client.get(format!("{}/ready", self.base)).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
        panic!("server at {} never became ready", self.base);
    }

    /// Send a request; returns status, content type and JSON body (or the text as a JSON string).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, String, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("response");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, content_type, value)
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::GET, path, Some(token), None, None).await;
        (s, v)
    }

    /// POST with a token.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .call(Method::POST, path, Some(token), Some(body), None)
            .await;
        (s, v)
    }

    /// Stop and drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server stopped cleanly");
        }
    }
}

fn is_problem(content_type: &str, body: &Value, status: StatusCode) {
    assert!(
        content_type.starts_with("application/problem+json"),
        "{status}: not a problem document: {content_type} {body}"
    );
    assert_eq!(body["status"], json!(status.as_u16()), "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
}

fn failed_rows_by(rows: &Value, who: &str) -> usize {
    rows["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|r| {
                    r["status"] == "failed"
                        && r["submitted_by"]
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(who))
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_routes_and_tokens() {
    let s = Server::start().await;
    let (status, ct, body) = s.call(Method::GET, "/health", None, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ct.starts_with("application/json"));
    let (status, _, body) = s.call(Method::GET, "/ready", None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["head"].as_u64().is_some_and(|h| h > 0), "{body}");
    // No, garbage, revoked and expired tokens: 401 problem documents.
    for token in [
        None,
        Some("nonsense"),
        Some("plt_0123456789abcdef_00"),
        Some(s.tokens.revoked.as_str()),
        Some(s.tokens.expired.as_str()),
    ] {
        let (status, ct, body) = s
            .call(Method::GET, "/api/v1/lines", token, None, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        is_problem(&ct, &body, status);
    }
    // Unknown route and wrong method: problem documents too.
    let (status, ct, body) = s
        .call(
            Method::GET,
            "/api/v1/nowhere",
            Some(&s.tokens.operator),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    is_problem(&ct, &body, status);
    let (status, ct, body) = s
        .call(
            Method::DELETE,
            "/api/v1/lines",
            Some(&s.tokens.operator),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    is_problem(&ct, &body, status);
    // The page and its assets.
    for path in ["/", "/app.js", "/app.css"] {
        let (status, _, _) = s.call(Method::GET, path, None, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // Metrics count what happened.
    let (status, ct, body) = s.call(Method::GET, "/metrics", None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/plain"));
    let text = body.as_str().expect("text").to_string();
    for needle in [
        "provledger_http_requests_total{method=\"GET\",route=\"/api/v1/lines\",status=\"401\"} 5",
        "provledger_http_request_duration_seconds_bucket",
        "provledger_events_appended_total",
        "provledger_projection_lag_events",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_exactly_the_routes_the_router_serves() {
    let s = Server::start().await;
    let (status, _, doc) = s.call(Method::GET, "/openapi.json", None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post"] {
            if item.get(method).is_some() {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    // Every documented operation is routed (not the fallback, not 405).
    for (method, path) in &operations {
        let concrete = path
            .replace("{o}", "WO-1001")
            .replace("{l}", "1.1")
            .replace("{s}", "Sub100042")
            .replace("{id}", "WO-1001-C1");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, _, body) = s
            .call(
                method.clone(),
                &concrete,
                Some(&s.tokens.auditor),
                None,
                None,
            )
            .await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert_ne!(
            body["type"],
            json!("/problems/no-route"),
            "{method} {path} is not routed"
        );
    }
    // And every route of DESIGN.md §4 is documented.
    let expected = [
        ("POST", "/api/v1/orders"),
        ("POST", "/api/v1/orders/{o}/lines/{l}/contact"),
        ("POST", "/api/v1/orders/{o}/lines/{l}/resend"),
        ("POST", "/api/v1/orders/{o}/cases"),
        ("POST", "/api/v1/cases/{id}/resolve"),
        ("POST", "/api/v1/orders/{o}/setup"),
        ("POST", "/api/v1/orders/{o}/services"),
        ("POST", "/api/v1/orders/{o}/provision"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/lines"),
        ("GET", "/api/v1/transactions"),
        ("GET", "/api/v1/orders/{o}/history"),
        ("GET", "/api/v1/subscriptions/{s}/history"),
        ("GET", "/api/v1/verify"),
        ("GET", "/api/v1/evidence/subscriptions/{s}"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ];
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    want.sort();
    operations.sort();
    assert_eq!(operations, want);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_matrix_role_by_route_by_own_or_other_order() {
    let s = Server::start().await;
    let tk = s.tokens.clone();
    // --- reads: partner A sees its orders only; B's answers like a missing one.
    let (status, rows) = s.get("/api/v1/lines", &tk.partner_a).await;
    assert_eq!(status, StatusCode::OK);
    let orders: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["order_id"].as_str())
        .collect();
    assert!(
        orders.contains(&"WO-1001") && orders.contains(&"WO-3003"),
        "{orders:?}"
    );
    assert!(!orders.contains(&"WO-2002"), "{orders:?}");
    // A partner contact named with another case sees WO-1001 only.
    let (_, rows) = s.get("/api/v1/lines", &tk.partner_a_contact).await;
    let orders: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["order_id"].as_str())
        .collect();
    assert!(
        orders.iter().all(|o| *o == "WO-1001") && !orders.is_empty(),
        "{orders:?}"
    );
    let (_, missing) = s.get("/api/v1/orders/WO-9999/history", &tk.partner_a).await;
    let (status, hidden) = s.get("/api/v1/orders/WO-2002/history", &tk.partner_a).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(hidden["type"], missing["type"]);
    assert_eq!(hidden["title"], missing["title"]);
    assert_eq!(
        hidden["detail"].as_str().map(|d| d.replace("WO-2002", "X")),
        missing["detail"]
            .as_str()
            .map(|d| d.replace("WO-9999", "X"))
    );
    let (status, _) = s
        .get("/api/v1/subscriptions/Sub200001/history", &tk.partner_a)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, rows) = s
        .get("/api/v1/subscriptions/Sub100042/history", &tk.partner_a)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(rows
        .as_array()
        .is_some_and(|r| r.iter().all(|e| e["hash"].is_string())));
    let (_, page) = s
        .get("/api/v1/transactions?limit=1000", &tk.partner_b)
        .await;
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|r| r["order_id"] == "WO-2002"),
        "{page}"
    );
    // Auditors, support and operators read everything.
    for token in [&tk.auditor, &tk.support, &tk.operator] {
        let (status, _) = s.get("/api/v1/orders/WO-2002/history", token).await;
        assert_eq!(status, StatusCode::OK);
    }
    // verify and evidence: auditors and operators only. This server has no
    // signing key, so evidence is 503 for them (unsigned events are not
    // evidence); a missing subscription is still 404.
    for (token, verify, evidence) in [
        (&tk.auditor, 200, 503),
        (&tk.operator, 200, 503),
        (&tk.partner_a, 403, 403),
        (&tk.support, 403, 403),
    ] {
        let (status, body) = s.get("/api/v1/verify", token).await;
        assert_eq!(status.as_u16(), verify, "{body}");
        let (status, body) = s
            .get("/api/v1/evidence/subscriptions/Sub100042", token)
            .await;
        assert_eq!(status.as_u16(), evidence, "{body}");
    }
    let (status, body) = s
        .get("/api/v1/evidence/subscriptions/Sub100042", &tk.auditor)
        .await;
    assert_eq!(status.as_u16(), 503);
    assert_eq!(body["type"], "/problems/evidence-unavailable", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("--evidence-key"));
    let (status, _) = s
        .get("/api/v1/evidence/subscriptions/Sub999999", &tk.auditor)
        .await;
    assert_eq!(status.as_u16(), 404);
    let (_, report) = s.get("/api/v1/verify", &tk.auditor).await;
    assert!(report["first_broken"].is_null(), "{report}");

    // --- writes on partner B's order by partner A: 404, and the refusal is recorded.
    let contact = json!({ "email": "new@customer.example", "all_lines": false });
    let (status, body) = s
        .post(
            "/api/v1/orders/WO-2002/lines/1.1/contact",
            &tk.partner_a,
            contact.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["type"], missing["type"]);
    let (status, _) = s
        .post(
            "/api/v1/orders/WO-2002/lines/1.1/resend",
            &tk.partner_a,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = s
        .get(
            "/api/v1/transactions?order=WO-2002&status=failed",
            &tk.operator,
        )
        .await;
    assert_eq!(failed_rows_by(&page, "olivia@partner.example"), 2, "{page}");
    // Partner B does not learn anything of it either, but sees its own order's refusals.
    // --- auditor writes: 403, recorded as a refusal on the visible order.
    let (status, body) = s
        .post(
            "/api/v1/orders/WO-1001/lines/1.1/contact",
            &tk.auditor,
            contact.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = s
        .post(
            "/api/v1/orders/WO-1001/lines/1.1/resend",
            &tk.auditor,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .post(
            "/api/v1/orders/WO-1001/cases",
            &tk.auditor,
            json!({"line_id": "1.1", "type": "resend-provisioning-email"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .post("/api/v1/orders/WO-1001/provision", &tk.auditor, json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.post("/api/v1/orders", &tk.auditor, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .post("/api/v1/cases/WO-1001-C1/resolve", &tk.auditor, json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Support may not change contacts: 403, recorded.
    let (status, _) = s
        .post(
            "/api/v1/orders/WO-1001/lines/1.1/contact",
            &tk.support,
            contact.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = s
        .get(
            "/api/v1/transactions?order=WO-1001&status=failed",
            &tk.operator,
        )
        .await;
    assert!(failed_rows_by(&page, "audrey@audit.example") >= 2, "{page}");
    assert_eq!(failed_rows_by(&page, "sam@support.example"), 1, "{page}");

    // --- own order: partner A changes a contact (200), resends (200).
    let (status, body) = s
        .post(
            "/api/v1/orders/WO-1001/lines/1.1/contact",
            &tk.partner_a,
            contact.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    assert!(body["transaction_id"].is_string() && body["positions"].is_array());
    let (status, body) = s
        .post(
            "/api/v1/orders/WO-1001/lines/1.2/resend",
            &tk.partner_a_contact,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // After PONR: 409 refused, recorded, with the transaction.
    let (status, ct, body) = s
        .call(
            Method::POST,
            "/api/v1/orders/WO-3003/lines/1.1/contact",
            Some(&tk.partner_a),
            Some(contact.clone()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    is_problem(&ct, &body, status);
    assert_eq!(body["type"], "/problems/refused");
    assert!(body["transaction_id"].is_string(), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("admin.webex.com")),
        "{body}"
    );
    // The chain still verifies after all of it.
    let (_, report) = s.get("/api/v1/verify", &tk.operator).await;
    assert!(report["first_broken"].is_null(), "{report}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_idempotency_size_and_every_write_route() {
    let s = Server::start().await;
    let tk = s.tokens.clone();
    let contact_path = "/api/v1/orders/WO-1001/lines/1.1/contact";
    // 400: not JSON.
    let response = s
        .client
        .post(format!("{}{contact_path}", s.base))
        .bearer_auth(&tk.partner_a)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // 422: invalid email, unknown field, bad line, bad filter.
    let (status, ct, body) = s
        .call(
            Method::POST,
            contact_path,
            Some(&tk.partner_a),
            Some(json!({"email": "not-an-email"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    is_problem(&ct, &body, status);
    let (status, _) = s
        .post(
            contact_path,
            &tk.partner_a,
            json!({"email": "a@b.example", "bogus": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s
        .post(
            "/api/v1/orders/WO-1001/lines/9.9/contact",
            &tk.partner_a,
            json!({"email": "a@b.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s
        .get("/api/v1/transactions?status=maybe", &tk.partner_a)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s.get("/api/v1/transactions?limit=0", &tk.partner_a).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // 413: more than 1 MiB.
    let big = json!({ "email": "a@b.example", "pad": "x".repeat(1024 * 1024 + 10) });
    let (status, ct, body) = s
        .call(
            Method::POST,
            contact_path,
            Some(&tk.partner_a),
            Some(big),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    is_problem(&ct, &body, status);
    // Idempotency: same key → the first result, nothing appended; empty key → 422.
    let body = json!({"email": "idem@customer.example"});
    let (s1, _, first) = s
        .call(
            Method::POST,
            contact_path,
            Some(&tk.partner_a),
            Some(body.clone()),
            Some("k-1"),
        )
        .await;
    assert_eq!(s1, StatusCode::OK, "{first}");
    let (s2, _, again) = s
        .call(
            Method::POST,
            contact_path,
            Some(&tk.partner_a),
            Some(body.clone()),
            Some("k-1"),
        )
        .await;
    assert_eq!(s2, StatusCode::OK, "{again}");
    assert_eq!(first["transaction_id"], again["transaction_id"]);
    assert_eq!(again["replayed"], json!(true));
    let (status, _, body) = s
        .call(
            Method::POST,
            contact_path,
            Some(&tk.partner_a),
            Some(json!({"email": "x@customer.example"})),
            Some("  "),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["type"], "/problems/idempotency-key");
    // Place an order: 201; placing it again is bad input.
    let new_order = json!({"order_id": "WO-4004", "ordering_contact": "olivia@partner.example",
        "partner": "Acme", "end_customer": "Contoso", "partner_contacts": [], "distributor_contacts": [],
        "lines": [{"line_id": "1.1", "subscription_id": "Sub400001", "offer": "A-Flex",
                   "rsd": "2027-01-15", "provisioning_contact": "it@customer.example"}]});
    let (status, body) = s
        .post("/api/v1/orders", &tk.partner_a, new_order.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = s.post("/api/v1/orders", &tk.partner_a, new_order).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Resend before the RSD: refused (409) with the R3 message.
    let (status, body) = s
        .post(
            "/api/v1/orders/WO-4004/lines/1.1/resend",
            &tk.partner_a,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Support case on an own order: 200.
    let (status, body) = s
        .post(
            "/api/v1/orders/WO-1001/cases",
            &tk.partner_a,
            json!({"line_id": "1.1", "type": "resend-provisioning-email", "note": "bounced"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Setup wizard, services, provision: answered by the rules, never a 500.
    let (status, body) = s
        .post("/api/v1/orders/WO-1001/services", &tk.partner_a, json!({}))
        .await;
    assert!(matches!(status.as_u16(), 409 | 422), "{status} {body}");
    let (status, body) = s
        .post("/api/v1/orders/WO-1001/provision", &tk.partner_a, json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/orders/WO-1001/setup",
            &tk.partner_a,
            json!({"order_id": "WO-2002"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/orders/WO-1001/setup",
            &tk.partner_a,
            json!({"who_sets_up": "nobody"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Resolving a case: support and operators only; an outcome is required.
    let (status, body) = s
        .post("/api/v1/cases/WO-1001-C1/resolve", &tk.support, json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/cases/WO-1001-C1/resolve",
            &tk.partner_a,
            json!({"outcome": "resent"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/cases/WO-1001-C1/resolve",
            &tk.support,
            json!({"outcome": "resent", "note": "sent again"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    let (status, body) = s
        .post(
            "/api/v1/cases/WO-1001-C1/resolve",
            &tk.support,
            json!({"outcome": "rejected"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "already resolved: {body}"
    );
    let (status, body) = s
        .post(
            "/api/v1/cases/WO-1001-C9/resolve",
            &tk.operator,
            json!({"outcome": "resent"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown case: {body}"
    );
    let (status, body) = s
        .post(
            "/api/v1/cases/WO-9999-C1/resolve",
            &tk.operator,
            json!({"outcome": "resent"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The events carry the channel and the token.
    let (_, history) = s.get("/api/v1/orders/WO-1001/history", &tk.operator).await;
    let last = history
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["event_type"], "SupportCaseResolved", "{last}");
    let dir = s._dir.as_ref().expect("the ledger's directory");
    let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let last = tokio::task::spawn_blocking(move || {
        let ledger = Ledger::open_with(&url, provledger_store::OpenMode::ReadOnly).expect("read");
        ledger
            .store()
            .read_stream("order-WO-1001", 0)
            .expect("stream")
            .pop()
            .expect("an event")
    })
    .await
    .expect("read the stream");
    let last = serde_json::to_value(&last).expect("json");
    assert_eq!(last["metadata"]["via"], "http", "{last}");
    assert!(last["metadata"]["token_id"].is_string(), "{last}");
    assert_eq!(last["metadata"]["actor"], "sam@support.example", "{last}");
    // Nothing above was a 500.
    let (_, _, metrics) = s.call(Method::GET, "/metrics", None, None, None).await;
    assert!(
        !metrics
            .as_str()
            .unwrap_or_default()
            .contains("status=\"500\""),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_filters_and_cursor_paging() {
    let s = Server::start().await;
    let tk = s.tokens.clone();
    for i in 0..5 {
        let (status, body) = s
            .post(
                "/api/v1/orders/WO-1001/lines/1.2/contact",
                &tk.partner_a,
                json!({"email": format!("c{i}@customer.example")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, all) = s
        .get(
            "/api/v1/transactions?type=provisioning_email_update&subscription=Sub100043&limit=1000",
            &tk.partner_a,
        )
        .await;
    let all = all["items"].as_array().expect("items").clone();
    assert_eq!(all.len(), 5);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/transactions?type=provisioning_email_update&subscription=Sub100043&limit=2&cursor={c}"),
            None => "/api/v1/transactions?type=provisioning_email_update&subscription=Sub100043&limit=2".to_string(),
        };
        let (status, page) = s.get(&path, &tk.partner_a).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, all);
    let (_, failed) = s
        .get(
            "/api/v1/transactions?status=failed&since=2026-11-01&until=2026-11-30",
            &tk.partner_a,
        )
        .await;
    let items = failed["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .any(|r| r["order_id"] == "WO-3003" && r["reason"].is_string()),
        "{failed}"
    );
    let (status, _) = s
        .get("/api/v1/transactions?cursor=nonsense", &tk.partner_a)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    s.stop().await;
}

#[test]
fn token_cli_creates_lists_and_revokes_and_keeps_only_the_hash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("l.db");
    let run = |args: &[&str]| {
        let out = assert_cmd::Command::cargo_bin("provledger")
            .expect("binary")
            .arg("--db")
            .arg(&db)
            .args(args)
            .output()
            .expect("ran");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(run(&["init"]).0, Some(0));
    let (code, out, err) = run(&[
        "--format",
        "json",
        "token",
        "create",
        "--user",
        "pat@partner.example",
        "--role",
        "auditor",
        "--expires",
        "30",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let created: Value = serde_json::from_str(&out).expect("json");
    for field in ["id", "token", "user", "role", "expires_at"] {
        assert!(created.get(field).is_some(), "{field} missing in {created}");
    }
    assert_eq!(created["role"], "auditor");
    let token = created["token"].as_str().expect("token").to_string();
    let (code, out, _) = run(&["--format", "json", "token", "list"]);
    assert_eq!(code, Some(0));
    assert!(!out.contains(&token), "a listed token shows the secret");
    let listed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let id = created["id"].as_str().expect("id");
    let (code, _, err) = run(&["token", "revoke", id]);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = run(&["--format", "json", "token", "list"]);
    assert!(out.contains("revoked_at\": \"20"), "{out}");
    // The token events are in the hash chain and the chain verifies.
    let (code, _, err) = run(&["verify"]);
    assert_eq!(code, Some(0), "{err}");
    // An export with token streams imports into a new ledger (import replays the rules).
    let export = dir.path().join("export.jsonl");
    let export_arg = export.display().to_string();
    let (code, _, err) = run(&["export", "--out", &export_arg]);
    assert_eq!(code, Some(0), "{err}");
    let copy = dir.path().join("copy.db");
    let run_copy = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("provledger")
            .expect("binary")
            .arg("--db")
            .arg(&copy)
            .args(args)
            .output()
            .expect("ran")
    };
    assert!(run_copy(&["init", "--for-import"]).status.success());
    let imported = run_copy(&["import", "--file", &export_arg]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let listed = run_copy(&["--format", "json", "token", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(id));
    let (code, _, err) = run(&[
        "token",
        "create",
        "--user",
        "x@y.example",
        "--role",
        "admin",
    ]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = run(&["token", "revoke", "nope"]);
    assert_eq!(code, Some(2), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_a_signed_bundle_when_the_server_has_a_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let prefix = dir.path().join("ev");
    let (state, tokens) = tokio::task::spawn_blocking(move || {
        let ledger = Ledger::open(&url).expect("ledger");
        seed(&ledger);
        let tokens = make_tokens(&ledger);
        let mut sink = Vec::new();
        let mut err = Vec::new();
        let mut io = provledger::cli::Io {
            out: &mut sink,
            err: &mut err,
        };
        provledger::evidence::keygen(&prefix, provledger::output::Format::Json, &mut io)
            .expect("keygen");
        let key = prefix.with_extension("key");
        (AppState::new(ledger).with_evidence_key(key), tokens)
    })
    .await
    .expect("seeded");
    let s = Server::over_state(state, tokens, Some(dir)).await;
    let (status, bundle) = s
        .get(
            "/api/v1/evidence/subscriptions/Sub100042",
            &s.tokens.auditor,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert!(bundle["checkpoint"].is_object(), "{bundle}");
    assert!(bundle["key_id"].is_string(), "{bundle}");
    let events = bundle["events"].as_array().expect("events");
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["inclusion_proof"].is_array()),
        "{bundle}"
    );
    let (status, _) = s
        .get(
            "/api/v1/evidence/subscriptions/Sub999999",
            &s.tokens.auditor,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .get(
            "/api/v1/evidence/subscriptions/Sub100042",
            &s.tokens.partner_a,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.stop().await;
}
