//! The command line: the subcommands, each with its flags beside the code it configures
//! (`startup::ServeConfig`, `db::DatabaseConfig`, ...). Every flag has an env fallback, and the
//! doc comments are the `--help` text.

use clap::{Parser, Subcommand};

use crate::outbox::cli::OutboxCommand;
use crate::startup::ServeConfig;
use crate::telemetry::LogConfig;
use crate::verify::VerifyConfig;

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
    Migrate(crate::db::DatabaseConfig),
    /// Compare recently changed orders with their newest DynamoDB history item, and the hourly
    /// counters with the history; print any drift and exit 1 when there is some.
    VerifyProjections(VerifyConfig),
    /// Inspect and retry outbox deliveries that a sink rejected for good.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Load-test a running service and compare it with the same SQL run directly.
    Bench(Box<crate::bench::BenchConfig>),
    /// Inspect fulfilment sagas: `sagas --stuck --older-than 10m` lists those not moving, and
    /// why; exits 1 when there are any.
    Sagas(crate::saga::cli::SagasArgs),
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
