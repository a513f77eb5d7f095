//! R5 (the Point of No Return) and R6 (who has access to an order).

use chrono::{DateTime, Duration, Utc};
use provledger_domain::{
    due_events, next_due, Command, Event, LineStatus, OrderState, RefusalCode, RefusedAction,
    SupportRequestType,
};

use crate::harness::*;

fn onboarded_stream(t: DateTime<Utc>) -> Vec<Event> {
    let mut stream = sample_until(t);
    stream.push(onboarded("org-contoso", t));
    stream
}

/// The three actions R5 and R6 guard, with the action each is recorded as.
fn guarded_commands() -> Vec<(Command, RefusedAction)> {
    vec![
        (change("1.1", NEW, false), RefusedAction::ChangeContact),
        (change("1.2", NEW, true), RefusedAction::ChangeContact),
        (resend("1.1"), RefusedAction::ResendEmail),
        (
            support_case("1.1", SupportRequestType::ResendProvisioningEmail),
            RefusedAction::OpenSupportCase,
        ),
    ]
}

#[test]
fn r5_onboarding_is_the_point_of_no_return_for_every_line() {
    let t = at(2026, 12, 10, 9, 0);
    let then = given(sample_until(t))
        .when(onboard("org-contoso"), OLIVIA, t)
        .then_events(vec![onboarded("org-contoso", t)]);
    let order = then.state.order.as_ref().unwrap();
    assert!(order.past_ponr());
    assert_eq!(order.onboarded_at, Some(t));
    for l in &order.lines {
        assert_eq!(l.status, LineStatus::Onboarded, "line {}", l.line_id);
    }
    // 1.1 closed before PONR: billing had started and stays started.
    assert!(then.line("1.1").billing_started);
    assert!(!then.line("1.2").billing_started);
}

#[test]
fn r5_after_onboarding_resend_change_and_support_case_point_to_admin_webex_com() {
    let t = at(2026, 12, 5, 9, 0);
    for (command, action) in guarded_commands() {
        for actor in [OLIVIA, PAT, DANA] {
            let refused = given(onboarded_stream(t))
                .when(command.clone(), actor, t + Duration::hours(1))
                .then_refused(RefusalCode::AfterPonr);
            assert_eq!(refused.action, action);
            for needle in [
                "admin.webex.com",
                "the provisioning contact or an administrator can complete provisioning",
                "org-contoso",
            ] {
                let reason = refused.reason.to_lowercase();
                assert!(reason.contains(needle), "{}", refused.reason);
            }
        }
    }
}

#[test]
fn r5_an_order_is_onboarded_once() {
    let t = at(2026, 12, 5, 9, 0);
    let refused = given(onboarded_stream(t))
        .when(onboard("org-other"), PAT, t)
        .then_refused(RefusalCode::AlreadyOnboarded);
    assert_eq!(refused.action, RefusedAction::OnboardOrg);
    assert!(refused.reason.contains("org-contoso"), "{}", refused.reason);
}

#[test]
fn r5_nothing_is_scheduled_after_ponr() {
    // Onboarded before any RSD: no email, closure or escalation ever.
    let t = at(2026, 11, 22, 9, 0);
    let stream = vec![placed(), onboarded("org-contoso", t)];
    let state = OrderState::from_events(&stream);
    assert_eq!(next_due(&state), None);
    assert_eq!(due_events(&state, at(2027, 12, 31, 0, 0)), vec![]);
}

#[test]
fn r6_the_ordering_contact_and_listed_partner_and_distributor_contacts_have_access() {
    let t = at(2026, 12, 3, 9, 0);
    for actor in [OLIVIA, PAT, DANA] {
        given(sample_until(t))
            .when(change("1.1", NEW, false), actor, t)
            .then_events(vec![changed("1.1", IT, NEW, t, false, true)]);
        given(sample_until(t))
            .when(resend("1.1"), actor, t)
            .then_events(vec![resent("1.1", IT, t)]);
    }
}

#[test]
fn r6_a_user_without_access_is_told_to_contact_the_ordering_contact() {
    let t = at(2026, 12, 3, 9, 0);
    // The auditor; a partner colleague not listed; the provisioning contact.
    for actor in [AUDREY, "sam@partner.example", IT] {
        let mut commands = guarded_commands();
        commands.push((onboard("org-contoso"), RefusedAction::OnboardOrg));
        for (command, action) in commands {
            let refused = given(sample_until(t))
                .when(command, actor, t)
                .then_refused(RefusalCode::NoAccess);
            assert_eq!(refused.action, action);
            assert!(refused.reason.contains(OLIVIA), "{}", refused.reason);
            assert!(refused.reason.contains(actor), "{}", refused.reason);
            assert!(
                refused.reason.contains("person who placed the order"),
                "{}",
                refused.reason
            );
        }
    }
}

#[test]
fn r6_a_refused_change_records_what_was_asked_for() {
    let t = at(2026, 12, 3, 9, 0);
    let refused = given(sample_until(t))
        .when(change("1.2", NEW, true), AUDREY, t)
        .then_refused(RefusalCode::NoAccess);
    assert_eq!(refused.line_id, Some(line("1.2")));
    assert_eq!(refused.requested_email, Some(email(NEW)));
    assert!(refused.applied_to_all_lines);
    assert_eq!(refused.at, t);
}

#[test]
fn r6_no_access_is_checked_before_ponr() {
    let t = at(2026, 12, 5, 9, 0);
    given(onboarded_stream(t))
        .when(resend("1.1"), AUDREY, t)
        .then_refused(RefusalCode::NoAccess);
}

#[test]
fn r6_the_refusal_is_an_event_that_changes_nothing_else() {
    let t = at(2026, 12, 3, 9, 0);
    let before = OrderState::from_events(&sample_until(t));
    let then = given(sample_until(t))
        .when(change("1.1", NEW, true), AUDREY, t)
        .then_any();
    assert!(then.events.iter().all(Event::is_refusal));
    assert_eq!(then.state.order, before.order);
    assert_eq!(then.state.version, before.version + 1);
}
