//! The three participants and their contracts (docs/participants.md): what the saga sends,
//! and how answers become step outcomes.

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{Call, CallError, Participant, Refusal};
use super::machine::{Outcome, Step};
use crate::domain::Order;

pub struct Participants {
    pub customer: Participant,
    pub inventory: Participant,
    pub payment: Participant,
}

/// The business refusals each step's contract documents (docs/participants.md). A 404 is a
/// refusal only with its error code: without it the route, not the customer, is unknown.
pub fn refusals(step: Step) -> &'static [Refusal] {
    match step {
        Step::ValidateCustomer => &[Refusal {
            status: 404,
            errors: &["customer_not_found"],
        }],
        Step::ReserveInventory => &[Refusal {
            status: 409,
            errors: &["out_of_stock"],
        }],
        Step::AuthorizePayment => &[Refusal {
            // Any decline code: the code becomes the cancellation reason.
            status: 402,
            errors: &[],
        }],
        Step::ReleaseInventory => &[Refusal {
            status: 404,
            errors: &["reservation_not_found"],
        }],
        Step::VoidPayment => &[Refusal {
            status: 404,
            errors: &["authorization_not_found"],
        }],
        Step::ConfirmOrder | Step::CancelOrder | Step::Done => &[],
    }
}

/// The key of one step of one order's saga: the same on every retry and after a restart, so a
/// participant can recognise a repeat and answer it without acting twice.
pub fn idempotency_key(order: &Order, step: Step) -> String {
    format!("{}:{}", order.id, step.as_str())
}

impl Participants {
    /// The participant a step calls (`None` for the order service's own steps).
    pub fn of(&self, step: Step) -> Option<&Participant> {
        match step {
            Step::ValidateCustomer => Some(&self.customer),
            Step::ReserveInventory | Step::ReleaseInventory => Some(&self.inventory),
            Step::AuthorizePayment | Step::VoidPayment => Some(&self.payment),
            Step::ConfirmOrder | Step::CancelOrder | Step::Done => None,
        }
    }

    /// Runs a participant's step. `progress_id` is the reservation or authorization to undo.
    pub async fn run(
        &self,
        step: Step,
        order: &Order,
        progress_id: Option<&str>,
        traceparent: Option<&str>,
    ) -> Outcome {
        let key = idempotency_key(order, step);
        let call = |method: Method, path: String, body: Option<Value>| (method, path, body);
        let (participant, (method, path, body)) = match step {
            Step::ValidateCustomer => (
                &self.customer,
                call(
                    Method::GET,
                    format!("v1/customers/{}", encode(&order.customer_id)),
                    None,
                ),
            ),
            Step::ReserveInventory => (
                &self.inventory,
                call(
                    Method::POST,
                    "v1/reservations".into(),
                    Some(json!({
                        "order_id": order.id,
                        "items": order.items.iter().map(|i| json!({"sku": i.sku, "quantity": i.quantity})).collect::<Vec<_>>(),
                    })),
                ),
            ),
            Step::AuthorizePayment => (
                &self.payment,
                call(
                    Method::POST,
                    "v1/authorizations".into(),
                    Some(json!({
                        "order_id": order.id,
                        "customer_id": order.customer_id,
                        "amount_minor": order.total_minor,
                        "currency": order.currency,
                        "method": order.payment.method,
                    })),
                ),
            ),
            Step::ReleaseInventory | Step::VoidPayment => {
                // Nothing was made: nothing to undo.
                let Some(id) = progress_id else {
                    return Outcome::Done { id: None };
                };
                let (participant, path) = if step == Step::ReleaseInventory {
                    (
                        &self.inventory,
                        format!("v1/reservations/{}/release", encode(id)),
                    )
                } else {
                    (
                        &self.payment,
                        format!("v1/authorizations/{}/void", encode(id)),
                    )
                };
                (
                    participant,
                    call(Method::POST, path, Some(json!({"order_id": order.id}))),
                )
            }
            Step::ConfirmOrder | Step::CancelOrder | Step::Done => {
                return Outcome::Done { id: None };
            }
        };
        let request = Call {
            method,
            path: &path,
            idempotency_key: &key,
            traceparent,
            body: body.as_ref(),
            refusals: refusals(step),
        };
        let answer = participant.send(&request).await;
        outcome(step, order, answer)
    }
}

/// An answer as a step outcome, per contract. The client already told documented refusals
/// from answers outside the contract; a 2xx still has to carry what the step needs.
fn outcome(step: Step, order: &Order, answer: Result<Value, CallError>) -> Outcome {
    let field =
        |body: &Value, name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let invalid = |what: &str| Outcome::Retry {
        error: format!("{what}: the answer is not the documented JSON"),
        after: None,
    };
    match answer {
        Ok(body) => match step {
            Step::ValidateCustomer => match field(&body, "status").as_deref() {
                Some("ACTIVE") => Outcome::Done { id: None },
                Some(other) => Outcome::Rejected {
                    reason: format!(
                        "customer_{}: {}",
                        other.to_ascii_lowercase(),
                        order.customer_id
                    ),
                },
                None => invalid("customer"),
            },
            Step::ReserveInventory => match field(&body, "reservation_id") {
                Some(id) => Outcome::Done { id: Some(id) },
                None => invalid("inventory"),
            },
            Step::AuthorizePayment => match field(&body, "authorization_id") {
                Some(id) => Outcome::Done { id: Some(id) },
                None => invalid("payment"),
            },
            _ => Outcome::Done { id: None },
        },
        Err(CallError::Unavailable { error, retry_after }) => Outcome::Retry {
            error,
            after: retry_after,
        },
        Err(CallError::Refused { error, body, .. }) => match step {
            // Undoing what does not exist (any more) is done.
            Step::ReleaseInventory | Step::VoidPayment => Outcome::Done { id: None },
            Step::ValidateCustomer => Outcome::Rejected {
                reason: format!("unknown_customer: {}", order.customer_id),
            },
            Step::ReserveInventory => Outcome::Rejected {
                reason: match field(&body, "sku") {
                    Some(sku) => format!("{error}: {sku}"),
                    None => error,
                },
            },
            _ => Outcome::Rejected { reason: error },
        },
    }
}

/// One path segment, percent-encoded (ids come from clients).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
