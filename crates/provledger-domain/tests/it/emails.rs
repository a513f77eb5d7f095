//! R2 (the initial provisioning email) and R3 (resending it).

use chrono::{DateTime, Duration, Utc};
use provledger_domain::{
    decide, due_events, next_due, Actor, Context, Event, LineSpec, Offer, OrderState, RefusalCode,
    RefusedAction, PROVISIONING_SENDER,
};

use crate::harness::*;

#[test]
fn r2_the_initial_email_goes_out_at_midnight_utc_of_the_rsd_from_webex_comm() {
    let state = OrderState::from_events(&[placed()]);
    assert_eq!(next_due(&state), Some(rsd_start()));
    assert_eq!(
        due_events(&state, rsd_start() - Duration::seconds(1)),
        vec![]
    );
    let due = due_events(&state, rsd_start());
    assert_eq!(due, rsd_emails());
    for event in &due {
        let Event::InitialEmailSent { sender, at, .. } = event else {
            panic!("{event:?}")
        };
        assert_eq!(sender, "webex_comm@webex.com");
        assert_eq!(PROVISIONING_SENDER, "webex_comm@webex.com");
        assert_eq!(*at, at_rsd());
    }
}

fn at_rsd() -> DateTime<Utc> {
    at(2026, 12, 1, 0, 0)
}

#[test]
fn r2_the_initial_email_is_caught_up_before_a_later_command() {
    let then = given([placed()])
        .when(resend("1.1"), OLIVIA, at(2026, 12, 1, 10, 0))
        .then_events(vec![
            initial_email("1.1", IT, rsd_start(), 7),
            initial_email("1.2", ALIAS, rsd_start(), 30),
            resent("1.1", IT, at(2026, 12, 1, 10, 0)),
        ]);
    assert_eq!(then.line("1.1").initial_email_sent_at, Some(rsd_start()));
    assert_eq!(then.line("1.1").resend_count, 1);
    // Line 1.3's RSD is later: nothing for it yet.
    assert_eq!(then.line("1.3").initial_email_sent_at, None);
}

#[test]
fn r2_the_initial_email_goes_to_the_contact_current_on_the_rsd() {
    let change_at = at(2026, 11, 25, 12, 0);
    let then = given([placed()])
        .when(change("1.1", NEW, false), PAT, change_at)
        .then_any();
    let stream: Vec<Event> = [placed()].into_iter().chain(then.events).collect();
    let due = due_events(&OrderState::from_events(&stream), rsd_start());
    assert_eq!(due[0], initial_email("1.1", NEW, rsd_start(), 7));
}

#[test]
fn r2_an_order_placed_after_its_rsd_gets_its_email_at_placement() {
    let mut order = sample_order();
    order.lines.truncate(1);
    order.lines[0].rsd = date(2026, 11, 1);
    let placed_late = at(2026, 11, 20, 9, 30);
    let state = OrderState::from_events(&[placed_order(order, placed_late)]);
    let due = due_events(&state, placed_late);
    // The R7 window runs from the email actually sent.
    assert_eq!(due[0], initial_email("1.1", IT, placed_late, 7));
}

#[test]
fn r2_the_schedule_never_panics_on_the_last_representable_date() {
    let mut order = sample_order();
    order.lines = vec![LineSpec {
        rsd: chrono::NaiveDate::MAX,
        offer: Offer::AWx,
        ..sample_lines()[0].clone()
    }];
    let stream = vec![placed_order(order, placed_at())];
    let state = OrderState::from_events(&stream);
    assert!(next_due(&state).is_some());
    let due = due_events(&state, DateTime::<Utc>::MAX_UTC);
    assert_eq!(due.len(), 3, "{due:?}");
    let ctx = Context::new(Actor::User(email(OLIVIA)), DateTime::<Utc>::MAX_UTC);
    assert!(decide(&state, resend("1.1"), &ctx).is_ok());
}

#[test]
fn r3_a_user_with_access_may_resend_after_the_rsd() {
    let t = at(2026, 12, 5, 9, 0);
    let then = given(sample_until(t))
        .when(resend("1.2"), DANA, t)
        .then_events(vec![resent("1.2", ALIAS, t)]);
    assert_eq!(then.line("1.2").resend_count, 1);
}

#[test]
fn r3_resend_goes_to_the_current_contact() {
    let t = at(2026, 12, 5, 9, 0);
    let mut stream = sample_until(t);
    stream.push(changed("1.1", IT, NEW, t, false, true));
    given(stream)
        .when(resend("1.1"), OLIVIA, t + Duration::hours(1))
        .then_events(vec![resent("1.1", NEW, t + Duration::hours(1))]);
}

#[test]
fn r3_resend_is_allowed_after_the_line_closed() {
    let t = at(2026, 12, 10, 9, 0);
    let then = given(sample_until(t))
        .when(resend("1.1"), PAT, t)
        .then_events(vec![resent("1.1", IT, t)]);
    assert_eq!(then.line("1.1").closes_at, Some(at(2026, 12, 8, 0, 0)));
}

#[test]
fn r3_resend_before_the_initial_email_is_refused_saying_it_will_be_sent_on_the_rsd() {
    let refused = given([placed()])
        .when(resend("1.1"), OLIVIA, at(2026, 11, 25, 9, 0))
        .then_refused(RefusalCode::InitialEmailNotSent);
    assert_eq!(refused.action, RefusedAction::ResendEmail);
    assert_eq!(refused.line_id, Some(line("1.1")));
    assert!(
        refused.reason.contains("will be sent"),
        "{}",
        refused.reason
    );
    assert!(refused.reason.contains("2026-12-01"), "{}", refused.reason);
    assert!(refused.reason.contains(IT), "{}", refused.reason);

    // Line 1.3 after the other lines' RSD: caught up, then refused for 1.3 alone.
    let refused = given([placed()])
        .when(resend("1.3"), OLIVIA, at(2026, 12, 5, 9, 0))
        .then_refused(RefusalCode::InitialEmailNotSent);
    assert!(refused.reason.contains("2026-12-15"), "{}", refused.reason);
}

#[test]
fn r3_resend_after_ponr_is_refused() {
    let t = at(2026, 12, 5, 9, 0);
    let mut stream = sample_until(t);
    stream.push(onboarded("org-contoso", t));
    let refused = given(stream)
        .when(resend("1.1"), OLIVIA, t + Duration::minutes(5))
        .then_refused(RefusalCode::AfterPonr);
    assert_eq!(refused.action, RefusedAction::ResendEmail);
}
