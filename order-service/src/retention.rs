//! Retention: everything that grows with traffic is deleted once it has served its purpose, so
//! storage levels off at rate × retention. Delivered outbox events (and the deliveries of
//! events an operator dropped) after `--outbox-retention`, idempotency keys after
//! `--idempotency-key-ttl`, finished sagas after `--saga-retention`. Orders are business data
//! and are never expired here.
//!
//! Every replica may run the loop: batches skip rows another holds. A pass deletes batch after
//! batch until one comes back short, so clean-up keeps up with any sustained rate; each batch is
//! a short transaction (no long locks), and the tables are vacuumed early (migration 0004).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::retention as store;
use crate::metrics::Metrics;
use crate::telemetry::error_chain;

#[derive(Debug, Clone, Args)]
pub struct RetentionConfig {
    /// Run the retention loop in this process (every replica may; they share the work).
    #[arg(long, env = "ORDER_SERVICE_RETENTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub retention: bool,
    /// How long events stay in the outbox after every sink acknowledged them (or an operator
    /// dropped them with `order-service outbox drop`).
    #[arg(long, env = "ORDER_SERVICE_OUTBOX_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub outbox_retention: Duration,
    /// How long an Idempotency-Key replays the order it created. A retry with the key after
    /// this creates a new order, as a first use would.
    #[arg(long, env = "ORDER_SERVICE_IDEMPOTENCY_KEY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub idempotency_key_ttl: Duration,
    /// How long a finished (CONFIRMED or CANCELLED) saga's record is kept; the order keeps
    /// its status and reason, and `GET /v1/orders/{id}` then shows no `saga` member.
    #[arg(long, env = "ORDER_SERVICE_SAGA_RETENTION", default_value = "7days", value_parser = humantime::parse_duration)]
    pub saga_retention: Duration,
    /// Time between clean-up passes.
    #[arg(long, env = "ORDER_SERVICE_RETENTION_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,
    /// Rows deleted per statement; a pass repeats until a batch comes back short.
    #[arg(long, env = "ORDER_SERVICE_RETENTION_BATCH", default_value_t = 2000)]
    pub retention_batch: i64,
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub outbox_events: u64,
    pub idempotency_keys: u64,
    pub sagas: u64,
}

pub struct Retention {
    pool: PgPool,
    config: RetentionConfig,
    metrics: Arc<Metrics>,
}

impl Retention {
    pub fn new(pool: PgPool, config: RetentionConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            pool,
            config,
            metrics,
        }
    }

    /// One pass over every table, each until nothing expired is left (or `stop` is cancelled).
    pub async fn pass(&self, stop: &CancellationToken) -> Result<Deleted, sqlx::Error> {
        let c = &self.config;
        let batch = c.retention_batch.max(1);
        let pool = &self.pool;
        let deleted = Deleted {
            outbox_events: until_short(batch, stop, || async {
                let mut conn = pool.acquire().await?;
                store::delete_delivered_events(&mut conn, c.outbox_retention, batch).await
            })
            .await?,
            idempotency_keys: until_short(batch, stop, || async {
                let mut conn = pool.acquire().await?;
                store::delete_expired_keys(&mut conn, c.idempotency_key_ttl, batch).await
            })
            .await?,
            sagas: until_short(batch, stop, || async {
                let mut conn = pool.acquire().await?;
                store::delete_finished_sagas(&mut conn, c.saga_retention, batch).await
            })
            .await?,
        };
        self.metrics
            .retention_deleted("outbox_events", deleted.outbox_events);
        self.metrics
            .retention_deleted("idempotency_keys", deleted.idempotency_keys);
        self.metrics.retention_deleted("sagas", deleted.sagas);
        Ok(deleted)
    }

    /// Runs a pass every `--retention-interval` until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(
            outbox = ?self.config.outbox_retention,
            idempotency_keys = ?self.config.idempotency_key_ttl,
            sagas = ?self.config.saga_retention,
            "retention started"
        );
        while !shutdown.is_cancelled() {
            match self.pass(&shutdown).await {
                Ok(deleted) if deleted != Deleted::default() => {
                    tracing::debug!(?deleted, "retention pass")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error_chain(&error), "retention pass failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.retention_interval) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }
}

/// Runs `delete` (one batch) until it deletes fewer than `batch` rows; returns the total.
async fn until_short<F, Fut>(
    batch: i64,
    stop: &CancellationToken,
    mut delete: F,
) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let deleted = delete().await?;
        total += deleted;
        if deleted < batch as u64 || stop.is_cancelled() {
            return Ok(total);
        }
    }
}
