//! R12: refusals are recorded, bad input is an error that writes nothing, and
//! every event survives its stored JSON form.

use chrono::Duration;
use provledger_domain::{
    Attachment, CallingSettings, CaseOutcome, Command, DecodeError, DomainError, Email, Event,
    LineSpec, MeetingSettings, Offer, OrderId, OrderState, OrgEvent, OrgId, OrgKind, RefusalCode,
    RefusedAction, ReservationEvent, Subdomain, SubscriptionId, SupportRequestType, WhoSetsUp,
    EVENT_TYPES, ORG_EVENT_TYPES, RESERVATION_EVENT_TYPES, SCHEMA_VERSION,
};

use crate::harness::*;

/// One event of every type, optional fields filled in where there are any.
pub fn one_of_each() -> Vec<Event> {
    let t = at(2026, 12, 3, 9, 30);
    let mut lines: Vec<LineSpec> = sample_lines();
    lines[2].offer = Offer::parse("A-MSG").unwrap();
    lines[1].offer = Offer::parse("A-Flex-3").unwrap();
    vec![
        placed_order(
            provledger_domain::ValidOrder {
                lines,
                ..sample_order()
            },
            placed_at(),
        ),
        initial_email("1.1", IT, rsd_start(), 7),
        resent("1.1", IT, t),
        changed("1.2", ALIAS, NEW, t, true, true),
        onboarded("org-contoso", t),
        closed("1.1", at(2026, 12, 8, 0, 0), 7),
        Event::EscalationRaised {
            at: at(2026, 12, 2, 0, 0),
            line_id: line("1.1"),
            reason: "setup had not started".into(),
        },
        Event::SupportCaseOpened {
            at: t,
            case_id: "WO-1001-C1".into(),
            line_id: line("1.1"),
            request_type: SupportRequestType::ChangeProvisioningContactEmail,
            note: Some("bounces — « quoted » \"text\"\nline two".into()),
            attachments: vec![Attachment {
                file_name: "screen shot.png".into(),
                size_bytes: u64::MAX,
                sha256: "ab".repeat(32),
            }],
        },
        Event::SupportCaseResolved {
            at: t,
            case_id: "WO-1001-C1".into(),
            line_id: line("1.1"),
            outcome: CaseOutcome::ContactChanged,
            note: None,
        },
        setup_started(t + Duration::nanoseconds(123_456_789)),
        Event::CommandRefused {
            at: t,
            action: RefusedAction::ChangeContact,
            line_id: Some(line("1.2")),
            code: RefusalCode::NoAccess,
            reason: "no access".into(),
            requested_email: Some(email(NEW)),
            applied_to_all_lines: true,
        },
        Event::CommandRefused {
            at: t,
            action: RefusedAction::OnboardOrg,
            line_id: None,
            code: RefusalCode::AlreadyOnboarded,
            reason: "already".into(),
            requested_email: None,
            applied_to_all_lines: false,
        },
        Event::SupportCaseOpened {
            at: t,
            case_id: "WO-1001-C2".into(),
            line_id: line("1.1"),
            request_type: SupportRequestType::ResendProvisioningEmail,
            note: None,
            attachments: Vec::new(),
        },
        Event::SetupHandedOver {
            at: t,
            to: email("sam@partner.example"),
        },
        Event::SetupCompleted {
            at: t,
            completed_by: email(PAT),
            who_sets_up: WhoSetsUp::Customer,
            partner_org_id: OrgId::parse("PORG-WO-1001").unwrap(),
            partner_org_created: false,
            customer_org_id: OrgId::parse("ORG-WO-1001").unwrap(),
            customer_org_created: true,
            customer_admin_email: email("Admin@Contoso.example"),
        },
        Event::ServicesConfigured {
            at: t,
            org_id: OrgId::parse("ORG-WO-1001").unwrap(),
            calling: Some(CallingSettings {
                country: "PL".into(),
                location: "Kraków — « HQ »".into(),
            }),
            meeting: Some(MeetingSettings {
                language: "pl".into(),
                recording: false,
            }),
            subdomain: Some(Subdomain::parse("contoso-01").unwrap()),
        },
        Event::ServicesConfigured {
            at: t,
            org_id: OrgId::parse("ORG-WO-1001").unwrap(),
            calling: None,
            meeting: None,
            subdomain: None,
        },
        Event::LineProvisioned {
            at: t,
            line_id: line("1.3"),
            org_id: OrgId::parse("ORG-WO-1001").unwrap(),
            billing_started: true,
        },
        Event::CommandRefused {
            at: t,
            action: RefusedAction::CompleteSetup,
            line_id: None,
            code: RefusalCode::EmailTaken,
            reason: "taken".into(),
            requested_email: Some(email("admin@contoso.example")),
            applied_to_all_lines: false,
        },
    ]
}

