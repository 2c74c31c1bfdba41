//! Builders: one pure function per child object, from the spec to the object to apply.
//!
//! Pure: no client, no I/O. Everything here is unit-tested without a cluster.

mod config_map;
mod deployment;
mod hpa;
mod job;
mod pdb;
mod revision;
mod service;
pub mod shutdown;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, EnvFromSource, EnvVar, EnvVarSource, PodSecurityContext, PodSpec, SeccompProfile,
    SecretEnvSource, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

pub use config_map::{build_config_map, CONFIG_COMPONENT};
pub use deployment::build_deployment;
pub use hpa::build_hpa;
pub use job::{build_migration_job, migration_job_name, spec_migration_job_name};
pub use pdb::build_pdb;
pub use revision::{Revision, RETRY_MIGRATIONS_ANNOTATION};
pub use service::build_service;

use crate::crd::{OrderPlatform, SecretKeyRef};

/// The one field manager of every server-side apply of the operator's objects.
pub const FIELD_MANAGER: &str = "order-operator";
/// The port the service container listens on.
pub const CONTAINER_PORT: i32 = 8080;
/// The service container's name in the Deployment.
pub const CONTAINER_NAME: &str = "order-service";
/// The variable holding the PostgreSQL URL, from the database Secret.
pub const DATABASE_ENV: &str = "DATABASE_URL";
/// The variable holding the read replica's URL, from `spec.database.readReplicaSecretRef`.
pub const DATABASE_READ_ENV: &str = "DATABASE_READ_URL";
/// Label naming the migration a Job runs ([`Revision::migration_key`]).
pub const MIGRATION_LABEL: &str = "platform.orders.dev/migration";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// Labels every child carries; `component` is `api` or `migration`.
pub fn labels(platform: &OrderPlatform, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "order-service".to_owned(),
        ),
        (INSTANCE_LABEL.to_owned(), platform.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "order-operator".to_owned(),
        ),
        (COMPONENT_LABEL.to_owned(), component.to_owned()),
    ])
}

/// The labels that select the service pods.
pub fn selector_labels(platform: &OrderPlatform) -> BTreeMap<String, String> {
    labels(platform, "api")
        .into_iter()
        .filter(|(k, _)| k != "app.kubernetes.io/managed-by")
        .collect()
}

/// Metadata of a child: name, namespace, labels and the controller owner reference that
/// makes deleting the platform garbage-collect it.
pub fn child_meta(platform: &OrderPlatform, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: platform.namespace(),
        labels: Some(labels(platform, component)),
        owner_references: owner_reference(platform).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(platform: &OrderPlatform) -> Option<OwnerReference> {
    platform.controller_owner_ref(&())
}

/// Hex SHA-256 of `value`, shortened to `len` characters.
pub fn short_hash(value: &[u8], len: usize) -> String {
    let digest = Sha256::digest(value);
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..len]
        .to_owned()
}

/// Restricted pod security (the Kubernetes "restricted" profile).
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Environment both the service and the migration Job need: the database URL from `database`
/// (the revision's, which may be older than the spec's), and the AWS credentials and Kafka
/// security settings when their Secrets are named.
pub fn secret_env(
    platform: &OrderPlatform,
    database: &SecretKeyRef,
) -> (Vec<EnvVar>, Vec<EnvFromSource>) {
    let spec = &platform.spec;
    let env = vec![env_from_secret(DATABASE_ENV, database)];
    let env_from = [
        &spec.dynamodb.credentials_secret_ref,
        &spec.kafka.security_secret_ref,
    ]
    .into_iter()
    .flatten()
    .map(|name| EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: name.clone(),
            optional: Some(false),
        }),
        ..Default::default()
    })
    .collect();
    (env, env_from)
}

/// A variable from a Secret's key, which must exist.
pub fn env_from_secret(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `None` for an empty list, so an unset field stays unset in the applied object.
pub fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

/// Where the pods may run and what they pull with, shared by the service pods and the
/// migration Job (the Job must run where the service may, with the same registry access).
pub fn pod_placement(platform: &OrderPlatform) -> PodSpec {
    let spec = &platform.spec;
    PodSpec {
        service_account_name: spec.service_account_name.clone(),
        image_pull_secrets: non_empty(&spec.image_pull_secrets),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: non_empty(&spec.tolerations),
        security_context: Some(pod_security()),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Test objects, built as `OrderPlatform::test().with_image(..)`.

    use kube::api::ObjectMeta;

    use crate::crd::*;

    impl OrderPlatform {
        pub fn test() -> Self {
            let spec: OrderPlatformSpec = serde_json::from_value(serde_json::json!({
                "image": "registry.example/order-service:1.0.0",
                "database": {"secretRef": {"name": "orders-db"}},
                "dynamodb": {"tablePrefix": "shop"},
                "kafka": {"bootstrapServers": "kafka:9092", "topics": [{"name": "orders.events"}]},
                "auth": {"issuer": "https://id.example/", "audience": "orders-api"}
            }))
            .expect("valid test spec");
            let mut platform = OrderPlatform::new("shop", spec);
            platform.metadata = ObjectMeta {
                name: Some("shop".into()),
                namespace: Some("orders".into()),
                uid: Some("4f1c4a8e-0000-4000-8000-000000000001".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            };
            platform
        }

        pub fn with_image(mut self, image: &str) -> Self {
            self.spec.image = image.into();
            self
        }

        pub fn with_autoscaling(mut self, min: i32, max: i32) -> Self {
            self.spec.autoscaling = Some(AutoscalingSpec {
                min_replicas: min,
                max_replicas: max,
                target_cpu_utilization: 70,
            });
            self
        }
    }
}
