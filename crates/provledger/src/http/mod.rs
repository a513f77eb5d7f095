//! `provledger serve`: the HTTP API and the web Transaction Manager
//! (DESIGN.md §4, docs/http.md), and `provledger token`.
//!
//! This module exists to put the ledger behind HTTP without giving the
//! server any state of its own: every request authenticates a bearer token
//! against the ledger, reads or writes through the same [`Ledger`] the CLI
//! uses, and answers JSON (the CLI's fields) or an RFC 9457 problem. Any
//! number of servers may share one PostgreSQL ledger.
//!
//! Layout: [`auth`] (tokens → principals), [`problem`] (errors),
//! [`adapter`] (the one write path), [`routes`] (handlers and scoping),
//! [`metrics`], [`openapi`] (the generated description), [`page`] (the
//! embedded Transaction Manager).

pub mod adapter;
pub mod auth;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod problem;
pub mod routes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use clap::{Args, Subcommand};
use provledger_domain::{ClockMode, Email, Role};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::cli::Io;
use crate::output::{self, Format};
use crate::{tokens, AppError, Ledger, EXIT_OK};

use metrics::Metrics;
use problem::Problem;

/// Largest request body accepted (413 beyond).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Longest a request may take before it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `provledger serve` options.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Serve a ledger with a simulated clock (demos, tests); every response
    /// then says so (`Provledger-Clock: simulated`).
    #[arg(long)]
    pub allow_simulated: bool,
    /// Sign evidence bundles (`GET /api/v1/evidence/subscriptions/{s}`)
    /// with this key (`provledger keygen`); without it that route returns
    /// the subscription's order events unsigned.
    #[arg(long, value_name = "PREFIX.key")]
    pub evidence_key: Option<std::path::PathBuf>,
}

/// `provledger token …`
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed once and only its SHA-256 is kept.
    Create {
        /// The user the token authenticates (an email).
        #[arg(long)]
        user: String,
        /// user, auditor, support or operator.
        #[arg(long)]
        role: String,
        /// Days until the token expires (default: never).
        #[arg(long, value_name = "DAYS")]
        expires: Option<u32>,
    },
    /// List every token (never the tokens themselves).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// What every handler shares: the ledger, the write lock, the metrics.
#[derive(Clone)]
pub struct AppState {
    ledger: Arc<Ledger>,
    writes: Arc<Mutex<()>>,
    metrics: Arc<Metrics>,
    simulated: bool,
    evidence_key: Option<Arc<std::path::PathBuf>>,
}

impl AppState {
    /// State over an opened ledger.
    pub fn new(ledger: Ledger) -> AppState {
        AppState::shared(Arc::new(ledger))
    }

    /// State over a shared ledger. Keep a clone to drop the ledger outside
    /// the runtime: the PostgreSQL client may not be dropped on its threads.
    pub fn shared(ledger: Arc<Ledger>) -> AppState {
        let simulated = ledger
            .clock()
            .is_ok_and(|mode| mode == ClockMode::Simulated);
        AppState {
            ledger,
            writes: Arc::new(Mutex::new(())),
            metrics: Arc::new(Metrics::default()),
            simulated,
            evidence_key: None,
        }
    }

    /// Sign evidence bundles with the key at `path`.
    pub fn with_evidence_key(mut self, path: std::path::PathBuf) -> AppState {
        self.evidence_key = Some(Arc::new(path));
        self
    }

    /// The evidence signing key's path, if the server signs bundles.
    pub fn evidence_key(&self) -> Option<&std::path::Path> {
        self.evidence_key.as_deref().map(|p| p.as_path())
    }

    /// Whether the ledger's clock is simulated (every response says so).
    pub fn simulated(&self) -> bool {
        self.simulated
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Run blocking ledger work off the async threads.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, Problem>
    where
        F: FnOnce(&Ledger) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let ledger = Arc::clone(&self.ledger);
        match tokio::task::spawn_blocking(move || f(&ledger)).await {
            Ok(result) => result.map_err(Problem::from),
            Err(e) => {
                tracing::error!(error = %e, "blocking task failed");
                Err(Problem::internal())
            }
        }
    }

