//! A validated email address.
//!
//! Every provisioning contact, ordering contact and acting user is an email;
//! this type makes an invalid one unrepresentable past the edge. Limits follow
//! RFC 5321: at most 254 characters, exactly one `@`, a non-empty local part
//! of at most 64 characters, and a domain with at least one dot. The domain is
//! case-insensitive and stored lowercased; the local part is kept as given.
//! Aliases (shared mailboxes) are ordinary emails (R1).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A syntactically valid email address; the domain part is lowercased.
///
/// Two emails are equal when they name the same user: comparison, ordering
/// and hashing go by [`Email::identity`] (the whole address lowercased), so
/// access checks, "nothing to change" and uniqueness all agree (DESIGN.md
/// §2). The address is kept and shown as entered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl PartialEq for Email {
    fn eq(&self, other: &Email) -> bool {
        self.0 == other.0 || self.identity() == other.identity()
    }
}

impl Eq for Email {}

impl std::hash::Hash for Email {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl PartialOrd for Email {
    fn partial_cmp(&self, other: &Email) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Email {
    fn cmp(&self, other: &Email) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl Email {
    /// Validate and normalise an email address.
    pub fn parse(raw: &str) -> Result<Email, DomainError> {
        let fail = |reason: &str| DomainError::InvalidEmail {
            value: raw.to_string(),
            reason: reason.to_string(),
        };
        let value = raw.trim();
        if value.is_empty() {
            return Err(fail("it is empty"));
        }
        if value.chars().count() > 254 {
            return Err(fail("it is longer than 254 characters"));
        }
        if let Some(reason) = crate::text::spoofing_reason(value) {
            return Err(fail(&reason));
        }
        if value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
        {
            return Err(fail(
                "it contains a space, a control character or one of < > ,",
            ));
        }
        let mut parts = value.split('@');
        let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
            (Some(l), Some(d), None) => (l, d),
            (_, None, _) => return Err(fail("it has no @")),
            _ => return Err(fail("it has more than one @")),
        };
        if local.is_empty() {
            return Err(fail("the part before @ is empty"));
        }
        if local.chars().count() > 64 {
            return Err(fail("the part before @ is longer than 64 characters"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(fail(
                "the part before @ starts or ends with a dot or has two dots in a row",
            ));
        }
        // Validate the domain as it will be stored (lowercased): lowercasing
        // can change it (U+0130 'İ' becomes 'i' + a combining dot), and what is
        // stored must parse again when the ledger is read back.
        let domain = domain.to_lowercase();
        if !domain.contains('.') {
            return Err(fail("the domain after @ has no dot"));
        }
        for label in domain.split('.') {
            if label.is_empty() {
                return Err(fail("the domain after @ has an empty label (two dots in a row, or a leading or trailing dot)"));
            }
            if label.len() > 63 {
                return Err(fail("a domain label is longer than 63 characters"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(fail("a domain label starts or ends with a hyphen"));
            }
            if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
                return Err(fail(
                    "the domain may contain only letters, digits, hyphens and dots",
                ));
            }
        }
        let normalised = format!("{local}@{domain}");
        if normalised.chars().count() > 254 {
            return Err(fail("it is longer than 254 characters"));
        }
        Ok(Email(normalised))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part (lowercase).
    pub fn domain(&self) -> &str {
        self.0.rsplit('@').next().unwrap_or_default()
    }

    /// The address as one user's identity, for R16's "a user belongs to one
    /// organisation at a time": the whole address lowercased **(decided)**,
    /// so `Admin@x.example` and `admin@x.example` are the same user. Keys
    /// the email reservation streams.
    pub fn identity(&self) -> String {
        self.0.to_lowercase()
    }

    /// Whether two addresses name the same user ([`Email::identity`]).
    pub fn same_user(&self, other: &Email) -> bool {
        self.identity() == other.identity()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl std::str::FromStr for Email {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r1_accepts_plain_and_alias_addresses() {
        assert!(Email::parse("it@customer.example").is_ok());
        assert!(Email::parse("provisioning-team+webex@customer.example").is_ok());
    }

    #[test]
    fn emails_compare_case_insensitively_and_keep_their_spelling() {
        assert_eq!(
            Email::parse("Pat@Partner.EXAMPLE").unwrap(),
            Email::parse("Pat@partner.example").unwrap()
        );
        // DESIGN.md §2: the same user whatever the case, shown as entered.
        let a = Email::parse("Pat@partner.example").unwrap();
        let b = Email::parse("pat@partner.example").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Pat@partner.example");
        let hash = |e: &Email| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            e.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
    }

    #[test]
    fn refuses_spoofing_characters() {
        for bad in [
            "ma\u{202E}llory@x.example",
            "it\u{200B}@x.example",
            "a@x\u{2066}.example",
        ] {
            let err = Email::parse(bad).unwrap_err().to_string();
            assert!(err.contains("U+"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn rejects_invalid_addresses_with_a_reason() {
        let long_local = format!("{}@x.example", "a".repeat(65));
        let long_total = format!("a@{}.example", "b".repeat(250));
        for bad in [
            "",
            "no-at.example",
            "a@b@c.example",
            "@x.example",
            "a@localhost",
            "a b@x.example",
            "a@x..example",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid email"), "{bad}: {err}");
        }
    }

    #[test]
    fn exact_limits() {
        let local = "a".repeat(64);
        assert!(Email::parse(&format!("{local}@x.example")).is_ok());
        let domain = format!(
            "{}.{}.{}.example",
            "d".repeat(60),
            "e".repeat(60),
            "f".repeat(56)
        );
        let ok = format!("a@{domain}");
        assert_eq!(ok.len(), 2 + domain.len());
        assert!(ok.len() <= 254);
        assert!(Email::parse(&ok).is_ok());
    }
}
