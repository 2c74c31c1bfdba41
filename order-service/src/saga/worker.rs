//! The saga workers: claim due sagas (any replica, `FOR UPDATE SKIP LOCKED` under a lease),
//! run their steps, record each result. A step that must wait (a retry, an open breaker) lets
//! the saga go with its next attempt time; any worker picks it up then.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::machine::{self, Outcome, SagaState, Step};
use super::participants::{self, Participants};
use super::SagaConfig;
use crate::db;
use crate::db::sagas::{Recorded, SagaRow};
use crate::domain::OrderStatus;
use crate::metrics::Metrics;
use crate::outbox::envelope::{EventEnvelope, SagaStepEvent, ACTOR_SAGA};
use crate::outbox::sink::Sink;

pub struct SagaRunner {
    pool: PgPool,
    participants: Participants,
    config: SagaConfig,
    sinks: Arc<[Sink]>,
    metrics: Arc<Metrics>,
    /// This instance's identity in the `claimed_by` column.
    worker: Uuid,
    /// Woken when this instance creates an order, so its saga starts without a poll delay.
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
}

impl SagaRunner {
    pub fn new(
        pool: PgPool,
        participants: Participants,
        config: SagaConfig,
        sinks: Arc<[Sink]>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(config.saga_concurrency.max(1))),
            pool,
            participants,
            config,
            sinks,
            metrics,
            worker: Uuid::new_v4(),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Claims what is due (as many as there are free slots, at most a claim batch) and starts
    /// each claimed saga on its own slot in `running`. Returns how many were claimed.
    async fn dispatch(
        self: &Arc<Self>,
        running: &mut tokio::task::JoinSet<()>,
    ) -> Result<usize, sqlx::Error> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let limit = free.min(self.config.saga_claim_batch.max(1)) as i64;
        let mut conn = self.pool.acquire().await?;
        let claimed =
            db::sagas::claim(&mut conn, self.worker, self.config.saga_lease, limit).await?;
        drop(conn);
        let count = claimed.len();
        for saga in claimed {
            // Only this task takes slots, and it claimed no more than were free.
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                break;
            };
            let runner = self.clone();
            running.spawn(async move {
                let order_id = saga.order_id;
                if let Err(error) = runner.drive(saga).await {
                    tracing::warn!(%order_id, %error, "saga step failed on the database; its lease will expire and it resumes");
                }
                drop(slot);
            });
        }
        Ok(count)
    }

    /// Claims what is due and drives each claimed saga as far as it goes now; returns once
    /// they all stopped. Tests call this to step the sagas explicitly.
    pub async fn step(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        let mut running = tokio::task::JoinSet::new();
        let claimed = self.dispatch(&mut running).await?;
        while running.join_next().await.is_some() {}
        Ok(claimed)
    }

    /// Runs until `shutdown`: claims again whenever a slot frees up, when woken by a new order,
    /// or every poll interval, so `--saga-concurrency` sagas are in flight whatever the claim
    /// batch and however slow one of them is. On shutdown, in-flight sagas finish their
    /// current call and record it (the caller bounds how long that may take).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(worker = %self.worker, concurrency = self.config.saga_concurrency, "saga workers started");
        let mut running = tokio::task::JoinSet::new();
        while !shutdown.is_cancelled() {
            let claimed = match self.dispatch(&mut running).await {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, "claiming sagas failed");
                    0
                }
            };
            // A full claim means more may be due: claim again at once if slots are left.
            if claimed > 0
                && claimed >= self.config.saga_claim_batch.max(1)
                && self.slots.available_permits() > 0
            {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = self.wake.notified() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(self.config.saga_poll_interval) => {}
            }
        }
        while running.join_next().await.is_some() {}
        tracing::info!("saga workers stopped");
    }

    /// Runs one saga's steps until it finishes, must wait, or this worker lost it.
    async fn drive(&self, mut saga: SagaRow) -> Result<(), sqlx::Error> {
        // What the participants are sent (items, total, customer) never changes: read it once.
        let mut conn = self.pool.acquire().await?;
        let Some(order) = db::orders::get(&mut conn, saga.order_id).await? else {
            return Ok(());
        };
        drop(conn);
        loop {
            if saga.state.is_finished() || saga.step == Step::Done {
                return Ok(());
            }
            let step = saga.step;
            let mut outcome = match step {
                Step::ConfirmOrder | Step::CancelOrder => {
                    // The order service's own steps commit the order change, its event and the
                    // saga's progress in one transaction.
                    match self.finish(&saga, step).await? {
                        Finish::Finished(done) => {
                            self.metrics
                                .saga_finished(done.state.as_str(), saga.created_at);
                            saga = done;
                            continue;
                        }
                        Finish::LeaseLost => return Ok(()),
                        Finish::NotPending => Outcome::Rejected {
                            reason: "order_cancelled".into(),
                        },
                    }
                }
                // A forward step of an order cancelled meanwhile is not started: what was done
                // is undone instead (the order is already CANCELLED, with the caller's reason).
                _ if !step.is_compensation() && !self.still_pending(saga.order_id).await? => {
                    Outcome::Rejected {
                        reason: "order_cancelled".into(),
                    }
                }
                _ => {
                    let undo = match step {
                        Step::ReleaseInventory => saga.progress.reservation_id.as_deref(),
                        Step::VoidPayment => saga.progress.authorization_id.as_deref(),
                        _ => None,
                    };
                    self.participants
                        .run(step, &order, undo, saga.traceparent.as_deref())
                        .await
                }
            };
            // A forward step that keeps failing gives up after the deadline: the order is
            // cancelled (and what was done undone) rather than left pending for ever.
            if let Outcome::Retry { error, .. } = &outcome {
                let age = chrono::Utc::now() - saga.created_at;
                if !step.is_compensation()
                    && age.to_std().unwrap_or_default() > self.config.saga_deadline
                {
                    let who = self
                        .participants
                        .of(step)
                        .map_or("order-service", |p| p.name());
                    outcome = Outcome::Rejected {
                        reason: format!("{who}_unavailable: {error}"),
                    };
                }
            }
            let (error, after) = match &outcome {
                Outcome::Retry { error, after } => (Some(error.clone()), *after),
                Outcome::Rejected { reason } => (Some(reason.clone()), None),
                Outcome::Done { .. } => (None, None),
            };
            self.metrics
                .saga_step(step.as_str(), outcome_label(&outcome));
            let made = participants::step_event(step, &outcome, &saga.progress);
            let transition = machine::next(
                saga.state,
                step,
                &saga.progress,
                saga.cancel_reason.as_deref(),
                outcome,
            );
            let attempts = if transition.retry {
                saga.attempts + 1
            } else {
                0
            };
            let delay = if transition.retry {
                self.backoff(saga.attempts).max(after.unwrap_or_default())
            } else {
                Duration::ZERO
            };
            if let Some(error) = &error {
                tracing::info!(order_id = %saga.order_id, step = %step, attempts, ?delay, %error, "saga step did not succeed");
            }
            let recorded = Recorded {
                transition: &transition,
                attempts,
                delay,
                last_error: error.as_deref(),
                keep_claim: (!transition.retry).then_some(self.config.saga_lease),
            };
            let kept = match made.filter(|_| !transition.retry) {
                Some(made) => {
                    self.record_with_event(&saga, &order, made, &recorded)
                        .await?
                }
                None => {
                    let mut conn = self.pool.acquire().await?;
                    db::sagas::record(&mut conn, saga.order_id, self.worker, &recorded).await?
                }
            };
            if !kept {
                tracing::warn!(order_id = %saga.order_id, "saga lease lost; another worker resumes it");
                return Ok(());
            }
            if transition.retry {
                return Ok(());
            }
            saga.state = transition.state;
            saga.step = transition.step;
            saga.attempts = 0;
            saga.progress = transition.progress;
            saga.cancel_reason = transition.cancel_reason;
        }
    }

    /// Records a step that reserved, authorized or undid something, with its event, in one
    /// transaction (as every change goes through the outbox). The event goes to the stream
    /// (Kafka) only: the DynamoDB projection holds one item per order version, and a step
    /// changes no version. False when this worker no longer holds the saga.
    async fn record_with_event(
        &self,
        saga: &SagaRow,
        order: &crate::domain::Order,
        made: SagaStepEvent,
        recorded: &Recorded<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // Locked, so a concurrent status change is ordered before or after this event.
        let Some(current) = db::orders::lock(&mut tx, saga.order_id).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        if !db::sagas::record(&mut tx, saga.order_id, self.worker, recorded).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        let stream: Vec<Sink> = self
            .sinks
            .iter()
            .copied()
            .filter(|sink| *sink == Sink::Kafka)
            .collect();
        let event = EventEnvelope::saga_step(
            order,
            current.status,
            current.version,
            made,
            chrono::Utc::now(),
        )
        .with_traceparent(saga.traceparent.clone());
        db::outbox::insert(&mut tx, &event, &stream).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Whether the order is still PENDING (not cancelled through the API meanwhile).
    async fn still_pending(&self, order_id: Uuid) -> Result<bool, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        Ok(db::orders::status_of(&mut conn, order_id).await? == Some(OrderStatus::Pending))
    }

    /// Confirms or cancels the order with its event, and finishes the saga, in one transaction.
    async fn finish(&self, saga: &SagaRow, step: Step) -> Result<Finish, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let Some(held) = db::sagas::lock_claimed(&mut tx, saga.order_id, self.worker).await? else {
            // Lost the lease: whoever holds it now finishes.
            tx.rollback().await?;
            return Ok(Finish::LeaseLost);
        };
        let Some(current) = db::orders::lock(&mut tx, saga.order_id).await? else {
            tx.rollback().await?;
            return Ok(Finish::LeaseLost);
        };
        let (target, state) = match step {
            Step::ConfirmOrder => (OrderStatus::Confirmed, SagaState::Confirmed),
            _ => (OrderStatus::Cancelled, SagaState::Cancelled),
        };
        // The order as it entered its new status, counted once the change is committed.
        let mut entered = None;
        if current.status == OrderStatus::Pending {
            let reason = (target == OrderStatus::Cancelled)
                .then_some(held.cancel_reason.as_deref())
                .flatten();
            db::orders::set_status(&mut tx, saga.order_id, target, reason).await?;
            let order = db::orders::get(&mut tx, saga.order_id)
                .await?
                .ok_or_else(|| sqlx::Error::RowNotFound)?;
            let event = EventEnvelope::status_changed(&order, current.status, ACTOR_SAGA, None)
                .with_traceparent(held.traceparent.clone());
            db::outbox::insert(&mut tx, &event, &self.sinks).await?;
            entered = Some(order);
        } else if step == Step::ConfirmOrder {
            // Cancelled through the API while the saga ran: undo instead.
            tx.rollback().await?;
            return Ok(Finish::NotPending);
        }
        let transition = machine::Transition {
            state,
            step: Step::Done,
            progress: held.progress.clone(),
            cancel_reason: held.cancel_reason.clone(),
            retry: false,
        };
        let recorded = Recorded {
            transition: &transition,
            attempts: 0,
            delay: Duration::ZERO,
            last_error: None,
            keep_claim: None,
        };
        db::sagas::record(&mut tx, saga.order_id, self.worker, &recorded).await?;
        tx.commit().await?;
        if let Some(order) = &entered {
            self.metrics.order_entered(order);
        }
        tracing::info!(order_id = %saga.order_id, state = state.as_str(), reason = ?held.cancel_reason, "saga finished");
        Ok(Finish::Finished(SagaRow {
            state,
            step: Step::Done,
            ..held
        }))
    }

    fn backoff(&self, attempts: i32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.config.saga_min_backoff)
            .with_max_delay(self.config.saga_max_backoff)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempts.max(0) as usize)
            .unwrap_or(self.config.saga_max_backoff)
    }
}

/// How the order service's own step went.
enum Finish {
    Finished(SagaRow),
    /// Confirming found the order no longer PENDING.
    NotPending,
    LeaseLost,
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done { .. } => "done",
        Outcome::Rejected { .. } => "rejected",
        Outcome::Retry { .. } => "retry",
    }
}