    /// Run a blocking write, one at a time in this process.
    pub async fn write<T, F>(&self, f: F) -> Result<T, Problem>
    where
        F: FnOnce(&Ledger) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let writes = Arc::clone(&self.writes);
        self.blocking(move |ledger| {
            let _turn = writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(ledger)
        })
        .await
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The whole application: `/api/v1`, health, metrics, OpenAPI, the page.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/orders", post(routes::place_order))
        .route(
            "/orders/{o}/lines/{l}/contact",
            post(routes::change_contact),
        )
        .route("/orders/{o}/lines/{l}/resend", post(routes::resend_email))
        .route("/orders/{o}/cases", post(routes::open_case))
        .route("/cases/{id}/resolve", post(routes::resolve_case))
        .route("/orders/{o}/setup", post(routes::complete_setup))
        .route("/orders/{o}/services", post(routes::configure_services))
        .route("/orders/{o}/provision", post(routes::provision))
        .route("/me", get(routes::me))
        .route("/lines", get(routes::lines))
        .route("/transactions", get(routes::transactions))
        .route("/orders/{o}/history", get(routes::order_history))
        .route(
            "/subscriptions/{s}/history",
            get(routes::subscription_history),
        )
        .route("/verify", get(routes::verify))
        .route("/evidence/subscriptions/{s}", get(routes::evidence));
    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .fallback(routes::no_route)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // Outside the timeout, so that a 408 is a problem document too.
        .layer(middleware::map_response(problem_for_bare_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Give an error response the framework made (405, 413, …) a problem body.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(problem::PROBLEM_JSON));
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let mut p = Problem::for_status(status).into_response();
        if let Some(allow) = response.headers().get(header::ALLOW) {
            p.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return p;
    }
    response
}

/// Count and log every request.
async fn observe(State(state): State<AppState>, request: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let mut response = next.run(request).await;
    if state.simulated {
        response.headers_mut().insert(
            header::HeaderName::from_static("provledger-clock"),
            header::HeaderValue::from_static("simulated"),
        );
    }
    let status = response.status();
    let seconds = started.elapsed().as_secs_f64();
    state
        .metrics
        .observe(&method, &route, status.as_u16(), seconds);
    tracing::info!(
        method = %method,
        route = %route,
        status = status.as_u16(),
        latency_ms = seconds * 1000.0,
        "request"
    );
    response
}

/// Serve `state` on `listener` until `shutdown` resolves, then drain.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

/// `provledger serve`: open the ledger and serve until SIGTERM/SIGINT.
pub fn run_serve(url: &str, args: &ServeArgs) -> Result<i32, AppError> {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROVLEDGER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let ledger = Arc::new(Ledger::open(url)?);
    if ledger.clock()? == ClockMode::Simulated && !args.allow_simulated {
        return Err(AppError::BadInput(
            "this ledger has a simulated clock, so its times are whatever its callers said: it is not served as evidence of real events. Serve a ledger made with `provledger init` (live clock), or pass --allow-simulated for a demo or a test".into(),
        ));
    }
    ledger.catch_up()?;
    let mut state = AppState::shared(Arc::clone(&ledger));
    if let Some(key) = &args.evidence_key {
        // Fail now, not on the first request, when the key is unusable.
        crate::evidence::load_secret_key(key)?;
        state = state.with_evidence_key(key.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::io("cannot start the server's runtime", e))?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| AppError::io(format!("cannot listen on {}", args.addr), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| AppError::io("cannot read the listening address", e))?;
        // One line on stdout that scripts (and tests) can wait for.
        println!("listening on http://{local}");
        tracing::info!(addr = %local, "listening");
        serve_on(listener, state, shutdown_signal())
            .await
            .map_err(|e| AppError::io("the server stopped", e))
    });
    // The runtime goes first (its tasks drop their handles), then the
    // ledger, on this thread, outside any runtime.
    drop(runtime);
    drop(ledger);
    served?;
    tracing::info!("stopped");
    Ok(EXIT_OK)
}

fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|_| "cli".to_string())
}

/// `provledger token …`.
pub fn run_token(
    url: &str,
    format: Format,
    cmd: &TokenCmd,
    io: &mut Io<'_>,
) -> Result<i32, AppError> {
    let ledger = Ledger::open(url)?;
    let store = ledger.store();
    let text = match cmd {
        TokenCmd::Create {
            user,
            role,
            expires,
        } => {
            let user = Email::parse(user)?;
            let role: Role = role.parse()?;
            let new = tokens::create(store, &user, role, *expires, &os_user(), Utc::now())?;
            match format {
                Format::Json => output::json(&new)?,
                _ => format!(
                    "token {} for {} ({}), {}:\n{}\nstore it now: it is not kept and cannot be shown again\n",
                    new.id,
                    new.user,
                    new.role,
                    new.expires_at
                        .map(|t| format!("expires {}", t.to_rfc3339()))
                        .unwrap_or_else(|| "does not expire".into()),
                    new.token
                ),
            }
        }
        TokenCmd::List => {
            let all = tokens::list(store)?;
            match format {
                Format::Json => output::json(&all)?,
                _ => {
                    let mut s = String::from("id                user                          role      created                    expires                    revoked\n");
                    for t in &all {
                        let show = |t: Option<chrono::DateTime<Utc>>| {
                            t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                                .unwrap_or_else(|| "-".into())
                        };
                        s.push_str(&format!(
                            "{:<17} {:<29} {:<9} {:<26} {:<26} {}\n",
                            t.id,
                            t.user,
                            t.role.as_str(),
                            show(Some(t.created_at)),
                            show(t.expires_at),
                            show(t.revoked_at)
                        ));
                    }
                    s
                }
            }
        }
        TokenCmd::Revoke { id } => {
            let info = tokens::revoke(store, id, &os_user(), Utc::now())?;
            match format {
                Format::Json => output::json(&info)?,
                _ => format!("token {} of {} is revoked\n", info.id, info.user),
            }
        }
    };
    io.out
        .write_all(text.as_bytes())
        .map_err(|e| AppError::io("cannot write output", e))?;
    Ok(EXIT_OK)
}

/// 404 for an unknown route.
pub fn unknown_route() -> Response {
    Problem::for_status(StatusCode::NOT_FOUND).into_response()
}
