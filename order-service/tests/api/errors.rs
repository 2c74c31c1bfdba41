use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    new_key, problem, problem_type, sample_order, spawn_app, spawn_app_with, Options,
};

/// The field names of a validation problem.
fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .expect("test fixture")
        .iter()
        .map(|e| e["field"].as_str().expect("test fixture").to_owned())
        .collect()
}

async fn invalid_create(body: Value) -> Value {
    let app = spawn_app().await;
    let body = problem(
        app.post_order(&new_key(), &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem_type(&body), "validation-failed");
    assert_eq!(app.count("orders").await, 0, "nothing stored");
    body
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/orders"))
        .header("idempotency-key", new_key())
        .header("content-type", "application/json")
        .body("{\"customer_id\": ")
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem_type(&body), "malformed-json");
}

#[tokio::test]
async fn unknown_fields_are_refused_by_name() {
    let mut body = sample_order();
    body["total_minor"] = json!(1);
    body["shipping_address"]["zip"] = json!("10115");
    let problem = invalid_create(body).await;
    // serde stops at the first unknown field it meets; either is named precisely.
    let named = fields(&problem);
    assert!(
        named == ["shipping_address.zip"] || named == ["total_minor"],
        "{named:?}"
    );
}

#[tokio::test]
async fn missing_fields_are_named() {
    let mut body = sample_order();
    body.as_object_mut().unwrap().remove("currency");
    assert_eq!(fields(&invalid_create(body).await), ["currency"]);
}

#[tokio::test]
async fn every_invalid_value_is_reported_at_once() {
    let mut body = sample_order();
    body["currency"] = json!("EURO");
    body["items"][0]["quantity"] = json!(-1);
    body["items"] = json!([body["items"][0], {"sku": "", "name": "Gadget", "quantity": 1, "unit_price_minor": -5}]);
    body["shipping_address"]["country"] = json!("Germany");
    body["shipping_minor"] = json!(-1);
    let problem = invalid_create(body).await;
    assert_eq!(
        fields(&problem),
        [
            "currency",
            "items[0].quantity",
            "items[1].sku",
            "items[1].unit_price_minor",
            "shipping_address.country",
            "shipping_minor"
        ]
    );
    let messages: Vec<_> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].clone())
        .collect();
    assert!(messages[0].as_str().unwrap().contains("ISO 4217"));
}

#[tokio::test]
async fn wrong_types_and_unknown_enum_values_name_their_field() {
    let mut body = sample_order();
    body["items"][0]["quantity"] = json!("two");
    assert_eq!(fields(&invalid_create(body).await), ["items[0].quantity"]);
    let mut body = sample_order();
    body["payment"]["method"] = json!("barter");
    assert_eq!(fields(&invalid_create(body).await), ["payment.method"]);
}

#[tokio::test]
async fn empty_orders_and_overflowing_totals_are_refused() {
    let mut body = sample_order();
    body["items"] = json!([]);
    assert_eq!(fields(&invalid_create(body).await), ["items"]);

    let mut body = sample_order();
    body["items"][0]["unit_price_minor"] = json!(i64::MAX);
    let problem = invalid_create(body).await;
    assert_eq!(fields(&problem), ["items"]);
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("does not fit"));
}

#[tokio::test]
async fn body_over_the_limit_is_a_413() {
    let app = spawn_app_with(Options {
        body_limit_bytes: 1024,
        ..Options::default()
    })
    .await;
    let mut body = sample_order();
    body["customer_id"] = json!("x".repeat(2000));
    let problem = problem(
        app.post_order(&new_key(), &body).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(problem_type(&problem), "payload-too-large");
    assert!(problem["detail"].as_str().unwrap().contains("1024"));
}

#[tokio::test]
async fn wrong_content_type_is_a_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/orders"))
        .header("idempotency-key", new_key())
        .header("content-type", "text/plain")
        .body(sample_order().to_string())
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(problem_type(&body), "unsupported-media-type");
}

#[tokio::test]
async fn unknown_orders_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7();
    let body = problem(
        app.get(&format!("/v1/orders/{id}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(problem_type(&body), "order-not-found");
    assert!(body["detail"].as_str().unwrap().contains(&id.to_string()));

    let body = problem(
        app.get("/v1/orders/not-a-uuid").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem_type(&body), "invalid-path");

    let body = problem(app.get("/v2/nothing").await, StatusCode::NOT_FOUND).await;
    assert_eq!(problem_type(&body), "not-found");

    let response = app
        .client
        .delete(app.url("/v1/orders"))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(problem_type(&body), "method-not-allowed");
}

#[tokio::test]
async fn problems_carry_the_request_id_and_never_internal_text() {
    // DynamoDB unreachable: the history endpoint's failure has an SDK error with the endpoint
    // and the table in it, which must stay in the logs.
    let sinks = crate::helpers::Sinks {
        dynamodb_endpoint: "http://127.0.0.1:1".into(),
        ..crate::helpers::Sinks::fresh()
    };
    let table_prefix = sinks.table_prefix.clone();
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        sinks: Some(sinks),
        provision: false,
        ..crate::helpers::Options::default()
    })
    .await;
    let id = app.create_order(&crate::helpers::sample_order()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let response = app
        .client
        .get(app.url(&format!("/v1/orders/{id}/history")))
        .header("x-request-id", "req-7")
        .send()
        .await
        .expect("history");
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem_type(&body), "projection-unavailable");
    assert_eq!(body["request_id"], "req-7", "{body}");
    let text = body.to_string();
    for internal in ["127.0.0.1", table_prefix.as_str(), "dispatch", "error"] {
        assert!(!text.contains(internal), "{internal} leaked: {text}");
    }
    // Client errors carry the request id too (one made up by the service when none was sent).
    let missing = app.get(&format!("/v1/orders/{}", uuid::Uuid::nil())).await;
    let sent_id = missing.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let body = problem(missing, StatusCode::NOT_FOUND).await;
    assert_eq!(body["request_id"], sent_id.as_str());
}
