//! The enabled sinks: which ones (`--sinks`), their adapters, and the outbox's view of them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::dynamodb::{DynamoDbConfig, DynamoDbProjection, StatusCounterStore, StatusHistoryStore};
use crate::kafka::{EventPublisher, KafkaConfig};
use crate::outbox::sink::{EventSink, Sink};

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

/// The adapters of the enabled sinks: the relay delivers through them, the API reads the
/// DynamoDB projections and the probes check both.
#[derive(Clone, Default)]
pub struct Projections {
    pub dynamodb: Option<DynamoDbProjection>,
    pub kafka: Option<EventPublisher>,
}

impl Projections {
    /// Builds the adapters of the enabled sinks.
    pub async fn connect(config: &SinksConfig) -> anyhow::Result<Self> {
        let dynamodb = if config.sinks.contains(Sink::DynamoDb) {
            let client = config.dynamodb.client().await;
            let retention =
                Duration::from_secs(u64::from(config.dynamodb.history_retention_days) * 86_400);
            Some(DynamoDbProjection {
                history: StatusHistoryStore::new(
                    client.clone(),
                    config.dynamodb.history_table(),
                    retention,
                ),
                counters: StatusCounterStore::new(
                    client,
                    config.dynamodb.counters_table(),
                    config.counter_marker_ttl,
                ),
            })
        } else {
            None
        };
        let kafka = if config.sinks.contains(Sink::Kafka) {
            Some(EventPublisher::new(&config.kafka).context("configuring the Kafka producer")?)
        } else {
            None
        };
        Ok(Self { dynamodb, kafka })
    }

    pub fn sinks(&self) -> Vec<Sink> {
        self.adapters().iter().map(|a| a.sink()).collect()
    }

    /// The enabled sinks as the outbox relay sees them.
    pub fn adapters(&self) -> Vec<Arc<dyn EventSink>> {
        let mut adapters: Vec<Arc<dyn EventSink>> = Vec::new();
        if let Some(dynamodb) = &self.dynamodb {
            adapters.push(Arc::new(dynamodb.clone()));
        }
        if let Some(kafka) = &self.kafka {
            adapters.push(Arc::new(kafka.clone()));
        }
        adapters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_parse_as_a_set() {
        assert_eq!(
            parse_sinks("kafka,dynamodb,kafka"),
            Ok(SinkSet(vec![Sink::DynamoDb, Sink::Kafka]))
        );
        assert_eq!(parse_sinks("none"), Ok(SinkSet(vec![])));
        assert!(parse_sinks("s3").is_err());
    }
}
