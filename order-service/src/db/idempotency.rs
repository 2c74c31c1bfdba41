//! Idempotency keys of order creates: claimed by the create statement (`db::create`), read
//! back here when a key was taken.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{IdempotencyKey, RequestFingerprint};

/// What an earlier request with the same key stored.
pub struct StoredKey {
    pub fingerprint: RequestFingerprint,
    pub order_id: Uuid,
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
