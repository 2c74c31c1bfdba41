//! Kafka topics against a real broker: create, correct drift, refuse unsafe partition and
//! replication changes, grow only when opted in, delete only with the intent to.

use std::collections::BTreeMap;

use order_operator::provision::kafka::{DesiredTopic, KafkaTarget, TopicAction, TopicProvisioner};
use order_operator::provision::{Intent, Origin};
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};

use crate::support::{self, eventually, partitions, topic_overrides, unique, TIMEOUT};

fn provisioner() -> TopicProvisioner {
    TopicProvisioner::connect(&KafkaTarget {
        bootstrap_servers: support::kafka_servers(),
        properties: Vec::new(),
        timeout: TIMEOUT,
    })
    .expect("admin client")
}

fn topic(partitions: i32) -> DesiredTopic {
    DesiredTopic {
        partitions,
        config: BTreeMap::from([("retention.ms".into(), "86400000".into())]),
        ..DesiredTopic::new(&format!("prov.{}", unique()))
    }
}

async fn plan_of(
    p: &TopicProvisioner,
    t: &DesiredTopic,
) -> order_operator::provision::kafka::TopicPlan {
    // The topic is this platform's, as a status would record after `converge` created it.
    p.plan(
        std::slice::from_ref(t),
        |_| Some(Origin::Created),
        Intent::Present,
    )
    .await
    .expect("plan")
    .remove(0)
}

/// Waits until the broker's metadata shows `n` partitions (metadata propagates after calls).
async fn wait_partitions(name: &str, n: Option<usize>) {
    eventually(&format!("{name} to have {n:?} partitions"), || async {
        partitions(name) == n
    })
    .await;
}

#[tokio::test]
async fn a_topic_is_created_with_its_config_then_left_alone() {
    let p = provisioner();
    let t = topic(3);
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("converge");
    wait_partitions(&t.name, Some(3)).await;
    assert_eq!(topic_overrides(&t.name).await, t.config);
    let plan = plan_of(&p, &t).await;
    assert!(
        plan.actions.is_empty() && plan.refusals.is_empty(),
        "{plan:?}"
    );
}

