//! Raw input → validated commands, once for every channel.
//!
//! The command line (clap arguments and files), scenario scripts (JSON
//! Lines steps) and the HTTP API (JSON bodies) all hand raw strings here and
//! get back the domain's validated command and the order it targets, so a
//! field is checked the same way — with the same message — whichever way it
//! came in.

use provledger_domain::{
    case_order_id, Attachment, CaseOutcome, Command, Email, LedgerCommand, LineId, OrderId,
    OrderRequest, OrgId, ServicesRequest, SetupCommand, SetupRequest, SupportRequestType,
};

use crate::AppError;

/// A validated command and the order it targets.
pub type Targeted = (OrderId, LedgerCommand);

/// R1: place the order of an order file.
pub fn place_order(request: &OrderRequest) -> Result<Targeted, AppError> {
    let order = request.validate()?;
    Ok((order.order_id.clone(), Command::PlaceOrder(order).into()))
}

/// R4: change a line's provisioning contact.
pub fn change_contact(
    order: &str,
    line: &str,
    email: &str,
    all_lines: bool,
) -> Result<Targeted, AppError> {
    Ok((
        OrderId::parse(order)?,
        Command::ChangeContact {
            line_id: LineId::parse(line)?,
            new_email: Email::parse(email)?,
            apply_to_all_lines: all_lines,
        }
        .into(),
    ))
}

/// R3: resend a line's provisioning email.
pub fn resend_email(order: &str, line: &str) -> Result<Targeted, AppError> {
    Ok((
        OrderId::parse(order)?,
        Command::ResendEmail {
            line_id: LineId::parse(line)?,
        }
        .into(),
    ))
}

/// R5: onboard the order to an organisation.
pub fn onboard_org(order: &str, org: &str) -> Result<Targeted, AppError> {
    Ok((
        OrderId::parse(order)?,
        Command::OnboardOrg {
            org_id: OrgId::parse(org)?,
        }
        .into(),
    ))
}

/// R10: open a support case.
pub fn open_case(
    order: &str,
    line: &str,
    request_type: &str,
    note: Option<String>,
    attachments: Vec<Attachment>,
) -> Result<Targeted, AppError> {
    Ok((
        OrderId::parse(order)?,
        Command::OpenSupportCase {
            line_id: LineId::parse(line)?,
            request_type: SupportRequestType::parse(request_type)?,
            note,
            attachments,
        }
        .into(),
    ))
}

/// R10: resolve a support case (its id names its order).
pub fn resolve_case(
    case_id: &str,
    outcome: &str,
    note: Option<String>,
) -> Result<Targeted, AppError> {
    Ok((
        case_order_id(case_id)?,
        Command::ResolveSupportCase {
            case_id: case_id.trim().to_string(),
            outcome: CaseOutcome::parse(outcome)?,
            note,
        }
        .into(),
    ))
}

/// R13: the setup wizard was started.
pub fn start_setup(order: &str) -> Result<Targeted, AppError> {
    Ok((OrderId::parse(order)?, Command::StartSetup.into()))
}

/// R13–R17: complete (or hand over) the setup wizard.
pub fn complete_setup(request: &SetupRequest) -> Result<Targeted, AppError> {
    let setup = request.validate()?;
    Ok((setup.order_id().clone(), SetupCommand::Setup(setup).into()))
}

/// R18: save the service settings.
pub fn configure_services(order: &str, request: &ServicesRequest) -> Result<Targeted, AppError> {
    Ok((
        OrderId::parse(order)?,
        SetupCommand::ConfigureServices(request.validate()?).into(),
    ))
}

/// R18: provision and start billing.
pub fn provision(order: &str) -> Result<Targeted, AppError> {
    Ok((OrderId::parse(order)?, SetupCommand::Provision.into()))
}
