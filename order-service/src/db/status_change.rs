//! Changing an order's status in one statement: lock the row, check the `If-Match` versions,
//! the status machine and the saga, write the new status with its outbox event and deliveries,
//! wake the relays, and return the changed order with its saga: one round trip.
//!
//! The checks are the caller's (pure: which versions and which current statuses are accepted);
//! the statement applies them under the row lock, and when it changes nothing it returns what
//! it found, so the caller answers 412 or 409 with the same bodies as before.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
use uuid::Uuid;

use super::orders::{corrupt, OrderRecord};
use super::outbox::NOTIFY_CHANNEL;
use super::sagas::SagaStatus;
use crate::domain::{Order, OrderStatus};
use crate::outbox::envelope::{EventType, SCHEMA_VERSION};
use crate::outbox::sink::Sink;
use crate::saga::machine::{SagaState, Step};

/// A requested change and the checks that guard it.
pub struct StatusChange<'a> {
    pub id: Uuid,
    pub to: OrderStatus,
    pub reason: Option<&'a str>,
    /// The versions `If-Match` names; `None` for any (`*` or no header where it is optional).
    pub versions: Option<Vec<i64>>,
    /// The statuses the order may be in for this change (the status machine's).
    pub from: Vec<OrderStatus>,
    /// Refuse while a fulfilment saga runs (confirmation is the saga's outcome).
    pub not_during_saga: bool,
    /// Only an order of this customer (a customer changing their own); another's is
    /// `NotFound`. `None` for callers who may change every order.
    pub customer_id: Option<&'a str>,
    /// The `order.status_changed` (or confirmed, cancelled) event.
    pub event_id: Uuid,
    pub event_type: EventType,
    pub actor: &'a str,
    pub request_id: Option<&'a str>,
    pub sinks: &'a [Sink],
}

impl<'a> StatusChange<'a> {
    /// A change to `to` with the status machine's and the saga's checks, and its event.
    pub fn new(id: Uuid, to: OrderStatus, actor: &'a str, sinks: &'a [Sink]) -> Self {
        Self {
            id,
            to,
            reason: None,
            versions: None,
            from: to.allowed_from(),
            // With a saga, confirmation is its outcome; cancelling is always the customer's
            // right (the saga then undoes what it did).
            not_during_saga: to == OrderStatus::Confirmed,
            customer_id: None,
            event_id: Uuid::now_v7(),
            event_type: EventType::for_status(to),
            actor,
            request_id: None,
            sinks,
        }
    }
}

/// What the statement did.
pub enum Outcome {
    NotFound,
    /// Nothing changed: the order as found, for the caller's 412 or 409.
    Unchanged {
        status: OrderStatus,
        version: i64,
        saga_active: bool,
    },
    Changed {
        order: Box<Order>,
        previous: OrderStatus,
        saga: Option<SagaStatus>,
    },
}

/// The saga's columns, NULL without a saga.
#[derive(sqlx::FromRow)]
struct SagaColumns {
    saga_state: Option<String>,
    saga_step: Option<String>,
    saga_attempts: Option<i32>,
    saga_next_attempt_at: Option<DateTime<Utc>>,
    saga_step_since: Option<DateTime<Utc>>,
    saga_last_error: Option<String>,
    saga_cancel_reason: Option<String>,
    saga_updated_at: Option<DateTime<Utc>>,
}

impl SagaColumns {
    fn status(self, id: Uuid) -> Result<Option<SagaStatus>, sqlx::Error> {
        let (Some(state), Some(step)) = (self.saga_state, self.saga_step) else {
            return Ok(None);
        };
        Ok(Some(SagaStatus {
            order_id: id,
            state: SagaState::parse(&state)
                .ok_or_else(|| corrupt(id, format!("saga state {state}")))?,
            step: Step::parse(&step).ok_or_else(|| corrupt(id, format!("saga step {step}")))?,
            attempts: self.saga_attempts.unwrap_or_default(),
            next_attempt_at: self.saga_next_attempt_at.unwrap_or_default(),
            step_since: self.saga_step_since.unwrap_or_default(),
            last_error: self.saga_last_error,
            cancel_reason: self.saga_cancel_reason,
            updated_at: self.saga_updated_at.unwrap_or_default(),
        }))
    }
}

