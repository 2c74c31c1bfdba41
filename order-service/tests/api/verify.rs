//! `order-service verify-projections`: silent when DynamoDB agrees, loud when it does not.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use tokio::process::Command;

use crate::helpers::{sample_order, spawn_app_with, url, Options, Sinks, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_order-service");

async fn verify(app: &TestApp) -> (bool, String) {
    let sinks = &app.config.sinks.dynamodb;
    let output = Command::new(BIN)
        .args([
            "verify-projections",
            "--since",
            "2h",
            "--database-url",
            &url(&app.config.database.database_url),
        ])
        .args([
            "--dynamodb-endpoint",
            sinks.dynamodb_endpoint.as_deref().unwrap_or_default(),
        ])
        .args(["--dynamodb-table-prefix", &sinks.dynamodb_table_prefix])
        .env("ORDER_SERVICE_LOG", "warn")
        .output()
        .await
        .expect("run verify-projections");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn verify_projections_finds_injected_drift_and_none_otherwise() {
    let app = spawn_app_with(Options {
        sinks: Some(Sinks::fresh()),
        ..Options::default()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let order = app.create_order(&sample_order()).await;
        let id = order["id"].as_str().unwrap().to_owned();
        app.change_status(&id, Some("\"1\""), &json!({"status": "CONFIRMED"}))
            .await;
        ids.push(id);
    }
    let relay = app.relay.clone().unwrap();

    // Before delivery the orders are skipped as undelivered, not reported.
    let (ok, text) = verify(&app).await;
    assert!(ok, "{text}");
    assert!(text.contains("3 with deliveries not yet made"), "{text}");

    relay.drain().await.unwrap();
    let (ok, text) = verify(&app).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("checked 3 orders") && text.contains("no drift"),
        "{text}"
    );

    // Drift 1: PostgreSQL changed behind the outbox's back.
    sqlx::query("UPDATE orders SET status = 'PROCESSING', version = 3 WHERE id = $1::uuid")
        .bind(&ids[0])
        .execute(&app.pool)
        .await
        .unwrap();
    // Drift 2: a counter changed by hand.
    let client = app.config.sinks.dynamodb.client().await;
    // The hour the confirmations were counted in.
    let confirmed_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM orders WHERE id = $1::uuid")
            .bind(&ids[1])
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let hour = order_service::outbox::envelope::hour_bucket(confirmed_at);
    client
        .update_item()
        .table_name(app.config.sinks.dynamodb.counters_table())
        .key("status", AttributeValue::S("CONFIRMED".into()))
        .key("hour", AttributeValue::S(hour.clone()))
        .update_expression("ADD order_count_EUR :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();

    let (ok, text) = verify(&app).await;
    assert!(!ok, "drift exits non-zero: {text}");
    assert!(
        text.contains(&format!(
            "order {}: PostgreSQL PROCESSING v3, DynamoDB history CONFIRMED v2",
            ids[0]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("counter CONFIRMED {hour} EUR: history adds up to")),
        "{text}"
    );
    assert!(text.contains("2 drifts"), "{text}");
}
