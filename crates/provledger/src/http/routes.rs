//! The handlers: one per route of DESIGN.md §4, each with its OpenAPI
//! description, and the per-party scoping of every read and write.
//!
//! This module exists so that the rules of "what a party may see" sit
//! beside the routes they guard: a `user` sees an order iff they are named
//! on it (ordering, partner or distributor contact; case-insensitive), an
//! order they may not see answers exactly as a missing one, and lists show
//! only visible orders. Visibility of a list is decided per distinct order
//! in the result, from the order's state (the ledger's state cache), so it
//! follows the same fold as every rule.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use provledger_domain::{
    LedgerCommand, OrderId, OrderRequest, Principal, Role, ServicesRequest, SetupRequest,
    SubscriptionId, WriteKind,
};
use provledger_projections::{
    HistoryQuery, LineQuery, TransactionQuery, TransactionRow, TransactionStatus, TransactionType,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::adapter;
use super::auth::Caller;
use super::problem::{types, Problem};
use super::AppState;
use crate::input;
use crate::{AppError, CommandOutcome, Ledger, OutcomeStatus};

/// Default page size of `GET /api/v1/transactions`.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page size of `GET /api/v1/transactions`.
pub const MAX_PAGE: usize = 1000;
/// Longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 200;

type ApiResult<T> = Result<T, Problem>;

// ---------------------------------------------------------------- helpers

/// The `Idempotency-Key` header: absent, or a non-empty printable key.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .map_err(|_| Problem::malformed("the Idempotency-Key header must be printable ASCII"))?
        .trim();
    if key.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            types::IDEMPOTENCY,
            "Invalid idempotency key",
            "the Idempotency-Key header is empty; send a unique key per request, or no header",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            types::IDEMPOTENCY,
            "Invalid idempotency key",
            format!("the Idempotency-Key header is longer than {MAX_KEY_LEN} characters"),
        ));
    }
    Ok(Some(key.to_string()))
}

/// Decode a JSON body: 413 when too large, 400 when not JSON, 422 when the
/// JSON does not have the expected fields.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| Problem::for_status(rejection.status()))?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            Problem::invalid(format!(
                "the request body does not have the expected fields: {e}"
            ))
        } else {
            Problem::malformed(format!("the request body is not JSON: {e}"))
        }
    })
}

fn parse_order(raw: &str) -> ApiResult<OrderId> {
    OrderId::parse(raw).map_err(|_| Problem::order_not_found(raw))
}

fn parse_time(name: &str, raw: &str) -> ApiResult<DateTime<Utc>> {
    crate::cli::parse_time(name, raw).map_err(|e| Problem::invalid(e.to_string()))
}

/// Whether `principal` may see order `order_id` (false when it does not exist).
fn may_see(ledger: &Ledger, principal: &Principal, order_id: &OrderId) -> Result<bool, AppError> {
    let state = ledger.current_state(order_id)?;
    Ok(state.order.as_ref().is_some_and(|o| principal.may_see(o)))
}

/// Of the orders named by `ids`, those `principal` may see.
fn visible<'a>(
    ledger: &Ledger,
    principal: &Principal,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, bool>, AppError> {
    let mut seen = HashMap::new();
    for id in ids {
        if seen.contains_key(id) {
            continue;
        }
        let ok = if principal.role.sees_everything() {
            true
        } else {
            match OrderId::parse(id) {
                Ok(order_id) => may_see(ledger, principal, &order_id)?,
                Err(_) => false,
            }
        };
        seen.insert(id.to_string(), ok);
    }
    Ok(seen)
}

/// What an order write came to.
enum Written {
    Done(CommandOutcome),
    Forbidden(Problem),
    Invisible,
}

