//! The one write path: every command — from the CLI, scenario scripts, the
//! group committer and the HTTP server — goes through [`Ledger::submit`].
//!
//! This module exists so that the ledger's trust rules are enforced in one
//! place, whoever asks:
//!
//! * **Whose clock** (DESIGN.md §2): on a live ledger the business time is
//!   the ledger's own clock, never the caller's (`--at`/`--now` are bad
//!   input), and a command is dated at its streams' latest event when the
//!   clock reads earlier — a concurrent command that won the race never
//!   makes a valid command fail. A simulated ledger takes the caller's time.
//! * **Who is acting**: the actor is the user the caller authenticated as
//!   (a token over HTTP; the operator's `--as` on the host); every event's
//!   metadata records the channel (`via`), the OS user (CLI) or the token id
//!   (HTTP), and a fingerprint of the request.
//! * **Idempotency keys** are scoped to the acting user and bound to the
//!   request: the same key with another request is bad input naming the
//!   first transaction, never a replay of someone else's result.
//! * **Unique ids**: placing an order claims its id and its subscription ids
//!   in reservation streams in the same atomic append (see
//!   `provledger_domain::decide_command`).
//!
//! The steps: load the streams the command needs → decide → envelope →
//! append at the expected versions → bounded retry on conflict → state
//! cache → projection policy. With the read models inline, their rows are
//! written inside the append's own transaction (one commit); otherwise
//! (deferred projections, read models behind the log or elsewhere) they are
//! caught up after the commit.

use chrono::{DateTime, NaiveDate, Utc};
use provledger_domain::{
    command_needs, decide_command, latest_event_at, refuse_for_role, Actor, ClockMode, Context,
    Event, LedgerCommand, LedgerEvent, OrderId, OrderState, OrgState, ReservationState, Role,
    SetupDecision, SetupView, StreamState, LEDGER_STREAM,
};
use provledger_store::{
    to_stored_precision, AppendOutcome, AppendRequest, ExpectedVersion, Metadata, NewEvent,
    RecordedEvent, StoreError, StreamAppend,
};
use sha2::{Digest, Sha256};

use crate::ledger::{outcome_of, transaction_id, MAX_ATTEMPTS, SYSTEM_ACTOR};
use crate::{AppError, CommandOutcome, Ledger};

/// The channel a request came through, recorded in every event's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// The command line on the ledger's host.
    Cli,
    /// The HTTP API.
    Http,
    /// `import` / `migrate`.
    Import,
    /// Scheduled transitions (`tick`, and the catch-up before a command).
    Scheduler,
}

impl Via {
    /// `cli`, `http`, `import` or `scheduler`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Http => "http",
            Via::Import => "import",
            Via::Scheduler => "scheduler",
        }
    }
}

/// Where a request came from: its channel and who was behind it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The channel.
    pub via: Via,
    /// The operating-system user who ran the CLI.
    pub os_user: Option<String>,
    /// The id of the bearer token (HTTP).
    pub token_id: Option<String>,
}

impl Origin {
    /// The command line, run by this process's OS user.
    pub fn cli() -> Origin {
        Origin {
            via: Via::Cli,
            os_user: Some(os_user()),
            token_id: None,
        }
    }

    /// The HTTP API, authenticated by the token `token_id`.
    pub fn http(token_id: impl Into<String>) -> Origin {
        Origin {
            via: Via::Http,
            os_user: None,
            token_id: Some(token_id.into()),
        }
    }

    /// The scheduler.
    pub fn scheduler() -> Origin {
        Origin {
            via: Via::Scheduler,
            os_user: None,
            token_id: None,
        }
    }
}

/// The operating-system user running this process: `$USER`, `$LOGNAME`, or
/// the numeric uid. Looked up once per process (without `$USER` it reads
/// `/proc/self/status`, which a script of thousands of steps would otherwise
/// do per command).
pub fn os_user() -> String {
    static OS_USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OS_USER.get_or_init(look_up_os_user).clone()
}

