//! `EventPublisher`: order events to Kafka, keyed by order id, through an idempotent producer.

use std::time::Duration;

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use futures::future::BoxFuture;
use futures::StreamExt;

use crate::outbox::envelope::EventEnvelope;
use crate::outbox::sink::{DeliveryError, EventSink, Sink};

#[derive(Debug, Clone, Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_bootstrap_servers: String,
    /// Topic order events are published to (keyed by order id).
    #[arg(long, env = "ORDER_SERVICE_EVENTS_TOPIC", default_value = platform_resources::DEFAULT_EVENTS_TOPIC)]
    pub kafka_topic: String,
    /// How long the producer tries to deliver one message before reporting failure.
    #[arg(long, env = "ORDER_SERVICE_KAFKA_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub kafka_timeout: Duration,
    /// Extra librdkafka settings as KEY=VALUE (repeatable, or comma-separated in the env
    /// variable), e.g. `security.protocol=SASL_SSL`. Values are never logged.
    #[arg(long = "kafka-property", env = "ORDER_SERVICE_KAFKA_PROPERTIES", value_delimiter = ',', value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
}

fn parse_property(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| "expected KEY=VALUE".to_owned())
}

impl KafkaConfig {
    /// Client settings shared by the producer and the admin client.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka_bootstrap_servers);
        for (key, value) in &self.kafka_properties {
            config.set(key, value);
        }
        config
    }
}

/// Publishes event envelopes as JSON.
#[derive(Clone)]
pub struct EventPublisher {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl EventPublisher {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let timeout_ms = config.kafka_timeout.as_millis().to_string();
        let producer = config
            .client_config()
            // librdkafka leaves idempotence off by default; without it a retried send after a
            // lost ack can write a duplicate or reorder one order's events.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", &timeout_ms)
            .set("linger.ms", "5")
            .create()?;
        Ok(Self {
            producer,
            topic: config.kafka_topic.clone(),
            timeout: config.kafka_timeout,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one event and waits for the broker's acknowledgement.
    pub async fn publish(&self, event: &EventEnvelope) -> Result<(), DeliveryError> {
        let payload =
            serde_json::to_vec(event).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let key = event.order_id.to_string();
        let schema_version = event.schema_version.to_string();
        let event_id = event.event_id.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_type",
                value: Some(event.event_type.as_str()),
            })
            .insert(Header {
                key: "schema_version",
                value: Some(&schema_version),
            })
            .insert(Header {
                key: "event_id",
                value: Some(&event_id),
            });
        if let Some(request_id) = &event.request_id {
            headers = headers.insert(Header {
                key: "request_id",
                value: Some(request_id),
            });
        }
        if let Some(traceparent) = &event.traceparent {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(traceparent),
            });
        }
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        match self.producer.send(record, self.timeout).await {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(classify(error)),
        }
    }

    /// Readiness: the broker answers a metadata request for the topic.
    pub async fn check(&self) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let timeout = self.timeout.min(Duration::from_secs(2));
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| format!("Kafka metadata request failed: {e}"))?;
            match metadata.topics().first().and_then(|t| t.error()) {
                Some(error) => Err(format!(
                    "topic {topic}: {:?}",
                    RDKafkaErrorCode::from(error)
                )),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Only errors about this one message are permanent; everything else (brokers down, leader
/// elections, timeouts, authorization being fixed) is worth retrying.
fn classify(error: KafkaError) -> DeliveryError {
    use RDKafkaErrorCode as C;
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidRecord)
    );
    if permanent {
        DeliveryError::Permanent(error.to_string())
    } else {
        DeliveryError::Transient(error.to_string())
    }
}

/// Kafka takes one record at a time; the producer batches what is in flight, so throughput
/// grows with the concurrency.
impl EventSink for EventPublisher {
    fn sink(&self) -> Sink {
        Sink::Kafka
    }

    fn deliver_batch<'a>(
        &'a self,
        events: &'a [&'a EventEnvelope],
        concurrency: usize,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(
            futures::stream::iter(events.iter().map(|event| self.publish(event)))
                .buffered(concurrency.max(1))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_message_specific_errors_are_permanent() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(classify(too_large), DeliveryError::Permanent(_)));
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            assert!(
                matches!(
                    classify(KafkaError::MessageProduction(code)),
                    DeliveryError::Transient(_)
                ),
                "{code:?}"
            );
        }
    }

    #[test]
    fn properties_are_key_value_pairs() {
        assert_eq!(
            parse_property("security.protocol=SSL"),
            Ok(("security.protocol".into(), "SSL".into()))
        );
        assert_eq!(parse_property("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
    }
}
