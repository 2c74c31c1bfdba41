//! The relay: claims pending deliveries, hands them to their sink, records the outcome.
//! [`Relay::step`] is one batch for one sink (tests drive it directly); [`Relay::run`] loops it
//! per sink, woken by NOTIFY with a polling fallback, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use clap::Args;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::envelope::EventEnvelope;
use super::sink::{DeliveryError, EventSink, Sink};
use crate::db::outbox::{self as store, Claimed};
use crate::metrics::Metrics;

#[derive(Debug, Clone, Args)]
pub struct RelayConfig {
    /// Run the outbox relay in this process (every replica may; they share the work).
    #[arg(long, env = "ORDER_SERVICE_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay: bool,
    /// Deliveries claimed per batch and sink.
    #[arg(long, env = "ORDER_SERVICE_RELAY_BATCH", default_value_t = 500)]
    pub relay_batch_size: i64,
    /// Events of one batch delivered at the same time (they belong to different orders). Kafka
    /// throughput grows with it: the producer batches what is in flight (measured in
    /// docs/performance.md: 32 kept ~450 events/s, 500 kept up with the API).
    #[arg(long, env = "ORDER_SERVICE_RELAY_CONCURRENCY", default_value_t = 500)]
    pub relay_concurrency: usize,
    /// How often the relay looks for due deliveries when no NOTIFY woke it.
    #[arg(long, env = "ORDER_SERVICE_RELAY_POLL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub relay_poll_interval: Duration,
    /// First retry delay of a failed delivery; doubles per attempt, with jitter.
    #[arg(long, env = "ORDER_SERVICE_RELAY_MIN_BACKOFF", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub relay_min_backoff: Duration,
    /// Longest retry delay of a failed delivery.
    #[arg(long, env = "ORDER_SERVICE_RELAY_MAX_BACKOFF", default_value = "30s", value_parser = humantime::parse_duration)]
    pub relay_max_backoff: Duration,
    /// Connections of the relay's own pool (kept apart so relaying never takes the API's).
    #[arg(long, env = "ORDER_SERVICE_RELAY_DB_CONNECTIONS", default_value_t = 4)]
    pub relay_db_connections: u32,
}

pub struct Relay {
    pool: PgPool,
    sinks: Vec<Arc<dyn EventSink>>,
    config: RelayConfig,
    metrics: Arc<Metrics>,
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepOutcome {
    pub delivered: usize,
    pub retried: usize,
    pub parked: usize,
}

impl StepOutcome {
    pub fn claimed(&self) -> usize {
        self.delivered + self.retried + self.parked
    }
}

impl Relay {
    pub fn new(
        pool: PgPool,
        sinks: Vec<Arc<dyn EventSink>>,
        config: RelayConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pool,
            sinks,
            config,
            metrics,
        }
    }

    /// Claims one batch for `sink`, delivers it, and records each outcome in one transaction.
    /// The claimed rows stay locked until the outcome is committed, so no other relay sends
    /// them meanwhile; a crash before the commit leaves them pending, to be sent again (the
    /// sinks are idempotent).
    pub async fn step(&self, sink: Sink) -> Result<StepOutcome, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let batch = store::claim(&mut tx, sink, self.config.relay_batch_size).await?;
        if batch.is_empty() {
            tx.commit().await?;
            return Ok(StepOutcome::default());
        }
        let results = self.deliver(sink, batch).await;

