//! The caller of a request: a principal from a bearer token, or 401.
//!
//! This module exists so that no handler can forget authentication: every
//! `/api/v1` handler takes a [`Caller`], and the only way to get one is a
//! valid, unexpired, unrevoked token.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::Utc;
use provledger_domain::{Principal, Role};

use super::problem::Problem;
use super::AppState;
use crate::tokens;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// With which token.
    pub token_id: String,
}

impl Caller {
    /// 403 unless the caller's role is one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), Problem> {
        if roles.contains(&self.principal.role) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "{} has the role {}, which may not {what}",
                self.principal.user, self.principal.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Problem> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Err(Problem::unauthenticated());
        };
        let Ok(value) = value.to_str() else {
            return Err(Problem::unauthenticated());
        };
        let mut words = value.trim().splitn(2, ' ');
        let (Some(scheme), Some(token)) = (words.next(), words.next()) else {
            return Err(Problem::unauthenticated());
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Problem::unauthenticated());
        }
        let token = token.trim().to_string();
        let checked = state
            .blocking(move |ledger| tokens::authenticate(ledger.store(), &token, Utc::now()))
            .await?;
        match checked {
            Ok(auth) => {
                parts.extensions.insert(auth.principal.user.to_string());
                Ok(Caller {
                    principal: auth.principal,
                    token_id: auth.token_id,
                })
            }
            Err(why) => {
                tracing::info!(reason = %why, "token rejected");
                Err(Problem::unauthenticated())
            }
        }
    }
}