pub async fn change(
    conn: &mut PgConnection,
    change: &StatusChange<'_>,
) -> Result<Outcome, sqlx::Error> {
    let from: Vec<&str> = change.from.iter().map(|s| s.as_str()).collect();
    let sinks: Vec<&str> = change.sinks.iter().map(|s| s.as_str()).collect();
    let row: Option<PgRow> = sqlx::query(
        "WITH current AS (
             SELECT id, status, version FROM orders
             WHERE id = $1 AND ($14::text IS NULL OR customer_id = $14) FOR UPDATE),
         saga AS (
             SELECT EXISTS (SELECT 1 FROM sagas WHERE order_id = $1
                            AND state IN ('RUNNING', 'COMPENSATING')) AS active),
         changed AS (
             UPDATE orders o
             SET status = $2, status_reason = $3, version = o.version + 1, updated_at = now()
             FROM current, saga
             WHERE o.id = current.id
               AND ($4::bigint[] IS NULL OR current.version = ANY($4))
               AND current.status = ANY($5::text[])
               AND NOT ($6 AND saga.active)
             RETURNING o.*),
         event AS (
             INSERT INTO outbox_events (id, order_id, order_version, event_type, schema_version,
                                        occurred_at, trace_id, payload)
             -- The payload of docs/events.md (outbox/envelope.rs, EventPayload): absent
             -- members (no reason) are left out, as serde does.
             SELECT $7, changed.id, changed.version, $8, $9, changed.updated_at, $10,
                    jsonb_strip_nulls(jsonb_build_object(
                        'status', changed.status, 'previous_status', current.status,
                        'reason', changed.status_reason, 'actor', $11::text,
                        'customer_id', changed.customer_id, 'currency', changed.currency,
                        'total_minor', changed.total_minor))
             FROM changed, current WHERE cardinality($12::text[]) > 0
             RETURNING id, order_id, order_version, seq),
         deliveries AS (
             INSERT INTO outbox_deliveries (event_id, sink, order_id, order_version, seq)
             SELECT event.id, sink, event.order_id, event.order_version, event.seq
             FROM event, UNNEST($12::text[]) AS sink)
         SELECT current.status AS previous_status, current.version AS previous_version,
                saga.active AS saga_active,
                changed.id, changed.customer_id, changed.status, changed.status_reason,
                changed.version, changed.currency, changed.subtotal_minor,
                changed.shipping_minor, changed.tax_minor, changed.total_minor,
                changed.created_at, changed.updated_at,
                CASE WHEN changed.id IS NOT NULL THEN order_parts(changed.id) END AS parts,
                s.state AS saga_state, s.step AS saga_step, s.attempts AS saga_attempts,
                s.next_attempt_at AS saga_next_attempt_at, s.step_since AS saga_step_since,
                s.last_error AS saga_last_error, s.cancel_reason AS saga_cancel_reason,
                s.updated_at AS saga_updated_at
         FROM current CROSS JOIN saga
              LEFT JOIN changed ON true
              LEFT JOIN sagas s ON s.order_id = current.id
         -- The relays are woken (at commit) only when an event was written.
         WHERE NOT EXISTS (SELECT 1 FROM event)
            OR (SELECT true FROM (SELECT pg_notify($13, '')) AS notified)",
    )
    .bind(change.id)
    .bind(change.to.as_str())
    .bind(change.reason)
    .bind(change.versions.as_deref())
    .bind(from)
    .bind(change.not_during_saga)
    .bind(change.event_id)
    .bind(change.event_type.as_str())
    .bind(SCHEMA_VERSION)
    .bind(change.request_id)
    .bind(change.actor)
    .bind(sinks)
    .bind(NOTIFY_CHANNEL)
    .bind(change.customer_id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(Outcome::NotFound);
    };
    let id = change.id;
    let previous: String = row.try_get("previous_status")?;
    let previous = OrderStatus::try_from(previous).map_err(|e| corrupt(id, e))?;
    // The changed order's columns are NULL when nothing changed.
    if row.try_get::<Option<Uuid>, _>("id")?.is_none() {
        return Ok(Outcome::Unchanged {
            status: previous,
            version: row.try_get("previous_version")?,
            saga_active: row.try_get("saga_active")?,
        });
    }
    Ok(Outcome::Changed {
        order: Box::new(OrderRecord::from_row(&row)?.into_order()?),
        previous,
        saga: SagaColumns::from_row(&row)?.status(id)?,
    })
}
