//! Ownership of tables and topics on the control plane: a platform never takes over, re-tags
//! or deletes another platform's data, and adopts what nobody owns only when told to.

use kube::api::DeleteParams;
use kube::runtime::conditions;
use serde_json::json;

use crate::harness::{merge, occurrences, Harness, IMAGE_1, SHORT_RESYNC};
use crate::stack;
use crate::support::{wait_for, CONTROL_PLANE_TIMEOUT};

/// Deletes platform `name` and waits until its finalizer has run.
async fn delete_platform(h: &Harness, name: &str) {
    h.platforms()
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete platform");
    wait_for(
        &h.platforms(),
        name,
        conditions::is_deleted(""),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
}

/// The table tag that names the owner, read straight from moto.
async fn owner_tag(table: &str) -> Option<String> {
    let dynamodb = stack::dynamodb().await;
    let arn = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .ok()?
        .table()?
        .table_arn()?
        .to_owned();
    let tags = dynamodb
        .list_tags_of_resource()
        .resource_arn(arn)
        .send()
        .await
        .ok()?;
    tags.tags()
        .iter()
        .find(|t| t.key() == "orders.dev/owner")
        .map(|t| t.value().to_owned())
}

#[tokio::test]
async fn a_second_platform_in_another_namespace_gets_neither_the_first_ones_tables_nor_its_topic() {
    let first = Harness::start().await;
    first.create(first.spec(IMAGE_1)).await;
    first.wait_condition("Ready", "True", None).await;
    let owner = format!("{}/shop", first.namespace.name());
    assert_eq!(owner_tag(&first.history_table()).await, Some(owner.clone()));

    // What a new user tried: the first platform's prefix and topic, and `Delete`.
    let second = Harness::start().await;
    let mut spec = first.spec(IMAGE_1);
    spec["deletionPolicy"] = json!("Delete");
    second.create(spec).await;
    let platform = second
        .wait_condition("TablesReady", "False", Some("OwnerConflict"))
        .await;
    let status = platform.status.expect("status");
    let tables = status.conditions.iter().find(|c| c.type_ == "TablesReady");
    assert!(
        tables.is_some_and(|c| c.message.contains(&owner)),
        "the condition names the owner: {tables:?}"
    );
    assert!(status.tables.iter().all(|t| t.origin.is_none()));
    second
        .wait_condition("TopicsReady", "False", Some("AdoptionRequired"))
        .await;
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False"));
    assert_eq!(second.deployment_image().await, None, "nothing rolled out");
    assert_eq!(
        occurrences(&second.events("OwnerConflict").await),
        1,
        "one Warning"
    );

    // Deleting it with `Delete` deletes nothing of the first platform's.
    delete_platform(&second, "shop").await;
    let deleted = second.events("Deleted").await;
    let note = deleted[0].message.clone().unwrap_or_default();
    assert!(note.contains("no tables or topics"), "{note}");
    let dynamodb = stack::dynamodb().await;
    for table in [first.history_table(), first.counters_table()] {
        assert!(
            stack::table_keys(&dynamodb, &table).await.is_some(),
            "{table}"
        );
        assert_eq!(
            owner_tag(&table).await,
            Some(owner.clone()),
            "never re-tagged"
        );
    }
    assert_eq!(stack::partitions(&first.topic()), Some(3));
    first.wait_condition("Ready", "True", None).await;
}

#[tokio::test]
async fn of_two_platforms_naming_one_topic_the_older_keeps_it_even_against_adoption() {
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    h.create_ready(h.spec(IMAGE_1)).await;
    let platform = h.platforms().get("shop").await.expect("first");
    let topics = platform.status.expect("status").topics;
    assert_eq!(topics[0].origin.as_deref(), Some("Created"));

    // A newer platform with its own tables, but the first one's topic, asking to adopt it.
    let mut spec = h.spec(IMAGE_1);
    merge(
        &mut spec,
        json!({"dynamodb": {"tablePrefix": format!("{}-b", h.table_prefix())},
               "kafka": {"adoptExisting": true}, "deletionPolicy": "Delete"}),
    );
    h.create_named("newer", spec).await;
    let newer = h
        .wait_named("newer", "TopicsReady", "False", Some("ResourceConflict"))
        .await;
    let status = newer.status.expect("status");
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "TopicsReady")
        .expect("TopicsReady")
        .message;
    assert!(
        message.contains(&format!("{}/shop", h.namespace.name())),
        "{message}"
    );
    assert!(status.topics[0].origin.is_none(), "not adopted");
    h.wait_named("newer", "TablesReady", "True", None).await;

    // Deleting the newer one (`Delete`) removes its own tables, never the older one's topic.
    delete_platform(&h, "newer").await;
    let deleted: Vec<String> = h
        .events("Deleted")
        .await
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    assert!(
        deleted.iter().any(|m| m.contains("-b-status-history")),
        "{deleted:?}"
    );
    let dynamodb = stack::dynamodb().await;
    let own_table = format!("{}-b-status-history", h.table_prefix());
    // DeleteTable answers while the table is still DELETING.
    stack::eventually("the newer platform's own table to go", || async {
        stack::table_keys(&dynamodb, &own_table).await.is_none()
    })
    .await;
    h.wait_reconciles(2).await;
    assert_eq!(stack::partitions(&h.topic()), Some(3));
    h.wait_condition("Ready", "True", None).await;
}

#[tokio::test]
async fn an_unowned_topic_and_table_are_adopted_only_when_the_spec_says_so_and_deleted_as_adopted()
{
    let h = Harness::start().await;
    // Made by hand before the platform: nobody's.
    stack::create_topic_by_hand(&h.topic(), 3).await;
    let mut spec = h.spec(IMAGE_1);
    spec["deletionPolicy"] = json!("Delete");
    h.create(spec).await;
    let refused = h
        .wait_condition("TopicsReady", "False", Some("AdoptionRequired"))
        .await;
    let message = refused
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "TopicsReady")
        .expect("TopicsReady")
        .message;
    assert!(message.contains("kafka.adoptExisting"), "{message}");
    assert_eq!(h.deployment_image().await, None);

    h.patch_spec(json!({"kafka": {"adoptExisting": true}}))
        .await;
    let platform = h.wait_condition("Ready", "True", None).await;
    let status = platform.status.expect("status");
    assert_eq!(status.topics[0].origin.as_deref(), Some("Adopted"));
    assert!(status
        .tables
        .iter()
        .all(|t| t.origin.as_deref() == Some("Created")));

    // Adopted explicitly, so it goes with the platform under `Delete`.
    delete_platform(&h, "shop").await;
    let topic = h.topic();
    stack::eventually("the adopted topic to be deleted", || async {
        stack::partitions(&topic).is_none()
    })
    .await;
}
