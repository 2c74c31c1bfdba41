//! `/flowz`: whether the service moves its data. Per sink, the deliveries pending, the age of
//! the oldest pending event and the parked count; the sagas stuck at a step. Counts and ages
//! only, never order data, so it stays open like the probes. The operator reads it on each
//! resync (the OrderPlatform's `DataFlowing` condition); `/metrics` publishes the same readings.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::responses::{InternalError, ServiceUnavailable};
use super::AppState;
use crate::db;

/// The data flow of this service's database (every replica reads the same).
#[derive(Debug, Serialize, ToSchema)]
pub struct DataFlow {
    /// One entry per configured sink (none without sinks).
    pub sinks: Vec<SinkFlow>,
    /// Unfinished sagas at the same step for longer than `saga_stuck_after_seconds` (at most
    /// 10,000 are counted).
    pub sagas_stuck: i64,
    /// The service's `--saga-stuck-after`.
    pub saga_stuck_after_seconds: u64,
}

/// One sink's outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct SinkFlow {
    /// `dynamodb` or `kafka`.
    #[schema(example = "kafka")]
    pub sink: String,
    /// Deliveries waiting (at most 100,000 are counted).
    pub pending: i64,
    /// Deliveries the sink refused for good (`order-service outbox parked`).
    pub parked: i64,
    /// Age of the oldest pending event; absent when nothing is pending.
    pub oldest_pending_seconds: Option<f64>,
}

/// Reads the data flow and sets the matching gauges.
pub async fn read(state: &AppState) -> Result<DataFlow, sqlx::Error> {
    let mut conn = state.pool.acquire().await?;
    let backlog = if state.sinks.is_empty() {
        Vec::new()
    } else {
        db::outbox::backlog(&mut conn, &state.sinks).await?
    };
    let sagas_stuck = db::sagas::count_stuck(&mut conn, state.saga_stuck_after).await?;
    state.metrics.observe_backlog(&state.sinks, &backlog);
    state.metrics.observe_sagas_stuck(sagas_stuck);
    Ok(DataFlow {
        sinks: backlog
            .into_iter()
            .map(|b| SinkFlow {
                sink: b.sink,
                pending: b.pending,
                parked: b.parked,
                oldest_pending_seconds: b.oldest_pending_seconds,
            })
            .collect(),
        sagas_stuck,
        saga_stuck_after_seconds: state.saga_stuck_after.as_secs(),
    })
}

/// The outbox backlog per sink and the stuck sagas: what the operator shows in the
/// OrderPlatform's status.
#[utoipa::path(get, path = "/flowz", tag = "health", responses(
    (status = 200, description = "The data flow", body = DataFlow),
    (status = 500, response = InternalError),
    (status = 503, response = ServiceUnavailable)))]
pub(crate) async fn flowz(State(state): State<AppState>) -> Result<Json<DataFlow>, ApiError> {
    Ok(Json(read(&state).await?))
}
