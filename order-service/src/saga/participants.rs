//! The three participants and their contracts (docs/participants.md): what the saga sends,
//! and how answers become step outcomes.

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{Call, CallError, Participant, Refusal};
use super::machine::{Outcome, Progress, Step};
use crate::domain::Order;
use crate::outbox::envelope::SagaStepEvent;

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
            idempotency_key: Some(&key),
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

/// The event a finished step makes (docs/events.md): a reservation or authorization made, or
/// one undone. `progress` is the saga's before the step (what an undo undid).
pub fn step_event(step: Step, outcome: &Outcome, progress: &Progress) -> Option<SagaStepEvent> {
    let Outcome::Done { id } = outcome else {
        return None;
    };
    match step {
        Step::ReserveInventory => id.clone().map(SagaStepEvent::InventoryReserved),
        Step::AuthorizePayment => id.clone().map(SagaStepEvent::PaymentAuthorized),
        // Nothing was reserved or authorized: nothing was undone.
        Step::ReleaseInventory => progress
            .reservation_id
            .clone()
            .map(SagaStepEvent::InventoryReleased),
        Step::VoidPayment => progress
            .authorization_id
            .clone()
            .map(SagaStepEvent::PaymentVoided),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Order;

    fn order() -> Order {
        serde_json::from_value(serde_json::json!({
            "id": "01a2214a-ebf5-76de-93e9-6da06fad7732", "customer_id": "c-42",
            "status": "PENDING", "status_reason": null, "currency": "EUR",
            "subtotal_minor": 100, "shipping_minor": 0, "tax_minor": 0, "total_minor": 100,
            "items": [], "shipping_address": address(), "billing_address": address(),
            "payment": {"id": "01a2214a-ebfb-750d-b440-1c069d2d30d7", "method": "card",
                        "status": "PENDING", "amount_minor": 100, "currency": "EUR"},
            "version": 1, "created_at": "2026-11-28T08:00:00Z", "updated_at": "2026-11-28T08:00:00Z"
        }))
        .expect("an order")
    }

    fn address() -> Value {
        json!({"name": "A", "line1": "1 St", "city": "B", "postal_code": "1", "country": "DE"})
    }

    fn refused(status: u16, error: &str, body: Value) -> Result<Value, CallError> {
        Err(CallError::Refused {
            status,
            error: error.into(),
            body,
        })
    }

    fn rejected(reason: &str) -> Outcome {
        Outcome::Rejected {
            reason: reason.into(),
        }
    }

    fn is_retry(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Retry { .. })
    }

    #[test]
    fn a_2xx_must_carry_what_the_step_needs() {
        let o = order();
        let done = |id: Option<&str>| Outcome::Done {
            id: id.map(str::to_owned),
        };
        let customer = |body: Value| outcome(Step::ValidateCustomer, &o, Ok(body));
        assert_eq!(customer(json!({"status": "ACTIVE"})), done(None));
        assert_eq!(
            customer(json!({"status": "BLOCKED"})),
            rejected("customer_blocked: c-42")
        );
        // No status (or not JSON at all, which the client turns into null) is not "active".
        assert!(is_retry(&customer(json!({"customer_id": "c-42"}))));
        assert!(is_retry(&customer(Value::Null)));
        assert_eq!(
            outcome(
                Step::ReserveInventory,
                &o,
                Ok(json!({"reservation_id": "r-1"}))
            ),
            done(Some("r-1"))
        );
        assert!(is_retry(&outcome(
            Step::ReserveInventory,
            &o,
            Ok(json!({}))
        )));
        assert_eq!(
            outcome(
                Step::AuthorizePayment,
                &o,
                Ok(json!({"authorization_id": "a-1"}))
            ),
            done(Some("a-1"))
        );
        assert!(is_retry(&outcome(
            Step::AuthorizePayment,
            &o,
            Ok(json!({}))
        )));
        assert_eq!(
            outcome(Step::ReleaseInventory, &o, Ok(Value::Null)),
            done(None)
        );
    }

    #[test]
    fn documented_refusals_become_readable_reasons() {
        let o = order();
        assert_eq!(
            outcome(
                Step::ValidateCustomer,
                &o,
                refused(404, "customer_not_found", json!({}))
            ),
            rejected("unknown_customer: c-42")
        );
        assert_eq!(
            outcome(
                Step::ReserveInventory,
                &o,
                refused(409, "out_of_stock", json!({"sku": "SKU-9"}))
            ),
            rejected("out_of_stock: SKU-9")
        );
        assert_eq!(
            outcome(
                Step::ReserveInventory,
                &o,
                refused(409, "out_of_stock", json!({}))
            ),
            rejected("out_of_stock")
        );
        assert_eq!(
            outcome(
                Step::AuthorizePayment,
                &o,
                refused(402, "card_expired", json!({}))
            ),
            rejected("card_expired")
        );
        // Undoing what is not there (any more) is done.
        for step in [Step::ReleaseInventory, Step::VoidPayment] {
            assert_eq!(
                outcome(step, &o, refused(404, "x_not_found", json!({}))),
                Outcome::Done { id: None }
            );
        }
        let unavailable = Err(CallError::Unavailable {
            error: "down".into(),
            retry_after: Some(std::time::Duration::from_secs(3)),
        });
        assert_eq!(
            outcome(Step::AuthorizePayment, &o, unavailable),
            Outcome::Retry {
                error: "down".into(),
                after: Some(std::time::Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn steps_that_reserve_authorize_or_undo_make_an_event_with_the_participants_id() {
        let done = |id: Option<&str>| Outcome::Done {
            id: id.map(str::to_owned),
        };
        let none = Progress::default();
        let made = Progress {
            reservation_id: Some("r-1".into()),
            authorization_id: Some("a-1".into()),
        };
        assert_eq!(
            step_event(Step::ReserveInventory, &done(Some("r-1")), &none),
            Some(SagaStepEvent::InventoryReserved("r-1".into()))
        );
        assert_eq!(
            step_event(Step::AuthorizePayment, &done(Some("a-1")), &none),
            Some(SagaStepEvent::PaymentAuthorized("a-1".into()))
        );
        assert_eq!(
            step_event(Step::ReleaseInventory, &done(None), &made),
            Some(SagaStepEvent::InventoryReleased("r-1".into()))
        );
        assert_eq!(
            step_event(Step::VoidPayment, &done(None), &made),
            Some(SagaStepEvent::PaymentVoided("a-1".into()))
        );
        // Nothing made, nothing undone; retries, refusals and other steps make no event.
        assert_eq!(step_event(Step::ReleaseInventory, &done(None), &none), None);
        assert_eq!(step_event(Step::ValidateCustomer, &done(None), &none), None);
        let retry = Outcome::Retry {
            error: "down".into(),
            after: None,
        };
        assert_eq!(step_event(Step::ReserveInventory, &retry, &none), None);
        let rejected = Outcome::Rejected {
            reason: "out_of_stock".into(),
        };
        assert_eq!(step_event(Step::ReserveInventory, &rejected, &none), None);
    }

    #[test]
    fn every_forward_and_undo_step_documents_its_refusal() {
        let statuses = |step| refusals(step).iter().map(|r| r.status).collect::<Vec<_>>();
        assert_eq!(statuses(Step::ValidateCustomer), [404]);
        assert_eq!(statuses(Step::ReserveInventory), [409]);
        assert_eq!(statuses(Step::AuthorizePayment), [402]);
        assert_eq!(statuses(Step::ReleaseInventory), [404]);
        assert_eq!(statuses(Step::VoidPayment), [404]);
        assert!(refusals(Step::ConfirmOrder).is_empty());
        assert_eq!(
            idempotency_key(&order(), Step::ReserveInventory),
            "01a2214a-ebf5-76de-93e9-6da06fad7732:reserve_inventory"
        );
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
