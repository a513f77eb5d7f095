//! Import under attack: random mutations of a valid export (an event
//! dropped, duplicated, swapped with its neighbour, or a field altered),
//! with every position, stream version and hash recomputed as a forger
//! would, are either refused with nothing written, or give a ledger whose
//! chain verifies, whose read models equal a rebuild and whose rules hold.

use std::collections::HashMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use provledger::script::{parse_script, run_script};
use provledger::transfer::import;
use provledger::Ledger;
use provledger_domain::{admit, AdmissionState, Candidate};
use provledger_store::hash::{event_hash, GENESIS_HASH};
use provledger_store::RecordedEvent;
use provledger_tests::sqlite_url;

use crate::replay::assert_rules_hold;

/// The demo ledger's export, built once.
fn demo_events() -> &'static Vec<RecordedEvent> {
    static EVENTS: OnceLock<Vec<RecordedEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&sqlite_url(dir.path())).expect("ledger");
        let steps = parse_script(provledger::demo::DEMO_SCRIPT).expect("script");
        run_script(&ledger, &steps).expect("demo");
        let events: Vec<RecordedEvent> = ledger
            .store()
            .read_all(0)
            .expect("read")
            .map(|e| e.expect("event"))
            .collect();
        events
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Drop(usize),
    Duplicate(usize),
    Swap(usize),
    /// Set the payload field (chosen by index among the event's fields) to
    /// one of a few forged values.
    Alter(usize, usize, usize),
    /// Credit the event to someone else.
    Actor(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..1000).prop_map(Mutation::Drop),
        (0usize..1000).prop_map(Mutation::Duplicate),
        (0usize..1000).prop_map(Mutation::Swap),
        (0usize..1000, 0usize..16, 0usize..6).prop_map(|(i, f, v)| Mutation::Alter(i, f, v)),
        (0usize..1000, 0usize..4).prop_map(|(i, a)| Mutation::Actor(i, a)),
    ]
}

const VALUES: [&str; 6] = [
    "attacker@evil.example",
    "2026-12-31T00:00:00Z",
    "2026-11-01T00:00:00Z",
    "9.9",
    "olivia@acme-partner.example",
    "true",
];
const ACTORS: [&str; 4] = [
    "system",
    "mallory@evil.example",
    "olivia@acme-partner.example",
    "it@woodgrove.example",
];

/// Apply `m`, then renumber positions and stream versions and recompute
/// every hash, as a forger who controls the whole file would.
fn forge(events: &[RecordedEvent], m: &Mutation) -> Vec<RecordedEvent> {
    let mut out = events.to_vec();
    let n = out.len();
    match *m {
        Mutation::Drop(i) => {
            out.remove(i % n);
        }
        Mutation::Duplicate(i) => {
            let copy = out[i % n].clone();
            out.insert(i % n + 1, copy);
        }
        Mutation::Swap(i) => {
            let i = i % (n - 1);
            out.swap(i, i + 1);
        }
        Mutation::Alter(i, field, value) => {
            let event = &mut out[i % n];
            if let Some(map) = event.payload.as_object_mut() {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = &keys[field % keys.len()];
                let raw = VALUES[value];
                let forged = match raw {
                    "true" => serde_json::Value::Bool(true),
                    _ => serde_json::Value::String(raw.to_string()),
                };
                map.insert(key.clone(), forged);
                if key == "at" {
                    if let Ok(t) = raw.parse() {
                        event.occurred_at = t;
                    }
                }
            }
        }
        Mutation::Actor(i, a) => out[i % n].metadata.actor = ACTORS[a].to_string(),
    }
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut prev = GENESIS_HASH.to_string();
    for (i, event) in out.iter_mut().enumerate() {
        event.position = i as u64 + 1;
        let version = versions.entry(event.stream_id.clone()).or_default();
        *version += 1;
        event.stream_version = *version;
        event.prev_hash = prev;
        event.hash = event_hash(event);
        prev = event.hash.clone();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn mutated_exports_are_refused_whole_or_import_to_a_lawful_ledger(m in mutation()) {
        let forged = forge(demo_events(), &m);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("forged.jsonl");
        let text: String = forged
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        std::fs::write(&file, text).unwrap();
        let ledger = Ledger::open(&sqlite_url(dir.path())).expect("ledger");
        match import(&ledger, &file) {
            Err(e) => {
                prop_assert_eq!(e.exit_code(), 2, "{}", e);
                prop_assert!(ledger.store().head().unwrap().is_none(), "refused, yet written: {}", e);
            }
            Ok(n) => {
                prop_assert_eq!(n, forged.len() as u64);
                let intact = ledger.verify(&mut |_| ()).unwrap().is_intact();
                prop_assert!(intact, "the imported chain does not verify");
                let incremental = ledger.read_models().dump().unwrap();
                ledger.rebuild(&mut |_| ()).unwrap();
                prop_assert_eq!(incremental, ledger.read_models().dump().unwrap());
                // Every stored event is admissible where it stands.
                let mut states: HashMap<String, AdmissionState> = HashMap::new();
                for e in ledger.store().read_all(0).unwrap() {
                    let e = e.unwrap();
                    let state = match states.remove(&e.stream_id) {
                        Some(s) => s,
                        None => AdmissionState::empty(&e.stream_id).unwrap(),
                    };
                    let next = admit(&state, &Candidate {
                        position: e.position,
                        stream_id: &e.stream_id,
                        event_type: &e.event_type,
                        schema_version: e.schema_version,
                        payload: &e.payload,
                        actor: &e.metadata.actor,
                        occurred_at: e.occurred_at,
                    });
                    prop_assert!(next.is_ok(), "{:?}", next);
                    states.insert(e.stream_id.clone(), next.unwrap());
                }
                assert_rules_hold(&ledger);
            }
        }
    }
}

#[test]
fn the_honest_demo_export_imports() {
    let events = demo_events();
    let forged = forge(events, &Mutation::Actor(0, 2));
    // Crediting the first OrderPlaced to its own ordering contact changes nothing.
    assert_eq!(forged[0].metadata.actor, "olivia@acme-partner.example");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("honest.jsonl");
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    let ledger = Ledger::open(&sqlite_url(dir.path())).expect("ledger");
    assert_eq!(import(&ledger, &file).unwrap(), events.len() as u64);
}
