//! Smoke suite for the local control plane (`scripts/cluster.sh`): proves that what the
//! operator's end-to-end suites rely on is real, not that the operator works. Nodes are kwok
//! fakes: no container runs, kwok sets pod status (Ready, Succeeded, or Failed for pods labelled
//! `orders.dev/simulate=fail`), while the apiserver, RBAC, admission, CEL and the controllers
//! (deployment, job, garbage collector, namespace) are the real ones.
//!
//! Needs `KUBECONFIG`; `make test` brings the cluster up and sets it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, PodSpec, PodTemplateSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{conditions, Condition};
use kube::{Api, CustomResource, CustomResourceExt, KubeSchema, Resource};
use serde::{Deserialize, Serialize};

use crate::support::{
    condition_is_true, connect, connect_as_service_account, poll_until, wait_for, TestNamespace,
    CONTROL_PLANE_TIMEOUT,
};

/// Never pulled: kwok nodes run no containers.
const IMAGE: &str = "registry.invalid/smoke:1";
/// The pod label kwok's `pod-fail-on-label` stage (scripts/cluster.sh) turns into a failed pod.
const SIMULATE_LABEL: &str = "orders.dev/simulate";

/// The annotation `kwokctl scale node` puts on its nodes, the only ones kwok manages.
const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

#[tokio::test]
async fn kwok_nodes_and_the_real_node_are_registered_and_ready() {
    let client = connect().await;

    let nodes = Api::<Node>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();

    let (kwok, real): (Vec<&Node>, Vec<&Node>) = nodes.items.iter().partition(|n| {
        n.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(KWOK_NODE_ANNOTATION))
            .is_some_and(|v| v == "fake")
    });
    assert!(!kwok.is_empty(), "the cluster has no kwok nodes");
    assert_eq!(real.len(), 1, "expected one real node (scripts/node.sh)");
    for node in nodes.items.iter() {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        assert!(
            condition_is_true("Ready").matches_object(Some(node)),
            "node {name} is not Ready: {:?}",
            node.status.as_ref().and_then(|s| s.conditions.as_ref())
        );
    }
    for node in &kwok {
        assert_eq!(
            node.spec.as_ref().and_then(|s| s.taints.as_ref()),
            None,
            "kwok node {:?} is tainted, so pods would not schedule on it",
            node.metadata.name
        );
    }
    // The real node: its own kubelet reports it (kwok would report itself), and its taint keeps
    // every pod that does not ask for it on the kwok nodes.
    let info = real[0]
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .expect("node info");
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "the real node's runtime is {}",
        info.container_runtime_version
    );
    assert!(
        info.kubelet_version.starts_with("v1."),
        "kubelet {}",
        info.kubelet_version
    );
    let taints = real[0]
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "orders.dev/real-node" && t.effect == "NoSchedule"),
        "the real node is not tainted: {taints:?}"
    );
}

#[tokio::test]
async fn a_deployment_becomes_available_with_all_its_replicas() {
    let client = connect().await;
    let namespace = TestNamespace::create(&client).await;
    let deployments = namespace.api::<Deployment>();

    deployments
        .create(&PostParams::default(), &build_deployment("web", 2))
        .await
        .unwrap();

    let deployment = wait_for(
        &deployments,
        "web",
        condition_is_true("Available"),
        CONTROL_PLANE_TIMEOUT,
    )
    .await
    .unwrap();
    let status = deployment.status.unwrap();
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.available_replicas, Some(2));
}

#[tokio::test]
async fn a_job_runs_to_completion() {
    let client = connect().await;
    let namespace = TestNamespace::create(&client).await;
    let jobs = namespace.api::<Job>();

    jobs.create(
        &PostParams::default(),
        &build_job("migrate", BTreeMap::new()),
    )
    .await
    .unwrap();

    let job = wait_for(
        &jobs,
        "migrate",
        condition_is_true("Complete"),
        CONTROL_PLANE_TIMEOUT,
    )
    .await
    .unwrap();
    let status = job.status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert_eq!(status.failed, None);
}

