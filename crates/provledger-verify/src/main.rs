//! The `provledger-verify` binary: `provledger-verify BUNDLE --pubkey PREFIX.pub`.
//!
//! This file exists to turn the library's verdict into output and an exit
//! status (0 the bundle checks out, 2 unreadable input, 4 it does not check
//! out), with the first problem named on standard error.

use std::process::ExitCode;

use provledger_verify::{check, render, VerifyError, EXIT_BAD_INPUT};

const USAGE: &str = "usage: provledger-verify BUNDLE --pubkey PREFIX.pub\n\
    Checks an evidence bundle written by `provledger evidence` offline: the checkpoint's \
    signature, every event's hash and inclusion proof, one order stream with gapless \
    versions, and re-folds the events to show the subscription's history and line.";

fn args() -> Result<(String, String), VerifyError> {
    let mut bundle = None;
    let mut pubkey = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--pubkey" => pubkey = args.next(),
            other if other.starts_with("--pubkey=") => {
                pubkey = Some(other["--pubkey=".len()..].to_string());
            }
            other if other.starts_with('-') => {
                return Err(VerifyError::BadInput(format!(
                    "unknown option {other}\n{USAGE}"
                )))
            }
            other if bundle.is_none() => bundle = Some(other.to_string()),
            other => {
                return Err(VerifyError::BadInput(format!(
                    "unexpected argument {other}\n{USAGE}"
                )))
            }
        }
    }
    match (bundle, pubkey) {
        (Some(b), Some(k)) => Ok((b, k)),
        _ => Err(VerifyError::BadInput(USAGE.to_string())),
    }
}

fn read(path: &str, what: &str) -> Result<String, VerifyError> {
    std::fs::read_to_string(path)
        .map_err(|e| VerifyError::BadInput(format!("cannot read the {what} {path}: {e}")))
}

fn run() -> Result<String, VerifyError> {
    let (bundle, pubkey) = args()?;
    let verified = check(&read(&bundle, "bundle")?, &read(&pubkey, "public key")?)?;
    Ok(render(&verified))
}

fn main() -> ExitCode {
    match run() {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("provledger-verify: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_BAD_INPUT as u8))
        }
    }
}
