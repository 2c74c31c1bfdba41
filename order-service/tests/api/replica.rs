//! The read replica: lists and reports from the stack's streaming replica (`scripts/stack.sh`
//! starts it; `ORDER_PLATFORM_REPLICA_URL`), reads by id from the primary, and what happens
//! while it lags (replay paused with `pg_wal_replay_pause()`) or is down.

use std::str::FromStr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{Mutex, MutexGuard};

use crate::helpers::{
    fresh_database, new_key, problem_type, sample_order, spawn_app_with, spawn_on, url, wait_until,
    Options, TestApp,
};
use order_service::startup;

/// Pausing replay stops it for every database on the replica: tests that pause it, or need it
/// replaying, take turns.
static REPLAY: Mutex<()> = Mutex::const_new(());

fn replica_base() -> PgConnectOptions {
    let url = std::env::var("ORDER_PLATFORM_REPLICA_URL").expect(
        "ORDER_PLATFORM_REPLICA_URL is not set: run the tests with `make test`, or \
         `eval \"$(scripts/stack.sh env)\"` after `scripts/stack.sh up` (it starts the replica)",
    );
    PgConnectOptions::from_str(&url).expect("ORDER_PLATFORM_REPLICA_URL is a PostgreSQL URL")
}

async fn replica_admin() -> PgConnection {
    PgConnection::connect_with(&replica_base().database("postgres"))
        .await
        .expect("connect to the stack's read replica (is it up? scripts/stack.sh up replica)")
}

/// Replay resumes (a test that failed while it was paused must not stall the next).
async fn replaying() -> MutexGuard<'static, ()> {
    let guard = REPLAY.lock().await;
    set_replay(true).await;
    guard
}

async fn set_replay(on: bool) {
    let call = if on {
        "SELECT pg_wal_replay_resume()"
    } else {
        "SELECT pg_wal_replay_pause()"
    };
    sqlx::query(call)
        .execute(&mut replica_admin().await)
        .await
        .expect("pause or resume replay on the replica");
}

/// A service whose lists and reports read this test's database on the replica, once the
/// replica has replayed its creation and migrations.
async fn app_with_replica(extra: &[&str]) -> TestApp {
    let db = fresh_database().await;
    let pool = order_service::db::pool(db.clone(), 8, Duration::from_secs(5));
    let migrations = startup::migrate(&pool)
        .await
        .expect("migrate test database");
    let on_replica = replica_base().database(db.get_database().expect("present"));
    wait_until(
        Duration::from_secs(30),
        "the replica to replay the test database",
        || {
            let on_replica = on_replica.clone();
            async move {
                let Ok(mut conn) = PgConnection::connect_with(&on_replica).await else {
                    return false;
                };
                order_service::db::schema::applied_version(&mut conn)
                    .await
                    .is_ok_and(|applied| applied == Some(migrations))
            }
        },
    )
    .await;
    let mut args: Vec<String> = vec![
        "--database-read-url".into(),
        url(&on_replica),
        "--replica-lag-interval".into(),
        "100ms".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    spawn_on(
        db,
        pool,
        Options {
            extra_args: args,
            ..Options::default()
        },
    )
    .await
}

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    (response.status(), response.json().await.expect("JSON body"))
}

