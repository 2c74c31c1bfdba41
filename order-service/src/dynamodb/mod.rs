//! DynamoDB: the status history and hourly status counters. Any endpoint works (AWS, DynamoDB
//! Local, moto); credentials come from the AWS default chain.

mod counters;
mod history;
mod projection;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use clap::Args;

pub use counters::{CountedEvent, CounterTotal, Recorded, StatusCounterStore};
pub use history::{HistoryEntry, HistoryPage, StatusHistoryStore};
pub use projection::DynamoDbProjection;

use crate::outbox::sink::DeliveryError;

#[derive(Debug, Clone, Args)]
pub struct DynamoDbConfig {
    /// DynamoDB endpoint, for DynamoDB Local or moto (e.g. `http://127.0.0.1:58000`); unset
    /// means AWS.
    #[arg(long, env = "DYNAMODB_ENDPOINT")]
    pub dynamodb_endpoint: Option<String>,
    /// AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub dynamodb_region: String,
    /// Prefix of the table names (`<prefix>-status-history`, `<prefix>-status-counters`).
    #[arg(long, env = "ORDER_SERVICE_TABLE_PREFIX", default_value = platform_resources::DEFAULT_TABLE_PREFIX,
          value_parser = parse_prefix)]
    pub dynamodb_table_prefix: String,
    /// How long status history items are kept (DynamoDB TTL), in days.
    #[arg(
        long,
        env = "ORDER_SERVICE_HISTORY_RETENTION_DAYS",
        default_value_t = 365
    )]
    pub history_retention_days: u32,
    /// Bound on each DynamoDB call, retries included.
    #[arg(long, env = "ORDER_SERVICE_DYNAMODB_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub dynamodb_timeout: Duration,
}

fn parse_prefix(value: &str) -> Result<String, String> {
    platform_resources::validate_table_prefix(value).map(|()| value.to_owned())
}

impl DynamoDbConfig {
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.dynamodb_region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(self.dynamodb_timeout)
                    .connect_timeout(Duration::from_secs(2))
                    .build(),
            );
        if let Some(endpoint) = &self.dynamodb_endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        aws_sdk_dynamodb::Client::new(&loader.load().await)
    }

    pub fn history_table(&self) -> String {
        platform_resources::STATUS_HISTORY.table_name(&self.dynamodb_table_prefix)
    }

    pub fn counters_table(&self) -> String {
        platform_resources::STATUS_COUNTERS.table_name(&self.dynamodb_table_prefix)
    }
}

/// Error codes that are about the request itself: retrying the same item cannot succeed.
const PERMANENT_CODES: [&str; 2] = ["ValidationException", "SerializationException"];

/// Maps an SDK error to a delivery error. Throttling, timeouts, 5xx, a missing table (it may
/// be being provisioned) and access denied (it may be being fixed) are transient.
pub fn classify<E, R>(error: &SdkError<E, R>) -> DeliveryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = describe(error);
    match error {
        SdkError::ServiceError(service)
            if service
                .err()
                .code()
                .is_some_and(|c| PERMANENT_CODES.contains(&c)) =>
        {
            DeliveryError::Permanent(message)
        }
        SdkError::ConstructionFailure(_) => DeliveryError::Permanent(message),
        _ => DeliveryError::Transient(message),
    }
}

/// The code and message of a service error, or the transport failure, on one line.
pub fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => format!(
            "DynamoDB {}: {}",
            service.err().code().unwrap_or("error"),
            service.err().message().unwrap_or("no message")
        ),
        other => format!("DynamoDB unreachable: {}", DisplayErrorContext(other)),
    }
}
