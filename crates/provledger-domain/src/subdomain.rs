//! A validated enterprise subdomain (R18).
//!
//! The service setup wizard's enterprise settings ask for a subdomain, check
//! its availability and save it; a subdomain is unique across organisations.
//! This type makes a syntactically invalid one unrepresentable past the edge,
//! so the reservation streams (`reservation-subdomain-<name>`) are keyed by
//! exactly one spelling of each name. The rule **(decided)**: 3–63 characters,
//! only lowercase ASCII letters, digits and hyphens, not starting or ending
//! with a hyphen. Uppercase is refused rather than folded, so that what the
//! user typed is what gets reserved.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Fewest characters in a subdomain.
pub const SUBDOMAIN_MIN_LEN: usize = 3;
/// Most characters in a subdomain (a DNS label).
pub const SUBDOMAIN_MAX_LEN: usize = 63;

/// A syntactically valid enterprise subdomain, e.g. `contoso`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subdomain(String);

impl Subdomain {
    /// Validate a subdomain. The error names the rule that was broken.
    pub fn parse(raw: &str) -> Result<Subdomain, DomainError> {
        let fail = |reason: &str| DomainError::InvalidSubdomain {
            value: raw.to_string(),
            reason: reason.to_string(),
        };
        let value = raw.trim();
        let len = value.chars().count();
        if len < SUBDOMAIN_MIN_LEN {
            return Err(fail("it is shorter than 3 characters"));
        }
        if len > SUBDOMAIN_MAX_LEN {
            return Err(fail("it is longer than 63 characters"));
        }
        if value.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(fail("it contains uppercase letters; write it in lowercase"));
        }
        if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(fail(&format!(
                "it contains {c:?}; use only lowercase letters a-z, digits 0-9 and hyphens"
            )));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(fail("it starts or ends with a hyphen"));
        }
        Ok(Subdomain(value.to_string()))
    }

    /// The subdomain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subdomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Subdomain {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Subdomain::parse(&value)
    }
}

impl From<Subdomain> for String {
    fn from(value: Subdomain) -> Self {
        value.0
    }
}

impl std::str::FromStr for Subdomain {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Subdomain::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r18_accepts_lowercase_letters_digits_and_inner_hyphens() {
        for ok in [
            "abc",
            "contoso",
            "contoso-01",
            "a-b",
            "123",
            &"a".repeat(63),
        ] {
            assert_eq!(Subdomain::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(Subdomain::parse(" contoso ").unwrap().as_str(), "contoso");
    }

    #[test]
    fn r18_refuses_with_the_rule_it_broke() {
        let long = "a".repeat(64);
        for (bad, rule) in [
            ("ab", "shorter than 3"),
            ("", "shorter than 3"),
            (long.as_str(), "longer than 63"),
            ("Contoso", "uppercase"),
            ("con_toso", "'_'"),
            ("con.toso", "'.'"),
            ("café", "'é'"),
            ("-contoso", "hyphen"),
            ("contoso-", "hyphen"),
        ] {
            let err = Subdomain::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid subdomain"), "{bad}: {err}");
            assert!(err.contains(rule), "{bad}: {err}");
        }
    }
}