/// One organisation and one reservation event of every type.
fn org_and_reservation_events() -> (Vec<OrgEvent>, Vec<ReservationEvent>) {
    let t = at(2026, 12, 3, 9, 30);
    let order_id = OrderId::parse(ORDER).unwrap();
    let org = OrgId::parse("ORG-WO-1001").unwrap();
    (
        vec![
            OrgEvent::OrganisationCreated {
                at: t,
                org_id: org.clone(),
                kind: OrgKind::Customer,
                name: "Contoso « Ltd »".into(),
                order_id: order_id.clone(),
                administrators: vec![email("admin@contoso.example")],
                managing_partner: Some(OrgId::parse("PORG-WO-1001").unwrap()),
            },
            OrgEvent::OrganisationCreated {
                at: t,
                org_id: OrgId::parse("PORG-WO-1001").unwrap(),
                kind: OrgKind::Partner,
                name: "Acme Partner".into(),
                order_id: order_id.clone(),
                administrators: vec![email(PAT)],
                managing_partner: None,
            },
            OrgEvent::AdministratorAdded {
                at: t,
                email: email("it@contoso.example"),
                order_id: order_id.clone(),
            },
            OrgEvent::PartnerAccessRemoved {
                at: t,
                partner_org_id: OrgId::parse("PORG-WO-1001").unwrap(),
                order_id: order_id.clone(),
            },
            OrgEvent::SubdomainAssigned {
                at: t + Duration::nanoseconds(5),
                subdomain: Subdomain::parse("contoso").unwrap(),
                order_id: order_id.clone(),
            },
        ],
        vec![
            ReservationEvent::EmailReserved {
                at: t,
                email: email("Admin@Contoso.example"),
                org_id: org.clone(),
                order_id: order_id.clone(),
            },
            ReservationEvent::SubdomainReserved {
                at: t,
                subdomain: Subdomain::parse("contoso").unwrap(),
                org_id: org,
                order_id: order_id.clone(),
            },
            ReservationEvent::OrderIdReserved {
                at: t,
                order_id: order_id.clone(),
            },
            ReservationEvent::SubscriptionReserved {
                at: t,
                subscription_id: SubscriptionId::parse("Sub100042").unwrap(),
                order_id,
                line_id: line("1.1"),
            },
        ],
    )
}

#[test]
fn r12_organisation_and_reservation_events_round_trip_too() {
    let (orgs, reservations) = org_and_reservation_events();
    for ty in ORG_EVENT_TYPES {
        assert!(
            orgs.iter().any(|e| e.event_type() == *ty),
            "no sample of {ty}"
        );
    }
    for ty in RESERVATION_EVENT_TYPES {
        assert!(
            reservations.iter().any(|e| e.event_type() == *ty),
            "no sample of {ty}"
        );
    }
    for event in orgs {
        let text = serde_json::to_string(&event.to_payload()).unwrap();
        let reread: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(!reread.as_object().unwrap().contains_key("type"));
        let decoded = OrgEvent::from_stored(event.event_type(), SCHEMA_VERSION, &reread).unwrap();
        assert_eq!(decoded, event);
        // The catalogues do not read each other's events.
        assert!(matches!(
            Event::from_stored(event.event_type(), SCHEMA_VERSION, &reread),
            Err(DecodeError::UnknownEventType { .. })
        ));
    }
    for event in reservations {
        let reread = event.to_payload();
        let decoded =
            ReservationEvent::from_stored(event.event_type(), SCHEMA_VERSION, &reread).unwrap();
        assert_eq!(decoded, event);
        assert!(matches!(
            ReservationEvent::from_stored(event.event_type(), SCHEMA_VERSION + 1, &reread),
            Err(DecodeError::UnsupportedSchemaVersion { .. })
        ));
        assert!(matches!(
            ReservationEvent::from_stored(
                event.event_type(),
                SCHEMA_VERSION,
                &serde_json::json!([])
            ),
            Err(DecodeError::InvalidPayload { .. })
        ));
    }
    // A stored subdomain that breaks the rule cannot be read back.
    let bad = serde_json::json!({"at": "2026-12-03T09:30:00Z", "order_id": "WO-1", "subdomain": "Bad_Name"});
    assert!(matches!(
        OrgEvent::from_stored("SubdomainAssigned", SCHEMA_VERSION, &bad),
        Err(DecodeError::InvalidPayload { .. })
    ));
}

