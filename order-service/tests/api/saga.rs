//! The fulfilment saga against participants faked with wiremock, on a real PostgreSQL.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;

use crate::helpers::{
    fresh_database, problem, problem_type, sample_order, spawn_app_with, spawn_on, wait_until,
    Options, TestApp,
};
use crate::participants::Participants;

const SAGA_TIMEOUT: Duration = Duration::from_secs(20);

async fn app_with(participants: &Participants) -> TestApp {
    spawn_app_with(Options {
        extra_args: participants.args(),
        ..Options::default()
    })
    .await
}

fn order_for(customer: &str) -> Value {
    let mut order = sample_order();
    order["customer_id"] = json!(customer);
    order
}

/// Waits until the order's saga finished; returns the order JSON.
async fn finished(app: &TestApp, id: &str) -> Value {
    wait_until(
        SAGA_TIMEOUT,
        &format!("the saga of {id} to finish"),
        || async {
            let order = app.order_json(id).await;
            matches!(
                order["saga"]["state"].as_str(),
                Some("CONFIRMED" | "CANCELLED")
            )
        },
    )
    .await;
    app.order_json(id).await
}

/// Creates an order, cancels it through the API while its saga calls `endpoint`, and waits
/// for the saga to finish: the order is CANCELLED with the customer's reason. Returns its id.
async fn cancel_while_calling(app: &TestApp, endpoint: &crate::participants::Endpoint) -> String {
    let id = app.create_order(&sample_order()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_until(SAGA_TIMEOUT, "the participant call", || async {
        endpoint.calls() > 0
    })
    .await;
    let cancelled = app
        .client
        .post(app.url(&format!("/v1/orders/{id}/cancel")))
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancelled.status(), StatusCode::OK);
    let order = finished(app, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["status_reason"], "changed my mind");
    id
}

/// The types of the outbox events of an order, in order.
async fn event_types(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    sqlx::query("SELECT event_type, payload FROM outbox_events WHERE order_id = $1::uuid ORDER BY order_version, seq")
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get("event_type"), r.get("payload")))
        .collect()
}

#[tokio::test]
async fn the_happy_path_confirms_with_one_call_per_step_each_with_its_key() {
    let participants = Participants::start().await;
    let app = spawn_app_with(Options {
        extra_args: participants.args(),
        // Events are written to the outbox only with a sink; the relay stays off.
        sinks: None,
        ..Options::default()
    })
    .await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = app
        .client
        .post(app.url("/v1/orders"))
        .header("idempotency-key", crate::helpers::new_key())
        .header("traceparent", traceparent)
        .json(&sample_order())
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["saga"]["state"], "RUNNING");
    let id = created["id"].as_str().expect("id").to_owned();

    let order = finished(&app, &id).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["saga"]["state"], "CONFIRMED");
    assert_eq!(order["saga"]["step"], "done");
    let w = &participants.world;
    for (endpoint, step) in [
        (&w.customer, "validate_customer"),
        (&w.reserve, "reserve_inventory"),
        (&w.authorize, "authorize_payment"),
    ] {
        assert_eq!(endpoint.keys_of(&id), [format!("{id}:{step}")], "{step}");
        // The trace the order was created in continues into every call.
        assert_eq!(
            endpoint.traceparents.lock().unwrap()[0],
            traceparent,
            "{step}"
        );
    }
    assert_eq!(w.release.calls() + w.void.calls(), 0, "nothing to undo");
    // The order cannot be confirmed twice, and the saga's outcome is an event like any other.
    let confirmed = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM orders WHERE id = $1::uuid AND status = 'CONFIRMED'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(confirmed, 1);
}

