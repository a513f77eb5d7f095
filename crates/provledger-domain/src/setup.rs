//! The setup wizard and the service setup wizard as data: what a person fills
//! in (R13–R18), validated field by field before anything is decided.
//!
//! An abandoned wizard saves nothing (R13), so the CLI takes the whole wizard
//! as one file ([`SetupRequest`], `setup complete --file`), and the service
//! settings as another ([`ServicesRequest`], `setup services --file`). Their
//! `validate` methods turn every bad field into a [`DomainError`] naming the
//! field — bad input, nothing written. What the answers *mean* given the
//! ledger's state (is this email free? is this organisation yours?) is for
//! [`crate::decide_setup`].

use serde::{Deserialize, Serialize};

use crate::{DomainError, Email, OrderId, OrgId, Subdomain};

/// R14: who sets up, as chosen in the wizard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhoSetsUp {
    /// "I'll set it up": the partner user completing the wizard.
    Me,
    /// "Someone else in my company": the setup is handed to another email.
    SomeoneElse,
    /// "The customer": the customer sets up the services, and the partner
    /// has no access to manage the customer organisation.
    Customer,
}

impl WhoSetsUp {
    /// Parse the file's spelling: `me`, `someone_else` (also `someone-else`,
    /// `someone else`) or `customer`, in any case.
    pub fn parse(raw: &str) -> Result<WhoSetsUp, DomainError> {
        match raw.trim().to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
            "me" => Ok(WhoSetsUp::Me),
            "someone_else" => Ok(WhoSetsUp::SomeoneElse),
            "customer" => Ok(WhoSetsUp::Customer),
            _ => Err(DomainError::InvalidField {
                field: "who_sets_up".into(),
                reason: format!(
                    "{raw:?} is not a choice; use me (I'll set it up), someone_else (someone else in my company) or customer (the customer sets up)"
                ),
            }),
        }
    }

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            WhoSetsUp::Me => "me",
            WhoSetsUp::SomeoneElse => "someone_else",
            WhoSetsUp::Customer => "customer",
        }
    }
}

/// R15: a new organisation, or an existing one to review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgChoice {
    /// Create a new organisation as part of the order.
    New {
        /// Its name; default: the order's partner (or end customer) name.
        name: Option<String>,
        /// Its administrator (partner organisations only); default: the
        /// user completing the wizard.
        admin_email: Option<Email>,
    },
    /// An existing organisation, by id.
    Existing(OrgId),
}

/// The wizard's answers once "someone else in my company" was not chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WizardAnswers {
    /// R14: `Me` or `Customer`.
    pub who_sets_up: WhoSetsUp,
    /// R15: the partner organisation.
    pub partner_org: OrgChoice,
    /// The customer organisation.
    pub customer_org: OrgChoice,
    /// R16: the customer administrator's email.
    pub customer_admin_email: Email,
}

/// A validated setup wizard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidSetup {
    /// R14: "someone else in my company": hand the setup to `to`.
    HandOver {
        /// The order.
        order_id: OrderId,
        /// Who takes over.
        to: Email,
    },
    /// R14–R17: the wizard completed to the end.
    Complete {
        /// The order.
        order_id: OrderId,
        /// The answers.
        answers: WizardAnswers,
    },
}

impl ValidSetup {
    /// The order the wizard was opened for.
    pub fn order_id(&self) -> &OrderId {
        match self {
            ValidSetup::HandOver { order_id, .. } | ValidSetup::Complete { order_id, .. } => {
                order_id
            }
        }
    }
}

/// The setup file (`setup complete --file`), before validation.
///
/// ```json
/// {"order_id": "WO-1001", "role": "partner", "who_sets_up": "me",
///  "partner_organisation": {"new": {"name": "Acme Partner"}},
///  "customer_organisation": {"new": {}},
///  "customer_admin_email": "admin@contoso.example",
///  "confirm_customer": true, "confirm_partner": true}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The order whose "Set up now" link was followed.
    pub order_id: String,
    /// R14: the role; only `partner` is modelled.
    #[serde(default)]
    pub role: Option<String>,
    /// R14: `me`, `someone_else` or `customer`.
    #[serde(default)]
    pub who_sets_up: Option<String>,
    /// R14: with `someone_else`, who takes over (an email in the same company).
    #[serde(default)]
    pub someone_else_email: Option<String>,
    /// R15: `{"new": {...}}` or `{"existing": "ORG-ID"}`.
    #[serde(default)]
    pub partner_organisation: Option<OrgChoiceRequest>,
    /// `{"new": {...}}` or `{"existing": "ORG-ID"}`.
    #[serde(default)]
    pub customer_organisation: Option<OrgChoiceRequest>,
    /// R16: the customer administrator's email.
    #[serde(default)]
    pub customer_admin_email: Option<String>,
    /// R17: the customer information was confirmed.
    #[serde(default)]
    pub confirm_customer: Option<bool>,
    /// R17: the partner information was confirmed.
    #[serde(default)]
    pub confirm_partner: Option<bool>,
}