/// The one flow of every write on an existing order: 404 when missing; a
/// role that may not write is recorded as a refusal and answered 403; a
/// user not named on the order has the domain record its refusal (R6) and
/// is answered 404, as for a missing order; otherwise the outcome (200, or
/// 409 for a refusal).
async fn order_write(
    state: &AppState,
    caller: Caller,
    order_raw: &str,
    command: LedgerCommand,
    key: Option<String>,
) -> ApiResult<Response> {
    let kind = command.write_kind();
    let order_id = parse_order(order_raw)?;
    let oid = order_id.clone();
    let written = state
        .write(move |ledger| {
            let current = ledger.load(&oid)?;
            let Some(order) = current.order else {
                return Err(AppError::UnknownOrder {
                    order_id: oid.to_string(),
                });
            };
            let principal = &caller.principal;
            if !principal.role.may(kind) {
                // The one write path records the attempt as a refusal (R12).
                adapter::submit(ledger, &caller, &oid, command, key.as_deref())?;
                return Ok(Written::Forbidden(Problem::forbidden(format!(
                    "{} has the role {}, which may not do this; the refusal is recorded",
                    principal.user, principal.role
                ))));
            }
            let visible = principal.may_see(&order)
                || (kind == WriteKind::Setup && order.may_set_up(&principal.user));
            let outcome = adapter::submit(ledger, &caller, &oid, command, key.as_deref())?;
            Ok(if visible {
                Written::Done(outcome)
            } else {
                Written::Invisible
            })
        })
        .await?;
    match written {
        Written::Done(outcome) => Ok(outcome_response(state, outcome, StatusCode::OK)),
        Written::Forbidden(p) => Err(p),
        Written::Invisible => Err(Problem::order_not_found(order_raw)),
    }
}

fn outcome_response(state: &AppState, outcome: CommandOutcome, ok: StatusCode) -> Response {
    if !outcome.replayed {
        state.metrics().appended(outcome.positions.len() as u64);
    }
    match outcome.status {
        OutcomeStatus::Success => (ok, Json(outcome)).into_response(),
        OutcomeStatus::Failed => Problem::refused(&outcome).into_response(),
    }
}

// ---------------------------------------------------------------- outside /api/v1

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is up")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "The store is reachable"),
              (status = 503, description = "The store cannot be reached")))]
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let head = state
        .blocking(|ledger| Ok(ledger.store().head()?.map_or(0, |h| h.position)))
        .await?;
    Ok(Json(serde_json::json!({ "status": "ready", "head": head })))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let lag = state
        .blocking(|ledger| {
            let head = ledger.store().head()?.map_or(0, |h| h.position);
            let checkpoint = ledger.read_models().checkpoint()?;
            Ok(head.saturating_sub(checkpoint))
        })
        .await
        .ok();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(lag),
    )
        .into_response()
}

/// Fallback: 404 problem for an unknown route.
pub async fn no_route() -> Response {
    super::unknown_route()
}

// ---------------------------------------------------------------- writes

/// Place an order (R1). Body: the order file of `order place`.
#[utoipa::path(post, path = "/api/v1/orders", tag = "writes",
    request_body(content = Object, description = "The order (DESIGN.md §3 order file)", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    responses((status = 201, description = "Placed: {transaction_id, status, message, positions}"),
              (status = 400, description = "Not JSON"), (status = 422, description = "Invalid order"),
              (status = 401, description = "No valid token"), (status = 403, description = "Role may not place orders"),
              (status = 409, description = "Refused by a rule (recorded)")))]
pub async fn place_order(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require(&[Role::User, Role::Operator], "place orders")?;
    let key = idempotency_key(&headers)?;
    let request: OrderRequest = json_body(body)?;
    let (order_id, command) = input::place_order(&request)?;
    let outcome = state
        .write(move |ledger| adapter::submit(ledger, &caller, &order_id, command, key.as_deref()))
        .await?;
    Ok(outcome_response(&state, outcome, StatusCode::CREATED))
}

/// Body of a contact change (R4).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    /// The new provisioning contact email.
    pub email: String,
    /// Apply the change to every line of the order.
    #[serde(default)]
    pub all_lines: bool,
}

/// Change a line's provisioning contact (R4).
#[utoipa::path(post, path = "/api/v1/orders/{o}/lines/{l}/contact", tag = "writes",
    request_body(content = Object, description = "{\"email\": \"…\", \"all_lines\": false}", content_type = "application/json"),
    params(("o" = String, Path, description = "Order id"), ("l" = String, Path, description = "Line id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    responses((status = 200, description = "Changed"), (status = 409, description = "Refused by a rule (recorded)"),
              (status = 404, description = "No such order visible to you"), (status = 403, description = "Role may not change contacts"),
              (status = 422, description = "Invalid email or line")))]
