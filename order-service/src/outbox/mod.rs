//! The transactional outbox: events written with each change, delivered to DynamoDB and Kafka
//! by the relay, each sink tracked on its own.

pub mod cli;
pub mod envelope;
mod relay;

use std::fmt;
use std::str::FromStr;

pub use relay::{Relay, RelayConfig};

use crate::dynamodb::{CountedEvent, HistoryEntry, StatusCounterStore, StatusHistoryStore};
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
    /// One event; both writes are idempotent, so a retry after a partial failure is safe.
    pub async fn deliver(&self, event: &EventEnvelope) -> Result<(), DeliveryError> {
        self.history.put(&HistoryEntry::from_event(event)).await?;
        self.counters.record(&counted(event)).await?;
        Ok(())
    }

    /// A batch (of different orders): history items written concurrently, counters in as few
    /// transactions as the 100-item limit allows. One result per event, in order.
    pub async fn deliver_many(
        &self,
        events: &[&EventEnvelope],
        concurrency: usize,
    ) -> Vec<Result<(), DeliveryError>> {
        use futures::StreamExt;
        // Collected first: a lazy map closure over `&&EventEnvelope` would make the relay's
        // spawned future fail the compiler's higher-ranked Send check.
        let puts: Vec<_> = events
            .iter()
            .map(|event| self.history.put_event(event))
            .collect();
        let history: Vec<Result<(), DeliveryError>> = futures::stream::iter(puts)
            .buffered(concurrency.max(1))
            .collect()
            .await;
        // Only events whose history item is in place are counted now; the others are retried
        // whole, and the marker keeps their count single.
        let ready: Vec<usize> = (0..events.len()).filter(|i| history[*i].is_ok()).collect();
        let to_count: Vec<CountedEvent> = ready.iter().map(|i| counted(events[*i])).collect();
        let mut counts = self.counters.record_many(&to_count).await.into_iter();
        let mut results = history;
        for i in ready {
            if let Some(Err(error)) = counts.next() {
                results[i] = Err(error);
            }
        }
        results
    }
}

fn counted(event: &EventEnvelope) -> CountedEvent {
    CountedEvent {
        event_id: event.event_id,
        status: event.payload.status,
        hour: hour_bucket(event.occurred_at),
        currency: event.payload.currency.clone(),
        amount_minor: event.payload.total_minor,
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
