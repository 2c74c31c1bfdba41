//! The outbox tables: events written with each change, and their delivery state per sink.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::interval;
use crate::outbox::envelope::{EventEnvelope, EventPayload, EventType, SCHEMA_VERSION};
use crate::outbox::sink::Sink;

/// The channel the relay LISTENs on; a NOTIFY is sent with every inserted event.
pub const NOTIFY_CHANNEL: &str = "outbox_events";

/// Writes the event and one pending delivery per sink, in the caller's transaction. The
/// NOTIFY is delivered by PostgreSQL only when that transaction commits.
pub async fn insert(
    conn: &mut PgConnection,
    event: &EventEnvelope,
    sinks: &[Sink],
) -> Result<(), sqlx::Error> {
    // Without sinks nothing would deliver (or clean up) the event.
    if sinks.is_empty() {
        return Ok(());
    }
    let payload =
        serde_json::to_value(&event.payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO outbox_events (id, order_id, order_version, event_type, schema_version, occurred_at, trace_id, payload, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
    )
    .bind(event.event_id)
    .bind(event.order_id)
    .bind(event.order_version)
    .bind(event.event_type.as_str())
    .bind(event.schema_version)
    .bind(event.occurred_at)
    .bind(&event.request_id)
    .bind(payload)
    .bind(&event.traceparent)
    .fetch_one(&mut *conn)
    .await?;
    let names: Vec<&str> = sinks.iter().map(|s| s.as_str()).collect();
    sqlx::query(
        "INSERT INTO outbox_deliveries (event_id, sink, order_id, order_version, seq)
         SELECT $1, sink, $2, $3, $4 FROM UNNEST($5::text[]) AS sink",
    )
    .bind(event.event_id)
    .bind(event.order_id)
    .bind(event.order_version)
    .bind(seq)
    .bind(names)
    .execute(&mut *conn)
    .await?;
    notify(conn).await
}

/// Wakes the relays once the caller's transaction commits (NOTIFY is transactional).
async fn notify(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// A claimed delivery. `envelope` is `Err` when the stored event cannot be published by this
/// build (an unknown type or schema version): a permanent failure.
pub struct Claimed {
    pub event_id: Uuid,
    pub attempts: i32,
    pub envelope: Result<EventEnvelope, String>,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    event_id: Uuid,
    attempts: i32,
    order_id: Uuid,
    order_version: i64,
    event_type: String,
    schema_version: i32,
    occurred_at: DateTime<Utc>,
    /// The column keeps its first name (`trace_id`); it holds the request id.
    trace_id: Option<String>,
    traceparent: Option<String>,
    payload: serde_json::Value,
}

impl ClaimedRow {
    fn envelope(self) -> Result<EventEnvelope, String> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema version {} is not publishable by this build (it writes {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        let event_type = EventType::parse(&self.event_type)
            .ok_or_else(|| format!("unknown event type `{}`", self.event_type))?;
        let payload: EventPayload = serde_json::from_value(self.payload)
            .map_err(|e| format!("payload does not match schema: {e}"))?;
        Ok(EventEnvelope {
            event_id: self.event_id,
            event_type,
            schema_version: self.schema_version,
            order_id: self.order_id,
            order_version: self.order_version,
            occurred_at: self.occurred_at,
            request_id: self.trace_id,
            traceparent: self.traceparent,
            payload,
        })
    }
}

/// Claims up to `limit` due deliveries of `sink`, oldest first, locking them for the rest of
/// the transaction. Per-order order across relays: a delivery is only claimable when no
/// earlier version of the same order (or earlier event of the same version: the saga's steps
/// leave the version as it is) is still pending for this sink. An earlier version that
/// another relay holds is still pending in every snapshot until that relay commits it as
/// delivered, and SKIP LOCKED hides it from this claim, so no relay can overtake it.
pub async fn claim(
    conn: &mut PgConnection,
    sink: Sink,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        // The limit and the locks apply to the pending-deliveries index scan first; only the
        // claimed rows are then joined with their events (a join before the limit would
        // touch every pending row on each claim).
        "WITH claimed AS (
             SELECT d.event_id, d.attempts, d.seq FROM outbox_deliveries d
             WHERE d.sink = $1 AND d.state = 'pending' AND d.next_attempt_at <= now()
               AND NOT EXISTS (
                   SELECT 1 FROM outbox_deliveries p
                   WHERE p.sink = d.sink AND p.order_id = d.order_id AND p.state = 'pending'
                     AND (p.order_version < d.order_version
                          OR (p.order_version = d.order_version AND p.seq < d.seq)))
             ORDER BY d.seq
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         SELECT c.event_id, c.attempts, e.order_id, e.order_version, e.event_type, e.schema_version,
                e.occurred_at, e.trace_id, e.traceparent, e.payload
         FROM claimed c JOIN outbox_events e ON e.id = c.event_id
         ORDER BY c.seq",
    )
    .bind(sink.as_str())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Claimed {
            event_id: row.event_id,
            attempts: row.attempts,
            envelope: row.envelope(),
        })
        .collect())
}

