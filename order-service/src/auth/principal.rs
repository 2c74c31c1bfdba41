//! Who is calling, and what they may do. The one place that reads claims ([`Principal::from_claims`]);
//! handlers ask the principal, never the token. Pure: no I/O.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::domain::OrderStatus;
use crate::http::error::ApiError;
use crate::outbox::envelope::ACTOR_API;

/// What a service caller's token may say in its scopes.
pub const SCOPE_READ: &str = "orders:read";
pub const SCOPE_WRITE: &str = "orders:write";
pub const SCOPE_STATUS: &str = "orders:status";

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub` (`api` with authentication disabled): the actor recorded in events.
    pub subject: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Sees and changes only this customer's orders.
    Customer { customer_id: String },
    /// Reads every order, changes statuses, reads statistics.
    Staff,
    /// A service (client credentials): what its scopes say.
    Service { scopes: BTreeSet<String> },
    /// Authentication is disabled: everything is allowed, as `api`.
    Unchecked,
}

/// Where the claims the service needs are found in a token (`--auth-*-claim`).
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub roles: String,
    pub staff_role: String,
    pub customer: String,
    pub scopes: String,
}

/// The orders a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    All,
    Customer(String),
}

impl Principal {
    /// The caller when authentication is disabled.
    pub fn unchecked() -> Self {
        Self {
            subject: ACTOR_API.to_owned(),
            role: Role::Unchecked,
        }
    }

    /// The principal of a validated token's claims (`sub` is known to be present). Staff by
    /// the roles claim first, then a customer by the customer claim, else a service with the
    /// token's scopes (possibly none: such a caller is refused everything with 403).
    pub fn from_claims(claims: &Map<String, Value>, names: &ClaimNames) -> Option<Self> {
        let subject = claims.get("sub")?.as_str()?.to_owned();
        let roles = strings(claims.get(&names.roles));
        let role = if roles.contains(&names.staff_role) {
            Role::Staff
        } else if let Some(customer_id) = claims
            .get(&names.customer)
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
        {
            Role::Customer {
                customer_id: customer_id.to_owned(),
            }
        } else {
            Role::Service {
                scopes: strings(claims.get(&names.scopes)),
            }
        };
        Some(Self { subject, role })
    }

    /// Whether the caller proved who they are (rate limits key on the subject then).
    pub fn is_authenticated(&self) -> bool {
        self.role != Role::Unchecked
    }

    fn has_scope(&self, scope: &str) -> bool {
        matches!(&self.role, Role::Service { scopes } if scopes.contains(scope))
    }

    /// Which orders this caller may read.
    pub fn visibility(&self) -> Result<Visibility, ApiError> {
        match &self.role {
            Role::Customer { customer_id } => Ok(Visibility::Customer(customer_id.clone())),
            Role::Staff | Role::Unchecked => Ok(Visibility::All),
            Role::Service { .. } if self.has_scope(SCOPE_READ) => Ok(Visibility::All),
            Role::Service { .. } => Err(ApiError::Forbidden(
                "reading orders needs the orders:read scope",
            )),
        }
    }

    /// Whether an order of `customer_id` is visible to this caller; an invisible one is
    /// answered as missing (404), so order ids cannot be probed.
    pub fn can_see(&self, customer_id: &str) -> bool {
        match self.visibility() {
            Ok(Visibility::All) => true,
            Ok(Visibility::Customer(own)) => own == customer_id,
            Err(_) => false,
        }
    }

    /// The customer filter of a list: a customer's own (naming another is refused), or the
    /// one asked for.
    pub fn list_filter(&self, asked: Option<String>) -> Result<Option<String>, ApiError> {
        match self.visibility()? {
            Visibility::All => Ok(asked),
            Visibility::Customer(own) => match asked {
                Some(other) if other != own => Err(ApiError::Forbidden(
                    "customers may list only their own orders",
                )),
                _ => Ok(Some(own)),
            },
        }
    }

    /// Creating an order for `customer_id`.
    pub fn may_create_for(&self, customer_id: &str) -> Result<(), ApiError> {
        match &self.role {
            Role::Customer { customer_id: own } if own == customer_id => Ok(()),
            Role::Customer { .. } => Err(ApiError::Forbidden(
                "customers may create orders only for themselves",
            )),
            Role::Staff | Role::Unchecked => Ok(()),
            Role::Service { .. } if self.has_scope(SCOPE_WRITE) => Ok(()),
            Role::Service { .. } => Err(ApiError::Forbidden(
                "creating orders needs the orders:write scope",
            )),
        }
    }

    /// Moving an order to `to` (ownership is checked separately, with [`Self::can_see`]).
    /// Customers may only cancel.
    pub fn may_change_status_to(&self, to: OrderStatus) -> Result<(), ApiError> {
        match &self.role {
            Role::Customer { .. } if to == OrderStatus::Cancelled => Ok(()),
            Role::Customer { .. } => Err(ApiError::Forbidden(
                "customers may cancel their orders, not change their status otherwise",
            )),
            Role::Staff | Role::Unchecked => Ok(()),
            Role::Service { .. } if self.has_scope(SCOPE_STATUS) => Ok(()),
            Role::Service { .. } => Err(ApiError::Forbidden(
                "changing statuses needs the orders:status scope",
            )),
        }
    }

    /// Reading the statistics over all orders.
    pub fn may_read_stats(&self) -> Result<(), ApiError> {
        match self.visibility()? {
            Visibility::All => Ok(()),
            Visibility::Customer(_) => Err(ApiError::Forbidden(
                "the statistics cover every customer: staff only",
            )),
        }
    }
}

/// A claim as a set of strings: a list of strings, or one string of space-separated values.
fn strings(claim: Option<&Value>) -> BTreeSet<String> {
    match claim {
        Some(Value::Array(values)) => values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(value)) => value.split_whitespace().map(str::to_owned).collect(),
        _ => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> ClaimNames {
        ClaimNames {
            roles: "groups".into(),
            staff_role: "staff".into(),
            customer: "email".into(),
            scopes: "scope".into(),
        }
    }

    fn principal(claims: Value) -> Principal {
        let Value::Object(claims) = claims else {
            panic!("claims are an object")
        };
        Principal::from_claims(&claims, &names()).expect("a principal")
    }

    #[test]
    fn claims_map_to_staff_customer_or_service() {
        let staff = principal(json!({"sub": "s", "groups": ["staff"], "email": "s@x"}));
        assert_eq!(staff.role, Role::Staff);
        let customer = principal(json!({"sub": "c", "groups": [], "email": "c@x"}));
        assert_eq!(
            customer.role,
            Role::Customer {
                customer_id: "c@x".into()
            }
        );
        let service = principal(json!({"sub": "svc", "scope": "orders:read orders:write"}));
        assert!(service.has_scope(SCOPE_READ) && service.has_scope(SCOPE_WRITE));
        assert!(!service.has_scope(SCOPE_STATUS));
        let listed = principal(json!({"sub": "svc", "scope": ["orders:status"]}));
        assert!(listed.has_scope(SCOPE_STATUS));
    }

    #[test]
    fn a_token_without_a_string_subject_has_no_principal() {
        let Value::Object(claims) = json!({"sub": 42}) else {
            unreachable!()
        };
        assert_eq!(Principal::from_claims(&claims, &names()), None);
    }

    #[test]
    fn a_customer_sees_and_lists_only_their_own_orders() {
        let customer = principal(json!({"sub": "c", "email": "c@x"}));
        assert!(customer.can_see("c@x"));
        assert!(!customer.can_see("d@x"));
        assert_eq!(customer.list_filter(None).unwrap(), Some("c@x".into()));
        assert_eq!(
            customer.list_filter(Some("c@x".into())).unwrap(),
            Some("c@x".into())
        );
        assert!(matches!(
            customer.list_filter(Some("d@x".into())),
            Err(ApiError::Forbidden(_))
        ));
        assert!(customer.may_read_stats().is_err());
    }

    #[test]
    fn a_customer_creates_for_themselves_and_may_only_cancel() {
        let customer = principal(json!({"sub": "c", "email": "c@x"}));
        assert!(customer.may_create_for("c@x").is_ok());
        assert!(customer.may_create_for("d@x").is_err());
        assert!(customer
            .may_change_status_to(OrderStatus::Cancelled)
            .is_ok());
        assert!(customer.may_change_status_to(OrderStatus::Shipped).is_err());
    }

    #[test]
    fn services_do_what_their_scopes_say() {
        let none = principal(json!({"sub": "svc"}));
        assert!(none.visibility().is_err());
        assert!(!none.can_see("c@x"));
        assert!(none.may_create_for("c@x").is_err());
        assert!(none.may_change_status_to(OrderStatus::Shipped).is_err());
        let reader = principal(json!({"sub": "svc", "scope": "orders:read"}));
        assert_eq!(reader.visibility().unwrap(), Visibility::All);
        assert!(reader.may_read_stats().is_ok());
        assert!(reader.may_create_for("c@x").is_err());
    }

    #[test]
    fn staff_and_unchecked_callers_may_do_everything() {
        for p in [
            principal(json!({"sub": "s", "groups": "staff"})),
            Principal::unchecked(),
        ] {
            assert!(p.can_see("anyone"));
            assert_eq!(p.list_filter(Some("x".into())).unwrap(), Some("x".into()));
            assert!(p.may_create_for("anyone").is_ok());
            assert!(p.may_change_status_to(OrderStatus::Shipped).is_ok());
            assert!(p.may_read_stats().is_ok());
        }
        assert_eq!(Principal::unchecked().subject, "api");
        assert!(!Principal::unchecked().is_authenticated());
    }
}
