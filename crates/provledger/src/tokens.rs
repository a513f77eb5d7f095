//! Bearer tokens for the HTTP API (DESIGN.md §4 "Auth").
//!
//! This module exists because identity over HTTP comes only from a token,
//! and token management must be as auditable as everything else: creating
//! and revoking a token are events on a stream `token-<id>`, appended
//! through the event store so they sit in the hash chain, every export and
//! every verification. Only the SHA-256 of a token is stored; the token
//! itself is shown once, when it is created. A presented token is checked
//! by reading its own stream (the id is part of the token), hashing it and
//! comparing the hashes in constant time.

use chrono::{DateTime, Duration, Utc};
use provledger_domain::{Email, Principal, Role};
use provledger_store::{
    to_stored_precision, AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent,
    RecordedEvent,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppError;

/// Prefix of every token stream.
pub const TOKEN_STREAM_PREFIX: &str = "token-";
/// Prefix of every token, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "plt_";
/// Event type of a created token.
pub const TOKEN_CREATED: &str = "TokenCreated";
/// Event type of a revoked token.
pub const TOKEN_REVOKED: &str = "TokenRevoked";
/// Longest token accepted (longer input is refused before hashing).
const MAX_TOKEN_LEN: usize = 200;

/// The payload of [`TOKEN_CREATED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// Token id (public; names the stream).
    pub id: String,
    /// The user the token authenticates.
    pub user: Email,
    /// The user's role.
    pub role: Role,
    /// When the token stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// SHA-256 of the token, lowercase hex.
    pub token_sha256: String,
}

/// A token as `token list` shows it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// The user.
    pub user: String,
    /// The role.
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A newly created token: the only time the token is available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewToken {
    /// Token id.
    pub id: String,
    /// The bearer token; store it now, it is not kept.
    pub token: String,
    /// The user.
    pub user: String,
    /// The role.
    pub role: Role,
    /// When it expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An authenticated token: who it is and which token it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The principal.
    pub principal: Principal,
    /// The token's id (recorded as the channel's credential).
    pub token_id: String,
}

/// Why a presented token was not accepted. Every variant is a 401; the
/// distinction is for logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    /// Not of the token's shape.
    #[error("malformed token")]
    Malformed,
    /// No such token, or the hash does not match.
    #[error("unknown token")]
    Unknown,
    /// The token has expired.
    #[error("expired token")]
    Expired,
    /// The token was revoked.
    #[error("revoked token")]
    Revoked,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn stream_of(id: &str) -> String {
    format!("{TOKEN_STREAM_PREFIX}{id}")
}

fn valid_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn new_event(
    event_type: &str,
    payload: serde_json::Value,
    actor: &str,
    id: &str,
    version: u64,
    at: DateTime<Utc>,
) -> NewEvent {
    NewEvent {
        event_type: event_type.to_string(),
        schema_version: 1,
        payload,
        metadata: Metadata {
            actor: actor.to_string(),
            transaction_id: format!("TX-token-{id}-{version}"),
            correlation_id: None,
            causation_id: None,
            idempotency_key: None,
            request_fingerprint: None,
            via: Some("cli".into()),
            os_user: None,
            token_id: None,
        },
        occurred_at: at,
    }
}

/// The state of one token stream.
#[derive(Debug, Clone, Default)]
struct TokenState {
    created: Option<(TokenCreated, DateTime<Utc>)>,
    revoked_at: Option<DateTime<Utc>>,
    version: u64,
}

fn fold(events: &[RecordedEvent]) -> Result<TokenState, AppError> {
    let mut state = TokenState::default();
    for e in events {
        state.version = e.stream_version;
        match e.event_type.as_str() {
            TOKEN_CREATED => {
                let created: TokenCreated =
                    serde_json::from_value(e.payload.clone()).map_err(|err| {
                        AppError::BadInput(format!(
                            "token event at position {} does not decode: {err}",
                            e.position
                        ))
                    })?;
                state.created = Some((created, e.occurred_at));
            }
            TOKEN_REVOKED => {
                state.revoked_at.get_or_insert(e.occurred_at);
            }
            _ => {}
        }
    }
    Ok(state)
}

