//! Kafka topics: observe with metadata and DescribeConfigs, plan (`plan.rs`, pure), apply with
//! the rdkafka AdminClient.

mod broker_errors;
mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

pub use plan::{plan_topic, DesiredTopic, ObservedTopic, TopicAction, TopicPlan};

use self::broker_errors::BrokerErrors;
use super::error::bounded;
use super::{CallMetrics, Intent, Origin, ProvisionError};

/// The brokers and how to talk to them.
#[derive(Clone)]
pub struct KafkaTarget {
    pub bootstrap_servers: String,
    /// librdkafka settings (security); values are secrets and never printed.
    pub properties: Vec<(String, String)>,
    /// Bound on each call.
    pub timeout: Duration,
}

impl std::fmt::Display for KafkaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.bootstrap_servers)
    }
}

/// Parses `key=value,key=value` (the `ORDER_SERVICE_KAFKA_PROPERTIES` format).
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
        .map(|(i, p)| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                // The entry itself is not echoed: it may be a password.
                .ok_or_else(|| format!("entry {} is not KEY=VALUE", i + 1))
        })
        .collect()
}

/// The platform's topics on one cluster.
pub struct TopicProvisioner {
    admin: Arc<AdminClient<DefaultClientContext>>,
    /// Reads metadata. A producer (never sending) rather than the admin client because its
    /// event queue can be polled: that is where librdkafka reports why brokers failed.
    metadata: Arc<BaseProducer<BrokerErrors>>,
    servers: String,
    timeout: Duration,
    /// Metadata calls block a thread each: a burst of reconciles would otherwise start one
    /// blocking thread per platform.
    metadata_calls: Arc<tokio::sync::Semaphore>,
    metrics: CallMetrics,
}

/// Metadata requests in flight per cluster.
const METADATA_CONCURRENCY: usize = 4;

