//! Kafka topics: desired vs observed → actions and refusals. Pure: no client.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::provision::{Intent, Refusal};

/// A topic the platform needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level config overrides; any other override on the topic is removed.
    pub config: BTreeMap<String, String>,
    /// The topic is keyed by order id: more partitions move keys to other partitions, so
    /// per-order ordering breaks for orders in flight. Growing needs this opt-in.
    pub allow_partition_increase: bool,
}

impl DesiredTopic {
    /// A topic with the platform's defaults (3 partitions, replication factor 1, no overrides).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            partitions: platform_resources::DEFAULT_TOPIC_PARTITIONS,
            replication_factor: 1,
            config: BTreeMap::new(),
            allow_partition_increase: false,
        }
    }
}

/// A topic as it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTopic {
    pub partitions: i32,
    pub replication_factor: i32,
    /// Only topic-level overrides (`DYNAMIC_TOPIC_CONFIG`), not broker defaults.
    pub config: BTreeMap<String, String>,
}

/// One step on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum TopicAction {
    Create {
        partitions: i32,
        replication_factor: i32,
        config: BTreeMap<String, String>,
    },
    AddPartitions {
        from: i32,
        to: i32,
    },
    /// Makes the topic's overrides exactly `config`: `set` lists what changes, `reset` the
    /// overrides that go back to the broker default.
    SetConfig {
        config: BTreeMap<String, String>,
        set: BTreeMap<String, String>,
        reset: Vec<String>,
    },
    Delete,
}

impl TopicAction {
    /// `+` creates, `~` changes, `-` deletes: the CLI's plan output.
    pub fn symbol(&self) -> char {
        match self {
            Self::Create { .. } => '+',
            Self::Delete => '-',
            _ => '~',
        }
    }
}

impl fmt::Display for TopicAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create {
                partitions,
                replication_factor,
                config,
            } => {
                write!(
                    f,
                    "create ({partitions} partitions, replication factor {replication_factor}"
                )?;
                for (k, v) in config {
                    write!(f, ", {k}={v}")?;
                }
                f.write_str(")")
            }
            Self::AddPartitions { from, to } => write!(f, "partitions {from} → {to}"),
            Self::SetConfig { set, reset, .. } => {
                let mut parts: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                parts.extend(
                    reset
                        .iter()
                        .map(|k| format!("{k} reset to the broker default")),
                );
                write!(f, "config {}", parts.join(", "))
            }
            Self::Delete => f.write_str("delete (deletionPolicy: Delete)"),
        }
    }
}

/// What to do to one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicPlan {
    pub name: String,
    pub actions: Vec<TopicAction>,
    /// Every change refused on this topic; when any is, the topic gets no actions at all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
}

