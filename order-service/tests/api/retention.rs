//! Retention: what grows with traffic is deleted once it served its purpose, in passes that
//! keep up with any rate, and never what is still needed.

use std::sync::Arc;
use std::time::Duration;

use order_service::metrics::Metrics;
use order_service::outbox::sink::Sink;
use order_service::retention::Retention;
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::command;
use crate::helpers::{new_key, sample_order, spawn_app_with, wait_until, Options, Sinks, TestApp};

/// The app's retention, driven by hand (its loop is off in these tests).
fn retention(app: &TestApp) -> Retention {
    Retention::new(
        app.pool.clone(),
        app.config.retention.clone(),
        Arc::new(Metrics::new(1)),
    )
}

fn with_flags(flags: &[&str]) -> Options {
    let mut extra_args: Vec<String> = vec!["--retention".into(), "false".into()];
    extra_args.extend(flags.iter().map(|f| f.to_string()));
    Options {
        extra_args,
        ..Options::default()
    }
}

/// `n` events of made-up orders, created `age` ago, with a delivery per sink in `state`.
async fn old_events(app: &TestApp, n: i64, age: &str, state: &str) {
    sqlx::query(
        "WITH events AS (
             INSERT INTO outbox_events (id, order_id, order_version, event_type, schema_version,
                                        occurred_at, payload, created_at)
             SELECT gen_random_uuid(), gen_random_uuid(), 1, 'order.created', 1,
                    now() - $2::interval, '{}', now() - $2::interval
             FROM generate_series(1, $1)
             RETURNING id, order_id, order_version, seq)
         INSERT INTO outbox_deliveries (event_id, sink, order_id, order_version, seq, state, delivered_at)
         SELECT id, s, order_id, order_version, seq, $3,
                CASE WHEN $3 IN ('delivered', 'dropped') THEN now() - $2::interval END
         FROM events, unnest(ARRAY['dynamodb', 'kafka']) s",
    )
    .bind(n)
    .bind(age)
    .bind(state)
    .execute(&app.pool)
    .await
    .expect("old events");
}

#[tokio::test]
async fn one_pass_deletes_every_expired_event_however_many_and_keeps_what_is_still_needed() {
    let app = spawn_app_with(with_flags(&[
        "--outbox-retention",
        "1h",
        "--retention-batch",
        "1000",
    ]))
    .await;
    // 25 batches' worth delivered long ago: one pass must take them all (a pass used to stop
    // at 1,000 rows, a minute apart: 17 events/s).
    old_events(&app, 25_000, "2 hours", "delivered").await;
    // Still needed: pending or parked (however old), delivered within the retention.
    old_events(&app, 3, "2 hours", "pending").await;
    old_events(&app, 2, "2 hours", "parked").await;
    old_events(&app, 4, "10 minutes", "delivered").await;
    // Dropped by an operator long ago: gone like delivered ones.
    old_events(&app, 5, "2 hours", "dropped").await;

    let deleted = retention(&app)
        .pass(&CancellationToken::new())
        .await
        .expect("pass");
    assert_eq!(deleted.outbox_events, 25_005);
    assert_eq!(app.count("outbox_events").await, 9);
    assert_eq!(
        app.count("outbox_deliveries").await,
        18,
        "deleted with their events"
    );
}

#[tokio::test]
async fn delivered_events_are_deleted_after_the_retention_and_undelivered_ones_kept() {
    let mut options = with_flags(&["--outbox-retention", "0s"]);
    options.sinks = Some(Sinks::fresh());
    let app = spawn_app_with(options).await;
    app.advance(&sample_order(), &["CONFIRMED"]).await;
    let relay = app.relay.as_ref().unwrap();
    let stop = CancellationToken::new();
    // Only Kafka delivered so far: nothing may be deleted yet.
    while relay.step(Sink::Kafka).await.unwrap().claimed() > 0 {}
    assert_eq!(retention(&app).pass(&stop).await.unwrap().outbox_events, 0);
    assert_eq!(app.count("outbox_events").await, 2);
    relay.drain().await.unwrap();
    assert_eq!(retention(&app).pass(&stop).await.unwrap().outbox_events, 2);
    assert_eq!(app.count("outbox_events").await, 0);
    assert_eq!(app.count("outbox_deliveries").await, 0);
}