pub async fn change_contact(
    State(state): State<AppState>,
    caller: Caller,
    Path((o, l)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let body: ContactBody = json_body(body)?;
    let order_id = parse_order(&o)?;
    let (_, command) = input::change_contact(order_id.as_str(), &l, &body.email, body.all_lines)?;
    order_write(&state, caller, &o, command, key).await
}

/// Resend a line's provisioning email (R3).
#[utoipa::path(post, path = "/api/v1/orders/{o}/lines/{l}/resend", tag = "writes",
    params(("o" = String, Path, description = "Order id"), ("l" = String, Path, description = "Line id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    responses((status = 200, description = "Resent"), (status = 409, description = "Refused by a rule (recorded)"),
              (status = 404, description = "No such order visible to you"), (status = 403, description = "Role may not resend")))]
pub async fn resend_email(
    State(state): State<AppState>,
    caller: Caller,
    Path((o, l)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let order_id = parse_order(&o)?;
    let (_, command) = input::resend_email(order_id.as_str(), &l)?;
    order_write(&state, caller, &o, command, key).await
}

/// Body of a support case (R10).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseBody {
    /// The line.
    pub line_id: String,
    /// `resend-provisioning-email` or `change-provisioning-contact-email`.
    #[serde(rename = "type")]
    pub request_type: String,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
    /// Attachments' identities (name, size, SHA-256).
    #[serde(default)]
    pub attachments: Vec<provledger_domain::Attachment>,
}

/// Open a support case (R10).
#[utoipa::path(post, path = "/api/v1/orders/{o}/cases", tag = "writes",
    request_body(content = Object, description = "{\"line_id\", \"type\", \"note\", \"attachments\"}", content_type = "application/json"),
    params(("o" = String, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    responses((status = 200, description = "Opened"), (status = 409, description = "Refused by a rule (recorded)"),
              (status = 404, description = "No such order visible to you"), (status = 403, description = "Role may not open cases")))]
pub async fn open_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(o): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let body: CaseBody = json_body(body)?;
    let order_id = parse_order(&o)?;
    let (_, command) = input::open_case(
        order_id.as_str(),
        &body.line_id,
        &body.request_type,
        body.note,
        body.attachments,
    )?;
    order_write(&state, caller, &o, command, key).await
}

/// Body of a case resolution (R10).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `resent`, `contact-changed` or `rejected`.
    pub outcome: String,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// Resolve a support case (R10): support and operators.
#[utoipa::path(post, path = "/api/v1/cases/{id}/resolve", tag = "writes",
    request_body(content = Object, description = "{\"outcome\": \"resent\"|\"contact-changed\"|\"rejected\", \"note\"}", content_type = "application/json"),
    params(("id" = String, Path, description = "Case id, e.g. WO-1001-C1"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    responses((status = 200, description = "Resolved"), (status = 403, description = "Only support and operators resolve cases"),
              (status = 404, description = "No such order"),
              (status = 422, description = "Unknown case, already resolved, bad outcome")))]
pub async fn resolve_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require(&[Role::Support, Role::Operator], "resolve support cases")?;
    let key = idempotency_key(&headers)?;
    let body: ResolveBody = json_body(body)?;
    let (order_id, command) = input::resolve_case(&id, &body.outcome, body.note)?;
    let outcome = state
        .write(move |ledger| adapter::submit(ledger, &caller, &order_id, command, key.as_deref()))
        .await?;
    Ok(outcome_response(&state, outcome, StatusCode::OK))
}

/// Complete the setup wizard (R13–R17). Body: the setup file of `setup complete`.
#[utoipa::path(post, path = "/api/v1/orders/{o}/setup", tag = "writes",
    request_body(content = Object, description = "The setup file (docs/cli.md)", content_type = "application/json"),
    params(("o" = String, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    responses((status = 200, description = "Set up"), (status = 409, description = "Refused by a rule (recorded)"),
              (status = 404, description = "No such order visible to you"), (status = 403, description = "Role may not set up")))]
pub async fn complete_setup(
    State(state): State<AppState>,
    caller: Caller,
    Path(o): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let mut value: serde_json::Value = json_body(body)?;
    if let Some(map) = value.as_object_mut() {
        map.entry("order_id")
            .or_insert_with(|| serde_json::Value::String(o.clone()));
    }
    let request: SetupRequest = serde_json::from_value(value).map_err(|e| {
        Problem::invalid(format!("the setup does not have the expected fields: {e}"))
    })?;
    if !request.order_id.eq_ignore_ascii_case(&o) {
        return Err(Problem::invalid(format!(
            "the body names order {} but the path names order {o}",
            request.order_id
        )));
    }
    let (_, command) = input::complete_setup(&request)?;
    order_write(&state, caller, &o, command, key).await
}

