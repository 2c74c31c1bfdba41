//! The rollout gate on the control plane: migrations before the Deployment moves, the
//! revision (image, configuration, database) kept whole until then, and Jobs no longer wanted.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::support::{poll_until, wait_for, CONTROL_PLANE_TIMEOUT};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota, ResourceQuotaSpec, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::conditions;
use kube::ResourceExt;
use order_operator::controller::build::{Revision, RETRY_MIGRATIONS_ANNOTATION};
use order_operator::controller::{build, FINALIZER};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn a_new_platform_migrates_first_then_serves_and_becomes_ready() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    let platform = h.wait_condition("Ready", "True", None).await;

    assert!(
        !platform.finalizers().iter().any(|f| f == FINALIZER),
        "Retain (the default) has nothing to do at deletion: no finalizer"
    );
    let status = platform.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Ready"));
    assert_eq!(status.current_image.as_deref(), Some(IMAGE_1));
    assert_eq!(status.migrated_image.as_deref(), Some(IMAGE_1));
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .clone()
    };
    assert_eq!(condition("MigrationsSucceeded").status, "True");
    assert_eq!(condition("ServiceAvailable").status, "True");
    assert_eq!(condition("TablesReady").status, "True");
    assert_eq!(condition("TopicsReady").status, "True");

    // The Deployment was created only after its image's migration Job completed.
    let job_name = build::spec_migration_job_name(&platform_of(&h).await);
    let job = h
        .namespace
        .api::<Job>()
        .get(&job_name)
        .await
        .expect("migration job");
    let completed = job
        .status
        .and_then(|s| s.completion_time)
        .expect("job completed")
        .0;
    let deployment = h
        .namespace
        .api::<Deployment>()
        .get("shop")
        .await
        .expect("deployment");
    assert!(
        deployment.creation_timestamp().unwrap().0 >= completed,
        "deployment after migration"
    );
    for kind_exists in [
        h.namespace
            .api::<Service>()
            .get_opt("shop")
            .await
            .unwrap()
            .is_some(),
        h.namespace
            .api::<ConfigMap>()
            .get_opt(&running_revision(&h).await.config_map)
            .await
            .unwrap()
            .is_some(),
        h.namespace
            .api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>()
            .get_opt("shop")
            .await
            .unwrap()
            .is_some(),
    ] {
        assert!(kind_exists);
    }
    assert!(
        !h.events("MigrationStarted").await.is_empty(),
        "an Event for the migration"
    );
}

#[tokio::test]
async fn an_image_change_waits_for_its_migration_job_before_the_deployment_moves() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;

    // A quota at today's pod count keeps the next migration Job from starting its pod.
    let quota = ResourceQuota {
        metadata: kube::api::ObjectMeta {
            name: Some("hold".into()),
            ..Default::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([(
                "count/pods".into(),
                Quantity("2".into()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    h.namespace
        .api::<ResourceQuota>()
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota");
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the quota to count the running pods",
        || async {
            let q = h.namespace.api::<ResourceQuota>().get("hold").await.ok()?;
            let used: i32 = q.status?.used?.get("count/pods")?.0.parse().ok()?;
            (used >= 2).then_some(())
        },
    )
    .await;

    h.patch_spec(json!({"image": IMAGE_2})).await;
    h.wait_condition("MigrationsSucceeded", "Unknown", Some("Running"))
        .await;
    assert_eq!(
        h.deployment_image().await.as_deref(),
        Some(IMAGE_1),
        "untouched while migrating"
    );
    let platform = platform_of(&h).await;
    assert_eq!(platform.status.unwrap().phase.as_deref(), Some("Migrating"));

    h.namespace
        .api::<ResourceQuota>()
        .delete("hold", &DeleteParams::default())
        .await
        .expect("lift quota");
    h.wait_condition("Ready", "True", None).await;
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_2));
}

#[tokio::test]
async fn a_failed_migration_keeps_the_old_deployment_and_a_fixed_image_recovers() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;

    h.patch_spec(json!({"image": IMAGE_2, "database": {"migrations": {"podLabels": {"orders.dev/simulate": "fail"}}}})).await;
    let platform = h
        .wait_condition("MigrationsSucceeded", "False", Some("BackoffLimitExceeded"))
        .await;
    assert_eq!(
        h.deployment_image().await.as_deref(),
        Some(IMAGE_1),
        "the old image keeps serving"
    );
    let status = platform.status.unwrap();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BackoffLimitExceeded")
    );
    let warnings = h.events("BackoffLimitExceeded").await;
    assert_eq!(warnings.len(), 1, "one Warning Event");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));

    h.patch_spec(json!({"image": IMAGE_3, "database": {"migrations": {"podLabels": null}}}))
        .await;
    let platform = h.wait_condition("Ready", "True", None).await;
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_3));
    let migrations = platform
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "MigrationsSucceeded")
        .unwrap();
    assert_eq!(
        migrations.status, "True",
        "the condition does not stay stuck on the old error"
    );
}

