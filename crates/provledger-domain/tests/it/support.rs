//! R10 (support cases), R11 (escalation) and R13 (setup started).

use chrono::{DateTime, Duration, Utc};
use provledger_domain::{
    due_events, Attachment, Command, DomainError, Event, OrderState, RefusalCode, RefusedAction,
    SupportRequestType,
};

use crate::harness::*;

fn case_opened(
    case_id: &str,
    line_id: &str,
    request_type: SupportRequestType,
    at: DateTime<Utc>,
) -> Event {
    Event::SupportCaseOpened {
        at,
        case_id: case_id.into(),
        line_id: line(line_id),
        request_type,
        note: None,
        attachments: Vec::new(),
    }
}

fn screenshot() -> Attachment {
    Attachment {
        file_name: "bounce.png".into(),
        size_bytes: 48_213,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
    }
}

fn escalations(events: &[Event]) -> Vec<(String, DateTime<Utc>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::EscalationRaised { at, line_id, .. } => Some((line_id.to_string(), *at)),
            _ => None,
        })
        .collect()
}

#[test]
fn r10_support_cases_before_ponr_are_numbered_per_order() {
    let t = at(2026, 12, 3, 9, 0);
    let then = given(sample_until(t))
        .when(
            support_case("1.1", SupportRequestType::ResendProvisioningEmail),
            OLIVIA,
            t,
        )
        .then_events(vec![case_opened(
            "WO-1001-C1",
            "1.1",
            SupportRequestType::ResendProvisioningEmail,
            t,
        )]);
    assert_eq!(then.state.order.as_ref().unwrap().support_cases, 1);

    let mut stream = sample_until(t);
    stream.extend(then.events);
    let second = Command::OpenSupportCase {
        line_id: line("1.2"),
        request_type: SupportRequestType::ChangeProvisioningContactEmail,
        note: Some("the alias bounces".into()),
        attachments: vec![screenshot()],
    };
    given(stream)
        .when(second, PAT, t + Duration::hours(1))
        .then_events(vec![Event::SupportCaseOpened {
            at: t + Duration::hours(1),
            case_id: "WO-1001-C2".into(),
            line_id: line("1.2"),
            request_type: SupportRequestType::ChangeProvisioningContactEmail,
            note: Some("the alias bounces".into()),
            attachments: vec![screenshot()],
        }]);
}

#[test]
fn r10_a_support_case_after_ponr_is_refused() {
    let t = at(2026, 12, 3, 9, 0);
    let mut stream = sample_until(t);
    stream.push(onboarded("org-contoso", t));
    let refused = given(stream)
        .when(
            support_case("1.1", SupportRequestType::ChangeProvisioningContactEmail),
            OLIVIA,
            t,
        )
        .then_refused(RefusalCode::AfterPonr);
    assert_eq!(refused.action, RefusedAction::OpenSupportCase);
}

#[test]
fn r10_oversized_notes_and_too_many_attachments_are_bad_input() {
    let t = at(2026, 12, 3, 9, 0);
    let long_note = Command::OpenSupportCase {
        line_id: line("1.1"),
        request_type: SupportRequestType::ResendProvisioningEmail,
        note: Some("x".repeat(4001)),
        attachments: Vec::new(),
    };
    given(sample_until(t))
        .when(long_note, OLIVIA, t)
        .then_error(|e| matches!(e, DomainError::InvalidField { field, .. } if field == "note"));
    let many = Command::OpenSupportCase {
        line_id: line("1.1"),
        request_type: SupportRequestType::ResendProvisioningEmail,
        note: None,
        attachments: vec![screenshot(); 21],
    };
    given(sample_until(t))
        .when(many, OLIVIA, t)
        .then_error(|e| matches!(e, DomainError::InvalidField { field, .. } if field == "attach"));
}

