//! The decider: given an order's state and a command, which events happen.
//!
//! [`decide`] is pure and total: it reads no clock and does no I/O. Before the
//! command itself it yields the scheduled transitions due at or before the
//! command's time ([`crate::due_events`]), so the command sees the line as it
//! was at that moment. Rule refusals (R3, R5, R6) are *events*
//! ([`Event::CommandRefused`], R12); only bad input is an `Err`.

use crate::{
    due_events, evolve, Actor, Command, Context, DomainError, Email, Event, LineId, Order,
    OrderState, RefusalCode, RefusedAction, PROVISIONING_SENDER,
};

/// Decide the events for `command` at `ctx.at` by `ctx.actor`.
///
/// Returns the due scheduled events (if any) followed by the command's own
/// events: its effects, or one `CommandRefused`.
pub fn decide(
    state: &OrderState,
    command: Command,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    if let Some(latest) = state.last_event_at {
        if ctx.at < latest {
            return Err(DomainError::OutOfOrder { at: ctx.at, latest });
        }
    }
    let actor = match &ctx.actor {
        Actor::User(email) => email.clone(),
        Actor::System => {
            return Err(DomainError::UserRequired {
                command: command.name(),
            })
        }
    };
    if let Command::PlaceOrder(order) = command {
        if let Some(existing) = &state.order {
            return Err(DomainError::OrderAlreadyPlaced {
                order_id: existing.order_id.to_string(),
            });
        }
        // `ValidOrder`'s fields are public, so it may not have come through
        // `OrderRequest::validate`: a line id twice would make the schedule
        // unable to tell the lines apart.
        if order.lines.is_empty() {
            return Err(DomainError::InvalidField {
                field: "lines".into(),
                reason: "an order needs at least one line".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for (i, line) in order.lines.iter().enumerate() {
            crate::command::check_rsd(&format!("lines[{i}].rsd"), line.rsd)?;
            if !seen.insert(&line.line_id) {
                return Err(DomainError::InvalidField {
                    field: format!("lines[{i}].line_id"),
                    reason: format!("line {} appears twice in the order", line.line_id),
                });
            }
        }
        return Ok(vec![Event::OrderPlaced {
            at: ctx.at,
            order_id: order.order_id,
            ordering_contact: order.ordering_contact,
            partner: order.partner,
            end_customer: order.end_customer,
            partner_contacts: order.partner_contacts,
            distributor_contacts: order.distributor_contacts,
            lines: order.lines,
        }]);
    }
    let Some(order) = &state.order else {
        return Err(DomainError::OrderNotPlaced);
    };
    check_line_exists(order, &command)?;

    let mut events = due_events(state, ctx.at);
    let caught_up = events.iter().fold(state.clone(), evolve);
    let order = caught_up
        .order
        .as_ref()
        .ok_or(DomainError::OrderNotPlaced)?;
    events.extend(decide_on_order(order, command, &actor, ctx)?);
    Ok(events)
}

fn check_line_exists(order: &Order, command: &Command) -> Result<(), DomainError> {
    let line_id = match command {
        Command::ChangeContact { line_id, .. }
        | Command::ResendEmail { line_id }
        | Command::OpenSupportCase { line_id, .. } => line_id,
        _ => return Ok(()),
    };
    if order.line(line_id).is_some() {
        Ok(())
    } else {
        Err(DomainError::UnknownLine {
            order_id: order.order_id.to_string(),
            line_id: line_id.to_string(),
            known: order
                .lines
                .iter()
                .map(|l| l.line_id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// A support case's note: at most 4000 characters, none that disguise text.
fn check_note(note: Option<&str>) -> Result<(), DomainError> {
    let Some(note) = note else {
        return Ok(());
    };
    let reason = if let Some(reason) = crate::spoofing_reason(note) {
        reason
    } else if note.chars().count() > 4000 {
        "a note may have at most 4000 characters".to_string()
    } else {
        return Ok(());
    };
    Err(DomainError::InvalidField {
        field: "note".into(),
        reason,
    })
}

/// A refusal in the making.
struct Refusal {
    code: RefusalCode,
    reason: String,
}

fn no_access(order: &Order, actor: &Email, what: &str) -> Refusal {
    Refusal {
        code: RefusalCode::NoAccess,
        reason: format!(
            "{actor} has no access to order {}: only the person who placed the order and the partner and distributor contacts listed on it can {what}. Contact the person who placed the order, {}, and ask them to do it",
            order.order_id, order.ordering_contact
        ),
    }
}

fn after_ponr(order: &Order, what: &str) -> Refusal {
    let org = order
        .org_id
        .as_ref()
        .map(|o| o.to_string())
        .unwrap_or_default();
    Refusal {
        code: RefusalCode::AfterPonr,
        reason: format!(
            "order {} is already onboarded to organisation {org} (Point of No Return), so {what} is no longer possible here. The provisioning contact or an administrator can complete provisioning by signing in to admin.webex.com directly",
            order.order_id
        ),
    }
}

/// R6 then R5: the checks shared by resend, change and support cases.
/// `verb` completes "… can {verb}"; `gerund` completes "so {gerund} is no longer possible".
fn guard(order: &Order, actor: &Email, verb: &str, gerund: &str) -> Option<Refusal> {
    if !order.has_access(actor) {
        Some(no_access(order, actor, verb))
    } else if order.past_ponr() {
        Some(after_ponr(order, gerund))
    } else {
        None
    }
}

fn refused(
    ctx: &Context,
    action: RefusedAction,
    line_id: Option<LineId>,
    refusal: Refusal,
    requested_email: Option<Email>,
    applied_to_all_lines: bool,
) -> Vec<Event> {
    vec![Event::CommandRefused {
        at: ctx.at,
        action,
        line_id,
        code: refusal.code,
        reason: refusal.reason,
        requested_email,
        applied_to_all_lines,
    }]
}

fn decide_on_order(
    order: &Order,
    command: Command,
    actor: &Email,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::PlaceOrder(_) => Err(DomainError::OrderAlreadyPlaced {
            order_id: order.order_id.to_string(),
        }),
        Command::ChangeContact {
            line_id,
            new_email,
            apply_to_all_lines,
        } => {
            if let Some(refusal) = guard(
                order,
                actor,
                "change the provisioning contact",
                "changing the provisioning contact",
            ) {
                return Ok(refused(
                    ctx,
                    RefusedAction::ChangeContact,
                    Some(line_id),
                    refusal,
                    Some(new_email),
                    apply_to_all_lines,
                ));
            }
            // R4: the target line, or every line of the order with *apply to all*.
            let targets: Vec<_> = order
                .lines
                .iter()
                .filter(|l| apply_to_all_lines || l.line_id == line_id)
                .filter(|l| l.provisioning_contact != new_email)
                .collect();
            if targets.is_empty() {
                return Err(DomainError::NoChange {
                    line_id: line_id.to_string(),
                    email: new_email.to_string(),
                });
            }
            Ok(targets
                .into_iter()
                .map(|line| Event::ProvisioningContactChanged {
                    at: ctx.at,
                    line_id: line.line_id.clone(),
                    old_email: line.provisioning_contact.clone(),
                    new_email: new_email.clone(),
                    applied_to_all_lines: apply_to_all_lines,
                    email_sent: line.initial_email_sent_at.is_some(),
                })
                .collect())
        }
        Command::ResendEmail { line_id } => {
            if let Some(refusal) = guard(
                order,
                actor,
                "resend the provisioning email",
                "resending the provisioning email",
            ) {
                return Ok(refused(
                    ctx,
                    RefusedAction::ResendEmail,
                    Some(line_id),
                    refusal,
                    None,
                    false,
                ));
            }
            let Some(line) = order.line(&line_id) else {
                return Ok(Vec::new());
            };
            if line.initial_email_sent_at.is_none() {
                // R3 (decided): nothing to resend before the RSD.
                let refusal = Refusal {
                    code: RefusalCode::InitialEmailNotSent,
                    reason: format!(
                        "the initial provisioning email for line {} has not been sent yet: it will be sent to {} on the requested start date {}. To send it to someone else, change the provisioning contact instead",
                        line.line_id, line.provisioning_contact, line.rsd
                    ),
                };
                return Ok(refused(
                    ctx,
                    RefusedAction::ResendEmail,
                    Some(line_id),
                    refusal,
                    None,
                    false,
                ));
            }
            Ok(vec![Event::ProvisioningEmailResent {
                at: ctx.at,
                line_id,
                to: line.provisioning_contact.clone(),
                sender: PROVISIONING_SENDER.to_string(),
            }])
        }
        Command::OnboardOrg { org_id } => {
            if !order.has_access(actor) {
                return Ok(refused(
                    ctx,
                    RefusedAction::OnboardOrg,
                    None,
                    no_access(order, actor, "onboard the order"),
                    None,
                    false,
                ));
            }
            if let Some(existing) = &order.org_id {
                let refusal = Refusal {
                    code: RefusalCode::AlreadyOnboarded,
                    reason: format!(
                        "order {} is already onboarded to organisation {existing}; an order is mapped to one organisation. An administrator can manage it at admin.webex.com",
                        order.order_id
                    ),
                };
                return Ok(refused(
                    ctx,
                    RefusedAction::OnboardOrg,
                    None,
                    refusal,
                    None,
                    false,
                ));
            }
            Ok(vec![Event::OrgOnboarded { at: ctx.at, org_id }])
        }
        Command::OpenSupportCase {
            line_id,
            request_type,
            note,
            attachments,
        } => {
            if let Some(refusal) = guard(
                order,
                actor,
                "open a provisioning support case",
                "opening a provisioning support case",
            ) {
                return Ok(refused(
                    ctx,
                    RefusedAction::OpenSupportCase,
                    Some(line_id),
                    refusal,
                    None,
                    false,
                ));
            }
            check_note(note.as_deref())?;
            if attachments.len() > 20 {
                return Err(DomainError::InvalidField {
                    field: "attach".into(),
                    reason: "a case may have at most 20 attachments".into(),
                });
            }
            Ok(vec![Event::SupportCaseOpened {
                at: ctx.at,
                case_id: format!("{}-C{}", order.order_id, order.support_cases + 1),
                line_id,
                request_type,
                note,
                attachments,
            }])
        }
        Command::ResolveSupportCase {
            case_id,
            outcome,
            note,
        } => {
            let Some(case) = order.cases.iter().find(|c| c.case_id == case_id.trim()) else {
                return Err(DomainError::UnknownCase {
                    order_id: order.order_id.to_string(),
                    case_id,
                    known: if order.cases.is_empty() {
                        "none".to_string()
                    } else {
                        order
                            .cases
                            .iter()
                            .map(|c| c.case_id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                });
            };
            if let Some(done) = case.outcome {
                return Err(DomainError::CaseAlreadyResolved {
                    case_id: case.case_id.clone(),
                    outcome: done.as_str().to_string(),
                });
            }
            check_note(note.as_deref())?;
            Ok(vec![Event::SupportCaseResolved {
                at: ctx.at,
                case_id: case.case_id.clone(),
                line_id: case.line_id.clone(),
                outcome,
                note,
            }])
        }
        Command::StartSetup => {
            if !order.may_set_up(actor) {
                return Ok(refused(
                    ctx,
                    RefusedAction::StartSetup,
                    None,
                    no_access(order, actor, "start the setup"),
                    None,
                    false,
                ));
            }
            if order.past_ponr() {
                return Ok(refused(
                    ctx,
                    RefusedAction::StartSetup,
                    None,
                    after_ponr(order, "starting the setup again"),
                    None,
                    false,
                ));
            }
            Ok(vec![Event::SetupStarted { at: ctx.at }])
        }
    }
}