async fn wait_for_replica(app: &TestApp, status: &'static str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = readiness(app).await;
        if body["checks"]["replica"]["status"] == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the replica check to be {status}; last /readyz: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(app: &TestApp) -> String {
    let response = app.post_order(&new_key(), &sample_order()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.expect("JSON body")["id"]
        .as_str()
        .expect("present")
        .to_owned()
}

async fn listed(app: &TestApp) -> (StatusCode, Vec<String>, Value) {
    let response = app
        .client
        .get(app.url("/v1/orders?limit=100"))
        .send()
        .await
        .expect("present");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON body");
    let ids = body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (status, ids, body)
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("present")
        .text()
        .await
        .expect("present")
}

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
}

/// Reads that may be stale of this kind served from this source, per the metrics.
fn reads(metrics: &str, kind: &str, source: &str) -> f64 {
    sample(
        metrics,
        &format!("order_service_reads_total{{kind=\"{kind}\",source=\"{source}\"}}"),
    )
}

/// The sales report of a year with no orders.
async fn sales(app: &TestApp) -> reqwest::Response {
    app.client
        .get(app.url("/v1/reports/sales?from=2000-01-01T00:00:00Z&to=2000-12-01T00:00:00Z"))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn lists_come_from_the_replica_and_a_read_by_id_after_a_create_from_the_primary() {
    let _turn = replaying().await;
    let app = app_with_replica(&["--replica-max-lag", "1h"]).await;
    wait_for_replica(&app, "ok").await;
    let first = create(&app).await;
    wait_until(
        Duration::from_secs(30),
        "the replica to show the first order",
        || async { listed(&app).await.1.contains(&first) },
    )
    .await;

    // Replay paused: the replica is frozen but within the (generous) bound, so it serves the
    // list, which misses the new order; the primary answers its read by id.
    set_replay(false).await;
    let second = create(&app).await;
    let by_id = app
        .client
        .get(app.url(&format!("/v1/orders/{second}")))
        .send()
        .await
        .expect("present");
    assert_eq!(by_id.status(), StatusCode::OK);
    let (status, ids, _) = listed(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ids.contains(&first) && !ids.contains(&second), "{ids:?}");
    let report: Value = sales(&app).await.json().await.expect("JSON body");
    assert_eq!(report["rows"], serde_json::json!([]), "{report}");
    let scraped = metrics(&app).await;
    assert!(reads(&scraped, "list", "replica") >= 2.0);
    assert!(reads(&scraped, "report", "replica") >= 1.0);
    assert_eq!(sample(&scraped, "order_service_replica_up"), 1.0);

    set_replay(true).await;
    wait_until(
        Duration::from_secs(30),
        "the replica to catch up",
        || async { listed(&app).await.1.contains(&second) },
    )
    .await;
}

#[tokio::test]
async fn a_lagging_replica_sends_lists_to_the_primary_and_refuses_reports_until_it_catches_up() {
    let _turn = replaying().await;
    let app = app_with_replica(&["--replica-max-lag", "1s"]).await;
    wait_for_replica(&app, "ok").await;

    set_replay(false).await;
    // WAL the replica does not replay: its lag grows from here.
    let id = create(&app).await;
    let ready = wait_for_replica(&app, "lagging").await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(
        ready["checks"]["replica"]["lag_seconds"]
            .as_f64()
            .expect("present")
            > 1.0
    );
    let (status, _) = readiness(&app).await;
    assert_eq!(status, StatusCode::OK, "lagging is degraded, not down");
    assert!(sample(&metrics(&app).await, "order_service_replica_lag_seconds") > 1.0);

    let (status, ids, _) = listed(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        ids.contains(&id),
        "the list fell back to the primary: {ids:?}"
    );
    let refused = sales(&app).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.expect("JSON body");
    assert_eq!(problem_type(&problem), "replica-lagging", "{problem}");
    let scraped = metrics(&app).await;
    assert!(reads(&scraped, "list", "primary") >= 1.0);
    assert!(reads(&scraped, "report", "refused") >= 1.0);

    set_replay(true).await;
    let ready = wait_for_replica(&app, "ok").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let report = sales(&app).await;
    assert_eq!(report.status(), StatusCode::OK);
}

/// The replica's address answers nothing (a port nobody listens on).
async fn app_with_replica_down(extra: &[&str]) -> TestApp {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("present");
    let port = closed.local_addr().expect("present").port();
    drop(closed);
    let mut args: Vec<String> = vec![
        "--database-read-url".into(),
        format!("postgres://postgres@127.0.0.1:{port}/orders"),
        "--replica-lag-interval".into(),
        "100ms".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    spawn_app_with(Options {
        extra_args: args,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn with_the_replica_down_lists_read_the_primary_reports_refuse_and_readiness_is_degraded() {
    let app = app_with_replica_down(&[]).await;
    let ready = wait_for_replica(&app, "failed").await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(readiness(&app).await.0, StatusCode::OK);
    assert_eq!(
        sample(&metrics(&app).await, "order_service_replica_up"),
        0.0
    );

    let id = create(&app).await;
    let (status, ids, _) = listed(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ids.contains(&id));
    let refused = sales(&app).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = refused.json().await.expect("JSON body");
    assert_eq!(problem_type(&problem), "replica-unavailable", "{problem}");
}

#[tokio::test]
async fn what_lists_and_reports_do_while_the_replica_is_down_is_configurable() {
    let app = app_with_replica_down(&[
        "--lists-when-replica-behind",
        "refuse",
        "--reports-when-replica-behind",
        "primary",
    ])
    .await;
    wait_for_replica(&app, "failed").await;
    let (status, _, problem) = listed(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem_type(&problem), "replica-unavailable", "{problem}");
    let report = sales(&app).await;
    assert_eq!(report.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_replica_everything_reads_the_primary_and_readiness_has_no_replica_check() {
    let app = crate::helpers::spawn_app().await;
    let id = create(&app).await;
    assert!(listed(&app).await.1.contains(&id));
    let (status, ready) = readiness(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ready["checks"].get("replica").is_none(), "{ready}");
    let scraped = metrics(&app).await;
    assert!(!scraped.contains("order_service_replica_up"), "{scraped}");
    assert!(reads(&scraped, "list", "primary") >= 1.0);
}
