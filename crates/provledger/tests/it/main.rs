//! Integration tests of the `provledger` binary: every command, every exit
//! status, the JSON contract of DESIGN.md §3.

mod browser;
mod cli;
mod evidence;
mod faults;
mod group_commit;
mod hardening;
mod http;
mod progress;
mod scale_out;
mod setup;
mod trust;
mod workers;
