//! End to end on the real node (`scripts/node.sh`: containerd, runc, kubelet, kube-proxy and
//! CoreDNS beside the kwok nodes): the chart installed with the images `scripts/images.sh` built,
//! every pod a real container. Nothing here is simulated: the operator runs in a pod with its
//! ServiceAccount and in-cluster config, the migration Job's container runs `order-service
//! migrate`, the service's pods are Ready only when their `/readyz` probe answers, and the API is
//! called through its Service.
//!
//! The real node is tainted `orders.dev/real-node`; the suite opts its pods in with the values
//! the README uses, `examples/real-node-values.yaml`. Rollout behaviour on real pods (upgrades
//! under load, crash loops) grows here.

// Shared with the kwok suites; this binary uses only part of them.
#[allow(dead_code)]
#[path = "../e2e/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../common/tools.rs"]
mod tools;

mod dataflow;
mod install;
mod load;
mod node;
mod release;
mod rollout;
