//! Property tests: random orders and random command sequences, checked
//! against the invariants of DESIGN.md and a plain model of who may do what.
//!
//! Each case places an order of 1–4 lines (random offers, RSDs and contacts
//! from a small pool of emails, so that access and its absence both happen),
//! then runs a random mix of changes, resends, onboardings, support cases,
//! setup starts and ticks by random actors at non-decreasing times over about
//! two months, applying every decision with `evolve`.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use proptest::prelude::*;
use provledger_domain::{
    decide, due_events, evolve, next_due, Actor, Command, Context, DomainError, Email, Event,
    LineId, LineSpec, Offer, OrderId, OrderState, OrgId, RefusalCode, SupportRequestType,
    ValidOrder,
};

use crate::harness::{ALIAS, AUDREY, DANA, IT, OLIVIA, PAT};

/// Everyone who may act: the ordering contact, a partner and a distributor
/// contact (listed on the order or not), an auditor, and the customer's
/// mailboxes (which are also the provisioning contacts).
const POOL: [&str; 7] = [OLIVIA, PAT, DANA, AUDREY, IT, ALIAS, "ops@customer.example"];
/// Provisioning contacts are drawn from the customer's mailboxes.
const CONTACTS: [&str; 3] = [IT, ALIAS, "ops@customer.example"];
const OFFERS: [&str; 5] = ["A-Flex", "A-Flex-3", "A-WX", "A-SPK", "A-MSG"];
/// A line index that names no line (→ `UnknownLine`).
const UNKNOWN_LINE: usize = 7;

/// The model of R7, independent of `Offer::policy_days`.
fn policy_days(offer: &Offer) -> i64 {
    match offer.name() {
        "A-Flex" | "A-Flex-3" => 7,
        _ => 30,
    }
}

