//! Deleting what expired, one bounded batch per call. Each batch is its own short transaction
//! and skips rows another transaction holds (a relay's claim, another replica's batch), so
//! clean-up never waits on, or blocks, the work it cleans up after.

use std::time::Duration;

use sqlx::PgConnection;

use super::interval;

/// Deletes up to `limit` events that every sink delivered (or an operator dropped) more than
/// `retention` ago, oldest first; their deliveries go with them (ON DELETE CASCADE).
pub async fn delete_delivered_events(
    conn: &mut PgConnection,
    retention: Duration,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        // outbox_events_created_idx serves the scan; the NOT EXISTS probes use the deliveries'
        // primary key. Events still pending or parked for any sink stay.
        "DELETE FROM outbox_events WHERE id IN (
             SELECT e.id FROM outbox_events e
             WHERE e.created_at < now() - $1
               AND NOT EXISTS (
                   SELECT 1 FROM outbox_deliveries d
                   WHERE d.event_id = e.id
                     AND (d.state IN ('pending', 'parked') OR d.delivered_at >= now() - $1))
             ORDER BY e.created_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(interval(retention))
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes up to `limit` idempotency keys older than `ttl` (their orders stay).
pub async fn delete_expired_keys(
    conn: &mut PgConnection,
    ttl: Duration,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys WHERE key IN (
             SELECT key FROM idempotency_keys
             WHERE created_at < now() - $1
             ORDER BY created_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(interval(ttl))
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes up to `limit` sagas that finished (CONFIRMED or CANCELLED) more than `retention`
/// ago. Running and compensating sagas are never touched.
pub async fn delete_finished_sagas(
    conn: &mut PgConnection,
    retention: Duration,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM sagas WHERE order_id IN (
             SELECT order_id FROM sagas
             WHERE state IN ('CONFIRMED', 'CANCELLED') AND updated_at < now() - $1
             ORDER BY updated_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(interval(retention))
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Rows and on-disk size of a table the retention bounds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TableSize {
    pub table: String,
    pub rows: i64,
    /// Table, indexes and TOAST, in bytes.
    pub bytes: i64,
}

/// Exact row counts and sizes of the tables the retention bounds (the soak benchmark prints
/// them every minute; a count is a scan, so this is not for hot paths).
pub async fn table_sizes(conn: &mut PgConnection) -> Result<Vec<TableSize>, sqlx::Error> {
    sqlx::query_as(
        "SELECT 'outbox_events' AS table, (SELECT count(*) FROM outbox_events) AS rows,
                pg_total_relation_size('outbox_events') AS bytes
         UNION ALL
         SELECT 'outbox_deliveries', (SELECT count(*) FROM outbox_deliveries),
                pg_total_relation_size('outbox_deliveries')
         UNION ALL
         SELECT 'idempotency_keys', (SELECT count(*) FROM idempotency_keys),
                pg_total_relation_size('idempotency_keys')
         UNION ALL
         SELECT 'sagas', (SELECT count(*) FROM sagas), pg_total_relation_size('sagas')",
    )
    .fetch_all(conn)
    .await
}
