//! Who is acting and what they may see (DESIGN.md §2 "Who is acting",
//! "What a party may see").
//!
//! This module exists so that the role model (user, auditor, support,
//! operator) and the visibility rule of an order are pure, named and tested
//! in one place, whichever channel (HTTP, CLI) the principal came through.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DomainError, Email, Order};

/// A principal's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Acts where R6 gives access; sees only the orders R6 gives access to.
    User,
    /// Reads everything, writes nothing.
    Auditor,
    /// Reads everything; opens and resolves support cases.
    Support,
    /// Everything, including token management.
    Operator,
}

impl Role {
    /// Every role, in documentation order.
    pub const ALL: [Role; 4] = [Role::User, Role::Auditor, Role::Support, Role::Operator];

    /// The role's name as written on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Auditor => "auditor",
            Role::Support => "support",
            Role::Operator => "operator",
        }
    }

    /// Whether this role reads every order (not only the ones R6 names it on).
    pub fn sees_everything(self) -> bool {
        !matches!(self, Role::User)
    }

    /// Whether this role may submit `write` at all (R6 and the rules decide
    /// the rest).
    pub fn may(self, write: WriteKind) -> bool {
        match self {
            Role::Auditor => false,
            Role::Support => matches!(write, WriteKind::SupportCase),
            Role::User | Role::Operator => true,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DomainError;

    fn from_str(raw: &str) -> Result<Role, DomainError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| DomainError::InvalidField {
                field: "role".into(),
                reason: format!("{raw:?} is not a role; use user, auditor, support or operator"),
            })
    }
}

/// The kinds of write a role may or may not submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Placing an order.
    PlaceOrder,
    /// Contact change, resend (R3, R4).
    LineAction,
    /// Opening or resolving a support case (R10).
    SupportCase,
    /// Setup wizard, services, provisioning (R13–R18).
    Setup,
}

/// Who is acting: a user (an email) with a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The user's email.
    pub user: Email,
    /// The user's role.
    pub role: Role,
}

impl Principal {
    /// Whether this principal may see `order` (its lines, transactions and
    /// history): every order for auditors, support and operators; for a
    /// user, iff they are its ordering contact or a partner or distributor
    /// contact on it, emails compared case-insensitively.
    pub fn may_see(&self, order: &Order) -> bool {
        self.role.sees_everything() || named_on(order, &self.user)
    }
}

/// Whether `user` is the ordering contact or a partner or distributor
/// contact of `order`, compared case-insensitively.
pub fn named_on(order: &Order, user: &Email) -> bool {
    order.ordering_contact.same_user(user)
        || order.partner_contacts.iter().any(|e| e.same_user(user))
        || order.distributor_contacts.iter().any(|e| e.same_user(user))
}

/// Prefix of the streams that record HTTP tokens (`token-<id>`).
pub const TOKEN_STREAM_PREFIX: &str = "token-";

/// The state of a token stream, as far as import admission is concerned:
/// nothing, created, or created and revoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenStreamState {
    /// No event yet.
    #[default]
    Empty,
    /// `TokenCreated` seen.
    Created,
    /// `TokenRevoked` seen after it.
    Revoked,
}

/// Whether a token event could have been appended to its stream in `state`
/// (`provledger token create` / `revoke`): `TokenCreated` first, with the
/// stream's id, a user's email, a role and a 64-hex-digit SHA-256 (never a
/// token); then at most one `TokenRevoked` of the same id. Returns the
/// state after it, or why not.
pub fn admit_token_event(
    state: TokenStreamState,
    stream_id: &str,
    event_type: &str,
    schema_version: u32,
    payload: &serde_json::Value,
) -> Result<TokenStreamState, String> {
    let id = stream_id
        .strip_prefix(TOKEN_STREAM_PREFIX)
        .unwrap_or_default();
    if schema_version != 1 {
        return Err(format!(
            "{event_type} schema version {schema_version} is not 1"
        ));
    }
    if payload.get("id").and_then(|v| v.as_str()) != Some(id) {
        return Err(format!(
            "a token event in stream {stream_id:?} names another id"
        ));
    }
    match (event_type, state) {
        ("TokenCreated", TokenStreamState::Empty) => {
            let user = payload.get("user").and_then(|v| v.as_str()).unwrap_or_default();
            Email::parse(user).map_err(|e| e.to_string())?;
            let role = payload.get("role").and_then(|v| v.as_str()).unwrap_or_default();
            role.parse::<Role>().map_err(|e| e.to_string())?;
            let hash = payload
                .get("token_sha256")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("TokenCreated must carry the token's SHA-256 (64 hex digits)".into());
            }
            Ok(TokenStreamState::Created)
        }
        ("TokenRevoked", TokenStreamState::Created) => Ok(TokenStreamState::Revoked),
        (other, state) => Err(format!(
            "{other} cannot follow a token stream in state {state:?}: a token is created once and revoked at most once"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_stream_is_created_once_and_revoked_at_most_once() {
        let created = serde_json::json!({
            "id": "0123456789abcdef", "user": "pat@partner.example", "role": "user",
            "expires_at": null, "token_sha256": "ab".repeat(32)
        });
        let revoked = serde_json::json!({ "id": "0123456789abcdef" });
        let stream = "token-0123456789abcdef";
        let admit = |state, kind, payload: &serde_json::Value| {
            admit_token_event(state, stream, kind, 1, payload)
        };
        let after = admit(TokenStreamState::Empty, "TokenCreated", &created);
        assert_eq!(after, Ok(TokenStreamState::Created));
        assert!(admit(TokenStreamState::Created, "TokenCreated", &created).is_err());
        assert!(admit(TokenStreamState::Empty, "TokenRevoked", &revoked).is_err());
        assert_eq!(
            admit(TokenStreamState::Created, "TokenRevoked", &revoked),
            Ok(TokenStreamState::Revoked)
        );
        assert!(admit(TokenStreamState::Revoked, "TokenRevoked", &revoked).is_err());
        let mut leaked = created.clone();
        leaked["token_sha256"] = serde_json::json!("plt_0123456789abcdef_secret");
        assert!(admit(TokenStreamState::Empty, "TokenCreated", &leaked).is_err());
        let mut other = created;
        other["id"] = serde_json::json!("ffffffffffffffff");
        assert!(admit(TokenStreamState::Empty, "TokenCreated", &other).is_err());
    }

    #[test]
    fn roles_parse_and_print() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }

    #[test]
    fn only_users_are_scoped_and_auditors_never_write() {
        assert!(!Role::User.sees_everything());
        assert!(Role::Auditor.sees_everything());
        assert!(!Role::Auditor.may(WriteKind::SupportCase));
        assert!(Role::Support.may(WriteKind::SupportCase));
        assert!(!Role::Support.may(WriteKind::LineAction));
        assert!(Role::Operator.may(WriteKind::Setup));
    }
}
