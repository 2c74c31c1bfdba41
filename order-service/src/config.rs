//! Command line and environment configuration: every flag has an env fallback, and the doc
//! comments here are the `--help` text.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sqlx::postgres::PgConnectOptions;

/// The order API: orders with items, addresses and payment in PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "order-service", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogConfig,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API until SIGTERM or SIGINT.
    Serve(ServeConfig),
    /// Apply the migrations embedded in this binary, then exit.
    Migrate(DatabaseConfig),
    /// Load-test a running service and compare it with the same SQL run directly.
    Bench(crate::bench::BenchConfig),
}

#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info,order_service=debug`).
    #[arg(long, env = "ORDER_SERVICE_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format: `json`, `text`, or `auto` (JSON unless stderr is a terminal).
    #[arg(long, env = "ORDER_SERVICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, e.g. `postgres://user:password@127.0.0.1:5432/orders`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = DatabaseUrlParser)]
    pub database_url: PgConnectOptions,
    /// Most connections the pool opens.
    #[arg(long, env = "ORDER_SERVICE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a request waits for a free connection before failing with 503.
    #[arg(long, env = "ORDER_SERVICE_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "ORDER_SERVICE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Largest accepted request body, in bytes; larger bodies get 413.
    #[arg(long, env = "ORDER_SERVICE_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    /// Longest a request may take before it is answered with 503.
    #[arg(long, env = "ORDER_SERVICE_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "ORDER_SERVICE_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Parses the database URL. A plain `value_parser` function would have clap repeat the bad
/// value in its error, and a URL may hold a password, so the error is built here instead.
#[derive(Debug, Clone, Copy)]
struct DatabaseUrlParser;

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
                    "DATABASE_URL / --database-url is not a PostgreSQL URL \
                     (postgres://user:password@host:port/database); the value is not shown because it may hold a password\n",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_database_url_does_not_echo_the_secret() {
        let error =
            Cli::try_parse_from(["order-service", "migrate", "--database-url", "::s3cret::"])
                .unwrap_err()
                .to_string();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(error.contains("not a PostgreSQL URL"), "{error}");
    }
}
