//! `kill -9` of the service in the middle of a stream of writes: clients retry with their
//! idempotency keys; nothing is lost or duplicated in PostgreSQL, DynamoDB or Kafka.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use order_service::domain::OrderStatus;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use tokio::process::{Child, Command};

use crate::helpers::{fresh_database, sample_order, serve_config, url, wait_until, Options, Sinks};
use crate::sinks::{consume_until, dedupe, versions_per_order};

const BIN: &str = env!("CARGO_BIN_EXE_order-service");
const ORDERS: usize = 40;

fn start(db: &PgConnectOptions, sinks: &Sinks, port: u16) -> Child {
    Command::new(BIN)
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &url(db),
        ])
        .args([
            "--sinks",
            "dynamodb,kafka",
            "--dynamodb-endpoint",
            &sinks.dynamodb_endpoint,
        ])
        .args([
            "--dynamodb-table-prefix",
            &sinks.table_prefix,
            "--kafka-bootstrap-servers",
            &sinks.kafka_bootstrap,
        ])
        .args([
            "--kafka-topic",
            &sinks.topic,
            "--relay-poll-interval",
            "100ms",
            "--relay-max-backoff",
            "500ms",
        ])
        .env("ORDER_SERVICE_LOG", "warn")
        .env("ORDER_SERVICE_AUTH_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-service")
}

/// Sends a request until it gets an HTTP answer (the service may be down meanwhile).
async fn until_answered(request: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match request().send().await {
            Ok(response) if !response.status().is_server_error() => return response,
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("no answer within 60 s: {other:?}"),
        }
    }
}

/// One client: create with its key, then confirm; both retried until they took effect.
async fn client_flow(
    base: String,
    http: reqwest::Client,
    key: String,
    done: Arc<AtomicUsize>,
) -> String {
    let created = until_answered(|| {
        http.post(format!("{base}/v1/orders"))
            .header("idempotency-key", &key)
            .json(&sample_order())
    })
    .await;
    assert_eq!(created.status(), 201, "create {key}");
    let id = created.json::<Value>().await.expect("order")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let confirmed = until_answered(|| {
        http.post(format!("{base}/v1/orders/{id}/status"))
            .header("if-match", "\"1\"")
            .json(&json!({"status": "CONFIRMED"}))
    })
    .await;
    // 412 means an earlier attempt committed before the crash: the order is already at v2.
    assert!(
        matches!(confirmed.status().as_u16(), 200 | 412),
        "confirm {id}: {}",
        confirmed.status()
    );
    done.fetch_add(1, Ordering::SeqCst);
    id
}

#[tokio::test]
async fn kill_9_mid_stream_loses_and_duplicates_nothing() {
    let db = fresh_database().await;
    let sinks = Sinks::fresh();
    let options = Options {
        sinks: Some(sinks.clone()),
        ..Options::default()
    };
    let config = serve_config(&db, &options);
    let pool = order_service::db::pool(db.clone(), 4, Duration::from_secs(5));
    order_service::startup::migrate(&pool)
        .await
        .expect("migrate");
    crate::helpers::provision(&config.sinks).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut child = start(&db, &sinks, port);
    wait_until(Duration::from_secs(30), "the service to answer", || {
        let request = http.get(format!("{base}/livez")).send();
        async move { request.await.is_ok() }
    })
    .await;

    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..ORDERS)
        .map(|i| {
            tokio::spawn(client_flow(
                base.clone(),
                http.clone(),
                format!("crash-{i}"),
                done.clone(),
            ))
        })
        .collect();

    // Kill the service hard once some clients are through and others are mid-flight.
    wait_until(
        Duration::from_secs(60),
        "a third of the clients to finish",
        || {
            let done = done.clone();
            async move { done.load(Ordering::SeqCst) >= ORDERS / 3 }
        },
    )
    .await;
    child.start_kill().expect("kill -9");
    child.wait().await.expect("reaped");
    let finished_before_crash = done.load(Ordering::SeqCst);
    let mut child = start(&db, &sinks, port);

    let mut ids = Vec::new();
    for client in clients {
        ids.push(client.await.expect("client"));
    }
    assert!(
        finished_before_crash < ORDERS,
        "the crash happened mid-stream"
    );

    // PostgreSQL: one order per key, each confirmed once.
    let orders: Vec<(String, i64)> = sqlx::query_as("SELECT status, version FROM orders")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(orders.len(), ORDERS);
    assert!(
        orders.iter().all(|(s, v)| s == "CONFIRMED" && *v == 2),
        "{orders:?}"
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 2 * ORDERS as i64, "one event per committed change");

    // Both sinks get everything, once.
    wait_until(
        Duration::from_secs(60),
        "the relay to drain the outbox",
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM outbox_deliveries WHERE state <> 'delivered'",
                )
                .fetch_one(&pool)
                .await
                .unwrap()
                    == 0
            }
        },
    )
    .await;
    let projection = order_service::sinks::Projections::connect(&config.sinks)
        .await
        .unwrap()
        .dynamodb
        .unwrap();
    for id in &ids {
        let history = projection.history.all(id.parse().unwrap()).await.unwrap();
        let versions: Vec<i64> = history.iter().map(|e| e.order_version).collect();
        assert_eq!(versions, [2, 1], "history of {id}");
    }
    let now = chrono::Utc::now();
    let first = order_service::outbox::envelope::hour_bucket(now - chrono::Duration::hours(1));
    let last = order_service::outbox::envelope::hour_bucket(now);
    let sums = projection.counters.sum(&first, &last).await.unwrap();
    assert_eq!(
        sums[&OrderStatus::Pending]["EUR"].count,
        ORDERS as i64,
        "each creation counted once"
    );
    assert_eq!(
        sums[&OrderStatus::Confirmed]["EUR"].count,
        ORDERS as i64,
        "each confirmation counted once"
    );

    let records = consume_until(&sinks, Duration::from_secs(30), |r| {
        dedupe(r).len() >= 2 * ORDERS
    })
    .await;
    let per_order = versions_per_order(&records);
    assert_eq!(per_order.len(), ORDERS);
    assert!(per_order.values().all(|v| v == &[1, 2]), "{per_order:?}");

    child.start_kill().ok();
    child.wait().await.ok();
}