#[test]
fn r12_every_refused_change_or_resend_is_a_command_refused_event() {
    let before_rsd = at(2026, 11, 25, 9, 0);
    let cases = [
        (
            vec![placed()],
            resend("1.1"),
            OLIVIA,
            RefusalCode::InitialEmailNotSent,
        ),
        (
            vec![placed()],
            change("1.1", NEW, false),
            AUDREY,
            RefusalCode::NoAccess,
        ),
        (vec![placed()], resend("1.1"), AUDREY, RefusalCode::NoAccess),
        (
            vec![placed(), onboarded("org-1", before_rsd)],
            change("1.1", NEW, true),
            PAT,
            RefusalCode::AfterPonr,
        ),
        (
            vec![placed(), onboarded("org-1", before_rsd)],
            resend("1.1"),
            DANA,
            RefusalCode::AfterPonr,
        ),
    ];
    for (stream, command, actor, code) in cases {
        let before = OrderState::from_events(&stream);
        let then = given(stream.clone())
            .when(command.clone(), actor, before_rsd)
            .then_any();
        let [refusal] = then.events.as_slice() else {
            panic!("{command:?}: {:?}", then.events)
        };
        assert!(refusal.is_refusal());
        assert_eq!(refusal.event_type(), "CommandRefused");
        assert_eq!(refusal.at(), before_rsd);
        assert_eq!(
            then.state.order, before.order,
            "{command:?} changed the order"
        );
        given(stream)
            .when(command, actor, before_rsd)
            .then_refused(code);
    }
}

#[test]
fn r12_a_command_dated_before_the_latest_event_is_out_of_order() {
    let t = at(2026, 12, 3, 10, 0);
    let mut stream = sample_until(t);
    stream.push(resent("1.1", IT, t));
    let err = given(stream.clone())
        .when(resend("1.1"), OLIVIA, t - Duration::seconds(1))
        .then_error(|e| {
            matches!(e, DomainError::OutOfOrder { at, latest }
                if *at == t - Duration::seconds(1) && *latest == t)
        });
    assert!(err.to_string().contains("give a time at or after"), "{err}");
    // The same instant as the latest event is in order.
    given(stream)
        .when(resend("1.1"), OLIVIA, t)
        .then_events(vec![resent("1.1", IT, t)]);
}

#[test]
fn r12_the_system_actor_cannot_issue_user_commands() {
    let t = at(2026, 12, 3, 10, 0);
    let commands = [
        change("1.1", NEW, false),
        resend("1.1"),
        onboard("org-1"),
        support_case("1.1", SupportRequestType::ResendProvisioningEmail),
        Command::StartSetup,
    ];
    for command in commands {
        let name = command.name();
        given(sample_until(t))
            .when(command, "system", t)
            .then_error(|e| matches!(e, DomainError::UserRequired { command } if *command == name));
    }
    given([])
        .when(place(sample_order()), "system", placed_at())
        .then_error(|e| matches!(e, DomainError::UserRequired { .. }));
}

