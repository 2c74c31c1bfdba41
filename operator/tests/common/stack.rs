//! The local stack from tests: endpoints from `scripts/stack.sh env`, and raw clients for
//! out-of-band changes (deliberately not the provisioners under test). Shared by the
//! `provision` and `e2e` test binaries through `#[path]`; each uses only some of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

pub const TIMEOUT: Duration = Duration::from_secs(20);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test` (or eval \"$(scripts/stack.sh env)\")")
    })
}

pub fn dynamodb_endpoint() -> String {
    env("DYNAMODB_ENDPOINT")
}

pub fn kafka_servers() -> String {
    env("KAFKA_BOOTSTRAP_SERVERS")
}

/// The stack broker's SASL_SSL listener: servers, and librdkafka settings with the local CA
/// and `password` for its SCRAM-SHA-512 user.
pub fn secure_kafka(password: Option<&str>) -> (String, Vec<(String, String)>) {
    let properties = [
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanisms", "SCRAM-SHA-512".to_owned()),
        ("sasl.username", env("KAFKA_SECURE_USER")),
        (
            "sasl.password",
            password.map_or_else(|| env("KAFKA_SECURE_PASSWORD"), str::to_owned),
        ),
        ("ssl.ca.location", env("KAFKA_SECURE_CA")),
    ];
    (
        env("KAFKA_SECURE_BOOTSTRAP_SERVERS"),
        properties
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// A short unique id for names.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(dynamodb_endpoint())
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// Creates a table by hand with a string partition key `key` and no sort key.
pub async fn create_foreign_table(client: &aws_sdk_dynamodb::Client, name: &str, key: &str) {
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("test fixture"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("test fixture"),
        )
        .send()
        .await
        .expect("create a table by hand");
}

/// `Some(key names)` of a table, `None` when it does not exist.
pub async fn table_keys(client: &aws_sdk_dynamodb::Client, name: &str) -> Option<Vec<String>> {
    let out = client.describe_table().table_name(name).send().await.ok()?;
    Some(
        out.table()?
            .key_schema()
            .iter()
            .map(|k| k.attribute_name().to_owned())
            .collect(),
    )
}

pub fn kafka_admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_servers())
        .create()
        .expect("admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(TIMEOUT))
}

pub async fn create_topic_by_hand(name: &str, partitions: i32) {
    let admin = kafka_admin();
    for result in admin
        .create_topics(
            [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &options(),
        )
        .await
        .expect("create topic")
    {
        result.expect("topic created");
    }
}

pub async fn delete_topic_by_hand(name: &str) {
    let admin = kafka_admin();
    for result in admin
        .delete_topics(&[name], &options())
        .await
        .expect("delete topic")
    {
        result.expect("topic deleted");
    }
}

/// Partition count of a topic (`None`: missing), once metadata agrees for a moment.
pub fn partitions(name: &str) -> Option<usize> {
    let admin = kafka_admin();
    // All topics, not just `name`: asking for one topic may create it on brokers that allow it.
    let metadata = admin
        .inner()
        .fetch_metadata(None, TIMEOUT)
        .expect("metadata");
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none())?;
    Some(topic.partitions().len())
}

/// The topic's own config overrides.
pub async fn topic_overrides(name: &str) -> BTreeMap<String, String> {
    let admin = kafka_admin();
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(name)], &options())
        .await
        .expect("describe configs");
    results
        .into_iter()
        .next()
        .expect("one result")
        .expect("topic configs")
        .entries
        .into_iter()
        .filter(|e| e.source == rdkafka::admin::ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

/// Waits until `check` holds, polling; panics with `what` after `TIMEOUT`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