fn look_up_os_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var) {
            let name = name.trim();
            if !name.is_empty() && !name.chars().any(provledger_domain::is_spoofing_char) {
                return name.chars().take(64).collect();
            }
        }
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| {
                    rest.split_whitespace()
                        .next()
                        .map(|uid| format!("uid {uid}"))
                })
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// A time the caller asked for, and the option it came from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedTime {
    /// The time.
    pub at: DateTime<Utc>,
    /// `--at`, `--now`, or a script's `at` field.
    pub option: &'static str,
}

/// The earliest business time a simulated ledger accepts.
pub fn earliest_time() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
}

/// The latest business time a simulated ledger accepts.
pub fn latest_time() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2100, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map_or(DateTime::<Utc>::MAX_UTC, |t| t.and_utc())
}

/// One command to carry out, with everything the trust rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The order it targets.
    pub order_id: OrderId,
    /// The validated command.
    pub command: LedgerCommand,
    /// The user acting (authenticated by the caller).
    pub actor: Actor,
    /// Where the request came from.
    pub origin: Origin,
    /// The caller's time: simulated ledgers only.
    pub requested_at: Option<RequestedTime>,
    /// Makes a retry of the same request return the first result.
    pub idempotency_key: Option<String>,
    /// The role the actor authenticated with (HTTP). A role that may not
    /// submit this kind of command has its attempt recorded as a refusal
    /// (R12). `None` on the CLI: the operator acts for `actor`, and R6
    /// alone decides.
    pub role: Option<Role>,
}

impl Submission {
    /// A submission of `command` on `order_id` by `actor` through `origin`,
    /// dated by the ledger's clock, without an idempotency key.
    pub fn new(
        order_id: OrderId,
        command: impl Into<LedgerCommand>,
        actor: impl Into<Actor>,
        origin: Origin,
    ) -> Submission {
        Submission {
            order_id,
            command: command.into(),
            actor: actor.into(),
            origin,
            requested_at: None,
            idempotency_key: None,
            role: None,
        }
    }

    /// The same submission by a principal with `role`.
    pub fn with_role(mut self, role: Role) -> Submission {
        self.role = Some(role);
        self
    }

    /// The same submission at the caller's time (simulated ledgers).
    pub fn at(mut self, at: DateTime<Utc>, option: &'static str) -> Submission {
        self.requested_at = Some(RequestedTime { at, option });
        self
    }

    /// The same submission with an idempotency key.
    pub fn with_key(mut self, key: Option<String>) -> Submission {
        self.idempotency_key = key;
        self
    }

    /// SHA-256 of the canonical request: its kind, ids and arguments, and the
    /// acting user. A retry with the same key must have the same fingerprint.
    pub fn fingerprint(&self) -> String {
        request_fingerprint(&self.order_id, &self.command, &self.actor)
    }

    /// The idempotency key as stored: scoped to the acting user, so one
    /// user's key never answers another's request. Empty keys are refused.
    pub fn scoped_key(&self) -> Result<Option<String>, AppError> {
        self.idempotency_key
            .as_deref()
            .map(|key| scope_key(&self.actor, key))
            .transpose()
    }
}

