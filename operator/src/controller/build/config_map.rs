//! The service configuration, as environment in a ConfigMap (no secrets here).
//!
//! Each configuration is its own immutable ConfigMap, named after its content
//! (`<name>-config-<hash>`): the Deployment names the one its revision was validated with, so
//! a new configuration waiting for a new image's migrations never reaches the old pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{child_meta, short_hash, CONTAINER_PORT};
use crate::crd::{AuthSpec, OrderPlatform};

/// The `app.kubernetes.io/component` of configuration ConfigMaps.
pub const CONFIG_COMPONENT: &str = "config";

fn config_map_name(platform: &OrderPlatform, data: &BTreeMap<String, String>) -> String {
    // A BTreeMap serializes in key order: the same data always gives the same name.
    let canonical = serde_json::to_string(data).unwrap_or_default();
    format!(
        "{}-config-{}",
        kube::ResourceExt::name_any(platform),
        short_hash(canonical.as_bytes(), 10)
    )
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
        // The drain bound the pod's termination grace period is sized to (build::shutdown).
        (
            "ORDER_SERVICE_SHUTDOWN_TIMEOUT".to_owned(),
            format!("{}s", super::shutdown::DRAIN_SECONDS),
        ),
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
    if let Some(p) = &spec.participants {
        let mut set = |key: &str, value: String| data.insert(key.to_owned(), value);
        set("ORDER_SERVICE_CUSTOMER_URL", p.customer_url.clone());
        set("ORDER_SERVICE_INVENTORY_URL", p.inventory_url.clone());
        set("ORDER_SERVICE_PAYMENT_URL", p.payment_url.clone());
        if let Some(timeout) = &p.timeout {
            set("ORDER_SERVICE_PARTICIPANT_TIMEOUT", timeout.clone());
        }
        if let Some(retries) = p.retries {
            set("ORDER_SERVICE_PARTICIPANT_RETRIES", retries.to_string());
        }
        if let Some(failures) = p.breaker_failures {
            set("ORDER_SERVICE_BREAKER_FAILURES", failures.to_string());
        }
        if let Some(calls) = p.max_concurrent_calls {
            set("ORDER_SERVICE_PARTICIPANT_CONCURRENCY", calls.to_string());
        }
    }
    if let Some(catalog) = &spec.catalog {
        let mut set = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                data.insert(key.to_owned(), value);
            }
        };
        set("ORDER_SERVICE_CATALOG_URL", Some(catalog.url.clone()));
        set("ORDER_SERVICE_CATALOG_CACHE_TTL", catalog.cache_ttl.clone());
        set(
            "ORDER_SERVICE_CATALOG_MAX_STALENESS",
            catalog.max_staleness.clone(),
        );
        set(
            "ORDER_SERVICE_CATALOG_CACHE_CAPACITY",
            catalog.cache_capacity.map(|c| c.to_string()),
        );
        set(
            "ORDER_SERVICE_PRODUCT_EVENTS_TOPIC",
            catalog.product_events_topic.clone(),
        );
    }
    auth_env(&spec.auth, &mut data);
    if let Some(limit) = &spec.rate_limit {
        data.insert(
            "ORDER_SERVICE_RATE_LIMIT_PER_SECOND".to_owned(),
            limit.per_second.to_string(),
        );
        if let Some(burst) = limit.burst {
            data.insert(
                "ORDER_SERVICE_RATE_LIMIT_BURST".to_owned(),
                burst.to_string(),
            );
        }
    }
    ConfigMap {
        metadata: child_meta(platform, config_map_name(platform, &data), CONFIG_COMPONENT),
        data: Some(data),
        immutable: Some(true),
        ..ConfigMap::default()
    }
}