pub async fn mark_delivered(
    conn: &mut PgConnection,
    sink: Sink,
    event_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox_deliveries SET state = 'delivered', delivered_at = now(), attempts = attempts + 1, last_error = NULL
         WHERE sink = $1 AND event_id = ANY($2)",
    )
    .bind(sink.as_str())
    .bind(event_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a transient failure and when to try again.
pub async fn reschedule(
    conn: &mut PgConnection,
    sink: Sink,
    event_id: Uuid,
    after: Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox_deliveries SET attempts = attempts + 1, next_attempt_at = now() + $3, last_error = $4
         WHERE sink = $1 AND event_id = $2",
    )
    .bind(sink.as_str())
    .bind(event_id)
    .bind(interval(after))
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets a permanently failed delivery aside; it no longer blocks later versions.
pub async fn park(
    conn: &mut PgConnection,
    sink: Sink,
    event_id: Uuid,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox_deliveries SET state = 'parked', attempts = attempts + 1, last_error = $3
         WHERE sink = $1 AND event_id = $2",
    )
    .bind(sink.as_str())
    .bind(event_id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// A parked delivery, as the CLI lists it.
#[derive(Debug, sqlx::FromRow)]
pub struct Parked {
    pub event_id: Uuid,
    pub sink: String,
    pub order_id: Uuid,
    pub order_version: i64,
    pub event_type: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn list_parked(conn: &mut PgConnection) -> Result<Vec<Parked>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.event_id, d.sink, d.order_id, d.order_version, e.event_type, d.attempts, d.last_error, e.created_at
         FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_id
         WHERE d.state = 'parked' ORDER BY d.seq",
    )
    .fetch_all(conn)
    .await
}

/// Makes parked deliveries pending again (all, or one event's); returns how many.
pub async fn retry_parked(
    conn: &mut PgConnection,
    event_id: Option<Uuid>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE outbox_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now()
         WHERE state = 'parked' AND ($1::uuid IS NULL OR event_id = $1)",
    )
    .bind(event_id)
    .execute(&mut *conn)
    .await?;
    notify(conn).await?;
    Ok(done.rows_affected())
}

/// Gives up on parked deliveries (all, or one event's): they stop holding their event in the
/// outbox, which the retention then deletes like a delivered one. Returns how many.
pub async fn drop_parked(
    conn: &mut PgConnection,
    event_id: Option<Uuid>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE outbox_deliveries SET state = 'dropped', delivered_at = now()
         WHERE state = 'parked' AND ($1::uuid IS NULL OR event_id = $1)",
    )
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Backlog of one sink: pending and parked counts, and the age of the oldest pending event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Backlog {
    pub sink: String,
    pub pending: i64,
    pub parked: i64,
    pub oldest_pending_seconds: Option<f64>,
}

/// The most deliveries a backlog count reads: past it the gauge saturates (and the age of the
/// oldest pending event, which costs one index probe, says how bad it is).
pub const BACKLOG_COUNT_CAP: i64 = 100_000;

/// The backlog of each sink, cheaply enough for every `/metrics` scrape: counts read at most
/// [`BACKLOG_COUNT_CAP`] entries of the partial pending and parked indexes, and the oldest
/// pending event is the first entry of the pending index.
pub async fn backlog(conn: &mut PgConnection, sinks: &[Sink]) -> Result<Vec<Backlog>, sqlx::Error> {
    let names: Vec<&str> = sinks.iter().map(|s| s.as_str()).collect();
    sqlx::query_as(
        "SELECT s.sink,
                (SELECT count(*) FROM (SELECT 1 FROM outbox_deliveries d
                                       WHERE d.sink = s.sink AND d.state = 'pending' LIMIT $2) p) AS pending,
                (SELECT count(*) FROM (SELECT 1 FROM outbox_deliveries d
                                       WHERE d.sink = s.sink AND d.state = 'parked' LIMIT $2) p) AS parked,
                (SELECT extract(epoch FROM now() - e.created_at)::float8
                 FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_id
                 WHERE d.sink = s.sink AND d.state = 'pending'
                 ORDER BY d.seq LIMIT 1) AS oldest_pending_seconds
         FROM UNNEST($1::text[]) AS s(sink)",
    )
    .bind(names)
    .bind(BACKLOG_COUNT_CAP)
    .fetch_all(conn)
    .await
}

/// Whether any delivery of the order's events is still pending for `sink`.
pub async fn has_pending(
    conn: &mut PgConnection,
    sink: Sink,
    order_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM outbox_deliveries WHERE sink = $1 AND order_id = $2 AND state IN ('pending', 'parked'))",
    )
    .bind(sink.as_str())
    .bind(order_id)
    .fetch_one(conn)
    .await
}
