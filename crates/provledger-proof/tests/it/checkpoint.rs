//! Signed checkpoints: a signature made by the key verifies; any altered
//! field or another key fails.

use proptest::prelude::*;
use provledger_proof::checkpoint::{
    encode_public_key, encode_secret_key, key_id, parse_public_key, parse_secret_key,
    signing_key_from_seed, Checkpoint, TreeHead,
};
use provledger_proof::merkle::leaf_hash;

fn head() -> TreeHead {
    TreeHead {
        ledger_id: format!("sha256:{}", "ab".repeat(32)),
        clock_mode: "simulated".into(),
        size: 42,
        root: leaf_hash(b"root"),
        head_hash: "cd".repeat(32),
        time: "2026-12-03T09:00:00.000000Z".into(),
    }
}

#[test]
fn keys_round_trip_through_their_files() {
    let key = signing_key_from_seed(&[7; 32]);
    let again = parse_secret_key(&encode_secret_key(&key)).unwrap();
    assert_eq!(again.to_bytes(), key.to_bytes());
    let public = parse_public_key(&encode_public_key(&key.verifying_key())).unwrap();
    assert_eq!(public, key.verifying_key());
    assert!(key_id(&public).starts_with("ed25519:"));
    assert!(parse_public_key(&encode_secret_key(&key)).is_err());
    assert!(parse_secret_key("nonsense").is_err());
}

#[test]
fn a_checkpoint_verifies_with_its_key_only() {
    let key = signing_key_from_seed(&[1; 32]);
    let checkpoint = Checkpoint::sign(&head(), &key);
    assert_eq!(checkpoint.verify(&key.verifying_key()).unwrap(), head());
    let json = serde_json::to_string(&checkpoint).unwrap();
    let back: Checkpoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back.verify(&key.verifying_key()).unwrap(), head());

    let other = signing_key_from_seed(&[2; 32]);
    let err = checkpoint.verify(&other.verifying_key()).unwrap_err();
    assert!(err.to_string().contains("signed by key"), "{err}");
    // Another key that claims this key's id fails on the signature itself.
    let mut forged = Checkpoint::sign(&head(), &other);
    forged.key_id = checkpoint.key_id.clone();
    let err = forged.verify(&key.verifying_key()).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_altered_field_or_signature_byte_fails(field in 0usize..7, pos in any::<usize>(), bit in 0u8..8) {
        let key = signing_key_from_seed(&[3; 32]);
        let mut c = Checkpoint::sign(&head(), &key);
        let alter = |s: &mut String| {
            let mut bytes = s.clone().into_bytes();
            let i = pos % bytes.len();
            // Stay within ASCII hex / text so the field still parses.
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            *s = String::from_utf8(bytes).unwrap();
        };
        match field {
            0 => alter(&mut c.ledger_id),
            1 => c.clock_mode = "live".into(),
            2 => c.size ^= 1 << (bit % 8),
            3 => alter(&mut c.root),
            4 => alter(&mut c.head_hash),
            5 => alter(&mut c.time),
            _ => alter(&mut c.signature),
        }
        prop_assert!(c.verify(&key.verifying_key()).is_err());
    }
}
