//! The `DataFlowing` condition on real pods: the operator, in its pod, reads the example
//! platform's `/flowz` through the platform's Service by its in-cluster name. With the dev
//! stack's moto frozen (its container's freezer cgroup: DynamoDB hangs) the backlog of an order's
//! event ages past `maxPendingAgeSeconds` and the condition turns False (`BacklogAging`); thawed,
//! the relay delivers it and the condition turns True again.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use order_operator::crd::OrderPlatform;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::node::{pods, REAL_NODE_TIMEOUT};
use crate::release::{Release, ONE_AT_A_TIME, PLATFORM};
use crate::support::{connect, poll_until, TestNamespace};

async fn node(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/node.sh");
    let out = Command::new(script)
        .args(args)
        .output()
        .await
        .expect("scripts/node.sh");
    assert!(
        out.status.success(),
        "scripts/node.sh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for `DataFlowing` with `status` and `reason`; returns its message.
async fn wait_flowing(platforms: &Api<OrderPlatform>, status: &str, reason: &str) -> String {
    poll_until(
        REAL_NODE_TIMEOUT,
        &format!("DataFlowing={status} ({reason})"),
        || async {
            let platform = platforms.get(PLATFORM).await.ok()?;
            let condition = platform
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "DataFlowing")?;
            (condition.status == status && condition.reason == reason).then_some(condition.message)
        },
    )
    .await
}

#[tokio::test]
async fn data_flowing_turns_false_while_dynamodb_hangs_and_true_after_on_real_pods() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let client = connect().await;
    let namespace = TestNamespace::create(&client).await;
    let ns = namespace.name().to_owned();
    let started = Instant::now();
    // Short resyncs, and provisioning calls that give up soon on the hung moto.
    let release = Release::install_with(
        &namespace,
        &["operator.resync=3s", "operator.provisionTimeout=5s"],
    )
    .await;
    let platforms: Api<OrderPlatform> = namespace.api();
    release
        .patch_platform(
            &platforms,
            json!({"dataFlow": {"maxPendingAgeSeconds": 10}}),
        )
        .await;
    // Read from inside the cluster: the operator's pod through the Service's DNS name.
    wait_flowing(&platforms, "True", "Flowing").await;
    eprintln!("DataFlowing True: {:?}", started.elapsed());

    let pod_api: Api<Pod> = namespace.api();
    let moto = pods(&pod_api, &format!("{}-dynamodb-", release.name))
        .await
        .first()
        .expect("the dev stack's moto pod")
        .name_any();
    node(&["freeze", &ns, &moto]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let order: Value =
        serde_json::from_str(include_str!("../../../examples/order.json")).expect("order");
    let created = http
        .post(format!("{}/v1/orders", release.base_url))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&order)
        .send()
        .await
        .expect("POST /v1/orders through the Service");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let message = wait_flowing(&platforms, "False", "BacklogAging").await;
    eprintln!("DataFlowing False: {:?}: {message}", started.elapsed());
    assert!(message.contains("pending for dynamodb"), "{message}");
    assert!(!message.contains("pending for kafka"), "{message}");

    node(&["thaw", &ns, &moto]).await;
    wait_flowing(&platforms, "True", "Flowing").await;
    eprintln!("DataFlowing True again: {:?}", started.elapsed());
}
