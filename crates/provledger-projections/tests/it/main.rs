//! The integration tests of provledger-projections: one binary, one module
//! per concern. Ledgers are built with the domain's `decide` and appended to
//! an SQLite store in a temporary directory (`support`); the PostgreSQL tests
//! run when `PROVLEDGER_TEST_POSTGRES_URL` is set.

mod concurrency;
mod postgres;
mod replay;
mod scenario;
mod storage;
mod support;
