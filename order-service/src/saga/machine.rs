//! The saga's steps and what follows each outcome. Pure: no database, no HTTP.
//!
//! Forward: validate the customer, reserve inventory, authorize the payment, confirm the order.
//! A step that fails for good turns the saga around: the steps already done are undone in
//! reverse order (void the authorization, release the reservation) and the order is cancelled
//! with the reason. Compensations never fail for good: they are retried until they succeed.

use std::fmt;

use serde::Serialize;
use utoipa::ToSchema;

/// Where a saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaState {
    Running,
    Compensating,
    Confirmed,
    Cancelled,
}

impl SagaState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Compensating => "COMPENSATING",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Compensating,
            Self::Confirmed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled)
    }
}

/// One step of the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    ValidateCustomer,
    ReserveInventory,
    AuthorizePayment,
    ConfirmOrder,
    VoidPayment,
    ReleaseInventory,
    CancelOrder,
    Done,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Self::ValidateCustomer,
        Self::ReserveInventory,
        Self::AuthorizePayment,
        Self::ConfirmOrder,
        Self::VoidPayment,
        Self::ReleaseInventory,
        Self::CancelOrder,
        Self::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidateCustomer => "validate_customer",
            Self::ReserveInventory => "reserve_inventory",
            Self::AuthorizePayment => "authorize_payment",
            Self::ConfirmOrder => "confirm_order",
            Self::VoidPayment => "void_payment",
            Self::ReleaseInventory => "release_inventory",
            Self::CancelOrder => "cancel_order",
            Self::Done => "done",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Undoing steps are retried until they succeed; forward steps may fail for good.
    pub fn is_compensation(self) -> bool {
        matches!(
            self,
            Self::VoidPayment | Self::ReleaseInventory | Self::CancelOrder
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the saga remembers between steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub reservation_id: Option<String>,
    pub authorization_id: Option<String>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; a reservation or authorization id when the step made one.
    Done { id: Option<String> },
    /// Failed for good, with the reason a person can read (`out_of_stock: SKU-1`).
    Rejected { reason: String },
    /// Not now (timeout, 5xx, 429, circuit open): the same step again later.
    Retry {
        error: String,
        /// Not before this (Retry-After, an open breaker).
        after: Option<std::time::Duration>,
    },
}

/// Where the saga goes after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: SagaState,
    pub step: Step,
    pub progress: Progress,
    /// Set once a step was rejected: why the order will be cancelled.
    pub cancel_reason: Option<String>,
    /// The same step again, after a delay.
    pub retry: bool,
}

/// The step after `step` ended with `outcome`.
pub fn next(
    state: SagaState,
    step: Step,
    progress: &Progress,
    cancel_reason: Option<&str>,
    outcome: Outcome,
) -> Transition {
    let mut progress = progress.clone();
    let stay = |progress: Progress| Transition {
        state,
        step,
        progress,
        cancel_reason: cancel_reason.map(str::to_owned),
        retry: true,
    };
    let go = |state, step, progress, reason: Option<String>| Transition {
        state,
        step,
        progress,
        cancel_reason: reason,
        retry: false,
    };
    let reason = cancel_reason.map(str::to_owned);
    match outcome {
        Outcome::Retry { .. } => stay(progress),
        Outcome::Done { id } => {
            match step {
                Step::ReserveInventory => progress.reservation_id = id,
                Step::AuthorizePayment => progress.authorization_id = id,
                _ => {}
            }
            match step {
                Step::ValidateCustomer => {
                    go(SagaState::Running, Step::ReserveInventory, progress, None)
                }
                Step::ReserveInventory => {
                    go(SagaState::Running, Step::AuthorizePayment, progress, None)
                }
                Step::AuthorizePayment => {
                    go(SagaState::Running, Step::ConfirmOrder, progress, None)
                }
                Step::ConfirmOrder => go(SagaState::Confirmed, Step::Done, progress, None),
                Step::VoidPayment => go(
                    SagaState::Compensating,
                    undo_after(Step::VoidPayment, &progress),
                    progress,
                    reason,
                ),
                Step::ReleaseInventory => {
                    go(SagaState::Compensating, Step::CancelOrder, progress, reason)
                }
                Step::CancelOrder => go(SagaState::Cancelled, Step::Done, progress, reason),
                Step::Done => go(state, Step::Done, progress, reason),
            }
        }
        Outcome::Rejected { reason: why } => {
            if step.is_compensation() || step == Step::Done {
                // Compensations do not give up: a rejection is retried like any failure.
                return stay(progress);
            }
            let first = undo_after(step, &progress);
            go(SagaState::Compensating, first, progress, Some(why))
        }
    }
}

