//! What the replica monitor reads: WAL positions, as bytes since `0/0`.

use sqlx::PgConnection;

/// The primary's current WAL write position.
pub async fn primary_position(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let position: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(conn)
        .await?;
    Ok(position.max(0) as u64)
}

/// How far a server given as the read replica has replayed the primary's WAL; `None` when it
/// is not in recovery (a primary, or a promoted replica), which has nothing to catch up on.
pub async fn replayed_position(conn: &mut PgConnection) -> Result<Option<u64>, sqlx::Error> {
    let position: Option<i64> = sqlx::query_scalar(
        "SELECT CASE WHEN pg_is_in_recovery()
                     THEN (COALESCE(pg_last_wal_replay_lsn(), '0/0'::pg_lsn) - '0/0'::pg_lsn)::bigint
                END",
    )
    .fetch_one(conn)
    .await?;
    Ok(position.map(|p| p.max(0) as u64))
}
