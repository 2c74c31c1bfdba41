//! Orders, their lines, addresses and payment.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::domain::{Address, Cursor, Order, OrderItem, OrderStatus, OrderSummary, Payment};

/// Filters of the order list; all optional, combined with AND.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub customer_id: Option<String>,
    pub status: Option<OrderStatus>,
    /// Inclusive lower bound on `created_at`.
    pub created_after: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `created_at`.
    pub created_before: Option<DateTime<Utc>>,
}

/// Status and version of an order, read under a row lock.
pub struct LockedOrder {
    pub status: OrderStatus,
    pub version: i64,
}

/// An order's row with its lines, addresses and payment (`order_parts`, migration 0008).
#[derive(sqlx::FromRow)]
pub(crate) struct OrderRecord {
    #[sqlx(flatten)]
    pub summary: OrderSummary,
    pub status_reason: Option<String>,
    pub parts: sqlx::types::Json<OrderParts>,
}

/// What `order_parts` returns.
#[derive(serde::Deserialize)]
pub(crate) struct OrderParts {
    items: Vec<OrderItem>,
    shipping_address: Option<Address>,
    billing_address: Option<Address>,
    payment: Option<Payment>,
}

impl OrderRecord {
    pub fn into_order(self) -> Result<Order, sqlx::Error> {
        let summary = self.summary;
        let id = summary.id;
        let parts = self.parts.0;
        let missing = |what: &str| corrupt(id, format!("no {what}"));
        Ok(Order {
            id,
            customer_id: summary.customer_id,
            status: summary.status,
            status_reason: self.status_reason,
            version: summary.version,
            currency: summary.currency,
            subtotal_minor: summary.subtotal_minor,
            shipping_minor: summary.shipping_minor,
            tax_minor: summary.tax_minor,
            total_minor: summary.total_minor,
            items: parts.items,
            shipping_address: parts
                .shipping_address
                .ok_or_else(|| missing("shipping address"))?,
            billing_address: parts
                .billing_address
                .ok_or_else(|| missing("billing address"))?,
            payment: parts.payment.ok_or_else(|| missing("payment"))?,
            created_at: summary.created_at,
            updated_at: summary.updated_at,
        })
    }
}

/// The whole order in one statement, or `None` when there is no order with this id.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let record: Option<OrderRecord> = sqlx::query_as(
        "SELECT id, customer_id, status, status_reason, version, currency, subtotal_minor,
                shipping_minor, tax_minor, total_minor, created_at, updated_at,
                order_parts(id) AS parts
         FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    record.map(OrderRecord::into_order).transpose()
}

/// A row the schema's constraints should have prevented.
pub(crate) fn corrupt(order_id: Uuid, what: String) -> sqlx::Error {
    sqlx::Error::Decode(format!("order {order_id}: unexpected stored data: {what}").into())
}

/// Locks the order row for the rest of the transaction and reads its status and version.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<LockedOrder>, sqlx::Error> {
    let row: Option<(OrderStatus, i64)> = sqlx::query_as::<_, (String, i64)>(
        "SELECT status, version FROM orders WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|(status, version)| {
        OrderStatus::try_from(status)
            .map(|s| (s, version))
            .map_err(|e| corrupt(id, e))
    })
    .transpose()?;
    Ok(row.map(|(status, version)| LockedOrder { status, version }))
}

/// The order's status, without locking (`None`: no such order).
pub async fn status_of(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<OrderStatus>, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    status
        .map(|s| OrderStatus::try_from(s).map_err(|e| corrupt(id, e)))
        .transpose()
}

/// Sets a new status and bumps the version; returns the new version.
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: OrderStatus,
    reason: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE orders SET status = $2, status_reason = $3, version = version + 1, updated_at = now()
         WHERE id = $1 RETURNING version",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(reason)
    .fetch_one(conn)
    .await
}

/// One page of orders, newest first, strictly after `after` when given.
pub async fn list(
    conn: &mut PgConnection,
    filter: &OrderFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<OrderSummary>, sqlx::Error> {
    // Only the filters in use go into the SQL, so the planner can pick the matching index.
    let mut query = QueryBuilder::new(
        "SELECT id, customer_id, status, version, currency, subtotal_minor, shipping_minor,
                tax_minor, total_minor, created_at, updated_at
         FROM orders WHERE true",
    );
    if let Some(customer_id) = &filter.customer_id {
        query.push(" AND customer_id = ").push_bind(customer_id);
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(from) = filter.created_after {
        query.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.created_before {
        query.push(" AND created_at < ").push_bind(to);
    }
    if let Some(cursor) = after {
        query
            .push(" AND (created_at, id) < (")
            .push_bind(cursor.created_at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    query
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    query.build_query_as().fetch_all(conn).await
}

/// The customer of an order (`None`: no such order).
pub async fn customer_of(conn: &mut PgConnection, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT customer_id FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Id, status and version of every order changed since `since`.
pub async fn changed_since(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, OrderStatus, i64)>, sqlx::Error> {
    let rows: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT id, status, version FROM orders WHERE updated_at >= $1 ORDER BY updated_at",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(id, status, version)| {
            OrderStatus::try_from(status)
                .map(|s| (id, s, version))
                .map_err(|e| corrupt(id, e))
        })
        .collect()
}
