//! Checks an evidence bundle offline and tells an auditor what it proves.
//!
//! This crate exists so that an auditor can check a subscription's history
//! without trusting (or even reaching) the server: it depends on the pure
//! proof crate and the domain only — no database, no network. It checks the
//! checkpoint's signature, every event's hash and inclusion proof, that the
//! events are one order stream with gapless versions from 1, then re-folds
//! them with the domain's own `evolve` and reports the subscription's line.

#![warn(missing_docs)]

use std::fmt::Write as _;

use provledger_domain::{evolve, Event, Line, OrderState, ORDER_STREAM_PREFIX};
use provledger_proof::bundle::{verify_bundle, Bundle};
use provledger_proof::checkpoint::{key_id, parse_public_key, TreeHead};
use provledger_proof::ProofError;

/// Exit status: the bundle checks out.
pub const EXIT_OK: i32 = 0;
/// Exit status: a file could not be read as a bundle or a public key.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit status: the bundle does not check out.
pub const EXIT_FAILED: i32 = 4;

/// Why a bundle was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The input is not a bundle or a public key at all. Exit 2.
    #[error("{0}")]
    BadInput(String),
    /// The bundle was read but does not check out. Exit 4.
    #[error("the bundle does not check out: {0}")]
    Failed(String),
}

impl VerifyError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::BadInput(_) => EXIT_BAD_INPUT,
            VerifyError::Failed(_) => EXIT_FAILED,
        }
    }
}

impl From<ProofError> for VerifyError {
    fn from(e: ProofError) -> Self {
        if e.is_integrity() {
            VerifyError::Failed(e.to_string())
        } else {
            VerifyError::BadInput(e.to_string())
        }
    }
}

/// What a bundle that checks out proves.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The bundle.
    pub bundle: Bundle,
    /// The signed tree head every event is proven against.
    pub head: TreeHead,
    /// The key that signed it.
    pub key_id: String,
    /// The decoded events, in stream order.
    pub events: Vec<Event>,
    /// The order folded from them.
    pub state: OrderState,
    /// The subscription's line as folded.
    pub line: Line,
}

/// Check `bundle_json` against the public key file's text.
pub fn check(bundle_json: &str, public_key_text: &str) -> Result<Verified, VerifyError> {
    let key = parse_public_key(public_key_text)?;
    let bundle: Bundle = serde_json::from_str(bundle_json)
        .map_err(|e| VerifyError::BadInput(format!("not a provledger evidence bundle: {e}")))?;
    let head = verify_bundle(&bundle, &key)?;
    if !bundle.stream_id.starts_with(ORDER_STREAM_PREFIX) {
        return Err(VerifyError::Failed(format!(
            "stream {} is not an order stream",
            bundle.stream_id
        )));
    }
    let mut events = Vec::with_capacity(bundle.events.len());
    let mut state = OrderState::default();
    for (i, item) in bundle.events.iter().enumerate() {
        let e = &item.event;
        let event =
            Event::from_stored(&e.event_type, e.schema_version, &e.payload).map_err(|err| {
                VerifyError::Failed(format!(
                    "event {} (position {}) is not an order event the domain knows: {err}",
                    i + 1,
                    e.position
                ))
            })?;
        state = evolve(state, &event);
        events.push(event);
    }
    let line = state
        .order
        .as_ref()
        .and_then(|order| {
            order
                .lines
                .iter()
                .find(|l| l.subscription_id.as_str() == bundle.subscription)
        })
        .cloned()
        .ok_or_else(|| {
            VerifyError::Failed(format!(
                "subscription {} is on no line of the order these events describe",
                bundle.subscription
            ))
        })?;
    Ok(Verified {
        key_id: key_id(&key),
        bundle,
        head,
        events,
        state,
        line,
    })
}

/// The auditor's report: what was checked, the subscription's history and
/// its line's state.
pub fn render(v: &Verified) -> String {
    let mut out = String::new();
    let b = &v.bundle;
    let _ = writeln!(
        out,
        "evidence for subscription {} ({}): OK",
        b.subscription, b.stream_id
    );
    let _ = writeln!(
        out,
        "  {} events, each hash recomputed and proven included in the ledger {} of {} events \
         (root {}) signed by {} at {}",
        b.events.len(),
        v.head.ledger_id,
        v.head.size,
        b.checkpoint.root,
        v.key_id,
        v.head.time
    );
    if v.head.clock_mode == "simulated" {
        let _ = writeln!(
            out,
            "  clock mode: simulated — business times were chosen by whoever ran the commands; \
             this is not evidence of when things really happened"
        );
    } else {
        let _ = writeln!(out, "  clock mode: {}", v.head.clock_mode);
    }
    let _ = writeln!(
        out,
        "\nhistory (every event of the order; * = about this line):"
    );
    for (item, event) in b.events.iter().zip(&v.events) {
        let e = &item.event;
        let mark = if event.line_id() == Some(&v.line.line_id) {
            "*"
        } else {
            " "
        };
        let _ = writeln!(
            out,
            "{mark} v{:<3} pos {:<6} {}  {:<28} by {} ({})",
            e.stream_version,
            e.position,
            e.occurred_at.format("%Y-%m-%d %H:%M:%S"),
            e.event_type,
            e.metadata.actor,
            e.metadata.transaction_id
        );
    }
    let l = &v.line;
    let _ = writeln!(
        out,
        "\nline {} ({}, offer {}):",
        l.line_id, l.subscription_id, l.offer
    );
    let _ = writeln!(out, "  status:               {}", l.status.label());
    let _ = writeln!(out, "  provisioning contact: {}", l.provisioning_contact);
    let _ = writeln!(out, "  requested start:      {}", l.rsd);
    let time = |t: Option<String>| t.unwrap_or_else(|| "-".to_string());
    let _ = writeln!(
        out,
        "  initial email sent:   {}",
        time(l.initial_email_sent_at.map(|t| t.to_rfc3339()))
    );
    let _ = writeln!(
        out,
        "  closes/closed at:     {}",
        time(l.closes_at.map(|t| t.to_rfc3339()))
    );
    let _ = writeln!(
        out,
        "  escalated at:         {}",
        time(l.escalated_at.map(|t| t.to_rfc3339()))
    );
    let _ = writeln!(
        out,
        "  billing started:      {}",
        if l.billing_started { "yes" } else { "no" }
    );
    let _ = writeln!(out, "  emails resent:        {}", l.resend_count);
    out
}
