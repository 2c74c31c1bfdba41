//! Shutdown and timeouts. A request is held in flight by locking its order row from the test.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    problem, problem_type, sample_order, spawn_app_with, wait_until, Options, TestApp,
};

/// Opens a transaction holding the order's row lock, so a status change on it blocks.
async fn lock_order(app: &TestApp, id: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = app.pool.begin().await.expect("test fixture");
    sqlx::query("SELECT 1 FROM orders WHERE id = $1::uuid FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("test fixture");
    tx
}

/// A confirmation of the order stuck behind its row lock, held from a connection outside the
/// app's pool (which shutdown closes) until the returned connection is dropped.
async fn confirm_stuck_behind_a_lock(app: &TestApp, id: &str) -> sqlx::PgConnection {
    use sqlx::{Connection, Executor};

    let mut holder = sqlx::PgConnection::connect_with(&app.config.database.database_url)
        .await
        .expect("test fixture");
    holder.execute("BEGIN").await.expect("test fixture");
    sqlx::query("SELECT 1 FROM orders WHERE id = $1::uuid FOR UPDATE")
        .bind(id)
        .execute(&mut holder)
        .await
        .expect("test fixture");
    // The request goes on in its task; it ends when the server stops.
    drop(spawn_confirm(app, id));
    wait_for_blocked_request(app).await;
    holder
}

/// Sends `CONFIRMED` for the order in the background (it blocks while the row is locked).
fn spawn_confirm(
    app: &TestApp,
    id: &str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = app
        .client
        .post(app.url(&format!("/v1/orders/{id}/status")))
        .header("if-match", "\"1\"")
        .json(&json!({"status": "CONFIRMED"}));
    tokio::spawn(async move { request.send().await })
}

/// Waits until PostgreSQL shows a backend waiting on a lock.
async fn wait_for_blocked_request(app: &TestApp) {
    let pool = app.pool.clone();
    wait_until(Duration::from_secs(10), "the request to block on the row lock", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
            )
            .fetch_one(&pool)
            .await
            .expect("test fixture")
                > 0
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let mut app = spawn_app_with(Options::default()).await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap().to_owned();

    let lock = lock_order(&app, &id).await;
    let in_flight = spawn_confirm(&app, &id);
    wait_for_blocked_request(&app).await;

    app.signal_shutdown();
    // New connections are refused once the listener is closed.
    let fresh = reqwest::Client::new();
    let url = app.url("/livez");
    wait_until(Duration::from_secs(5), "the listener to close", || {
        let request = fresh.get(&url).send();
        async move { request.await.is_err() }
    })
    .await;

    lock.commit().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "CONFIRMED");
    app.stop().await.expect("clean stop");
    assert!(app.pool.is_closed(), "pool closed on shutdown");
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_that_outlive_the_drain_bound() {
    let mut app = spawn_app_with(Options {
        shutdown_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let holder = confirm_stuck_behind_a_lock(&app, &id).await;

    let started = Instant::now();
    app.signal_shutdown();
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("shutdown is bounded")
        .expect("clean stop");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "waited for the drain bound"
    );
    drop(holder);
}

#[tokio::test]
async fn a_request_over_the_timeout_is_a_503_problem() {
    let app = spawn_app_with(Options {
        request_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let lock = lock_order(&app, &id).await;
    let response = app
        .change_status(&id, Some("\"1\""), &json!({"status": "CONFIRMED"}))
        .await;
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem_type(&body), "timeout");
    lock.rollback().await.unwrap();

    // The abandoned change was rolled back with its connection, not half-applied.
    let stored: Value = app
        .get(&format!("/v1/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["version"], 1);
}

#[tokio::test]
async fn requests_saga_steps_and_relay_stop_within_one_shutdown_bound_not_one_each() {
    let participants = crate::participants::Participants::start().await;
    // A saga step that will not answer within the bound.
    *participants.world.customer.latency.lock().unwrap() = Duration::from_secs(30);
    let mut args = participants.args();
    let timeout = args
        .iter()
        .position(|a| a == "--participant-timeout")
        .expect("the fakes' timeout flag");
    args[timeout + 1] = "60s".into();
    let bound = Duration::from_secs(1);
    let mut app = spawn_app_with(Options {
        shutdown_timeout: bound,
        extra_args: args,
        ..Options::default()
    })
    .await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(10),
        "the saga's customer call",
        || async { participants.world.customer.calls() > 0 },
    )
    .await;
    // And a request that will not finish within the bound either.
    let holder = confirm_stuck_behind_a_lock(&app, &id).await;

    let started = Instant::now();
    app.signal_shutdown();
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("shutdown is bounded")
        .expect("clean stop");
    let took = started.elapsed();
    // One bound for everything: the drain and the saga's stop run at the same time. One after
    // the other they would take two bounds.
    assert!(took >= bound - Duration::from_millis(100), "{took:?}");
    assert!(
        took < bound * 3 / 2,
        "stopping took {took:?}, more than one bound"
    );
    drop(holder);
}