/// SHA-256 (hex) over the order id, the actor's identity and the command.
pub fn request_fingerprint(order_id: &OrderId, command: &LedgerCommand, actor: &Actor) -> String {
    let canonical = format!("{order_id}\n{}\n{command:?}", actor_identity(actor));
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// The most characters an idempotency key may have.
pub const MAX_KEY_CHARS: usize = 200;

/// Validate `key` and scope it to `actor`: `<length of identity>:<identity>:<key>`
/// (length-prefixed, so no two (user, key) pairs give the same string).
pub fn scope_key(actor: &Actor, key: &str) -> Result<String, AppError> {
    if key.trim().is_empty() {
        return Err(AppError::BadInput(
            "the idempotency key is empty; give a unique key per request (e.g. a UUID), or leave the option out".into(),
        ));
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(AppError::BadInput(format!(
            "the idempotency key is longer than {MAX_KEY_CHARS} characters; use a shorter unique key (e.g. a UUID)"
        )));
    }
    if let Some(reason) = provledger_domain::spoofing_reason(key) {
        return Err(AppError::BadInput(format!(
            "invalid idempotency key: {reason}"
        )));
    }
    let identity = actor_identity(actor);
    Ok(format!("{}:{identity}:{key}", identity.len()))
}

/// The actor as one identity: a user's lowercased address, or `system`.
fn actor_identity(actor: &Actor) -> String {
    match actor {
        Actor::User(email) => email.identity(),
        Actor::System => SYSTEM_ACTOR.to_string(),
    }
}

/// The first result of a request whose key was used before — if it was the
/// same request. Another request with the same key is bad input.
pub fn replay_of(
    first: &[RecordedEvent],
    fingerprint: &str,
    key: &str,
) -> Result<CommandOutcome, AppError> {
    let stored = first
        .iter()
        .find_map(|e| e.metadata.request_fingerprint.as_deref());
    if let Some(stored) = stored {
        if stored != fingerprint {
            let transaction_id = first
                .iter()
                .find(|e| OrderId::from_stream_id(&e.stream_id).is_some())
                .or(first.first())
                .map(|e| e.metadata.transaction_id.clone())
                .unwrap_or_default();
            return Err(AppError::IdempotencyKeyReused {
                key: key.to_string(),
                transaction_id,
            });
        }
    }
    outcome_of(first, true)
}

/// What goes into every event's metadata besides its transaction.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Who acts.
    pub actor: &'a Actor,
    /// Where the request came from.
    pub origin: &'a Origin,
    /// The request's fingerprint.
    pub fingerprint: Option<&'a str>,
}

impl Envelope<'_> {
    fn metadata(
        &self,
        actor: String,
        transaction_id: String,
        correlation: Option<String>,
    ) -> Metadata {
        Metadata {
            actor,
            transaction_id,
            correlation_id: correlation,
            causation_id: None,
            idempotency_key: None,
            request_fingerprint: self.fingerprint.map(str::to_string),
            via: Some(self.origin.via.as_str().to_string()),
            os_user: self.origin.os_user.clone(),
            token_id: self.origin.token_id.clone(),
        }
    }
}

/// Give each decided order event its store envelope: scheduled events are
/// the system's (via the scheduler), each its own transaction; the
/// command's events share one transaction, to which the scheduled catch-up
/// is correlated.
pub fn to_new_events(
    order_id: &OrderId,
    base_version: u64,
    events: &[Event],
    envelope: &Envelope<'_>,
) -> Vec<NewEvent> {
    let first_command_version = events
        .iter()
        .position(|e| !e.is_scheduled())
        .map(|i| base_version + 1 + i as u64);
    let command_tx = first_command_version.map(|v| transaction_id(order_id, v));
    let scheduler = Origin::scheduler();
    let scheduled_envelope = Envelope {
        actor: &Actor::System,
        origin: &scheduler,
        fingerprint: None,
    };
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let version = base_version + 1 + i as u64;
            let metadata = if event.is_scheduled() {
                scheduled_envelope.metadata(
                    SYSTEM_ACTOR.to_string(),
                    transaction_id(order_id, version),
                    command_tx.clone(),
                )
            } else {
                envelope.metadata(
                    envelope.actor.to_string(),
                    command_tx
                        .clone()
                        .unwrap_or_else(|| transaction_id(order_id, version)),
                    command_tx.clone(),
                )
            };
            NewEvent {
                event_type: event.event_type().to_string(),
                schema_version: event.schema_version(),
                payload: event.to_payload(),
                metadata,
                occurred_at: event.at(),
            }
        })
        .collect()
}

fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

