//! Failed calls: transient, retried by the controller with backoff, a non-zero exit in the CLI.

use super::CallMetrics;

/// A call to DynamoDB, Kafka or PostgreSQL that failed or did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("DynamoDB {operation} {resource}: {message}")]
    DynamoDb {
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error("Kafka {operation} {resource}: {message}")]
    Kafka {
        operation: &'static str,
        resource: String,
        message: String,
    },
    /// The brokers could not be used at all, for the reason librdkafka gave.
    #[error("Kafka brokers {servers}: {message}")]
    KafkaBrokers {
        /// `KafkaAuthenticationFailed`, `KafkaTlsFailed` or `KafkaUnreachable`.
        reason: &'static str,
        servers: String,
        message: String,
    },
    #[error("PostgreSQL {operation}: {message}")]
    Database {
        operation: &'static str,
        message: String,
    },
    /// Only from `converge`: the controller and the CLI report refusals as outcomes.
    #[error("refused: {0}")]
    Refused(super::Refusal),
    #[error("{system} did not answer {operation} within {timeout:?}")]
    Timeout {
        system: &'static str,
        operation: &'static str,
        timeout: std::time::Duration,
    },
}

impl ProvisionError {
    /// The stable reason of the condition (or CLI message) this error becomes.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DynamoDb { .. } => "DynamoDbCallFailed",
            Self::Kafka { .. } => "KafkaCallFailed",
            Self::KafkaBrokers { reason, .. } => reason,
            Self::Database { .. } => "DatabaseCallFailed",
            Self::Timeout { .. } => "Timeout",
            Self::Refused(refusal) => refusal.reason,
        }
    }
}

/// The whole `source()` chain on one line, for logs, Event notes and conditions.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Bounds a call and records it in `metrics`: every call the provisioners make goes through this, so an endpoint that
/// accepts connections but never answers cannot hang a reconcile or the CLI.
pub async fn bounded<T>(
    metrics: &CallMetrics,
    system: &'static str,
    operation: &'static str,
    timeout: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, ProvisionError>>,
) -> Result<T, ProvisionError> {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(timeout, call).await;
    let outcome = match &result {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    };
    metrics.record(system, operation, outcome, started.elapsed());
    result.map_err(|_| ProvisionError::Timeout {
        system,
        operation,
        timeout,
    })?
}