/// An organisation choice in the setup file, before validation: exactly one
/// of `new` and `existing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgChoiceRequest {
    /// Create a new organisation.
    #[serde(default)]
    pub new: Option<NewOrgRequest>,
    /// Review an existing organisation, by id.
    #[serde(default)]
    pub existing: Option<String>,
}

/// A new organisation in the setup file, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrgRequest {
    /// Its name; default the order's partner (or end customer) name.
    #[serde(default)]
    pub name: Option<String>,
    /// Partner organisations: its administrator; default the acting user.
    #[serde(default)]
    pub admin_email: Option<String>,
}

fn invalid(field: &str, reason: impl Into<String>) -> DomainError {
    DomainError::InvalidField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn email_field(field: &str, raw: &str) -> Result<Email, DomainError> {
    Email::parse(raw).map_err(|e| invalid(field, e.to_string()))
}

/// A display name: trimmed, 1–200 characters, no control characters.
fn org_name(field: &str, raw: &str) -> Result<String, DomainError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(invalid(field, "the name is empty; give the organisation's name or leave the field out to use the name on the order"));
    }
    if value.chars().count() > 200 || value.chars().any(crate::is_spoofing_char) {
        return Err(invalid(
            field,
            "must be at most 200 characters with no control, bidirectional-override or invisible characters",
        ));
    }
    Ok(value.to_string())
}

impl OrgChoiceRequest {
    fn validate(&self, field: &str, partner: bool) -> Result<OrgChoice, DomainError> {
        match (&self.new, &self.existing) {
            (Some(new), None) => {
                let name = new
                    .name
                    .as_deref()
                    .map(|n| org_name(&format!("{field}.new.name"), n))
                    .transpose()?;
                let admin_email = match (&new.admin_email, partner) {
                    (None, _) => None,
                    (Some(raw), true) => Some(email_field(&format!("{field}.new.admin_email"), raw)?),
                    (Some(_), false) => {
                        return Err(invalid(
                            &format!("{field}.new.admin_email"),
                            "the customer organisation's administrator is customer_admin_email; remove this field",
                        ))
                    }
                };
                Ok(OrgChoice::New { name, admin_email })
            }
            (None, Some(raw)) => OrgId::parse(raw)
                .map(OrgChoice::Existing)
                .map_err(|e| invalid(&format!("{field}.existing"), e.to_string())),
            (Some(_), Some(_)) => Err(invalid(
                field,
                "choose either a new organisation ({\"new\": {...}}) or an existing one ({\"existing\": \"ORG-ID\"}), not both",
            )),
            (None, None) => Err(invalid(
                field,
                "choose a new organisation ({\"new\": {}}) or an existing one ({\"existing\": \"ORG-ID\"})",
            )),
        }
    }
}