impl TopicProvisioner {
    pub fn connect(target: &KafkaTarget) -> Result<Self, ProvisionError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &target.bootstrap_servers);
        // Metadata is asked per topic (not for the whole cluster, which on a shared cluster is
        // large and read on every reconcile); asking must never create the topic.
        config.set("allow.auto.create.topics", "false");
        for (key, value) in &target.properties {
            config.set(key, value);
        }
        let connect = |e: rdkafka::error::KafkaError| ProvisionError::Kafka {
            operation: "connect",
            resource: target.bootstrap_servers.clone(),
            message: e.to_string(),
        };
        let admin: AdminClient<DefaultClientContext> = config.create().map_err(connect)?;
        // rdkafka takes the log level from the `log` crate, which the operator (on `tracing`)
        // leaves off; some FAIL lines that explain a broker failure are only informational.
        let metadata: BaseProducer<BrokerErrors> = config
            .clone()
            .set_log_level(RDKafkaLogLevel::Info)
            .create_with_context(BrokerErrors::default())
            .map_err(connect)?;
        Ok(Self {
            admin: Arc::new(admin),
            metadata: Arc::new(metadata),
            servers: target.bootstrap_servers.clone(),
            timeout: target.timeout,
            metadata_calls: Arc::new(tokio::sync::Semaphore::new(METADATA_CONCURRENCY)),
            metrics: CallMetrics::default(),
        })
    }

    /// Records every call in `metrics` (the operator's registry).
    pub fn with_metrics(mut self, metrics: CallMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Reads the topics and plans each; `recorded` gives the origin the platform's status
    /// holds for a topic name.
    pub async fn plan(
        &self,
        topics: &[DesiredTopic],
        recorded: impl Fn(&str) -> Option<Origin>,
        intent: Intent,
    ) -> Result<Vec<TopicPlan>, ProvisionError> {
        let observed = self.observe(topics.iter().map(|t| t.name.as_str())).await?;
        Ok(topics
            .iter()
            .map(|t| {
                let observed = observed.get(&t.name).and_then(Option::as_ref);
                plan_topic(t, observed, recorded(&t.name), intent)
            })
            .collect())
    }

    /// Plans and applies in one go, failing on the first refusal: for callers that only need
    /// the topics to exist (tests, tools). Existing topics are adopted.
    pub async fn converge(&self, topics: &[DesiredTopic]) -> Result<(), ProvisionError> {
        let topics: Vec<DesiredTopic> = topics
            .iter()
            .map(|t| DesiredTopic {
                adopt: true,
                ..t.clone()
            })
            .collect();
        for plan in self.plan(&topics, |_| None, Intent::Present).await? {
            if let Some(refusal) = plan.refusals.into_iter().next() {
                return Err(ProvisionError::Refused(refusal));
            }
            for action in &plan.actions {
                self.apply(&plan.name, action).await?;
            }
        }
        Ok(())
    }

    /// Partitions, replication factor and overrides of each named topic (`None`: missing).
    pub async fn observe<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, Option<ObservedTopic>>, ProvisionError> {
        self.read(names.into_iter().collect())
            .await
            .map_err(|e| self.explain(e))
    }

    async fn read(
        &self,
        names: Vec<&str>,
    ) -> Result<HashMap<String, Option<ObservedTopic>>, ProvisionError> {
        let mut shapes: HashMap<String, (i32, i32)> = HashMap::new();
        for name in &names {
            // Metadata is a blocking librdkafka call: off the async workers.
            let client = self.metadata.clone();
            let timeout = self.timeout;
            let servers = self.servers.clone();
            let topic = (*name).to_owned();
            let calls = self.metadata_calls.clone();
            // A little under the outer bound, so librdkafka's own error (naming the brokers and
            // the cause) wins over the bare timeout.
            let inner = timeout.mul_f64(0.9);
            let shape = bounded(&self.metrics, "Kafka", "Metadata", timeout, async move {
                let _slot = calls.acquire_owned().await;
                tokio::task::spawn_blocking(move || {
                    let fetched = client.client().fetch_metadata(Some(&topic), inner);
                    if fetched.is_err() {
                        // Serve the queued error events, so the context knows why.
                        client.poll(Duration::from_millis(100));
                    }
                    let metadata =
                        fetched.map_err(|e| kafka_error("Metadata", &servers, e.to_string()))?;
                    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                        return Ok(None);
                    };
                    match found.error().map(RDKafkaErrorCode::from) {
                        None => {
                            let partitions = found.partitions();
                            let replicas = partitions.first().map_or(0, |p| p.replicas().len());
                            Ok(Some((partitions.len() as i32, replicas as i32)))
                        }
                        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(None),
                        // Not authorized, leader not available, ...: the topic may well exist,
                        // so it must not be planned as missing (and created or reported so).
                        Some(code) => Err(kafka_error("Metadata", &topic, code.to_string())),
                    }
                })
                .await
                .map_err(|e| kafka_error("Metadata", "cluster", e.to_string()))?
            })
            .await?;
            if let Some(shape) = shape {
                shapes.insert((*name).to_owned(), shape);
            }
        }

        let existing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| shapes.contains_key(*n))
            .collect();
        let mut overrides: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        if !existing.is_empty() {
            let specifiers: Vec<ResourceSpecifier> = existing
                .iter()
                .map(|n| ResourceSpecifier::Topic(n))
                .collect();
            let results = bounded(
                &self.metrics,
                "Kafka",
                "DescribeConfigs",
                self.timeout,
                async {
                    self.admin
                        .describe_configs(&specifiers, &self.options())
                        .await
                        .map_err(|e| kafka_error("DescribeConfigs", "topics", e.to_string()))
                },
            )
            .await?;
            for (name, result) in existing.iter().zip(results) {
                let resource = result
                    .map_err(|code| kafka_error("DescribeConfigs", name, code.to_string()))?;
                overrides.insert(
                    (*name).to_owned(),
                    resource
                        .entries
                        .into_iter()
                        .filter(|e| e.source == ConfigSource::DynamicTopic)
                        .filter_map(|e| Some((e.name, e.value?)))
                        .collect(),
                );
            }
        }
        Ok(names
            .into_iter()
            .map(|name| {
                let observed =
                    shapes
                        .get(name)
                        .map(|(partitions, replication_factor)| ObservedTopic {
                            partitions: *partitions,
                            replication_factor: *replication_factor,
                            config: overrides.remove(name).unwrap_or_default(),
                        });
                (name.to_owned(), observed)
            })
            .collect())
    }

    /// Runs one action on one topic.
    pub async fn apply(&self, name: &str, action: &TopicAction) -> Result<(), ProvisionError> {
        self.run(name, action).await.map_err(|e| self.explain(e))
    }

    /// A failed call, with the brokers' own reason when librdkafka reported one meanwhile
    /// (authentication, TLS, unreachable): that is what a person needs to act.
    fn explain(&self, error: ProvisionError) -> ProvisionError {
        let about_brokers = match &error {
            ProvisionError::Kafka { .. } => true,
            ProvisionError::Timeout { system, .. } => *system == "Kafka",
            _ => false,
        };
        let recent = self.metadata.context().recent(self.timeout * 2);
        match recent {
            Some(failure) if about_brokers => ProvisionError::KafkaBrokers {
                reason: failure.reason,
                servers: self.servers.clone(),
                message: failure.message,
            },
            _ => error,
        }
    }

    async fn run(&self, name: &str, action: &TopicAction) -> Result<(), ProvisionError> {
        let options = self.options();
        match action {
            TopicAction::Create {
                partitions,
                replication_factor,
                config,
            } => {
                let mut topic = NewTopic::new(
                    name,
                    *partitions,
                    TopicReplication::Fixed(*replication_factor),
                );
                for (k, v) in config {
                    topic = topic.set(k, v);
                }
                // TopicAlreadyExists is an error: someone created it since it was observed, so it
                // is not this platform's to record as created. The retry's plan decides.
                self.admin_call(
                    "CreateTopics",
                    name,
                    &[],
                    self.admin.create_topics([&topic], &options),
                )
                .await
            }
            TopicAction::AddPartitions { to, .. } => {
                let partitions = NewPartitions::new(name, *to as usize);
                let call = self.admin.create_partitions([&partitions], &options);
                self.admin_call("CreatePartitions", name, &[], call).await
            }
            TopicAction::SetConfig { config, .. } => {
                // AlterConfigs (not the incremental kind, which rdkafka does not wrap) replaces
                // the topic's whole override set: keys dropped from the spec go back to the
                // broker default in the same call.
                let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
                for (k, v) in config {
                    alter = alter.set(k, v);
                }
                let call = self.admin.alter_configs([&alter], &options);
                self.admin_call("AlterConfigs", name, &[], call).await
            }
            TopicAction::Delete => {
                let fine = [RDKafkaErrorCode::UnknownTopicOrPartition];
                let call = self.admin.delete_topics(&[name], &options);
                self.admin_call("DeleteTopics", name, &fine, call).await
            }
        }
    }

    /// One admin call within the call bound; a per-topic error fails it unless it is in `fine`.
    async fn admin_call<T, R>(
        &self,
        operation: &'static str,
        name: &str,
        fine: &[RDKafkaErrorCode],
        call: impl std::future::Future<
            Output = rdkafka::error::KafkaResult<Vec<Result<T, (R, RDKafkaErrorCode)>>>,
        >,
    ) -> Result<(), ProvisionError> {
        let results = bounded(&self.metrics, "Kafka", operation, self.timeout, async {
            call.await
                .map_err(|e| kafka_error(operation, name, e.to_string()))
        })
        .await?;
        for result in results {
            if let Err((_, code)) = result {
                if !fine.contains(&code) {
                    return Err(kafka_error(operation, name, code.to_string()));
                }
            }
        }
        Ok(())
    }
}

fn kafka_error(operation: &'static str, resource: &str, message: String) -> ProvisionError {
    ProvisionError::Kafka {
        operation,
        resource: resource.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_properties;

    #[test]
    fn properties_parse_like_the_services_variable() {
        assert_eq!(
            parse_properties("security.protocol=SASL_SSL, sasl.mechanism=PLAIN,").unwrap(),
            vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.mechanism".into(), "PLAIN".into())
            ]
        );
        let error = parse_properties("sasl.password").unwrap_err();
        assert!(error.contains("KEY=VALUE"), "{error}");
    }
}