/// Save the service settings (R18). Body: the services file of `setup services`.
#[utoipa::path(post, path = "/api/v1/orders/{o}/services", tag = "writes",
    request_body(content = Object, description = "The service settings (docs/cli.md)", content_type = "application/json"),
    params(("o" = String, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    responses((status = 200, description = "Saved"), (status = 409, description = "Refused by a rule (recorded)"),
              (status = 404, description = "No such order visible to you"), (status = 403, description = "Role may not set up")))]
pub async fn configure_services(
    State(state): State<AppState>,
    caller: Caller,
    Path(o): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let request: ServicesRequest = json_body(body)?;
    let order_id = parse_order(&o)?;
    let (_, command) = input::configure_services(order_id.as_str(), &request)?;
    order_write(&state, caller, &o, command, key).await
}

/// "Provision and start billing" (R18).
#[utoipa::path(post, path = "/api/v1/orders/{o}/provision", tag = "writes",
    params(("o" = String, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first result")),
    responses((status = 200, description = "Provisioned"), (status = 409, description = "Refused by a rule (recorded)"),
              (status = 404, description = "No such order visible to you"), (status = 403, description = "Role may not provision")))]
pub async fn provision(
    State(state): State<AppState>,
    caller: Caller,
    Path(o): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let order_id = parse_order(&o)?;
    let (_, command) = input::provision(order_id.as_str())?;
    order_write(&state, caller, &o, command, key).await
}

// ---------------------------------------------------------------- reads

/// Who the token belongs to (the page uses it to show the right actions).
#[utoipa::path(get, path = "/api/v1/me", tag = "reads",
    responses((status = 200, description = "{user, role, token_id, clock}"),
              (status = 401, description = "No valid token")))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": caller.principal.user.to_string(),
        "role": caller.principal.role,
        "token_id": caller.token_id,
        "clock": if state.simulated() { "simulated" } else { "live" },
    }))
}

/// Filters of `GET /api/v1/lines`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinesParams {
    /// Only this order.
    pub order: Option<String>,
    /// Only this subscription.
    pub subscription: Option<String>,
}

/// Line state now, of the orders visible to the caller.
#[utoipa::path(get, path = "/api/v1/lines", tag = "reads",
    params(("order" = Option<String>, Query, description = "Only this order"),
           ("subscription" = Option<String>, Query, description = "Only this subscription")),
    responses((status = 200, description = "A JSON array of lines rows (DESIGN.md §3)"),
              (status = 401, description = "No valid token")))]
pub async fn lines(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<LinesParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) = params.map_err(|e| Problem::invalid(e.body_text()))?;
    let query = LineQuery {
        order_id: params
            .order
            .as_deref()
            .map(OrderId::parse)
            .transpose()
            .map_err(|e| Problem::invalid(e.to_string()))?,
        subscription_id: params
            .subscription
            .as_deref()
            .map(SubscriptionId::parse)
            .transpose()
            .map_err(|e| Problem::invalid(e.to_string()))?,
    };
    let principal = caller.principal;
    let rows = state
        .blocking(move |ledger| {
            let rows = ledger.lines(&query, None)?;
            let ok = visible(ledger, &principal, rows.iter().map(|r| r.order_id.as_str()))?;
            Ok(rows
                .into_iter()
                .filter(|r| ok.get(&r.order_id).copied().unwrap_or(false))
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(rows).into_response())
}

/// Filters and paging of `GET /api/v1/transactions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionsParams {
    /// Transaction type, e.g. `provisioning_email_update`.
    #[serde(rename = "type")]
    pub tx_type: Option<String>,
    /// Only this subscription.
    pub subscription: Option<String>,
    /// Only this order.
    pub order: Option<String>,
    /// `success`, `failed` or `pending`.
    pub status: Option<String>,
    /// Submitted at or after (RFC 3339 or a date).
    pub since: Option<String>,
    /// Submitted at or before (RFC 3339 or a date).
    pub until: Option<String>,
    /// Rows per page (default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of the Transaction Manager.
#[derive(Debug, Serialize)]
pub struct TransactionsPage {
    /// The rows (DESIGN.md §3 `transactions` fields), oldest first.
    pub items: Vec<TransactionRow>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn cursor_of(row: &TransactionRow) -> String {
    format!("{}.{}", row.position, row.line_id)
}

/// The Transaction Manager (R9): filters as the CLI's, cursor paging.
#[utoipa::path(get, path = "/api/v1/transactions", tag = "reads",
    params(("type" = Option<String>, Query, description = "Transaction type, e.g. provisioning_email_update"),
           ("subscription" = Option<String>, Query, description = "Only this subscription"),
           ("order" = Option<String>, Query, description = "Only this order"),
           ("status" = Option<String>, Query, description = "success, failed or pending"),
           ("since" = Option<String>, Query, description = "Submitted at or after (RFC 3339)"),
           ("until" = Option<String>, Query, description = "Submitted at or before (RFC 3339)"),
           ("limit" = Option<usize>, Query, description = "Rows per page (default 100, at most 1000)"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "{\"items\": [transactions rows], \"next_cursor\": …}"),
              (status = 422, description = "Invalid filter"), (status = 401, description = "No valid token")))]
