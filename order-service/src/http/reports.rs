//! Reports over the orders in PostgreSQL: sales per period and the best-selling products.
//! Staff only. They read from the read replica when one is configured (`--database-read-url`)
//! and, while it is down or behind, refuse with 503 rather than load the primary, unless
//! `--reports-when-replica-behind primary`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::ApiQuery;
use super::responses::{BadRequest, InternalError, ServiceUnavailable};
use super::AppState;
use crate::auth::Principal;
use crate::db;
use crate::domain::{Currency, Granularity, ProductSales, ReportRange, SalesRow, MAX_REPORT_ROWS};
use crate::replica::ReadKind;

const DEFAULT_TOP: u32 = 10;
const MAX_TOP: u32 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/reports/sales", get(sales_report))
        .route("/v1/reports/top-products", get(top_products_report))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SalesQuery {
    /// Start (RFC 3339), inclusive: orders created at or after it.
    from: DateTime<Utc>,
    /// End (RFC 3339), exclusive.
    to: DateTime<Utc>,
    /// Period length (default `day`); hourly reports span at most 31 days, daily ones 366.
    granularity: Option<Granularity>,
    /// Only orders in this currency (ISO 4217).
    #[param(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
}

/// Orders and revenue per period, by status and currency; periods without orders are left out.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SalesReport {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
    rows: Vec<SalesRow>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TopProductsQuery {
    /// Start (RFC 3339), inclusive.
    from: DateTime<Utc>,
    /// End (RFC 3339), exclusive; at most 366 days after `from`.
    to: DateTime<Utc>,
    /// Rows, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Only orders in this currency (ISO 4217).
    #[param(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
}

/// The best-selling SKUs of orders not cancelled, by units sold then revenue, per currency.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopProductsReport {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    products: Vec<ProductSales>,
}

fn currency(code: Option<String>) -> Result<Option<String>, ApiError> {
    code.map(|code| {
        Currency::parse(&code)
            .map(|c| c.code().to_owned())
            .map_err(ApiError::InvalidQuery)
    })
    .transpose()
}

/// Sales per period: orders and revenue (minor units per currency) by status.
///
/// Staff only. Bounded: `to` after `from`, 31 days at most with hourly periods and 366 with
/// daily ones, and at most 10,000 rows (else `invalid-query`: narrow the range or filter by
/// currency). Served by the read replica when one is configured; while it is down or behind,
/// 503 `replica-unavailable` or `replica-lagging`.
#[utoipa::path(
    get, path = "/v1/reports/sales", tag = "reports",
    params(SalesQuery),
    responses(
        (status = 200, body = SalesReport),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn sales_report(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<SalesQuery>,
) -> Result<Json<SalesReport>, ApiError> {
    principal.may_read_stats()?;
    let granularity = query.granularity.unwrap_or_default();
    let range = ReportRange::for_periods(query.from, query.to, granularity)
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let currency = currency(query.currency)?;
    let mut conn = state.reads.pool_for(ReadKind::Report)?.acquire().await?;
    let rows = db::reports::sales(
        &mut conn,
        range,
        granularity,
        currency.as_deref(),
        MAX_REPORT_ROWS as i64 + 1,
    )
    .await?;
    if rows.len() > MAX_REPORT_ROWS {
        return Err(ApiError::InvalidQuery(format!(
            "the report would have more than {MAX_REPORT_ROWS} rows: narrow the range, use \
             granularity=day or filter by currency"
        )));
    }
    Ok(Json(SalesReport {
        from: range.from,
        to: range.to,
        granularity,
        rows,
    }))
}

/// The best-selling products: units and revenue per SKU and currency.
///
/// Staff only. `to` after `from` and at most 366 days later. Orders that were cancelled do not
/// count. Served like the sales report (read replica, 503 while it is down or behind).
#[utoipa::path(
    get, path = "/v1/reports/top-products", tag = "reports",
    params(TopProductsQuery),
    responses(
        (status = 200, body = TopProductsReport),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn top_products_report(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<TopProductsQuery>,
) -> Result<Json<TopProductsReport>, ApiError> {
    principal.may_read_stats()?;
    let range = ReportRange::for_periods(query.from, query.to, Granularity::Day)
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let limit = query.limit.unwrap_or(DEFAULT_TOP);
    if !(1..=MAX_TOP).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_TOP}"
        )));
    }
    let currency = currency(query.currency)?;
    let mut conn = state.reads.pool_for(ReadKind::Report)?.acquire().await?;
    let products =
        db::reports::top_products(&mut conn, range, currency.as_deref(), i64::from(limit)).await?;
    Ok(Json(TopProductsReport {
        from: range.from,
        to: range.to,
        products,
    }))
}
