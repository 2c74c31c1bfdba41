//! Command line and environment of `order-operator`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Kubernetes operator for the order platform (`platform.orders.dev/v1alpha1`).
#[derive(Debug, Parser)]
#[command(name = "order-operator", version, about)]
pub struct Cli {
    /// Log filter, in `tracing` EnvFilter syntax.
    #[arg(
        long,
        env = "ORDER_OPERATOR_LOG",
        default_value = "info",
        global = true
    )]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (in-cluster config, or the current kubeconfig).
    Run(RunConfig),
    /// Print the OrderPlatform CustomResourceDefinition as YAML.
    Crd,
    /// Create many OrderPlatforms against the current cluster and report how the controller
    /// (run in this process) keeps up.
    Bench(crate::bench::BenchConfig),
    /// Print the operator's RBAC (its ClusterRole, the credentials ClusterRole to bind per
    /// namespace, and a Role for the leader Lease) as YAML.
    Rbac,
    /// Show what `apply` would change in DynamoDB, Kafka and PostgreSQL for an OrderPlatform
    /// file, changing nothing. Exit 0: no changes; 2: changes pending; 1: error or refusal.
    Plan(crate::cli::PlanArgs),
    /// Create or correct the DynamoDB tables and Kafka topics of an OrderPlatform file and run
    /// its PostgreSQL migrations, without Kubernetes. Refusals stop it with exit 1.
    Apply(crate::cli::ApplyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunConfig {
    /// Address of `/livez`, `/readyz` and `/metrics`.
    #[arg(
        long,
        env = "ORDER_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub metrics_addr: SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "ORDER_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Namespace of the leader-election Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "ORDER_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "ORDER_OPERATOR_LEASE_NAME",
        default_value = "order-operator-leader"
    )]
    pub lease_name: String,
    /// How long a leader's Lease lasts without renewal; a standby takes over after it.
    #[arg(long, env = "ORDER_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// This replica's identity in the Lease (default: the pod name, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How often a healthy platform is re-checked for drift.
    #[arg(long, env = "ORDER_OPERATOR_RESYNC", default_value = "5m", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// Bound on each DynamoDB and Kafka call (retries included).
    #[arg(long, env = "ORDER_OPERATOR_PROVISION_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub provision_timeout: Duration,
    /// With `deletionPolicy: Delete`, how long after a platform's deletion the operator keeps
    /// retrying to delete its tables and topics (say, while a credentials Secret is missing)
    /// before it releases the platform anyway, leaving them behind with a Warning Event that
    /// names them. The annotation `platform.orders.dev/abandon-external: "true"` releases it
    /// at once.
    #[arg(long, env = "ORDER_OPERATOR_CLEANUP_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub cleanup_timeout: Duration,
    /// Reach every platform's service at this base URL (e.g. `http://127.0.0.1:8080`) to read
    /// its `/flowz` for the `DataFlowing` condition, instead of at its Service's in-cluster
    /// name (`http://<name>.<namespace>.svc:<service.port>`): for an operator run outside the
    /// cluster against one platform.
    #[arg(long, env = "ORDER_OPERATOR_SERVICE_URL")]
    pub service_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
