//! Offers and their policy windows (R7).
//!
//! The offer decides how long a line may stay unprovisioned after its initial
//! provisioning email before it closes and billing starts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A collaboration offer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Offer {
    /// `A-Flex`: 7-day policy window.
    AFlex,
    /// `A-Flex-3`: 7-day policy window.
    AFlex3,
    /// `A-WX`: 30-day policy window.
    AWx,
    /// `A-SPK`: 30-day policy window.
    ASpk,
    /// Another named collaboration offer (e.g. `A-MSG`): 30-day policy window.
    Other(String),
}

impl Offer {
    /// Parse an offer name. Known names are matched case-insensitively;
    /// other names must look like `A-XYZ` (letters, digits, hyphens, ≤ 32).
    pub fn parse(raw: &str) -> Result<Offer, DomainError> {
        let value = raw.trim();
        let known = match value.to_ascii_uppercase().as_str() {
            "A-FLEX" => Some(Offer::AFlex),
            "A-FLEX-3" => Some(Offer::AFlex3),
            "A-WX" => Some(Offer::AWx),
            "A-SPK" => Some(Offer::ASpk),
            _ => None,
        };
        if let Some(offer) = known {
            return Ok(offer);
        }
        let well_formed = value.len() <= 32
            && value.len() > 2
            && value.starts_with("A-")
            && value[2..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if well_formed {
            Ok(Offer::Other(value.to_string()))
        } else {
            Err(DomainError::InvalidOffer {
                value: raw.to_string(),
            })
        }
    }

    /// The offer's name as shown in the ordering tool.
    pub fn name(&self) -> &str {
        match self {
            Offer::AFlex => "A-Flex",
            Offer::AFlex3 => "A-Flex-3",
            Offer::AWx => "A-WX",
            Offer::ASpk => "A-SPK",
            Offer::Other(name) => name,
        }
    }

    /// R7: days after the initial provisioning email before the line closes:
    /// 7 for A-Flex and A-Flex-3, 30 for every other collaboration offer.
    pub fn policy_days(&self) -> i64 {
        match self {
            Offer::AFlex | Offer::AFlex3 => 7,
            _ => 30,
        }
    }
}

impl fmt::Display for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for Offer {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Offer::parse(&value)
    }
}

impl From<Offer> for String {
    fn from(value: Offer) -> Self {
        value.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r7_policy_days_per_offer() {
        assert_eq!(Offer::parse("A-Flex").unwrap().policy_days(), 7);
        assert_eq!(Offer::parse("a-flex-3").unwrap().policy_days(), 7);
        assert_eq!(Offer::parse("A-WX").unwrap().policy_days(), 30);
        assert_eq!(Offer::parse("A-SPK").unwrap().policy_days(), 30);
        assert_eq!(Offer::parse("A-MSG").unwrap().policy_days(), 30);
    }

    #[test]
    fn unknown_shapes_are_refused() {
        assert!(Offer::parse("Flex").is_err());
        assert!(Offer::parse("A-").is_err());
        assert!(Offer::parse("A-X Y").is_err());
    }
}
