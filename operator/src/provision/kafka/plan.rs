//! Kafka topics: desired vs observed → actions and refusals. Pure: no client.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::provision::{Intent, Origin, Refusal};

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
    /// The spec allows adopting an existing topic this platform did not create
    /// (`kafka.adoptExisting`).
    pub adopt: bool,
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
            adopt: false,
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
    /// How the platform holds the topic once the actions ran, for its status to record; `None`
    /// when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Things worth saying that are not failures (a topic kept on removal, and why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Plans one topic. Topics carry no tags, so `recorded` (the origin the platform's status
/// holds for it) is the only proof that the topic is the platform's: an existing topic without
/// a record is used only when the spec adopts it (`AdoptionRequired` otherwise), and deleted
/// only with a record.
pub fn plan_topic(
    desired: &DesiredTopic,
    observed: Option<&ObservedTopic>,
    recorded: Option<Origin>,
    intent: Intent,
) -> TopicPlan {
    let mut plan = TopicPlan {
        name: desired.name.clone(),
        actions: Vec::new(),
        refusals: Vec::new(),
        origin: None,
        notes: Vec::new(),
    };
    let name = desired.name.as_str();
    let Some(observed) = observed else {
        if intent == Intent::Present {
            plan.actions.push(TopicAction::Create {
                partitions: desired.partitions,
                replication_factor: desired.replication_factor,
                config: desired.config.clone(),
            });
            plan.origin = Some(Origin::Created);
        }
        return plan;
    };
    if intent == Intent::Absent {
        match recorded {
            Some(_) => plan.actions.push(TopicAction::Delete),
            None => plan.notes.push(format!(
                "topic {name} is kept: this platform neither created nor adopted it"
            )),
        }
        return plan;
    }
    let origin = match (recorded, desired.adopt) {
        (Some(origin), _) => origin,
        (None, true) => Origin::Adopted,
        (None, false) => {
            plan.refusals.push(Refusal::new(
                name,
                "AdoptionRequired",
                format!(
                    "topic {name} exists and this platform did not create it; nothing was changed. Set kafka.adoptExisting: true to adopt it (its partitions and config are then kept in shape, and it is deleted with the platform under deletionPolicy: Delete), or name another topic"
                ),
            ));
            return plan;
        }
    };

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
    plan.origin = Some(origin);

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
        plan_topic(
            desired,
            Some(&observed),
            Some(Origin::Created),
            Intent::Present,
        )
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
            let plan = plan_topic(
                &desired,
                observed.as_ref(),
                Some(Origin::Created),
                Intent::Present,
            );
            assert_eq!(plan.actions, actions, "{name}");
            assert!(plan.refusals.is_empty(), "{name}: {:?}", plan.refusals);
            assert_eq!(plan.origin, Some(Origin::Created), "{name}");
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
    fn an_existing_topic_without_a_record_needs_explicit_adoption() {
        let refused = plan_topic(&desired(), Some(&in_shape()), None, Intent::Present);
        assert!(refused.actions.is_empty());
        assert_eq!(refused.origin, None);
        assert_eq!(
            refused
                .refusals
                .iter()
                .map(|r| r.reason)
                .collect::<Vec<_>>(),
            ["AdoptionRequired"]
        );
        assert!(refused.refusals[0].message.contains("adoptExisting"));

        let adopting = DesiredTopic {
            adopt: true,
            ..desired()
        };
        let drifted = ObservedTopic {
            config: BTreeMap::new(),
            ..in_shape()
        };
        let adopted = plan_topic(&adopting, Some(&drifted), None, Intent::Present);
        assert!(adopted.refusals.is_empty());
        assert_eq!(adopted.origin, Some(Origin::Adopted));
        assert_eq!(adopted.actions.len(), 1, "kept in shape once adopted");
        // A record wins over the flag: a topic the platform created stays `Created`.
        let recorded = plan_topic(
            &adopting,
            Some(&in_shape()),
            Some(Origin::Created),
            Intent::Present,
        );
        assert_eq!(recorded.origin, Some(Origin::Created));
    }

    #[test]
    fn removal_deletes_only_a_topic_this_platform_created_or_adopted() {
        let absent = |observed: Option<&ObservedTopic>, recorded| {
            plan_topic(&desired(), observed, recorded, Intent::Absent).actions
        };
        for origin in [Origin::Created, Origin::Adopted] {
            assert_eq!(
                absent(Some(&in_shape()), Some(origin)),
                vec![TopicAction::Delete]
            );
        }
        assert_eq!(absent(Some(&in_shape()), None), vec![]);
        let kept = plan_topic(&desired(), Some(&in_shape()), None, Intent::Absent);
        assert!(kept.notes[0].contains("is kept"), "{:?}", kept.notes);
        assert_eq!(absent(None, Some(Origin::Created)), vec![]);
    }
}