impl SetupRequest {
    /// Validate every field; the first bad one is named in the error.
    ///
    /// With `someone_else` only `someone_else_email` may follow (the person
    /// taking over fills in the rest); otherwise both organisations, the
    /// customer administrator and both confirmations (R17) are required.
    pub fn validate(&self) -> Result<ValidSetup, DomainError> {
        let order_id =
            OrderId::parse(&self.order_id).map_err(|e| invalid("order_id", e.to_string()))?;
        match self.role.as_deref().map(|r| r.trim().to_ascii_lowercase()) {
            Some(role) if role == "partner" => {}
            Some(_) => {
                return Err(invalid(
                    "role",
                    "only the partner's path of the wizard is modelled (R14); write \"partner\" (I'm a partner)",
                ))
            }
            None => return Err(invalid("role", "missing; write \"partner\" (I'm a partner, R14)")),
        }
        let who = match &self.who_sets_up {
            Some(raw) => WhoSetsUp::parse(raw)?,
            None => {
                return Err(invalid(
                    "who_sets_up",
                    "missing; write me, someone_else or customer (R14)",
                ))
            }
        };
        if who == WhoSetsUp::SomeoneElse {
            let Some(raw) = &self.someone_else_email else {
                return Err(invalid(
                    "someone_else_email",
                    "missing; with who_sets_up someone_else give the email of the person in your company who takes the setup over",
                ));
            };
            let to = email_field("someone_else_email", raw)?;
            let leftovers = [
                ("partner_organisation", self.partner_organisation.is_some()),
                (
                    "customer_organisation",
                    self.customer_organisation.is_some(),
                ),
                ("customer_admin_email", self.customer_admin_email.is_some()),
                ("confirm_customer", self.confirm_customer.is_some()),
                ("confirm_partner", self.confirm_partner.is_some()),
            ];
            if let Some((field, _)) = leftovers.iter().find(|(_, present)| *present) {
                return Err(invalid(
                    field,
                    format!("the person taking over ({to}) fills this in when they complete the setup; remove it from a hand-over"),
                ));
            }
            return Ok(ValidSetup::HandOver { order_id, to });
        }
        if self.someone_else_email.is_some() {
            return Err(invalid(
                "someone_else_email",
                "only with who_sets_up someone_else; remove it",
            ));
        }
        let partner_org = match &self.partner_organisation {
            Some(choice) => choice.validate("partner_organisation", true)?,
            None => {
                return Err(invalid(
                    "partner_organisation",
                    "missing; on a first order create one ({\"new\": {}}), otherwise give the existing one ({\"existing\": \"ORG-ID\"}) (R15)",
                ))
            }
        };
        let customer_org = match &self.customer_organisation {
            Some(choice) => choice.validate("customer_organisation", false)?,
            None => {
                return Err(invalid(
                    "customer_organisation",
                    "missing; create one ({\"new\": {}}) or give the existing one ({\"existing\": \"ORG-ID\"})",
                ))
            }
        };
        let customer_admin_email = match &self.customer_admin_email {
            Some(raw) => email_field("customer_admin_email", raw)?,
            None => {
                return Err(invalid(
                    "customer_admin_email",
                    "missing; give the email of the customer's administrator (R16)",
                ))
            }
        };
        if let OrgChoice::New {
            admin_email: Some(partner_admin),
            ..
        } = &partner_org
        {
            if partner_admin.same_user(&customer_admin_email) {
                return Err(invalid(
                    "customer_admin_email",
                    format!("{customer_admin_email} is also the new partner organisation's administrator; a user belongs to one organisation at a time (R16), so give two different people"),
                ));
            }
        }
        for (field, confirmed) in [
            ("confirm_customer", self.confirm_customer),
            ("confirm_partner", self.confirm_partner),
        ] {
            if confirmed != Some(true) {
                return Err(invalid(
                    field,
                    "must be true: the customer and partner information is confirmed at the end of the wizard (R17); an unfinished wizard saves nothing (R13)",
                ));
            }
        }
        Ok(ValidSetup::Complete {
            order_id,
            answers: WizardAnswers {
                who_sets_up: who,
                partner_org,
                customer_org,
                customer_admin_email,
            },
        })
    }
}

/// R18: calling settings of the organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallingSettings {
    /// Country of the calling location, ISO 3166-1 alpha-2 in uppercase (`PL`).
    pub country: String,
    /// Name of the first calling location, 1–80 characters.
    pub location: String,
}

/// R18: meeting settings of the organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingSettings {
    /// Default meeting language, ISO 639-1 in lowercase (`pl`).
    pub language: String,
    /// Whether meetings may be recorded.
    pub recording: bool,
}

/// The service settings file (`setup services --file`), before validation.
///
/// ```json
/// {"calling": {"country": "PL", "location": "Warsaw HQ"},
///  "meeting": {"language": "pl", "recording": true},
///  "enterprise": {"subdomain": "contoso"}}
/// ```
///
/// Every section is optional **(decided)**: which apply depends on the
/// purchased services; `{}` confirms the subscription details only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesRequest {
    /// Calling settings.
    #[serde(default)]
    pub calling: Option<CallingRequest>,
    /// Meeting settings.
    #[serde(default)]
    pub meeting: Option<MeetingRequest>,
    /// Enterprise settings.
    #[serde(default)]
    pub enterprise: Option<EnterpriseRequest>,
}

/// Calling settings before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallingRequest {
    /// Country code, e.g. `PL`.
    pub country: String,
    /// Location name.
    pub location: String,
}

/// Meeting settings before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingRequest {
    /// Language code, e.g. `pl`.
    pub language: String,
    /// Whether meetings may be recorded (default false).
    #[serde(default)]
    pub recording: bool,
}

/// Enterprise settings before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseRequest {
    /// The subdomain to reserve (R18).
    pub subdomain: String,
}

/// Validated service settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidServices {
    /// Calling settings.
    pub calling: Option<CallingSettings>,
    /// Meeting settings.
    pub meeting: Option<MeetingSettings>,
    /// The subdomain to reserve.
    pub subdomain: Option<Subdomain>,
}

