//! docs/events.md is the contract for stored events; these tests keep it
//! true to the serializer: every example decodes and encodes back to itself,
//! every field table lists exactly the example's fields, and every type and
//! refusal code is documented.

use std::collections::BTreeSet;

use provledger_domain::{
    Event, OrgEvent, RefusalCode, RefusedAction, ReservationEvent, SupportRequestType, EVENT_TYPES,
    ORDER_STREAM_PREFIX, ORG_EVENT_TYPES, RESERVATION_EVENT_TYPES, SCHEMA_VERSION,
};
use serde_json::Value;

use crate::harness::*;

/// One `#`-headed section of the catalogue.
struct Section {
    heading: String,
    json_blocks: Vec<Value>,
    /// Per table, the first-column backticked names of its rows, e.g. `at`,
    /// `lines[].rsd`. An event's first table is its field table.
    tables: Vec<Vec<String>>,
}

impl Section {
    fn fields(&self) -> &[String] {
        self.tables.first().map_or(&[], Vec::as_slice)
    }
}

fn catalogue() -> Vec<Section> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md");
    let text = std::fs::read_to_string(path).expect("docs/events.md is readable");
    let mut sections = vec![Section {
        heading: String::new(),
        json_blocks: Vec::new(),
        tables: Vec::new(),
    }];
    let mut block: Option<(String, String)> = None;
    let mut in_table = false;
    for line in text.lines() {
        let starts_table = line.starts_with('|') && !in_table;
        in_table = line.starts_with('|');
        if starts_table {
            sections.last_mut().unwrap().tables.push(Vec::new());
        }
        if let Some((lang, body)) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                if lang == "json" {
                    let value = serde_json::from_str(body)
                        .unwrap_or_else(|e| panic!("a json block does not parse: {e}\n{body}"));
                    sections.last_mut().unwrap().json_blocks.push(value);
                }
                block = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
        } else if let Some(lang) = line.trim_start().strip_prefix("```") {
            block = Some((lang.trim().to_string(), String::new()));
        } else if line.starts_with('#') {
            sections.push(Section {
                heading: line.trim_start_matches('#').trim().to_string(),
                json_blocks: Vec::new(),
                tables: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix("| `") {
            let name = rest.split('`').next().unwrap_or_default();
            let table = sections.last_mut().unwrap().tables.last_mut().unwrap();
            table.push(name.to_string());
        }
    }
    assert!(block.is_none(), "an unclosed code block");
    sections
}

fn event_sections() -> Vec<Section> {
    sections_of(EVENT_TYPES)
}

fn sections_of(types: &[&str]) -> Vec<Section> {
    catalogue()
        .into_iter()
        .filter(|s| types.contains(&s.heading.as_str()))
        .collect()
}

/// Every catalogue (order, organisation, reservation events), each with a
/// function that decodes a payload example and encodes it back.
type RoundTrip = fn(&str, &Value) -> Result<(String, Value), String>;

fn catalogues() -> [(&'static [&'static str], RoundTrip); 3] {
    [
        (EVENT_TYPES, |ty, v| {
            Event::from_stored(ty, SCHEMA_VERSION, v)
                .map(|e| (e.event_type().to_string(), e.to_payload()))
                .map_err(|e| e.to_string())
        }),
        (ORG_EVENT_TYPES, |ty, v| {
            OrgEvent::from_stored(ty, SCHEMA_VERSION, v)
                .map(|e| (e.event_type().to_string(), e.to_payload()))
                .map_err(|e| e.to_string())
        }),
        (RESERVATION_EVENT_TYPES, |ty, v| {
            ReservationEvent::from_stored(ty, SCHEMA_VERSION, v)
                .map(|e| (e.event_type().to_string(), e.to_payload()))
                .map_err(|e| e.to_string())
        }),
    ]
}

