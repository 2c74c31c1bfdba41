//! Two `order-operator run` processes: only the Lease holder reconciles, and the standby takes
//! over within the lease duration when the leader is killed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use order_operator::crd::OrderPlatform;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::{connect, poll_until, wait_for, TestNamespace, CONTROL_PLANE_TIMEOUT};

const LEASE: Duration = Duration::from_secs(3);

struct Operator {
    child: Child,
    metrics: String,
}

impl Operator {
    fn start(namespace: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_order-operator"))
            .args([
                "run",
                "--watch-namespace",
                namespace,
                "--lease-namespace",
                namespace,
            ])
            .args([
                "--lease-duration",
                &format!("{}s", LEASE.as_secs()),
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .env("ORDER_OPERATOR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start order-operator");
        Self {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// `(leading, reconciliations)` from `/metrics`, once it answers.
    async fn state(&self) -> Option<(bool, u64)> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        let value = |name: &str| -> Option<u64> {
            text.lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .last()?
                .parse::<f64>()
                .ok()
                .map(|v| v as u64)
        };
        Some((
            value("order_operator_leader ")? == 1,
            value("order_operator_reconciliations_total").unwrap_or(0),
        ))
    }
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over_when_it_dies() {
    let client = connect().await;
    crate::harness::install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let ns = namespace.name().to_owned();
    let mut operators = [Operator::start(&ns), Operator::start(&ns)];

    let leader = poll_until(CONTROL_PLANE_TIMEOUT, "one operator to lead", || async {
        let a = operators[0].state().await?;
        let b = operators[1].state().await?;
        match (a.0, b.0) {
            (true, false) => Some(0),
            (false, true) => Some(1),
            _ => None,
        }
    })
    .await;
    let standby = 1 - leader;
    for operator in &operators {
        let base = operator.metrics.trim_end_matches("/metrics");
        for probe in ["livez", "readyz"] {
            let status = reqwest::get(format!("{base}/{probe}"))
                .await
                .expect(probe)
                .status();
            assert_eq!(status, 200, "{probe}: the standby is healthy and ready too");
        }
    }

    let platform: OrderPlatform = serde_json::from_value(json!({
        "apiVersion": "platform.orders.dev/v1alpha1", "kind": "OrderPlatform", "metadata": {"name": "shop"},
        "spec": {"image": "registry.example/order-service:1.0.0", "database": {"secretRef": {"name": "db"}},
                 "dynamodb": {"tablePrefix": namespace.name(), "endpoint": crate::stack::dynamodb_endpoint()},
                 "kafka": {"bootstrapServers": crate::stack::kafka_servers(), "eventsTopic": namespace.name(),
                           "topics": [{"name": namespace.name()}]},
                 "auth": {"disabled": true}}
    }))
    .expect("platform");
    let platforms: Api<OrderPlatform> = namespace.api();
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .expect("create");
    wait_for(
        &platforms,
        "shop",
        crate::support::condition_is_true("Ready"),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    let (_, reconciled) = operators[leader].state().await.expect("leader metrics");
    let (leading, idle) = operators[standby].state().await.expect("standby metrics");
    assert!(reconciled > 0, "the leader reconciled");
    assert_eq!((leading, idle), (false, 0), "the standby did nothing");

    operators[leader]
        .child
        .start_kill()
        .expect("kill -9 the leader");
    operators[leader].child.wait().await.expect("reaped");
    let killed = Instant::now();
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the standby to take the Lease",
        || async {
            operators[standby]
                .state()
                .await
                .filter(|(leading, _)| *leading)
                .map(|_| ())
        },
    )
    .await;
    let took = killed.elapsed();
    assert!(took <= LEASE * 3, "took over in {took:?}, lease {LEASE:?}");

    // The new leader reconciles: an image change reaches the Deployment.
    platforms
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "registry.example/order-service:2.0.0"}})),
        )
        .await
        .expect("patch");
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the new leader to roll out 2.0.0",
        || async {
            let status = platforms.get("shop").await.ok()?.status?;
            (status.current_image.as_deref() == Some("registry.example/order-service:2.0.0"))
                .then_some(())
        },
    )
    .await;
}
