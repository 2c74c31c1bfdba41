//! The loop that measures the replica's lag on every tick and publishes its state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::lag::LagClock;
use super::route::ReplicaState;
use crate::db::replica as store;
use crate::metrics::Metrics;

/// How long one reading waits for either server before calling the replica down.
const READING_TIMEOUT: Duration = Duration::from_secs(2);

pub struct ReplicaMonitor {
    primary: PgPool,
    replica: PgPool,
    interval: Duration,
    max_lag: Duration,
    samples: usize,
    state: watch::Sender<ReplicaState>,
    metrics: Arc<Metrics>,
}

impl ReplicaMonitor {
    pub fn new(
        primary: PgPool,
        replica: PgPool,
        config: &super::ReplicaConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            primary,
            replica,
            interval: config.replica_lag_interval,
            max_lag: config.replica_max_lag,
            samples: config.lag_samples(),
            state: watch::Sender::new(ReplicaState::Unknown),
            metrics,
        }
    }

    /// The state readers route by.
    pub fn subscribe(&self) -> watch::Receiver<ReplicaState> {
        self.state.subscribe()
    }

    /// Measures now, then every interval, until `stopping`.
    pub async fn run(self: Arc<Self>, stopping: CancellationToken) {
        let mut clock = LagClock::new(self.samples);
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let state = self.reading(&mut clock).await;
            self.publish(state);
        }
    }

    /// One reading: the primary's position first, then how far the replica replayed.
    async fn reading(&self, clock: &mut LagClock) -> ReplicaState {
        match tokio::time::timeout(READING_TIMEOUT, self.primary_position()).await {
            Ok(Ok(position)) => clock.record_primary(position, Instant::now()),
            // Without a sample the lag is judged on the earlier ones (the primary's own
            // outage shows on /readyz as the postgres check).
            Ok(Err(error)) => {
                tracing::debug!(
                    error = format!("{error:#}"),
                    "sampling the primary's WAL position failed"
                )
            }
            Err(_) => tracing::debug!("sampling the primary's WAL position timed out"),
        }
        let replayed = match tokio::time::timeout(READING_TIMEOUT, self.replayed()).await {
            Ok(Ok(replayed)) => replayed,
            Ok(Err(error)) => return self.down(&format!("{error:#}")),
            Err(_) => return self.down("no answer within 2s"),
        };
        match replayed {
            Some(position) => ReplicaState::Up {
                lag: clock.lag(position, Instant::now()),
            },
            None => ReplicaState::Up {
                lag: Duration::ZERO,
            },
        }
    }

    async fn primary_position(&self) -> anyhow::Result<u64> {
        let mut conn = self.primary.acquire().await?;
        Ok(store::primary_position(&mut conn).await?)
    }

    async fn replayed(&self) -> anyhow::Result<Option<u64>> {
        let mut conn = self
            .replica
            .acquire()
            .await
            .context("connecting to the read replica")?;
        store::replayed_position(&mut conn)
            .await
            .context("reading the replica's replay position")
    }

    fn down(&self, why: &str) -> ReplicaState {
        if !matches!(*self.state.borrow(), ReplicaState::Down) {
            tracing::warn!(reason = why, "the read replica is unreachable; lists read from the primary or are refused, as configured");
        }
        ReplicaState::Down
    }

    fn publish(&self, state: ReplicaState) {
        let before = *self.state.borrow();
        let behind = |s: ReplicaState| matches!(s, ReplicaState::Up { lag } if lag > self.max_lag);
        match state {
            ReplicaState::Up { lag } if behind(state) && !behind(before) => tracing::warn!(
                lag_seconds = lag.as_secs_f64(),
                max_lag_seconds = self.max_lag.as_secs_f64(),
                "the read replica is behind more than allowed"
            ),
            ReplicaState::Up { .. }
                if !behind(state) && (behind(before) || before == ReplicaState::Down) =>
            {
                tracing::info!("the read replica serves reads again")
            }
            _ => {}
        }
        self.metrics.replica_lag(match state {
            ReplicaState::Up { lag } => Some(lag),
            ReplicaState::Down | ReplicaState::Unknown => None,
        });
        self.state.send_replace(state);
    }
}
