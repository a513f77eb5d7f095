//! Workspace-level tests: one binary, with modules for the tidy checks, the
//! data-driven seed scenarios, the replay and setup properties and the
//! backend equivalence (SQLite ⇄ PostgreSQL).

mod import_props;
mod postgres;
mod replay;
mod scenarios;
mod setup_props;
mod tidy;