#[test]
fn r12_an_unknown_line_is_an_error_listing_the_order_s_lines() {
    let t = at(2026, 12, 3, 10, 0);
    for command in [
        change("9.9", NEW, false),
        change("9.9", NEW, true),
        resend("9.9"),
        support_case("9.9", SupportRequestType::ResendProvisioningEmail),
    ] {
        let err = given(sample_until(t))
            .when(command, OLIVIA, t)
            .then_error(|e| {
                matches!(e, DomainError::UnknownLine { order_id, line_id, known }
                    if order_id == ORDER && line_id == "9.9" && known == "1.1, 1.2, 1.3")
            });
        assert!(err.to_string().contains("1.1, 1.2, 1.3"), "{err}");
    }
}

#[test]
fn r12_every_event_type_round_trips_through_its_stored_json() {
    let events = one_of_each();
    for ty in EVENT_TYPES {
        assert!(
            events.iter().any(|e| e.event_type() == *ty),
            "no sample of {ty}"
        );
    }
    for event in events {
        assert_eq!(event.schema_version(), SCHEMA_VERSION);
        let payload = event.to_payload();
        let object = payload.as_object().expect("a payload is an object");
        assert!(!object.contains_key("type"), "{payload}");
        assert!(object.contains_key("at"), "{payload}");
        // Through text, as the store keeps it.
        let text = serde_json::to_string(&payload).unwrap();
        let reread: serde_json::Value = serde_json::from_str(&text).unwrap();
        let decoded =
            Event::from_stored(event.event_type(), event.schema_version(), &reread).unwrap();
        assert_eq!(decoded, event);
    }
}

#[test]
fn r12_stored_emails_read_back_equal_to_the_written_ones() {
    // U+0130 lowercases to 'i' plus a combining dot: the stored form must be
    // one that parses again, or the ledger could not be read back.
    for raw in [
        "ops@İnfo.example",
        "ops@CUSTOMER.example",
        "Ops.Team@Ünïcode.example",
    ] {
        match Email::parse(raw) {
            Ok(parsed) => {
                assert_eq!(Email::parse(parsed.as_str()).as_ref(), Ok(&parsed), "{raw}");
                let json = serde_json::to_value(&parsed).unwrap();
                assert_eq!(serde_json::from_value::<Email>(json).unwrap(), parsed);
            }
            Err(e) => assert!(e.to_string().contains("invalid email"), "{e}"),
        }
    }
    // And an accepted address is never longer than 254 characters once stored.
    let long = format!("a@{}.example", "İ".repeat(60));
    if let Ok(parsed) = Email::parse(&long) {
        assert!(parsed.as_str().chars().count() <= 254);
    }
}

#[test]
fn r12_unreadable_stored_events_are_typed_errors() {
    let payload = resent("1.1", IT, at(2026, 12, 3, 9, 0)).to_payload();
    assert!(matches!(
        Event::from_stored("ProvisioningEmailBounced", 1, &payload),
        Err(DecodeError::UnknownEventType { event_type }) if event_type == "ProvisioningEmailBounced"
    ));
    for version in [0, SCHEMA_VERSION + 1] {
        let err = Event::from_stored("ProvisioningEmailResent", version, &payload).unwrap_err();
        assert!(
            matches!(&err, DecodeError::UnsupportedSchemaVersion { event_type, schema_version }
                if event_type == "ProvisioningEmailResent" && *schema_version == version),
            "{err:?}"
        );
        assert!(err.to_string().contains("upgrade provledger"), "{err}");
    }
    for not_an_object in [
        serde_json::json!([1, 2]),
        serde_json::json!("text"),
        serde_json::Value::Null,
    ] {
        assert!(matches!(
            Event::from_stored("ProvisioningEmailResent", 1, &not_an_object),
            Err(DecodeError::InvalidPayload { reason, .. }) if reason.contains("not a JSON object")
        ));
    }
    // A missing field or a bad value names what is wrong.
    let mut missing = payload.clone();
    missing.as_object_mut().unwrap().remove("line_id");
    let err = Event::from_stored("ProvisioningEmailResent", 1, &missing).unwrap_err();
    assert!(
        matches!(&err, DecodeError::InvalidPayload { reason, .. } if reason.contains("line_id")),
        "{err:?}"
    );
    let mut bad_email = payload;
    bad_email["to"] = serde_json::json!("not-an-email");
    assert!(matches!(
        Event::from_stored("ProvisioningEmailResent", 1, &bad_email),
        Err(DecodeError::InvalidPayload { event_type, .. }) if event_type == "ProvisioningEmailResent"
    ));
}

