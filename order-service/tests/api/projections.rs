//! Hybrid persistence: every change reaches DynamoDB (history, counters) and Kafka through the
//! outbox, exactly once and in version order.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use order_service::db;
use order_service::metrics::Metrics;
use order_service::outbox::sink::Sink;
use order_service::outbox::Relay;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    problem, problem_type, sample_order, spawn_app_with, Options, Sinks, TestApp,
};
use crate::sinks::{consume_until, dedupe, dynamodb, pending, versions_per_order};

async fn app_with_sinks() -> TestApp {
    spawn_app_with(Options {
        sinks: Some(Sinks::fresh()),
        ..Options::default()
    })
    .await
}

async fn drain(app: &TestApp) {
    app.relay
        .as_ref()
        .expect("relay")
        .drain()
        .await
        .expect("drain");
}

#[tokio::test]
async fn every_change_yields_one_history_item_and_one_kafka_event_in_version_order() {
    let app = app_with_sinks().await;
    let a = app
        .advance(
            &sample_order(),
            &["CONFIRMED", "PROCESSING", "SHIPPED", "DELIVERED"],
        )
        .await;
    let b = app.advance(&sample_order(), &["CANCELLED"]).await;
    let c = app.advance(&sample_order(), &[]).await;
    assert_eq!(pending(&app, "dynamodb").await, 8);
    drain(&app).await;
    assert_eq!(pending(&app, "dynamodb").await, 0);
    assert_eq!(pending(&app, "kafka").await, 0);

    let store = dynamodb(&app).await;
    let expected = [
        (&a, 5, "DELIVERED"),
        (&b, 2, "CANCELLED"),
        (&c, 1, "PENDING"),
    ];
    for (id, versions, last) in expected {
        let history = store.history.all(id.parse().unwrap()).await.unwrap();
        let got: Vec<i64> = history.iter().map(|e| e.order_version).collect();
        assert_eq!(
            got,
            (1..=versions).rev().collect::<Vec<_>>(),
            "history of {id}, newest first"
        );
        assert_eq!(history[0].status.as_str(), last);
        assert_eq!(history.last().unwrap().previous_status, None);
    }
    let a_history = store.history.all(a.parse().unwrap()).await.unwrap();
    assert_eq!(
        a_history[0].previous_status.map(|s| s.as_str()),
        Some("SHIPPED")
    );
    assert_eq!(a_history[0].reason.as_deref(), Some("to DELIVERED"));
    assert_eq!(a_history[0].actor, "api");

    let sinks = app.config.sinks.kafka.clone();
    let topic_sinks = Sinks {
        topic: sinks.kafka_topic.clone(),
        ..Sinks::fresh()
    };
    let records = consume_until(&topic_sinks, Duration::from_secs(30), |r| {
        dedupe(r).len() >= 8
    })
    .await;
    assert_eq!(records.len(), 8, "no duplicates were published");
    for record in &records {
        assert_eq!(record.key, record.order_id(), "keyed by order id");
        assert_eq!(
            record.headers["event_type"],
            record.event["event_type"].as_str().unwrap()
        );
        assert_eq!(record.headers["schema_version"], "1");
        assert_eq!(record.headers["event_id"], record.event_id());
        assert!(
            record.headers.contains_key("request_id"),
            "the request id travels with the event"
        );
    }
    let per_order = versions_per_order(&records);
    assert_eq!(per_order[&a], [1, 2, 3, 4, 5]);
    assert_eq!(per_order[&b], [1, 2]);
    let cancelled = records
        .iter()
        .find(|r| r.order_id() == b && r.version() == 2)
        .unwrap();
    assert_eq!(cancelled.event["event_type"], "order.cancelled");
    let created = records.iter().find(|r| r.order_id() == c).unwrap();
    assert_eq!(created.event["event_type"], "order.created");
    assert_eq!(created.event["payload"]["order"]["total_minor"], 2990);
}

