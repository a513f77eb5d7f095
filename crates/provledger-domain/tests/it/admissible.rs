//! `admissible` against `decide` and `due_events`: everything the decider
//! and the schedule emit is admissible where they emit it, and events
//! mutated the way a forger would (moved in time, credited to someone
//! without access, altered, repeated, after the Point of No Return) are not.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use provledger_domain::{
    admissible, admit, decide, due_events, evolve, Actor, AdmissionState, Candidate, Command,
    Context, Email, Event, LineId, LineSpec, Offer, OrderId, OrderState, OrgId, SupportRequestType,
    ValidOrder,
};

use crate::harness::{ALIAS, AUDREY, DANA, IT, OLIVIA, PAT};

const POOL: [&str; 6] = [OLIVIA, PAT, DANA, AUDREY, IT, ALIAS];
const OUTSIDER: &str = "mallory@evil.example";

fn email(raw: &str) -> Email {
    Email::parse(raw).unwrap()
}

fn order(lines: usize) -> ValidOrder {
    let offers = ["A-Flex", "A-WX", "A-Flex-3"];
    ValidOrder {
        order_id: OrderId::parse("WO-9").unwrap(),
        ordering_contact: email(OLIVIA),
        partner: "Acme Partner".into(),
        end_customer: "Contoso Ltd".into(),
        partner_contacts: vec![email(PAT)],
        distributor_contacts: vec![],
        lines: (0..lines)
            .map(|i| LineSpec {
                line_id: LineId::parse(&format!("1.{}", i + 1)).unwrap(),
                subscription_id: format!("Sub{}", 700 + i).parse().unwrap(),
                offer: Offer::parse(offers[i % offers.len()]).unwrap(),
                rsd: chrono::NaiveDate::from_ymd_opt(2026, 12, 1 + i as u32).unwrap(),
                provisioning_contact: email(IT),
            })
            .collect(),
    }
}

fn placed_at() -> DateTime<Utc> {
    "2026-11-20T09:00:00Z".parse().unwrap()
}

/// One random step: minutes later, an actor, and a command (or a tick).
fn step() -> impl Strategy<Value = (i64, usize, u8, usize, usize)> {
    (0i64..6000, 0..POOL.len(), 0u8..7, 0usize..3, 0..POOL.len())
}

fn command(kind: u8, line: usize, lines: usize, target: usize) -> Option<Command> {
    let line_id = LineId::parse(&format!("1.{}", line % lines + 1)).unwrap();
    Some(match kind {
        0 | 1 => Command::ChangeContact {
            line_id,
            new_email: email(POOL[target]),
            apply_to_all_lines: target.is_multiple_of(2),
        },
        2 => Command::ResendEmail { line_id },
        3 => Command::OpenSupportCase {
            line_id,
            request_type: SupportRequestType::ResendProvisioningEmail,
            note: None,
            attachments: vec![],
        },
        4 => Command::StartSetup,
        5 => Command::OnboardOrg {
            org_id: OrgId::parse("org-9").unwrap(),
        },
        _ => return None,
    })
}

/// Every event of a random run, each with the state before it and its actor.
fn run(lines: usize, steps: &[(i64, usize, u8, usize, usize)]) -> Vec<(OrderState, Event, String)> {
    let mut state = OrderState::default();
    let mut out = Vec::new();
    let mut push = |state: &mut OrderState, events: Vec<Event>, actor: &str| {
        for event in events {
            let who = if event.is_scheduled() {
                "system"
            } else {
                actor
            };
            out.push((state.clone(), event.clone(), who.to_string()));
            *state = evolve(state.clone(), &event);
        }
    };
    let mut now = placed_at();
    let ctx = Context::new(Actor::User(email(OLIVIA)), now);
    let placed = decide(&state, Command::PlaceOrder(order(lines)), &ctx).unwrap();
    push(&mut state, placed, OLIVIA);
    for (minutes, actor, kind, line, target) in steps {
        now += Duration::minutes(*minutes);
        match command(*kind, *line, lines, *target) {
            None => {
                let due = due_events(&state, now);
                push(&mut state, due, "system");
            }
            Some(command) => {
                let ctx = Context::new(Actor::User(email(POOL[*actor])), now);
                if let Ok(events) = decide(&state, command, &ctx) {
                    push(&mut state, events, POOL[*actor]);
                }
            }
        }
    }
    out
}

