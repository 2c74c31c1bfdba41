//! The clients the controller keeps for DynamoDB and Kafka, one per connection settings.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::provision::dynamodb::{DynamoDbTarget, TableProvisioner};
use crate::provision::kafka::{KafkaTarget, TopicProvisioner};
use crate::provision::CallMetrics;

/// Provisioners by connection settings: an SDK client resolves credentials once and an
/// AdminClient keeps its broker connections, so they are reused across reconciles. Keyed by a
/// hash of the settings (secrets included), so a rotated Secret gets a new client; the old one
/// is dropped once idle, and the number of clients is bounded however often credentials
/// rotate. A burst of first reconciles makes one client, not one each (single-flight).
pub struct Connections {
    tables: moka::future::Cache<String, Arc<TableProvisioner>>,
    topics: moka::future::Cache<String, Arc<TopicProvisioner>>,
}

/// Clients kept per kind: far more endpoints and credential sets than one operator serves.
const MAX_CLIENTS: u64 = 256;
/// A client unused this long (its platform deleted, its credentials rotated) is dropped.
const CLIENT_IDLE: Duration = Duration::from_secs(30 * 60);

impl Default for Connections {
    fn default() -> Self {
        Self {
            tables: bounded_cache(),
            topics: bounded_cache(),
        }
    }
}

fn bounded_cache<V: Clone + Send + Sync + 'static>() -> moka::future::Cache<String, V> {
    moka::future::Cache::builder()
        .max_capacity(MAX_CLIENTS)
        .time_to_idle(CLIENT_IDLE)
        .build()
}

impl Connections {
    pub(super) async fn tables(
        &self,
        target: &DynamoDbTarget,
        metrics: &CallMetrics,
    ) -> Arc<TableProvisioner> {
        let key = fingerprint(&[
            &target.region,
            target.endpoint.as_deref().unwrap_or(""),
            &format!("{:?}", target.timeout),
            &target
                .credentials
                .as_ref()
                .map(|c| {
                    format!(
                        "{}:{}:{:?}",
                        c.access_key_id, c.secret_access_key, c.session_token
                    )
                })
                .unwrap_or_default(),
        ]);
        self.tables
            .get_with(key, async {
                Arc::new(
                    TableProvisioner::connect(target)
                        .await
                        .with_metrics(metrics.clone()),
                )
            })
            .await
    }

    pub(super) async fn topics(
        &self,
        target: &KafkaTarget,
        metrics: &CallMetrics,
    ) -> Result<Arc<TopicProvisioner>, (&'static str, String)> {
        let properties: Vec<String> = target
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let key = fingerprint(&[
            &target.bootstrap_servers,
            &format!("{:?}", target.timeout),
            &properties.join(","),
        ]);
        self.topics
            .try_get_with(key, async {
                TopicProvisioner::connect(target).map(|p| Arc::new(p.with_metrics(metrics.clone())))
            })
            .await
            .map_err(|e| (e.reason(), e.to_string()))
    }
}

fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    format!("{:x}", hash.finalize())
}
