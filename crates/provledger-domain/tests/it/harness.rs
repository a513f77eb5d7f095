//! Given / when / then: the harness every rule test is written in.
//!
//! `given(events)` folds a stream with [`OrderState::from_events`];
//! `.when(command, actor, at)` runs [`decide`]; `.then_events(..)`,
//! `.then_refused(..)` and `.then_error(..)` check the outcome. The sample
//! order and the event builders below keep the rule tests short enough to
//! read as the rule itself.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use provledger_domain::{
    decide, Actor, Command, Context, DomainError, Email, Event, LineId, LineRequest, LineSpec,
    OrderId, OrderRequest, OrderState, OrgId, RefusalCode, RefusedAction, SupportRequestType,
    ValidOrder, PROVISIONING_SENDER,
};

// ---------------------------------------------------------------------------
// People and the sample order.

/// Placed the sample order (R6: has access).
pub const OLIVIA: &str = "olivia@partner.example";
/// Partner contact listed on the sample order (R6: has access).
pub const PAT: &str = "pat@partner.example";
/// Distributor contact listed on the sample order (R6: has access).
pub const DANA: &str = "dana@distributor.example";
/// An auditor: not listed on the order, read-only (R6: no access).
pub const AUDREY: &str = "audrey@audit.example";
/// Provisioning contact of lines 1.1 and 1.3.
pub const IT: &str = "it@customer.example";
/// Provisioning contact of line 1.2: a shared mailbox (alias, R1).
pub const ALIAS: &str = "webex-admins+provisioning@customer.example";
/// A new provisioning contact used by change tests.
pub const NEW: &str = "new.contact@customer.example";

/// The sample order's id.
pub const ORDER: &str = "WO-1001";

/// A parsed email (panics on a typo in a test).
pub fn email(raw: &str) -> Email {
    Email::parse(raw).expect("test email")
}

/// A parsed line id.
pub fn line(raw: &str) -> LineId {
    LineId::parse(raw).expect("test line id")
}

/// A date.
pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("test date")
}

/// A UTC time.
pub fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("test time")
}

/// `t` plus `n` days.
pub fn days_after(t: DateTime<Utc>, n: i64) -> DateTime<Utc> {
    t + Duration::days(n)
}

/// When the sample order is placed: 2026-11-20 09:00 UTC.
pub fn placed_at() -> DateTime<Utc> {
    at(2026, 11, 20, 9, 0)
}

/// RSD of lines 1.1 and 1.2.
pub fn rsd() -> NaiveDate {
    date(2026, 12, 1)
}

/// 00:00 UTC of [`rsd`]: when R2's initial email goes out.
pub fn rsd_start() -> DateTime<Utc> {
    at(2026, 12, 1, 0, 0)
}

/// RSD of line 1.3.
pub fn late_rsd() -> NaiveDate {
    date(2026, 12, 15)
}

/// The sample order file: three lines, offers A-Flex and A-WX, an alias
/// contact, one partner and one distributor contact.
pub fn sample_request() -> OrderRequest {
    let line = |id: &str, sub: &str, offer: &str, rsd: &str, contact: &str| LineRequest {
        line_id: id.into(),
        subscription_id: sub.into(),
        offer: offer.into(),
        rsd: rsd.into(),
        provisioning_contact: contact.into(),
    };
    OrderRequest {
        order_id: ORDER.into(),
        ordering_contact: OLIVIA.into(),
        partner: "Acme Partner".into(),
        end_customer: "Contoso Ltd".into(),
        partner_contacts: vec![PAT.into()],
        distributor_contacts: vec![DANA.into()],
        lines: vec![
            line("1.1", "Sub100042", "A-Flex", "2026-12-01", IT),
            line("1.2", "Sub100043", "A-WX", "2026-12-01", ALIAS),
            line("1.3", "Sub100044", "A-WX", "2026-12-15", IT),
        ],
    }
}

/// The sample order, validated.
pub fn sample_order() -> ValidOrder {
    sample_request()
        .validate()
        .expect("the sample order is valid")
}

/// `OrderPlaced` for the sample order at [`placed_at`].
pub fn placed() -> Event {
    placed_order(sample_order(), placed_at())
}