/// The first compensation to run once `failed` (or a later step) cannot go on: only what was
/// done is undone, newest first.
fn undo_after(failed: Step, progress: &Progress) -> Step {
    let authorized = progress.authorization_id.is_some() && failed != Step::VoidPayment;
    if authorized {
        Step::VoidPayment
    } else if progress.reservation_id.is_some() {
        Step::ReleaseInventory
    } else {
        Step::CancelOrder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: Option<&str>) -> Outcome {
        Outcome::Done {
            id: id.map(str::to_owned),
        }
    }

    fn rejected(reason: &str) -> Outcome {
        Outcome::Rejected {
            reason: reason.into(),
        }
    }

    /// Runs the machine over outcomes from the first step; returns the steps visited and the end.
    fn run(outcomes: Vec<Outcome>) -> (Vec<Step>, Transition) {
        let mut state = SagaState::Running;
        let mut step = Step::ValidateCustomer;
        let mut progress = Progress::default();
        let mut reason: Option<String> = None;
        let mut visited = vec![step];
        let mut last = None;
        for outcome in outcomes {
            let t = next(state, step, &progress, reason.as_deref(), outcome);
            state = t.state;
            step = t.step;
            progress = t.progress.clone();
            reason = t.cancel_reason.clone();
            visited.push(step);
            last = Some(t);
        }
        (visited, last.expect("at least one outcome"))
    }

    #[test]
    fn the_happy_path_confirms() {
        let (steps, end) = run(vec![
            done(None),
            done(Some("r-1")),
            done(Some("a-1")),
            done(None),
        ]);
        assert_eq!(
            steps,
            [
                Step::ValidateCustomer,
                Step::ReserveInventory,
                Step::AuthorizePayment,
                Step::ConfirmOrder,
                Step::Done
            ]
        );
        assert_eq!(end.state, SagaState::Confirmed);
        assert_eq!(end.progress.reservation_id.as_deref(), Some("r-1"));
        assert_eq!(end.progress.authorization_id.as_deref(), Some("a-1"));
    }

    #[test]
    fn an_unknown_customer_cancels_with_nothing_to_undo() {
        let (steps, end) = run(vec![rejected("unknown_customer: c-9"), done(None)]);
        assert_eq!(
            steps,
            [Step::ValidateCustomer, Step::CancelOrder, Step::Done]
        );
        assert_eq!(end.state, SagaState::Cancelled);
        assert_eq!(end.cancel_reason.as_deref(), Some("unknown_customer: c-9"));
    }

    #[test]
    fn a_declined_payment_releases_the_reservation_then_cancels() {
        let (steps, end) = run(vec![
            done(None),
            done(Some("r-1")),
            rejected("payment_declined"),
            done(None),
            done(None),
        ]);
        assert_eq!(
            steps[3..],
            [Step::ReleaseInventory, Step::CancelOrder, Step::Done]
        );
        assert_eq!(end.cancel_reason.as_deref(), Some("payment_declined"));
        assert_eq!(end.state, SagaState::Cancelled);
    }

    #[test]
    fn an_order_cancelled_before_confirmation_undoes_payment_then_inventory() {
        let (steps, end) = run(vec![
            done(None),
            done(Some("r-1")),
            done(Some("a-1")),
            rejected("order_cancelled"),
            done(None),
            done(None),
            done(None),
        ]);
        assert_eq!(
            steps[4..],
            [
                Step::VoidPayment,
                Step::ReleaseInventory,
                Step::CancelOrder,
                Step::Done
            ]
        );
        assert_eq!(end.state, SagaState::Cancelled);
    }

    #[test]
    fn retries_stay_on_the_step_and_compensations_never_give_up() {
        let progress = Progress {
            reservation_id: Some("r-1".into()),
            authorization_id: None,
        };
        let retry = next(
            SagaState::Running,
            Step::ReserveInventory,
            &Progress::default(),
            None,
            Outcome::Retry {
                error: "timeout".into(),
                after: None,
            },
        );
        assert!(retry.retry);
        assert_eq!(retry.step, Step::ReserveInventory);
        let refused = next(
            SagaState::Compensating,
            Step::ReleaseInventory,
            &progress,
            Some("payment_declined"),
            rejected("400"),
        );
        assert!(refused.retry);
        assert_eq!(refused.step, Step::ReleaseInventory);
        assert_eq!(refused.cancel_reason.as_deref(), Some("payment_declined"));
    }

    #[test]
    fn names_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        for state in ["RUNNING", "COMPENSATING", "CONFIRMED", "CANCELLED"] {
            assert_eq!(SagaState::parse(state).map(SagaState::as_str), Some(state));
        }
    }
}