#[tokio::test]
async fn an_expired_idempotency_key_creates_a_new_order_and_is_deleted() {
    let app = spawn_app_with(with_flags(&["--idempotency-key-ttl", "1h"])).await;
    let key = new_key();
    let post = |body: serde_json::Value| {
        let key = key.clone();
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/orders"))
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .expect("post")
        }
    };
    let first = post(sample_order()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: serde_json::Value = first.json().await.unwrap();
    // Within the TTL: the same order again.
    let again: serde_json::Value = post(sample_order()).await.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    // The key expires (its clock moved back rather than the test waiting an hour).
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '2 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    // Reused after expiry, even with another body: a new order, as a first use would.
    let mut other = sample_order();
    other["customer_id"] = json!("c-other");
    let reused = post(other).await;
    assert_eq!(reused.status(), StatusCode::CREATED);
    assert!(reused.headers().get("idempotent-replayed").is_none());
    let reused: serde_json::Value = reused.json().await.unwrap();
    assert_ne!(reused["id"], first["id"]);
    // And the key now replays the new order.
    let mut other = sample_order();
    other["customer_id"] = json!("c-other");
    let replay: serde_json::Value = post(other).await.json().await.unwrap();
    assert_eq!(replay["id"], reused["id"]);

    // Expired keys go; the orders they made stay.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '2 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    let deleted = retention(&app)
        .pass(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(deleted.idempotency_keys, 1);
    assert_eq!(app.count("idempotency_keys").await, 0);
    assert_eq!(app.count("orders").await, 2);
}

#[tokio::test]
async fn finished_sagas_are_deleted_after_their_retention_and_running_ones_never() {
    let app = spawn_app_with(with_flags(&["--saga-retention", "1h"])).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(app.advance(&sample_order(), &[]).await);
    }
    for (id, state, age) in [
        (&ids[0], "CONFIRMED", "2 hours"),
        (&ids[1], "CANCELLED", "2 hours"),
        (&ids[2], "CONFIRMED", "10 minutes"),
        (&ids[3], "RUNNING", "2 days"),
    ] {
        sqlx::query(
            "INSERT INTO sagas (order_id, state, step, updated_at)
             VALUES ($1::uuid, $2, 'done', now() - $3::interval)",
        )
        .bind(id)
        .bind(state)
        .bind(age)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let deleted = retention(&app)
        .pass(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(deleted.sagas, 2);
    let left: Vec<String> = sqlx::query_scalar("SELECT order_id::text FROM sagas ORDER BY 1")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let mut kept = vec![ids[2].clone(), ids[3].clone()];
    kept.sort();
    assert_eq!(left, kept);
    // The order keeps its own record; only the saga member is gone.
    assert_eq!(app.order_json(&ids[0]).await["id"], ids[0].as_str());
}

#[tokio::test]
async fn outbox_drop_gives_up_on_parked_deliveries_which_the_retention_then_deletes() {
    let app = spawn_app_with(with_flags(&["--outbox-retention", "0s"])).await;
    old_events(&app, 2, "1 minute", "parked").await;
    let db = &app.config.database.database_url;
    let refused = command(&["outbox", "drop"], db)
        .output()
        .await
        .expect("run");
    assert_ne!(refused.status.code(), Some(0), "needs --event-id or --all");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--all"));
    let event: String = sqlx::query_scalar("SELECT event_id::text FROM outbox_deliveries LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let one = command(&["outbox", "drop", "--event-id", &event], db)
        .output()
        .await
        .expect("run");
    assert_eq!(one.status.code(), Some(0), "{one:?}");
    assert!(String::from_utf8_lossy(&one.stdout).starts_with("2 parked deliveries dropped"));
    let stop = CancellationToken::new();
    assert_eq!(retention(&app).pass(&stop).await.unwrap().outbox_events, 1);
    let all = command(&["outbox", "drop", "--all"], db)
        .output()
        .await
        .expect("run");
    assert!(String::from_utf8_lossy(&all.stdout).starts_with("2 parked deliveries dropped"));
    assert_eq!(retention(&app).pass(&stop).await.unwrap().outbox_events, 1);
    assert_eq!(app.count("outbox_events").await, 0);
}

#[tokio::test]
async fn the_background_loop_deletes_without_being_driven() {
    let app = spawn_app_with(Options {
        extra_args: vec![
            "--idempotency-key-ttl".into(),
            "1s".into(),
            "--retention-interval".into(),
            "100ms".into(),
        ],
        ..Options::default()
    })
    .await;
    let created = app.advance(&sample_order(), &[]).await;
    assert!(!created.is_empty());
    wait_until(
        Duration::from_secs(20),
        "the key to expire and go",
        || async { app.count("idempotency_keys").await == 0 },
    )
    .await;
}
