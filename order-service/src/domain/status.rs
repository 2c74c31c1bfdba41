//! The order status machine: the one place that knows which transitions are allowed.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where an order is in its lifecycle. Serialized upper-case (`PENDING`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    Cancelled,
}

/// A transition the status machine refuses, with the states that would have been allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order in status {from} cannot move to {to}")]
pub struct InvalidTransition {
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub allowed: &'static [OrderStatus],
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        Self::Pending,
        Self::Confirmed,
        Self::Processing,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Processing => "PROCESSING",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The states an order in this state may move to next. Terminal states allow none.
    pub fn allowed_next(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[Confirmed, Cancelled],
            Confirmed => &[Processing, Cancelled],
            Processing => &[Shipped, Cancelled],
            Shipped => &[Delivered],
            Delivered | Cancelled => &[],
        }
    }

    /// The statuses an order may be in to move to `self`.
    pub fn allowed_from(self) -> Vec<OrderStatus> {
        Self::ALL
            .into_iter()
            .filter(|from| from.allowed_next().contains(&self))
            .collect()
    }

    /// Checks a transition: `Ok(to)` when allowed, otherwise the refusal with the allowed states.
    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, InvalidTransition> {
        if self.allowed_next().contains(&to) {
            Ok(to)
        } else {
            Err(InvalidTransition {
                from: self,
                to,
                allowed: self.allowed_next(),
            })
        }
    }
}

/// Decodes the stored name; lets `sqlx::FromRow` read a status column.
impl TryFrom<String> for OrderStatus {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| format!("unknown order status `{value}`"))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn displays_as_its_stored_name() {
        for status in OrderStatus::ALL {
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(Cancelled.to_string(), "CANCELLED");
    }

    #[test]
    fn allowed_from_is_the_inverse_of_allowed_next() {
        assert_eq!(Cancelled.allowed_from(), [Pending, Confirmed, Processing]);
        assert_eq!(Confirmed.allowed_from(), [Pending]);
        assert_eq!(Delivered.allowed_from(), [Shipped]);
        assert!(Pending.allowed_from().is_empty());
        for to in OrderStatus::ALL {
            for from in OrderStatus::ALL {
                assert_eq!(
                    to.allowed_from().contains(&from),
                    from.transition(to).is_ok(),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    /// The whole table, written out once more by hand so a change to the machine shows here.
    const ALLOWED: &[(OrderStatus, OrderStatus)] = &[
        (Pending, Confirmed),
        (Pending, Cancelled),
        (Confirmed, Processing),
        (Confirmed, Cancelled),
        (Processing, Shipped),
        (Processing, Cancelled),
        (Shipped, Delivered),
    ];

    #[test]
    fn every_pair_is_allowed_exactly_when_listed() {
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let expected = ALLOWED.contains(&(from, to));
                let result = from.transition(to);
                assert_eq!(result.is_ok(), expected, "{from} -> {to}");
                if let Err(refusal) = result {
                    assert_eq!(refusal.from, from);
                    assert_eq!(refusal.to, to);
                    let listed: Vec<_> = ALLOWED
                        .iter()
                        .filter(|(f, _)| *f == from)
                        .map(|(_, t)| *t)
                        .collect();
                    assert_eq!(refusal.allowed, listed.as_slice(), "allowed after {from}");
                }
            }
        }
    }

    #[test]
    fn terminal_states_allow_nothing() {
        assert!(Delivered.allowed_next().is_empty());
        assert!(Cancelled.allowed_next().is_empty());
    }

    #[test]
    fn names_round_trip_and_serialize_upper_case() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::String(status.as_str().to_owned())
            );
        }
        assert_eq!(OrderStatus::parse("pending"), None);
    }
}
