//! The domain crate's one integration test binary.
//!
//! Rule tests are written given / when / then ([`harness`]) and named for the
//! rule of DESIGN.md they check (`r5_…`); [`setup`] runs the multi-stream
//! setup decider the same way; [`props`] holds the property tests and
//! [`docs`] checks that docs/events.md matches the serializer.

mod harness;

mod access;
mod admissible;
mod contact;
mod docs;
mod emails;
mod ledger;
mod order;
mod policy;
mod props;
mod props_setup;
mod setup;
mod support;