#[tokio::test]
async fn a_config_change_rolls_the_pods_and_a_deleted_child_comes_back() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;
    let before = running_revision(&h).await;

    h.patch_spec(json!({"dynamodb": {"historyRetentionDays": 30}}))
        .await;
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the pods to read a new ConfigMap",
        || async {
            let d = h.namespace.api::<Deployment>().get("shop").await.ok()?;
            let now = Revision::running(&d)?;
            (now.config_map != before.config_map).then_some(now)
        },
    )
    .await;
    let now = running_revision(&h).await;
    assert_eq!(
        now.image, before.image,
        "the same image, without a migration"
    );
    let config = h
        .namespace
        .api::<ConfigMap>()
        .get(&now.config_map)
        .await
        .unwrap();
    assert_eq!(
        config.data.unwrap()["ORDER_SERVICE_HISTORY_RETENTION_DAYS"],
        "30"
    );
    assert_eq!(config.immutable, Some(true));

    h.namespace
        .api::<Service>()
        .delete("shop", &DeleteParams::default())
        .await
        .expect("delete service");
    wait_for(
        &h.namespace.api::<Service>(),
        "shop",
        conditions::is_created(),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
}

#[tokio::test]
async fn old_migration_jobs_are_pruned_to_the_newest_three() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;
    let images: Vec<String> = (2..=5)
        .map(|v| format!("registry.example/order-service:{v}.0.0"))
        .collect();
    for image in &images {
        h.patch_spec(json!({"image": image})).await;
        h.wait_condition("Ready", "True", None).await;
        assert_eq!(h.deployment_image().await.as_deref(), Some(image.as_str()));
    }
    let platform = platform_of(&h).await;
    let expected: Vec<String> = images[1..]
        .iter()
        .map(|image| {
            let mut platform = platform.clone();
            platform.spec.image = image.clone();
            build::spec_migration_job_name(&platform)
        })
        .collect();
    poll_until(CONTROL_PLANE_TIMEOUT, "old Jobs to be deleted", || async {
        let mut names: Vec<String> = h
            .namespace
            .api::<Job>()
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| j.name_any())
            .collect();
        names.sort();
        let mut want = expected.clone();
        want.sort();
        (names == want).then_some(())
    })
    .await;
}

/// The revision the Deployment runs now.
async fn running_revision(h: &Harness) -> Revision {
    let deployment = h
        .namespace
        .api::<Deployment>()
        .get("shop")
        .await
        .expect("deployment");
    Revision::running(&deployment).expect("a Deployment the operator built")
}

async fn annotate(h: &Harness, key: &str, value: &str) {
    h.platforms()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .expect("annotate");
}

/// The migration Jobs of the platform that are not being deleted, by name.
async fn live_jobs(h: &Harness) -> Vec<String> {
    let mut names: Vec<String> = h
        .namespace
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_failed_migration_is_retried_with_the_annotation_without_changing_the_image() {
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    h.create_ready(h.spec(IMAGE_1)).await;
    h.patch_spec(json!({"image": IMAGE_2, "database": {"migrations": {"podLabels": {"orders.dev/simulate": "fail"}}}})).await;
    let failed = h
        .wait_condition("MigrationsSucceeded", "False", Some("BackoffLimitExceeded"))
        .await;
    let message = failed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "MigrationsSucceeded")
        .unwrap()
        .message;
    assert!(
        message.contains(RETRY_MIGRATIONS_ANNOTATION),
        "says how to retry: {message}"
    );
    let failed_job = build::spec_migration_job_name(&platform_of(&h).await);

    // The cause is fixed (here: the pods no longer fail); the same image is retried.
    h.patch_spec(json!({"database": {"migrations": {"podLabels": null}}}))
        .await;
    h.wait_reconciles(2).await;
    assert_eq!(
        h.deployment_image().await.as_deref(),
        Some(IMAGE_1),
        "a spec change alone does not re-run a failed migration"
    );
    annotate(&h, RETRY_MIGRATIONS_ANNOTATION, "1").await;
    h.wait_condition("Ready", "True", None).await;
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_2));
    let retried_job = build::spec_migration_job_name(&platform_of(&h).await);
    assert_ne!(retried_job, failed_job, "the retry is a new Job");
    assert!(
        live_jobs(&h).await.contains(&failed_job),
        "the failed Job is kept for its logs"
    );
}

#[tokio::test]
async fn a_migration_job_no_longer_wanted_is_deleted_while_it_runs() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;
    h.patch_spec(json!({"image": IMAGE_2, "database": {"migrations": {"podLabels": {"orders.dev/simulate": "hang"}}}})).await;
    h.wait_condition("MigrationsSucceeded", "Unknown", Some("Running"))
        .await;
    let running_job = build::spec_migration_job_name(&platform_of(&h).await);

    // Rolled back while the migration runs: its Job must not go on against the live database.
    h.patch_spec(json!({"image": IMAGE_1, "database": {"migrations": {"podLabels": null}}}))
        .await;
    h.wait_condition("Ready", "True", None).await;
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the superseded Job to be deleted",
        || async { (!live_jobs(&h).await.contains(&running_job)).then_some(()) },
    )
    .await;
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_1));
}

