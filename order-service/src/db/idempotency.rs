//! Idempotency keys of order creates.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use super::interval;
use crate::domain::{IdempotencyKey, RequestFingerprint};

/// What an earlier request with the same key stored.
pub struct StoredKey {
    pub fingerprint: RequestFingerprint,
    pub order_id: Uuid,
}

/// Claims `key` for a new order in the caller's transaction. Returns `false` when the key
/// is already taken; a concurrent claim blocks here until the other transaction ends. A key
/// older than `ttl` has expired: it is claimed again, for the new order, as if it were new
/// (whether or not the retention has deleted it yet, so reuse after expiry does not depend
/// on when the clean-up ran).
pub async fn claim(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
    order_id: Uuid,
    ttl: Duration,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE
             SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id, created_at = now()
             WHERE idempotency_keys.created_at < now() - $4",
    )
    .bind(key.as_str())
    .bind(fingerprint.as_bytes())
    .bind(order_id)
    .bind(interval(ttl))
    .execute(conn)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

pub async fn find(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
) -> Result<Option<StoredKey>, sqlx::Error> {
    let row: Option<(Vec<u8>, Uuid)> =
        sqlx::query_as("SELECT request_hash, order_id FROM idempotency_keys WHERE key = $1")
            .bind(key.as_str())
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(hash, order_id)| StoredKey {
        fingerprint: RequestFingerprint::from_bytes(hash),
        order_id,
    }))
}