/// `spec.auth` as the service's variables: the issuer and its claims, or the explicit opt-out.
fn auth_env(auth: &AuthSpec, data: &mut BTreeMap<String, String>) {
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            data.insert(key.to_owned(), value);
        }
    };
    if auth.disabled {
        set("ORDER_SERVICE_AUTH_DISABLED", Some("true".into()));
        return;
    }
    set("ORDER_SERVICE_AUTH_ISSUER", auth.issuer.clone());
    set("ORDER_SERVICE_AUTH_AUDIENCE", auth.audience.clone());
    set(
        "ORDER_SERVICE_AUTH_ALGORITHMS",
        (!auth.algorithms.is_empty()).then(|| auth.algorithms.join(",")),
    );
    set("ORDER_SERVICE_AUTH_ROLES_CLAIM", auth.roles_claim.clone());
    set("ORDER_SERVICE_AUTH_STAFF_ROLE", auth.staff_role.clone());
    set(
        "ORDER_SERVICE_AUTH_CUSTOMER_CLAIM",
        auth.customer_claim.clone(),
    );
    set("ORDER_SERVICE_AUTH_SCOPES_CLAIM", auth.scopes_claim.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_is_the_issuer_and_its_claims_or_the_explicit_opt_out() {
        let platform = OrderPlatform::test();
        let data = build_config_map(&platform).data.unwrap();
        assert_eq!(data["ORDER_SERVICE_AUTH_ISSUER"], "https://id.example/");
        assert_eq!(data["ORDER_SERVICE_AUTH_AUDIENCE"], "orders-api");
        assert!(!data.contains_key("ORDER_SERVICE_AUTH_DISABLED"));
        assert!(!data.contains_key("ORDER_SERVICE_RATE_LIMIT_PER_SECOND"));

        let mut platform = OrderPlatform::test();
        platform.spec.auth = serde_json::from_value(serde_json::json!({
            "issuer": "https://dex.example/", "audience": "orders", "algorithms": ["RS256", "ES256"],
            "rolesClaim": "roles", "staffRole": "ops", "customerClaim": "email"
        }))
        .unwrap();
        platform.spec.rate_limit = Some(crate::crd::RateLimitSpec {
            per_second: 20,
            burst: Some(40),
        });
        let data = build_config_map(&platform).data.unwrap();
        assert_eq!(data["ORDER_SERVICE_AUTH_ALGORITHMS"], "RS256,ES256");
        assert_eq!(data["ORDER_SERVICE_AUTH_ROLES_CLAIM"], "roles");
        assert_eq!(data["ORDER_SERVICE_AUTH_STAFF_ROLE"], "ops");
        assert_eq!(data["ORDER_SERVICE_AUTH_CUSTOMER_CLAIM"], "email");
        assert!(!data.contains_key("ORDER_SERVICE_AUTH_SCOPES_CLAIM"));
        assert_eq!(data["ORDER_SERVICE_RATE_LIMIT_PER_SECOND"], "20");
        assert_eq!(data["ORDER_SERVICE_RATE_LIMIT_BURST"], "40");

        platform.spec.auth = serde_json::from_value(serde_json::json!({"disabled": true})).unwrap();
        let data = build_config_map(&platform).data.unwrap();
        assert_eq!(data["ORDER_SERVICE_AUTH_DISABLED"], "true");
        assert!(!data.keys().any(|k| k.starts_with("ORDER_SERVICE_AUTH_I")));
    }

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
        assert_eq!(data["ORDER_SERVICE_SHUTDOWN_TIMEOUT"], "20s");
        assert!(
            !data
                .keys()
                .any(|k| k.contains("SECRET") || k == "DATABASE_URL"),
            "no secrets"
        );
    }

    #[test]
    fn participants_turn_the_saga_on_and_are_absent_otherwise() {
        let without = build_config_map(&OrderPlatform::test()).data.unwrap();
        assert!(!without.keys().any(|k| k.contains("_URL")));
        let mut platform = OrderPlatform::test();
        platform.spec.participants = Some(
            serde_json::from_value(serde_json::json!({
                "customerUrl": "http://customers:8080/", "inventoryUrl": "http://inventory:8080/",
                "paymentUrl": "http://payment:8080/", "timeout": "1500ms", "retries": 3
            }))
            .unwrap(),
        );
        let data = build_config_map(&platform).data.unwrap();
        assert_eq!(data["ORDER_SERVICE_PAYMENT_URL"], "http://payment:8080/");
        assert_eq!(data["ORDER_SERVICE_PARTICIPANT_TIMEOUT"], "1500ms");
        assert_eq!(data["ORDER_SERVICE_PARTICIPANT_RETRIES"], "3");
        assert!(
            !data.contains_key("ORDER_SERVICE_BREAKER_FAILURES"),
            "defaults stay the service's"
        );
    }

    #[test]
    fn the_catalog_prices_creates_and_its_absence_is_development_mode() {
        let without = build_config_map(&OrderPlatform::test()).data.unwrap();
        assert!(!without
            .keys()
            .any(|k| k.contains("CATALOG") || k.contains("PRODUCT")));
        let mut platform = OrderPlatform::test();
        platform.spec.catalog = Some(
            serde_json::from_value(serde_json::json!({
                "url": "http://catalog:8080/", "maxStaleness": "30m",
                "productEventsTopic": "catalog.products"
            }))
            .unwrap(),
        );
        let data = build_config_map(&platform).data.unwrap();
        assert_eq!(data["ORDER_SERVICE_CATALOG_URL"], "http://catalog:8080/");
        assert_eq!(data["ORDER_SERVICE_CATALOG_MAX_STALENESS"], "30m");
        assert_eq!(
            data["ORDER_SERVICE_PRODUCT_EVENTS_TOPIC"],
            "catalog.products"
        );
        assert!(
            !data.contains_key("ORDER_SERVICE_CATALOG_CACHE_TTL"),
            "defaults stay the service's"
        );
        assert_ne!(
            build_config_map(&platform).metadata.name,
            build_config_map(&OrderPlatform::test()).metadata.name,
            "a new configuration, rolled out like any other"
        );
    }

    #[test]
    fn the_config_map_is_owned_by_the_platform_immutable_and_named_by_content() {
        let config = build_config_map(&OrderPlatform::test());
        let owner = &config.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "OrderPlatform");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(config.immutable, Some(true));
        let name = config.metadata.name.clone().unwrap();
        assert!(
            name.starts_with("shop-config-") && name.len() == 22,
            "{name}"
        );
        assert_eq!(
            build_config_map(&OrderPlatform::test()).metadata.name,
            Some(name.clone()),
            "stable for the same data"
        );
        let mut changed = OrderPlatform::test();
        changed.spec.kafka.bootstrap_servers = "other:9092".into();
        assert_ne!(build_config_map(&changed).metadata.name, Some(name));
    }

    #[test]
    fn every_name_the_operator_sets_is_reserved_in_the_crd() {
        let mut platform = OrderPlatform::test();
        platform.spec.dynamodb.endpoint = Some("http://moto:5000".into());
        platform.spec.participants = Some(
            serde_json::from_value(serde_json::json!({
                "customerUrl": "http://c/", "inventoryUrl": "http://i/", "paymentUrl": "http://p/",
                "timeout": "1s", "retries": 1, "breakerFailures": 2, "maxConcurrentCalls": 3
            }))
            .unwrap(),
        );
        platform.spec.catalog = Some(
            serde_json::from_value(serde_json::json!({
                "url": "https://catalog/", "cacheTtl": "1m", "maxStaleness": "5m",
                "cacheCapacity": 10, "productEventsTopic": "products",
                "caConfigMapRef": {"name": "ca"}
            }))
            .unwrap(),
        );
        let data = build_config_map(&platform).data.unwrap();
        let (env, _) =
            crate::controller::build::secret_env(&platform, &platform.spec.database.secret_ref);
        for name in data.keys().chain(env.iter().map(|e| &e.name)) {
            assert!(
                crate::crd::RESERVED_ENV.contains(&name.as_str()),
                "{name} is set by the operator but not refused in spec.env"
            );
        }
    }
}
