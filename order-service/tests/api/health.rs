use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    fresh_database, new_key, sample_order, spawn_app, spawn_app_with, spawn_on, Options,
};

#[tokio::test]
async fn livez_and_readyz_answer_when_the_database_is_migrated() {
    let app = spawn_app().await;
    assert_eq!(app.get("/livez").await.status(), StatusCode::OK);
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["schema"]["status"], "ok");
}

#[tokio::test]
async fn readyz_is_503_until_migrations_are_applied() {
    let app = spawn_app_with(Options {
        migrate: false,
        ..Options::default()
    })
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["schema"]["status"], "failed");
    // Check names and states only on the public port: the why (versions, errors) is logged.
    assert_eq!(
        body["checks"]["schema"].as_object().map(|c| c.len()),
        Some(1),
        "{body}"
    );

    order_service::startup::migrate(&app.pool).await.unwrap();
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_is_503_and_writes_are_503_when_postgres_is_unreachable() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = fresh_database().await.port(port);
    let pool = order_service::db::pool(db.clone(), 2, Duration::from_millis(500));
    let app = spawn_on(db, pool, Options::default()).await;

    assert_eq!(
        app.get("/livez").await.status(),
        StatusCode::OK,
        "alive even without a database"
    );
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"]["status"], "failed");

    let response = app.post_order(&new_key(), &sample_order()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://orders.dev/problems/database-unavailable"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    let order = app.create_order(&sample_order()).await;
    app.get(&format!("/v1/orders/{}", order["id"].as_str().unwrap()))
        .await;
    app.get(&format!("/v1/orders/{}", uuid::Uuid::now_v7()))
        .await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(
        has(
            r#"order_service_http_requests_total{method="POST",route="/v1/orders",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"order_service_http_requests_total{method="GET",route="/v1/orders/{id}",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"order_service_http_requests_total{method="GET",route="/v1/orders/{id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"order_service_http_request_duration_seconds_count{method="POST",route="/v1/orders"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(r#"order_service_db_pool_connections{state="idle"}"#),
        "{text}"
    );
    assert!(has("order_service_db_pool_max_connections 8"), "{text}");
}

#[tokio::test]
async fn metrics_count_orders_and_their_value_by_status_entered_and_currency() {
    let app = spawn_app().await;
    app.advance(&sample_order(), &["CONFIRMED"]).await;
    app.advance(&sample_order(), &["CANCELLED"]).await;
    // A replay of a create is the same order: not counted again.
    let key = new_key();
    for _ in 0..2 {
        let replayed = app.post_order(&key, &sample_order()).await;
        assert_eq!(replayed.status(), StatusCode::CREATED);
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l == needle);
    for line in [
        r#"order_service_orders_total{status="PENDING",currency="EUR"} 3"#,
        r#"order_service_orders_total{status="CONFIRMED",currency="EUR"} 1"#,
        r#"order_service_orders_total{status="CANCELLED",currency="EUR"} 1"#,
        r#"order_service_order_value_minor_total{status="PENDING",currency="EUR"} 8970"#,
        r#"order_service_order_value_minor_total{status="CONFIRMED",currency="EUR"} 2990"#,
    ] {
        assert!(has(line), "{line} in:\n{text}");
    }
    // /flowz without sinks: nothing to deliver, no saga stuck.
    let flow: Value = app.get("/flowz").await.json().await.unwrap();
    assert_eq!(flow["sinks"], serde_json::json!([]), "{flow}");
    assert_eq!(flow["sagas_stuck"], 0, "{flow}");
}

#[tokio::test]
async fn openapi_document_and_docs_page_are_served() {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}/status",
        "/v1/orders/{id}/cancel",
        "/readyz",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(spec["components"]["schemas"].get("Order").is_some());
    assert!(spec["components"]["schemas"].get("Problem").is_some());

    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.unwrap();
    assert!(html.to_lowercase().contains("redoc"), "a Redoc page");
    assert!(
        html.contains("/v1/orders/{id}/status"),
        "with the spec embedded"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/livez"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let response = app.get("/livez").await;
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}