/// The one append of a decision: the order stream first, then the
/// organisations, then the reservations, each at the version it was read at.
/// Organisation and reservation events share the order command's actor,
/// transaction and correlation id.
pub fn decision_appends(
    order_id: &OrderId,
    view: &SetupView,
    decision: &SetupDecision,
    envelope: &Envelope<'_>,
) -> Vec<StreamAppend> {
    let base = view.order.version;
    let order_events = to_new_events(order_id, base, &decision.order, envelope);
    let command_tx = decision
        .order
        .iter()
        .position(|e| !e.is_scheduled())
        .map(|i| transaction_id(order_id, base + 1 + i as u64))
        .unwrap_or_else(|| transaction_id(order_id, base + 1));
    let metadata = envelope.metadata(
        envelope.actor.to_string(),
        command_tx.clone(),
        Some(command_tx),
    );
    let new_event = |event_type: &str, payload, at| NewEvent {
        event_type: event_type.to_string(),
        schema_version: provledger_domain::SCHEMA_VERSION,
        payload,
        metadata: metadata.clone(),
        occurred_at: at,
    };
    let mut appends = vec![StreamAppend {
        stream_id: order_id.stream_id(),
        expected: expected(base),
        events: order_events,
    }];
    let orgs = decision.orgs.iter().map(|(org_id, events)| {
        let events = events
            .iter()
            .map(|e| new_event(e.event_type(), e.to_payload(), e.at()));
        (
            org_id.stream_id(),
            view.org(org_id).version,
            events.collect(),
        )
    });
    let reservations = decision.reservations.iter().map(|(key, events)| {
        let events = events
            .iter()
            .map(|e| new_event(e.event_type(), e.to_payload(), e.at()));
        (
            key.stream_id(),
            view.reservation(key).version,
            events.collect(),
        )
    });
    for (stream_id, version, events) in orgs.chain(reservations) {
        appends.push(StreamAppend {
            stream_id,
            expected: expected(version),
            events,
        });
    }
    appends
}

/// Decode and fold one stream's recorded events into its state. An event
/// that cannot be decoded is an integrity failure naming its position.
pub fn fold<S: StreamState>(events: &[RecordedEvent]) -> Result<S, AppError> {
    let mut state = S::default();
    for recorded in events {
        state = state.apply(&decode::<S>(recorded)?);
    }
    Ok(state)
}

/// Decode one recorded event of a stream of kind `S`; one that cannot be
/// decoded is an integrity failure naming its position.
pub fn decode<S: StreamState>(recorded: &RecordedEvent) -> Result<S::Event, AppError> {
    S::decode(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.payload,
    )
    .map_err(|source| AppError::UndecodableEvent {
        position: recorded.position,
        stream_id: recorded.stream_id.clone(),
        source,
    })
}

/// A command decided against fresh state, ready to append.
pub(crate) struct Decided {
    /// The streams to append to, at the versions read.
    pub appends: Vec<StreamAppend>,
    /// The order's state after the decision's events.
    pub order_after: OrderState,
}

impl Ledger {
    /// The ledger's clock mode: from its first event (`LedgerCreated`); a
    /// ledger without one was written with callers' times and is simulated.
    pub fn clock(&self) -> Result<ClockMode, AppError> {
        if let Some(mode) = self.clock_cache().get() {
            return Ok(*mode);
        }
        let events = self.store().read_stream(LEDGER_STREAM, 0)?;
        let mode = match events.first() {
            Some(first) => {
                let event = LedgerEvent::from_stored(
                    &first.event_type,
                    first.schema_version,
                    &first.payload,
                )
                .map_err(|source| AppError::UndecodableEvent {
                    position: first.position,
                    stream_id: first.stream_id.clone(),
                    source,
                })?;
                match event {
                    LedgerEvent::LedgerCreated { clock, .. } => clock,
                }
            }
            None => ClockMode::Simulated,
        };
        // An empty ledger may still be initialised: remember only a mode
        // that its first event fixed, or that events without one imply.
        if !events.is_empty() || self.store().head()?.is_some() {
            let _ = self.clock_cache().set(mode);
        }
        Ok(mode)
    }

    /// Record the ledger's clock mode as its first event (`init`). On a
    /// ledger that already has one, the same mode is fine and a different
    /// one is bad input; a ledger with events but no mode stays simulated.
    pub fn initialise(&self, clock: ClockMode) -> Result<ClockMode, AppError> {
        if self.store().head()?.is_some() {
            let existing = self.clock()?;
            if existing != clock {
                return Err(AppError::BadInput(format!(
                    "this ledger already exists with a {existing} clock; its clock mode is fixed when it is created — create a new ledger (another --db path) for a {clock} clock"
                )));
            }
            return Ok(existing);
        }
        let now = to_stored_precision(Utc::now());
        let event = LedgerEvent::LedgerCreated {
            at: now,
            clock,
            ledger_id: uuid::Uuid::new_v4().to_string(),
        };
        let origin = Origin::cli();
        let envelope = Envelope {
            actor: &Actor::System,
            origin: &origin,
            fingerprint: None,
        };
        let new_event = NewEvent {
            event_type: event.event_type().to_string(),
            schema_version: event.schema_version(),
            payload: event.to_payload(),
            metadata: envelope.metadata(SYSTEM_ACTOR.to_string(), "TX-ledger-1".to_string(), None),
            occurred_at: now,
        };
        match self.store().append(AppendRequest::single(
            LEDGER_STREAM,
            ExpectedVersion::NoStream,
            vec![new_event],
        )) {
            Ok(_) => {}
            // Another `init` won the race: its mode stands.
            Err(e) if e.is_conflict() => return self.initialise(clock),
            Err(e) => return Err(e.into()),
        }
        let _ = self.clock_cache().set(clock);
        Ok(clock)
    }