#[test]
fn r10_request_types_parse_from_the_cli_spelling() {
    assert_eq!(
        SupportRequestType::parse("resend-provisioning-email").unwrap(),
        SupportRequestType::ResendProvisioningEmail
    );
    assert_eq!(
        SupportRequestType::parse("change_provisioning_contact_email").unwrap(),
        SupportRequestType::ChangeProvisioningContactEmail
    );
    assert_eq!(
        SupportRequestType::ChangeProvisioningContactEmail.label(),
        "Change Provisioning Contact Email"
    );
    let err = SupportRequestType::parse("call-me").unwrap_err();
    assert!(
        err.to_string().contains("resend-provisioning-email"),
        "{err}"
    );
}

#[test]
fn r11_an_escalation_is_raised_one_day_after_the_rsd_if_setup_has_not_started() {
    let state = OrderState::from_events(&[placed()]);
    let day_after = at(2026, 12, 2, 0, 0);
    assert_eq!(
        escalations(&due_events(&state, day_after - Duration::seconds(1))),
        vec![]
    );
    let due = due_events(&state, day_after);
    assert_eq!(
        escalations(&due),
        vec![
            ("1.1".to_string(), day_after),
            ("1.2".to_string(), day_after)
        ]
    );
    let Some(Event::EscalationRaised { reason, .. }) = due.last() else {
        panic!("{due:?}")
    };
    for needle in ["WO-1001", "1.2", "account representative", "Acme Partner"] {
        assert!(reason.contains(needle), "{reason}");
    }
}

#[test]
fn r11_no_escalation_once_setup_has_started() {
    let t = at(2026, 12, 1, 15, 0);
    let then = given(sample_until(t))
        .when(Command::StartSetup, IT, t)
        .then_events(vec![setup_started(t)]);
    let mut stream = sample_until(t);
    stream.extend(then.events);
    let later = due_events(&OrderState::from_events(&stream), at(2027, 6, 1, 0, 0));
    assert_eq!(escalations(&later), vec![]);
    // Closures still happen.
    assert!(later.iter().any(|e| matches!(e, Event::LineClosed { .. })));
}

#[test]
fn r11_at_most_one_escalation_per_line() {
    let stream = sample_until(at(2027, 6, 1, 0, 0));
    assert_eq!(
        escalations(&stream),
        vec![
            ("1.1".to_string(), at(2026, 12, 2, 0, 0)),
            ("1.2".to_string(), at(2026, 12, 2, 0, 0)),
            ("1.3".to_string(), at(2026, 12, 16, 0, 0)),
        ]
    );
}

#[test]
fn r11_no_escalation_after_ponr() {
    let t = at(2026, 12, 1, 12, 0);
    let mut stream = sample_until(t);
    stream.push(onboarded("org-contoso", t));
    let later = due_events(&OrderState::from_events(&stream), at(2027, 6, 1, 0, 0));
    assert_eq!(later, vec![]);
}

#[test]
fn r11_the_escalation_is_caught_up_before_a_later_command() {
    let t = at(2026, 12, 2, 10, 0);
    let then = given(sample_until(rsd_start()))
        .when(resend("1.1"), OLIVIA, t)
        .then_any();
    assert_eq!(
        escalations(&then.events),
        vec![
            ("1.1".to_string(), at(2026, 12, 2, 0, 0)),
            ("1.2".to_string(), at(2026, 12, 2, 0, 0)),
        ]
    );
    assert_eq!(then.events.last(), Some(&resent("1.1", IT, t)));
}

#[test]
fn r13_setup_may_be_started_by_a_user_with_access_or_a_provisioning_contact_only() {
    let t = at(2026, 12, 1, 9, 0);
    for actor in [OLIVIA, PAT, IT, ALIAS] {
        given(sample_until(t))
            .when(Command::StartSetup, actor, t)
            .then_events(vec![setup_started(t)]);
    }
    let refused = given(sample_until(t))
        .when(Command::StartSetup, AUDREY, t)
        .then_refused(RefusalCode::NoAccess);
    assert_eq!(refused.action, RefusedAction::StartSetup);
    assert!(refused.reason.contains(OLIVIA), "{}", refused.reason);

    let mut stream = sample_until(t);
    stream.push(onboarded("org-contoso", t));
    given(stream)
        .when(Command::StartSetup, IT, t)
        .then_refused(RefusalCode::AfterPonr);
}