/// `event` with its time set to `at` (through the stored payload).
fn moved(event: &Event, at: DateTime<Utc>) -> Event {
    let mut payload = event.to_payload();
    payload["at"] = serde_json::json!(at);
    Event::from_stored(event.event_type(), event.schema_version(), &payload).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn everything_decide_and_the_schedule_emit_is_admissible(
        lines in 1usize..4,
        steps in prop::collection::vec(step(), 0..24),
    ) {
        for (state, event, actor) in run(lines, &steps) {
            prop_assert!(
                admissible(&state, &event, &actor).is_ok(),
                "{event:?} by {actor}: {:?}",
                admissible(&state, &event, &actor)
            );
        }
    }

    #[test]
    fn forged_variants_of_decided_events_are_not_admissible(
        lines in 1usize..4,
        steps in prop::collection::vec(step(), 0..24),
    ) {
        let history = run(lines, &steps);
        for (state, event, actor) in &history {
            // Earlier than the stream's latest event.
            if let Some(latest) = state.last_event_at {
                let early = moved(event, latest - Duration::seconds(1));
                prop_assert!(admissible(state, &early, actor).is_err(), "{early:?}");
            }
            // A scheduled event at a time it was not due, or credited to a user.
            if event.is_scheduled() {
                let late = moved(event, event.at() + Duration::seconds(1));
                prop_assert!(admissible(state, &late, actor).is_err(), "{late:?}");
                prop_assert!(admissible(state, event, OLIVIA).is_err());
            }
            match event {
                Event::ProvisioningContactChanged { old_email, .. } => {
                    prop_assert!(admissible(state, event, OUTSIDER).is_err());
                    prop_assert!(admissible(state, event, "system").is_err());
                    let mut payload = event.to_payload();
                    payload["old_email"] = serde_json::json!(format!("x{old_email}"));
                    let altered = Event::from_stored(event.event_type(), 1, &payload).unwrap();
                    prop_assert!(admissible(state, &altered, actor).is_err());
                }
                Event::ProvisioningEmailResent { .. } | Event::SupportCaseOpened { .. } => {
                    prop_assert!(admissible(state, event, OUTSIDER).is_err());
                }
                Event::OrderPlaced { .. } => {
                    // Placed twice.
                    let after = evolve(state.clone(), event);
                    prop_assert!(admissible(&after, event, actor).is_err());
                }
                _ => {}
            }
        }
        // After the Point of No Return no contact change is admissible.
        if let Some((state, last, _)) = history.last() {
            let end = evolve(state.clone(), last);
            let order = end.order.as_ref().unwrap();
            if order.org_id.is_some() {
                let line = &order.lines[0];
                let forged = Event::ProvisioningContactChanged {
                    at: end.last_event_at.unwrap() + Duration::days(30),
                    line_id: line.line_id.clone(),
                    old_email: line.provisioning_contact.clone(),
                    new_email: email("attacker@evil.example"),
                    applied_to_all_lines: false,
                    email_sent: line.initial_email_sent_at.is_some(),
                };
                prop_assert!(admissible(&end, &forged, OLIVIA).is_err());
            }
        }
    }
}

#[test]
fn streams_are_dispatched_by_prefix() {
    let at: DateTime<Utc> = placed_at();
    let payload = serde_json::json!({"at": at, "clock": "live", "ledger_id": "L-1"});
    let candidate = |stream_id, event_type, position| Candidate {
        position,
        stream_id,
        event_type,
        schema_version: 1,
        payload: &payload,
        actor: OLIVIA,
        occurred_at: at,
    };
    // An order stream that was never placed.
    let state = AdmissionState::empty("order-WO-1").unwrap();
    assert!(admit(&state, &candidate("order-WO-1", "SetupStarted", 1)).is_err());
    // An unknown stream prefix.
    assert!(AdmissionState::empty("mystery-1").is_err());
    // The ledger stream: LedgerCreated, first event only.
    let ledger = AdmissionState::empty("ledger").unwrap();
    let created = admit(&ledger, &candidate("ledger", "LedgerCreated", 1)).unwrap();
    assert!(admit(&created, &candidate("ledger", "LedgerCreated", 2)).is_err());
    assert!(admit(&ledger, &candidate("ledger", "LedgerCreated", 5)).is_err());
    assert!(admit(&ledger, &candidate("ledger", "Other", 1)).is_err());
}