#[tokio::test]
async fn the_outcome_goes_through_the_outbox_as_order_confirmed_with_its_trace() {
    let participants = Participants::start().await;
    let sinks = crate::helpers::Sinks::fresh();
    let app = spawn_app_with(Options {
        extra_args: participants.args(),
        sinks: Some(sinks.clone()),
        ..Options::default()
    })
    .await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let created: Value = app
        .client
        .post(app.url("/v1/orders"))
        .header("idempotency-key", crate::helpers::new_key())
        .header("traceparent", traceparent)
        .json(&sample_order())
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    finished(&app, &id).await;
    let events = event_types(&app, &id).await;
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "order.created",
            "inventory.reserved",
            "payment.authorized",
            "order.confirmed"
        ]
    );
    assert_eq!(events[3].1["actor"], "saga");
    assert_eq!(events[3].1["previous_status"], "PENDING");

    // On Kafka both carry the trace of the request that created the order.
    app.relay
        .as_ref()
        .expect("relay")
        .drain()
        .await
        .expect("drain");
    let records = crate::sinks::consume_until(&sinks, Duration::from_secs(30), |r| {
        crate::sinks::dedupe(r).len() >= 4
    })
    .await;
    for record in &records {
        assert_eq!(
            record.headers.get("traceparent").map(String::as_str),
            Some(traceparent)
        );
    }
}

