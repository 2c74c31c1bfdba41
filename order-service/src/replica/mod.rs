//! The read replica: reads that may be slightly stale (order lists, reports) go to a streaming
//! replica of the primary while it is close enough behind, so analytics never compete with
//! order taking for the primary. Writes, `GET /v1/orders/{id}` and everything inside a write
//! transaction stay on the primary: a client always reads its own writes by id.
//!
//! [`monitor`] measures the replica's lag continuously, [`route`] decides where each read
//! goes, [`Reads`] hands handlers the pool.

pub mod lag;
pub mod monitor;
pub mod reads;
pub mod route;

use std::time::Duration;

use clap::Args;
use sqlx::postgres::PgConnectOptions;

use crate::db::DatabaseUrlParser;

pub use monitor::ReplicaMonitor;
pub use reads::Reads;
pub use route::{Behind, ReadKind, ReplicaState, Route, WhenBehind};

#[derive(Debug, Clone, Args)]
pub struct ReplicaConfig {
    /// PostgreSQL URL of a streaming read replica of the primary. Order lists and the reports
    /// read from it while it is at most --replica-max-lag behind; writes and GET by id stay on
    /// the primary. Unset: everything reads from the primary.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true, value_parser = DatabaseUrlParser("DATABASE_READ_URL / --database-read-url"))]
    pub database_read_url: Option<PgConnectOptions>,
    /// Most connections the replica's pool opens (its own pool: reports never take the
    /// primary's connections).
    #[arg(
        long,
        env = "ORDER_SERVICE_DB_READ_MAX_CONNECTIONS",
        default_value_t = 8
    )]
    pub db_read_max_connections: u32,
    /// How far behind the primary the replica may be and still serve reads.
    #[arg(long, env = "ORDER_SERVICE_REPLICA_MAX_LAG", default_value = "10s", value_parser = humantime::parse_duration)]
    pub replica_max_lag: Duration,
    /// How often the replica's lag is measured.
    #[arg(long, env = "ORDER_SERVICE_REPLICA_LAG_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub replica_lag_interval: Duration,
    /// What order lists do while the replica is down or further behind than --replica-max-lag:
    /// read from the primary, or answer 503.
    #[arg(long, env = "ORDER_SERVICE_LISTS_WHEN_REPLICA_BEHIND", value_enum, default_value_t = WhenBehind::Primary)]
    pub lists_when_replica_behind: WhenBehind,
    /// What the reports do while the replica is down or further behind than --replica-max-lag:
    /// answer 503 (so they never load the primary), or read from the primary.
    #[arg(long, env = "ORDER_SERVICE_REPORTS_WHEN_REPLICA_BEHIND", value_enum, default_value_t = WhenBehind::Refuse)]
    pub reports_when_replica_behind: WhenBehind,
}

impl ReplicaConfig {
    /// Lag samples kept: an hour of ticks, at most 3,600 (a replica further behind reads as
    /// "at least an hour").
    pub fn lag_samples(&self) -> usize {
        let tick = self.replica_lag_interval.max(Duration::from_millis(100));
        (Duration::from_secs(3600).as_millis() / tick.as_millis()).clamp(1, 3600) as usize
    }

    pub fn when_behind(&self, kind: ReadKind) -> WhenBehind {
        match kind {
            ReadKind::List => self.lists_when_replica_behind,
            ReadKind::Report => self.reports_when_replica_behind,
        }
    }
}
