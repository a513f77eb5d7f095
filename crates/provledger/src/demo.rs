//! `provledger demo`: build a ledger from the bundled fixtures in a fresh
//! store and show the views a partner and an auditor would look at.
//!
//! The fixture script is compiled into the binary (fixtures/demo.jsonl), so
//! the demo works from any directory.

use crate::cli::{print_step_results, Io};
use crate::output::{self, Format};
use crate::script::{parse_script, run_script};
use crate::{AppError, Ledger, EXIT_OK};
use provledger_domain::SubscriptionId;
use provledger_projections::{LineQuery, TransactionQuery, TransactionType};

/// The demo script.
pub const DEMO_SCRIPT: &str = include_str!("../../../fixtures/demo.jsonl");

/// The subscription whose Transaction Manager view the demo shows.
pub const DEMO_SUBSCRIPTION: &str = "Sub100042";

/// Run the demo. With an explicit store it must be empty; otherwise a fresh
/// SQLite file is created in the temporary directory and kept for exploring.
pub fn run_demo(
    explicit_store: bool,
    url: &str,
    format: Format,
    io: &mut Io<'_>,
) -> Result<i32, AppError> {
    let url = if explicit_store {
        url.to_string()
    } else {
        let dir = std::env::temp_dir().join(format!("provledger-demo-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| AppError::io(format!("cannot create {}", dir.display()), e))?;
        format!("sqlite:{}", dir.join("demo.db").display())
    };
    let ledger = Ledger::open(&url)?;
    // The URL as shown: a password is never printed.
    let url = provledger_store::redact_url(&url);
    if let Some(head) = ledger.store().head()? {
        return Err(AppError::BadInput(format!(
            "the demo needs a fresh store but {url} already holds {} events; give a new --db path, or omit --db/--store to use a temporary one",
            head.position
        )));
    }
    // The demo's script gives its own times: a simulated ledger, as every
    // view of it says.
    ledger.initialise(provledger_domain::ClockMode::Simulated)?;
    let steps = parse_script(DEMO_SCRIPT)?;
    let results = run_script(&ledger, &steps)?;
    let lines = ledger.lines(&LineQuery::default(), None)?;
    let subscription = SubscriptionId::parse(DEMO_SUBSCRIPTION)?;
    let updates = ledger.transactions(&TransactionQuery {
        tx_type: Some(TransactionType::ProvisioningEmailUpdate),
        subscription_id: Some(subscription),
        ..TransactionQuery::default()
    })?;
    if format == Format::Json {
        let body = serde_json::json!({
            "store": url,
            "steps": results,
            "lines": lines,
            "transactions": updates,
        });
        let text = output::json(&body)?;
        io.out
            .write_all(text.as_bytes())
            .map_err(|e| AppError::io("cannot write output", e))?;
        return Ok(EXIT_OK);
    }
    let mut say = |text: &str| {
        io.out
            .write_all(text.as_bytes())
            .map_err(|e| AppError::io("cannot write output", e))
    };
    say(&format!(
        "Building a demo ledger at {url}\n\n== Steps (fixtures/demo.jsonl) ==\n"
    ))?;
    print_step_results(io, format, &results)?;
    let mut say = |text: &str| {
        io.out
            .write_all(text.as_bytes())
            .map_err(|e| AppError::io("cannot write output", e))
    };
    say("\n== Lines ==\n")?;
    let clock = Some(provledger_domain::ClockMode::Simulated);
    say(&output::render_view(
        &lines,
        &output::lines_kind(),
        format,
        clock,
    )?)?;
    say(&format!(
        "\n== Transaction Manager: Provisioning Email Update, subscription {DEMO_SUBSCRIPTION} ==\n"
    ))?;
    say(&output::render_view(
        &updates,
        &output::transactions_kind(),
        format,
        clock,
    )?)?;
    say(&format!(
        "\nExplore further: provledger --store {} transactions --status failed\n                 provledger --store {} history --subscription {DEMO_SUBSCRIPTION}\n                 provledger --store {} verify\n",
        provledger_store::redact_url(&url),
        provledger_store::redact_url(&url),
        provledger_store::redact_url(&url)
    ))?;
    Ok(EXIT_OK)
}
