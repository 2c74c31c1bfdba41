//! `order-operator run` with `OTEL_EXPORTER_OTLP_ENDPOINT` (a wiremock collector): each
//! reconcile is a span named `reconcile` carrying the platform's namespace and name, exported
//! over OTLP/HTTP; with `OTEL_TRACES_SAMPLER=always_off` reconciles go on and nothing is
//! exported; a sampler that does not exist stops the process at start, saying which ones do.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use order_operator::crd::OrderPlatform;
use serde_json::json;
use tokio::process::{Child, Command};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{install_crd, spec, IMAGE_1};
use crate::stack;
use crate::support::{connect, poll_until, TestNamespace, CONTROL_PLANE_TIMEOUT};

fn operator(namespace: &str, collector: &str, sampler: &str) -> (Child, String) {
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
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--resync",
            "2s",
        ])
        .env("ORDER_OPERATOR_LOG", "warn")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_TRACES_SAMPLER", sampler)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-operator");
    (child, format!("http://127.0.0.1:{port}/metrics"))
}

async fn collector() -> MockServer {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    collector
}

async fn reconciliations(metrics: &str) -> Option<u64> {
    let text = reqwest::get(metrics).await.ok()?.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with("order_operator_reconciliations_total"))?
        .split_whitespace()
        .last()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// The platform `traced`, its tables and topic on the local stack, so that reconciles succeed
/// and recur at each resync.
async fn create_platform(namespace: &TestNamespace) {
    let ns = namespace.name();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "shop-database"},
        "stringData": {"DATABASE_URL": "postgres://orders@postgres/orders"}
    }))
    .expect("secret");
    namespace
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the database Secret");
    let mut spec = spec(IMAGE_1);
    spec["dynamodb"] = json!({"tablePrefix": ns, "endpoint": stack::dynamodb_endpoint()});
    spec["kafka"] = json!({"bootstrapServers": stack::kafka_servers(),
                           "eventsTopic": format!("{ns}.events"),
                           "topics": [{"name": format!("{ns}.events")}]});
    let platform: OrderPlatform = serde_json::from_value(json!({
        "apiVersion": "platform.orders.dev/v1alpha1",
        "kind": "OrderPlatform",
        "metadata": {"name": "traced"},
        "spec": spec,
    }))
    .expect("platform");
    namespace
        .api::<OrderPlatform>()
        .create(&PostParams::default(), &platform)
        .await
        .expect("create the platform");
}

#[tokio::test]
async fn each_reconcile_is_a_span_with_the_platforms_name_and_namespace() {
    let client = connect().await;
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let collector = collector().await;
    let (_operator, _) = operator(namespace.name(), &collector.uri(), "parentbased_always_on");
    create_platform(&namespace).await;

    // OTLP/protobuf carries names and attribute values as plain UTF-8 bytes.
    let has = |body: &[u8], text: &str| body.windows(text.len()).any(|w| w == text.as_bytes());
    let ns = namespace.name().to_owned();
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "a reconcile span of the platform at the collector",
        || async {
            let requests = collector.received_requests().await.unwrap_or_default();
            requests
                .iter()
                .any(|r| has(&r.body, "reconcile") && has(&r.body, &ns) && has(&r.body, "traced"))
                .then_some(())
        },
    )
    .await;
    let exported = collector.received_requests().await.unwrap_or_default();
    assert!(
        exported.iter().any(|r| has(&r.body, "order-operator")),
        "the service name"
    );
}

#[tokio::test]
async fn with_sampling_off_reconciles_go_on_and_no_span_is_exported() {
    let client = connect().await;
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let collector = collector().await;
    let (_operator, metrics) = operator(namespace.name(), &collector.uri(), "always_off");
    create_platform(&namespace).await;
    // Reconciles every 2 s (resync); spans would leave within 100 ms of each.
    poll_until(CONTROL_PLANE_TIMEOUT, "five reconciles", || async {
        reconciliations(&metrics)
            .await
            .is_some_and(|n| n >= 5)
            .then_some(())
    })
    .await;
    let exported = collector.received_requests().await.unwrap_or_default();
    assert!(exported.is_empty(), "{} exports", exported.len());
}

#[tokio::test]
async fn a_sampler_that_does_not_exist_stops_the_operator_at_start() {
    let collector = collector().await;
    let output = Command::new(env!("CARGO_BIN_EXE_order-operator"))
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri())
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("exits at once")
        .expect("run order-operator");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OTEL_TRACES_SAMPLER=\"sometimes\"") && stderr.contains("always_on"),
        "{stderr}"
    );
}