/// Plans one topic.
pub fn plan_topic(
    desired: &DesiredTopic,
    observed: Option<&ObservedTopic>,
    intent: Intent,
) -> TopicPlan {
    let mut plan = TopicPlan {
        name: desired.name.clone(),
        actions: Vec::new(),
        refusals: Vec::new(),
    };
    let name = desired.name.as_str();
    let Some(observed) = observed else {
        if intent == Intent::Present {
            plan.actions.push(TopicAction::Create {
                partitions: desired.partitions,
                replication_factor: desired.replication_factor,
                config: desired.config.clone(),
            });
        }
        return plan;
    };
    if intent == Intent::Absent {
        plan.actions.push(TopicAction::Delete);
        return plan;
    }

    if observed.replication_factor != desired.replication_factor {
        plan.refusals.push(Refusal::new(
            name,
            "ReplicationFactorChangeRejected",
            format!(
                "topic {name} has replication factor {}, the spec asks for {}; changing it needs a partition reassignment, which the operator does not do",
                observed.replication_factor, desired.replication_factor
            ),
        ));
    }
    if desired.partitions < observed.partitions {
        plan.refusals.push(Refusal::new(
            name,
            "PartitionDecreaseRejected",
            format!(
                "topic {name} has {} partitions, the spec asks for {}; Kafka cannot remove partitions",
                observed.partitions, desired.partitions
            ),
        ));
    } else if desired.partitions > observed.partitions && !desired.allow_partition_increase {
        plan.refusals.push(Refusal::new(
            name,
            "PartitionIncreaseNotAllowed",
            format!(
                "topic {name} has {} partitions, the spec asks for {}; it is keyed by order id, so more partitions break per-order ordering for orders in flight. Set allowPartitionIncrease: true on the topic to grow it anyway",
                observed.partitions, desired.partitions
            ),
        ));
    }
    if !plan.refusals.is_empty() {
        return plan;
    }

    if desired.partitions > observed.partitions {
        plan.actions.push(TopicAction::AddPartitions {
            from: observed.partitions,
            to: desired.partitions,
        });
    }
    let set: BTreeMap<String, String> = desired
        .config
        .iter()
        .filter(|(k, v)| observed.config.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reset: Vec<String> = observed
        .config
        .keys()
        .filter(|k| !desired.config.contains_key(*k))
        .cloned()
        .collect();
    if !set.is_empty() || !reset.is_empty() {
        plan.actions.push(TopicAction::SetConfig {
            config: desired.config.clone(),
            set,
            reset,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredTopic {
        DesiredTopic {
            config: BTreeMap::from([("retention.ms".into(), "86400000".into())]),
            ..DesiredTopic::new("orders.events")
        }
    }

    fn in_shape() -> ObservedTopic {
        ObservedTopic {
            partitions: 3,
            replication_factor: 1,
            config: desired().config,
        }
    }

    fn plan(desired: &DesiredTopic, observed: ObservedTopic) -> TopicPlan {
        plan_topic(desired, Some(&observed), Intent::Present)
    }

    #[test]
    fn topic_plans() {
        let grow = DesiredTopic {
            partitions: 6,
            allow_partition_increase: true,
            ..desired()
        };
        let cases: Vec<(&str, DesiredTopic, Option<ObservedTopic>, Vec<TopicAction>)> = vec![
            (
                "missing: create with its config",
                desired(),
                None,
                vec![TopicAction::Create {
                    partitions: 3,
                    replication_factor: 1,
                    config: desired().config,
                }],
            ),
            ("in shape: nothing", desired(), Some(in_shape()), vec![]),
            (
                "opted-in increase",
                grow,
                Some(in_shape()),
                vec![TopicAction::AddPartitions { from: 3, to: 6 }],
            ),
            (
                "config changed by hand, and a key added by hand",
                desired(),
                Some(ObservedTopic {
                    config: BTreeMap::from([
                        ("retention.ms".into(), "1000".into()),
                        ("cleanup.policy".into(), "compact".into()),
                    ]),
                    ..in_shape()
                }),
                vec![TopicAction::SetConfig {
                    config: desired().config,
                    set: desired().config,
                    reset: vec!["cleanup.policy".into()],
                }],
            ),
            (
                "a key dropped from the spec",
                DesiredTopic::new("orders.events"),
                Some(in_shape()),
                vec![TopicAction::SetConfig {
                    config: BTreeMap::new(),
                    set: BTreeMap::new(),
                    reset: vec!["retention.ms".into()],
                }],
            ),
        ];
        for (name, desired, observed, actions) in cases {
            let plan = plan_topic(&desired, observed.as_ref(), Intent::Present);
            assert_eq!(plan.actions, actions, "{name}");
            assert!(plan.refusals.is_empty(), "{name}: {:?}", plan.refusals);
        }
    }

    #[test]
    fn unsafe_changes_are_refused_with_their_reason_and_nothing_is_planned() {
        let cases = [
            (
                DesiredTopic {
                    partitions: 2,
                    ..desired()
                },
                "PartitionDecreaseRejected",
            ),
            (
                DesiredTopic {
                    partitions: 6,
                    ..desired()
                },
                "PartitionIncreaseNotAllowed",
            ),
            (
                DesiredTopic {
                    replication_factor: 3,
                    ..desired()
                },
                "ReplicationFactorChangeRejected",
            ),
        ];
        for (desired, reason) in cases {
            // A config change rides along: it must not be applied either.
            let observed = ObservedTopic {
                config: BTreeMap::new(),
                ..in_shape()
            };
            let plan = plan(&desired, observed);
            assert!(plan.actions.is_empty(), "{reason}: {:?}", plan.actions);
            assert_eq!(
                plan.refusals.iter().map(|r| r.reason).collect::<Vec<_>>(),
                [reason]
            );
        }
    }

    #[test]
    fn every_refusal_is_reported() {
        let desired = DesiredTopic {
            partitions: 1,
            replication_factor: 3,
            ..desired()
        };
        let reasons: Vec<_> = plan(&desired, in_shape())
            .refusals
            .iter()
            .map(|r| r.reason)
            .collect();
        assert_eq!(
            reasons,
            [
                "ReplicationFactorChangeRejected",
                "PartitionDecreaseRejected"
            ]
        );
    }

    #[test]
    fn removal_deletes_what_exists() {
        let absent = |observed: Option<&ObservedTopic>| {
            plan_topic(&desired(), observed, Intent::Absent).actions
        };
        assert_eq!(absent(Some(&in_shape())), vec![TopicAction::Delete]);
        assert_eq!(absent(None), vec![]);
    }
}
