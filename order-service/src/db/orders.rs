//! Orders, their lines, addresses and payment.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::domain::{
    Address, Cursor, NewOrder, Order, OrderItem, OrderStatus, OrderSummary, Payment, PaymentMethod,
    PaymentStatus,
};

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

/// Inserts an order with its lines, both addresses and its payment. Run it inside a
/// transaction: the four inserts stand or fall together.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    order: &NewOrder,
) -> Result<Order, sqlx::Error> {
    let totals = order.totals;
    let (version, created_at, updated_at): (i64, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO orders (id, customer_id, status, currency,
                             subtotal_minor, shipping_minor, tax_minor, total_minor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING version, created_at, updated_at",
    )
    .bind(id)
    .bind(&order.customer_id)
    .bind(OrderStatus::Pending.as_str())
    .bind(order.currency.code())
    .bind(totals.subtotal_minor)
    .bind(totals.shipping_minor)
    .bind(totals.tax_minor)
    .bind(totals.total_minor)
    .fetch_one(&mut *conn)
    .await?;

    let items: Vec<OrderItem> = order
        .items
        .iter()
        .map(|item| OrderItem {
            sku: item.sku.clone(),
            name: item.name.clone(),
            quantity: item.quantity,
            unit_price_minor: item.unit_price_minor,
            // Cannot overflow: the order's totals were computed with checked arithmetic.
            line_total_minor: i64::from(item.quantity) * item.unit_price_minor,
        })
        .collect();
    insert_items(conn, id, &items).await?;
    insert_address(conn, id, "shipping", &order.shipping_address).await?;
    insert_address(conn, id, "billing", &order.billing_address).await?;

    let payment = Payment {
        id: Uuid::now_v7(),
        method: order.payment_method,
        status: PaymentStatus::Pending,
        amount_minor: totals.total_minor,
        currency: order.currency.code().to_owned(),
    };
    sqlx::query(
        "INSERT INTO payments (id, order_id, method, status, amount_minor, currency)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(payment.id)
    .bind(id)
    .bind(payment.method.as_str())
    .bind(payment.status.as_str())
    .bind(payment.amount_minor)
    .bind(&payment.currency)
    .execute(&mut *conn)
    .await?;

    Ok(Order {
        id,
        customer_id: order.customer_id.clone(),
        status: OrderStatus::Pending,
        status_reason: None,
        version,
        currency: order.currency.code().to_owned(),
        subtotal_minor: totals.subtotal_minor,
        shipping_minor: totals.shipping_minor,
        tax_minor: totals.tax_minor,
        total_minor: totals.total_minor,
        items,
        shipping_address: order.shipping_address.clone(),
        billing_address: order.billing_address.clone(),
        payment,
        created_at,
        updated_at,
    })
}

/// All lines in one statement: one round trip however long the order is.
async fn insert_items(
    conn: &mut PgConnection,
    order_id: Uuid,
    items: &[OrderItem],
) -> Result<(), sqlx::Error> {
    let line_no: Vec<i32> = (1..=items.len() as i32).collect();
    let sku: Vec<&str> = items.iter().map(|i| i.sku.as_str()).collect();
    let name: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
    let quantity: Vec<i32> = items.iter().map(|i| i.quantity).collect();
    let unit_price: Vec<i64> = items.iter().map(|i| i.unit_price_minor).collect();
    let line_total: Vec<i64> = items.iter().map(|i| i.line_total_minor).collect();
    sqlx::query(
        "INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price_minor, line_total_minor)
         SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::bigint[])",
    )
    .bind(order_id)
    .bind(line_no)
    .bind(sku)
    .bind(name)
    .bind(quantity)
    .bind(unit_price)
    .bind(line_total)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_address(
    conn: &mut PgConnection,
    order_id: Uuid,
    kind: &str,
    address: &Address,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_addresses (order_id, kind, name, line1, line2, city, region, postal_code, country)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(order_id)
    .bind(kind)
    .bind(&address.name)
    .bind(&address.line1)
    .bind(&address.line2)
    .bind(&address.city)
    .bind(&address.region)
    .bind(&address.postal_code)
    .bind(&address.country)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    #[sqlx(flatten)]
    summary: OrderSummary,
    status_reason: Option<String>,
    payment_id: Uuid,
    payment_method: String,
    payment_status: String,
    payment_amount_minor: i64,
    payment_currency: String,
}

#[derive(sqlx::FromRow)]
struct AddressRow {
    kind: String,
    name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    region: Option<String>,
    postal_code: String,
    country: String,
}

/// The whole order, or `None` when there is no order with this id.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let Some(row): Option<OrderRow> = sqlx::query_as(
        "SELECT o.id, o.customer_id, o.status, o.status_reason, o.version, o.currency,
                o.subtotal_minor, o.shipping_minor, o.tax_minor, o.total_minor,
                o.created_at, o.updated_at,
                p.id AS payment_id, p.method AS payment_method, p.status AS payment_status,
                p.amount_minor AS payment_amount_minor, p.currency AS payment_currency
         FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE o.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };

    let items: Vec<(String, String, i32, i64, i64)> = sqlx::query_as(
        "SELECT sku, name, quantity, unit_price_minor, line_total_minor
         FROM order_items WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;

    let addresses: Vec<AddressRow> = sqlx::query_as(
        "SELECT kind, name, line1, line2, city, region, postal_code, country
         FROM order_addresses WHERE order_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let address = |kind: &str| {
        addresses
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| Address {
                name: a.name.clone(),
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                city: a.city.clone(),
                region: a.region.clone(),
                postal_code: a.postal_code.clone(),
                country: a.country.clone(),
            })
            .ok_or_else(|| corrupt(id, format!("no {kind} address")))
    };

    let summary = row.summary;
    Ok(Some(Order {
        id: summary.id,
        customer_id: summary.customer_id,
        status: summary.status,
        status_reason: row.status_reason,
        version: summary.version,
        currency: summary.currency,
        subtotal_minor: summary.subtotal_minor,
        shipping_minor: summary.shipping_minor,
        tax_minor: summary.tax_minor,
        total_minor: summary.total_minor,
        items: items
            .into_iter()
            .map(
                |(sku, name, quantity, unit_price_minor, line_total_minor)| OrderItem {
                    sku,
                    name,
                    quantity,
                    unit_price_minor,
                    line_total_minor,
                },
            )
            .collect(),
        shipping_address: address("shipping")?,
        billing_address: address("billing")?,
        payment: Payment {
            id: row.payment_id,
            method: PaymentMethod::parse(&row.payment_method)
                .ok_or_else(|| corrupt(id, format!("payment method {}", row.payment_method)))?,
            status: PaymentStatus::parse(&row.payment_status)
                .ok_or_else(|| corrupt(id, format!("payment status {}", row.payment_status)))?,
            amount_minor: row.payment_amount_minor,
            currency: row.payment_currency,
        },
        created_at: summary.created_at,
        updated_at: summary.updated_at,
    }))
}

/// A row the schema's constraints should have prevented.
fn corrupt(order_id: Uuid, what: String) -> sqlx::Error {
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

pub async fn exists(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1)")
        .bind(id)
        .fetch_one(conn)
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
