//! The DynamoDB sink: for every event, a status history item and an hourly counter.

use futures::future::BoxFuture;
use futures::StreamExt;

use super::{CountedEvent, HistoryEntry, StatusCounterStore, StatusHistoryStore};
use crate::outbox::envelope::{hour_bucket, EventEnvelope};
use crate::outbox::sink::{DeliveryError, EventSink, Sink};

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

impl EventSink for DynamoDbProjection {
    fn sink(&self) -> Sink {
        Sink::DynamoDb
    }

    fn deliver_batch<'a>(
        &'a self,
        events: &'a [&'a EventEnvelope],
        concurrency: usize,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(self.deliver_many(events, concurrency))
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
