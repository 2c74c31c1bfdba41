//! The service configuration, as environment in a ConfigMap (no secrets here).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{child_meta, CONTAINER_PORT};
use crate::crd::OrderPlatform;

pub fn config_map_name(platform: &OrderPlatform) -> String {
    format!("{}-config", kube::ResourceExt::name_any(platform))
}

/// Table names, topic and endpoints as the service's environment variables.
pub fn build_config_map(platform: &OrderPlatform) -> ConfigMap {
    let spec = &platform.spec;
    let mut data = BTreeMap::from([
        (
            "ORDER_SERVICE_ADDR".to_owned(),
            format!("0.0.0.0:{CONTAINER_PORT}"),
        ),
        ("ORDER_SERVICE_LOG_FORMAT".to_owned(), "json".to_owned()),
        (
            "ORDER_SERVICE_SINKS".to_owned(),
            "dynamodb,kafka".to_owned(),
        ),
        (
            "ORDER_SERVICE_TABLE_PREFIX".to_owned(),
            spec.dynamodb.table_prefix.clone(),
        ),
        (
            "ORDER_SERVICE_HISTORY_RETENTION_DAYS".to_owned(),
            spec.dynamodb.history_retention_days.to_string(),
        ),
        ("AWS_REGION".to_owned(), spec.dynamodb.region.clone()),
        (
            "KAFKA_BOOTSTRAP_SERVERS".to_owned(),
            spec.kafka.bootstrap_servers.clone(),
        ),
        (
            "ORDER_SERVICE_EVENTS_TOPIC".to_owned(),
            spec.kafka.events_topic.clone(),
        ),
    ]);
    if let Some(endpoint) = &spec.dynamodb.endpoint {
        data.insert("DYNAMODB_ENDPOINT".to_owned(), endpoint.clone());
    }
    ConfigMap {
        metadata: child_meta(platform, config_map_name(platform), "api"),
        data: Some(data),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_tables_topic_and_endpoint() {
        let mut platform = OrderPlatform::test();
        platform.spec.dynamodb.endpoint = Some("http://moto:5000".into());
        let data = build_config_map(&platform).data.unwrap();
        assert_eq!(data["ORDER_SERVICE_TABLE_PREFIX"], "shop");
        assert_eq!(data["ORDER_SERVICE_EVENTS_TOPIC"], "orders.events");
        assert_eq!(data["KAFKA_BOOTSTRAP_SERVERS"], "kafka:9092");
        assert_eq!(data["DYNAMODB_ENDPOINT"], "http://moto:5000");
        assert_eq!(data["ORDER_SERVICE_ADDR"], "0.0.0.0:8080");
        assert!(
            !data
                .keys()
                .any(|k| k.contains("SECRET") || k == "DATABASE_URL"),
            "no secrets"
        );
    }

    #[test]
    fn the_config_map_is_owned_by_the_platform() {
        let config = build_config_map(&OrderPlatform::test());
        let owner = &config.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "OrderPlatform");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(config.metadata.name.as_deref(), Some("shop-config"));
    }
}
