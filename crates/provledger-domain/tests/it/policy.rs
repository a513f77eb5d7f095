//! R7 (the policy window and closure) and R8 (a closed line is still pending).

use chrono::{DateTime, Duration, Utc};
use provledger_domain::{due_events, Event, LineStatus, Offer, OrderState, RefusalCode};

use crate::harness::*;

/// A one-line order with `offer`, RSD 2026-12-01.
fn one_line(offer: &str) -> Vec<Event> {
    let mut order = sample_order();
    order.lines.truncate(1);
    order.lines[0].offer = Offer::parse(offer).unwrap();
    vec![placed_order(order, placed_at())]
}

/// When line 1.1 closes in `stream` plus everything scheduled after it.
fn closure_of_1_1(stream: Vec<Event>) -> Option<(DateTime<Utc>, i64)> {
    let state = OrderState::from_events(&stream);
    due_events(&state, at(2027, 12, 31, 0, 0))
        .into_iter()
        .find_map(|e| match e {
            Event::LineClosed {
                at,
                line_id,
                policy_days,
                billing_started,
            } if line_id == line("1.1") => {
                assert!(billing_started);
                Some((at, policy_days))
            }
            _ => None,
        })
}

#[test]
fn r7_a_flex_lines_close_7_days_after_the_initial_email_other_offers_after_30() {
    for (offer, days) in [
        ("A-Flex", 7),
        ("A-Flex-3", 7),
        ("A-WX", 30),
        ("A-SPK", 30),
        ("A-MSG", 30),
    ] {
        let (closed_at, policy_days) = closure_of_1_1(one_line(offer)).expect(offer);
        assert_eq!(closed_at, rsd_start() + Duration::days(days), "{offer}");
        assert_eq!(policy_days, days, "{offer}");
    }
}

#[test]
fn r7_the_line_closes_exactly_when_the_window_ends() {
    let state = OrderState::from_events(&[placed()]);
    let window_end = at(2026, 12, 8, 0, 0);
    let is_closure = |e: &Event| matches!(e, Event::LineClosed { .. });
    assert!(!due_events(&state, window_end - Duration::seconds(1))
        .iter()
        .any(is_closure));
    let due = due_events(&state, window_end);
    assert_eq!(due.last(), Some(&closed("1.1", window_end, 7)));
}

#[test]
fn r7_a_resend_does_not_extend_the_window() {
    let t = at(2026, 12, 6, 9, 0);
    let mut stream = sample_until(t);
    stream.push(resent("1.1", IT, t));
    assert_eq!(closure_of_1_1(stream), Some((at(2026, 12, 8, 0, 0), 7)));
}

#[test]
fn r7_a_contact_change_does_not_extend_the_window() {
    let t = at(2026, 12, 6, 9, 0);
    let mut stream = sample_until(t);
    stream.push(changed("1.1", IT, NEW, t, true, true));
    stream.push(changed("1.2", ALIAS, NEW, t, true, true));
    assert_eq!(closure_of_1_1(stream), Some((at(2026, 12, 8, 0, 0), 7)));
}

#[test]
fn r7_the_closure_is_caught_up_before_a_later_command() {
    let t = at(2026, 12, 9, 9, 0);
    let then = given(sample_until(at(2026, 12, 7, 0, 0)))
        .when(resend("1.2"), OLIVIA, t)
        .then_events(vec![
            closed("1.1", at(2026, 12, 8, 0, 0), 7),
            resent("1.2", ALIAS, t),
        ]);
    assert_eq!(then.line("1.1").status, LineStatus::Closed);
}

#[test]
fn r7_a_line_closes_once() {
    let stream = sample_until(at(2027, 6, 1, 0, 0));
    let closures = stream
        .iter()
        .filter(|e| matches!(e, Event::LineClosed { .. }))
        .count();
    assert_eq!(closures, 3);
    assert_eq!(
        due_events(&OrderState::from_events(&stream), at(2028, 1, 1, 0, 0)),
        vec![]
    );
}

#[test]
fn r8_a_closed_line_shows_billing_started_and_provisioning_pending() {
    let then = given(sample_until(at(2026, 12, 9, 0, 0)))
        .when(resend("1.2"), PAT, at(2026, 12, 9, 0, 0))
        .then_any();
    let closed = then.line("1.1");
    assert_eq!(closed.status, LineStatus::Closed);
    assert_eq!(closed.status.label(), "Closed");
    assert!(closed.billing_started);
    assert!(closed.provisioning_pending());
    assert_eq!(closed.closes_at, Some(at(2026, 12, 8, 0, 0)));
    // 1.2 (A-WX) is still in its window.
    let open = then.line("1.2");
    assert_eq!(open.status, LineStatus::AwaitingProvisioningDetails);
    assert!(!open.billing_started);
    assert_eq!(open.closes_at, Some(at(2026, 12, 31, 0, 0)));
}

#[test]
fn r8_a_closed_line_can_still_be_changed_and_resent_before_ponr() {
    let t = at(2026, 12, 10, 9, 0);
    given(sample_until(t))
        .when(change("1.1", NEW, false), OLIVIA, t)
        .then_events(vec![changed("1.1", IT, NEW, t, false, true)]);
    given(sample_until(t))
        .when(resend("1.1"), DANA, t)
        .then_events(vec![resent("1.1", IT, t)]);

    let mut stream = sample_until(t);
    stream.push(onboarded("org-contoso", t));
    given(stream)
        .when(resend("1.1"), OLIVIA, t)
        .then_refused(RefusalCode::AfterPonr);
}

#[test]
fn r8_a_closed_line_that_is_onboarded_keeps_billing() {
    let t = at(2026, 12, 10, 9, 0);
    let then = given(sample_until(t))
        .when(onboard("org-contoso"), OLIVIA, t)
        .then_any();
    assert_eq!(then.line("1.1").status, LineStatus::Onboarded);
    assert!(then.line("1.1").billing_started);
    assert!(then.line("1.1").provisioning_pending());
}
