//! `order-operator plan` and `apply`: the provisioners without Kubernetes, for an OrderPlatform
//! file. `plan` changes nothing; `apply` executes the plan and the migrations.
//!
//! Exit codes follow terraform's `-detailed-exitcode`: 0 no changes (or applied), 2 changes
//! pending (plan only), 1 error or refusal.

mod manifest;
mod plan;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use manifest::load;
pub use plan::{apply, plan, PlatformPlan};

/// Where the platform's resources are, beyond what the file says.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The OrderPlatform manifest (YAML; `-` reads standard input). Other documents in the
    /// file are ignored.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Use this DynamoDB endpoint instead of the spec's `dynamodb.endpoint` (e.g. the local
    /// stack's moto). AWS credentials come from the default chain (environment, profile, web
    /// identity): the spec's `credentialsSecretRef` lives in a cluster.
    #[arg(long, env = "ORDER_OPERATOR_DYNAMODB_ENDPOINT")]
    pub dynamodb_endpoint: Option<String>,
    /// Use these Kafka bootstrap servers instead of the spec's `kafka.bootstrapServers`.
    #[arg(long, env = "ORDER_OPERATOR_KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// librdkafka settings for the admin client, KEY=VALUE (repeatable, or comma-separated in
    /// the variable): what the spec's `securitySecretRef` holds in a cluster. Never printed.
    #[arg(
        long = "kafka-property",
        env = "ORDER_OPERATOR_KAFKA_PROPERTIES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub kafka_properties: Vec<String>,
    /// PostgreSQL URL: compare (plan) or run (apply) the migrations embedded in this build.
    /// Without it, PostgreSQL is left out.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Bound on each DynamoDB, Kafka and PostgreSQL call.
    #[arg(long, env = "ORDER_OPERATOR_PROVISION_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// One JSON document, for tools.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

/// What a command ends with.
pub enum Outcome {
    /// Nothing to do, or everything done.
    Done,
    /// `plan` found changes.
    ChangesPending,
    /// An error or a refusal (already printed).
    Failed,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::ChangesPending => ExitCode::from(2),
            Outcome::Failed => ExitCode::from(1),
        }
    }
}
