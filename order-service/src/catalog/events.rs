//! `ProductEvents`: the catalog's `product.updated` / `product.deleted` events (docs/events.md),
//! each dropping its SKU from this replica's cache.
//!
//! Every replica must see every event, so there is no consumer group: the consumer assigns
//! itself every partition of the topic at its end (the high watermark when it starts) and
//! commits nothing. Events published while a replica was down are not replayed to it; a
//! fresh replica starts with an empty cache, and the TTL bounds what a missed event can cost.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::cache::Catalog;
use crate::kafka::KafkaConfig;
use crate::metrics::Metrics;

/// The events this service acts on; any other `event_type` on the topic is skipped.
pub const PRODUCT_UPDATED: &str = "product.updated";
pub const PRODUCT_DELETED: &str = "product.deleted";

/// How often the per-partition lag is refreshed while no event arrives.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// How long to wait before trying to assign again when the topic cannot be read.
const ASSIGN_RETRY: Duration = Duration::from_secs(2);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The envelope's fields this service reads (docs/events.md, "Product events").
#[derive(Debug, Deserialize)]
pub struct ProductEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub sku: String,
}

/// What one message means to the cache.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Drop this SKU's entry.
    Forget(String),
    /// Not a product change this service knows; nothing to do.
    Skip,
}

/// Reads a message: the SKU comes from the body, else from the key. A body that cannot be read
/// still drops the key's SKU: forgetting is always safe, keeping a changed price is not.
pub fn effect(key: Option<&[u8]>, payload: Option<&[u8]>) -> Effect {
    let key = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| !k.is_empty());
    match payload.map(serde_json::from_slice::<ProductEvent>) {
        Some(Ok(event)) if event.schema_version == 1 => match event.event_type.as_str() {
            PRODUCT_UPDATED | PRODUCT_DELETED if !event.sku.is_empty() => Effect::Forget(event.sku),
            PRODUCT_UPDATED | PRODUCT_DELETED => {
                key.map_or(Effect::Skip, |k| Effect::Forget(k.to_owned()))
            }
            _ => Effect::Skip,
        },
        _ => key.map_or(Effect::Skip, |k| Effect::Forget(k.to_owned())),
    }
}

pub struct ProductEvents {
    consumer: Arc<StreamConsumer>,
    topic: String,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
}

impl ProductEvents {
    pub fn new(
        kafka: &KafkaConfig,
        topic: &str,
        catalog: Arc<Catalog>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = kafka
            .client_config()
            // librdkafka wants a group id; with assign() it joins no group, and nothing is
            // committed under it.
            .set(
                "group.id",
                format!("order-service-catalog-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Invalidation should reach every replica within a second.
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(|e| anyhow::anyhow!("the product events consumer: {e}"))?;
        Ok(Self {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            catalog,
            metrics,
        })
    }

    /// Assigns every partition at its end, retrying until it can or `stopping`; then drops
    /// the SKU of each event until `stopping`.
    pub async fn run(self: Arc<Self>, stopping: CancellationToken) {
        let partitions = loop {
            match self.assign().await {
                Ok(partitions) => break partitions,
                Err(error) => {
                    tracing::warn!(topic = %self.topic, %error, "cannot read the product events topic yet; cached products expire by their TTL meanwhile");
                    tokio::select! {
                        () = stopping.cancelled() => return,
                        () = tokio::time::sleep(ASSIGN_RETRY) => {}
                    }
                }
            }
        };
        tracing::info!(topic = %self.topic, partitions = partitions.len(), "reading product events");
        self.metrics.catalog_partitions(partitions.len());
        // Apart, so a slow metadata request never delays an invalidation.
        tokio::join!(self.read(&stopping), self.watch_lag(&partitions, &stopping));
    }

    async fn read(&self, stopping: &CancellationToken) {
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        let effect = effect(message.key(), message.payload());
                        if let Effect::Forget(sku) = &effect {
                            self.catalog.forget(sku).await;
                            tracing::debug!(%sku, "product changed: cache entry dropped");
                        }
                        self.metrics.catalog_event(matches!(effect, Effect::Forget(_)));
                    }
                    Err(error) => tracing::warn!(topic = %self.topic, %error, "reading product events"),
                },
            }
        }
    }

    async fn watch_lag(&self, partitions: &[i32], stopping: &CancellationToken) {
        let mut tick = tokio::time::interval(LAG_INTERVAL);
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                _ = tick.tick() => self.observe_lag(partitions).await,
            }
        }
    }

    /// Every partition of the topic, each at its high watermark (resolved now, so an event
    /// published after this returns is seen).
    async fn assign(&self) -> anyhow::Result<Vec<i32>> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&topic), METADATA_TIMEOUT)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            anyhow::ensure!(
                !partitions.is_empty(),
                "topic {topic} has no partitions (does it exist?)"
            );
            let mut assignment = TopicPartitionList::new();
            for &partition in &partitions {
                let (_, high) = consumer.fetch_watermarks(&topic, partition, METADATA_TIMEOUT)?;
                assignment.add_partition_offset(&topic, partition, Offset::Offset(high))?;
            }
            consumer.assign(&assignment)?;
            Ok(partitions)
        })
        .await?
    }

    /// Lag per partition: the high watermark minus the next offset to read (a metadata
    /// request per partition, so it runs on the blocking pool, a few seconds apart).
    async fn observe_lag(&self, partitions: &[i32]) {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let partitions = partitions.to_vec();
        let lags = tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer.position() else {
                return Vec::new();
            };
            partitions
                .into_iter()
                .filter_map(|partition| {
                    let (_, high) = consumer
                        .fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
                        .ok()?;
                    let next = match positions.find_partition(&topic, partition)?.offset() {
                        Offset::Offset(offset) => offset,
                        _ => return None,
                    };
                    Some((partition, (high - next).max(0)))
                })
                .collect()
        })
        .await
        .unwrap_or_default();
        for (partition, lag) in lags {
            self.metrics.catalog_lag(partition, lag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_or_delete_drops_its_sku_and_other_events_nothing() {
        let body = |event_type: &str, sku: &str| {
            serde_json::json!({"event_id": "e", "event_type": event_type, "schema_version": 1,
                               "occurred_at": "2026-11-28T08:00:00Z", "sku": sku})
            .to_string()
        };
        let forget = |sku: &str| Effect::Forget(sku.into());
        let updated = body(PRODUCT_UPDATED, "SKU-1");
        assert_eq!(
            effect(Some(b"SKU-1"), Some(updated.as_bytes())),
            forget("SKU-1")
        );
        let deleted = body(PRODUCT_DELETED, "SKU-2");
        assert_eq!(effect(None, Some(deleted.as_bytes())), forget("SKU-2"));
        let created = body("product.created", "SKU-3");
        assert_eq!(
            effect(Some(b"SKU-3"), Some(created.as_bytes())),
            Effect::Skip
        );
        // Unreadable: the key's SKU is dropped, to be safe; without a key there is nothing to do.
        assert_eq!(effect(Some(b"SKU-4"), Some(b"not json")), forget("SKU-4"));
        assert_eq!(effect(None, Some(b"not json")), Effect::Skip);
        let future = updated.replace("\"schema_version\":1", "\"schema_version\":2");
        assert_eq!(
            effect(Some(b"SKU-5"), Some(future.as_bytes())),
            forget("SKU-5")
        );
    }
}
