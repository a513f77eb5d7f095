//! A tiny stand-in for the application layer: decide commands with the
//! domain and append their events to an SQLite store in a temporary
//! directory, with actor and transaction id metadata.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use provledger_domain::{
    decide, due_events, Actor, Command, Context, DomainError, Email, Event, LineId, LineSpec,
    Offer, OrderId, OrderState, OrgId, SubscriptionId, SupportRequestType, ValidOrder,
};
use provledger_projections::ReadModels;
use provledger_store::sqlite::SqliteStore;
use provledger_store::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent};

/// The ordering contact of every test order.
pub const OLIVIA: &str = "olivia@partner.example";
/// A partner contact with access (R6).
pub const PAT: &str = "pat@partner.example";
/// A user without access.
pub const EVE: &str = "eve@elsewhere.example";

/// A time from RFC 3339 text.
pub fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test times are valid RFC 3339")
        .with_timezone(&Utc)
}

/// An email from text.
pub fn email(text: &str) -> Email {
    Email::parse(text).expect("test emails are valid")
}

/// A line id from text.
pub fn line(text: &str) -> LineId {
    LineId::parse(text).expect("test line ids are valid")
}

/// An order id from text.
pub fn order(text: &str) -> OrderId {
    OrderId::parse(text).expect("test order ids are valid")
}

/// A subscription id from text.
pub fn sub(text: &str) -> SubscriptionId {
    SubscriptionId::parse(text).expect("test subscription ids are valid")
}

/// A place-order command: lines as (line id, subscription, offer, rsd, contact).
pub fn place(order_id: &str, lines: &[(&str, &str, &str, &str, &str)]) -> Command {
    Command::PlaceOrder(ValidOrder {
        order_id: order(order_id),
        ordering_contact: email(OLIVIA),
        partner: "Acme Partner".into(),
        end_customer: "Contoso Ltd".into(),
        partner_contacts: vec![email(PAT)],
        distributor_contacts: vec![],
        lines: lines
            .iter()
            .map(|(l, s, offer, rsd, contact)| LineSpec {
                line_id: line(l),
                subscription_id: sub(s),
                offer: Offer::parse(offer).expect("test offers are valid"),
                rsd: rsd.parse().expect("test dates are valid"),
                provisioning_contact: email(contact),
            })
            .collect(),
    })
}

/// A contact change.
pub fn change(line_id: &str, to: &str, all: bool) -> Command {
    Command::ChangeContact {
        line_id: line(line_id),
        new_email: email(to),
        apply_to_all_lines: all,
    }
}

/// A resend.
pub fn resend(line_id: &str) -> Command {
    Command::ResendEmail {
        line_id: line(line_id),
    }
}

/// An onboarding.
pub fn onboard(org: &str) -> Command {
    Command::OnboardOrg {
        org_id: OrgId::parse(org).expect("test org ids are valid"),
    }
}

/// A support case.
pub fn case(line_id: &str) -> Command {
    Command::OpenSupportCase {
        line_id: line(line_id),
        request_type: SupportRequestType::ResendProvisioningEmail,
        note: Some("screenshot attached".into()),
        attachments: vec![],
    }
}

/// A ledger in a fresh SQLite file.
pub struct Ledger {
    _dir: tempfile::TempDir,
    /// The database file.
    pub path: PathBuf,
    /// The store URL (`sqlite:PATH`).
    pub url: String,
    /// The event store.
    pub store: SqliteStore,
    transactions: u64,
}

impl Ledger {
    /// A new, empty ledger.
    pub fn new() -> Ledger {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("ledger.db");
        let store = SqliteStore::open(&path).expect("the store opens");
        Ledger {
            url: format!("sqlite:{}", path.display()),
            path,
            _dir: dir,
            store,
            transactions: 0,
        }
    }

    /// Open the read models of this ledger.
    pub fn models(&self) -> ReadModels {
        ReadModels::open(&self.url).expect("the read models open")
    }

    /// The folded state of an order, from the store.
    pub fn state(&self, order_id: &str) -> OrderState {
        let events: Vec<Event> = self
            .store
            .read_stream(&order(order_id).stream_id(), 0)
            .expect("the stream reads")
            .iter()
            .map(|r| {
                Event::from_stored(&r.event_type, r.schema_version, &r.payload)
                    .expect("stored events decode")
            })
            .collect();
        OrderState::from_events(&events)
    }

    /// Decide `command` by `actor` at `at` and append its events; returns the
    /// transaction id and the events.
    pub fn exec(
        &mut self,
        order_id: &str,
        actor: &str,
        at: &str,
        command: Command,
    ) -> Result<(String, Vec<Event>), DomainError> {
        let state = self.state(order_id);
        let ctx = Context::new(Actor::parse(actor)?, t(at));
        let events = decide(&state, command, &ctx)?;
        let tx = self.append(order_id, actor, &state, &events);
        Ok((tx, events))
    }

    /// Append what is due for the order at `at` (the scheduler's tick).
    pub fn tick(&mut self, order_id: &str, at: &str) -> Vec<Event> {
        let state = self.state(order_id);
        let events = due_events(&state, t(at));
        if !events.is_empty() {
            self.append(order_id, "system", &state, &events);
        }
        events
    }