#[tokio::test]
async fn configs_changed_by_hand_and_keys_dropped_from_the_spec_are_corrected() {
    let p = provisioner();
    let t = topic(3);
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("converge");
    // By hand: another retention and an extra override.
    let admin = support::kafka_admin();
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&t.name))
        .set("retention.ms", "1000")
        .set("cleanup.policy", "compact");
    admin
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .expect("alter by hand")
        .remove(0)
        .expect("altered");
    eventually("the hand edit to show", || async {
        topic_overrides(&t.name)
            .await
            .contains_key("cleanup.policy")
    })
    .await;

    let plan = plan_of(&p, &t).await;
    assert!(
        matches!(&plan.actions[..], [TopicAction::SetConfig { reset, .. }] if reset == &["cleanup.policy".to_owned()]),
        "{plan:?}"
    );
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("converge");
    eventually("the spec's config", || async {
        topic_overrides(&t.name).await == t.config
    })
    .await;

    // A key dropped from the spec goes back to the broker default.
    let without = DesiredTopic {
        config: BTreeMap::new(),
        ..t.clone()
    };
    p.converge(std::slice::from_ref(&without))
        .await
        .expect("converge");
    eventually("no overrides", || async {
        topic_overrides(&t.name).await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_topic_deleted_out_of_band_is_created_again() {
    let p = provisioner();
    let t = topic(3);
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("converge");
    wait_partitions(&t.name, Some(3)).await;
    support::delete_topic_by_hand(&t.name).await;
    wait_partitions(&t.name, None).await;
    let plan = plan_of(&p, &t).await;
    assert!(
        matches!(plan.actions[..], [TopicAction::Create { .. }]),
        "{plan:?}"
    );
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("converge");
    wait_partitions(&t.name, Some(3)).await;
}

#[tokio::test]
async fn fewer_partitions_than_the_topic_has_are_refused_and_nothing_changes() {
    let p = provisioner();
    let t = topic(3);
    support::create_topic_by_hand(&t.name, 6).await;
    wait_partitions(&t.name, Some(6)).await;
    let plan = plan_of(&p, &t).await;
    assert_eq!(plan.refusals[0].reason, "PartitionDecreaseRejected");
    // The config the spec asks for is not applied either: the topic is left as it is.
    assert!(plan.actions.is_empty());
    assert_eq!(
        p.converge(std::slice::from_ref(&t))
            .await
            .expect_err("refused")
            .reason(),
        "PartitionDecreaseRejected"
    );
    assert_eq!(partitions(&t.name), Some(6));
    assert!(topic_overrides(&t.name).await.is_empty());
}

#[tokio::test]
async fn more_partitions_need_the_opt_in() {
    let p = provisioner();
    let t = topic(3);
    support::create_topic_by_hand(&t.name, 1).await;
    wait_partitions(&t.name, Some(1)).await;
    let plan = plan_of(&p, &t).await;
    assert_eq!(plan.refusals[0].reason, "PartitionIncreaseNotAllowed");
    assert!(plan.refusals[0].message.contains("allowPartitionIncrease"));
    assert!(p.converge(std::slice::from_ref(&t)).await.is_err());
    assert_eq!(partitions(&t.name), Some(1));

    let opted_in = DesiredTopic {
        allow_partition_increase: true,
        ..t.clone()
    };
    let plan = plan_of(&p, &opted_in).await;
    assert!(
        plan.actions
            .contains(&TopicAction::AddPartitions { from: 1, to: 3 }),
        "{plan:?}"
    );
    p.converge(std::slice::from_ref(&opted_in))
        .await
        .expect("converge");
    wait_partitions(&t.name, Some(3)).await;
}

#[tokio::test]
async fn a_replication_factor_change_is_refused() {
    let p = provisioner();
    let t = topic(3);
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("converge");
    wait_partitions(&t.name, Some(3)).await;
    let more_replicas = DesiredTopic {
        replication_factor: 3,
        ..t.clone()
    };
    let plan = plan_of(&p, &more_replicas).await;
    assert_eq!(plan.refusals[0].reason, "ReplicationFactorChangeRejected");
    assert!(plan.actions.is_empty());
}

#[tokio::test]
async fn removal_deletes_the_topic() {
    let p = provisioner();
    let t = topic(3);
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("converge");
    wait_partitions(&t.name, Some(3)).await;
    let removal = |recorded: Option<Origin>| {
        let p = &p;
        let t = &t;
        async move {
            p.plan(std::slice::from_ref(t), move |_| recorded, Intent::Absent)
                .await
                .expect("plan")
                .remove(0)
        }
    };
    // Without a record that this platform created or adopted it, the topic is kept.
    assert!(removal(None).await.actions.is_empty());
    let plan = removal(Some(Origin::Created)).await;
    assert_eq!(plan.actions, [TopicAction::Delete]);
    p.apply(&t.name, &TopicAction::Delete)
        .await
        .expect("delete");
    wait_partitions(&t.name, None).await;
}

#[tokio::test]
async fn an_existing_topic_without_a_record_is_adopted_only_when_the_spec_says_so() {
    let p = provisioner();
    let t = topic(3);
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("someone else's topic");
    wait_partitions(&t.name, Some(3)).await;
    let plan = p
        .plan(std::slice::from_ref(&t), |_| None, Intent::Present)
        .await
        .expect("plan")
        .remove(0);
    assert_eq!(plan.refusals[0].reason, "AdoptionRequired");
    assert!(plan.actions.is_empty() && plan.origin.is_none());
    let adopting = DesiredTopic {
        adopt: true,
        ..t.clone()
    };
    let plan = p
        .plan(std::slice::from_ref(&adopting), |_| None, Intent::Present)
        .await
        .expect("plan")
        .remove(0);
    assert!(plan.refusals.is_empty(), "{plan:?}");
    assert_eq!(plan.origin, Some(Origin::Adopted));
}

#[tokio::test]
async fn a_topic_created_by_someone_else_since_the_plan_is_an_error_not_a_success() {
    let p = provisioner();
    let t = topic(3);
    let plan = plan_of(&p, &t).await;
    assert!(
        matches!(plan.actions[..], [TopicAction::Create { .. }]),
        "{plan:?}"
    );
    // Another platform (or a person) creates it between the plan and the apply.
    p.converge(std::slice::from_ref(&t))
        .await
        .expect("created by someone else");
    let error = p
        .apply(&t.name, &plan.actions[0])
        .await
        .expect_err("not recorded as created by this platform");
    assert!(error.to_string().contains("CreateTopics"), "{error}");
}
