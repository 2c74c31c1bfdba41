//! The real node as the suites see it: its name, its taint and label, its address, and the pods
//! on it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::api::ListParams;
use kube::Api;

/// `scripts/node.sh`'s node name.
pub const NODE_NAME: &str = "orders-node";

/// How long real containers may take: image unpacking, a JVM's start (Kafka), initdb, probes
/// with their periods. Each takes seconds here; the margin is for a loaded 2-core machine.
pub const REAL_NODE_TIMEOUT: Duration = Duration::from_secs(300);

/// The real node's address (`ORDER_PLATFORM_NODE_IP`, from `scripts/cluster.sh env`): NodePort
/// Services answer there, from this machine only.
pub fn address() -> String {
    std::env::var("ORDER_PLATFORM_NODE_IP").unwrap_or_else(|_| {
        panic!(
            "ORDER_PLATFORM_NODE_IP is not set: run `make test`, or `make cluster-up` and \
             eval \"$(scripts/cluster.sh env)\""
        )
    })
}

/// The pods of `namespace` whose name starts with `prefix`.
pub async fn pods(pods: &Api<Pod>, prefix: &str) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.name.as_deref().unwrap_or("").starts_with(prefix))
        .collect()
}

/// Whether kubelet reports the pod Ready (its readiness probes passed).
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Asserts the pod runs on the real node, so a container really ran.
pub fn assert_on_real_node(pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE_NAME),
        "pod {name} is not on the real node"
    );
}

/// The pods Job `job` ran.
pub async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("list the Job's pods")
        .items
}

/// How the pod's (first) container ended, once it has.
pub fn terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}
