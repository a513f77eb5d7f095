//! The application's one error type, and how each error maps to an exit
//! status (CLI) and an HTTP status.
//!
//! Rule refusals are not errors (they are recorded outcomes, exit 3); this
//! type covers bad input (2) and conflicts, storage and verification failures (4).

use provledger_domain::DomainError;
use provledger_projections::ProjectionError;
use provledger_store::StoreError;

/// Exit status: done.
pub const EXIT_OK: i32 = 0;
/// Exit status: bad input or usage; nothing was written.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit status: refused by a rule; the refusal was recorded (R12).
pub const EXIT_REFUSED: i32 = 3;
/// Exit status: conflict, storage or verification failure.
pub const EXIT_FAILURE: i32 = 4;

/// What went wrong in the application.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The request is invalid (domain validation). Exit 2, HTTP 400.
    #[error("{0}")]
    Domain(#[from] DomainError),
    /// The order does not exist. Exit 2, HTTP 404.
    #[error("unknown order {order_id}: no order with this id has been placed; check the id with `provledger lines`")]
    UnknownOrder {
        /// The order id asked for.
        order_id: String,
    },
    /// An input file or argument is unusable. Exit 2, HTTP 400.
    #[error("{0}")]
    BadInput(String),
    /// An idempotency key was used before with another request. Exit 2,
    /// HTTP 422.
    #[error("idempotency key {key:?} was already used for another request (transaction {transaction_id}); a key names one request — use a new key for a new request")]
    IdempotencyKeyReused {
        /// The key as given.
        key: String,
        /// The transaction the first request made.
        transaction_id: String,
    },
    /// A stored event cannot be decoded: the ledger holds something this
    /// build cannot read (integrity or version). Exit 4, HTTP 500.
    #[error("the event at position {position} (stream {stream_id}) cannot be decoded: {source}; run `provledger verify`, and restore from a verified export if it fails")]
    UndecodableEvent {
        /// Its position.
        position: u64,
        /// Its stream.
        stream_id: String,
        /// What is wrong.
        #[source]
        source: provledger_domain::DecodeError,
    },
    /// The stream kept changing under us. Exit 4, HTTP 409.
    #[error("order {order_id} kept changing while the command was decided ({attempts} attempts); retry the command")]
    ConflictRetriesExhausted {
        /// The order.
        order_id: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The event store failed. Exit 4 (2 for an invalid URL), HTTP 500 (409 conflict).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A read model failed. Exit 4, HTTP 500.
    #[error("{0}")]
    Projection(#[from] ProjectionError),
    /// The hash chain does not verify. Exit 4.
    #[error("verification failed at position {position}: {reason}")]
    VerificationFailed {
        /// First broken position.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The ledger does not match a checkpoint, or evidence does not check
    /// out (a bad signature, a failing proof). Exit 4.
    #[error("evidence check failed: {reason}")]
    Evidence {
        /// What does not match.
        reason: String,
    },
    /// A group commit's transaction failed (or the committer stopped)
    /// before this command was written: nothing of it was stored, so it is
    /// safe to retry. Exit 4, HTTP 503.
    #[error("the group commit carrying this command failed and nothing of it was written: {reason}; retry the command")]
    BatchFailed {
        /// What went wrong with the batch.
        reason: String,
    },
    /// Something inside provledger failed that no input caused. Exit 4,
    /// HTTP 500.
    #[error("internal error: {0}; please report it")]
    Internal(String),
    /// Reading or writing a file failed. Exit 2 for a missing input, else 4.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl AppError {
    /// The CLI exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Domain(_)
            | AppError::UnknownOrder { .. }
            | AppError::BadInput(_)
            | AppError::IdempotencyKeyReused { .. } => EXIT_BAD_INPUT,
            AppError::Store(StoreError::InvalidUrl { .. })
            | AppError::Projection(
                ProjectionError::InvalidUrl { .. } | ProjectionError::InvalidQuery { .. },
            ) => EXIT_BAD_INPUT,
            AppError::Store(
                StoreError::CannotOpen { .. }
                | StoreError::NoLedger { .. }
                | StoreError::NotALedger { .. },
            )
            | AppError::Projection(
                ProjectionError::Store(
                    StoreError::CannotOpen { .. }
                    | StoreError::NoLedger { .. }
                    | StoreError::NotALedger { .. },
                )
                | ProjectionError::NotReady { .. },
            ) => EXIT_BAD_INPUT,
            // An input file that is missing, unreadable or not text is bad input.
            AppError::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::InvalidData
                        | std::io::ErrorKind::PermissionDenied
                        | std::io::ErrorKind::IsADirectory
                ) =>
            {
                EXIT_BAD_INPUT
            }
            _ => EXIT_FAILURE,
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            AppError::UnknownOrder { .. } => 404,
            AppError::IdempotencyKeyReused { .. } => 422,
            AppError::Domain(_) | AppError::BadInput(_) => 400,
            AppError::Store(StoreError::Conflict { .. })
            | AppError::ConflictRetriesExhausted { .. } => 409,
            AppError::Store(StoreError::InvalidUrl { .. })
            | AppError::Projection(
                ProjectionError::InvalidUrl { .. } | ProjectionError::InvalidQuery { .. },
            ) => 400,
            AppError::BatchFailed { .. } => 503,
            _ => 500,
        }
    }

    /// An internal failure (not the caller's input).
    pub fn internal(message: impl Into<String>) -> AppError {
        AppError::Internal(message.into())
    }

    /// Wrap an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> AppError {
        AppError::Io {
            context: context.into(),
            source,
        }
    }
}
