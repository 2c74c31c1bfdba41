//! The migration Job: `order-service migrate` with a new revision's image against its
//! database, before the revision rolls out.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::revision::migration_key;
use super::{
    child_meta, container_security, labels, pod_placement, secret_env, Revision, MIGRATION_LABEL,
};
use crate::crd::OrderPlatform;

/// `<name>-migrate-<migration key>`: a new image, database or retry gets a new Job, so it
/// never collides with an old Job's immutable pod template.
pub fn migration_job_name(platform: &OrderPlatform, key: &str) -> String {
    format!("{}-migrate-{key}", platform.name_any())
}

/// The name of the migration Job the spec asks for now.
pub fn spec_migration_job_name(platform: &OrderPlatform) -> String {
    let spec = &platform.spec;
    migration_job_name(
        platform,
        &migration_key(platform, &spec.image, &spec.database.secret_ref),
    )
}

/// The Job migrating `revision`'s database with its image; `key` is its migration key.
pub fn build_migration_job(platform: &OrderPlatform, revision: &Revision, key: &str) -> Job {
    let migrations = &platform.spec.database.migrations;
    let (env, env_from) = secret_env(platform, &revision.database);
    let mut metadata = child_meta(platform, migration_job_name(platform, key), "migration");
    metadata
        .labels
        .get_or_insert_default()
        .insert(MIGRATION_LABEL.to_owned(), key.to_owned());
    let mut pod_labels = labels(platform, "migration");
    pod_labels.extend(migrations.pod_labels.clone());
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(migrations.backoff_limit),
            active_deadline_seconds: Some(migrations.active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "migrate".into(),
                        image: Some(revision.image.clone()),
                        args: Some(vec!["migrate".into()]),
                        env: Some(env),
                        env_from: Some(env_from),
                        resources: migrations.resources.clone(),
                        security_context: Some(container_security()),
                        ..Default::default()
                    }],
                    ..pod_placement(platform)
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(platform: &OrderPlatform, image: &str) -> Job {
        let revision = Revision {
            image: image.into(),
            config_map: "shop-config-0".into(),
            database: platform.spec.database.secret_ref.clone(),
        };
        let key = revision.migration_key(platform);
        build_migration_job(platform, &revision, &key)
    }

    #[test]
    fn the_job_is_named_and_labelled_by_its_migration_key() {
        let platform = OrderPlatform::test();
        let a = job(&platform, "img:1");
        let name = a.metadata.name.clone().unwrap();
        assert_eq!(name, job(&platform, "img:1").metadata.name.unwrap());
        assert_ne!(Some(name.clone()), job(&platform, "img:2").metadata.name);
        assert!(name.starts_with("shop-migrate-") && name.len() <= 63);
        assert_eq!(
            format!(
                "shop-migrate-{}",
                a.metadata.labels.unwrap()[MIGRATION_LABEL]
            ),
            name
        );
    }

    #[test]
    fn the_job_runs_where_the_service_may_with_its_pull_secrets_and_resources() {
        let mut platform = OrderPlatform::test();
        platform.spec = serde_json::from_value(serde_json::json!({
            "image": "img:1",
            "database": {"secretRef": {"name": "db"}, "migrations": {"resources": {"limits": {"memory": "128Mi"}}}},
            "dynamodb": {"tablePrefix": "shop"},
            "kafka": {"bootstrapServers": "k:9092", "topics": [{"name": "orders.events"}]},
            "auth": {"disabled": true},
            "serviceAccountName": "orders",
            "imagePullSecrets": [{"name": "registry"}],
            "nodeSelector": {"pool": "apps"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "orders", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {}}
        }))
        .unwrap();
        let pod = job(&platform, "img:1").spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("orders"));
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "registry");
        assert_eq!(pod.node_selector.unwrap()["pool"], "apps");
        assert_eq!(pod.tolerations.unwrap()[0].value.as_deref(), Some("orders"));
        assert_eq!(pod.affinity, None, "affinity is the service pods' only");
        assert_eq!(pod.automount_service_account_token, Some(false));
        let limits = pod.containers[0].resources.clone().unwrap().limits.unwrap();
        assert_eq!(limits["memory"].0, "128Mi");
    }

    #[test]
    fn the_job_migrates_with_the_database_secret_and_spec_limits() {
        let mut platform = OrderPlatform::test();
        platform.spec.database.migrations.backoff_limit = 4;
        platform
            .spec
            .database
            .migrations
            .pod_labels
            .insert("team".into(), "orders".into());
        let job = job(&platform, "img:2");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(4));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.containers[0].args.as_ref().unwrap(), &["migrate"]);
        assert_eq!(pod.containers[0].image.as_deref(), Some("img:2"));
        assert!(pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "DATABASE_URL"));
        assert_eq!(
            spec.template.metadata.unwrap().labels.unwrap()["team"],
            "orders"
        );
    }
}
