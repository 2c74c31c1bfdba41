//! The reports: what they sum, their bounds, and that their statements use the indexes.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{new_key, sample_order, spawn_app, TestApp};

/// Creates an order of `items` (sku, quantity, unit price) in `currency` and moves its
/// creation time to `created_at`; returns its id.
async fn order_at(
    app: &TestApp,
    currency: &str,
    items: &[(&str, i64, i64)],
    created_at: &str,
) -> String {
    let mut body = sample_order();
    body["currency"] = json!(currency);
    body["shipping_minor"] = json!(0);
    body["items"] = items
        .iter()
        .map(|(sku, quantity, price)| {
            json!({"sku": sku, "name": format!("{sku} name"), "quantity": quantity, "unit_price_minor": price})
        })
        .collect();
    let response = app.post_order(&new_key(), &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.expect("JSON body")["id"]
        .as_str()
        .expect("present")
        .to_owned();
    sqlx::query("UPDATE orders SET created_at = $2::timestamptz WHERE id = $1::uuid")
        .bind(&id)
        .bind(created_at)
        .execute(&app.pool)
        .await
        .expect("present");
    id
}

async fn cancel(app: &TestApp, id: &str) {
    let response = app
        .client
        .post(app.url(&format!("/v1/orders/{id}/cancel")))
        .header("if-match", "\"1\"")
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .expect("present");
    assert_eq!(response.status(), StatusCode::OK);
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app.client.get(app.url(path)).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn the_sales_report_sums_orders_and_revenue_per_period_status_and_currency() {
    let app = spawn_app().await;
    let a = order_at(&app, "EUR", &[("A", 2, 1000)], "2026-03-01T10:15:00Z").await;
    order_at(&app, "EUR", &[("B", 1, 500)], "2026-03-01T10:45:00Z").await;
    order_at(&app, "USD", &[("A", 1, 700)], "2026-03-01T10:50:00Z").await;
    order_at(&app, "EUR", &[("A", 1, 1000)], "2026-03-01T11:05:00Z").await;
    // Outside the range on both ends.
    order_at(&app, "EUR", &[("A", 9, 1000)], "2026-03-01T09:59:59Z").await;
    order_at(&app, "EUR", &[("A", 9, 1000)], "2026-03-01T12:00:00Z").await;
    cancel(&app, &a).await;

    let (status, report) = get(
        &app,
        "/v1/reports/sales?from=2026-03-01T10:00:00Z&to=2026-03-01T12:00:00Z&granularity=hour",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["granularity"], "hour");
    assert_eq!(
        report["rows"],
        json!([
            {"period_start": "2026-03-01T10:00:00Z", "status": "CANCELLED", "currency": "EUR", "orders": 1, "revenue_minor": 2000},
            {"period_start": "2026-03-01T10:00:00Z", "status": "PENDING", "currency": "EUR", "orders": 1, "revenue_minor": 500},
            {"period_start": "2026-03-01T10:00:00Z", "status": "PENDING", "currency": "USD", "orders": 1, "revenue_minor": 700},
            {"period_start": "2026-03-01T11:00:00Z", "status": "PENDING", "currency": "EUR", "orders": 1, "revenue_minor": 1000},
        ])
    );

    // Daily, one currency: the whole day's EUR orders in one period per status.
    let (status, report) = get(
        &app,
        "/v1/reports/sales?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&currency=EUR",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["granularity"], "day");
    assert_eq!(
        report["rows"],
        json!([
            {"period_start": "2026-03-01T00:00:00Z", "status": "CANCELLED", "currency": "EUR", "orders": 1, "revenue_minor": 2000},
            {"period_start": "2026-03-01T00:00:00Z", "status": "PENDING", "currency": "EUR", "orders": 4, "revenue_minor": 19500},
        ])
    );
}

#[tokio::test]
async fn the_top_products_report_ranks_skus_of_orders_not_cancelled() {
    let app = spawn_app().await;
    order_at(
        &app,
        "EUR",
        &[("A", 2, 1000), ("B", 5, 100)],
        "2026-03-01T10:00:00Z",
    )
    .await;
    order_at(&app, "EUR", &[("A", 1, 1000)], "2026-03-02T10:00:00Z").await;
    order_at(&app, "USD", &[("A", 4, 900)], "2026-03-02T11:00:00Z").await;
    let cancelled = order_at(&app, "EUR", &[("C", 50, 10)], "2026-03-02T12:00:00Z").await;
    cancel(&app, &cancelled).await;
    order_at(&app, "EUR", &[("D", 99, 1)], "2026-04-01T00:00:00Z").await;

    let (status, report) = get(
        &app,
        "/v1/reports/top-products?from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["products"],
        json!([
            {"sku": "B", "name": "B name", "currency": "EUR", "quantity": 5, "revenue_minor": 500, "orders": 1},
            {"sku": "A", "name": "A name", "currency": "USD", "quantity": 4, "revenue_minor": 3600, "orders": 1},
            {"sku": "A", "name": "A name", "currency": "EUR", "quantity": 3, "revenue_minor": 3000, "orders": 2},
        ])
    );

    let (_, top) = get(
        &app,
        "/v1/reports/top-products?from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z&limit=1&currency=EUR",
    )
    .await;
    assert_eq!(top["products"].as_array().map(Vec::len), Some(1));
    assert_eq!(top["products"][0]["sku"], "B");
}

#[tokio::test]
async fn reports_refuse_unbounded_or_malformed_ranges() {
    let app = spawn_app().await;
    for (path, needle) in [
        (
            "/v1/reports/sales?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            "after",
        ),
        (
            "/v1/reports/sales?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&granularity=hour",
            "granularity=day",
        ),
        (
            "/v1/reports/sales?from=2025-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "366 days",
        ),
        (
            "/v1/reports/sales?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&granularity=week",
            "granularity",
        ),
        (
            "/v1/reports/sales?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&currency=eur",
            "ISO 4217",
        ),
        ("/v1/reports/sales?to=2026-01-02T00:00:00Z", "from"),
        (
            "/v1/reports/top-products?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&limit=0",
            "limit",
        ),
        (
            "/v1/reports/top-products?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&limit=101",
            "limit",
        ),
        (
            "/v1/reports/top-products?from=2025-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "366 days",
        ),
    ] {
        let (status, problem) = get(&app, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(
            problem["type"], "https://orders.dev/problems/invalid-query",
            "{path}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .expect("present")
                .contains(needle),
            "{path}: {problem}"
        );
    }
}

/// The plans of the very statements the service runs, with sequential scans priced out: one
/// that still shows a `Seq Scan` on orders or their lines has no index to use.
#[tokio::test]
async fn the_report_statements_read_orders_through_an_index() {
    let app = spawn_app().await;
    let mut conn = sqlx::PgConnection::connect_with(&app.pool.connect_options().as_ref().clone())
        .await
        .expect("present");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .expect("present");
    let from = chrono::Utc::now() - chrono::Duration::days(7);
    let to = chrono::Utc::now();
    let sales: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN {}", order_service::db::reports::SALES))
            .bind(from)
            .bind(to)
            .bind("day")
            .bind(None::<String>)
            .bind(10_001_i64)
            .fetch_all(&mut conn)
            .await
            .expect("present");
    let top: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN {}",
        order_service::db::reports::TOP_PRODUCTS
    ))
    .bind(from)
    .bind(to)
    .bind(Some("EUR"))
    .bind(10_i64)
    .fetch_all(&mut conn)
    .await
    .expect("present");
    for (name, plan) in [
        ("sales", sales.join("\n")),
        ("top-products", top.join("\n")),
    ] {
        assert!(
            plan.contains("orders_created_idx"),
            "{name} does not use orders_created_idx:\n{plan}"
        );
        for table in ["orders", "order_items"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{name} scans {table} sequentially:\n{plan}"
            );
        }
    }
}