        let mut outcome = StepOutcome::default();
        let mut delivered: Vec<Uuid> = Vec::new();
        for (claimed, result) in results {
            match result {
                Ok(()) => delivered.push(claimed.event_id),
                Err(DeliveryError::Transient(error)) => {
                    let delay = self.backoff(claimed.attempts);
                    tracing::debug!(%sink, event_id = %claimed.event_id, attempts = claimed.attempts + 1, ?delay, %error, "delivery failed; will retry");
                    store::reschedule(&mut tx, sink, claimed.event_id, delay, &error).await?;
                    self.metrics.outbox_failure(sink, "transient");
                    outcome.retried += 1;
                }
                Err(DeliveryError::Permanent(error)) => {
                    tracing::warn!(%sink, event_id = %claimed.event_id, %error, "delivery rejected for good; parked");
                    store::park(&mut tx, sink, claimed.event_id, &error).await?;
                    self.metrics.outbox_failure(sink, "permanent");
                    outcome.parked += 1;
                }
            }
        }
        store::mark_delivered(&mut tx, sink, &delivered).await?;
        tx.commit().await?;
        outcome.delivered = delivered.len();
        self.metrics.outbox_published(sink, delivered.len() as u64);
        Ok(outcome)
    }

    /// Hands a batch to its sink. An event this build cannot read is a permanent failure.
    async fn deliver(
        &self,
        sink: Sink,
        batch: Vec<Claimed>,
    ) -> Vec<(Claimed, Result<(), DeliveryError>)> {
        let Some(adapter) = self.sinks.iter().find(|a| a.sink() == sink) else {
            let disabled = format!("sink {sink} is not configured in this process");
            return batch
                .into_iter()
                .map(|c| (c, Err(DeliveryError::Transient(disabled.clone()))))
                .collect();
        };
        let events: Vec<&EventEnvelope> = batch
            .iter()
            .filter_map(|c| c.envelope.as_ref().ok())
            .collect();
        let mut results = adapter
            .deliver_batch(&events, self.config.relay_concurrency.max(1))
            .await
            .into_iter();
        batch
            .into_iter()
            .map(|claimed| {
                let result = match &claimed.envelope {
                    Ok(_) => results
                        .next()
                        .unwrap_or_else(|| Err(DeliveryError::Transient("no result".into()))),
                    Err(reason) => Err(DeliveryError::Permanent(reason.clone())),
                };
                (claimed, result)
            })
            .collect()
    }

    /// Steps every enabled sink until none has anything due. For tests and one-shot use.
    pub async fn drain(&self) -> Result<(), sqlx::Error> {
        loop {
            let mut progressed = false;
            for sink in self.sinks() {
                progressed |= self.step(sink).await?.delivered > 0;
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    fn sinks(&self) -> Vec<Sink> {
        self.sinks.iter().map(|a| a.sink()).collect()
    }

    /// Exponential backoff with jitter for the n-th failed attempt of a delivery.
    fn backoff(&self, attempts: i32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.config.relay_min_backoff)
            .with_max_delay(self.config.relay_max_backoff)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempts.max(0) as usize)
            .unwrap_or(self.config.relay_max_backoff)
    }

    /// Runs one loop per enabled sink until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let sinks = self.sinks();
        let wakers: Vec<(Sink, Arc<Notify>)> = sinks
            .iter()
            .map(|s| (*s, Arc::new(Notify::new())))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(listen(
            self.pool.clone(),
            wakers.iter().map(|(_, n)| n.clone()).collect(),
            shutdown.clone(),
        ));
        for (sink, wake) in wakers {
            tasks.spawn(self.clone().sink_loop(sink, wake, shutdown.clone()));
        }
        tracing::info!(sinks = ?sinks.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "outbox relay started");
        while tasks.join_next().await.is_some() {}
        tracing::info!("outbox relay stopped");
    }

    async fn sink_loop(
        self: Arc<Self>,
        sink: Sink,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let pause = match self.step(sink).await {
                Ok(outcome) if outcome.claimed() > 0 => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    self.config.relay_poll_interval
                }
                Err(error) => {
                    failures += 1;
                    let delay = self.backoff(failures as i32);
                    tracing::warn!(%sink, error = %crate::telemetry::error_chain(&error), ?delay, "relay step failed");
                    delay
                }
            };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }
}

/// Wakes every sink loop on each NOTIFY. `PgListener::recv` reconnects by itself after a lost
/// connection; notifications sent meanwhile are caught by the polling fallback.
async fn listen(pool: PgPool, wakers: Vec<Arc<Notify>>, shutdown: CancellationToken) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(store::NOTIFY_CHANNEL).await?;
            loop {
                listener.recv().await?;
                wakers.iter().for_each(|w| w.notify_one());
            }
        };
        let result: Result<(), sqlx::Error> = tokio::select! {
            result = listener => result,
            () = shutdown.cancelled() => return,
        };
        if let Err(error) = result {
            failures += 1;
            tracing::warn!(error = %crate::telemetry::error_chain(&error), "outbox LISTEN failed; polling meanwhile");
            let delay = Duration::from_millis(200 * u64::from(failures.min(50)));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