/// Every refusal code, exhaustively: a new code fails to compile here until
/// it is added (and then fails the test until it is documented).
fn all_codes() -> Vec<RefusalCode> {
    let codes = vec![
        RefusalCode::NoAccess,
        RefusalCode::AfterPonr,
        RefusalCode::InitialEmailNotSent,
        RefusalCode::AlreadyOnboarded,
        RefusalCode::EmailTaken,
        RefusalCode::SubdomainTaken,
        RefusalCode::SubdomainAlreadySet,
        RefusalCode::OrgNotRecognised,
        RefusalCode::PartnerNoAccess,
        RefusalCode::NotOnboarded,
        RefusalCode::SetupNotCompleted,
        RefusalCode::ServicesNotSetUp,
        RefusalCode::AlreadyProvisioned,
    ];
    for code in &codes {
        match code {
            RefusalCode::NoAccess
            | RefusalCode::AfterPonr
            | RefusalCode::InitialEmailNotSent
            | RefusalCode::AlreadyOnboarded
            | RefusalCode::EmailTaken
            | RefusalCode::SubdomainTaken
            | RefusalCode::SubdomainAlreadySet
            | RefusalCode::OrgNotRecognised
            | RefusalCode::PartnerNoAccess
            | RefusalCode::NotOnboarded
            | RefusalCode::SetupNotCompleted
            | RefusalCode::ServicesNotSetUp
            | RefusalCode::AlreadyProvisioned => {}
        }
    }
    codes
}

fn all_actions() -> Vec<RefusedAction> {
    let actions = vec![
        RefusedAction::ChangeContact,
        RefusedAction::ResendEmail,
        RefusedAction::OnboardOrg,
        RefusedAction::OpenSupportCase,
        RefusedAction::ResolveSupportCase,
        RefusedAction::StartSetup,
        RefusedAction::CompleteSetup,
        RefusedAction::ConfigureServices,
        RefusedAction::Provision,
    ];
    for action in &actions {
        match action {
            RefusedAction::ChangeContact
            | RefusedAction::ResendEmail
            | RefusedAction::OnboardOrg
            | RefusedAction::OpenSupportCase
            | RefusedAction::ResolveSupportCase
            | RefusedAction::StartSetup
            | RefusedAction::CompleteSetup
            | RefusedAction::ConfigureServices
            | RefusedAction::Provision => {}
        }
    }
    actions
}

#[test]
fn every_event_type_has_a_section_in_catalogue_order() {
    for (types, _) in catalogues() {
        let headings: Vec<String> = sections_of(types).into_iter().map(|s| s.heading).collect();
        assert_eq!(headings, types);
    }
}

#[test]
fn event_type_names_are_unique_across_the_catalogues() {
    let mut all: Vec<&str> = [EVENT_TYPES, ORG_EVENT_TYPES, RESERVATION_EVENT_TYPES].concat();
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), count, "a type name is used twice");
}