    /// The business time for a command: the ledger's clock on a live ledger
    /// (a caller's time is bad input), the caller's (or the clock's) on a
    /// simulated one, within the years 2000–2100.
    pub fn command_time(
        &self,
        requested: Option<RequestedTime>,
    ) -> Result<DateTime<Utc>, AppError> {
        let at = match (self.clock()?, requested) {
            (ClockMode::Live, Some(r)) => {
                return Err(AppError::BadInput(format!(
                    "{} is not accepted on a live ledger: its own clock dates every command. To give times yourself (demos, scenario scripts, tests), create a ledger with `provledger init --clock simulated`",
                    r.option
                )))
            }
            (ClockMode::Live, None) => Utc::now(),
            (ClockMode::Simulated, Some(r)) => {
                if r.at < earliest_time() || r.at > latest_time() {
                    return Err(AppError::BadInput(format!(
                        "{} {} is outside the years 2000 to 2100 that a ledger accepts; give the real time",
                        r.option,
                        provledger_store::hash::format_time(&r.at)
                    )));
                }
                r.at
            }
            (ClockMode::Simulated, None) => Utc::now(),
        };
        Ok(to_stored_precision(at))
    }

    /// Fold one stream of kind `S` from the store.
    pub fn load_stream<S: StreamState>(&self, stream_id: &str) -> Result<S, AppError> {
        fold(&self.store().read_stream(stream_id, 0)?)
    }

    /// Load the order (from the state cache when it holds it) and every
    /// other stream `command` needs.
    pub(crate) fn load_view(
        &self,
        order_id: &OrderId,
        command: &LedgerCommand,
        actor: &Actor,
        cached: Option<OrderState>,
    ) -> Result<SetupView, AppError> {
        let order = match cached {
            Some(state) => state,
            None => self.current_state(order_id)?,
        };
        let needs = command_needs(command, &order, actor)?;
        let mut view = SetupView {
            order,
            ..SetupView::default()
        };
        for org_id in needs.orgs {
            let state = self.load_stream::<OrgState>(&org_id.stream_id())?;
            view.orgs.insert(org_id, state);
        }
        for key in needs.reservations {
            let state = self.load_stream::<ReservationState>(&key.stream_id())?;
            view.reservations.insert(key, state);
        }
        Ok(view)
    }

    /// Decide `command` against `view` at `now` (on a live ledger, never
    /// before the streams' latest event) and build its appends.
    pub(crate) fn decide_appends(
        &self,
        order_id: &OrderId,
        view: &SetupView,
        command: LedgerCommand,
        now: DateTime<Utc>,
        role: Option<Role>,
        envelope: &Envelope<'_>,
    ) -> Result<Decided, AppError> {
        if view.order.order.is_none() && !command.places_order() {
            return Err(AppError::UnknownOrder {
                order_id: order_id.to_string(),
            });
        }
        let at = match self.clock()? {
            ClockMode::Live => latest_event_at(view).map_or(now, |latest| now.max(latest)),
            ClockMode::Simulated => now,
        };
        let ctx = Context::new(envelope.actor.clone(), at);
        let refused = role.and_then(|role| refuse_for_role(&view.order, &command, role, &ctx));
        let decision = match refused {
            Some(order) => SetupDecision {
                order,
                ..SetupDecision::default()
            },
            None => decide_command(order_id, view, command, &ctx)?,
        };
        if decision.order.is_empty() {
            return Err(provledger_store::StoreError::EmptyAppend.into());
        }
        let appends = decision_appends(order_id, view, &decision, envelope);
        let order_after = decision
            .order
            .iter()
            .fold(view.order.clone(), provledger_domain::evolve);
        Ok(Decided {
            appends,
            order_after,
        })
    }

