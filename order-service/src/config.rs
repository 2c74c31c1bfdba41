//! Command line and environment configuration: every flag has an env fallback, and the doc
//! comments here are the `--help` text.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sqlx::postgres::PgConnectOptions;

use crate::dynamodb::DynamoDbConfig;
use crate::kafka::KafkaConfig;
use crate::outbox::{RelayConfig, Sink};

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
    /// Serve the HTTP API (and relay the outbox) until SIGTERM or SIGINT.
    Serve(Box<ServeConfig>),
    /// Apply the migrations embedded in this binary, then exit.
    Migrate(DatabaseConfig),
    /// Compare recently changed orders with their newest DynamoDB history item, and the hourly
    /// counters with the history; print any drift and exit 1 when there is some.
    VerifyProjections(VerifyConfig),
    /// Inspect and retry outbox deliveries that a sink rejected for good.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Load-test a running service and compare it with the same SQL run directly.
    Bench(crate::bench::BenchConfig),
    /// Inspect fulfilment sagas: `sagas --stuck --older-than 10m` lists those not moving, and
    /// why; exits 1 when there are any.
    Sagas(crate::saga::cli::SagasArgs),
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

/// Where events go, and how to reach those places.
#[derive(Debug, Clone, Args)]
pub struct SinksConfig {
    /// Sinks that receive order events: `dynamodb`, `kafka` (comma-separated), or `none`.
    #[arg(long, env = "ORDER_SERVICE_SINKS", default_value = "dynamodb,kafka", value_parser = parse_sinks)]
    pub sinks: SinkSet,
    /// How long a counted event's dedup marker is kept (DynamoDB TTL); a redelivery later than
    /// this would count again.
    #[arg(long, env = "ORDER_SERVICE_COUNTER_MARKER_TTL", default_value = "7days", value_parser = humantime::parse_duration)]
    pub counter_marker_ttl: Duration,
    #[command(flatten)]
    pub dynamodb: DynamoDbConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
}

/// The enabled sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSet(pub Vec<Sink>);

impl SinkSet {
    pub fn contains(&self, sink: Sink) -> bool {
        self.0.contains(&sink)
    }
}

pub fn parse_sinks(value: &str) -> Result<SinkSet, String> {
    if value.trim() == "none" {
        return Ok(SinkSet(Vec::new()));
    }
    let mut sinks = value
        .split(',')
        .map(|s| s.trim().parse::<Sink>())
        .collect::<Result<Vec<_>, _>>()?;
    sinks.sort();
    sinks.dedup();
    Ok(SinkSet(sinks))
}

#[derive(Debug, Clone, Args)]
pub struct VerifyConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub dynamodb: DynamoDbConfig,
    /// Check orders changed within this long (e.g. `1h`, `30m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Duration,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List parked deliveries with their errors.
    Parked(DatabaseConfig),
    /// Make parked deliveries pending again (after fixing their cause).
    Retry {
        #[command(flatten)]
        database: DatabaseConfig,
        /// Only this event's deliveries; without it, every parked delivery.
        #[arg(long)]
        event_id: Option<uuid::Uuid>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub sinks: SinksConfig,
    #[command(flatten)]
    pub relay: RelayConfig,
    #[command(flatten)]
    pub saga: crate::saga::SagaConfig,
    /// Fail readiness (503) while DynamoDB or Kafka is unreachable, instead of reporting
    /// `degraded` and serving on (changes queue in the outbox meanwhile).
    #[arg(long, env = "ORDER_SERVICE_READINESS_REQUIRES_SINKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub readiness_requires_sinks: bool,
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
    fn sinks_parse_as_a_set() {
        assert_eq!(
            parse_sinks("kafka,dynamodb,kafka"),
            Ok(SinkSet(vec![Sink::DynamoDb, Sink::Kafka]))
        );
        assert_eq!(parse_sinks("none"), Ok(SinkSet(vec![])));
        assert!(parse_sinks("s3").is_err());
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
