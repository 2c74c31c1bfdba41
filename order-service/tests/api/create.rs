use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{new_key, problem, problem_type, sample_order, spawn_app};

#[tokio::test]
async fn create_returns_201_with_location_etag_and_server_computed_totals() {
    let app = spawn_app().await;
    let response = app.post_order(&new_key(), &sample_order()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();

    let id = order["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(etag, "\"1\"");
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["version"], 1);
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["subtotal_minor"], 2500);
    assert_eq!(order["shipping_minor"], 490);
    assert_eq!(order["tax_minor"], 0);
    assert_eq!(order["total_minor"], 2990);
    assert_eq!(order["items"][0]["line_total_minor"], 2500);
    assert_eq!(order["payment"]["method"], "card");
    assert_eq!(order["payment"]["status"], "PENDING");
    assert_eq!(order["payment"]["amount_minor"], 2990);
    assert!(
        order["created_at"].as_str().unwrap().ends_with('Z'),
        "UTC timestamps"
    );

    // What was stored is what was returned.
    let stored: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(stored, order);
}

#[tokio::test]
async fn billing_address_defaults_to_shipping_and_can_differ() {
    let app = spawn_app().await;
    let order = app.create_order(&sample_order()).await;
    assert_eq!(order["billing_address"], order["shipping_address"]);

    let mut body = sample_order();
    body["billing_address"] = json!({"name": "ACME GmbH", "line1": "2 Side St", "line2": "Floor 3",
        "city": "Paris", "postal_code": "75001", "country": "FR"});
    let order = app.create_order(&body).await;
    assert_eq!(order["billing_address"]["city"], "Paris");
    assert_eq!(order["billing_address"]["line2"], "Floor 3");
    assert_eq!(order["shipping_address"]["city"], "Berlin");
}

#[tokio::test]
async fn retry_with_same_key_and_body_returns_the_original_and_creates_nothing() {
    let app = spawn_app().await;
    let key = new_key();
    let first: Value = app
        .post_order(&key, &sample_order())
        .await
        .json()
        .await
        .unwrap();

    // The same JSON with its keys in another order and other spacing is the same request.
    let reordered: Vec<String> = sample_order()
        .as_object()
        .unwrap()
        .iter()
        .rev()
        .map(|(k, v)| format!("{k:?}:  {v}"))
        .collect();
    let retry = app
        .client
        .post(app.url("/v1/orders"))
        .header("idempotency-key", &key)
        .header("content-type", "application/json")
        .body(format!("{{ {} }}", reordered.join(",\n")))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let second: Value = retry.json().await.unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.count("order_items").await, 1);
    assert_eq!(app.count("payments").await, 1);
}

#[tokio::test]
async fn same_key_with_a_different_body_is_refused() {
    let app = spawn_app().await;
    let key = new_key();
    app.post_order(&key, &sample_order()).await;
    let mut other = sample_order();
    other["items"][0]["quantity"] = json!(3);
    let body = problem(
        app.post_order(&key, &other).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem_type(&body), "idempotency-key-reused");
    assert_eq!(app.count("orders").await, 1);
}

#[tokio::test]
async fn create_without_idempotency_key_is_refused() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/orders"))
        .json(&sample_order())
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem_type(&body), "idempotency-key-required");

    let response = app.post_order("has spaces", &sample_order()).await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem_type(&body), "invalid-header");
    assert_eq!(app.count("orders").await, 0);
}

#[tokio::test]
async fn ten_concurrent_posts_with_one_key_create_exactly_one_order() {
    let app = spawn_app().await;
    let key = new_key();
    let body = sample_order();
    let responses = futures::future::join_all((0..10).map(|_| app.post_order(&key, &body))).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.unwrap();
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every response names the same order");
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.count("idempotency_keys").await, 1);
}

#[tokio::test]
async fn a_failed_insert_mid_transaction_leaves_no_rows() {
    let app = spawn_app().await;
    // Make the last insert of the create transaction (the payment) fail inside PostgreSQL.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_payment() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
         CREATE TRIGGER refuse_payment BEFORE INSERT ON payments
           FOR EACH ROW EXECUTE FUNCTION refuse_payment();",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let key = new_key();
    let body = problem(
        app.post_order(&key, &sample_order()).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert_eq!(problem_type(&body), "internal");
    assert!(
        !body["detail"].as_str().unwrap().contains("injected"),
        "no internals in the body"
    );
    for table in [
        "orders",
        "order_items",
        "order_addresses",
        "payments",
        "idempotency_keys",
    ] {
        assert_eq!(app.count(table).await, 0, "{table} is empty");
    }

    // The key was not consumed: once the fault is gone, the retry creates the order.
    sqlx::raw_sql("DROP TRIGGER refuse_payment ON payments")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.post_order(&key, &sample_order()).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.count("orders").await, 1);
}
