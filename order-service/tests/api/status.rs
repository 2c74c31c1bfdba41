use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, problem_type, sample_order, spawn_app};

#[tokio::test]
async fn an_order_moves_through_its_whole_lifecycle_with_if_match() {
    let app = spawn_app().await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap();
    for (version, next) in ["CONFIRMED", "PROCESSING", "SHIPPED", "DELIVERED"]
        .into_iter()
        .enumerate()
    {
        let etag = format!("\"{}\"", version + 1);
        let response = app
            .change_status(id, Some(&etag), &json!({"status": next, "reason": "step"}))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "to {next}");
        assert_eq!(
            response.headers()["etag"],
            format!("\"{}\"", version + 2).as_str()
        );
        let order: Value = response.json().await.unwrap();
        assert_eq!(order["status"], next);
        assert_eq!(order["version"], version as i64 + 2);
        assert_eq!(order["status_reason"], "step");
    }
    let stored: Value = app.order_json(id).await;
    assert_eq!(stored["status"], "DELIVERED");
}

#[tokio::test]
async fn a_transition_the_machine_refuses_is_a_409_listing_the_allowed_states() {
    let app = spawn_app().await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap();
    let response = app
        .change_status(id, Some("\"1\""), &json!({"status": "SHIPPED"}))
        .await;
    let body = problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem_type(&body), "invalid-status-transition");
    assert_eq!(body["current_status"], "PENDING");
    assert_eq!(body["allowed_next"], json!(["CONFIRMED", "CANCELLED"]));
    let stored: Value = app.order_json(id).await;
    assert_eq!(stored["version"], 1, "nothing changed");
}

#[tokio::test]
async fn a_stale_if_match_is_a_412_and_a_missing_one_a_428() {
    let app = spawn_app().await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap();

    let body = problem(
        app.change_status(id, None, &json!({"status": "CONFIRMED"}))
            .await,
        StatusCode::PRECONDITION_REQUIRED,
    )
    .await;
    assert_eq!(problem_type(&body), "if-match-required");

    let body = problem(
        app.change_status(id, Some("\"7\""), &json!({"status": "CONFIRMED"}))
            .await,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    assert_eq!(problem_type(&body), "version-mismatch");
    assert_eq!(body["current_version"], 1);

    let body = problem(
        app.change_status(id, Some("W/\"1\""), &json!({"status": "CONFIRMED"}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem_type(&body), "invalid-header");

    let unknown = uuid::Uuid::now_v7();
    let body = problem(
        app.change_status(
            &unknown.to_string(),
            Some("\"1\""),
            &json!({"status": "CONFIRMED"}),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(problem_type(&body), "order-not-found");

    let body = problem(
        app.change_status(id, Some("\"1\""), &json!({"status": "confirmed"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "status");
}

#[tokio::test]
async fn of_two_racing_updates_with_the_same_if_match_exactly_one_wins() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let order = app.create_order(&sample_order()).await;
        let id = order["id"].as_str().unwrap();
        let (confirm, cancel) = (
            json!({"status": "CONFIRMED"}),
            json!({"status": "CANCELLED", "reason": "race"}),
        );
        let (a, b) = tokio::join!(
            app.change_status(id, Some("\"1\""), &confirm),
            app.change_status(id, Some("\"1\""), &cancel),
        );
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
        let stored: Value = app.order_json(id).await;
        assert_eq!(stored["version"], 2, "exactly one change applied");
    }
}

#[tokio::test]
async fn cancel_works_until_the_order_ships() {
    let app = spawn_app().await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let cancel = |reason: Value| {
        app.client
            .post(app.url(&format!("/v1/orders/{id}/cancel")))
            .json(&json!({ "reason": reason }))
            .send()
    };

    let body = problem(
        cancel(json!("  ")).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "reason");

    let response = cancel(json!("customer changed their mind")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["status_reason"], "customer changed their mind");

    let body = problem(cancel(json!("again")).await.unwrap(), StatusCode::CONFLICT).await;
    assert_eq!(body["allowed_next"], json!([]));

    // A shipped order can no longer be cancelled.
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap();
    for (v, next) in ["CONFIRMED", "PROCESSING", "SHIPPED"]
        .into_iter()
        .enumerate()
    {
        let tag = format!("\"{}\"", v + 1);
        assert_eq!(
            app.change_status(id, Some(&tag), &json!({"status": next}))
                .await
                .status(),
            StatusCode::OK
        );
    }
    let response = app
        .client
        .post(app.url(&format!("/v1/orders/{id}/cancel")))
        .header("if-match", "\"4\"")
        .json(&json!({"reason": "too late"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::CONFLICT).await;
    assert_eq!(body["current_status"], "SHIPPED");
    assert_eq!(body["allowed_next"], json!(["DELIVERED"]));
}

#[tokio::test]
async fn cancel_checks_if_match_when_given() {
    let app = spawn_app().await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap();
    let response = app
        .client
        .post(app.url(&format!("/v1/orders/{id}/cancel")))
        .header("if-match", "\"2\"")
        .json(&json!({"reason": "stale"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(problem_type(&body), "version-mismatch");
}

#[tokio::test]
async fn of_twenty_racing_changes_one_wins_with_exactly_one_event() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        sinks: Some(crate::helpers::Sinks::fresh()),
        ..crate::helpers::Options::default()
    })
    .await;
    let order = app.create_order(&sample_order()).await;
    let id = order["id"].as_str().unwrap().to_owned();
    // Ten confirmations and ten cancellations (five without If-Match), all against version 1.
    let mut racing = Vec::new();
    for n in 0..20 {
        let (app, id) = (&app, id.clone());
        racing.push(async move {
            if n % 2 == 0 {
                app.change_status(&id, Some("\"1\""), &json!({"status": "CONFIRMED"}))
                    .await
                    .status()
            } else {
                let mut request = app
                    .client
                    .post(app.url(&format!("/v1/orders/{id}/cancel")))
                    .json(&json!({"reason": "race"}));
                if n % 4 == 1 {
                    request = request.header("if-match", "\"1\"");
                }
                request.send().await.expect("cancel").status()
            }
        });
    }
    let statuses = futures::future::join_all(racing).await;
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    // A cancel without If-Match may follow a confirmation (CONFIRMED → CANCELLED is allowed):
    // at most two changes, each answered 200, every other request 412 or 409.
    assert!((1..=2).contains(&won), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [
            StatusCode::OK,
            StatusCode::PRECONDITION_FAILED,
            StatusCode::CONFLICT
        ]
        .contains(s)),
        "{statuses:?}"
    );
    let stored = app.order_json(&id).await;
    assert_eq!(stored["version"], 1 + won as i64, "one version per change");
    let events: Vec<i64> = sqlx::query_scalar(
        "SELECT order_version FROM outbox_events WHERE order_id = $1::uuid ORDER BY order_version",
    )
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let expected: Vec<i64> = (1..=1 + won as i64).collect();
    assert_eq!(events, expected, "exactly one event per applied change");
}