/// The model of R2: 00:00 UTC of the RSD.
fn rsd_start(rsd: NaiveDate) -> DateTime<Utc> {
    rsd.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

/// The model of R11: a day after the RSD's start.
fn escalation_due(rsd: NaiveDate) -> DateTime<Utc> {
    rsd_start(rsd) + Duration::days(1)
}
#[derive(Debug, Clone)]
struct LineGen {
    offer: usize,
    rsd_day: i64,
    contact: usize,
}

#[derive(Debug, Clone)]
enum Step {
    Change {
        line: usize,
        email: usize,
        all: bool,
    },
    Resend {
        line: usize,
    },
    Onboard {
        org: u8,
    },
    Case {
        line: usize,
        change: bool,
    },
    Setup,
    Tick,
}

#[derive(Debug, Clone)]
struct Scenario {
    lines: Vec<LineGen>,
    partner_listed: bool,
    distributor_listed: bool,
    placed_hours: i64,
    /// (minutes after the previous step, actor index — `POOL.len()` is the
    /// system — and the step).
    steps: Vec<(i64, usize, Step)>,
}

fn line_gen() -> impl Strategy<Value = LineGen> {
    (0..OFFERS.len(), -5i64..40, 0..CONTACTS.len()).prop_map(|(offer, rsd_day, contact)| LineGen {
        offer,
        rsd_day,
        contact,
    })
}

fn step() -> impl Strategy<Value = Step> {
    // Line indexes 0..=7: 0..7 wrap onto the order's lines, 7 is unknown.
    prop_oneof![
        4 => (0..=UNKNOWN_LINE, 0..POOL.len(), any::<bool>())
            .prop_map(|(line, email, all)| Step::Change { line, email, all }),
        4 => (0..=UNKNOWN_LINE).prop_map(|line| Step::Resend { line }),
        1 => (0u8..2).prop_map(|org| Step::Onboard { org }),
        2 => (0..=UNKNOWN_LINE, any::<bool>()).prop_map(|(line, change)| Step::Case { line, change }),
        1 => Just(Step::Setup),
        2 => Just(Step::Tick),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let timed_step = (
        prop_oneof![1 => Just(0i64), 4 => 0i64..7200],
        // Mostly the order's own people, who may or may not be listed.
        prop_oneof![3 => 0..3usize, 2 => 0..=POOL.len()],
        step(),
    );
    (
        prop::collection::vec(line_gen(), 1..=4),
        any::<bool>(),
        any::<bool>(),
        0i64..48,
        prop::collection::vec(timed_step, 0..24),
    )
        .prop_map(
            |(lines, partner_listed, distributor_listed, placed_hours, steps)| Scenario {
                lines,
                partner_listed,
                distributor_listed,
                placed_hours,
                steps,
            },
        )
}

fn email(raw: &str) -> Email {
    Email::parse(raw).unwrap()
}

fn base() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

impl Scenario {
    fn order(&self) -> ValidOrder {
        ValidOrder {
            order_id: OrderId::parse("WO-7").unwrap(),
            ordering_contact: email(OLIVIA),
            partner: "Acme Partner".into(),
            end_customer: "Contoso Ltd".into(),
            partner_contacts: if self.partner_listed {
                vec![email(PAT)]
            } else {
                vec![]
            },
            distributor_contacts: if self.distributor_listed {
                vec![email(DANA)]
            } else {
                vec![]
            },
            lines: self
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| LineSpec {
                    line_id: LineId::parse(&format!("1.{}", i + 1)).unwrap(),
                    subscription_id: format!("Sub{}", 100 + i).parse().unwrap(),
                    offer: Offer::parse(OFFERS[l.offer]).unwrap(),
                    rsd: base() + Duration::days(l.rsd_day),
                    provisioning_contact: email(CONTACTS[l.contact]),
                })
                .collect(),
        }
    }

    fn placed_at(&self) -> DateTime<Utc> {
        rsd_start(base()) + Duration::hours(self.placed_hours)
    }

    /// The model of R6: who has access, written independently of the domain.
    fn has_access(&self, actor: &str) -> bool {
        actor == OLIVIA
            || (self.partner_listed && actor == PAT)
            || (self.distributor_listed && actor == DANA)
    }

    fn line_id(&self, index: usize) -> LineId {
        if index == UNKNOWN_LINE {
            LineId::parse("9.9").unwrap()
        } else {
            LineId::parse(&format!("1.{}", index % self.lines.len() + 1)).unwrap()
        }
    }

    fn command(&self, step: &Step) -> Option<Command> {
        Some(match step {
            Step::Change {
                line,
                email: e,
                all,
            } => Command::ChangeContact {
                line_id: self.line_id(*line),
                new_email: email(POOL[*e]),
                apply_to_all_lines: *all,
            },
            Step::Resend { line } => Command::ResendEmail {
                line_id: self.line_id(*line),
            },
            Step::Onboard { org } => Command::OnboardOrg {
                org_id: OrgId::parse(&format!("org-{org}")).unwrap(),
            },
            Step::Case { line, change } => Command::OpenSupportCase {
                line_id: self.line_id(*line),
                request_type: if *change {
                    SupportRequestType::ChangeProvisioningContactEmail
                } else {
                    SupportRequestType::ResendProvisioningEmail
                },
                note: None,
                attachments: Vec::new(),
            },
            Step::Setup => Command::StartSetup,
            Step::Tick => return None,
        })
    }
}

/// What the model expects of one command, given the caught-up state.
#[derive(Debug, PartialEq)]
enum Expect {
    UserRequired,
    UnknownLine,
    NoChange,
    Refused(RefusalCode),
    Accepted,
}

fn expect(s: &Scenario, caught: &OrderState, actor: Option<&str>, command: &Command) -> Expect {
    let order = caught.order.as_ref().unwrap();
    let Some(actor) = actor else {
        return Expect::UserRequired;
    };
    let line_of = |id: &LineId| order.lines.iter().find(|l| &l.line_id == id);
    let ponr = order.org_id.is_some();
    let access = s.has_access(actor);
    match command {
        Command::ChangeContact {
            line_id,
            new_email,
            apply_to_all_lines,
        } => {
            if line_of(line_id).is_none() {
                Expect::UnknownLine
            } else if !access {
                Expect::Refused(RefusalCode::NoAccess)
            } else if ponr {
                Expect::Refused(RefusalCode::AfterPonr)
            } else if order
                .lines
                .iter()
                .filter(|l| *apply_to_all_lines || &l.line_id == line_id)
                .all(|l| &l.provisioning_contact == new_email)
            {
                Expect::NoChange
            } else {
                Expect::Accepted
            }
        }
        Command::ResendEmail { line_id } => match line_of(line_id) {
            None => Expect::UnknownLine,
            Some(_) if !access => Expect::Refused(RefusalCode::NoAccess),
            Some(_) if ponr => Expect::Refused(RefusalCode::AfterPonr),
            Some(l) if l.initial_email_sent_at.is_none() => {
                Expect::Refused(RefusalCode::InitialEmailNotSent)
            }
            Some(_) => Expect::Accepted,
        },
        Command::OpenSupportCase { line_id, .. } => match line_of(line_id) {
            None => Expect::UnknownLine,
            Some(_) if !access => Expect::Refused(RefusalCode::NoAccess),
            Some(_) if ponr => Expect::Refused(RefusalCode::AfterPonr),
            Some(_) => Expect::Accepted,
        },
        Command::OnboardOrg { .. } if !access => Expect::Refused(RefusalCode::NoAccess),
        Command::OnboardOrg { .. } if ponr => Expect::Refused(RefusalCode::AlreadyOnboarded),
        Command::OnboardOrg { .. } => Expect::Accepted,
        Command::StartSetup => {
            let contact = order
                .lines
                .iter()
                .any(|l| l.provisioning_contact.as_str() == actor);
            if !access && !contact {
                Expect::Refused(RefusalCode::NoAccess)
            } else if ponr {
                Expect::Refused(RefusalCode::AfterPonr)
            } else {
                Expect::Accepted
            }
        }
        Command::PlaceOrder(_) | Command::ResolveSupportCase { .. } => {
            unreachable!("not generated")
        }
    }
}

fn observed(result: &Result<Vec<Event>, DomainError>) -> Expect {
    match result {
        Err(DomainError::UserRequired { .. }) => Expect::UserRequired,
        Err(DomainError::UnknownLine { .. }) => Expect::UnknownLine,
        Err(DomainError::NoChange { .. }) => Expect::NoChange,
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(events) => match events.last() {
            Some(Event::CommandRefused { code, .. }) => Expect::Refused(*code),
            _ => Expect::Accepted,
        },
    }
}

/// A run of a scenario: the stream, its state, and the time up to which
/// everything due has been appended (the last command or tick that appended;
/// `None` if there was none: placing an order catches nothing up).
struct Run {
    stream: Vec<Event>,
    state: OrderState,
    caught_up: Option<DateTime<Utc>>,
}

/// The whole stream of one scenario, checking each step on the way.
fn run(s: &Scenario) -> Result<Run, TestCaseError> {
    let order = s.order();
    let placed_at = s.placed_at();
    let ctx = Context::new(Actor::User(email(OLIVIA)), placed_at);
    let mut stream = decide(&OrderState::default(), Command::PlaceOrder(order), &ctx).unwrap();
    let mut state = OrderState::from_events(&stream);
    let mut t = placed_at;
    let mut caught_up = None;
    for (minutes, actor_index, step) in &s.steps {
        t += Duration::minutes(*minutes);
        let actor = POOL.get(*actor_index).copied();
        let decided = match s.command(step) {
            None => {
                // `tick`: only what is due.
                let due = due_events(&state, t);
                prop_assert!(due.iter().all(Event::is_scheduled));
                due
            }
            Some(command) => {
                let ctx = Context::new(actor.map_or(Actor::System, |a| Actor::User(email(a))), t);
                let result = decide(&state, command.clone(), &ctx);
                // decide is a function: the same input decides the same.
                prop_assert_eq!(&result, &decide(&state, command.clone(), &ctx));
                let caught = due_events(&state, t).iter().fold(state.clone(), evolve);
                prop_assert_eq!(
                    observed(&result),
                    expect(s, &caught, actor, &command),
                    "{:?} by {:?} at {}",
                    command,
                    actor,
                    t
                );
                let Ok(events) = result else { continue };
                check_command_events(&state, t, &caught, &command, &events)?;
                events
            }
        };
        caught_up = Some(t);
        for event in decided {
            prop_assert!(event.at() <= t, "{event:?} is after its command at {t}");
            check_scheduled_event(&state, &event)?;
            state = evolve(state, &event);
            stream.push(event);
        }
    }
    Ok(Run {
        stream,
        state,
        caught_up,
    })
}

/// The command's own events (after the catch-up) agree with the rules.
fn check_command_events(
    before: &OrderState,
    at: DateTime<Utc>,
    caught: &OrderState,
    command: &Command,
    events: &[Event],
) -> Result<(), TestCaseError> {
    // The catch-up comes first, then the command's events, none scheduled.
    let first_own = events
        .iter()
        .position(|e| !e.is_scheduled())
        .unwrap_or(events.len());
    prop_assert!(events[first_own..].iter().all(|e| !e.is_scheduled()));
    prop_assert!(
        first_own < events.len(),
        "a command decided no event of its own"
    );
    let own = &events[first_own..];
    // The catch-up is exactly what was due.
    prop_assert_eq!(&events[..first_own], &due_events(before, at)[..]);
    for event in own {
        if let Event::CommandRefused {
            code: RefusalCode::NoAccess,
            reason,
            ..
        } = event
        {
            // R6: the answer names the person who placed the order.
            prop_assert!(reason.contains(OLIVIA), "{reason}");
        }
    }
    if let Command::ChangeContact {
        new_email,
        apply_to_all_lines: true,
        ..
    } = command
    {
        if !own[0].is_refusal() {
            // R4: apply-to-all leaves every line with the new email.
            let after = own.iter().fold(caught.clone(), evolve);
            for line in &after.order.as_ref().unwrap().lines {
                prop_assert_eq!(&line.provisioning_contact, new_email);
            }
        }
    }
    Ok(())
}

/// A scheduled event happens exactly when the rules say it is due.
fn check_scheduled_event(before: &OrderState, event: &Event) -> Result<(), TestCaseError> {
    let order = before.order.as_ref().unwrap();
    let line_of = |id: &LineId| order.line(id).unwrap();
    match event {
        Event::InitialEmailSent {
            at,
            line_id,
            to,
            closes_at,
            ..
        } => {
            let line = line_of(line_id);
            // R2: at the RSD's start (or the placement, if later), to the
            // current contact; R7: the window starts then.
            prop_assert_eq!(*at, rsd_start(line.rsd).max(order.placed_at));
            prop_assert_eq!(to, &line.provisioning_contact);
            prop_assert_eq!(*closes_at, *at + Duration::days(policy_days(&line.offer)));
            prop_assert!(line.initial_email_sent_at.is_none());
        }
        Event::LineClosed {
            at,
            line_id,
            policy_days: days,
            ..
        } => {
            // R7: exactly at the end of the window, once.
            let line = line_of(line_id);
            let sent = line.initial_email_sent_at.expect("closed before its email");
            prop_assert_eq!(*days, policy_days(&line.offer));
            prop_assert_eq!(*at, sent + Duration::days(*days));
            prop_assert!(!line.billing_started);
        }
        Event::EscalationRaised { at, line_id, .. } => {
            // R11: one day after the RSD (or at placement), once, not after setup.
            let line = line_of(line_id);
            prop_assert_eq!(*at, escalation_due(line.rsd).max(order.placed_at));
            prop_assert!(line.escalated_at.is_none());
            prop_assert!(order.setup_started_at.is_none());
        }
        _ => {}
    }
    if event.is_scheduled() {
        prop_assert!(!order.past_ponr(), "{event:?} scheduled after PONR");
    }
    Ok(())
}

/// Invariants of a whole stream and its folded state.
fn check_stream(run: &Run) -> Result<(), TestCaseError> {
    let Run {
        stream,
        state,
        caught_up,
    } = run;
    // JSON round trip of every event, as stored.
    for event in stream {
        let payload = event.to_payload();
        let decoded = Event::from_stored(event.event_type(), event.schema_version(), &payload);
        prop_assert_eq!(decoded.as_ref(), Ok(event));
        // The same from the stored text, parsed once (the read models' way).
        let text = serde_json::to_string(&payload).expect("a payload encodes");
        let decoded = Event::from_stored_json(event.event_type(), event.schema_version(), &text);
        prop_assert_eq!(decoded.as_ref(), Ok(event));
    }

    // Folding is deterministic and equals the incremental state.
    let folded = OrderState::from_events(stream);
    prop_assert_eq!(&folded, &OrderState::from_events(stream));
    prop_assert_eq!(&folded, state);
    prop_assert_eq!(folded.version, stream.len() as u64);

    // Business time never goes backwards.
    for pair in stream.windows(2) {
        prop_assert!(
            pair[0].at() <= pair[1].at(),
            "{:?} then {:?}",
            pair[0],
            pair[1]
        );
    }

    // After PONR: no change, resend, support case or scheduled event.
    if let Some(ponr) = stream
        .iter()
        .position(|e| matches!(e, Event::OrgOnboarded { .. }))
    {
        for event in &stream[ponr + 1..] {
            prop_assert!(
                !matches!(
                    event,
                    Event::ProvisioningContactChanged { .. }
                        | Event::ProvisioningEmailResent { .. }
                        | Event::SupportCaseOpened { .. }
                        | Event::OrgOnboarded { .. }
                ) && !event.is_scheduled(),
                "{event:?} after PONR"
            );
        }
    }

    // R7 / R8 on the final state.
    let order = state.order.as_ref().unwrap();
    let last = state.last_event_at.unwrap();
    // Everything due by then has been appended (`None`: nothing guaranteed).
    let done = |t: DateTime<Utc>| caught_up.is_some_and(|c| t <= c);
    let before_ponr = |t: DateTime<Utc>| order.onboarded_at.is_none_or(|o| t <= o);
    for line in &order.lines {
        let window_end = line
            .initial_email_sent_at
            .map(|sent| sent + Duration::days(policy_days(&line.offer)));
        if line.status == provledger_domain::LineStatus::Closed {
            // Closed only once its window has elapsed.
            let end = window_end.expect("closed without an initial email");
            prop_assert!(end <= last && line.closes_at == Some(end));
            prop_assert!(done(end));
            prop_assert!(line.billing_started && line.provisioning_pending());
        }
        if let Some(end) = window_end {
            if done(end) && before_ponr(end) {
                prop_assert!(line.billing_started, "line {} not closed", line.line_id);
                prop_assert!(
                    line.status == provledger_domain::LineStatus::Closed || order.past_ponr()
                );
            }
        }
        // R2: every email due before PONR and by the last event went out.
        let email_due = rsd_start(line.rsd).max(order.placed_at);
        if done(email_due) && before_ponr(email_due) {
            prop_assert_eq!(line.initial_email_sent_at, Some(email_due));
        } else {
            prop_assert_eq!(line.initial_email_sent_at, None);
        }
        // R11: escalated iff due by the last event, before PONR and setup.
        let escalation = escalation_due(line.rsd).max(order.placed_at);
        let setup_before = order.setup_started_at.is_some_and(|s| s < escalation);
        let should = done(escalation) && before_ponr(escalation) && !setup_before;
        prop_assert_eq!(line.escalated_at.is_some(), should, "line {}", line.line_id);
    }

    // What `next_due` announces is what `due_events` then yields.
    match next_due(state) {
        Some(t) => {
            prop_assert!(t >= last);
            let due = due_events(state, t);
            prop_assert!(!due.is_empty() && due[0].at() == t);
            prop_assert!(due_events(state, t - Duration::nanoseconds(1)).is_empty());
        }
        None => {
            let far = last + Duration::days(3650);
            prop_assert!(due_events(state, far).is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_command_sequences_keep_the_ledger_s_invariants(s in scenario()) {
        check_stream(&run(&s)?)?;
    }

    #[test]
    fn a_tick_far_in_the_future_then_replay_keeps_the_invariants(s in scenario()) {
        // The same run, then everything due two months later.
        let mut run = run(&s)?;
        let later = run.state.last_event_at.unwrap() + Duration::days(60);
        for event in due_events(&run.state, later) {
            check_scheduled_event(&run.state, &event)?;
            run.state = evolve(run.state, &event);
            run.stream.push(event);
        }
        run.caught_up = Some(later);
        check_stream(&run)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_accepted_email_is_stored_in_a_form_that_parses_to_itself(
        local in "[a-zA-Z0-9+_]{1,10}(\\.[a-zA-Z0-9]{1,4})?",
        labels in prop::collection::vec("[a-zA-Z0-9İÅßK\u{212A}-]{1,8}", 2..4),
    ) {
        let raw = format!("{local}@{}", labels.join("."));
        if let Ok(parsed) = Email::parse(&raw) {
            prop_assert_eq!(Email::parse(parsed.as_str()), Ok(parsed.clone()));
            let json = serde_json::to_value(&parsed).unwrap();
            prop_assert_eq!(serde_json::from_value::<Email>(json).unwrap(), parsed);
        }
    }

    #[test]
    fn parsing_any_text_as_an_email_or_an_offer_never_panics(raw in "\\PC{0,80}") {
        if let Ok(e) = Email::parse(&raw) {
            prop_assert_eq!(Email::parse(e.as_str()), Ok(e.clone()));
        }
        if let Ok(o) = Offer::parse(&raw) {
            prop_assert_eq!(Offer::parse(o.name()), Ok(o.clone()));
        }
    }
}
