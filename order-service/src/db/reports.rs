//! The reporting queries. Each reads one bounded range of `orders` through
//! `orders_created_idx` (`tests/api/reports.rs` EXPLAINs these very statements and fails on a
//! sequential scan) and returns at most `limit` rows.

use sqlx::PgConnection;

use crate::domain::{Granularity, ProductSales, ReportRange, SalesRow};

/// Orders and revenue per period, status and currency, in period order.
/// Binds: from, to, `date_trunc` unit, currency or NULL, limit.
pub const SALES: &str = "\
    SELECT date_trunc($3, created_at, 'UTC') AS period_start, status, currency::text AS currency,
           count(*) AS orders, sum(total_minor)::bigint AS revenue_minor
    FROM orders
    WHERE created_at >= $1 AND created_at < $2 AND ($4::text IS NULL OR currency = $4)
    GROUP BY 1, 2, 3
    ORDER BY 1, 3, 2
    LIMIT $5";

/// The SKUs sold most (by units, then revenue) in orders created in the range and not
/// cancelled, per currency. Binds: from, to, currency or NULL, limit.
pub const TOP_PRODUCTS: &str = "\
    SELECT i.sku, (array_agg(i.name ORDER BY o.created_at DESC))[1] AS name,
           o.currency::text AS currency, sum(i.quantity)::bigint AS quantity,
           sum(i.line_total_minor)::bigint AS revenue_minor, count(DISTINCT o.id) AS orders
    FROM orders o
    JOIN order_items i ON i.order_id = o.id
    WHERE o.created_at >= $1 AND o.created_at < $2 AND o.status <> 'CANCELLED'
      AND ($3::text IS NULL OR o.currency = $3)
    GROUP BY i.sku, o.currency
    ORDER BY quantity DESC, revenue_minor DESC, i.sku, o.currency
    LIMIT $4";

pub async fn sales(
    conn: &mut PgConnection,
    range: ReportRange,
    granularity: Granularity,
    currency: Option<&str>,
    limit: i64,
) -> Result<Vec<SalesRow>, sqlx::Error> {
    sqlx::query_as(SALES)
        .bind(range.from)
        .bind(range.to)
        .bind(granularity.unit())
        .bind(currency)
        .bind(limit)
        .fetch_all(conn)
        .await
}

pub async fn top_products(
    conn: &mut PgConnection,
    range: ReportRange,
    currency: Option<&str>,
    limit: i64,
) -> Result<Vec<ProductSales>, sqlx::Error> {
    sqlx::query_as(TOP_PRODUCTS)
        .bind(range.from)
        .bind(range.to)
        .bind(currency)
        .bind(limit)
        .fetch_all(conn)
        .await
}
