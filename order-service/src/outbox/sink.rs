//! The sink interface: what the relay needs from a destination of events. The adapters
//! (`dynamodb::DynamoDbProjection`, `kafka::EventPublisher`) implement it; the outbox never
//! names them, so they can depend on the envelope without a cycle.

use std::fmt;
use std::str::FromStr;

use futures::future::BoxFuture;

use super::envelope::EventEnvelope;

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

/// One destination of events. Deliveries must be idempotent: a batch is sent again after a
/// crash between sending and recording it.
pub trait EventSink: Send + Sync {
    fn sink(&self) -> Sink;

    /// Delivers a batch of events (of different orders), up to `concurrency` at a time; one
    /// result per event, in the batch's order.
    fn deliver_batch<'a>(
        &'a self,
        events: &'a [&'a EventEnvelope],
        concurrency: usize,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>>;
}