/// `OrderPlaced` for any validated order.
pub fn placed_order(order: ValidOrder, at: DateTime<Utc>) -> Event {
    Event::OrderPlaced {
        at,
        order_id: order.order_id,
        ordering_contact: order.ordering_contact,
        partner: order.partner,
        end_customer: order.end_customer,
        partner_contacts: order.partner_contacts,
        distributor_contacts: order.distributor_contacts,
        lines: order.lines,
    }
}

/// The sample order's line specs.
pub fn sample_lines() -> Vec<LineSpec> {
    sample_order().lines
}

// ---------------------------------------------------------------------------
// Event builders.

/// R2: the initial email to `to` at `at`, closing after `policy_days`.
pub fn initial_email(line_id: &str, to: &str, at: DateTime<Utc>, policy_days: i64) -> Event {
    Event::InitialEmailSent {
        at,
        line_id: line(line_id),
        to: email(to),
        sender: PROVISIONING_SENDER.to_string(),
        closes_at: days_after(at, policy_days),
    }
}

/// The R2 initial emails of lines 1.1 and 1.2 at the RSD's start.
pub fn rsd_emails() -> Vec<Event> {
    vec![
        initial_email("1.1", IT, rsd_start(), 7),
        initial_email("1.2", ALIAS, rsd_start(), 30),
    ]
}

/// R3: a resend.
pub fn resent(line_id: &str, to: &str, at: DateTime<Utc>) -> Event {
    Event::ProvisioningEmailResent {
        at,
        line_id: line(line_id),
        to: email(to),
        sender: PROVISIONING_SENDER.to_string(),
    }
}

/// R4: a contact change.
pub fn changed(
    line_id: &str,
    old: &str,
    new: &str,
    at: DateTime<Utc>,
    all: bool,
    email_sent: bool,
) -> Event {
    Event::ProvisioningContactChanged {
        at,
        line_id: line(line_id),
        old_email: email(old),
        new_email: email(new),
        applied_to_all_lines: all,
        email_sent,
    }
}

/// R5: onboarding (PONR).
pub fn onboarded(org: &str, at: DateTime<Utc>) -> Event {
    Event::OrgOnboarded {
        at,
        org_id: OrgId::parse(org).expect("test org id"),
    }
}

/// R7: a closure.
pub fn closed(line_id: &str, at: DateTime<Utc>, policy_days: i64) -> Event {
    Event::LineClosed {
        at,
        line_id: line(line_id),
        policy_days,
        billing_started: true,
    }
}

/// R13: setup started.
pub fn setup_started(at: DateTime<Utc>) -> Event {
    Event::SetupStarted { at }
}

// ---------------------------------------------------------------------------
// Command builders.

/// R4: change `line_id`'s contact to `new`.
pub fn change(line_id: &str, new: &str, all: bool) -> Command {
    Command::ChangeContact {
        line_id: line(line_id),
        new_email: email(new),
        apply_to_all_lines: all,
    }
}

/// R3: resend `line_id`'s email.
pub fn resend(line_id: &str) -> Command {
    Command::ResendEmail {
        line_id: line(line_id),
    }
}

/// R5: onboard to `org`.
pub fn onboard(org: &str) -> Command {
    Command::OnboardOrg {
        org_id: OrgId::parse(org).expect("test org id"),
    }
}

/// R10: open a support case without note or attachments.
pub fn support_case(line_id: &str, request_type: SupportRequestType) -> Command {
    Command::OpenSupportCase {
        line_id: line(line_id),
        request_type,
        note: None,
        attachments: Vec::new(),
    }
}

/// R1: place the given order.
pub fn place(order: ValidOrder) -> Command {
    Command::PlaceOrder(order)
}

// ---------------------------------------------------------------------------
// The harness.

/// A stream, folded.
pub struct Given {
    history: Vec<Event>,
    state: OrderState,
}

/// Start a test from a stream of events.
pub fn given(events: impl IntoIterator<Item = Event>) -> Given {
    let history: Vec<Event> = events.into_iter().collect();
    let state = OrderState::from_events(&history);
    Given { history, state }
}

impl Given {
    /// Decide `command` by `actor` (an email or `system`) at `at`.
    pub fn when(self, command: Command, actor: &str, at: DateTime<Utc>) -> When {
        let actor = Actor::parse(actor).expect("test actor");
        let result = decide(&self.state, command, &Context::new(actor, at));
        When {
            history: self.history,
            result,
        }
    }
}

