//! What an OrderPlatform asks for outside Kubernetes, derived from its spec. Pure.

use std::collections::HashMap;

use kube::ResourceExt;

use super::dynamodb::{Billing, DesiredTable};
use super::kafka::DesiredTopic;
use super::Origin;
use crate::crd::{BillingMode, OrderPlatform, OrderPlatformSpec, OrderPlatformStatus};

/// The tables and topics of one platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub tables: Vec<DesiredTable>,
    pub topics: Vec<DesiredTopic>,
}

/// The platform's identity as owner of tables: `namespace/name`.
pub fn owner(platform: &OrderPlatform) -> String {
    format!(
        "{}/{}",
        platform.namespace().unwrap_or_else(|| "default".into()),
        platform.name_any()
    )
}

/// The origins a platform's status records, by table and topic name: the proof that a topic
/// (which carries no tags) is the platform's.
pub fn recorded_origins(status: Option<&OrderPlatformStatus>) -> HashMap<String, Origin> {
    status
        .into_iter()
        .flat_map(|s| s.tables.iter().chain(&s.topics))
        .filter_map(|r| Some((r.name.clone(), Origin::parse(r.origin.as_deref()?)?)))
        .collect()
}

impl Desired {
    pub fn from_platform(platform: &OrderPlatform) -> Self {
        let spec = &platform.spec;
        let billing = match spec.dynamodb.billing_mode {
            BillingMode::PAY_PER_REQUEST => Billing::PayPerRequest,
            BillingMode::PROVISIONED => {
                let throughput = spec
                    .dynamodb
                    .provisioned_throughput
                    .clone()
                    .unwrap_or_default();
                Billing::Provisioned {
                    read: throughput.read_capacity_units,
                    write: throughput.write_capacity_units,
                }
            }
        };
        Self {
            tables: DesiredTable::all(
                &spec.dynamodb.table_prefix,
                billing,
                &owner(platform),
                spec.dynamodb.adopt_existing,
            ),
            topics: spec
                .kafka
                .topics
                .iter()
                .map(|t| DesiredTopic {
                    name: t.name.clone(),
                    partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    config: t.config.clone(),
                    allow_partition_increase: t.allow_partition_increase,
                    adopt: spec.kafka.adopt_existing,
                })
                .collect(),
        }
    }
}

/// The checks the CRD's schema makes on the external part of a spec, for callers without an
/// apiserver (`plan`/`apply` on a file).
pub fn validate(spec: &OrderPlatformSpec) -> Result<(), String> {
    platform_resources::validate_table_prefix(&spec.dynamodb.table_prefix)?;
    let kafka = &spec.kafka;
    if kafka.topics.is_empty() {
        return Err("kafka.topics must list at least one topic".into());
    }
    for (i, topic) in kafka.topics.iter().enumerate() {
        platform_resources::validate_topic_name(&topic.name)?;
        if kafka.topics[..i].iter().any(|t| t.name == topic.name) {
            return Err(format!("topic {} is listed twice", topic.name));
        }
        if topic.partitions < 1 || topic.replication_factor < 1 {
            return Err(format!(
                "topic {}: partitions and replicationFactor must be at least 1",
                topic.name
            ));
        }
    }
    if !kafka.topics.iter().any(|t| t.name == kafka.events_topic) {
        return Err(format!(
            "kafka.eventsTopic `{}` must name one of kafka.topics",
            kafka.events_topic
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::OrderPlatform;

    #[test]
    fn a_platform_wants_both_tables_owned_by_it_and_its_topics() {
        let platform = OrderPlatform::test();
        let desired = Desired::from_platform(&platform);
        let names: Vec<_> = desired.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["shop-status-history", "shop-status-counters"]);
        assert_eq!(desired.tables[0].owner, "orders/shop");
        assert!(!desired.tables[0].adopt && !desired.topics[0].adopt);
        assert_eq!(desired.tables[0].billing, Billing::PayPerRequest);
        assert_eq!(desired.topics.len(), platform.spec.kafka.topics.len());
        assert_eq!(desired.topics[0].name, platform.spec.kafka.events_topic);
    }
}