    fn append(
        &mut self,
        order_id: &str,
        actor: &str,
        state: &OrderState,
        events: &[Event],
    ) -> String {
        self.transactions += 1;
        let transaction_id = format!("tx-{:04}", self.transactions);
        let new_events = events
            .iter()
            .map(|e| NewEvent {
                event_type: e.event_type().to_string(),
                schema_version: e.schema_version(),
                payload: e.to_payload(),
                metadata: Metadata {
                    actor: if e.is_scheduled() {
                        "system".into()
                    } else {
                        actor.into()
                    },
                    transaction_id: transaction_id.clone(),
                    ..Metadata::default()
                },
                occurred_at: e.at(),
            })
            .collect();
        let expected = if state.version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(state.version)
        };
        self.store
            .append(AppendRequest::single(
                order(order_id).stream_id(),
                expected,
                new_events,
            ))
            .expect("the append succeeds");
        transaction_id
    }

    /// Append a raw event to any stream (for non-order streams and bad data).
    pub fn append_raw(
        &self,
        stream_id: &str,
        event_type: &str,
        payload: serde_json::Value,
        at: &str,
    ) {
        let version = self
            .store
            .stream_version(stream_id)
            .expect("the version reads");
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        self.store
            .append(AppendRequest::single(
                stream_id,
                expected,
                vec![NewEvent {
                    event_type: event_type.into(),
                    schema_version: 1,
                    payload,
                    metadata: Metadata {
                        actor: "system".into(),
                        transaction_id: "raw".into(),
                        ..Metadata::default()
                    },
                    occurred_at: t(at),
                }],
            ))
            .expect("the raw append succeeds");
    }

    /// Position of the last event (0 when empty).
    pub fn head(&self) -> u64 {
        self.store
            .head()
            .expect("the head reads")
            .map_or(0, |h| h.position)
    }
}

/// The two-line order most tests use: an A-Flex line (7-day window) and an
/// A-WX line (30-day window), both with RSD 2026-12-01.
pub fn place_wo1001() -> Command {
    place(
        "WO-1001",
        &[
            (
                "1.1",
                "Sub100042",
                "A-Flex",
                "2026-12-01",
                "it@customer.example",
            ),
            (
                "1.2",
                "Sub100043",
                "A-WX",
                "2026-12-01",
                "it@customer.example",
            ),
        ],
    )
}

/// WO-1001 placed by Olivia on 2026-11-20.
pub fn place_wo1001_now(ledger: &mut Ledger) {
    ledger
        .exec("WO-1001", OLIVIA, "2026-11-20T10:00:00Z", place_wo1001())
        .unwrap();
}

/// Pat changes line 1.1's contact to new@customer.example on every line of
/// WO-1001 (R4, apply to all lines) on 2026-11-21.
pub fn change_all_lines(ledger: &mut Ledger) {
    ledger
        .exec(
            "WO-1001",
            PAT,
            "2026-11-21T09:00:00Z",
            change("1.1", "new@customer.example", true),
        )
        .unwrap();
}

/// The commands of `ledger` as append requests: its events grouped by
/// transaction, in position order, each stream at the version it had.
pub fn commands_of(ledger: &dyn EventStore) -> Vec<provledger_store::AppendRequest> {
    use provledger_store::{AppendRequest, ExpectedVersion, NewEvent, StreamAppend};
    let mut requests: Vec<(String, AppendRequest)> = Vec::new();
    for event in ledger.read_all(0).unwrap().map(Result::unwrap) {
        let new = NewEvent {
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
            occurred_at: event.occurred_at,
        };
        let expected = match event.stream_version {
            1 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v - 1),
        };
        let transaction = event.metadata.transaction_id.clone();
        match requests.last_mut() {
            Some((tx, request)) if *tx == transaction => match request.appends.last_mut() {
                Some(append) if append.stream_id == event.stream_id => append.events.push(new),
                _ => request.appends.push(StreamAppend {
                    stream_id: event.stream_id.clone(),
                    expected,
                    events: vec![new],
                }),
            },
            _ => requests.push((
                transaction,
                AppendRequest::single(event.stream_id.clone(), expected, vec![new]),
            )),
        }
    }
    requests.into_iter().map(|(_, r)| r).collect()
}

/// Append `requests` with `models` written inline, catching up when they
/// were not (as the ledger does); returns how many were written inline.
pub fn append_inline(
    store: &dyn EventStore,
    models: &ReadModels,
    requests: Vec<provledger_store::AppendRequest>,
) -> usize {
    let mut inline = 0;
    for request in requests {
        let mut writer = models.inline().expect("read-write read models");
        let appended = store.append_batch_inline(vec![request], &mut writer);
        let committed = matches!(appended.as_deref(), Ok([Ok(_)]));
        assert!(committed, "the append commits: {appended:?}");
        if writer.finish(committed) {
            inline += 1;
        } else {
            models.catch_up(store).unwrap();
        }
    }
    inline
}
