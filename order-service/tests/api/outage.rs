//! Sink outages: with DynamoDB or Kafka down, every API write still succeeds, the backlog of
//! that sink alone grows, and after recovery it drains to zero with nothing lost or doubled.

use std::time::Duration;

use order_service::domain::OrderStatus;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{sample_order, spawn_app_with, wait_until, Options, Sinks, TestApp};
use crate::servers::{PrivateKafka, PrivateMoto};
use crate::sinks::{consume_until, dedupe, dynamodb, pending, versions_per_order};

/// Creates `n` orders and confirms each; every request must succeed. Returns the ids.
async fn write_stream(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(app.advance(&sample_order(), &["CONFIRMED"]).await);
    }
    ids
}

async fn wait_drained(app: &TestApp, sink: &'static str) {
    wait_until(
        Duration::from_secs(90),
        &format!("the {sink} backlog to drain"),
        || async { pending(app, sink).await == 0 },
    )
    .await;
}

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let response = app.get("/readyz").await;
    (
        response.status(),
        response.json().await.expect("test fixture"),
    )
}

/// Every order has history items for versions 1 and 2, and the counters count each once.
async fn assert_dynamodb_complete(app: &TestApp, ids: &[String]) {
    let projection = dynamodb(app).await;
    for id in ids {
        let versions: Vec<i64> = projection
            .history
            .all(id.parse().expect("test fixture"))
            .await
            .expect("test fixture")
            .iter()
            .map(|e| e.order_version)
            .collect();
        assert_eq!(versions, [2, 1], "history of {id}");
    }
    let now = chrono::Utc::now();
    let first = order_service::outbox::envelope::hour_bucket(now - chrono::Duration::hours(1));
    let last = order_service::outbox::envelope::hour_bucket(now);
    let sums = projection
        .counters
        .sum(&first, &last)
        .await
        .expect("test fixture");
    assert_eq!(sums[&OrderStatus::Pending]["EUR"].count, ids.len() as i64);
    assert_eq!(sums[&OrderStatus::Confirmed]["EUR"].count, ids.len() as i64);
    assert_eq!(
        sums[&OrderStatus::Confirmed]["EUR"].total_minor,
        2990 * ids.len() as i64
    );
}

#[tokio::test]
async fn a_dynamodb_outage_queues_changes_and_drains_them_after_recovery() {
    let moto = PrivateMoto::start().await;
    let sinks = Sinks {
        dynamodb_endpoint: moto.endpoint.clone(),
        ..Sinks::fresh()
    };
    let app = spawn_app_with(Options {
        sinks: Some(sinks),
        relay_loop: true,
        ..Options::default()
    })
    .await;
    let mut ids = write_stream(&app, 3).await;
    wait_drained(&app, "dynamodb").await;

    moto.pause();
    let during = write_stream(&app, 15).await;
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::OK, "degraded is still ready: {body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["dynamodb"]["status"], "failed");
    assert_eq!(body["checks"]["kafka"]["status"], "ok");
    assert_eq!(
        pending(&app, "dynamodb").await,
        30,
        "the DynamoDB backlog holds every change"
    );
    wait_drained(&app, "kafka").await;

    moto.resume();
    wait_drained(&app, "dynamodb").await;
    ids.extend(during);
    assert_dynamodb_complete(&app, &ids).await;
    assert_eq!(readiness(&app).await.1["status"], "ready");
}

#[tokio::test]
async fn a_kafka_outage_queues_changes_and_drains_them_after_recovery() {
    let mut broker = PrivateKafka::start().await;
    let sinks = Sinks {
        kafka_bootstrap: broker.bootstrap.clone(),
        ..Sinks::fresh()
    };
    let app = spawn_app_with(Options {
        sinks: Some(sinks.clone()),
        relay_loop: true,
        ..Options::default()
    })
    .await;
    let mut ids = write_stream(&app, 3).await;
    wait_drained(&app, "kafka").await;

    broker.stop().await;
    let during = write_stream(&app, 15).await;
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::OK, "degraded is still ready: {body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["kafka"]["status"], "failed");
    assert_eq!(
        pending(&app, "kafka").await,
        30,
        "the Kafka backlog holds every change"
    );
    wait_drained(&app, "dynamodb").await;

    broker.restart().await;
    wait_drained(&app, "kafka").await;
    ids.extend(during);
    let records = consume_until(&sinks, Duration::from_secs(60), |r| {
        dedupe(r).len() >= 2 * ids.len()
    })
    .await;
    let per_order = versions_per_order(&records);
    for id in &ids {
        assert_eq!(per_order[id], [1, 2], "events of {id}, once each, in order");
    }
    assert_dynamodb_complete(&app, &ids).await;
}

#[tokio::test]
async fn readiness_can_require_the_sinks() {
    let moto = PrivateMoto::start().await;
    let sinks = Sinks {
        dynamodb_endpoint: moto.endpoint.clone(),
        ..Sinks::fresh()
    };
    let app = spawn_app_with(Options {
        sinks: Some(sinks),
        extra_args: vec!["--readiness-requires-sinks".into(), "true".into()],
        ..Options::default()
    })
    .await;
    assert_eq!(readiness(&app).await.0, StatusCode::OK);
    moto.pause();
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not_ready");
    moto.resume();
    assert_eq!(readiness(&app).await.0, StatusCode::OK);
}
