//! RFC 9457 problem details: the one shape of every error the server sends.
//!
//! This module exists so that each failure (bad input, a refusal recorded by
//! a rule, a version conflict, a missing or invisible order, storage down)
//! has one stable `type` URI and status, and no error ever leaks a stack
//! trace or an internal message shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use provledger_projections::ProjectionError;
use provledger_store::StoreError;
use serde_json::{Map, Value};

use crate::{AppError, CommandOutcome};

/// Media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Problem `type` URIs, relative to the server (documented in docs/http.md).
pub mod types {
    /// The request could not be parsed (400).
    pub const MALFORMED: &str = "/problems/malformed-request";
    /// The request parsed but is not valid (422).
    pub const INVALID: &str = "/problems/invalid-input";
    /// An idempotency key was reused for another request (422).
    pub const IDEMPOTENCY: &str = "/problems/idempotency-key";
    /// Refused by a rule; the refusal is recorded (409).
    pub const REFUSED: &str = "/problems/refused";
    /// The order changed concurrently too often (409).
    pub const CONFLICT: &str = "/problems/version-conflict";
    /// No, unknown, expired or revoked token (401).
    pub const UNAUTHENTICATED: &str = "/problems/unauthenticated";
    /// The principal's role may not do this (403).
    pub const FORBIDDEN: &str = "/problems/forbidden";
    /// No such order/subscription, or not visible to the principal (404).
    pub const NOT_FOUND: &str = "/problems/not-found";
    /// No such route (404).
    pub const NO_ROUTE: &str = "/problems/no-route";
    /// The route exists but not with this method (405).
    pub const METHOD: &str = "/problems/method-not-allowed";
    /// The body is larger than 1 MiB (413).
    pub const TOO_LARGE: &str = "/problems/body-too-large";
    /// The request took too long (408).
    pub const TIMEOUT: &str = "/problems/timeout";
    /// The feature is not wired in this build (422).
    pub const UNAVAILABLE_FEATURE: &str = "/problems/not-available";
    /// The server was started without a signing key for evidence (503).
    pub const EVIDENCE_UNAVAILABLE: &str = "/problems/evidence-unavailable";
    /// The store or the read models cannot be reached (503).
    pub const STORAGE: &str = "/problems/storage-unavailable";
    /// Anything else (500, without internals).
    pub const INTERNAL: &str = "/problems/internal";
}

/// One problem document.
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// `type` URI (see [`types`]).
    pub kind: &'static str,
    /// Short, fixed summary for the type.
    pub title: &'static str,
    /// What was wrong and what to do.
    pub detail: String,
    /// Extension members (e.g. the recorded refusal's transaction).
    pub extra: Map<String, Value>,
}

