use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{problem, problem_type, sample_order, spawn_app, TestApp};

async fn page(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/v1/orders?{query}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.expect("test fixture")
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("test fixture")
        .iter()
        .map(|o| o["id"].as_str().expect("test fixture").to_owned())
        .collect()
}

#[tokio::test]
async fn paginating_250_orders_with_limit_7_returns_each_exactly_once_in_order() {
    let app = spawn_app().await;
    for i in 0..250 {
        let mut body = sample_order();
        body["customer_id"] = json!(format!("c-{}", i % 3));
        app.create_order(&body).await;
    }
    // Many orders share a timestamp, so the id must break ties for the order to be stable.
    sqlx::query("UPDATE orders SET created_at = date_trunc('second', created_at) - (id::text < '8')::int * interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    let expected: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM orders ORDER BY created_at DESC, id DESC")
            .fetch_all(&app.pool)
            .await
            .unwrap();

    let mut seen = Vec::new();
    let mut query = "limit=7".to_owned();
    loop {
        let page = page(&app, &query).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 7);
        seen.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=7&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = expected.iter().map(Uuid::to_string).collect();
    assert_eq!(seen.len(), 250);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        250,
        "no duplicates"
    );
    assert_eq!(seen, expected, "newest first, ties broken by id");
}

#[tokio::test]
async fn filters_combine_customer_status_and_time() {
    let app = spawn_app().await;
    let mut body = sample_order();
    body["customer_id"] = json!("alice");
    let a1 = app.create_order(&body).await;
    let a2 = app.create_order(&body).await;
    body["customer_id"] = json!("bob");
    let b1 = app.create_order(&body).await;
    let a2_id = a2["id"].as_str().unwrap();
    app.change_status(a2_id, Some("\"1\""), &json!({"status": "CONFIRMED"}))
        .await;

    let alice = page(&app, "customer_id=alice").await;
    assert_eq!(ids(&alice), [a2_id, a1["id"].as_str().unwrap()]);
    assert!(
        alice.get("next_cursor").is_none(),
        "last page has no cursor"
    );
    assert_eq!(alice["items"][0]["status"], "CONFIRMED");
    assert!(
        alice["items"][0].get("items").is_none(),
        "lists carry summaries"
    );

    assert_eq!(
        ids(&page(&app, "customer_id=alice&status=PENDING").await),
        [a1["id"].as_str().unwrap()]
    );
    assert_eq!(ids(&page(&app, "status=CONFIRMED").await), [a2_id]);

    // created_after is inclusive, created_before exclusive.
    let b1_created = b1["created_at"].as_str().unwrap();
    let encoded = b1_created.replace('+', "%2B");
    assert_eq!(
        ids(&page(&app, &format!("created_after={encoded}")).await),
        [b1["id"].as_str().unwrap()]
    );
    let before = ids(&page(&app, &format!("created_before={encoded}")).await);
    assert_eq!(before.len(), 2);
    assert!(!before.contains(&b1["id"].as_str().unwrap().to_owned()));
}

#[tokio::test]
async fn bad_list_parameters_are_400s() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "status=pending",
        "created_after=yesterday",
        "cursor=bogus",
        "colour=red",
    ] {
        let body = problem(
            app.get(&format!("/v1/orders?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(problem_type(&body), "invalid-query", "{query}");
    }
    assert_eq!(
        app.get("/v1/orders?limit=100").await.status(),
        StatusCode::OK
    );
}
