//! Two OrderPlatforms that name the same table or topic: the older one keeps it, the newer is
//! refused with `ResourceConflict` (Strimzi resolves two KafkaTopics for one topic the same
//! way). Tables also carry their owner as a tag; this check covers topics, which carry none,
//! and endpoints without tags. Pure: the platforms come from the controller's cache.

use std::cmp::Ordering;

use kube::ResourceExt;

use crate::crd::OrderPlatform;
use crate::provision::{desired::owner, Desired, Refusal};

/// The tables and topics of `platform` that an older platform also names, each with the
/// refusal to report. Platforms being deleted still hold what they name until they are gone.
pub fn conflicts<'a>(
    platform: &OrderPlatform,
    others: impl IntoIterator<Item = &'a OrderPlatform>,
) -> Vec<Refusal> {
    let mine = Named::of(platform);
    let mut refusals: Vec<Refusal> = Vec::new();
    let mut refuse = |resource: &str, message: String| {
        if !refusals.iter().any(|r| r.resource == resource) {
            refusals.push(Refusal::new(resource, "ResourceConflict", message));
        }
    };
    let mut older: Vec<&OrderPlatform> = others
        .into_iter()
        .filter(|other| !same_object(platform, other) && age(other, platform) == Ordering::Less)
        .collect();
    // The oldest holder is the one named.
    older.sort_by(|a, b| age(a, b));
    for other in older {
        let theirs = Named::of(other);
        let holder = owner(other);
        if mine.dynamodb == theirs.dynamodb {
            for table in mine.tables.iter().filter(|t| theirs.tables.contains(t)) {
                refuse(table, format!(
                    "table {table} is also named by OrderPlatform {holder}, which is older and keeps it; nothing was changed. Give this platform another dynamodb.tablePrefix"
                ));
            }
        }
        if mine.kafka == theirs.kafka {
            for topic in mine.topics.iter().filter(|t| theirs.topics.contains(t)) {
                refuse(topic, format!(
                    "topic {topic} is also named by OrderPlatform {holder}, which is older and keeps it; nothing was changed. Name another topic"
                ));
            }
        }
    }
    refusals
}

/// Where a platform's resources live and what they are called.
struct Named {
    /// Endpoint (or AWS) and region.
    dynamodb: (String, String),
    tables: Vec<String>,
    /// Bootstrap servers, sorted, so `a,b` and `b, a` are one cluster.
    kafka: Vec<String>,
    topics: Vec<String>,
}

impl Named {
    fn of(platform: &OrderPlatform) -> Self {
        let spec = &platform.spec;
        let desired = Desired::from_platform(platform);
        let mut kafka: Vec<String> = spec
            .kafka
            .bootstrap_servers
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        kafka.sort();
        Self {
            dynamodb: (
                spec.dynamodb.endpoint.clone().unwrap_or_default(),
                spec.dynamodb.region.clone(),
            ),
            tables: desired.tables.into_iter().map(|t| t.name).collect(),
            kafka,
            topics: desired.topics.into_iter().map(|t| t.name).collect(),
        }
    }
}

fn same_object(a: &OrderPlatform, b: &OrderPlatform) -> bool {
    match (&a.metadata.uid, &b.metadata.uid) {
        (Some(x), Some(y)) => x == y,
        _ => a.namespace() == b.namespace() && a.name_any() == b.name_any(),
    }
}

/// Older first: creation time, then `namespace/name` so that two created in the same second
/// still have one order both sides agree on.
fn age(a: &OrderPlatform, b: &OrderPlatform) -> Ordering {
    let created = |p: &OrderPlatform| p.metadata.creation_timestamp.clone().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| owner(a).cmp(&owner(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn platform(namespace: &str, name: &str, created_secs: i64) -> OrderPlatform {
        let mut p = OrderPlatform::test();
        p.metadata.namespace = Some(namespace.into());
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("{namespace}-{name}"));
        p.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + created_secs)
                .expect("timestamp"),
        ));
        p
    }

    fn reasons(refusals: &[Refusal]) -> Vec<(&str, &str)> {
        refusals
            .iter()
            .map(|r| (r.resource.as_str(), r.reason))
            .collect()
    }

    #[test]
    fn the_newer_of_two_platforms_naming_one_topic_and_tables_is_refused() {
        let older = platform("a", "shop", 0);
        let newer = platform("b", "shop", 10);
        let refused = conflicts(&newer, [&older, &newer]);
        assert_eq!(
            reasons(&refused),
            [
                ("shop-status-history", "ResourceConflict"),
                ("shop-status-counters", "ResourceConflict"),
                ("orders.events", "ResourceConflict"),
            ]
        );
        assert!(refused[2].message.contains("a/shop"), "{}", refused[2]);
        assert!(conflicts(&older, [&older, &newer]).is_empty());
    }

    #[test]
    fn only_what_is_shared_on_the_same_endpoint_or_cluster_conflicts() {
        let older = platform("a", "shop", 0);
        let mut other_prefix = platform("b", "shop", 10);
        other_prefix.spec.dynamodb.table_prefix = "other".into();
        assert_eq!(
            reasons(&conflicts(&other_prefix, [&older])),
            [("orders.events", "ResourceConflict")]
        );
        let mut other_cluster = platform("b", "shop", 10);
        other_cluster.spec.kafka.bootstrap_servers = "elsewhere:9092".into();
        other_cluster.spec.dynamodb.region = "eu-west-1".into();
        assert!(conflicts(&other_cluster, [&older]).is_empty());
        // One cluster however its bootstrap list is written.
        let mut reordered = platform("c", "shop", 10);
        reordered.spec.dynamodb.table_prefix = "third".into();
        reordered.spec.kafka.bootstrap_servers = " KAFKA:9092 ".into();
        assert_eq!(conflicts(&reordered, [&older]).len(), 1);
    }

    #[test]
    fn created_in_the_same_second_the_name_decides_the_same_way_on_both_sides() {
        let a = platform("a", "shop", 0);
        let b = platform("b", "shop", 0);
        assert!(conflicts(&a, [&b]).is_empty());
        assert!(!conflicts(&b, [&a]).is_empty());
    }
}