#[tokio::test]
async fn a_job_whose_pods_are_marked_to_fail_fails() {
    let client = connect().await;
    let namespace = TestNamespace::create(&client).await;
    let jobs = namespace.api::<Job>();
    let marked = BTreeMap::from([(SIMULATE_LABEL.to_owned(), "fail".to_owned())]);

    jobs.create(&PostParams::default(), &build_job("migrate", marked))
        .await
        .unwrap();

    let job = wait_for(
        &jobs,
        "migrate",
        condition_is_true("Failed"),
        CONTROL_PLANE_TIMEOUT,
    )
    .await
    .unwrap();
    let status = job.status.unwrap();
    assert_eq!(status.failed, Some(1));
    assert_eq!(status.succeeded, None);
    let failed = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_what_it_owns() {
    let client = connect().await;
    let namespace = TestNamespace::create(&client).await;
    let config_maps = namespace.api::<ConfigMap>();
    let owner = config_maps
        .create(&PostParams::default(), &build_config_map("owner", None))
        .await
        .unwrap();
    let owned = config_maps
        .create(
            &PostParams::default(),
            &build_config_map("owned", owner.controller_owner_ref(&())),
        )
        .await
        .unwrap();

    config_maps
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();

    let owned_uid = owned.metadata.uid.unwrap();
    wait_for(
        &config_maps,
        "owned",
        conditions::is_deleted(&owned_uid),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
}

#[tokio::test]
async fn a_service_account_may_use_the_verbs_its_role_grants_and_no_others() {
    let client = connect().await;
    let namespace = TestNamespace::create(&client).await;
    namespace
        .api::<Role>()
        .create(
            &PostParams::default(),
            &build_read_only_role("config-reader"),
        )
        .await
        .unwrap();
    namespace
        .api::<RoleBinding>()
        .create(
            &PostParams::default(),
            &build_role_binding("config-reader", namespace.name(), "reader"),
        )
        .await
        .unwrap();
    namespace
        .api::<ConfigMap>()
        .create(&PostParams::default(), &build_config_map("settings", None))
        .await
        .unwrap();
    let as_reader: Api<ConfigMap> = Api::namespaced(
        connect_as_service_account(namespace.name(), "reader").await,
        namespace.name(),
    );

    // RBAC decides from the apiserver's cache, which sees the new binding a moment later.
    let read = poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the reader may get ConfigMaps",
        || async { as_reader.get("settings").await.ok() },
    )
    .await;
    let created = as_reader
        .create(&PostParams::default(), &build_config_map("sneaky", None))
        .await;

    assert_eq!(read.metadata.name.as_deref(), Some("settings"));
    match created {
        Err(kube::Error::Api(status)) => assert!(status.is_forbidden(), "{status:?}"),
        other => panic!("expected 403 Forbidden for create, got {other:?}"),
    }
}

/// A custom resource whose CRD carries a CEL rule, standing in for the operator's own CRD.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug)]
#[kube(
    group = "smoke.orders.dev",
    version = "v1",
    kind = "ReplicaRange",
    namespaced
)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("min must not exceed max"))]
struct ReplicaRangeSpec {
    min: i32,
    max: i32,
}

#[tokio::test]
async fn a_crd_with_a_cel_rule_refuses_an_object_that_breaks_it() {
    let client = connect().await;
    let namespace = TestNamespace::create(&client).await;
    // Cluster-scoped and shared by every run: applied (idempotent), never deleted.
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd_name = ReplicaRange::crd_name();
    crds.patch(
        crd_name,
        &PatchParams::apply("order-operator-tests").force(),
        &Patch::Apply(ReplicaRange::crd()),
    )
    .await
    .unwrap();
    wait_for(
        &crds,
        crd_name,
        conditions::is_crd_established(),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    let ranges = namespace.api::<ReplicaRange>();

    let valid = ranges
        .create(
            &PostParams::default(),
            &ReplicaRange::new("valid", ReplicaRangeSpec { min: 1, max: 3 }),
        )
        .await;
    let inverted = ranges
        .create(
            &PostParams::default(),
            &ReplicaRange::new("inverted", ReplicaRangeSpec { min: 3, max: 1 }),
        )
        .await;

    valid.unwrap();
    match inverted {
        Err(kube::Error::Api(status)) => {
            assert!(status.is_invalid(), "{status:?}");
            assert!(
                status.message.contains("min must not exceed max"),
                "{}",
                status.message
            );
        }
        other => panic!("expected 422 Invalid for min > max, got {other:?}"),
    }
}

fn build_deployment(name: &str, replicas: i32) -> Deployment {
    let labels = BTreeMap::from([("app".to_owned(), name.to_owned())]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: build_pod_template(labels, None),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// A Job of one pod that is not retried, with `labels` on its pod template.
fn build_job(name: &str, labels: BTreeMap<String, String>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: build_pod_template(labels, Some("Never")),
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

fn build_pod_template(
    labels: BTreeMap<String, String>,
    restart_policy: Option<&str>,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".to_owned(),
                image: Some(IMAGE.to_owned()),
                ..Container::default()
            }],
            restart_policy: restart_policy.map(str::to_owned),
            ..PodSpec::default()
        }),
    }
}

fn build_config_map(name: &str, owner: Option<OwnerReference>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("key".to_owned(), "value".to_owned())])),
        ..ConfigMap::default()
    }
}

/// May read ConfigMaps (get, list, watch), and nothing else.
fn build_read_only_role(name: &str) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_owned()]),
            verbs: ["get", "list", "watch"].map(str::to_owned).to_vec(),
            ..PolicyRule::default()
        }]),
    }
}

/// Grants Role `role` to ServiceAccount `service_account` of `namespace`.
fn build_role_binding(role: &str, namespace: &str, service_account: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(role.to_owned()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: service_account.to_owned(),
            namespace: Some(namespace.to_owned()),
            ..Subject::default()
        }]),
    }
}
