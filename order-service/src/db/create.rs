//! Creating an order in one statement: the idempotency key, the order, its lines, addresses
//! and payment, its outbox event with one delivery per sink, the saga when participants are
//! configured, and the relay's wake-up, written by one prepared statement of data-modifying
//! CTEs. One round trip and one implicit transaction: all or nothing, as before, at a fraction
//! of the cost of ten round trips (docs/performance.md).
//!
//! Every row hangs off the key's insert: when the key is taken (and not expired), the key CTE
//! returns no row, nothing else is written, and the statement returns no row. A concurrent
//! create with the same key waits on the key's unique index until the first commits, then
//! finds it taken: the unique index still settles the race.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::interval;
use super::outbox::NOTIFY_CHANNEL;
use crate::domain::{IdempotencyKey, Order, RequestFingerprint};
use crate::outbox::envelope::EventEnvelope;
use crate::outbox::sink::Sink;

/// What to write.
pub struct NewOrderRecord<'a> {
    pub key: &'a IdempotencyKey,
    pub fingerprint: &'a RequestFingerprint,
    /// A key older than this has expired and is claimed again.
    pub key_ttl: Duration,
    pub order: &'a Order,
    /// The `order.created` event; written only when `sinks` is not empty (nothing would
    /// deliver or delete it otherwise).
    pub event: &'a EventEnvelope,
    pub sinks: &'a [Sink],
    /// Start the fulfilment saga (participants are configured).
    pub saga: bool,
}

/// A created order's saga row, as the database set it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CreatedSaga {
    pub next_attempt_at: DateTime<Utc>,
    pub step_since: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The saga columns of the create's one row (NULL without a saga).
type SagaColumns = (
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// `Ok(None)`: the key is taken (replay or refuse: `db::idempotency::find`). `Ok(Some(saga))`:
/// created, with its saga when one was started.
pub async fn create(
    conn: &mut PgConnection,
    record: &NewOrderRecord<'_>,
) -> Result<Option<Option<CreatedSaga>>, sqlx::Error> {
    let order = record.order;
    let event = record.event;
    let items = &order.items;
    let addresses = [
        ("shipping", &order.shipping_address),
        ("billing", &order.billing_address),
    ];
    let payload =
        serde_json::to_value(&event.payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let sinks: Vec<&str> = record.sinks.iter().map(|s| s.as_str()).collect();
    let row: Option<SagaColumns> = sqlx::query_as(
        "WITH key AS (
                 INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ($1, $2, $4)
                 ON CONFLICT (key) DO UPDATE
                     SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id,
                         created_at = now()
                     WHERE idempotency_keys.created_at < now() - $3
                 RETURNING order_id),
             new_order AS (
                 INSERT INTO orders (id, customer_id, status, currency, subtotal_minor,
                                     shipping_minor, tax_minor, total_minor, created_at, updated_at)
                 SELECT order_id, $5, $6, $7, $8, $9, $10, $11, $12, $12 FROM key),
             lines AS (
                 INSERT INTO order_items (order_id, line_no, sku, name, quantity,
                                          unit_price_minor, line_total_minor)
                 SELECT key.order_id, line.*
                 FROM key, UNNEST($13::int[], $14::text[], $15::text[], $16::int[],
                                  $17::bigint[], $18::bigint[]) AS line),
             addresses AS (
                 INSERT INTO order_addresses (order_id, kind, name, line1, line2, city, region,
                                              postal_code, country)
                 SELECT key.order_id, address.*
                 FROM key, UNNEST($19::text[], $20::text[], $21::text[], $22::text[],
                                  $23::text[], $24::text[], $25::text[], $26::text[]) AS address),
             payment AS (
                 INSERT INTO payments (id, order_id, method, status, amount_minor, currency,
                                       created_at, updated_at)
                 SELECT $27, order_id, $28, $29, $30, $7, $12, $12 FROM key),
             event AS (
                 INSERT INTO outbox_events (id, order_id, order_version, event_type,
                                            schema_version, occurred_at, trace_id, payload,
                                            traceparent)
                 SELECT $31, order_id, $32, $33, $34, $12, $35, $36, $37
                 FROM key WHERE cardinality($38::text[]) > 0
                 RETURNING id, order_id, order_version, seq),
             deliveries AS (
                 INSERT INTO outbox_deliveries (event_id, sink, order_id, order_version, seq)
                 SELECT event.id, sink, event.order_id, event.order_version, event.seq
                 FROM event, UNNEST($38::text[]) AS sink),
             saga AS (
                 INSERT INTO sagas (order_id, state, step, traceparent)
                 SELECT order_id, 'RUNNING', 'validate_customer', $37 FROM key WHERE $39
                 RETURNING next_attempt_at, step_since, updated_at)
             -- One row when the order was created; the relays are woken (delivered by
             -- PostgreSQL at commit, like every NOTIFY) only when an event was written.
             SELECT saga.next_attempt_at, saga.step_since, saga.updated_at
             FROM key LEFT JOIN saga ON true
             WHERE NOT EXISTS (SELECT 1 FROM event)
                OR (SELECT true FROM (SELECT pg_notify($40, '')) AS notified)",
    )
    .bind(record.key.as_str())
    .bind(record.fingerprint.as_bytes())
    .bind(interval(record.key_ttl))
    .bind(order.id)
    .bind(&order.customer_id)
    .bind(order.status.as_str())
    .bind(&order.currency)
    .bind(order.subtotal_minor)
    .bind(order.shipping_minor)
    .bind(order.tax_minor)
    .bind(order.total_minor)
    .bind(order.created_at)
    .bind((1..=items.len() as i32).collect::<Vec<i32>>())
    .bind(items.iter().map(|i| i.sku.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.quantity).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.unit_price_minor).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.line_total_minor).collect::<Vec<_>>())
    .bind(addresses.map(|(kind, _)| kind).to_vec())
    .bind(addresses.map(|(_, a)| a.name.as_str()).to_vec())
    .bind(addresses.map(|(_, a)| a.line1.as_str()).to_vec())
    .bind(addresses.map(|(_, a)| a.line2.as_deref()).to_vec())
    .bind(addresses.map(|(_, a)| a.city.as_str()).to_vec())
    .bind(addresses.map(|(_, a)| a.region.as_deref()).to_vec())
    .bind(addresses.map(|(_, a)| a.postal_code.as_str()).to_vec())
    .bind(addresses.map(|(_, a)| a.country.as_str()).to_vec())
    .bind(order.payment.id)
    .bind(order.payment.method.as_str())
    .bind(order.payment.status.as_str())
    .bind(order.payment.amount_minor)
    .bind(event.event_id)
    .bind(event.order_version)
    .bind(event.event_type.as_str())
    .bind(event.schema_version)
    .bind(&event.request_id)
    .bind(payload)
    .bind(&event.traceparent)
    .bind(sinks)
    .bind(record.saga)
    .bind(NOTIFY_CHANNEL)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(next_attempt_at, step_since, updated_at)| {
        match (next_attempt_at, step_since, updated_at) {
            (Some(next_attempt_at), Some(step_since), Some(updated_at)) => Some(CreatedSaga {
                next_attempt_at,
                step_since,
                updated_at,
            }),
            _ => None,
        }
    }))
}
