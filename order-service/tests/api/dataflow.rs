//! The operator's `DataFlowing` condition against a real service: the operator's controller
//! (in-process, watching a namespace of its own on the local control plane) reads the `/flowz`
//! of this service, run by the test on the host and reached through the operator's
//! `--service-url` (`Context::with_service_url`). The service delivers to a private moto; paused
//! with SIGSTOP, its DynamoDB backlog ages past `spec.dataFlow.maxPendingAgeSeconds` and the
//! condition turns False (`BacklogAging`); resumed, the backlog drains and it turns True again.
//! With the service stopped it is Unknown (`ServiceUnreachable`).
//!
//! Needs the stack and the local cluster (`KUBECONFIG` from `scripts/cluster.sh env`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::Reporter;
use kube::{Api, Client, Config, CustomResourceExt, ResourceExt};
use order_operator::controller::{self, Context};
use order_operator::crd::OrderPlatform;
use order_operator::metrics::Metrics;
use serde_json::json;

use crate::helpers::{sample_order, spawn_app_with, Options, Sinks};
use crate::servers::PrivateMoto;

const START_THE_CLUSTER: &str = "this test needs the local cluster: run `make test`, or \
     `make cluster-up` and `eval \"$(scripts/cluster.sh env)\"` first";

/// Waits for condition changes the operator makes on its resyncs (2 s apart here), after the
/// kwok pods of a new platform become available.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(90);

async fn connect() -> Client {
    let path = std::env::var_os("KUBECONFIG")
        .unwrap_or_else(|| panic!("KUBECONFIG is not set; {START_THE_CLUSTER}"));
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read KUBECONFIG: {e}; {START_THE_CLUSTER}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a kube config from KUBECONFIG");
    let client = Client::try_from(config).expect("a kube client");
    if let Err(e) = client.apiserver_version().await {
        panic!("the apiserver does not answer: {e}; {START_THE_CLUSTER}");
    }
    client
}

/// A namespace of this test's own, deleted on drop (also when the test panics).
struct TestNamespace {
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client) -> Self {
        let name = format!("flow-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let namespace: Namespace = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"orders.dev/test": "true"}}}),
        )
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create the test namespace");
        Self { name }
    }
}

impl Drop for TestNamespace {
    /// Drop cannot await: the delete runs on a thread with its own runtime.
    fn drop(&mut self) {
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let namespaces = Api::<Namespace>::all(connect().await);
                if let Err(e) = namespaces.delete(&name, &DeleteParams::background()).await {
                    eprintln!("deleting namespace {name}: {e}");
                }
            });
        });
        let _ = deleted.join();
    }
}

async fn install_crd(client: &Client) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = OrderPlatform::crd();
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply("order-service-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("install the OrderPlatform CRD");
}

/// The platform's condition `type`, as (status, reason, message), once it exists.
async fn condition(api: &Api<OrderPlatform>, type_: &str) -> Option<(String, String, String)> {
    let platform = api.get_opt("shop").await.ok()??;
    platform
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason, c.message))
}

async fn wait_condition(api: &Api<OrderPlatform>, type_: &str, status: &str, reason: &str) {
    let deadline = tokio::time::Instant::now() + CONDITION_TIMEOUT;
    loop {
        let seen = condition(api, type_).await;
        if seen
            .as_ref()
            .is_some_and(|(s, r, _)| s == status && r == reason)
        {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let conditions = api
                .get("shop")
                .await
                .ok()
                .and_then(|p| p.status)
                .map(|s| s.conditions);
            panic!("timed out waiting for {type_}={status} ({reason}); the conditions: {conditions:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn data_flowing_turns_false_while_a_sink_is_down_and_true_after_it_returns() {
    let client = connect().await;
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;

    let moto = PrivateMoto::start().await;
    let mut app = spawn_app_with(Options {
        sinks: Some(Sinks {
            dynamodb_endpoint: moto.endpoint.clone(),
            ..Sinks::fresh()
        }),
        relay_loop: true,
        ..Options::default()
    })
    .await;

    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "shop-database"},
        "stringData": {"DATABASE_URL": "postgres://orders@postgres/orders"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &namespace.name)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the database Secret");
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Reporter {
                controller: "order-operator".into(),
                instance: Some("dataflow-test".into()),
            },
            Arc::new(Metrics::default()),
            Duration::from_secs(2),
        )
        .with_provision_timeout(Duration::from_secs(10))
        .with_service_url(Some(app.address.clone())),
    );
    let operator = tokio::spawn(controller::run(
        ctx,
        Some(namespace.name.clone()),
        std::future::pending(),
    ));

    // The platform's tables and topic are on the stack; the service the operator reads is
    // this test's.
    let prefix = namespace.name.clone();
    let topic = format!("{prefix}.events");
    let platform: OrderPlatform = serde_json::from_value(json!({
        "apiVersion": "platform.orders.dev/v1alpha1",
        "kind": "OrderPlatform",
        "metadata": {"name": "shop"},
        "spec": {
            "image": "registry.example/order-service:1.0.0",
            "replicas": 1,
            "database": {"secretRef": {"name": "shop-database"}},
            "dynamodb": {"tablePrefix": prefix,
                         "endpoint": std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT")},
            "kafka": {"bootstrapServers": std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect("KAFKA_BOOTSTRAP_SERVERS"),
                      "eventsTopic": topic, "topics": [{"name": topic}]},
            "auth": {"issuer": "https://id.example/", "audience": "orders-api"},
            "dataFlow": {"maxPendingAgeSeconds": 10}
        }
    }))
    .expect("platform");
    let platforms: Api<OrderPlatform> = Api::namespaced(client.clone(), &namespace.name);
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .expect("create the platform");

    app.create_order(&sample_order()).await;
    wait_condition(&platforms, "DataFlowing", "True", "Flowing").await;
    let shown = platforms.get("shop").await.expect("platform");
    let flow = shown
        .status
        .and_then(|s| s.data_flow)
        .expect("status.dataFlow");
    let sinks: Vec<&str> = flow.sinks.iter().map(|s| s.sink.as_str()).collect();
    assert_eq!(sinks, ["dynamodb", "kafka"], "{flow:?}");

    // DynamoDB hangs: the change waits in the outbox for it, older and older.
    moto.pause();
    app.create_order(&sample_order()).await;
    wait_condition(&platforms, "DataFlowing", "False", "BacklogAging").await;
    let (_, _, message) = condition(&platforms, "DataFlowing")
        .await
        .expect("condition");
    assert!(
        message.contains("pending for dynamodb") && !message.contains("pending for kafka"),
        "{message}"
    );
    let flow = platforms
        .get("shop")
        .await
        .expect("platform")
        .status
        .and_then(|s| s.data_flow)
        .expect("status.dataFlow");
    let dynamodb = flow
        .sinks
        .iter()
        .find(|s| s.sink == "dynamodb")
        .expect("dynamodb");
    assert!(dynamodb.pending >= 1, "{flow:?}");
    assert!(
        dynamodb.oldest_pending_seconds.is_some_and(|age| age > 10),
        "{flow:?}"
    );
    // Ready is about serving orders, which goes on.
    assert_eq!(
        condition(&platforms, "Ready")
            .await
            .map(|(s, _, _)| s)
            .as_deref(),
        Some("True")
    );

    moto.resume();
    wait_condition(&platforms, "DataFlowing", "True", "Flowing").await;

    // A service that cannot be asked is not a backlog: Unknown, with why.
    app.stop().await.expect("stop the service");
    wait_condition(&platforms, "DataFlowing", "Unknown", "ServiceUnreachable").await;

    operator.abort();
    drop(namespace);
}
