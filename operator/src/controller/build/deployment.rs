//! The service Deployment: probes, restricted security, placement from the spec, and the
//! revision (image, configuration, database) the rollout gate chose.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{
    child_meta, container_security, env_from_secret, labels, pod_placement, secret_env,
    selector_labels, shutdown, Revision, CONTAINER_NAME, CONTAINER_PORT, DATABASE_READ_ENV,
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

/// The service container's resources when the spec names none, from its measured use on a real
/// node (docs/performance.md): about 6 MiB idle, a 48 MiB peak and 360m CPU at 700 creates/s.
/// The request covers a steady load; the limit leaves room for bursts and a large pool.
fn default_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "100m"), ("memory", "64Mi")])),
        limits: Some(quantities(&[("memory", "256Mi")])),
        ..Default::default()
    }
}

/// The https participants' CA bundle, from its ConfigMap key (only the service calls them; the
/// migration Job does not need it).
fn participant_ca_env(platform: &OrderPlatform) -> Option<EnvVar> {
    let reference = platform
        .spec
        .participants
        .as_ref()?
        .ca_config_map_ref
        .as_ref()?;
    Some(EnvVar {
        name: "ORDER_SERVICE_PARTICIPANT_CA_PEM".into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: reference.name.clone(),
                key: reference.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// An https catalog's CA bundle, from its ConfigMap key.
fn catalog_ca_env(platform: &OrderPlatform) -> Option<EnvVar> {
    let reference = platform.spec.catalog.as_ref()?.ca_config_map_ref.as_ref()?;
    Some(EnvVar {
        name: "ORDER_SERVICE_CATALOG_CA_PEM".into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: reference.name.clone(),
                key: reference.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The Deployment running `revision` (the operator picks it: the spec's only once its
/// migrations succeeded). With autoscaling on, `replicas` is left to the HPA.
pub fn build_deployment(platform: &OrderPlatform, revision: &Revision) -> Deployment {
    let spec = &platform.spec;
    let (mut env, mut env_from) = secret_env(platform, &revision.database);
    // The service alone reads from the replica (migrations run on the primary).
    env.extend(
        spec.database
            .read_replica_secret_ref
            .as_ref()
            .map(|replica| env_from_secret(DATABASE_READ_ENV, replica)),
    );
    env.extend(participant_ca_env(platform));
    env.extend(catalog_ca_env(platform));
    env.extend(spec.env.iter().cloned());
    env_from.insert(
        0,
        EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: revision.config_map.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        },
    );
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(revision.image.clone()),
        args: Some(vec!["serve".into()]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: CONTAINER_PORT,
            ..Default::default()
        }]),
        env: Some(env),
        env_from: Some(env_from),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        liveness_probe: Some(probe("/livez", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        startup_probe: Some(probe("/livez", 2, 30)),
        lifecycle: Some(shutdown::pre_stop()),
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
    // A spread constraint without a selector would select nothing: default it to our pods.
    let spread: Vec<_> = spec
        .topology_spread_constraints
        .iter()
        .cloned()
        .map(|mut c| {
            c.label_selector.get_or_insert_with(|| LabelSelector {
                match_labels: Some(selector_labels(platform)),
                ..Default::default()
            });
            c
        })
        .collect();
    let strategy = spec.rolling_update.as_ref().map(|r| DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: r.max_surge.clone(),
            max_unavailable: r.max_unavailable.clone(),
        }),
    });
    Deployment {
        metadata: child_meta(platform, platform.name_any(), "api"),
        spec: Some(DeploymentSpec {
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(platform)),
                ..Default::default()
            },
            strategy,
            progress_deadline_seconds: spec.progress_deadline_seconds,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    affinity: spec.affinity.clone(),
                    topology_spread_constraints: (!spread.is_empty()).then_some(spread),
                    termination_grace_period_seconds: Some(
                        shutdown::termination_grace_period_seconds(),
                    ),
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
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
    use crate::controller::build::build_config_map;

    /// The service container's environment.
    fn service_env(platform: &OrderPlatform) -> Vec<EnvVar> {
        deployment(platform)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap_or_default()
    }

    fn deployment(platform: &OrderPlatform) -> Deployment {
        let config = build_config_map(platform).metadata.name.unwrap();
        let revision = Revision {
            image: "img:1".into(),
            ..Revision::desired(platform, config)
        };
        build_deployment(platform, &revision)
    }

    #[test]
    fn stops_gracefully_within_the_grace_period_and_takes_the_progress_deadline() {
        let d = deployment(&OrderPlatform::test());
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.progress_deadline_seconds, None);
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.termination_grace_period_seconds,
            Some(shutdown::termination_grace_period_seconds())
        );
        let hook = pod.containers[0].lifecycle.as_ref().unwrap();
        let sleep = hook.pre_stop.as_ref().unwrap().sleep.as_ref().unwrap();
        assert_eq!(sleep.seconds, shutdown::PRE_STOP_SECONDS);

        let resources = pod.containers[0].resources.as_ref().unwrap();
        assert_eq!(
            resources,
            &default_resources(),
            "measured defaults when unset"
        );
        assert_eq!(
            resources.limits.as_ref().unwrap()["memory"],
            Quantity("256Mi".into())
        );

        let mut platform = OrderPlatform::test();
        platform.spec.progress_deadline_seconds = Some(45);
        let d = deployment(&platform);
        assert_eq!(d.spec.unwrap().progress_deadline_seconds, Some(45));
    }

    #[test]
    fn the_participants_ca_bundle_comes_from_its_config_map_key() {
        let ca = |env: &[EnvVar]| {
            env.iter()
                .find(|e| e.name == "ORDER_SERVICE_PARTICIPANT_CA_PEM")
                .cloned()
        };
        assert!(ca(&service_env(&OrderPlatform::test())).is_none());
        let mut platform = OrderPlatform::test();
        platform.spec.participants = Some(
            serde_json::from_value(serde_json::json!({
                "customerUrl": "https://customers/", "inventoryUrl": "https://inventory/",
                "paymentUrl": "https://payments/",
                "caConfigMapRef": {"name": "shop-ca"}
            }))
            .unwrap(),
        );
        let var = ca(&service_env(&platform)).expect("the CA variable");
        let selector = var.value_from.unwrap().config_map_key_ref.unwrap();
        assert_eq!(
            (selector.name.as_str(), selector.key.as_str()),
            ("shop-ca", "ca.crt")
        );
    }

    #[test]
    fn a_read_replica_secret_becomes_the_services_read_url() {
        let read = |env: &[EnvVar]| env.iter().find(|e| e.name == "DATABASE_READ_URL").cloned();
        assert!(read(&service_env(&OrderPlatform::test())).is_none());
        let mut platform = OrderPlatform::test();
        platform.spec.database.read_replica_secret_ref = Some(
            serde_json::from_value(serde_json::json!({"name": "orders-replica", "key": "URL"}))
                .unwrap(),
        );
        let selector = read(&service_env(&platform))
            .expect("DATABASE_READ_URL")
            .value_from
            .unwrap()
            .secret_key_ref
            .unwrap();
        assert_eq!(
            (
                selector.name.as_str(),
                selector.key.as_str(),
                selector.optional
            ),
            ("orders-replica", "URL", Some(false))
        );
        // Migrations run on the primary only.
        let revision = Revision::desired(&platform, "shop-config-0".into());
        let job = crate::controller::build::build_migration_job(
            &platform,
            &revision,
            &revision.migration_key(&platform),
        );
        let job_env = job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default();
        assert!(read(&job_env).is_none());
    }

    #[test]
    fn the_catalog_ca_bundle_comes_from_its_config_map_key() {
        let catalog_ca = |platform: &OrderPlatform| {
            service_env(platform)
                .into_iter()
                .find(|e| e.name == "ORDER_SERVICE_CATALOG_CA_PEM")
        };
        assert!(catalog_ca(&OrderPlatform::test()).is_none());
        let mut platform = OrderPlatform::test();
        platform.spec.catalog = Some(
            serde_json::from_value(serde_json::json!({
                "url": "https://catalog/", "caConfigMapRef": {"name": "shop-ca", "key": "bundle.pem"}
            }))
            .unwrap(),
        );
        let selector = catalog_ca(&platform)
            .expect("the CA variable")
            .value_from
            .unwrap()
            .config_map_key_ref
            .unwrap();
        assert_eq!(
            (selector.name.as_str(), selector.key.as_str()),
            ("shop-ca", "bundle.pem")
        );
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
    fn the_revision_names_the_configuration_and_database_the_pods_read() {
        let platform = OrderPlatform::test();
        let revision = Revision {
            image: "img:7".into(),
            config_map: "shop-config-old".into(),
            database: crate::crd::SecretKeyRef {
                name: "orders-db-old".into(),
                key: "URL".into(),
            },
        };
        let built = build_deployment(&platform, &revision);
        assert_eq!(Revision::running(&built), Some(revision));
    }

    #[test]
    fn placement_and_the_rolling_update_come_from_the_spec() {
        let mut platform = OrderPlatform::test();
        platform.spec = serde_json::from_value(serde_json::json!({
            "image": "img:1",
            "database": {"secretRef": {"name": "db"}},
            "dynamodb": {"tablePrefix": "shop"},
            "kafka": {"bootstrapServers": "k:9092", "topics": [{"name": "orders.events"}]},
            "auth": {"disabled": true},
            "serviceAccountName": "orders",
            "imagePullSecrets": [{"name": "registry"}],
            "nodeSelector": {"pool": "apps"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}],
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}
        }))
        .unwrap();
        let spec = deployment(&platform).spec.unwrap();
        let rolling = spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("orders"));
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "registry");
        assert_eq!(pod.node_selector.unwrap()["pool"], "apps");
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert!(pod.affinity.unwrap().node_affinity.is_some());
        let spread = &pod.topology_spread_constraints.unwrap()[0];
        assert_eq!(
            spread.label_selector.as_ref().unwrap().match_labels,
            Some(selector_labels(&platform)),
            "defaulted to the service pods"
        );
        assert_eq!(
            deployment(&OrderPlatform::test()).spec.unwrap().strategy,
            None,
            "Kubernetes' defaults without rollingUpdate"
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