fn letters(field: &str, raw: &str, what: &str, upper: bool) -> Result<String, DomainError> {
    let value = raw.trim();
    if value.len() != 2 || !value.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(invalid(
            field,
            format!("{raw:?} is not {what}; write two letters"),
        ));
    }
    Ok(if upper {
        value.to_ascii_uppercase()
    } else {
        value.to_ascii_lowercase()
    })
}

impl ServicesRequest {
    /// Validate every field; the first bad one is named in the error.
    pub fn validate(&self) -> Result<ValidServices, DomainError> {
        let calling = match &self.calling {
            None => None,
            Some(c) => {
                let country = letters(
                    "calling.country",
                    &c.country,
                    "an ISO 3166-1 country code like PL",
                    true,
                )?;
                let location = c.location.trim();
                if location.is_empty()
                    || location.chars().count() > 80
                    || location.chars().any(crate::is_spoofing_char)
                {
                    return Err(invalid(
                        "calling.location",
                        "give the location's name: 1-80 characters, no control characters",
                    ));
                }
                Some(CallingSettings {
                    country,
                    location: location.to_string(),
                })
            }
        };
        let meeting = match &self.meeting {
            None => None,
            Some(m) => Some(MeetingSettings {
                language: letters(
                    "meeting.language",
                    &m.language,
                    "an ISO 639-1 language code like pl",
                    false,
                )?,
                recording: m.recording,
            }),
        };
        let subdomain = match &self.enterprise {
            None => None,
            Some(e) => Some(
                Subdomain::parse(&e.subdomain)
                    .map_err(|err| invalid("enterprise.subdomain", err.to_string()))?,
            ),
        };
        Ok(ValidServices {
            calling,
            meeting,
            subdomain,
        })
    }
}

/// A command that spans several streams: the order's and those of the
/// organisations and reservations it touches (see [`crate::decide_setup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupCommand {
    /// R13–R17: complete (or hand over) the setup wizard.
    Setup(ValidSetup),
    /// R18: save the service settings, reserving the subdomain.
    ConfigureServices(ValidServices),
    /// R18: "Provision and start billing".
    Provision,
}

impl SetupCommand {
    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            SetupCommand::Setup(_) => "complete setup",
            SetupCommand::ConfigureServices(_) => "set up services",
            SetupCommand::Provision => "provision",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> SetupRequest {
        SetupRequest {
            order_id: "WO-1001".into(),
            role: Some("partner".into()),
            who_sets_up: Some("me".into()),
            partner_organisation: Some(OrgChoiceRequest {
                new: Some(NewOrgRequest::default()),
                existing: None,
            }),
            customer_organisation: Some(OrgChoiceRequest {
                existing: Some("ORG-CONTOSO".into()),
                new: None,
            }),
            customer_admin_email: Some("admin@contoso.example".into()),
            confirm_customer: Some(true),
            confirm_partner: Some(true),
            ..SetupRequest::default()
        }
    }