#[test]
fn every_payload_example_is_what_the_serializer_writes() {
    for (types, round_trip) in catalogues() {
        for section in sections_of(types) {
            assert!(
                !section.json_blocks.is_empty(),
                "{} has no example",
                section.heading
            );
            for example in &section.json_blocks {
                let (ty, payload) = round_trip(&section.heading, example)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{example:#}", section.heading));
                assert_eq!(ty, section.heading);
                assert_eq!(&payload, example, "{}", section.heading);
            }
        }
    }
}

#[test]
fn every_field_table_lists_exactly_the_payload_fields() {
    let every_section = [EVENT_TYPES, ORG_EVENT_TYPES, RESERVATION_EVENT_TYPES].concat();
    for section in sections_of(&every_section) {
        let documented: BTreeSet<&str> = section
            .fields()
            .iter()
            .map(String::as_str)
            .filter(|n| !n.contains('.') && !n.contains('['))
            .collect();
        for example in &section.json_blocks {
            let written: BTreeSet<&str> = example
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(documented, written, "{}", section.heading);
        }
        // Nested rows (`lines[].rsd`) name fields of the nested objects.
        for nested in section.fields().iter().filter(|n| n.contains("[].")) {
            let (array, field) = nested.split_once("[].").unwrap();
            for example in &section.json_blocks {
                for item in example[array].as_array().unwrap() {
                    assert!(item.get(field).is_some(), "{}: {nested}", section.heading);
                }
            }
        }
        // Rows like `calling.country` name the fields of an optional object:
        // an example that has the object has exactly those fields.
        let mut objects: std::collections::BTreeMap<&str, BTreeSet<&str>> = Default::default();
        for nested in section.fields().iter().filter(|n| !n.contains('[')) {
            if let Some((object, field)) = nested.split_once('.') {
                objects.entry(object).or_default().insert(field);
            }
        }
        for (object, fields) in objects {
            for example in &section.json_blocks {
                if let Some(value) = example[object].as_object() {
                    let written: BTreeSet<&str> = value.keys().map(String::as_str).collect();
                    assert_eq!(written, fields, "{}: {object}", section.heading);
                }
            }
        }
    }
}

#[test]
fn the_envelope_examples_are_a_chained_stream_of_real_events() {
    let envelopes: Vec<Value> = catalogue()
        .into_iter()
        .filter(|s| !EVENT_TYPES.contains(&s.heading.as_str()))
        .flat_map(|s| s.json_blocks)
        .filter(|v| v.get("event_type").is_some())
        .collect();
    assert!(envelopes.len() >= 2);
    let mut previous: Option<&Value> = None;
    for e in &envelopes {
        let event = Event::from_stored(
            e["event_type"].as_str().unwrap(),
            e["schema_version"].as_u64().unwrap() as u32,
            &e["payload"],
        )
        .unwrap();
        assert_eq!(&event.to_payload(), &e["payload"]);
        assert_eq!(e["occurred_at"], serde_json::to_value(event.at()).unwrap());
        assert!(e["stream_id"]
            .as_str()
            .unwrap()
            .starts_with(ORDER_STREAM_PREFIX));
        match previous {
            None => {
                assert_eq!(e["position"], 1);
                assert_eq!(e["prev_hash"], "0".repeat(64));
            }
            Some(p) => {
                assert_eq!(e["position"], p["position"].as_u64().unwrap() + 1);
                assert_eq!(
                    e["stream_version"],
                    p["stream_version"].as_u64().unwrap() + 1
                );
                assert_eq!(e["prev_hash"], p["hash"]);
            }
        }
        previous = Some(e);
    }
}

#[test]
fn every_refusal_code_and_action_is_documented() {
    let refused = event_sections()
        .into_iter()
        .find(|s| s.heading == "CommandRefused")
        .unwrap();
    let code_table = &refused.tables[1];
    assert_eq!(code_table.len(), all_codes().len());
    for code in all_codes() {
        let name = code.as_str();
        assert!(
            code_table.iter().any(|n| n == name),
            "code {name} is not in the table"
        );
        assert_eq!(serde_json::to_value(code).unwrap(), name);
    }
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md"))
            .unwrap();
    for action in all_actions() {
        let name = serde_json::to_value(action).unwrap();
        let name = name.as_str().unwrap();
        assert!(text.contains(&format!("`{name}`")), "action {name}");
    }
    for request_type in [
        SupportRequestType::ResendProvisioningEmail,
        SupportRequestType::ChangeProvisioningContactEmail,
    ] {
        let name = serde_json::to_value(request_type).unwrap();
        assert!(text.contains(&format!("`{}`", name.as_str().unwrap())));
    }
}

#[test]
fn the_payload_conventions_hold() {
    // Missing optional fields read as null; unknown fields are ignored.
    let old = serde_json::json!({
        "at": "2026-12-04T10:00:00Z", "case_id": "WO-1001-C2", "line_id": "1.1",
        "request_type": "change_provisioning_contact_email", "attachments": [],
        "added_later": {"x": 1}
    });
    let Event::SupportCaseOpened { note, .. } =
        Event::from_stored("SupportCaseOpened", 1, &old).unwrap()
    else {
        panic!()
    };
    assert_eq!(note, None);
    // Times: UTC with Z; fractional digits only when not zero.
    let whole = setup_started(at(2026, 12, 3, 9, 30)).to_payload();
    assert_eq!(whole["at"], "2026-12-03T09:30:00Z");
    let fraction =
        setup_started(at(2026, 12, 3, 9, 30) + chrono::Duration::milliseconds(250)).to_payload();
    assert_eq!(fraction["at"], "2026-12-03T09:30:00.250Z");
    // Emails: the domain is lowercased, the local part kept.
    let changed = changed(
        "1.1",
        IT,
        "Ops.Team@Customer.EXAMPLE",
        at(2026, 12, 3, 9, 30),
        false,
        true,
    );
    assert_eq!(
        changed.to_payload()["new_email"],
        "Ops.Team@customer.example"
    );
}