#[tokio::test]
async fn an_unknown_customer_cancels_the_order_with_nothing_to_undo() {
    let participants = Participants::start().await;
    participants
        .world
        .unknown_customers
        .lock()
        .unwrap()
        .insert("c-ghost".into());
    let app = app_with(&participants).await;
    let id = app.create_order(&order_for("c-ghost")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let order = finished(&app, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["status_reason"], "unknown_customer: c-ghost");
    assert_eq!(order["saga"]["cancel_reason"], "unknown_customer: c-ghost");
    let w = &participants.world;
    assert_eq!(
        w.reserve.calls() + w.authorize.calls() + w.release.calls() + w.void.calls(),
        0
    );
}

#[tokio::test]
async fn out_of_stock_cancels_without_charging() {
    let participants = Participants::start().await;
    participants
        .world
        .out_of_stock
        .lock()
        .unwrap()
        .insert("SKU-1".into());
    let app = app_with(&participants).await;
    let id = app.create_order(&sample_order()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let order = finished(&app, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["status_reason"], "out_of_stock: SKU-1");
    let w = &participants.world;
    assert_eq!(w.authorize.calls(), 0);
    assert_eq!(w.release.calls(), 0, "nothing was reserved");
}

#[tokio::test]
async fn a_declined_payment_releases_the_reservation_then_cancels() {
    let participants = Participants::start().await;
    participants
        .world
        .declined_customers
        .lock()
        .unwrap()
        .insert("c-broke".into());
    let app = app_with(&participants).await;
    let id = app.create_order(&order_for("c-broke")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let order = finished(&app, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["status_reason"], "payment_declined");
    let w = &participants.world;
    assert_eq!(w.release.keys_of(&id), [format!("{id}:release_inventory")]);
    assert_eq!(w.void.calls(), 0, "nothing was authorized");
}

#[tokio::test]
async fn a_compensated_saga_s_whole_audit_trail_is_rebuilt_from_the_topic() {
    let participants = Participants::start().await;
    participants
        .world
        .declined_customers
        .lock()
        .unwrap()
        .insert("c-broke".into());
    let sinks = crate::helpers::Sinks::fresh();
    let app = spawn_app_with(Options {
        extra_args: participants.args(),
        sinks: Some(sinks.clone()),
        ..Options::default()
    })
    .await;
    let id = app.create_order(&order_for("c-broke")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(finished(&app, &id).await["status"], "CANCELLED");
    app.relay
        .as_ref()
        .expect("relay")
        .drain()
        .await
        .expect("drain");

    // A consumer that knows only the topic: this order's records, in the order read.
    let records = crate::sinks::consume_until(&sinks, Duration::from_secs(30), |r| {
        crate::sinks::dedupe(r)
            .iter()
            .any(|c| c.order_id() == id && c.event["event_type"] == "order.cancelled")
    })
    .await;
    let trail: Vec<Value> = crate::sinks::dedupe(&records)
        .into_iter()
        .filter(|c| c.key == id)
        .map(|c| c.event)
        .collect();
    let types: Vec<&str> = trail
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "order.created",
            "inventory.reserved",
            "inventory.released",
            "order.cancelled"
        ]
    );
    // What was reserved is what was released: the inventory service's id, as it answered.
    let reserved = participants
        .world
        .reservations
        .lock()
        .unwrap()
        .values()
        .next()
        .cloned()
        .expect("one reservation");
    assert_eq!(trail[1]["payload"]["reservation_id"], reserved.as_str());
    assert_eq!(trail[2]["payload"]["reservation_id"], reserved.as_str());
    for step in &trail[1..3] {
        assert_eq!(step["payload"]["actor"], "saga");
        assert_eq!(step["payload"]["status"], "PENDING");
        assert_eq!(step["order_version"], 1);
    }
    // The rebuilt order: created at its total, then cancelled with the saga's reason.
    assert_eq!(trail[0]["payload"]["order"]["customer_id"], "c-broke");
    assert_eq!(trail[3]["payload"]["reason"], "payment_declined");
    assert_eq!(trail[3]["payload"]["previous_status"], "PENDING");
    // Never card data: the payment appears only as its method and amount.
    for event in &trail {
        let text = event.to_string();
        for word in ["card_number", "pan", "cvv", "cvc", "expiry"] {
            assert!(!text.contains(&format!("\"{word}\"")), "{word} in {text}");
        }
    }
}

#[tokio::test]
async fn a_payment_that_times_out_then_succeeds_authorizes_once() {
    let participants = Participants::start().await;
    let w = &participants.world;
    // The first answer comes after the client's 300 ms timeout: the payment service did the
    // work, the order service never heard. The retry carries the same key.
    *w.authorize.slow_by.lock().unwrap() = Duration::from_millis(800);
    w.authorize.slow_next.store(1, Ordering::SeqCst);
    let app = app_with(&participants).await;
    let id = app.create_order(&sample_order()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let order = finished(&app, &id).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert!(w.authorize.calls() >= 2, "the timed-out call was retried");
    assert_eq!(w.authorize.distinct_keys().len(), 1);
    assert_eq!(
        w.authorizations.lock().unwrap().len(),
        1,
        "one authorization, not two"
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("order_service_participant_retries_total{participant=\"payment\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_participant_down_opens_its_breaker_and_sagas_complete_once_it_is_back() {
    let participants = Participants::start().await;
    let w = &participants.world;
    w.authorize.down.store(true, Ordering::SeqCst);
    let app = app_with(&participants).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.create_order(&sample_order()).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    wait_until(SAGA_TIMEOUT, "the payment breaker to open", || async {
        let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
        metrics.contains("order_service_participant_breaker_state{participant=\"payment\"} 1")
    })
    .await;
    // Meanwhile the sagas wait at the payment step, saying why (once their own call came
    // back), and the order cannot be confirmed by hand.
    wait_until(SAGA_TIMEOUT, "the saga to record why it waits", || async {
        let order = app.order_json(&ids[0]).await;
        order["saga"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("payment")
    })
    .await;
    let order = app.order_json(&ids[0]).await;
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["saga"]["state"], "RUNNING");
    assert_eq!(order["saga"]["step"], "authorize_payment");
    let refused = app
        .change_status(&ids[0], Some("\"1\""), &json!({"status": "CONFIRMED"}))
        .await;
    assert_eq!(
        problem_type(&problem(refused, StatusCode::CONFLICT).await),
        "saga-in-progress"
    );
    let calls_while_open = w.authorize.calls();

    w.authorize.down.store(false, Ordering::SeqCst);
    for id in &ids {
        assert_eq!(finished(&app, id).await["status"], "CONFIRMED");
    }
    assert_eq!(w.authorizations.lock().unwrap().len(), 3);
    assert!(
        calls_while_open < 40,
        "the breaker held calls back ({calls_while_open})"
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(metrics.contains("order_service_participant_breaker_state{participant=\"payment\"} 0"));
}

#[tokio::test]
async fn a_failing_compensation_is_retried_until_it_is_done() {
    let participants = Participants::start().await;
    let w = &participants.world;
    w.declined_customers
        .lock()
        .unwrap()
        .insert("c-broke".into());
    // Each saga attempt makes two calls (one retry within the call): three attempts fail.
    w.release.fail_next.store(6, Ordering::SeqCst);
    let app = app_with(&participants).await;
    let id = app.create_order(&order_for("c-broke")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let order = finished(&app, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["status_reason"], "payment_declined");
    let keys = w.release.keys_of(&id);
    assert!(keys.len() >= 7, "retried until it succeeded: {keys:?}");
    assert!(keys.iter().all(|k| *k == format!("{id}:release_inventory")));
}

#[tokio::test]
async fn cancelling_during_the_saga_undoes_what_it_did() {
    let participants = Participants::start().await;
    let w = &participants.world;
    // Confirmation waits on a slow payment; the customer cancels meanwhile.
    *w.authorize.latency.lock().unwrap() = Duration::from_millis(250);
    let app = app_with(&participants).await;
    let id = cancel_while_calling(&app, &w.authorize).await;
    assert_eq!(w.void.keys_of(&id).len(), 1, "the authorization is voided");
    assert_eq!(
        w.release.keys_of(&id).len(),
        1,
        "the reservation is released"
    );
}

#[tokio::test]
async fn two_instances_share_the_sagas_and_never_run_one_twice() {
    let participants = Participants::start().await;
    *participants.world.reserve.latency.lock().unwrap() = Duration::from_millis(5);
    let db = fresh_database().await;
    let pool = order_service::db::pool(db.clone(), 8, Duration::from_secs(5));
    order_service::startup::migrate(&pool)
        .await
        .expect("migrate");
    let options = || Options {
        migrate: false,
        extra_args: participants.args(),
        ..Options::default()
    };
    let first = spawn_on(db.clone(), pool.clone(), options()).await;
    let second = spawn_on(db.clone(), pool.clone(), options()).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let app = if i % 2 == 0 { &first } else { &second };
        ids.push(
            app.create_order(&sample_order()).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    for id in &ids {
        assert_eq!(finished(&first, id).await["status"], "CONFIRMED");
    }
    let w = &participants.world;
    for id in &ids {
        assert_eq!(w.reserve.keys_of(id).len(), 1, "reserved once: {id}");
        assert_eq!(w.authorize.keys_of(id).len(), 1, "authorized once: {id}");
    }
    let confirmed_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE status = 'CONFIRMED' AND version = 2",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(confirmed_events, 30, "each order confirmed exactly once");
}

#[tokio::test]
async fn without_participants_there_is_no_saga_and_the_status_api_confirms() {
    let app = spawn_app_with(Options::default()).await;
    let order = app.create_order(&sample_order()).await;
    assert!(order.get("saga").is_none(), "{order}");
    let id = order["id"].as_str().expect("id");
    let response = app
        .change_status(id, Some("\"1\""), &json!({"status": "CONFIRMED"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn only_some_participants_is_a_configuration_error() {
    let db = sqlx::postgres::PgConnectOptions::new();
    let options = Options {
        extra_args: vec!["--customer-url".into(), "http://127.0.0.1:1/".into()],
        ..Options::default()
    };
    let config = crate::helpers::serve_config(&db, &options);
    let metrics = std::sync::Arc::new(order_service::metrics::Metrics::new(1));
    let error = config
        .saga
        .participants(&metrics)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("all three participants"), "{error}");
}

const BIN: &str = env!("CARGO_BIN_EXE_order-service");

/// The fakes' flags with another saga lease: a dead worker's sagas become due again after it.
fn with_lease(mut args: Vec<String>, lease: &str) -> Vec<String> {
    if let Some(i) = args.iter().position(|a| a == "--saga-lease") {
        args[i + 1] = lease.to_owned();
    }
    args
}

fn start_binary(
    db: &sqlx::postgres::PgConnectOptions,
    participants: &Participants,
    port: u16,
) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args([
            "--database-url",
            &crate::helpers::url(db),
            "--sinks",
            "none",
        ])
        .args(with_lease(participants.args(), "1s"))
        .env("ORDER_SERVICE_LOG", "warn")
        .env("ORDER_SERVICE_AUTH_DISABLED", "true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-service")
}

#[tokio::test]
async fn kill_9_mid_saga_resumes_without_reserving_or_charging_twice() {
    const ORDERS: usize = 20;
    let participants = Participants::start().await;
    let w = &participants.world;
    // Slow participants keep sagas in flight when the process dies.
    *w.reserve.latency.lock().unwrap() = Duration::from_millis(100);
    *w.authorize.latency.lock().unwrap() = Duration::from_millis(150);
    let db = fresh_database().await;
    let pool = order_service::db::pool(db.clone(), 4, Duration::from_secs(5));
    order_service::startup::migrate(&pool)
        .await
        .expect("migrate");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = start_binary(&db, &participants, port);
    wait_until(Duration::from_secs(30), "the service to answer", || {
        let request = http.get(format!("{base}/livez")).send();
        async move { request.await.is_ok() }
    })
    .await;
    for i in 0..ORDERS {
        let response = http
            .post(format!("{base}/v1/orders"))
            .header("idempotency-key", format!("saga-crash-{i}"))
            .json(&sample_order())
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    wait_until(
        SAGA_TIMEOUT,
        "sagas in flight at the payment step",
        || async { w.authorize.calls() >= 3 },
    )
    .await;
    child.start_kill().expect("kill -9");
    child.wait().await.expect("reaped");
    let confirmed_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'CONFIRMED'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert!(
        (confirmed_before as usize) < ORDERS,
        "the crash happened mid-saga"
    );

    let mut child = start_binary(&db, &participants, port);
    wait_until(
        SAGA_TIMEOUT,
        "every saga to finish after the restart",
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sagas WHERE state = 'CONFIRMED'")
                .fetch_one(&pool)
                .await
                .unwrap_or(0)
                == ORDERS as i64
        },
    )
    .await;
    child.start_kill().ok();
    child.wait().await.ok();

    // The fakes saw repeats (the calls cut off by the crash) only with the same keys.
    assert_eq!(
        w.reservations.lock().unwrap().len(),
        ORDERS,
        "one reservation per order"
    );
    assert_eq!(
        w.authorizations.lock().unwrap().len(),
        ORDERS,
        "one authorization per order"
    );
    assert_eq!(w.reserve.distinct_keys().len(), ORDERS);
    assert_eq!(w.authorize.distinct_keys().len(), ORDERS);
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM orders")
        .fetch_all(&pool)
        .await
        .expect("orders");
    assert!(
        versions.iter().all(|v| *v == 2),
        "each order confirmed once: {versions:?}"
    );
}

#[tokio::test]
async fn sagas_stuck_lists_what_is_not_moving_and_why() {
    let participants = Participants::start().await;
    participants
        .world
        .authorize
        .down
        .store(true, Ordering::SeqCst);
    let app = app_with(&participants).await;
    let id = app.create_order(&sample_order()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_until(SAGA_TIMEOUT, "a failed payment attempt", || async {
        app.order_json(&id).await["saga"]["attempts"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    let database_url = crate::helpers::url(&app.config.database.database_url);
    let run = |older_than: &'static str| {
        let database_url = database_url.clone();
        async move {
            tokio::process::Command::new(BIN)
                .args(["sagas", "--stuck", "--older-than", older_than])
                .args(["--database-url", &database_url])
                .env("ORDER_SERVICE_LOG", "warn")
                .output()
                .await
                .expect("run sagas")
        }
    };
    let stuck = run("1ms").await;
    let out = String::from_utf8_lossy(&stuck.stdout);
    assert_eq!(stuck.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&id) && out.contains("authorize_payment"),
        "{out}"
    );
    assert!(out.contains("payment"), "the reason: {out}");
    let fresh = run("1h").await;
    assert_eq!(fresh.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&fresh.stdout).contains("no saga has been stuck"));

    // /flowz and /metrics count it once it has been at its step past --saga-stuck-after (10m).
    async fn flow(app: &crate::helpers::TestApp) -> serde_json::Value {
        app.get("/flowz").await.json().await.expect("JSON")
    }
    assert_eq!(flow(&app).await["sagas_stuck"], 0);
    sqlx::query("UPDATE sagas SET step_since = now() - interval '11 minutes' WHERE order_id = $1")
        .bind(id.parse::<uuid::Uuid>().expect("uuid"))
        .execute(&app.pool)
        .await
        .expect("age the saga's step");
    let body = flow(&app).await;
    assert_eq!(body["sagas_stuck"], 1, "{body}");
    assert_eq!(body["saga_stuck_after_seconds"], 600, "{body}");
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(metrics.contains("order_service_sagas_stuck 1"), "{metrics}");
}

#[tokio::test]
async fn with_an_otlp_endpoint_spans_are_exported_and_calls_continue_the_callers_trace() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let participants = Participants::start().await;
    let db = fresh_database().await;
    let pool = order_service::db::pool(db.clone(), 2, Duration::from_secs(5));
    order_service::startup::migrate(&pool)
        .await
        .expect("migrate");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args([
            "--database-url",
            &crate::helpers::url(&db),
            "--sinks",
            "none",
        ])
        .args(participants.args())
        .env("ORDER_SERVICE_LOG", "warn")
        .env("ORDER_SERVICE_AUTH_DISABLED", "true")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-service");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "the service to answer", || {
        let request = http.get(format!("{base}/livez")).send();
        async move { request.await.is_ok() }
    })
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let created = http
        .post(format!("{base}/v1/orders"))
        .header("idempotency-key", crate::helpers::new_key())
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&sample_order())
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let w = &participants.world;
    wait_until(SAGA_TIMEOUT, "the payment call", || async {
        w.authorize.calls() > 0
    })
    .await;
    // The participant sees the caller's trace, with the order service's own span as parent.
    let sent = w.authorize.traceparents.lock().unwrap()[0].clone();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.get(1), Some(&trace_id), "{sent}");
    assert_ne!(
        parts.get(2),
        Some(&caller_span),
        "a span of its own: {sent}"
    );

    // And the spans reach the collector, in that trace (OTLP/protobuf carries raw id bytes).
    let id_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    wait_until(
        SAGA_TIMEOUT,
        "spans of the trace at the collector",
        || async {
            collector
                .received_requests()
                .await
                .unwrap_or_default()
                .iter()
                .any(|r| r.body.windows(16).any(|w| w == id_bytes.as_slice()))
        },
    )
    .await;
    let exported = collector.received_requests().await.unwrap_or_default();
    assert_eq!(
        exported[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    child.start_kill().ok();
    child.wait().await.ok();
}

/// The sample order, `n` times; returns the ids.
async fn create_orders(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            app.create_order(&sample_order()).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    ids
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap_or_default()
}

/// Waits until every order's saga is at `step`; each must still be PENDING, its saga RUNNING.
async fn all_waiting_at(app: &TestApp, ids: &[String], step: &str) {
    wait_until(SAGA_TIMEOUT, &format!("every saga at {step}"), || async {
        for id in ids {
            let order = app.order_json(id).await;
            assert_eq!(order["status"], "PENDING", "{order}");
            assert_eq!(order["saga"]["state"], "RUNNING", "{order}");
            if order["saga"]["step"] != step {
                return false;
            }
        }
        true
    })
    .await;
}

#[tokio::test]
async fn answers_outside_the_contract_cancel_nothing_and_every_order_confirms_once_fixed() {
    let participants = Participants::start().await;
    let w = &participants.world;
    let app = app_with(&participants).await;

    // A proxy's HTML page with 200, then a wrong base path (404 without the documented body)
    // at the customer service: neither is an answer about the customer.
    *w.customer.answer_with.lock().unwrap() = Some((200, "<html>ok</html>".into()));
    let ids = create_orders(&app, 3).await;
    wait_until(SAGA_TIMEOUT, "a non-JSON 2xx to be counted", || async {
        metrics(&app).await.contains(
            "order_service_participant_unexpected_answers_total{participant=\"customer\",status=\"invalid_body\"}",
        )
    })
    .await;
    all_waiting_at(&app, &ids, "validate_customer").await;
    *w.customer.answer_with.lock().unwrap() = Some((404, "Not Found".into()));
    wait_until(SAGA_TIMEOUT, "a bare 404 to be counted", || async {
        metrics(&app).await.contains(
            "order_service_participant_unexpected_answers_total{participant=\"customer\",status=\"404\"}",
        )
    })
    .await;
    all_waiting_at(&app, &ids, "validate_customer").await;

    // The customer service is fixed; the payment service's credential has expired (401), then
    // it answers 405 (a method the route does not take).
    *w.authorize.answer_with.lock().unwrap() = Some((401, r#"{"message":"token expired"}"#.into()));
    *w.customer.answer_with.lock().unwrap() = None;
    wait_until(SAGA_TIMEOUT, "a 401 to be counted", || async {
        metrics(&app).await.contains(
            "order_service_participant_unexpected_answers_total{participant=\"payment\",status=\"401\"}",
        )
    })
    .await;
    *w.authorize.answer_with.lock().unwrap() = Some((405, String::new()));
    wait_until(SAGA_TIMEOUT, "a 405 to be counted", || async {
        metrics(&app).await.contains(
            "order_service_participant_unexpected_answers_total{participant=\"payment\",status=\"405\"}",
        )
    })
    .await;
    all_waiting_at(&app, &ids, "authorize_payment").await;

    *w.authorize.answer_with.lock().unwrap() = None;
    for id in &ids {
        assert_eq!(finished(&app, id).await["status"], "CONFIRMED");
    }
    assert_eq!(w.authorizations.lock().unwrap().len(), 3);
    assert_eq!(w.release.calls(), 0, "nothing was undone");
}

#[tokio::test]
async fn a_participant_unavailable_past_the_saga_deadline_cancels_with_the_documented_reason() {
    let participants = Participants::start().await;
    let w = &participants.world;
    w.reserve.down.store(true, Ordering::SeqCst);
    let mut args = participants.args();
    args.extend(["--saga-deadline".to_owned(), "1s".to_owned()]);
    let app = spawn_app_with(Options {
        extra_args: args,
        ..Options::default()
    })
    .await;
    let id = app.create_order(&sample_order()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let order = finished(&app, &id).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    let reason = order["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("inventory_unavailable: "),
        "the documented reason: {reason}"
    );
    assert_eq!(w.authorize.calls(), 0, "no payment was tried");
}

#[tokio::test]
async fn cancelling_before_the_payment_step_means_no_authorization_is_ever_made() {
    let participants = Participants::start().await;
    let w = &participants.world;
    // The reservation takes a while; the customer cancels during it.
    *w.reserve.latency.lock().unwrap() = Duration::from_millis(250);
    let app = app_with(&participants).await;
    let id = cancel_while_calling(&app, &w.reserve).await;
    assert_eq!(w.authorize.calls(), 0, "the payment step never started");
    assert_eq!(w.void.calls(), 0);
    assert_eq!(
        w.release.keys_of(&id).len(),
        1,
        "the reservation made before the cancel is released"
    );
}

#[tokio::test]
async fn workers_keep_saga_concurrency_in_flight_whatever_the_claim_batch() {
    let participants = Participants::start().await;
    let w = &participants.world;
    // Every customer answer takes long; with a claim batch of 2 and room for 8, all 8 sagas
    // must be calling at once, not 2 at a time.
    *w.customer.latency.lock().unwrap() = Duration::from_secs(3);
    let mut args = participants.args();
    let timeout = args
        .iter()
        .position(|a| a == "--participant-timeout")
        .expect("the fakes' timeout flag");
    args[timeout + 1] = "10s".into();
    args.extend(["--saga-concurrency", "8", "--saga-claim-batch", "2"].map(str::to_owned));
    let app = spawn_app_with(Options {
        extra_args: args,
        ..Options::default()
    })
    .await;
    let ids = create_orders(&app, 8).await;
    // Less than one answer's delay: no saga can have finished its call and freed a slot.
    wait_until(
        Duration::from_millis(2500),
        "8 customer calls in flight",
        || async { w.customer.calls() >= 8 },
    )
    .await;
    for id in &ids {
        assert_eq!(finished(&app, id).await["status"], "CONFIRMED");
    }
}
