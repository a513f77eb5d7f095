//! The `provledger-verify` binary on a bundle written by `provledger
//! evidence` from the demo ledger (tests/fixtures): it checks out, and any
//! altered byte of an event, a proof, the checkpoint or the key fails with
//! exit 4 naming the problem; unreadable input is exit 2.

use std::path::PathBuf;
use std::process::Command;

use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(bundle: &std::path::Path, pubkey: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_provledger-verify"))
        .arg(bundle)
        .arg("--pubkey")
        .arg(pubkey)
        .output()
        .expect("run provledger-verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_bundle_checks_out_and_shows_the_line() {
    let (code, out, err) = run(&fixture("sub100042.bundle.json"), &fixture("signer.pub"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Sub100042"), "{out}");
    assert!(out.contains("status:               Closed"), "{out}");
    assert!(out.contains("LineClosed"), "{out}");
    assert!(out.contains("simulated"), "{out}");
}

#[test]
fn unreadable_input_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{").unwrap();
    assert_eq!(run(&garbage, &fixture("signer.pub")).0, 2);
    assert_eq!(
        run(
            &fixture("sub100042.bundle.json"),
            &dir.path().join("missing.pub")
        )
        .0,
        2
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Flip one hex digit anywhere in an event's hashes, a proof, the
    /// checkpoint's root or signature: the library refuses it as an
    /// integrity failure.
    #[test]
    fn any_altered_hash_digit_fails(pick in any::<usize>(), digit in 0usize..64) {
        let text = std::fs::read_to_string(fixture("sub100042.bundle.json")).unwrap();
        let pubkey = std::fs::read_to_string(fixture("signer.pub")).unwrap();
        let mut bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
        let n = bundle["events"].as_array().unwrap().len();
        let i = pick % n;
        let target = match pick / n % 5 {
            0 => &mut bundle["events"][i]["event"]["hash"],
            1 => &mut bundle["events"][i]["event"]["prev_hash"],
            2 => &mut bundle["checkpoint"]["root"],
            3 => &mut bundle["checkpoint"]["signature"],
            _ => {
                let proof = bundle["events"][i]["inclusion_proof"].as_array_mut().unwrap();
                let j = pick % proof.len();
                &mut proof[j]
            }
        };
        let mut chars: Vec<char> = target.as_str().unwrap().chars().collect();
        let k = digit % chars.len();
        chars[k] = if chars[k] == '0' { '1' } else { '0' };
        *target = serde_json::Value::String(chars.into_iter().collect());
        let result = provledger_verify::check(&bundle.to_string(), &pubkey);
        match result {
            Ok(_) => prop_assert!(false, "an altered bundle was accepted"),
            Err(e) => prop_assert_eq!(e.exit_code(), 4, "{}", e),
        }
    }
}