/// The decided outcome, waiting to be checked.
pub struct When {
    history: Vec<Event>,
    result: Result<Vec<Event>, DomainError>,
}

/// A `CommandRefused`, unpacked.
#[derive(Debug)]
pub struct Refused {
    /// What was attempted.
    pub action: RefusedAction,
    /// The line, for line actions.
    pub line_id: Option<LineId>,
    /// The message shown to the user.
    pub reason: String,
    /// For a change: the requested email.
    pub requested_email: Option<Email>,
    /// For a change: whether apply-to-all was chosen.
    pub applied_to_all_lines: bool,
    /// When.
    pub at: DateTime<Utc>,
}

/// The outcome after a check: the new events and the state they lead to.
pub struct Then {
    /// The events decided.
    pub events: Vec<Event>,
    /// The state after given + decided events.
    pub state: OrderState,
}

impl When {
    fn events(self) -> (Vec<Event>, Vec<Event>) {
        match self.result {
            Ok(events) => (self.history, events),
            Err(e) => panic!("expected events, got the error: {e}"),
        }
    }

    /// The decided events must equal `expected`, in order.
    #[track_caller]
    pub fn then_events(self, expected: Vec<Event>) -> Then {
        let (history, events) = self.events();
        assert_eq!(
            events, expected,
            "\n-- decided events (left) differ from the expected ones (right)"
        );
        Then::new(history, events)
    }

    /// The decided events, unchecked (for tests that look at them piecemeal).
    pub fn then_any(self) -> Then {
        let (history, events) = self.events();
        Then::new(history, events)
    }

    /// The command must be refused with `code`: the last decided event is
    /// one `CommandRefused`, and every event before it is a scheduled
    /// catch-up (R12: a refusal changes nothing else).
    #[track_caller]
    pub fn then_refused(self, code: RefusalCode) -> Refused {
        let (_, events) = self.events();
        let (last, before) = events.split_last().expect("no events were decided");
        for e in before {
            assert!(
                e.is_scheduled(),
                "a refused command decided a non-scheduled event: {e:?}"
            );
        }
        match last {
            Event::CommandRefused {
                at,
                action,
                line_id,
                code: actual,
                reason,
                requested_email,
                applied_to_all_lines,
            } => {
                assert_eq!(*actual, code, "refused for another reason: {reason}");
                Refused {
                    action: *action,
                    line_id: line_id.clone(),
                    reason: reason.clone(),
                    requested_email: requested_email.clone(),
                    applied_to_all_lines: *applied_to_all_lines,
                    at: *at,
                }
            }
            other => panic!("expected a refusal ({code:?}), got {other:?}"),
        }
    }

    /// `decide` must fail with an error that `matches`; it is returned.
    #[track_caller]
    pub fn then_error(self, matches: impl FnOnce(&DomainError) -> bool) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected an error, got the events {events:?}"),
            Err(e) => {
                assert!(matches(&e), "unexpected error: {e:?}");
                e
            }
        }
    }
}

impl Then {
    fn new(history: Vec<Event>, events: Vec<Event>) -> Then {
        let state = OrderState::from_events(history.iter().chain(&events));
        Then { events, state }
    }

    /// The line `line_id` of the state after the decided events.
    #[track_caller]
    pub fn line(&self, line_id: &str) -> &provledger_domain::Line {
        self.state
            .order
            .as_ref()
            .and_then(|o| o.line(&line(line_id)))
            .expect("no such line in the state")
    }
}

/// The sample order's id.
pub fn order_id() -> OrderId {
    OrderId::parse(ORDER).expect("test order id")
}

/// `events` followed by every scheduled event due at or before `t`
/// (what `tick --now t` would append).
pub fn until(mut events: Vec<Event>, t: DateTime<Utc>) -> Vec<Event> {
    let state = OrderState::from_events(&events);
    events.extend(provledger_domain::due_events(&state, t));
    events
}

/// The sample order, with everything scheduled up to `t` appended.
pub fn sample_until(t: DateTime<Utc>) -> Vec<Event> {
    until(vec![placed()], t)
}
