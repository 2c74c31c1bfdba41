//! Deletion never hangs: a `deletionPolicy: Delete` cleanup that keeps failing is retried with
//! a Warning, then released after a bound or by an annotation, saying what was left behind; and
//! a `Retain` platform needs no operator to go.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::conditions;
use kube::Api;
use kube::ResourceExt;
use order_operator::controller::{ABANDON_ANNOTATION, FINALIZER};
use order_operator::crd::OrderPlatform;
use serde_json::json;

use crate::harness::*;
use crate::stack;
use crate::support::{connect, poll_until, wait_for, CONTROL_PLANE_TIMEOUT};

/// A platform with `Delete` whose DynamoDB credentials come from the Secret `aws`, Ready.
async fn ready_with_credentials_secret(h: &Harness) {
    h.secret(
        "aws",
        json!({"AWS_ACCESS_KEY_ID": "from-secret", "AWS_SECRET_ACCESS_KEY": "from-secret"}),
    )
    .await;
    let mut spec = h.spec(IMAGE_1);
    merge(
        &mut spec,
        json!({"dynamodb": {"credentialsSecretRef": "aws"}, "deletionPolicy": "Delete"}),
    );
    h.create(spec).await;
    h.wait_condition("Ready", "True", None).await;
}

async fn delete_secret(h: &Harness) {
    h.namespace
        .api::<Secret>()
        .delete("aws", &DeleteParams::default())
        .await
        .expect("delete the credentials Secret");
}

#[tokio::test]
async fn deleting_the_namespace_with_delete_and_a_credentials_secret_finishes_within_the_bound() {
    let h = Harness::start_with_cleanup_timeout(None, SHORT_RESYNC, Duration::from_secs(10)).await;
    ready_with_credentials_secret(&h).await;
    // Namespace deletion removes the Secret too, in no set order: make it the worst one.
    delete_secret(&h).await;
    let namespaces: Api<Namespace> = Api::all(connect().await);
    namespaces
        .delete(h.namespace.name(), &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait_for(
        &namespaces,
        h.namespace.name(),
        conditions::is_deleted(""),
        Duration::from_secs(120),
    )
    .await;
    // Released without its credentials: the tables were left behind, not deleted.
    let dynamodb = stack::dynamodb().await;
    assert!(stack::table_keys(&dynamodb, &h.history_table())
        .await
        .is_some());
}

#[tokio::test]
async fn a_failing_cleanup_warns_and_the_annotation_releases_it_naming_what_was_left_behind() {
    let h = Harness::start().await;
    ready_with_credentials_secret(&h).await;
    delete_secret(&h).await;
    h.platforms()
        .delete("shop", &DeleteParams::default())
        .await
        .expect("delete platform");
    let warned = h.events("CleanupFailed").await;
    let note = warned[0].message.clone().unwrap_or_default();
    assert!(note.contains("CredentialsUnavailable"), "{note}");
    assert!(
        note.contains(ABANDON_ANNOTATION),
        "says how to release: {note}"
    );
    assert!(
        h.platforms().get_opt("shop").await.expect("read").is_some(),
        "the finalizer holds while the bound (10 min) has not passed"
    );

    h.platforms()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {ABANDON_ANNOTATION: "true"}}})),
        )
        .await
        .expect("annotate");
    wait_for(
        &h.platforms(),
        "shop",
        conditions::is_deleted(""),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    let abandoned = h.events("CleanupAbandoned").await;
    let note = abandoned[0].message.clone().unwrap_or_default();
    assert!(note.contains(&h.history_table()), "{note}");
    let dynamodb = stack::dynamodb().await;
    assert!(stack::table_keys(&dynamodb, &h.history_table())
        .await
        .is_some());
}

#[tokio::test]
async fn deleting_a_platform_removes_its_children_and_never_blocks() {
    for policy in ["Retain", "Delete"] {
        let h = Harness::start().await;
        let mut with_policy = h.spec(IMAGE_1);
        with_policy["deletionPolicy"] = json!(policy);
        h.create(with_policy).await;
        h.wait_condition("Ready", "True", None).await;
        h.platforms()
            .delete("shop", &DeleteParams::default())
            .await
            .expect("delete");
        wait_for(
            &h.platforms(),
            "shop",
            conditions::is_deleted(""),
            CONTROL_PLANE_TIMEOUT,
        )
        .await;
        wait_for(
            &h.namespace.api::<Deployment>(),
            "shop",
            conditions::is_deleted(""),
            CONTROL_PLANE_TIMEOUT,
        )
        .await;
        // Delete runs a cleanup and says what it did; Retain has no finalizer and no cleanup.
        if policy == "Delete" {
            let deleted = h.events("Deleted").await;
            assert_eq!(deleted.len(), 1, "{policy}");
            assert!(
                deleted[0]
                    .message
                    .as_deref()
                    .unwrap_or_default()
                    .contains(policy),
                "{policy}"
            );
        }
        // Retain keeps the tables and the topic; Delete removes them before the finalizer goes.
        let dynamodb = stack::dynamodb().await;
        let kept = policy == "Retain";
        for table in [h.history_table(), h.counters_table()] {
            assert_eq!(
                stack::table_keys(&dynamodb, &table).await.is_some(),
                kept,
                "{policy}: {table}"
            );
        }
        let topic = h.topic();
        stack::eventually(&format!("{policy}: topic kept={kept}"), || async {
            stack::partitions(&topic).is_some() == kept
        })
        .await;
    }
}

#[tokio::test]
async fn deleting_the_namespace_is_not_blocked_by_the_finalizer() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(connect().await);
    namespaces
        .delete(h.namespace.name(), &DeleteParams::default())
        .await
        .expect("delete namespace");
    // The namespace controller deletes the platform; the operator's cleanup removes the
    // finalizer; then the namespace goes.
    wait_for(
        &namespaces,
        h.namespace.name(),
        conditions::is_deleted(""),
        Duration::from_secs(120),
    )
    .await;
}

#[tokio::test]
async fn only_a_delete_policy_holds_a_finalizer_so_a_retain_platform_never_waits_for_the_operator()
{
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    h.create_ready(h.spec(IMAGE_1)).await;
    let holds = |p: &OrderPlatform| p.finalizers().iter().any(|f| f == FINALIZER);
    assert!(!holds(&h.platforms().get("shop").await.unwrap()));

    h.patch_spec(json!({"deletionPolicy": "Delete"})).await;
    wait_for(
        &h.platforms(),
        "shop",
        move |p: Option<&OrderPlatform>| p.is_some_and(holds),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    h.patch_spec(json!({"deletionPolicy": "Retain"})).await;
    wait_for(
        &h.platforms(),
        "shop",
        move |p: Option<&OrderPlatform>| p.is_some_and(|p| !holds(p)),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;

    // The operator is gone (uninstalled, crashed): deleting the platform still completes.
    h.stop_operator();
    h.platforms()
        .delete("shop", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(
        &h.platforms(),
        "shop",
        conditions::is_deleted(""),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the Deployment to be collected",
        || async {
            let gone = h
                .namespace
                .api::<Deployment>()
                .get_opt("shop")
                .await
                .ok()?
                .is_none();
            gone.then_some(())
        },
    )
    .await;
}
