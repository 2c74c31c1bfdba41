//! The service Deployment: probes, restricted security, and a configuration checksum that
//! rolls the pods when the ConfigMap changes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource,
    HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::config_map::config_map_name;
use super::{
    child_meta, container_security, labels, pod_security, secret_env, selector_labels, short_hash,
    CONFIG_CHECKSUM, CONTAINER_PORT,
};
use crate::crd::OrderPlatform;

fn probe(path: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

/// The checksum of the configuration data the pods read.
pub fn config_checksum(data: &BTreeMap<String, String>) -> String {
    let canonical = serde_json::to_string(data).unwrap_or_default();
    short_hash(canonical.as_bytes(), 16)
}

/// The Deployment running `image` (the operator picks it: the spec's image only once its
/// migrations succeeded). With autoscaling on, `replicas` is left to the HPA.
pub fn build_deployment(
    platform: &OrderPlatform,
    image: &str,
    config: &BTreeMap<String, String>,
) -> Deployment {
    let spec = &platform.spec;
    let (mut env, mut env_from) = secret_env(platform);
    env.extend(spec.env.iter().cloned());
    env_from.insert(
        0,
        EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_map_name(platform),
                optional: Some(false),
            }),
            ..Default::default()
        },
    );
    let container = Container {
        name: "order-service".into(),
        image: Some(image.into()),
        args: Some(vec!["serve".into()]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: CONTAINER_PORT,
            ..Default::default()
        }]),
        env: Some(env),
        env_from: Some(env_from),
        resources: spec.resources.clone(),
        liveness_probe: Some(probe("/livez", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        startup_probe: Some(probe("/livez", 2, 30)),
        security_context: Some(container_security()),
        // The root filesystem is read-only; /tmp is the only scratch space.
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut pod_labels = labels(platform, "api");
    pod_labels.extend(selector_labels(platform));
    Deployment {
        metadata: child_meta(platform, platform.name_any(), "api"),
        spec: Some(DeploymentSpec {
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(platform)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_CHECKSUM.to_owned(),
                        config_checksum(config),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(pod_security()),
                    automount_service_account_token: Some(false),
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
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
    use crate::controller::build::build_config_map;

    fn deployment(platform: &OrderPlatform) -> Deployment {
        let config = build_config_map(platform).data.unwrap();
        build_deployment(platform, "img:1", &config)
    }

    #[test]
    fn runs_the_chosen_image_with_probes_and_restricted_security() {
        let d = deployment(&OrderPlatform::test());
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(c.args.as_ref().unwrap(), &["serve"]);
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/livez")
        );
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &["ALL"]
        );
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let db = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "DATABASE_URL")
            .unwrap();
        assert_eq!(
            db.value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "orders-db"
        );
    }

    #[test]
    fn replicas_come_from_the_spec_unless_autoscaling_owns_them() {
        assert_eq!(
            deployment(&OrderPlatform::test()).spec.unwrap().replicas,
            Some(2)
        );
        assert_eq!(
            deployment(&OrderPlatform::test().with_autoscaling(2, 5))
                .spec
                .unwrap()
                .replicas,
            None
        );
    }

    #[test]
    fn a_configuration_change_changes_the_pod_template() {
        let checksum = |p: &OrderPlatform| {
            deployment(p)
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .annotations
                .unwrap()[CONFIG_CHECKSUM]
                .clone()
        };
        let before = OrderPlatform::test();
        let mut after = OrderPlatform::test();
        after.spec.kafka.bootstrap_servers = "other:9092".into();
        assert_ne!(checksum(&before), checksum(&after));
        assert_eq!(
            checksum(&before),
            checksum(&OrderPlatform::test()),
            "stable for the same config"
        );
    }

    #[test]
    fn the_selector_matches_the_pod_labels() {
        let spec = deployment(&OrderPlatform::test()).spec.unwrap();
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in spec.selector.match_labels.unwrap() {
            assert_eq!(pod_labels.get(&k), Some(&v));
        }
    }
}
