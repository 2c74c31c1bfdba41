//! `helm install` with `dev.enabled=true` on the real node, an order through the Service, and
//! `helm uninstall`: the path a user takes, with every container real.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::Api;
use order_operator::crd::OrderPlatform;
use serde_json::{json, Value};

use crate::node::{assert_on_real_node, is_ready, job_pods, pods, terminated, REAL_NODE_TIMEOUT};
use crate::release::{Release, ONE_AT_A_TIME};
use crate::support::{condition_is_true, connect, poll_until, wait_for, TestNamespace};
use crate::tools::{helm, ok, tool};

/// The example order of the README (examples/order.json).
fn sample_order() -> Value {
    serde_json::from_str(include_str!("../../../examples/order.json")).expect("examples/order.json")
}

#[tokio::test]
async fn helm_install_runs_the_operator_the_dev_stack_and_a_platform_in_real_containers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let client = connect().await;
    let namespace = TestNamespace::create(&client).await;
    let ns = namespace.name().to_owned();
    let started = Instant::now();

    // 1. The chart with the images built here (its defaults), the dev stack, all on the real node.
    let installed = Release::install(&namespace).await;
    let release = installed.name.clone();
    eprintln!("helm install --wait: {:?}", started.elapsed());

    // The operator: real pods on the real node, one of them holding the leader Lease through
    // its in-cluster config and ServiceAccount.
    let pod_api: Api<Pod> = namespace.api();
    let operators = pods(&pod_api, &format!("{release}-order-operator-")).await;
    assert!(!operators.is_empty(), "no operator pods");
    for pod in &operators {
        assert_on_real_node(pod);
        assert!(is_ready(pod), "operator pod not Ready");
    }
    let lease_name = format!("{release}-order-operator-leader");
    let leases: Api<Lease> = namespace.api();
    let holder = poll_until(
        REAL_NODE_TIMEOUT,
        "an operator pod holds the Lease",
        || async {
            leases
                .get_opt(&lease_name)
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity)
        },
    )
    .await;
    assert!(
        operators
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(holder.as_str())),
        "Lease holder {holder} is not one of the operator pods"
    );
    for component in ["postgres", "kafka", "dynamodb"] {
        for pod in pods(&pod_api, &format!("{release}-{component}-")).await {
            assert_on_real_node(&pod);
        }
    }

    // 2. The chart's example platform: migrations in a real container, tables in the in-cluster
    // moto, its topic in the in-cluster Kafka, the service's pods Ready through /readyz.
    let platforms: Api<OrderPlatform> = namespace.api();
    wait_for(
        &platforms,
        "shop",
        condition_is_true("Ready"),
        REAL_NODE_TIMEOUT,
    )
    .await;
    eprintln!("platform Ready: {:?}", started.elapsed());
    assert_migration_container_ran(&namespace.api(), &pod_api).await;
    let service_pods = pods(&pod_api, "shop-").await;
    let serving: Vec<&Pod> = service_pods
        .iter()
        .filter(|p| {
            !p.metadata
                .name
                .as_deref()
                .unwrap_or("")
                .starts_with("shop-migrate-")
        })
        .collect();
    assert!(!serving.is_empty(), "no service pods");
    for pod in serving {
        assert_on_real_node(pod);
        assert!(is_ready(pod), "service pod not Ready");
        let probe = pod.spec.as_ref().expect("spec").containers[0]
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|g| g.path.clone());
        assert_eq!(probe.as_deref(), Some("/readyz"));
    }

    // 3. An order through the Service (its NodePort on the node's address).
    let base = installed.base_url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let created: Value = {
        let response = http
            .post(format!("{base}/v1/orders"))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&sample_order())
            .send()
            .await
            .expect("POST /v1/orders through the Service");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        response.json().await.expect("order JSON")
    };
    let id = created["id"].as_str().expect("order id").to_owned();
    let read: Value = http
        .get(format!("{base}/v1/orders/{id}"))
        .send()
        .await
        .expect("GET the order")
        .error_for_status()
        .expect("GET the order: 200")
        .json()
        .await
        .expect("order JSON");
    assert_eq!(read["id"], created["id"]);
    assert_eq!(read["total_minor"], created["total_minor"]);
    // Its status history, projected into the in-cluster DynamoDB API by the outbox relay.
    let history = poll_until(
        REAL_NODE_TIMEOUT,
        "the order's history is in DynamoDB",
        || {
            let url = format!("{base}/v1/orders/{id}/history");
            let http = http.clone();
            async move {
                let body: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                let entries = body["items"].as_array()?.clone();
                (!entries.is_empty()).then_some(entries)
            }
        },
    )
    .await;
    assert!(
        history.iter().any(|e| e["status"] == "PENDING"),
        "history without the pending status: {history:?}"
    );
    // Its event on the in-cluster Kafka, read with the broker's own console consumer.
    let event = consume_one_event(&ns, &release).await;
    assert!(
        event.contains(&id),
        "the event on orders.events is not this order's: {event}"
    );
    eprintln!(
        "order {id} created, read, projected and published: {:?}",
        started.elapsed()
    );

    // 4. A user's own platform (not the chart's), then `helm uninstall`.
    let mine = user_platform(&ns, &release);
    platforms
        .create(&PostParams::default(), &mine)
        .await
        .expect("create the user's platform");
    helm(&[
        "uninstall",
        &release,
        "--namespace",
        &ns,
        "--wait",
        "--timeout",
        "3m",
    ])
    .await;
    // Nothing of the release stays behind on the node, nothing stuck in Terminating.
    poll_until(REAL_NODE_TIMEOUT, "the release's pods are gone", || async {
        let left: Vec<String> = pod_api
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(crate::node::NODE_NAME)
            })
            .filter_map(|p| p.metadata.name)
            .collect();
        left.is_empty().then_some(())
    })
    .await;
    // Helm never deletes CRDs; the user's platform survives the release.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.get("orderplatforms.platform.orders.dev")
        .await
        .expect("the CRD survives helm uninstall");
    let kept = platforms
        .get("mine")
        .await
        .expect("the user's platform survives helm uninstall");
    assert!(kept.metadata.deletion_timestamp.is_none());
    eprintln!("helm uninstall done: {:?}", started.elapsed());
}

