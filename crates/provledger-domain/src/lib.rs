//! The pure domain core of provledger: value types, commands, events and the
//! rules R1–R18 of DESIGN.md as `decide` / `evolve` (one order stream) and
//! `decide_setup` (the setup wizard, service setup and provisioning, which
//! also write organisation and reservation streams).
//!
//! This crate exists so that every rule lives in one place that can be tested
//! without a database or a clock. Invariants (checked by the workspace tidy
//! tests): it does no I/O, reads no clock (time arrives in [`Context`]),
//! knows no SQL and depends on no other provledger crate.

#![warn(missing_docs)]

mod access;
mod admissible;
mod clock;
mod command;
mod decide;
mod email;
mod error;
mod event;
mod ids;
mod ledger_command;
mod offer;
mod organisation;
mod reservation;
mod schedule;
mod setup;
mod setup_decide;
mod state;
mod stream;
mod subdomain;
mod text;

pub use access::{
    admit_token_event, named_on, Principal, Role, TokenStreamState, WriteKind, TOKEN_STREAM_PREFIX,
};
pub use admissible::{
    admissible, admissible_org, admissible_reservation, admit, AdmissionState, Candidate,
    Inadmissible,
};
pub use clock::{ClockMode, LedgerEvent, LEDGER_EVENT_TYPES, LEDGER_STREAM};
pub use command::{
    case_order_id, check_rsd, Actor, Command, Context, LineRequest, OrderRequest, ValidOrder,
    RSD_MAX, RSD_MIN,
};
pub use decide::decide;
pub use email::Email;
pub use error::{DecodeError, DomainError};
pub use event::{
    Attachment, CaseOutcome, Event, LineSpec, RefusalCode, RefusedAction, SupportRequestType,
    EVENT_TYPES, PROVISIONING_SENDER, SCHEMA_VERSION,
};
pub use ids::{LineId, OrderId, OrgId, SubscriptionId, ORDER_STREAM_PREFIX};
pub use ledger_command::{
    command_needs, decide_command, latest_event_at, refuse_for_role, LedgerCommand,
};
pub use offer::Offer;
pub use organisation::{
    evolve_org, OrgEvent, OrgKind, OrgState, Organisation, ORG_EVENT_TYPES, ORG_STREAM_PREFIX,
};
pub use reservation::{
    evolve_reservation, Holder, ReservationEvent, ReservationKey, ReservationState,
    RESERVATION_EVENT_TYPES, RESERVATION_STREAM_PREFIX,
};
pub use schedule::{due_events, escalation_due, next_due, rsd_start};
pub use setup::{
    CallingRequest, CallingSettings, EnterpriseRequest, MeetingRequest, MeetingSettings,
    NewOrgRequest, OrgChoice, OrgChoiceRequest, ServicesRequest, SetupCommand, SetupRequest,
    ValidServices, ValidSetup, WhoSetsUp, WizardAnswers,
};
pub use setup_decide::{
    decide_setup, describe_services, setup_needs, SetupDecision, SetupNeeds, SetupView,
};
pub use state::{
    evolve, Line, LineStatus, Order, OrderState, ServicesRecord, SetupRecord, SupportCase,
};
pub use stream::StreamState;
pub use subdomain::{Subdomain, SUBDOMAIN_MAX_LEN, SUBDOMAIN_MIN_LEN};
pub use text::{find_spoofing_char, is_spoofing_char, spoofing_reason};