#[test]
fn r12_a_payload_decodes_only_as_its_own_type() {
    // The type comes from the envelope; a payload stored under another type
    // is not silently read as that type.
    let payload = resent("1.1", IT, at(2026, 12, 3, 9, 0)).to_payload();
    assert!(Event::from_stored("OrgOnboarded", 1, &payload).is_err());
    assert!(Event::from_stored("LineClosed", 1, &payload).is_err());
}

/// Decode `payload` both ways: from the parsed value and from its text.
fn decode_both(
    event_type: &str,
    version: u32,
    payload: &serde_json::Value,
) -> [Result<Event, DecodeError>; 2] {
    [
        Event::from_stored(event_type, version, payload),
        Event::from_stored_json(event_type, version, &payload.to_string()),
    ]
}

#[test]
fn r12_stored_text_decodes_exactly_as_the_parsed_payload() {
    let event = resent("1.1", IT, at(2026, 12, 3, 9, 0));
    let payload = event.to_payload();
    let mut tagged = payload.clone();
    tagged["type"] = serde_json::json!("ProvisioningEmailResent");
    let mut missing = payload.clone();
    missing.as_object_mut().unwrap().remove("line_id");
    let mut bad_email = payload.clone();
    bad_email["to"] = serde_json::json!("not-an-email");
    let cases = [
        ("ProvisioningEmailResent", 1, payload.clone(), true),
        ("ProvisioningEmailBounced", 1, payload.clone(), false),
        ("ProvisioningEmailResent", 0, payload.clone(), false),
        (
            "ProvisioningEmailResent",
            SCHEMA_VERSION + 1,
            payload.clone(),
            false,
        ),
        ("OrgOnboarded", 1, payload.clone(), false),
        (
            "ProvisioningEmailResent",
            1,
            serde_json::json!([1, 2]),
            false,
        ),
        (
            "ProvisioningEmailResent",
            1,
            serde_json::json!("text"),
            false,
        ),
        ("ProvisioningEmailResent", 1, serde_json::Value::Null, false),
        ("ProvisioningEmailResent", 1, serde_json::json!({}), false),
        // A payload never carries the tag: the type is the row's column.
        ("ProvisioningEmailResent", 1, tagged, false),
        ("ProvisioningEmailResent", 1, missing, false),
        ("ProvisioningEmailResent", 1, bad_email, false),
    ];
    for (event_type, version, payload, decodes) in cases {
        let [parsed, text] = decode_both(event_type, version, &payload);
        assert_eq!(
            parsed.is_ok(),
            decodes,
            "{event_type} {payload}: {parsed:?}"
        );
        assert_eq!(text.is_ok(), decodes, "{event_type} {payload}: {text:?}");
        match (parsed, text) {
            (Ok(a), Ok(b)) => assert_eq!((&a, &b), (&event, &event)),
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(&a),
                std::mem::discriminant(&b),
                "{a:?} vs {b:?}"
            ),
            (a, b) => panic!("the decoders disagree: {a:?} vs {b:?}"),
        }
    }
    // Whitespace the stored text may hold around and inside the object.
    let spaced = format!(
        " {{ {} }} ",
        &payload.to_string()[1..payload.to_string().len() - 1]
    );
    assert_eq!(
        Event::from_stored_json("ProvisioningEmailResent", 1, &spaced),
        Ok(event)
    );
    // An event with no fields beyond its time decodes from `{ }` plus time.
    let setup = Event::SetupStarted {
        at: at(2026, 12, 3, 9, 0),
    };
    let [parsed, text] = decode_both("SetupStarted", 1, &setup.to_payload());
    assert_eq!((parsed, text), (Ok(setup.clone()), Ok(setup)));
}