/// The migration Job of the running revision finished, and its container (on the real node)
/// exited 0.
async fn assert_migration_container_ran(jobs: &Api<Job>, pod_api: &Api<Pod>) {
    let job = jobs
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
        .into_iter()
        .find(|j| {
            j.metadata
                .name
                .as_deref()
                .unwrap_or("")
                .starts_with("shop-migrate-")
        })
        .expect("a migration Job");
    let job_name = job.metadata.name.clone().expect("name");
    assert_eq!(
        job.status.as_ref().and_then(|s| s.succeeded),
        Some(1),
        "Job {job_name}"
    );
    let runs = job_pods(pod_api, &job_name).await;
    let run = runs
        .iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .unwrap_or_else(|| panic!("no Succeeded pod of {job_name}"));
    assert_on_real_node(run);
    let exit = terminated(run).map(|t| t.exit_code);
    assert_eq!(exit, Some(0), "the migration container's exit code");
}

/// The first event on the platform's topic, printed by Kafka's console consumer inside the
/// broker's pod (the broker advertises its in-cluster name, which only pods resolve).
async fn consume_one_event(ns: &str, release: &str) -> String {
    let kubectl = tool("ORDER_PLATFORM_KUBECTL");
    let deployment = format!("deployment/{release}-kafka");
    ok(
        &kubectl,
        &[
            "exec",
            "--namespace",
            ns,
            &deployment,
            "--",
            // The image's JRE and jars (scripts/images.sh dev); no shell needed: Java expands
            // the classpath wildcard itself.
            "java",
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-Dlog4j2.configurationFile=/opt/kafka/config/log4j2-tools.properties",
            "-cp",
            "/opt/kafka/libs/*",
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            "localhost:9092",
            "--topic",
            "orders.events",
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "60000",
        ],
        None,
    )
    .await
}

/// A platform the user applies themselves, next to the chart's: `Retain`, so it carries no
/// finalizer and outlives the operator.
fn user_platform(ns: &str, release: &str) -> OrderPlatform {
    serde_json::from_value(json!({
        "apiVersion": "platform.orders.dev/v1alpha1",
        "kind": "OrderPlatform",
        "metadata": {"name": "mine", "namespace": ns},
        "spec": {
            "image": "localhost/order-service:0.1.0",
            "database": {"secretRef": {"name": format!("{release}-dev-database")}},
            "dynamodb": {
                "endpoint": format!("http://{release}-dynamodb:8000"),
                "credentialsSecretRef": format!("{release}-dev-aws"),
                "tablePrefix": "mine",
            },
            "kafka": {
                "bootstrapServers": format!("{release}-kafka:9092"),
                "topics": [{"name": "mine.events", "partitions": 1}],
                "eventsTopic": "mine.events",
            },
            "auth": {"disabled": true},
            "deletionPolicy": "Retain",
        }
    }))
    .expect("a valid OrderPlatform")
}
