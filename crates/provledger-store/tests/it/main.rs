//! Integration tests of the event store: the conformance suite against each
//! backend, plus backend-specific behaviour. One test binary (`it`) so the
//! crate links once.

mod crash;
mod postgres;
mod sqlite;
