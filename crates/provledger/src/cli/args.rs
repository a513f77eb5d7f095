//! The command line's arguments: the clap definitions of every command and
//! option. They are a contract (DESIGN.md §3, docs/cli.md): scripts depend
//! on these names. Turning them into validated commands is `crate::input`'s
//! job; running them is the dispatcher's (`cli::run`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

/// Default store when neither `--store`, `--db` nor `PROVLEDGER_STORE` is given.
pub const DEFAULT_STORE: &str = "sqlite:provledger.db";

/// provledger: an append-only, hash-chained ledger of subscription provisioning.
#[derive(Debug, Parser)]
#[command(
    name = "provledger",
    version,
    about = "provledger: an append-only, hash-chained ledger of subscription provisioning",
    long_about = None
)]
pub struct Cli {
    /// Store URL: sqlite:PATH or postgres://USER@HOST:PORT/DB [env: PROVLEDGER_STORE].
    /// An explicit --store or --db wins over the environment.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Shorthand for --store sqlite:PATH.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "store")]
    pub db: Option<PathBuf>,
    /// Output format of reads (and of write results).
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub format: Format,
    /// The command.
    #[command(subcommand)]
    pub command: TopCommand,
}

/// Options every write command takes.
#[derive(Debug, Args, Clone)]
pub struct WriteOpts {
    /// The acting user's email.
    #[arg(long = "as", env = "PROVLEDGER_AS", value_name = "EMAIL")]
    pub actor: String,
    /// Business time of the action (RFC 3339, or YYYY-MM-DD for midnight
    /// UTC): simulated ledgers only; a live ledger uses its own clock.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// A retry of the same request with the same key returns the first
    /// result and appends nothing; the key is the acting user's, and
    /// reusing it for another request is refused.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Create an empty ledger (the only command that creates one), recording
    /// whose clock dates its commands.
    Init {
        /// `live` (default): the ledger's own clock dates every command and
        /// `--at`/`--now` are refused. `simulated`: callers give the time
        /// (demos, scenario scripts, tests); every view says so.
        #[arg(long, value_name = "MODE", default_value = "live")]
        clock: String,
        /// Create the tables only, for `import` to fill with another ledger's
        /// export, whose first event (its `LedgerCreated`) brings its clock mode.
        #[arg(long, conflicts_with = "clock")]
        for_import: bool,
    },
    /// Orders (R1).
    #[command(subcommand)]
    Order(OrderCmd),
    /// Provisioning contacts (R4).
    #[command(subcommand)]
    Contact(ContactCmd),
    /// Provisioning emails (R3).
    #[command(subcommand)]
    Email(EmailCmd),
    /// Organisations (R5: the Point of No Return).
    #[command(subcommand)]
    Org(OrgCmd),
    /// Support cases (R10).
    #[command(subcommand)]
    Case(CaseCmd),
    /// The setup wizard (R13–R17) and service setup (R18).
    #[command(subcommand)]
    Setup(SetupCmd),
    /// "Provision and start billing" (R18): activate the order's
    /// subscriptions and start billing for every purchased service.
    Provision {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
    /// Enterprise subdomains (R18).
    #[command(subcommand)]
    Subdomain(SubdomainCmd),
    /// Run what is due: R2 emails, R7 closures, R11 escalations. Idempotent.
    Tick {
        /// The time to run at (RFC 3339): simulated ledgers only; default now.
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
    /// Line state (point-in-time with --as-of).
    Lines {
        /// Only this order.
        #[arg(long)]
        order: Option<String>,
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
        /// State as of this time (RFC 3339), replayed from the events.
        #[arg(long, value_name = "TIME", conflicts_with = "as_of_position")]
        as_of: Option<String>,
        /// State as of this global position, replayed from the events.
        #[arg(long, value_name = "POSITION")]
        as_of_position: Option<u64>,
    },
    /// The Transaction Manager (R9).
    Transactions {
        /// Transaction type, e.g. provisioning_email_update.
        #[arg(long = "type", value_name = "TYPE")]
        tx_type: Option<String>,
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
        /// Only this order.
        #[arg(long)]
        order: Option<String>,
        /// success, failed or pending.
        #[arg(long)]
        status: Option<String>,
        /// Submitted at or after (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Submitted at or before (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Every event of an order or a subscription, with position and hash.
    History {
        /// The subscription.
        #[arg(long, required_unless_present = "order", conflicts_with = "order")]
        subscription: Option<String>,
        /// The order.
        #[arg(long)]
        order: Option<String>,
        /// Only events that occurred up to this time (RFC 3339).
        #[arg(long, value_name = "TIME", conflicts_with = "as_of_position")]
        as_of: Option<String>,
        /// Only events up to this global position.
        #[arg(long, value_name = "POSITION")]
        as_of_position: Option<u64>,
    },
    /// Recompute the hash chain and the Merkle tree; report the first broken
    /// position. With --against: also prove the ledger still holds a kept
    /// checkpoint's exact prefix and extends it.
    Verify {
        /// A checkpoint file written by `checkpoint` (needs --pubkey).
        #[arg(long, value_name = "FILE", requires = "pubkey")]
        against: Option<PathBuf>,
        /// The public key (PREFIX.pub) the checkpoint must be signed with.
        #[arg(long, value_name = "FILE", requires = "against")]
        pubkey: Option<PathBuf>,
    },
    /// Create an Ed25519 key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Sign the current tree head {ledger id, clock mode, size, root, head
    /// hash, time} and write it as a small JSON checkpoint to keep elsewhere.
    Checkpoint {
        /// The secret key (PREFIX.key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the checkpoint.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a self-contained evidence bundle for one subscription: every
    /// event of its order, each with an inclusion proof against a signed
    /// checkpoint. Check it offline with `provledger-verify`.
    Evidence {
        /// The subscription.
        #[arg(long)]
        subscription: String,
        /// The secret key (PREFIX.key) that signs the bundle's checkpoint.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the bundle.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the projections: bring every read model up to date (a projection
    /// worker). Several workers may share a database; each event is applied
    /// once, and a worker that dies leaves the last committed checkpoint.
    Project {
        /// Keep following the log, polling for new events.
        #[arg(long)]
        follow: bool,
        /// With --follow: how long to wait when there is nothing new.
        #[arg(long, value_name = "MS", default_value_t = 500)]
        poll_ms: u64,
        /// With --follow: stop once the read models have reached this position.
        #[arg(long, value_name = "POSITION")]
        until_position: Option<u64>,
        /// Events applied per read-model transaction (default 5000).
        #[arg(long, value_name = "EVENTS")]
        batch_size: Option<usize>,
    },
    /// Rebuild every read model from position 0.
    Rebuild,
    /// Write every event as JSON Lines, hashes included.
    Export {
        /// Output file (`-` for stdout); never the ledger itself.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Append the events of a JSON Lines export, checking every hash.
    Import {
        /// Input file (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Copy a whole ledger to another store (SQLite ⇄ PostgreSQL), position
    /// for position with hashes preserved, then verify the copy. The target
    /// must be empty.
    Migrate {
        /// Source store URL.
        #[arg(long, value_name = "URL")]
        from: String,
        /// Target store URL (must hold no events).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Run a scenario script (JSON Lines of steps; see docs/cli.md).
    Run {
        /// The script (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Build a ledger from fixtures/ in a fresh store and show the views.
    Demo,
    /// Serve the HTTP API and the web Transaction Manager (docs/http.md).
    Serve(crate::http::ServeArgs),
    /// Bearer tokens for the HTTP API: create, list, revoke.
    #[command(subcommand)]
    Token(crate::http::TokenCmd),
}

/// `order …`
#[derive(Debug, Subcommand)]
pub enum OrderCmd {
    /// Place an order from a JSON file (R1).
    Place {
        /// The order file (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `contact …`
#[derive(Debug, Subcommand)]
pub enum ContactCmd {
    /// Change a line's provisioning contact email (R4).
    Change {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Line id.
        #[arg(long)]
        line: String,
        /// The new provisioning contact email.
        #[arg(long)]
        email: String,
        /// Apply the change to every line of the order.
        #[arg(long)]
        all_lines: bool,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `email …`
#[derive(Debug, Subcommand)]
pub enum EmailCmd {
    /// Resend a line's provisioning email (R3).
    Resend {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Line id.
        #[arg(long)]
        line: String,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `org …`
#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    /// Map the order to an organisation: the Point of No Return (R5).
    Onboard {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Organisation id.
        #[arg(long)]
        org: String,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `case …`
#[derive(Debug, Subcommand)]
pub enum CaseCmd {
    /// Open a support case (R10).
    Open {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Line id.
        #[arg(long)]
        line: String,
        /// resend-provisioning-email or change-provisioning-contact-email.
        #[arg(long = "type", value_name = "TYPE")]
        request_type: String,
        /// Free text.
        #[arg(long)]
        note: Option<String>,
        /// A file to attach (repeatable); its name, size and SHA-256 are recorded.
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<PathBuf>,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
    /// Resolve a support case (R10): the Transaction Manager then shows it
    /// as success (resent, contact-changed) or failed (rejected).
    Resolve {
        /// The case id, e.g. WO-1001-C1.
        #[arg(long = "case", value_name = "ID")]
        case_id: String,
        /// resent, contact-changed or rejected.
        #[arg(long)]
        outcome: String,
        /// Free text.
        #[arg(long)]
        note: Option<String>,
        /// Actor (support), time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `setup …`
#[derive(Debug, Subcommand)]
pub enum SetupCmd {
    /// Record that the setup wizard was started (stops the R11 escalation).
    Start {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
    /// Complete the setup wizard from a file (R13–R17): who sets up, the
    /// partner and customer organisations, the customer administrator, the
    /// confirmations. Onboards the order (PONR), or hands the setup over.
    Complete {
        /// The setup file (`-` for stdin); see docs/cli.md.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
    /// Save the service settings (R18): calling, meeting, enterprise
    /// subdomain (reserved for the organisation).
    Services {
        /// Order id.
        #[arg(long)]
        order: String,
        /// The service settings file (`-` for stdin); see docs/cli.md.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Actor, time, idempotency key.
        #[command(flatten)]
        write: WriteOpts,
    },
}

/// `subdomain …`
#[derive(Debug, Subcommand)]
pub enum SubdomainCmd {
    /// Whether a subdomain is available, taken or invalid (R18).
    Check {
        /// The subdomain, e.g. contoso.
        name: String,
    },
}
