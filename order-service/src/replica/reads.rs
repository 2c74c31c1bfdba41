//! The pool each read uses.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use super::route::{route, Behind, ReadKind, ReplicaState, Route};
use super::ReplicaConfig;
use crate::metrics::Metrics;

/// The primary, and the replica when one is configured. Cheap to clone.
#[derive(Clone)]
pub struct Reads {
    primary: PgPool,
    replica: Option<Arc<ReplicaReads>>,
    metrics: Arc<Metrics>,
}

struct ReplicaReads {
    pool: PgPool,
    state: watch::Receiver<ReplicaState>,
    config: ReplicaConfig,
}

impl Reads {
    /// Everything from the primary (no replica configured).
    pub fn primary_only(primary: PgPool, metrics: Arc<Metrics>) -> Self {
        Self {
            primary,
            replica: None,
            metrics,
        }
    }

    /// Reads that may be stale go to `pool` while `state` (the monitor's) allows.
    pub fn with_replica(
        primary: PgPool,
        pool: PgPool,
        state: watch::Receiver<ReplicaState>,
        config: ReplicaConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            primary,
            replica: Some(Arc::new(ReplicaReads {
                pool,
                state,
                config,
            })),
            metrics,
        }
    }

    /// The pool a read of this kind uses now, or why it is refused.
    pub fn pool_for(&self, kind: ReadKind) -> Result<&PgPool, Behind> {
        let (pool, source) = match &self.replica {
            None => (Ok(&self.primary), "primary"),
            Some(replica) => {
                let state = *replica.state.borrow();
                match route(
                    state,
                    replica.config.replica_max_lag,
                    replica.config.when_behind(kind),
                ) {
                    Route::Replica => (Ok(&replica.pool), "replica"),
                    Route::Primary => (Ok(&self.primary), "primary"),
                    Route::Refuse(behind) => (Err(behind), "refused"),
                }
            }
        };
        self.metrics.read_routed(kind.label(), source);
        pool
    }

    /// The replica's state and the lag it may have, when one is configured.
    pub fn replica(&self) -> Option<(ReplicaState, Duration)> {
        self.replica
            .as_ref()
            .map(|r| (*r.state.borrow(), r.config.replica_max_lag))
    }

    /// Closes the replica's pool (the primary's belongs to the application).
    pub async fn close(&self) {
        if let Some(replica) = &self.replica {
            replica.pool.close().await;
        }
    }
}