    fn field_of(err: DomainError) -> String {
        match err {
            DomainError::InvalidField { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn a_complete_wizard_validates() {
        let ValidSetup::Complete { answers, .. } = complete().validate().unwrap() else {
            panic!("not complete")
        };
        assert_eq!(answers.who_sets_up, WhoSetsUp::Me);
        assert_eq!(
            answers.customer_org,
            OrgChoice::Existing(OrgId::parse("ORG-CONTOSO").unwrap())
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases: Vec<(SetupRequest, &str)> = vec![
            (
                SetupRequest {
                    order_id: "WO 1".into(),
                    ..complete()
                },
                "order_id",
            ),
            (
                SetupRequest {
                    role: Some("customer".into()),
                    ..complete()
                },
                "role",
            ),
            (
                SetupRequest {
                    role: None,
                    ..complete()
                },
                "role",
            ),
            (
                SetupRequest {
                    who_sets_up: Some("nobody".into()),
                    ..complete()
                },
                "who_sets_up",
            ),
            (
                SetupRequest {
                    customer_admin_email: Some("x".into()),
                    ..complete()
                },
                "customer_admin_email",
            ),
            (
                SetupRequest {
                    customer_admin_email: None,
                    ..complete()
                },
                "customer_admin_email",
            ),
            (
                SetupRequest {
                    confirm_partner: Some(false),
                    ..complete()
                },
                "confirm_partner",
            ),
            (
                SetupRequest {
                    confirm_customer: None,
                    ..complete()
                },
                "confirm_customer",
            ),
            (
                SetupRequest {
                    partner_organisation: None,
                    ..complete()
                },
                "partner_organisation",
            ),
            (
                SetupRequest {
                    partner_organisation: Some(OrgChoiceRequest {
                        new: Some(NewOrgRequest::default()),
                        existing: Some("P".into()),
                    }),
                    ..complete()
                },
                "partner_organisation",
            ),
            (
                SetupRequest {
                    customer_organisation: Some(OrgChoiceRequest {
                        new: None,
                        existing: Some("bad id!".into()),
                    }),
                    ..complete()
                },
                "customer_organisation.existing",
            ),
            (
                SetupRequest {
                    customer_organisation: Some(OrgChoiceRequest {
                        new: Some(NewOrgRequest {
                            admin_email: Some("a@b.example".into()),
                            name: None,
                        }),
                        existing: None,
                    }),
                    ..complete()
                },
                "customer_organisation.new.admin_email",
            ),
            (
                SetupRequest {
                    partner_organisation: Some(OrgChoiceRequest {
                        new: Some(NewOrgRequest {
                            admin_email: Some("admin@contoso.example".into()),
                            name: None,
                        }),
                        existing: None,
                    }),
                    ..complete()
                },
                "customer_admin_email",
            ),
            (
                SetupRequest {
                    partner_organisation: Some(OrgChoiceRequest {
                        new: Some(NewOrgRequest {
                            name: Some("  ".into()),
                            admin_email: None,
                        }),
                        existing: None,
                    }),
                    ..complete()
                },
                "partner_organisation.new.name",
            ),
            (
                SetupRequest {
                    someone_else_email: Some("s@p.example".into()),
                    ..complete()
                },
                "someone_else_email",
            ),
            (
                SetupRequest {
                    who_sets_up: Some("someone else".into()),
                    ..complete()
                },
                "someone_else_email",
            ),
            (
                SetupRequest {
                    who_sets_up: Some("someone-else".into()),
                    someone_else_email: Some("sam@partner.example".into()),
                    ..complete()
                },
                "partner_organisation",
            ),
        ];
        for (request, field) in cases {
            assert_eq!(
                field_of(request.validate().unwrap_err()),
                field,
                "{request:?}"
            );
        }
    }

    #[test]
    fn r14_a_hand_over_needs_only_the_other_email() {
        let request = SetupRequest {
            order_id: "WO-1001".into(),
            role: Some("Partner".into()),
            who_sets_up: Some("Someone Else".into()),
            someone_else_email: Some("sam@partner.example".into()),
            ..SetupRequest::default()
        };
        assert_eq!(
            request.validate().unwrap(),
            ValidSetup::HandOver {
                order_id: OrderId::parse("WO-1001").unwrap(),
                to: Email::parse("sam@partner.example").unwrap()
            }
        );
    }

    #[test]
    fn r18_service_settings_are_validated_and_normalised() {
        let ok = ServicesRequest {
            calling: Some(CallingRequest {
                country: "pl".into(),
                location: " Warsaw HQ ".into(),
            }),
            meeting: Some(MeetingRequest {
                language: "PL".into(),
                recording: true,
            }),
            enterprise: Some(EnterpriseRequest {
                subdomain: "contoso".into(),
            }),
        }
        .validate()
        .unwrap();
        assert_eq!(ok.calling.unwrap().country, "PL");
        assert_eq!(ok.meeting.unwrap().language, "pl");
        assert_eq!(ok.subdomain.unwrap().as_str(), "contoso");
        assert_eq!(
            ServicesRequest::default().validate().unwrap(),
            ValidServices::default()
        );
        for (request, field) in [
            (
                ServicesRequest {
                    calling: Some(CallingRequest {
                        country: "POL".into(),
                        location: "x".into(),
                    }),
                    ..ServicesRequest::default()
                },
                "calling.country",
            ),
            (
                ServicesRequest {
                    calling: Some(CallingRequest {
                        country: "PL".into(),
                        location: " ".into(),
                    }),
                    ..ServicesRequest::default()
                },
                "calling.location",
            ),
            (
                ServicesRequest {
                    meeting: Some(MeetingRequest {
                        language: "p1".into(),
                        recording: false,
                    }),
                    ..ServicesRequest::default()
                },
                "meeting.language",
            ),
            (
                ServicesRequest {
                    enterprise: Some(EnterpriseRequest {
                        subdomain: "-bad".into(),
                    }),
                    ..ServicesRequest::default()
                },
                "enterprise.subdomain",
            ),
        ] {
            let err = request.validate().unwrap_err();
            let text = err.to_string();
            assert_eq!(field_of(err), field);
            assert!(text.contains(field), "{text}");
        }
    }
}
