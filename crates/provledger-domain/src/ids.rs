//! Validated identifiers: orders, lines, subscriptions, organisations.
//!
//! Identifiers end up in stream ids, table keys and CLI arguments, so they are
//! restricted to a safe alphabet (letters, digits, `.`, `-`, `_`), trimmed and
//! at most 64 characters. Each kind is its own type so an order id cannot be
//! passed where a line id is meant.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

fn validate(kind: &'static str, raw: &str) -> Result<String, DomainError> {
    let value = raw.trim();
    let fail = |reason: &str| DomainError::InvalidId {
        kind,
        value: raw.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Err(fail("it is empty"));
    }
    if value.len() > 64 {
        return Err(fail("it is longer than 64 characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(fail("use only letters, digits, '.', '-' and '_'"));
    }
    Ok(value.to_string())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validate an identifier.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                validate($kind, raw).map($name)
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $name::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }
    };
}

id_type!(
    /// An order id, e.g. `WO-1001`.
    OrderId,
    "order id"
);
id_type!(
    /// A line id within an order, e.g. `1.1`.
    LineId,
    "line id"
);
id_type!(
    /// A subscription id, e.g. `Sub100042`.
    SubscriptionId,
    "subscription id"
);
id_type!(
    /// A Webex organisation id in Control Hub.
    OrgId,
    "organisation id"
);

impl OrderId {
    /// The event stream holding this order: `order-<id>`.
    pub fn stream_id(&self) -> String {
        format!("{}{}", ORDER_STREAM_PREFIX, self.0)
    }

    /// The order id of an order stream id, if it is one.
    pub fn from_stream_id(stream_id: &str) -> Option<OrderId> {
        stream_id
            .strip_prefix(ORDER_STREAM_PREFIX)
            .and_then(|id| OrderId::parse(id).ok())
    }
}

/// Prefix of every order stream id.
pub const ORDER_STREAM_PREFIX: &str = "order-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_and_trimmed() {
        assert_eq!(OrderId::parse(" WO-1001 ").unwrap().as_str(), "WO-1001");
        assert!(LineId::parse("1.1").is_ok());
        assert!(SubscriptionId::parse("Sub100042").is_ok());
        assert!(OrderId::parse("").is_err());
        assert!(OrderId::parse("WO 1001").is_err());
        assert!(OrderId::parse("WO'; DROP").is_err());
        assert!(OrderId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn order_stream_round_trip() {
        let id = OrderId::parse("WO-1001").unwrap();
        assert_eq!(id.stream_id(), "order-WO-1001");
        assert_eq!(OrderId::from_stream_id("order-WO-1001"), Some(id));
        assert_eq!(OrderId::from_stream_id("org-X"), None);
    }
}
