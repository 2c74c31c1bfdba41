//! The `sagas` table: insert with the order, claim due sagas with a lease, record each step.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::saga::machine::{Progress, SagaState, Step, Transition};

/// A saga as the workers read it.
#[derive(Debug, Clone)]
pub struct SagaRow {
    pub order_id: Uuid,
    pub state: SagaState,
    pub step: Step,
    pub attempts: i32,
    pub progress: Progress,
    pub cancel_reason: Option<String>,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Where a saga stands, as the API (`http::sagas::SagaStatus`) and `order-service sagas` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaStatus {
    pub order_id: Uuid,
    pub state: SagaState,
    pub step: Step,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub step_since: DateTime<Utc>,
    pub last_error: Option<String>,
    pub cancel_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Every column of a `sagas` row; decoded into what the workers or the readers need.
#[derive(sqlx::FromRow)]
struct Record {
    order_id: Uuid,
    state: String,
    step: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    step_since: DateTime<Utc>,
    last_error: Option<String>,
    cancel_reason: Option<String>,
    reservation_id: Option<String>,
    authorization_id: Option<String>,
    traceparent: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "order_id, state, step, attempts, next_attempt_at, step_since, last_error, \
     cancel_reason, reservation_id, authorization_id, traceparent, created_at, updated_at";

impl Record {
    fn state_and_step(&self) -> Result<(SagaState, Step), sqlx::Error> {
        let corrupt = |value: &str| {
            sqlx::Error::Decode(
                format!("saga {}: unknown state or step `{value}`", self.order_id).into(),
            )
        };
        Ok((
            SagaState::parse(&self.state).ok_or_else(|| corrupt(&self.state))?,
            Step::parse(&self.step).ok_or_else(|| corrupt(&self.step))?,
        ))
    }

    fn row(self) -> Result<SagaRow, sqlx::Error> {
        let (state, step) = self.state_and_step()?;
        Ok(SagaRow {
            order_id: self.order_id,
            state,
            step,
            attempts: self.attempts,
            progress: Progress {
                reservation_id: self.reservation_id,
                authorization_id: self.authorization_id,
            },
            cancel_reason: self.cancel_reason,
            traceparent: self.traceparent,
            created_at: self.created_at,
        })
    }

    fn view(self) -> Result<SagaStatus, sqlx::Error> {
        let (state, step) = self.state_and_step()?;
        Ok(SagaStatus {
            order_id: self.order_id,
            state,
            step,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            step_since: self.step_since,
            last_error: self.last_error,
            cancel_reason: self.cancel_reason,
            updated_at: self.updated_at,
        })
    }
}

/// Starts the saga of a new order (in the order's own transaction); returns it as shown.
pub async fn insert(
    conn: &mut PgConnection,
    order_id: Uuid,
    traceparent: Option<&str>,
) -> Result<SagaStatus, sqlx::Error> {
    let record: Record = sqlx::query_as(&format!(
        "INSERT INTO sagas (order_id, state, step, traceparent) VALUES ($1, $2, $3, $4)
         RETURNING {COLUMNS}"
    ))
    .bind(order_id)
    .bind(SagaState::Running.as_str())
    .bind(Step::ValidateCustomer.as_str())
    .bind(traceparent)
    .fetch_one(conn)
    .await?;
    record.view()
}

/// Claims up to `limit` due sagas for `worker` until the lease ends. A saga whose worker died
/// becomes due again when its lease runs out.
pub async fn claim(
    conn: &mut PgConnection,
    worker: Uuid,
    lease: Duration,
    limit: i64,
) -> Result<Vec<SagaRow>, sqlx::Error> {
    let rows: Vec<Record> = sqlx::query_as(&format!(
        "UPDATE sagas SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2)
         WHERE order_id IN (
             SELECT order_id FROM sagas
             WHERE state IN ('RUNNING', 'COMPENSATING') AND next_attempt_at <= now()
               AND (claimed_until IS NULL OR claimed_until < now())
             ORDER BY next_attempt_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Record::row).collect()
}

/// Locks a saga this worker holds (for the order service's own steps, which change the order
/// in the same transaction). `None`: the lease was lost; another worker has it now.
pub async fn lock_claimed(
    conn: &mut PgConnection,
    order_id: Uuid,
    worker: Uuid,
) -> Result<Option<SagaRow>, sqlx::Error> {
    let row: Option<Record> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sagas WHERE order_id = $1 AND claimed_by = $2 FOR UPDATE"
    ))
    .bind(order_id)
    .bind(worker)
    .fetch_optional(conn)
    .await?;
    row.map(Record::row).transpose()
}

/// What one step changed.
pub struct Recorded<'a> {
    pub transition: &'a Transition,
    pub attempts: i32,
    /// When the step (or the next) may run.
    pub delay: Duration,
    pub last_error: Option<&'a str>,
    /// Keep the claim (the worker goes on with the next step) or let go of it.
    pub keep_claim: Option<Duration>,
}

/// Records a step's result; false when this worker no longer holds the saga.
pub async fn record(
    conn: &mut PgConnection,
    order_id: Uuid,
    worker: Uuid,
    recorded: &Recorded<'_>,
) -> Result<bool, sqlx::Error> {
    let t = recorded.transition;
    let result = sqlx::query(
        "UPDATE sagas SET state = $3, step = $4, attempts = $5,
             step_since = CASE WHEN step = $4 THEN step_since ELSE now() END,
             next_attempt_at = now() + make_interval(secs => $6), last_error = $7,
             cancel_reason = $8, reservation_id = $9, authorization_id = $10,
             claimed_by = CASE WHEN $11::float8 IS NULL THEN NULL ELSE claimed_by END,
             claimed_until = CASE WHEN $11::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $11) END,
             updated_at = now()
         WHERE order_id = $1 AND claimed_by = $2",
    )
    .bind(order_id)
    .bind(worker)
    .bind(t.state.as_str())
    .bind(t.step.as_str())
    .bind(recorded.attempts)
    .bind(recorded.delay.as_secs_f64())
    .bind(recorded.last_error)
    .bind(t.cancel_reason.as_deref())
    .bind(t.progress.reservation_id.as_deref())
    .bind(t.progress.authorization_id.as_deref())
    .bind(recorded.keep_claim.map(|d| d.as_secs_f64()))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn get(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<SagaStatus>, sqlx::Error> {
    let row: Option<Record> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM sagas WHERE order_id = $1"))
            .bind(order_id)
            .fetch_optional(conn)
            .await?;
    row.map(Record::view).transpose()
}

/// Unfinished sagas that have been at the same step for `older_than`, oldest first (retries
/// of a step do not count as moving).
pub async fn stuck(
    conn: &mut PgConnection,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<SagaStatus>, sqlx::Error> {
    let rows: Vec<Record> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sagas
         WHERE state IN ('RUNNING', 'COMPENSATING') AND step_since < now() - make_interval(secs => $1)
         ORDER BY step_since LIMIT $2"
    ))
    .bind(older_than.as_secs_f64())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Record::view).collect()
}

/// The most unfinished sagas [`count_stuck`] reads: past it the count saturates.
pub const STUCK_COUNT_CAP: i64 = 10_000;

/// How many unfinished sagas have been at the same step for `older_than`, counting at most
/// [`STUCK_COUNT_CAP`] (cheap enough for every `/metrics` scrape: unfinished sagas only, through
/// the partial index on them).
pub async fn count_stuck(
    conn: &mut PgConnection,
    older_than: Duration,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM sagas
                               WHERE state IN ('RUNNING', 'COMPENSATING')
                                 AND step_since < now() - make_interval(secs => $1)
                               LIMIT $2) s",
    )
    .bind(older_than.as_secs_f64())
    .bind(STUCK_COUNT_CAP)
    .fetch_one(conn)
    .await
}