impl Problem {
    /// A problem with no extension members.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// 400: the request could not be parsed.
    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            types::MALFORMED,
            "Malformed request",
            detail,
        )
    }

    /// 422: the request is not valid.
    pub fn invalid(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            types::INVALID,
            "Invalid input",
            detail,
        )
    }

    /// 401.
    pub fn unauthenticated() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            types::UNAUTHENTICATED,
            "Unauthenticated",
            "send a valid bearer token: Authorization: Bearer <token> (see `provledger token create`)",
        )
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, types::FORBIDDEN, "Forbidden", detail)
    }

    /// 404 for an order: the same body whether the order is missing or
    /// merely invisible to the principal.
    pub fn order_not_found(order_id: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            types::NOT_FOUND,
            "Not found",
            format!("no order {order_id} that you can see"),
        )
    }

    /// 404 for a subscription (missing or invisible alike).
    pub fn subscription_not_found(subscription_id: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            types::NOT_FOUND,
            "Not found",
            format!("no subscription {subscription_id} that you can see"),
        )
    }

    /// 409: refused by a rule; the refusal was recorded.
    pub fn refused(outcome: &CommandOutcome) -> Problem {
        let mut p = Problem::new(
            StatusCode::CONFLICT,
            types::REFUSED,
            "Refused by a rule",
            outcome
                .message
                .strip_prefix("refused: ")
                .unwrap_or(&outcome.message),
        );
        if let Ok(Value::Object(map)) = serde_json::to_value(outcome) {
            p.extra = map;
        }
        p
    }

    /// 503.
    pub fn storage(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            types::STORAGE,
            "Storage unavailable",
            detail,
        )
    }

    /// 503: this server signs no evidence bundles.
    pub fn evidence_unavailable() -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            types::EVIDENCE_UNAVAILABLE,
            "Evidence signing not configured",
            "this server has no signing key, and events without inclusion proofs and a signed checkpoint are not evidence: start it with `provledger serve --evidence-key PREFIX.key` (make a key with `provledger keygen`), or ask the ledger's operator for a bundle made with `provledger evidence`",
        )
    }

    /// 500 without internals.
    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            types::INTERNAL,
            "Internal error",
            "the server could not complete the request; it was logged; retry later",
        )
    }

    /// A problem for a bare status (used to wrap errors the framework made).
    pub fn for_status(status: StatusCode) -> Problem {
        match status.as_u16() {
            400 => Problem::malformed("the request could not be read"),
            404 => Problem::new(
                status,
                types::NO_ROUTE,
                "Not found",
                "no such route; see /openapi.json",
            ),
            405 => Problem::new(
                status,
                types::METHOD,
                "Method not allowed",
                "this route does not take this method; see /openapi.json",
            ),
            408 => Problem::new(
                status,
                types::TIMEOUT,
                "Request timeout",
                "the request took too long; retry",
            ),
            413 => Problem::new(
                status,
                types::TOO_LARGE,
                "Body too large",
                "the request body is larger than 1 MiB",
            ),
            415 => Problem::malformed("send the body as application/json"),
            401 => Problem::unauthenticated(),
            403 => Problem::forbidden("your role may not do this"),
            503 => Problem::storage("the service is unavailable; retry later"),
            s if (400..500).contains(&s) => Problem::malformed("the request could not be handled"),
            _ => Problem::internal(),
        }
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Problem {
        match &e {
            AppError::UnknownOrder { order_id } => Problem::order_not_found(order_id),
            AppError::Domain(_) | AppError::BadInput(_) => Problem::invalid(e.to_string()),
            AppError::Store(StoreError::Conflict { .. })
            | AppError::ConflictRetriesExhausted { .. } => Problem::new(
                StatusCode::CONFLICT,
                types::CONFLICT,
                "Version conflict",
                e.to_string(),
            ),
            AppError::Store(_) | AppError::BatchFailed { .. } | AppError::Io { .. } => {
                tracing::warn!(error = %e, "storage error");
                Problem::storage("the ledger's store cannot be reached or failed; retry later")
            }
            AppError::Projection(ProjectionError::InvalidQuery { .. }) => {
                Problem::invalid(e.to_string())
            }
            AppError::Projection(_) => {
                tracing::warn!(error = %e, "read model error");
                Problem::storage(
                    "the ledger's read models cannot be reached or failed; retry later",
                )
            }
            _ => {
                tracing::error!(error = %e, "unexpected error");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("type".into(), Value::String(self.kind.into()));
        body.insert("title".into(), Value::String(self.title.into()));
        body.insert("status".into(), Value::from(self.status.as_u16()));
        body.insert("detail".into(), Value::String(self.detail));
        for (k, v) in self.extra {
            body.entry(k).or_insert(v);
        }
        let text = Value::Object(body).to_string();
        let mut response = (self.status, text).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_are_503_and_conflicts_409_without_internals() {
        let down = Problem::from(AppError::Store(StoreError::Io(std::io::Error::other(
            "connection reset at 10.0.0.7:5432",
        ))));
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.kind, types::STORAGE);
        assert!(!down.detail.contains("10.0.0.7"), "{}", down.detail);
        let conflict = Problem::from(AppError::ConflictRetriesExhausted {
            order_id: "WO-1".into(),
            attempts: 5,
        });
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert_eq!(conflict.kind, types::CONFLICT);
        let missing = Problem::from(AppError::UnknownOrder {
            order_id: "WO-1".into(),
        });
        assert_eq!(missing.detail, Problem::order_not_found("WO-1").detail);
        let internal = Problem::from(AppError::VerificationFailed {
            position: 3,
            reason: "secret".into(),
        });
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.detail.contains("secret"));
    }
}
