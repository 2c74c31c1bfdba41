//! The transactional outbox: events written with each change, delivered to DynamoDB and Kafka
//! by the relay, each sink tracked on its own.

pub mod cli;
pub mod envelope;
mod relay;

use std::fmt;
use std::str::FromStr;

pub use relay::{Relay, RelayConfig};

use crate::dynamodb::{HistoryEntry, StatusCounterStore, StatusHistoryStore};
use crate::kafka::EventPublisher;
use envelope::{hour_bucket, EventEnvelope};

/// A destination of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sink {
    DynamoDb,
    Kafka,
}

impl Sink {
    pub const ALL: [Sink; 2] = [Sink::DynamoDb, Sink::Kafka];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DynamoDb => "dynamodb",
            Self::Kafka => "kafka",
        }
    }
}

impl fmt::Display for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sink {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| format!("unknown sink `{value}` (dynamodb, kafka)"))
    }
}

/// Why a delivery failed: worth retrying, or never going to succeed for this event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// The DynamoDB side: history item and counter, written for every event.
#[derive(Clone)]
pub struct DynamoDbProjection {
    pub history: StatusHistoryStore,
    pub counters: StatusCounterStore,
}

impl DynamoDbProjection {
    /// Both writes are idempotent, so a retry after a partial failure is safe.
    pub async fn deliver(&self, event: &EventEnvelope) -> Result<(), DeliveryError> {
        self.history.put(&HistoryEntry::from_event(event)).await?;
        self.counters
            .record(
                event.event_id,
                event.payload.status,
                &hour_bucket(event.occurred_at),
                &event.payload.currency,
                event.payload.total_minor,
            )
            .await?;
        Ok(())
    }
}

/// The enabled sinks and their adapters.
#[derive(Clone, Default)]
pub struct Projections {
    pub dynamodb: Option<DynamoDbProjection>,
    pub kafka: Option<EventPublisher>,
}

impl Projections {
    pub fn sinks(&self) -> Vec<Sink> {
        let mut sinks = Vec::new();
        if self.dynamodb.is_some() {
            sinks.push(Sink::DynamoDb);
        }
        if self.kafka.is_some() {
            sinks.push(Sink::Kafka);
        }
        sinks
    }

    pub async fn deliver(&self, sink: Sink, event: &EventEnvelope) -> Result<(), DeliveryError> {
        let disabled =
            || DeliveryError::Transient(format!("sink {sink} is not configured in this process"));
        match sink {
            Sink::DynamoDb => {
                self.dynamodb
                    .as_ref()
                    .ok_or_else(disabled)?
                    .deliver(event)
                    .await
            }
            Sink::Kafka => {
                self.kafka
                    .as_ref()
                    .ok_or_else(disabled)?
                    .publish(event)
                    .await
            }
        }
    }
}
