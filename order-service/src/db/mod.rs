//! PostgreSQL access: one function per query, each taking a connection or transaction.
//!
//! Handlers own the transaction; these functions only run SQL and map rows to domain types.

pub mod create;
pub mod idempotency;
pub mod orders;
pub mod outbox;
pub mod replica;
pub mod reports;
pub mod retention;
pub mod sagas;
pub mod schema;
pub mod status_change;

use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The migrations under `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pool that connects lazily, so the service starts (and reports not ready) while the
/// database is still coming up.
pub fn pool(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options)
}

/// A duration as a PostgreSQL interval parameter.
pub(crate) fn interval(duration: Duration) -> PgInterval {
    PgInterval {
        months: 0,
        days: 0,
        microseconds: duration.as_micros().min(i64::MAX as u128) as i64,
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, e.g. `postgres://user:password@127.0.0.1:5432/orders`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = DatabaseUrlParser("DATABASE_URL / --database-url"))]
    pub database_url: PgConnectOptions,
    /// Most connections the pool opens.
    #[arg(long, env = "ORDER_SERVICE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a request waits for a free connection before failing with 503.
    #[arg(long, env = "ORDER_SERVICE_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,
}

/// Parses a database URL (named by the field: variable and flag). A plain `value_parser`
/// function would have clap repeat the bad value in its error, and a URL may hold a password,
/// so the error is built here instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DatabaseUrlParser(pub &'static str);

impl clap::builder::TypedValueParser for DatabaseUrlParser {
    type Value = PgConnectOptions;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        value
            .to_str()
            .and_then(|v| PgConnectOptions::from_str(v).ok())
            .ok_or_else(|| {
                clap::Error::raw(
                    clap::error::ErrorKind::ValueValidation,
                    format!(
                        "{} is not a PostgreSQL URL (postgres://user:password@host:port/database); \
                         the value is not shown because it may hold a password\n",
                        self.0
                    ),
                )
            })
    }
}
