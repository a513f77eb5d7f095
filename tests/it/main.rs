//! Workspace-level tests: one binary, with modules for the tidy checks, the
//! data-driven seed scenarios and the replay properties.

mod scenarios;
mod tidy;