pub async fn transactions(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<TransactionsParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params.map_err(|e| Problem::invalid(e.body_text()))?;
    let invalid = |e: String| Problem::invalid(e);
    let query = TransactionQuery {
        tx_type: p
            .tx_type
            .as_deref()
            .map(|s| {
                s.parse::<TransactionType>()
                    .map_err(|e| invalid(e.to_string()))
            })
            .transpose()?,
        subscription_id: p
            .subscription
            .as_deref()
            .map(|s| SubscriptionId::parse(s).map_err(|e| invalid(e.to_string())))
            .transpose()?,
        order_id: p
            .order
            .as_deref()
            .map(|s| OrderId::parse(s).map_err(|e| invalid(e.to_string())))
            .transpose()?,
        status: p
            .status
            .as_deref()
            .map(|s| {
                s.parse::<TransactionStatus>()
                    .map_err(|e| invalid(e.to_string()))
            })
            .transpose()?,
        since: p
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?,
        until: p
            .until
            .as_deref()
            .map(|s| parse_time("until", s))
            .transpose()?,
        limit: None,
    };
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let cursor = p.cursor;
    let principal = caller.principal;
    let page = state
        .blocking(move |ledger| {
            let rows = ledger.transactions(&query)?;
            let ok = visible(ledger, &principal, rows.iter().map(|r| r.order_id.as_str()))?;
            let mut rows: Vec<TransactionRow> = rows
                .into_iter()
                .filter(|r| ok.get(&r.order_id).copied().unwrap_or(false))
                .collect();
            if let Some(cursor) = &cursor {
                let Some(at) = rows.iter().position(|r| &cursor_of(r) == cursor) else {
                    return Err(AppError::BadInput(format!(
                        "cursor {cursor:?} is not one this server gave for these filters; start again without a cursor"
                    )));
                };
                rows.drain(..=at);
            }
            let next_cursor = (rows.len() > limit).then(|| cursor_of(&rows[limit - 1]));
            rows.truncate(limit);
            Ok(TransactionsPage {
                items: rows,
                next_cursor,
            })
        })
        .await?;
    Ok(Json(page).into_response())
}

/// Every event of an order, with position and hash.
#[utoipa::path(get, path = "/api/v1/orders/{o}/history", tag = "reads",
    params(("o" = String, Path, description = "Order id")),
    responses((status = 200, description = "A JSON array of history rows"),
              (status = 404, description = "No such order visible to you")))]
pub async fn order_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(o): Path<String>,
) -> ApiResult<Response> {
    let order_id = parse_order(&o)?;
    let principal = caller.principal;
    let rows = state
        .blocking(move |ledger| {
            if !may_see(ledger, &principal, &order_id)? {
                return Ok(None);
            }
            let query = HistoryQuery {
                order_id: Some(order_id),
                subscription_id: None,
            };
            ledger.history(&query, None).map(Some)
        })
        .await?
        .ok_or_else(|| Problem::order_not_found(&o))?;
    Ok(Json(rows).into_response())
}

/// The order a subscription belongs to, if `principal` may see it.
fn subscription_order(
    ledger: &Ledger,
    principal: &Principal,
    subscription_id: &SubscriptionId,
) -> Result<Option<OrderId>, AppError> {
    let rows = ledger.lines(
        &LineQuery {
            order_id: None,
            subscription_id: Some(subscription_id.clone()),
        },
        None,
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let Ok(order_id) = OrderId::parse(&row.order_id) else {
        return Ok(None);
    };
    Ok(may_see(ledger, principal, &order_id)?.then_some(order_id))
}

/// Every event of a subscription's line and of its order as a whole.
#[utoipa::path(get, path = "/api/v1/subscriptions/{s}/history", tag = "reads",
    params(("s" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "A JSON array of history rows"),
              (status = 404, description = "No such subscription visible to you")))]