/// Create a token for `user` with `role`, valid for `expires_days` days
/// (forever when `None`). `actor` is recorded as who created it.
pub fn create(
    store: &dyn EventStore,
    user: &Email,
    role: Role,
    expires_days: Option<u32>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<NewToken, AppError> {
    let now = to_stored_precision(now);
    if expires_days == Some(0) {
        return Err(AppError::BadInput(
            "--expires must be at least 1 day; leave it out for a token that does not expire"
                .into(),
        ));
    }
    let expires_at = match expires_days {
        Some(days) => Some(
            now.checked_add_signed(Duration::days(i64::from(days)))
                .filter(|t| t.timestamp() < 4_102_444_800)
                .ok_or_else(|| {
                    AppError::BadInput(format!(
                        "--expires {days} days reaches past the year 2100; choose fewer days"
                    ))
                })?,
        ),
        None => None,
    };
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    let created = TokenCreated {
        id: id.clone(),
        user: user.clone(),
        role,
        expires_at,
        token_sha256: sha256_hex(&token),
    };
    let payload = serde_json::to_value(&created)
        .map_err(|e| AppError::BadInput(format!("cannot encode the token event: {e}")))?;
    let event = new_event(TOKEN_CREATED, payload, actor, &id, 1, now);
    store.append(AppendRequest::single(
        stream_of(&id),
        ExpectedVersion::NoStream,
        vec![event],
    ))?;
    Ok(NewToken {
        id,
        token,
        user: user.to_string(),
        role,
        expires_at,
    })
}

/// Revoke token `id`. Revoking a revoked token is a no-op that says so.
pub fn revoke(
    store: &dyn EventStore,
    id: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<TokenInfo, AppError> {
    let now = to_stored_precision(now);
    let unknown = || {
        AppError::BadInput(format!(
            "no token with id {id:?}; see `provledger token list`"
        ))
    };
    if !valid_id(id) {
        return Err(unknown());
    }
    let state = fold(&store.read_stream(&stream_of(id), 0)?)?;
    if state.created.is_none() {
        return Err(unknown());
    }
    if state.revoked_at.is_none() {
        let event = new_event(
            TOKEN_REVOKED,
            serde_json::json!({ "id": id }),
            actor,
            id,
            state.version + 1,
            now,
        );
        store.append(AppendRequest::single(
            stream_of(id),
            ExpectedVersion::Exact(state.version),
            vec![event],
        ))?;
    }
    let state = fold(&store.read_stream(&stream_of(id), 0)?)?;
    info(&state).ok_or_else(unknown)
}

fn info(state: &TokenState) -> Option<TokenInfo> {
    let (created, created_at) = state.created.as_ref()?;
    Some(TokenInfo {
        id: created.id.clone(),
        user: created.user.to_string(),
        role: created.role,
        created_at: *created_at,
        expires_at: created.expires_at,
        revoked_at: state.revoked_at,
    })
}

/// Every token, oldest id first.
pub fn list(store: &dyn EventStore) -> Result<Vec<TokenInfo>, AppError> {
    let mut tokens = Vec::new();
    for stream in store.stream_ids(TOKEN_STREAM_PREFIX)? {
        let state = fold(&store.read_stream(&stream, 0)?)?;
        tokens.extend(info(&state));
    }
    tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(tokens)
}

/// Check a presented bearer token at `now`.
pub fn authenticate(
    store: &dyn EventStore,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Result<Authenticated, TokenRejected>, AppError> {
    if token.len() > MAX_TOKEN_LEN {
        return Ok(Err(TokenRejected::Malformed));
    }
    let Some(rest) = token.strip_prefix(TOKEN_PREFIX) else {
        return Ok(Err(TokenRejected::Malformed));
    };
    let Some((id, _secret)) = rest.split_once('_') else {
        return Ok(Err(TokenRejected::Malformed));
    };
    if !valid_id(id) {
        return Ok(Err(TokenRejected::Malformed));
    }
    let state = fold(&store.read_stream(&stream_of(id), 0)?)?;
    let Some((created, _)) = &state.created else {
        return Ok(Err(TokenRejected::Unknown));
    };
    let presented = sha256_hex(token);
    let matches: bool = presented
        .as_bytes()
        .ct_eq(created.token_sha256.as_bytes())
        .into();
    if !matches {
        return Ok(Err(TokenRejected::Unknown));
    }
    if state.revoked_at.is_some() {
        return Ok(Err(TokenRejected::Revoked));
    }
    if created.expires_at.is_some_and(|t| t <= now) {
        return Ok(Err(TokenRejected::Expired));
    }
    Ok(Ok(Authenticated {
        principal: Principal {
            user: created.user.clone(),
            role: created.role,
        },
        token_id: created.id.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Box<dyn EventStore>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let store = provledger_store::open(&url).expect("store");
        (dir, store)
    }

    #[test]
    fn a_token_authenticates_until_revoked_and_only_its_hash_is_stored() {
        let (_dir, store) = store();
        let now = Utc::now();
        let user = Email::parse("pat@partner.example").expect("email");
        let new = create(store.as_ref(), &user, Role::User, Some(2), "op", now).expect("create");
        let all: Vec<RecordedEvent> = store
            .read_all(0)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("events");
        assert!(!serde_json::to_string(&all)
            .expect("json")
            .contains(&new.token));
        let ok = authenticate(store.as_ref(), &new.token, now).expect("auth");
        assert_eq!(ok.expect("accepted").principal.user, user);
        let mut wrong = new.token.clone();
        wrong.pop();
        wrong.push('x');
        assert_eq!(
            authenticate(store.as_ref(), &wrong, now).expect("auth"),
            Err(TokenRejected::Unknown)
        );
        assert_eq!(
            authenticate(store.as_ref(), &new.token, now + Duration::days(3)).expect("auth"),
            Err(TokenRejected::Expired)
        );
        revoke(store.as_ref(), &new.id, "op", now).expect("revoke");
        assert_eq!(
            authenticate(store.as_ref(), &new.token, now).expect("auth"),
            Err(TokenRejected::Revoked)
        );
        assert_eq!(list(store.as_ref()).expect("list").len(), 1);
        assert_eq!(
            authenticate(store.as_ref(), "Bearer nonsense", now).expect("auth"),
            Err(TokenRejected::Malformed)
        );
    }
}
