//! R4: changing a line's provisioning contact, optionally on every line.

use chrono::Duration;
use provledger_domain::{DomainError, Event, LineStatus};

use crate::harness::*;

#[test]
fn r4_a_change_before_the_rsd_just_updates_where_the_email_will_go() {
    let t = at(2026, 11, 25, 12, 0);
    let then = given([placed()])
        .when(change("1.1", NEW, false), OLIVIA, t)
        .then_events(vec![changed("1.1", IT, NEW, t, false, false)]);
    assert_eq!(then.line("1.1").provisioning_contact, email(NEW));
    assert_eq!(then.line("1.1").initial_email_sent_at, None);
    // Only the chosen line changed.
    assert_eq!(then.line("1.3").provisioning_contact, email(IT));
}

#[test]
fn r4_a_change_after_the_initial_email_sends_it_to_the_new_contact() {
    let t = at(2026, 12, 3, 12, 0);
    let then = given(sample_until(t))
        .when(change("1.2", NEW, false), PAT, t)
        .then_events(vec![changed("1.2", ALIAS, NEW, t, false, true)]);
    assert_eq!(then.line("1.2").provisioning_contact, email(NEW));
}

#[test]
fn r4_a_change_at_the_rsd_comes_after_the_initial_email_to_the_old_contact() {
    given([placed()])
        .when(change("1.1", NEW, false), OLIVIA, rsd_start())
        .then_events(vec![
            initial_email("1.1", IT, rsd_start(), 7),
            initial_email("1.2", ALIAS, rsd_start(), 30),
            changed("1.1", IT, NEW, rsd_start(), false, true),
        ]);
}

#[test]
fn r4_apply_to_all_changes_every_line_of_the_order() {
    // 1.1 and 1.2 have had their email (RSD 12-01), 1.3 has not (RSD 12-15).
    let t = at(2026, 12, 5, 9, 0);
    let then = given(sample_until(t))
        .when(change("1.3", NEW, true), DANA, t)
        .then_events(vec![
            changed("1.1", IT, NEW, t, true, true),
            changed("1.2", ALIAS, NEW, t, true, true),
            changed("1.3", IT, NEW, t, true, false),
        ]);
    for l in &then.state.order.as_ref().unwrap().lines {
        assert_eq!(l.provisioning_contact, email(NEW), "line {}", l.line_id);
    }
}

#[test]
fn r4_apply_to_all_skips_lines_already_at_that_email() {
    let t = at(2026, 11, 25, 9, 0);
    // 1.1 and 1.3 are already IT: only 1.2 changes, though 1.1 was chosen.
    let then = given([placed()])
        .when(change("1.1", IT, true), OLIVIA, t)
        .then_events(vec![changed("1.2", ALIAS, IT, t, true, false)]);
    assert_eq!(then.line("1.2").provisioning_contact, email(IT));
}

#[test]
fn r4_changing_to_the_same_email_is_no_change() {
    let err = given([placed()])
        .when(change("1.1", IT, false), OLIVIA, at(2026, 11, 25, 9, 0))
        .then_error(|e| matches!(e, DomainError::NoChange { line_id, email } if line_id == "1.1" && email == IT));
    assert!(err.to_string().contains("already"), "{err}");

    // With apply-to-all, when every line already has it.
    let t = at(2026, 11, 25, 9, 0);
    let mut stream = vec![placed()];
    stream.push(changed("1.2", ALIAS, IT, t, false, false));
    given(stream)
        .when(change("1.2", IT, true), OLIVIA, t)
        .then_error(|e| matches!(e, DomainError::NoChange { .. }));
}

#[test]
fn r4_no_change_after_a_catch_up_writes_nothing() {
    // The catch-up (R2 emails) is part of the decision; an error drops it all.
    given([placed()])
        .when(change("1.1", IT, false), OLIVIA, at(2026, 12, 3, 9, 0))
        .then_error(|e| matches!(e, DomainError::NoChange { .. }));
}

#[test]
fn r4_the_updated_email_shows_on_the_line_and_the_next_resend_uses_it() {
    let t = at(2026, 12, 3, 12, 0);
    let mut stream = sample_until(t);
    stream.push(changed("1.1", IT, NEW, t, false, true));
    let then = given(stream)
        .when(resend("1.1"), OLIVIA, t + Duration::hours(2))
        .then_any();
    assert_eq!(
        then.events,
        vec![resent("1.1", NEW, t + Duration::hours(2))]
    );
    assert_eq!(then.line("1.1").provisioning_contact, email(NEW));
    assert_eq!(
        then.line("1.1").status,
        LineStatus::AwaitingProvisioningDetails
    );
}

#[test]
fn r4_a_change_does_not_reset_the_initial_email() {
    let t = at(2026, 12, 3, 12, 0);
    let then = given(sample_until(t))
        .when(change("1.1", NEW, false), OLIVIA, t)
        .then_any();
    assert_eq!(then.line("1.1").initial_email_sent_at, Some(rsd_start()));
    assert!(matches!(
        then.events[..],
        [Event::ProvisioningContactChanged {
            email_sent: true,
            ..
        }]
    ));
}
