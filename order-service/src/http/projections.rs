//! Reads served from the DynamoDB projections: an order's status history and the hourly
//! status counters. PostgreSQL stays the source of truth; these may lag it by the relay's lag.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::responses::{BadRequest, InternalError, NotFound, ServiceUnavailable};
use super::AppState;
use crate::auth::Principal;
use crate::db;
use crate::domain::OrderStatus;
use crate::dynamodb::DynamoDbProjection;
use crate::dynamodb::{CounterTotal, HistoryEntry};
use crate::outbox::envelope::hour_bucket;

/// The longest range `/v1/stats/status` sums over.
const MAX_STATS_RANGE_DAYS: i64 = 31;
const MAX_HISTORY_LIMIT: i32 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders/{id}/history", get(order_history))
        .route("/v1/stats/status", get(status_stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of an order's status history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryPageBody {
    items: Vec<HistoryEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

fn encode_cursor(version: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("h1:{version}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|raw| raw.strip_prefix("h1:").and_then(|v| v.parse().ok()))
        .ok_or_else(|| ApiError::InvalidQuery("the cursor is not one this service issued".into()))
}

fn dynamodb(state: &AppState) -> Result<&DynamoDbProjection, ApiError> {
    state.projections.dynamodb.as_ref().ok_or_else(|| {
        ApiError::ProjectionUnavailable(anyhow::anyhow!(
            "the DynamoDB sink is not configured in this service"
        ))
    })
}

/// An order's status history (from DynamoDB), newest first.
#[utoipa::path(
    get, path = "/v1/orders/{id}/history", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), HistoryQuery),
    responses(
        (status = 200, body = HistoryPageBody),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn order_history(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryPageBody>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_HISTORY_LIMIT}"
        )));
    }
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let store = &dynamodb(&state)?.history;
    principal.visibility()?;
    let mut conn = state.pool.acquire().await?;
    // Another customer's order is answered as missing, as by `GET /v1/orders/{id}`.
    let customer_id = db::orders::customer_of(&mut conn, id).await?;
    if !customer_id.is_some_and(|customer| principal.can_see(&customer)) {
        return Err(ApiError::OrderNotFound(id));
    }
    drop(conn);
    let page = store
        .page(id, limit, before)
        .await
        .map_err(|e| ApiError::ProjectionUnavailable(anyhow::anyhow!(e)))?;
    Ok(Json(HistoryPageBody {
        items: page.entries,
        next_cursor: page.next_before.map(encode_cursor),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsQuery {
    /// Start (RFC 3339); counted from the start of its hour.
    from: DateTime<Utc>,
    /// End (RFC 3339), exclusive: hours that start before it are counted.
    to: DateTime<Utc>,
}

/// Orders that entered each status, per currency, summed over hourly counters.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusStats {
    /// First hour bucket counted (`YYYY-MM-DDTHH`, UTC).
    first_hour: String,
    /// Last hour bucket counted.
    last_hour: String,
    /// Status → currency → count and total (minor units).
    statuses: BTreeMap<OrderStatus, BTreeMap<String, CounterTotal>>,
}

/// Hourly status counters summed over a time range.
///
/// `to` must be after `from`, and the range may span at most 31 days (else `invalid-query`).
#[utoipa::path(
    get, path = "/v1/stats/status", tag = "stats",
    params(StatsQuery),
    responses(
        (status = 200, body = StatusStats),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn status_stats(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Json<StatusStats>, ApiError> {
    principal.may_read_stats()?;
    if query.to <= query.from {
        return Err(ApiError::InvalidQuery("`to` must be after `from`".into()));
    }
    if query.to - query.from > Duration::days(MAX_STATS_RANGE_DAYS) {
        return Err(ApiError::InvalidQuery(format!(
            "the range may span at most {MAX_STATS_RANGE_DAYS} days"
        )));
    }
    let counters = &dynamodb(&state)?.counters;
    let first_hour = hour_bucket(query.from);
    let last_hour = hour_bucket(query.to - Duration::microseconds(1));
    let statuses = counters
        .sum(&first_hour, &last_hour)
        .await
        .map_err(|e| ApiError::ProjectionUnavailable(anyhow::anyhow!(e)))?;
    Ok(Json(StatusStats {
        first_hour,
        last_hour,
        statuses,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_cursor_round_trips_and_refuses_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)).ok(), Some(42));
        assert!(decode_cursor("bogus").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1:3")).is_err());
    }
}
