//! A saga as `GET /v1/orders/{id}` shows it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::sagas::SagaStatus;
use crate::saga::machine::{SagaState, Step};

/// The progress of an order's fulfilment saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SagaView {
    pub state: SagaState,
    /// The step to run next (`done` once finished).
    pub step: Step,
    /// Attempts of that step so far.
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// Since when the saga is at this step.
    pub step_since: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why the order is cancelled, once a step failed for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl SagaView {
    /// A saga just started by a create (its first step next).
    pub fn started(
        next_attempt_at: DateTime<Utc>,
        step_since: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        Self {
            state: SagaState::Running,
            step: Step::ValidateCustomer,
            attempts: 0,
            next_attempt_at,
            step_since,
            last_error: None,
            cancel_reason: None,
            updated_at,
        }
    }
}

impl From<SagaStatus> for SagaView {
    fn from(saga: SagaStatus) -> Self {
        Self {
            state: saga.state,
            step: saga.step,
            attempts: saga.attempts,
            next_attempt_at: saga.next_attempt_at,
            step_since: saga.step_since,
            last_error: saga.last_error,
            cancel_reason: saga.cancel_reason,
            updated_at: saga.updated_at,
        }
    }
}