#[tokio::test]
async fn a_new_configuration_with_a_new_image_never_reaches_the_old_pods() {
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    h.create_ready(h.spec(IMAGE_1)).await;
    let before = running_revision(&h).await;

    // A new image and a new configuration, and the image's migration fails.
    h.patch_spec(json!({"image": IMAGE_2, "dynamodb": {"historyRetentionDays": 30},
                        "database": {"migrations": {"podLabels": {"orders.dev/simulate": "fail"}}}}))
        .await;
    h.wait_condition("MigrationsSucceeded", "False", Some("BackoffLimitExceeded"))
        .await;
    h.wait_reconciles(1).await;
    assert_eq!(
        running_revision(&h).await,
        before,
        "the old image runs with the configuration it was validated with"
    );

    // Once migrated, image and configuration move together.
    h.patch_spec(json!({"image": IMAGE_3, "database": {"migrations": {"podLabels": null}}}))
        .await;
    h.wait_condition("Ready", "True", None).await;
    let after = running_revision(&h).await;
    assert_eq!(after.image, IMAGE_3);
    let config = h
        .namespace
        .api::<ConfigMap>()
        .get(&after.config_map)
        .await
        .unwrap();
    assert_eq!(
        config.data.unwrap()["ORDER_SERVICE_HISTORY_RETENTION_DAYS"],
        "30"
    );
}

#[tokio::test]
async fn a_new_database_secret_is_migrated_before_the_pods_use_it() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;
    h.secret(
        "shop-database-2",
        json!({"DATABASE_URL": "postgres://orders@postgres-2/orders"}),
    )
    .await;

    // The same image against a new database: its migration fails first.
    h.patch_spec(json!({"database": {"secretRef": {"name": "shop-database-2"},
                                     "migrations": {"podLabels": {"orders.dev/simulate": "fail"}}}}))
        .await;
    h.wait_condition("MigrationsSucceeded", "False", Some("BackoffLimitExceeded"))
        .await;
    let job = h
        .namespace
        .api::<Job>()
        .get(&build::spec_migration_job_name(&platform_of(&h).await))
        .await
        .expect("a migration Job for the new database");
    let env = job.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let url = env.iter().find(|e| e.name == "DATABASE_URL").unwrap();
    assert_eq!(
        url.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "shop-database-2"
    );
    assert_eq!(
        running_revision(&h).await.database.name,
        "shop-database",
        "the pods keep the database they were migrated for"
    );

    h.patch_spec(json!({"database": {"migrations": {"podLabels": null}}}))
        .await;
    annotate(&h, RETRY_MIGRATIONS_ANNOTATION, "after-fix").await;
    h.wait_condition("Ready", "True", None).await;
    let now = running_revision(&h).await;
    assert_eq!(
        (now.image.as_str(), now.database.name.as_str()),
        (IMAGE_1, "shop-database-2")
    );
}

#[tokio::test]
async fn turning_autoscaling_on_keeps_the_replica_count_until_the_autoscaler_acts() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use kube::runtime::{watcher, WatchStreamExt};
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    let mut spec = h.spec(IMAGE_1);
    merge(
        &mut spec,
        json!({"replicas": 3, "resources": {"requests": {"cpu": "100m"}}}),
    );
    h.create(spec).await;
    h.wait_condition("Ready", "True", None).await;

    // Every replica count the Deployment has from now on.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<i32>::new()));
    let record = seen.clone();
    let deployments = h.namespace.api::<Deployment>();
    let watch = tokio::spawn(async move {
        let mut stream =
            std::pin::pin!(watcher(deployments, watcher::Config::default()).applied_objects());
        while let Ok(Some(d)) = futures::TryStreamExt::try_next(&mut stream).await {
            if let Some(replicas) = d.spec.and_then(|s| s.replicas) {
                record.lock().unwrap().push(replicas);
            }
        }
    });

    h.patch_spec(json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}))
        .await;
    h.wait_condition("Ready", "True", None).await;
    // The HPA controller has looked at the Deployment: it reports the count it found.
    let hpas = h.namespace.api::<HorizontalPodAutoscaler>();
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the HPA to observe the Deployment",
        || async {
            let hpa = hpas.get("shop").await.ok()?;
            (hpa.status?.current_replicas == Some(3)).then_some(())
        },
    )
    .await;
    h.wait_reconciles(2).await;
    let counts = seen.lock().unwrap().clone();
    assert!(!counts.is_empty(), "the watch saw the Deployment");
    assert!(
        counts.iter().all(|&r| r == 3),
        "replicas went through {counts:?}"
    );

    // The autoscaler owns the count now: raising its minimum scales, and the operator's next
    // applies leave that alone.
    h.patch_spec(json!({"autoscaling": {"minReplicas": 4}}))
        .await;
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the HPA to scale to its new minimum",
        || async {
            let d = h.namespace.api::<Deployment>().get("shop").await.ok()?;
            (d.spec?.replicas == Some(4)).then_some(())
        },
    )
    .await;
    h.wait_reconciles(2).await;
    let d = h.namespace.api::<Deployment>().get("shop").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    watch.abort();
}