pub async fn subscription_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(s): Path<String>,
) -> ApiResult<Response> {
    let subscription_id =
        SubscriptionId::parse(&s).map_err(|_| Problem::subscription_not_found(&s))?;
    let principal = caller.principal;
    let rows = state
        .blocking(move |ledger| {
            if subscription_order(ledger, &principal, &subscription_id)?.is_none() {
                return Ok(None);
            }
            let query = HistoryQuery {
                order_id: None,
                subscription_id: Some(subscription_id),
            };
            ledger.history(&query, None).map(Some)
        })
        .await?
        .ok_or_else(|| Problem::subscription_not_found(&s))?;
    Ok(Json(rows).into_response())
}

/// Recompute the hash chain (auditors and operators).
#[utoipa::path(get, path = "/api/v1/verify", tag = "reads",
    responses((status = 200, description = "{events_checked, head_hash, first_broken}"),
              (status = 403, description = "Only auditors and operators verify")))]
pub async fn verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(&[Role::Auditor, Role::Operator], "verify the ledger")?;
    let report = state.blocking(|ledger| ledger.verify(&mut |_| {})).await?;
    Ok(Json(report).into_response())
}

/// Evidence for a subscription: with `serve --evidence-key`, the signed
/// bundle of `provledger evidence` (DESIGN.md §5: every event of its order
/// with an inclusion proof against a signed checkpoint). A server without a
/// signing key answers 503: unsigned events would not be evidence.
#[utoipa::path(get, path = "/api/v1/evidence/subscriptions/{s}", tag = "reads",
    params(("s" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "{kind, subscription_id, order_id, events}"),
              (status = 403, description = "Only auditors and operators"),
              (status = 404, description = "No such subscription"),
              (status = 503, description = "The server has no signing key (--evidence-key)")))]
pub async fn evidence(
    State(state): State<AppState>,
    caller: Caller,
    Path(s): Path<String>,
) -> ApiResult<Response> {
    caller.require(&[Role::Auditor, Role::Operator], "download evidence")?;
    let subscription_id =
        SubscriptionId::parse(&s).map_err(|_| Problem::subscription_not_found(&s))?;
    let principal = caller.principal;
    let sub = subscription_id.to_string();
    if let Some(key) = state.evidence_key().map(std::path::Path::to_path_buf) {
        let bundle = state
            .blocking(move |ledger| {
                if subscription_order(ledger, &principal, &subscription_id)?.is_none() {
                    return Ok(None);
                }
                signed_bundle(ledger, &sub, &key).map(Some)
            })
            .await?
            .ok_or_else(|| Problem::subscription_not_found(&s))?;
        let filename = format!("attachment; filename=\"evidence-{s}.json\"");
        let mut response = ([(header::CONTENT_TYPE, "application/json")], bundle).into_response();
        if let Ok(v) = header::HeaderValue::from_str(&filename) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
        return Ok(response);
    }
    // Tell a missing subscription from a missing key, as for every read.
    let visible = state
        .blocking(move |ledger| {
            Ok(subscription_order(ledger, &principal, &subscription_id)?.is_some())
        })
        .await?;
    if !visible {
        return Err(Problem::subscription_not_found(&s));
    }
    Err(Problem::evidence_unavailable())
}

/// A signed evidence bundle (DESIGN.md §5) for `subscription`, made by the
/// same code as `provledger evidence`, as JSON text.
fn signed_bundle(
    ledger: &Ledger,
    subscription: &str,
    key: &std::path::Path,
) -> Result<String, AppError> {
    let path = std::env::temp_dir().join(format!(
        "provledger-evidence-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    let mut sink = std::io::sink();
    let mut sink_err = std::io::sink();
    let mut io = crate::cli::Io {
        out: &mut sink,
        err: &mut sink_err,
    };
    let made = crate::evidence::evidence(
        ledger,
        subscription,
        key,
        &path,
        crate::output::Format::Json,
        &mut io,
    );
    let text = made.and_then(|_| {
        std::fs::read_to_string(&path).map_err(|e| AppError::io("cannot read the bundle", e))
    });
    let _ = std::fs::remove_file(&path);
    text
}