    /// Append `requests` in one transaction. With `inline`, the read models
    /// are written in that transaction too where they can be (read models
    /// of the store's own SQLite file or PostgreSQL schema: one commit, and
    /// they never lag it); their cache learns of the batch only if it
    /// committed.
    /// `known`: states of orders as they stand before the append, which
    /// the caller decided on (the read models then need not fold them again
    /// from the log). Returns each request's result and whether the read
    /// models were written with them (if not, the caller catches them up).
    pub(crate) fn append_requests(
        &self,
        requests: Vec<AppendRequest>,
        inline: bool,
        known: Vec<(OrderId, OrderState)>,
    ) -> Result<(Vec<Result<AppendOutcome, StoreError>>, bool), StoreError> {
        let mut writer = if inline {
            self.read_models().inline().map(|w| w.knowing(known))
        } else {
            None
        };
        let appended = match writer.as_mut() {
            Some(writer) => self.store().append_batch_inline(requests, writer),
            None => self.store().append_batch(requests),
        };
        let projected = writer.is_some_and(|writer| writer.finish(appended.is_ok()));
        appended.map(|results| (results, projected))
    }

    /// Carry out one command: the one write path (see the module docs).
    ///
    /// Returns the outcome (success, or a recorded refusal); bad input,
    /// a reused idempotency key with another request, storage failures and
    /// exhausted conflict retries are errors and write nothing.
    pub fn submit(&self, submission: Submission) -> Result<CommandOutcome, AppError> {
        let fingerprint = submission.fingerprint();
        let scoped_key = submission.scoped_key()?;
        let now = self.command_time(submission.requested_at)?;
        if let Some(key) = &scoped_key {
            if let Some(first) = self.store().find_idempotent(key)? {
                return replay_of(
                    &first,
                    &fingerprint,
                    submission.idempotency_key.as_deref().unwrap_or_default(),
                );
            }
        }
        let order_id = &submission.order_id;
        let actor = submission.actor.clone();
        let envelope = Envelope {
            actor: &actor,
            origin: &submission.origin,
            fingerprint: Some(&fingerprint),
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let view = self.load_view(order_id, &submission.command, &actor, None)?;
            let decided = self.decide_appends(
                order_id,
                &view,
                submission.command.clone(),
                now,
                submission.role,
                &envelope,
            )?;
            let request = AppendRequest {
                appends: decided.appends,
                idempotency_key: scoped_key.clone(),
            };
            let known = vec![(order_id.clone(), view.order)];
            let (result, projected) =
                match self.append_requests(vec![request], !self.deferred_projections(), known) {
                    Ok((mut results, projected)) => (
                        results
                            .pop()
                            .unwrap_or(Err(provledger_store::StoreError::EmptyAppend)),
                        projected,
                    ),
                    Err(e) => (Err(e), false),
                };
            match result {
                Ok(appended) => {
                    if appended.replayed {
                        // Another writer used the key first: the stream
                        // does not hold the events decided here.
                        self.states().evict(order_id);
                        return replay_of(
                            &appended.events,
                            &fingerprint,
                            submission.idempotency_key.as_deref().unwrap_or_default(),
                        );
                    }
                    self.states().put(order_id.clone(), decided.order_after);
                    if !self.deferred_projections() && !projected {
                        self.catch_up()?;
                    }
                    return outcome_of(&appended.events, false);
                }
                Err(e) if e.is_conflict() => {
                    // A stream moved: decide again on what it holds.
                    self.states().evict(order_id);
                    if attempt < MAX_ATTEMPTS {
                        crate::ledger::backoff(attempt);
                    }
                    continue;
                }
                Err(e) => {
                    self.states().evict(order_id);
                    return Err(e.into());
                }
            }
        }
        Err(AppError::ConflictRetriesExhausted {
            order_id: order_id.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }
}
