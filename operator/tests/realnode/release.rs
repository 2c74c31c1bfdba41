//! A release of the chart on the real node, as the README installs it: the operator, the dev
//! stack and the example platform `shop`, all placed on the node by
//! `examples/real-node-values.yaml`.

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::Api;
use order_operator::crd::OrderPlatform;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::node::{address, pods, REAL_NODE_TIMEOUT};
use crate::support::{condition_is_true, poll_until, wait_for, TestNamespace};
use crate::tools::{chart, helm};

/// One release at a time on the node: each runs a JVM, PostgreSQL and moto besides the
/// platform, and the machine has two cores. (tokio's Mutex works across the tests' runtimes.)
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The example platform the chart's dev stack creates.
pub const PLATFORM: &str = "shop";

/// A NodePort nobody else uses (the range is the apiserver's default 30000-32767).
fn free_node_port() -> u16 {
    30100 + (uuid::Uuid::new_v4().as_u128() % 2600) as u16
}

pub struct Release {
    pub name: String,
    pub namespace: String,
    /// The API through the platform's Service, `http://<node>:<nodePort>`.
    pub base_url: String,
}

impl Release {
    /// `helm install --wait` into `namespace`: the operator's and the dev stack's Deployments
    /// are Available (their readiness probes passed in real containers) when this returns.
    pub async fn install(namespace: &TestNamespace) -> Self {
        Self::install_with(namespace, &[]).await
    }

    /// [`Release::install`] with more `--set` values (`key=value` each).
    pub async fn install_with(namespace: &TestNamespace, sets: &[&str]) -> Self {
        let name = format!("rn{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let node_port = free_node_port();
        let chart = chart();
        let values: PathBuf = chart.join("../../examples/real-node-values.yaml");
        let mut args: Vec<String> = vec![
            "install".into(),
            name.clone(),
            chart.to_str().expect("UTF-8 path").into(),
            "--namespace".into(),
            namespace.name().into(),
            // The README's values for the real node: placement of the operator, the dev stack
            // and the example platform.
            "--values".into(),
            values.to_str().expect("UTF-8 path").into(),
            "--set".into(),
            format!("dev.nodePort={node_port}"),
            // One operator per platform: a release of another test (still terminating, say)
            // must not reconcile this one's platform.
            "--set".into(),
            format!("operator.watchNamespace={}", namespace.name()),
        ];
        for set in sets {
            args.extend(["--set".to_owned(), (*set).to_owned()]);
        }
        args.extend(["--wait", "--timeout", "5m"].map(str::to_owned));
        helm(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        Self {
            name,
            namespace: namespace.name().to_owned(),
            base_url: format!("http://{}:{node_port}", address()),
        }
    }

    /// Merges `spec` into the example platform's spec.
    pub async fn patch_platform(&self, platforms: &Api<OrderPlatform>, spec: Value) {
        platforms
            .patch(
                PLATFORM,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patch the platform");
    }

    /// Waits until the platform is Ready for its current generation with `replicas` pods ready,
    /// and returns it.
    pub async fn ready(
        &self,
        platforms: &Api<OrderPlatform>,
        deployments: &Api<Deployment>,
        replicas: i32,
    ) -> OrderPlatform {
        wait_for(
            platforms,
            PLATFORM,
            condition_is_true("Ready"),
            REAL_NODE_TIMEOUT,
        )
        .await;
        poll_until(
            REAL_NODE_TIMEOUT,
            "the platform is Ready for its generation with every replica ready",
            || async {
                let platform = platforms.get(PLATFORM).await.ok()?;
                let status = platform.status.as_ref()?;
                let ready = status.conditions.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.observed_generation == platform.metadata.generation
                });
                let deployment = deployments.get(PLATFORM).await.ok()?;
                let d = deployment.status?;
                let settled = d.ready_replicas == Some(replicas)
                    && d.updated_replicas == Some(replicas)
                    && d.replicas == Some(replicas);
                (ready && settled).then_some(platform)
            },
        )
        .await
    }

    /// The platform's service pods (not its migration Jobs').
    pub async fn service_pods(&self, pod_api: &Api<Pod>) -> Vec<Pod> {
        pods(pod_api, &format!("{PLATFORM}-"))
            .await
            .into_iter()
            .filter(|p| {
                !p.metadata
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with(&format!("{PLATFORM}-migrate-"))
            })
            .collect()
    }
}