#[tokio::test]
async fn the_history_endpoint_pages_newest_first() {
    let app = app_with_sinks().await;
    let id = app
        .advance(&sample_order(), &["CONFIRMED", "PROCESSING", "SHIPPED"])
        .await;
    drain(&app).await;

    let first: Value = app
        .get(&format!("/v1/orders/{id}/history?limit=3"))
        .await
        .json()
        .await
        .unwrap();
    let versions: Vec<i64> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["order_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [4, 3, 2]);
    assert_eq!(first["items"][0]["status"], "SHIPPED");
    assert_eq!(first["items"][0]["previous_status"], "PROCESSING");
    let cursor = first["next_cursor"].as_str().expect("more pages");
    let second: Value = app
        .get(&format!("/v1/orders/{id}/history?limit=3&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["status"], "PENDING");
    assert!(second.get("next_cursor").is_none());

    let unknown = uuid::Uuid::now_v7();
    let body = problem(
        app.get(&format!("/v1/orders/{unknown}/history")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(problem_type(&body), "order-not-found");
    let body = problem(
        app.get(&format!("/v1/orders/{id}/history?cursor=nope"))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem_type(&body), "invalid-query");
}

#[tokio::test]
async fn status_stats_sum_hourly_counters_per_status_and_currency() {
    let app = app_with_sinks().await;
    let mut usd = sample_order();
    usd["currency"] = json!("USD");
    app.advance(&sample_order(), &["CONFIRMED"]).await;
    app.advance(&sample_order(), &["CONFIRMED", "CANCELLED"])
        .await;
    app.advance(&usd, &[]).await;
    drain(&app).await;

    let now = Utc::now();
    let from =
        (now - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (now + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stats: Value = app
        .get(&format!("/v1/stats/status?from={from}&to={to}"))
        .await
        .json()
        .await
        .unwrap();
    let statuses = &stats["statuses"];
    assert_eq!(
        statuses["PENDING"]["EUR"],
        json!({"count": 2, "total_minor": 5980})
    );
    assert_eq!(
        statuses["PENDING"]["USD"],
        json!({"count": 1, "total_minor": 2990})
    );
    assert_eq!(
        statuses["CONFIRMED"]["EUR"],
        json!({"count": 2, "total_minor": 5980})
    );
    assert_eq!(
        statuses["CANCELLED"]["EUR"],
        json!({"count": 1, "total_minor": 2990})
    );
    assert!(statuses.get("SHIPPED").is_none());

    // A range before anything happened is empty; bad ranges are refused.
    let past = (now - chrono::Duration::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let earlier =
        (now - chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let empty: Value = app
        .get(&format!("/v1/stats/status?from={past}&to={earlier}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["statuses"], json!({}));
    for query in [
        format!("from={to}&to={from}"),
        format!("from={past}"),
        "from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z".to_owned(),
    ] {
        let body = problem(
            app.get(&format!("/v1/stats/status?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(problem_type(&body), "invalid-query", "{query}");
    }
}

#[tokio::test]
async fn counters_stay_exact_when_a_delivery_is_retried_after_a_crash() {
    let app = app_with_sinks().await;
    app.advance(&sample_order(), &[]).await;
    let projection = dynamodb(&app).await;

    // A relay claims the event and writes DynamoDB, then "crashes" before recording the
    // outcome: its transaction never commits, so the delivery stays pending.
    let mut tx = app.pool.begin().await.unwrap();
    let claimed = db::outbox::claim(&mut tx, Sink::DynamoDb, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let event = claimed[0].envelope.as_ref().unwrap();
    projection.deliver(event).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(pending(&app, "dynamodb").await, 1);

    // The next relay sends it again; the marker makes the counter ignore the repeat.
    drain(&app).await;
    assert_eq!(pending(&app, "dynamodb").await, 0);
    let hour = order_service::outbox::envelope::hour_bucket(event.occurred_at);
    let sums = projection.counters.sum(&hour, &hour).await.unwrap();
    let pending_eur = &sums[&order_service::domain::OrderStatus::Pending]["EUR"];
    assert_eq!((pending_eur.count, pending_eur.total_minor), (1, 2990));
    // And the history item was simply overwritten.
    assert_eq!(
        projection.history.all(event.order_id).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn two_relays_keep_each_orders_events_in_version_order() {
    let app = app_with_sinks().await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(
            app.advance(
                &sample_order(),
                &["CONFIRMED", "PROCESSING", "SHIPPED", "DELIVERED"],
            )
            .await,
        );
    }
    assert_eq!(pending(&app, "kafka").await, 60);

    // Two relays with their own pools and producers, small batches, stepping at the same time.
    let projections = order_service::sinks::Projections::connect(&app.config.sinks)
        .await
        .unwrap();
    let relay = |batch: i64| {
        let mut config = app.config.relay.clone();
        config.relay_batch_size = batch;
        let pool = db::pool(
            app.config.database.database_url.clone(),
            3,
            Duration::from_secs(5),
        );
        Arc::new(Relay::new(
            pool,
            projections.adapters(),
            config,
            Arc::new(Metrics::new(3)),
        ))
    };
    let (one, two) = (relay(4), relay(7));
    let run = |relay: Arc<Relay>| async move {
        for _ in 0..400 {
            let a = relay.step(Sink::Kafka).await.unwrap();
            let b = relay.step(Sink::DynamoDb).await.unwrap();
            if a.claimed() + b.claimed() == 0 {
                tokio::task::yield_now().await;
            }
        }
    };
    let deadline = Duration::from_secs(60);
    tokio::time::timeout(deadline, async {
        while pending(&app, "kafka").await + pending(&app, "dynamodb").await > 0 {
            tokio::join!(run(one.clone()), run(two.clone()));
        }
    })
    .await
    .expect("both relays drain the outbox");

    let kafka = &app.config.sinks.kafka;
    let topic = Sinks {
        topic: kafka.kafka_topic.clone(),
        ..Sinks::fresh()
    };
    let records = consume_until(&topic, Duration::from_secs(30), |r| dedupe(r).len() >= 60).await;
    let per_order = versions_per_order(&records);
    for id in &ids {
        assert_eq!(
            per_order[id],
            [1, 2, 3, 4, 5],
            "order {id} in version order"
        );
    }
}

#[tokio::test]
async fn an_event_this_build_cannot_publish_is_parked_and_blocks_nothing() {
    let app = app_with_sinks().await;
    let id = app.advance(&sample_order(), &[]).await;
    // An event written by a newer build (schema version 99) for another order.
    let stranger = uuid::Uuid::now_v7();
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO outbox_events (id, order_id, order_version, event_type, schema_version, occurred_at, payload)
         VALUES (gen_random_uuid(), $1, 1, 'order.created', 99, now(), '{}')",
    )
    .bind(stranger)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO outbox_deliveries (event_id, sink, order_id, order_version, seq)
         SELECT id, s, order_id, order_version, seq FROM outbox_events, unnest(ARRAY['dynamodb', 'kafka']) s
         WHERE order_id = $1",
    )
    .bind(stranger)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Later changes of the first order still go out.
    let response = app
        .change_status(&id, Some("\"1\""), &json!({"status": "CONFIRMED"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    drain(&app).await;

    let parked: Vec<(String, String)> = sqlx::query_as(
        "SELECT sink, last_error FROM outbox_deliveries WHERE state = 'parked' ORDER BY sink",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(parked.len(), 2);
    assert!(parked[0].1.contains("schema version 99"), "{:?}", parked[0]);
    assert_eq!(
        pending(&app, "dynamodb").await + pending(&app, "kafka").await,
        0
    );
    let history = dynamodb(&app)
        .await
        .history
        .all(id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(history.len(), 2);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"order_service_outbox_parked{sink="kafka"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"order_service_outbox_failures_total{sink="dynamodb",kind="permanent"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"order_service_outbox_published_total{sink="kafka"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_show_the_backlog_and_its_age_per_sink() {
    let app = app_with_sinks().await;
    app.advance(&sample_order(), &["CONFIRMED"]).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"order_service_outbox_backlog{sink="dynamodb"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"order_service_outbox_backlog{sink="kafka"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"order_service_outbox_lag_seconds{sink="kafka"}"#),
        "{metrics}"
    );
    drain(&app).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"order_service_outbox_backlog{sink="kafka"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"order_service_outbox_lag_seconds{sink="kafka"} 0"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_background_relay_delivers_without_being_driven() {
    let app = spawn_app_with(Options {
        sinks: Some(Sinks::fresh()),
        relay_loop: true,
        ..Options::default()
    })
    .await;
    let id = app.advance(&sample_order(), &["CONFIRMED"]).await;
    crate::helpers::wait_until(
        Duration::from_secs(20),
        "the relay to deliver both events",
        || async { pending(&app, "dynamodb").await + pending(&app, "kafka").await == 0 },
    )
    .await;
    let history: Value = app
        .get(&format!("/v1/orders/{id}/history"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn without_sinks_changes_queue_nothing() {
    let app = crate::helpers::spawn_app().await;
    app.advance(&sample_order(), &["CONFIRMED"]).await;
    assert_eq!(
        app.count("outbox_events").await,
        0,
        "nothing would ever deliver or delete them"
    );
    assert_eq!(app.count("outbox_deliveries").await, 0);
    assert!(app.relay.is_none());
}
