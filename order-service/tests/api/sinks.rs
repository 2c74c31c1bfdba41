//! Reading what the sinks received: a real Kafka consumer, and DynamoDB through the service's
//! own stores.

use std::collections::HashMap;
use std::time::Duration;

use order_service::dynamodb::DynamoDbProjection;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Sinks, TestApp};

/// One record read from the events topic.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: String,
    pub headers: HashMap<String, String>,
    pub event: Value,
}

impl Consumed {
    pub fn event_id(&self) -> String {
        self.event["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn order_id(&self) -> String {
        self.event["order_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn version(&self) -> i64 {
        self.event["order_version"].as_i64().unwrap_or_default()
    }
}

/// Reads the topic from the beginning until `done` holds for what was read (records in the
/// order the broker returned them), or fails after `timeout`.
pub async fn consume_until(
    sinks: &Sinks,
    timeout: Duration,
    done: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &sinks.kafka_bootstrap)
        .set("group.id", format!("test-{}", Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&sinks.topic]).expect("subscribe");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&seen) {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !remaining.is_zero(),
            "timed out consuming {}: read {} records",
            sinks.topic,
            seen.len()
        );
        let Ok(message) =
            tokio::time::timeout(remaining.min(Duration::from_secs(1)), consumer.recv()).await
        else {
            continue;
        };
        let message = message.expect("kafka message");
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        seen.push(Consumed {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            headers,
            event: serde_json::from_slice(message.payload().unwrap_or_default())
                .expect("event json"),
        });
    }
    seen
}

/// Keeps the first record of every event id (consumers dedupe by event id).
pub fn dedupe(records: &[Consumed]) -> Vec<Consumed> {
    let mut ids = std::collections::HashSet::new();
    records
        .iter()
        .filter(|r| ids.insert(r.event_id()))
        .cloned()
        .collect()
}

/// The versions of each order's events, deduplicated, in the order they were read.
pub fn versions_per_order(records: &[Consumed]) -> HashMap<String, Vec<i64>> {
    let mut per_order: HashMap<String, Vec<i64>> = HashMap::new();
    for record in dedupe(records) {
        per_order
            .entry(record.order_id())
            .or_default()
            .push(record.version());
    }
    per_order
}

/// The DynamoDB side of an app, read through the service's stores.
pub async fn dynamodb(app: &TestApp) -> DynamoDbProjection {
    order_service::sinks::Projections::connect(&app.config.sinks)
        .await
        .expect("projections")
        .dynamodb
        .expect("dynamodb sink on")
}

pub async fn pending(app: &TestApp, sink: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox_deliveries WHERE sink = $1 AND state = 'pending'",
    )
    .bind(sink)
    .fetch_one(&app.pool)
    .await
    .expect("count pending")
}
