//! The migration Job: `order-service migrate` with the new image, before it rolls out.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{
    child_meta, container_security, labels, pod_security, secret_env, short_hash, IMAGE_HASH_LABEL,
};
use crate::crd::OrderPlatform;

/// `<name>-migrate-<hash of the image>`: a new image gets a new Job, so it never collides
/// with an old Job's immutable pod template.
pub fn migration_job_name(platform: &OrderPlatform, image: &str) -> String {
    format!(
        "{}-migrate-{}",
        platform.name_any(),
        short_hash(image.as_bytes(), 10)
    )
}

pub fn build_migration_job(platform: &OrderPlatform, image: &str) -> Job {
    let migrations = &platform.spec.database.migrations;
    let (env, env_from) = secret_env(platform);
    let mut metadata = child_meta(platform, migration_job_name(platform, image), "migration");
    let image_hash = short_hash(image.as_bytes(), 10);
    metadata
        .labels
        .get_or_insert_default()
        .insert(IMAGE_HASH_LABEL.to_owned(), image_hash);
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
                        image: Some(image.into()),
                        args: Some(vec!["migrate".into()]),
                        env: Some(env),
                        env_from: Some(env_from),
                        security_context: Some(container_security()),
                        ..Default::default()
                    }],
                    security_context: Some(pod_security()),
                    automount_service_account_token: Some(false),
                    ..Default::default()
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

    #[test]
    fn each_image_gets_its_own_job_name() {
        let platform = OrderPlatform::test();
        let a = migration_job_name(&platform, "img:1");
        assert_eq!(a, migration_job_name(&platform, "img:1"));
        assert_ne!(a, migration_job_name(&platform, "img:2"));
        assert!(a.starts_with("shop-migrate-") && a.len() <= 63);
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
        let job = build_migration_job(&platform, "img:2");
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
