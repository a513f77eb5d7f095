//! `/openapi.json`: the API's description, generated from the handlers'
//! annotations so that it cannot drift from the code (a test checks it
//! against the router).

use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::routes;

/// The OpenAPI document of `provledger serve`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "provledger",
        description = "HTTP API of the provisioning ledger (docs/http.md). Every /api/v1 route needs `Authorization: Bearer <token>`; errors are RFC 9457 problem documents."
    ),
    paths(
        routes::health,
        routes::ready,
        routes::metrics,
        routes::place_order,
        routes::change_contact,
        routes::resend_email,
        routes::open_case,
        routes::resolve_case,
        routes::complete_setup,
        routes::configure_services,
        routes::provision,
        routes::me,
        routes::lines,
        routes::transactions,
        routes::order_history,
        routes::subscription_history,
        routes::verify,
        routes::evidence,
    )
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.paths.paths.insert(
        "/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .response(
                    "200",
                    utoipa::openapi::Response::new("The OpenAPI document"),
                ),
        ),
    );
    doc
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Response {
    axum::Json(document()).into_response()
}
