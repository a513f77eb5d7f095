//! R1: placing an order, and the validation of the order file.

use chrono::NaiveDate;
use provledger_domain::{
    decide, Actor, Context, DomainError, Email, Event, LineId, LineStatus, OrderRequest,
    OrderState, ValidOrder,
};

use crate::harness::*;

/// Validate and place a request as the CLI does: the events, or the error.
fn place_request(request: &OrderRequest) -> Result<Vec<Event>, DomainError> {
    let order = request.validate()?;
    decide(
        &OrderState::default(),
        place(order),
        &Context::new(Actor::User(email(OLIVIA)), placed_at()),
    )
}

/// The field an `InvalidField` names.
fn invalid_field(request: &OrderRequest) -> (String, String) {
    match place_request(request) {
        Err(e @ DomainError::InvalidField { .. }) => {
            let DomainError::InvalidField { field, .. } = &e else {
                unreachable!()
            };
            (field.clone(), e.to_string())
        }
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn r1_placing_an_order_records_it_and_every_line_awaits_provisioning() {
    let then = given([])
        .when(place(sample_order()), OLIVIA, placed_at())
        .then_events(vec![placed()]);
    let order = then.state.order.as_ref().unwrap();
    assert_eq!(order.lines.len(), 3);
    for l in &order.lines {
        assert_eq!(l.status, LineStatus::AwaitingProvisioningDetails);
        assert_eq!(l.initial_email_sent_at, None);
        assert!(!l.billing_started);
    }
    assert_eq!(then.line("1.2").provisioning_contact, email(ALIAS));
    assert_eq!(then.line("1.3").rsd, late_rsd());
    assert_eq!(then.line("1.1").rsd, rsd());
}

#[test]
fn r1_an_order_needs_per_line_only_an_rsd_and_a_contact_besides_its_identity() {
    // No partner, end customer, partner or distributor contacts, organisation
    // or administrator: the order file's minimum.
    let minimal: OrderRequest = serde_json::from_value(serde_json::json!({
        "order_id": "WO-2",
        "ordering_contact": OLIVIA,
        "lines": [{"line_id": "1", "subscription_id": "Sub1", "offer": "A-WX",
                   "rsd": "2026-12-01", "provisioning_contact": IT}]
    }))
    .unwrap();
    let events = place_request(&minimal).unwrap();
    let [Event::OrderPlaced {
        lines,
        partner_contacts,
        ..
    }] = events.as_slice()
    else {
        panic!("expected one OrderPlaced, got {events:?}");
    };
    assert!(partner_contacts.is_empty());
    assert_eq!(lines[0].rsd, date(2026, 12, 1));
    assert_eq!(lines[0].provisioning_contact, email(IT));

    // Without the RSD or the contact the file is not an order.
    for missing in ["rsd", "provisioning_contact"] {
        let mut value = serde_json::to_value(&minimal).unwrap();
        value["lines"][0].as_object_mut().unwrap().remove(missing);
        let err = serde_json::from_value::<OrderRequest>(value).unwrap_err();
        assert!(err.to_string().contains(missing), "{missing}: {err}");
    }
}

#[test]
fn r1_alias_emails_are_accepted_as_provisioning_contacts() {
    for alias in [
        ALIAS,
        "webex.team@customer.example",
        "IT-Provisioning@Customer.Example",
    ] {
        let mut request = sample_request();
        request.lines[0].provisioning_contact = alias.into();
        let events = place_request(&request).unwrap();
        let Event::OrderPlaced { lines, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(lines[0].provisioning_contact, Email::parse(alias).unwrap());
    }
}

#[test]
fn r1_validation_errors_name_the_field_and_produce_no_events() {
    type Edit = fn(&mut OrderRequest);
    let cases: &[(&str, Edit)] = &[
        ("order_id", |r| r.order_id = "WO 1001".into()),
        ("ordering_contact", |r| r.ordering_contact = "olivia".into()),
        ("partner_contacts[0]", |r| {
            r.partner_contacts[0] = "pat@".into()
        }),
        ("distributor_contacts[0]", |r| {
            r.distributor_contacts[0] = "dana@@distributor.example".into()
        }),
        ("lines", |r| r.lines.clear()),
        ("lines[1].provisioning_contact", |r| {
            r.lines[1].provisioning_contact = "it at customer.example".into()
        }),
        ("lines[2].line_id", |r| r.lines[2].line_id = "1.1".into()),
        ("lines[1].subscription_id", |r| {
            r.lines[1].subscription_id = "Sub100042".into()
        }),
        ("lines[0].rsd", |r| r.lines[0].rsd = "2026-02-30".into()),
        ("lines[0].rsd", |r| r.lines[0].rsd = "01/12/2026".into()),
        ("lines[0].rsd", |r| r.lines[0].rsd = "2026-12-1".into()),
        ("lines[0].rsd", |r| r.lines[0].rsd = "+262142-12-31".into()),
        ("lines[0].rsd", |r| r.lines[0].rsd = "-0001-01-01".into()),
        ("lines[0].offer", |r| r.lines[0].offer = "Flex".into()),
        ("lines[2].offer", |r| r.lines[2].offer = "A-".into()),
        ("partner", |r| r.partner = "Acme\u{7}".into()),
    ];
    for (field, edit) in cases {
        let mut request = sample_request();
        edit(&mut request);
        let (named, message) = invalid_field(&request);
        assert_eq!(&named, field, "{message}");
        assert!(message.contains(field), "{message}");
    }
}

#[test]
fn r1_an_invalid_email_says_what_is_wrong() {
    let mut request = sample_request();
    request.lines[0].provisioning_contact = "it@localhost".into();
    let (_, message) = invalid_field(&request);
    assert!(
        message.contains("lines[0].provisioning_contact"),
        "{message}"
    );
    assert!(message.contains("no dot"), "{message}");
}

#[test]
fn r1_dates_are_read_as_written() {
    let mut request = sample_request();
    request.lines[0].rsd = " 2026-12-31 ".into();
    let order = request.validate().unwrap();
    assert_eq!(
        order.lines[0].rsd,
        NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
    );
}

#[test]
fn r1_an_unvalidated_order_with_a_repeated_line_or_no_line_is_an_error() {
    let mut order = sample_order();
    order.lines[2].line_id = LineId::parse("1.1").unwrap();
    let err = given([])
        .when(place(order), OLIVIA, placed_at())
        .then_error(
            |e| matches!(e, DomainError::InvalidField { field, .. } if field == "lines[2].line_id"),
        );
    assert!(err.to_string().contains("appears twice"), "{err}");

    let empty = ValidOrder {
        lines: Vec::new(),
        ..sample_order()
    };
    given([])
        .when(place(empty), OLIVIA, placed_at())
        .then_error(|e| matches!(e, DomainError::InvalidField { field, .. } if field == "lines"));
}

#[test]
fn r1_a_stream_with_a_repeated_line_id_still_folds_and_schedules() {
    // A hand-made stream (never decided): the schedule must still terminate.
    let mut lines = sample_lines();
    lines[2].line_id = line("1.1");
    let stream = vec![Event::OrderPlaced {
        at: placed_at(),
        order_id: order_id(),
        ordering_contact: email(OLIVIA),
        partner: String::new(),
        end_customer: String::new(),
        partner_contacts: Vec::new(),
        distributor_contacts: Vec::new(),
        lines,
    }];
    // On a thread with a deadline, so a regression fails instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    let end = at(2027, 6, 1, 0, 0);
    std::thread::spawn(move || tx.send(until(stream, end)));
    let events = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("the schedule did not terminate");
    let state = OrderState::from_events(&events);
    assert_eq!(state.order.unwrap().lines.len(), 2);
    // Per line: initial email, escalation, closure.
    assert_eq!(events.len(), 1 + 2 * 3);
}

#[test]
fn r1_an_order_is_placed_once() {
    given([placed()])
        .when(place(sample_order()), OLIVIA, placed_at())
        .then_error(
            |e| matches!(e, DomainError::OrderAlreadyPlaced { order_id } if order_id == ORDER),
        );
}

#[test]
fn r1_commands_need_a_placed_order() {
    given([])
        .when(resend("1.1"), OLIVIA, placed_at())
        .then_error(|e| matches!(e, DomainError::OrderNotPlaced));
}

#[test]
fn r1_an_unknown_field_in_the_order_file_is_an_error() {
    let err = serde_json::from_value::<OrderRequest>(serde_json::json!({
        "order_id": "WO-2", "ordering_contact": OLIVIA, "lines": [], "org": "X"
    }))
    .unwrap_err();
    assert!(err.to_string().contains("org"), "{err}");
}
