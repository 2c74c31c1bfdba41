//! Pricing from the product catalog (faked with wiremock, `catalog_fake.rs`): prices, names
//! and sellability come from the catalog, a client price that differs is refused, the cache
//! is shared and single-flight, stale prices serve while the catalog is down (up to the bound),
//! and product events on a real Kafka topic reach every replica.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::catalog_fake::FakeCatalog;
use crate::helpers::{
    new_key, problem, problem_type, spawn_app_with, spawn_on, wait_until, Options, TestApp,
};

fn order_of(lines: &[(&str, Option<i64>)]) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(sku, price)| match price {
            Some(price) => json!({"sku": sku, "quantity": 2, "unit_price_minor": price}),
            None => json!({"sku": sku, "quantity": 2}),
        })
        .collect();
    json!({
        "customer_id": "c-42", "currency": "EUR", "items": items,
        "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "shipping_minor": 490, "payment": {"method": "card"}
    })
}

async fn spawn_priced(catalog: &FakeCatalog, ttl: &str, max_staleness: &str) -> TestApp {
    spawn_app_with(Options {
        extra_args: catalog.args(ttl, max_staleness),
        ..Options::default()
    })
    .await
}

/// A metric's value in the app's `/metrics` (0 when absent).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn prices_and_names_come_from_the_catalog_and_a_different_client_price_is_refused() {
    let catalog = FakeCatalog::start().await;
    catalog.stock("SKU-1", "Widget", 1250, "EUR", true);
    catalog.stock("SKU-2", "Gadget", 300, "EUR", true);
    let app = spawn_priced(&catalog, "5m", "15m").await;

    // No price sent (and no name): the catalog's, totals from them alone.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = app
        .client
        .post(app.url("/v1/orders"))
        .header("idempotency-key", new_key())
        .header("traceparent", traceparent)
        .json(&order_of(&[("SKU-1", None), ("SKU-2", None)]))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.expect("order");
    assert_eq!(order["items"][0]["name"], "Widget");
    assert_eq!(order["items"][0]["unit_price_minor"], 1250);
    assert_eq!(order["items"][1]["name"], "Gadget");
    assert_eq!(order["subtotal_minor"], 2 * 1250 + 2 * 300);
    assert_eq!(order["total_minor"], 2 * 1250 + 2 * 300 + 490);
    // One batch call for both SKUs, in the caller's trace.
    let calls = catalog.shelf.calls.lock().unwrap().clone();
    assert_eq!(calls, vec![vec!["SKU-1".to_owned(), "SKU-2".to_owned()]]);
    let seen = catalog.shelf.traceparents.lock().unwrap()[0].clone();
    assert!(
        seen.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "traceparent {seen:?}"
    );

    // The client's price, when the catalog's, is accepted; a name sent is replaced.
    let mut body = order_of(&[("SKU-1", Some(1250))]);
    body["items"][0]["name"] = json!("Cheap thing");
    let order = app.create_order(&body).await;
    assert_eq!(order["items"][0]["name"], "Widget");

    // A price that is not the catalog's: 409 listing every line's current price, nothing stored.
    let before = app.count("orders").await;
    let response = app
        .post_order(
            &new_key(),
            &order_of(&[("SKU-1", Some(1)), ("SKU-2", None)]),
        )
        .await;
    let body = problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem_type(&body), "price-changed");
    assert_eq!(
        body["current_prices"],
        json!([{"sku": "SKU-1", "unit_price_minor": 1250, "currency": "EUR"},
               {"sku": "SKU-2", "unit_price_minor": 300, "currency": "EUR"}])
    );
    assert!(body["request_id"].is_string());
    assert_eq!(app.count("orders").await, before);
    // All from the cache after the first call.
    assert_eq!(catalog.received().await, 1);
    assert!(
        metric(
            &app,
            "order_service_catalog_cache_lookups_total{result=\"hit\"}"
        )
        .await
            >= 3.0
    );
}

#[tokio::test]
async fn unknown_inactive_and_foreign_currency_skus_are_refused_per_item() {
    let catalog = FakeCatalog::start().await;
    catalog.stock("SKU-1", "Widget", 1250, "EUR", true);
    catalog.stock("OLD-1", "Retired", 100, "EUR", false);
    catalog.stock("USD-1", "Import", 100, "USD", true);
    let app = spawn_priced(&catalog, "5m", "15m").await;

    let body = order_of(&[
        ("SKU-1", None),
        ("NOPE-1", None),
        ("OLD-1", None),
        ("USD-1", Some(100)),
    ]);
    let response = app.post_order(&new_key(), &body).await;
    let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem_type(&problem), "validation-failed");
    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["items[1].sku", "items[2].sku", "items[3].sku"],
        "{errors:?}"
    );
    assert!(
        errors[0].1.contains("not in the product catalog"),
        "{errors:?}"
    );
    assert!(errors[1].1.contains("not for sale"), "{errors:?}");
    assert!(errors[2].1.contains("sold in USD"), "{errors:?}");
    assert_eq!(app.count("orders").await, 0);
}

#[tokio::test]
async fn fifty_concurrent_creates_for_one_uncached_sku_make_one_catalog_call() {
    let catalog = FakeCatalog::start().await;
    catalog.stock("SKU-HOT", "Hot item", 999, "EUR", true);
    // Slow enough that every create arrives while the first lookup is in flight.
    catalog.set_latency(Duration::from_millis(150));
    let app = spawn_priced(&catalog, "5m", "15m").await;

    let creates = (0..50).map(|_| {
        let app = &app;
        async move {
            app.post_order(&new_key(), &order_of(&[("SKU-HOT", None)]))
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(creates).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "{statuses:?}"
    );
    assert_eq!(catalog.received().await, 1);
    assert_eq!(app.count("orders").await, 50);
}

#[tokio::test]
async fn with_the_catalog_down_cached_prices_serve_until_the_staleness_bound_then_503() {
    let catalog = FakeCatalog::start().await;
    catalog.stock("SKU-1", "Widget", 1250, "EUR", true);
    let app = spawn_priced(&catalog, "200ms", "2s").await;

    let fetched = Instant::now();
    app.create_order(&order_of(&[("SKU-1", None)])).await;
    catalog.set_down(true);

    // Creates go on at the cached price; past the TTL they ask the catalog (which fails) and
    // still succeed; past the staleness bound they are refused.
    let mut served_stale = false;
    let refused = loop {
        let asked_before = catalog.received().await;
        let response = app
            .post_order(&new_key(), &order_of(&[("SKU-1", None)]))
            .await;
        if response.status() != StatusCode::CREATED {
            break response;
        }
        let order: Value = response.json().await.expect("order");
        assert_eq!(order["items"][0]["unit_price_minor"], 1250);
        served_stale |= catalog.received().await > asked_before;
        assert!(
            fetched.elapsed() < Duration::from_secs(10),
            "still creating 10 s after the catalog went down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        fetched.elapsed() >= Duration::from_secs(2),
        "refused before the bound"
    );
    assert!(
        served_stale,
        "no create used a stale price after the catalog failed"
    );
    let retry_after = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    let body = problem(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem_type(&body), "catalog-unavailable");
    assert!(
        !body["detail"].as_str().unwrap().contains("127.0.0.1"),
        "{body}"
    );
    assert!(
        metric(
            &app,
            "order_service_catalog_cache_lookups_total{result=\"stale\"}"
        )
        .await
            >= 1.0
    );

    // Back: creates succeed again (once the breaker lets a call through).
    catalog.stock("SKU-1", "Widget", 1300, "EUR", true);
    catalog.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    let price = loop {
        let response = app
            .post_order(&new_key(), &order_of(&[("SKU-1", None)]))
            .await;
        if response.status() == StatusCode::CREATED {
            let order: Value = response.json().await.expect("order");
            break order["items"][0]["unit_price_minor"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no create succeeded once the catalog was back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(price, 1300);
}

/// Creates a topic of 3 partitions, as the catalog's would be.
async fn product_topic() -> (String, String) {
    use order_operator::provision::kafka::{DesiredTopic, KafkaTarget, TopicProvisioner};
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .expect("KAFKA_BOOTSTRAP_SERVERS (run `make test`)");
    let topic = format!(
        "test.products.{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let target = KafkaTarget {
        bootstrap_servers: bootstrap.clone(),
        properties: Vec::new(),
        timeout: Duration::from_secs(20),
    };
    TopicProvisioner::connect(&target)
        .expect("Kafka admin client")
        .converge(&[DesiredTopic::new(&topic)])
        .await
        .expect("create the product topic");
    (bootstrap, topic)
}

#[tokio::test]
async fn a_product_event_makes_the_next_create_on_every_replica_use_the_new_price() {
    let catalog = FakeCatalog::start().await;
    catalog.stock("SKU-1", "Widget", 1250, "EUR", true);
    let (bootstrap, topic) = product_topic().await;
    let options = || {
        let mut extra_args = catalog.args("10m", "10m");
        extra_args.extend([
            "--kafka-bootstrap-servers".to_owned(),
            bootstrap.clone(),
            "--product-events-topic".to_owned(),
            topic.clone(),
        ]);
        Options {
            extra_args,
            ..Options::default()
        }
    };
    // Two replicas of one service: one database, each with its own cache and consumer.
    let first = spawn_app_with(options()).await;
    let second = spawn_on(
        first.config.database.database_url.clone(),
        first.pool.clone(),
        options(),
    )
    .await;
    let replicas = [&first, &second];
    for app in replicas {
        wait_until(
            Duration::from_secs(10),
            "the product topic assigned",
            || async move { metric(app, "order_service_product_events_partitions").await >= 1.0 },
        )
        .await;
        let order = app.create_order(&order_of(&[("SKU-1", None)])).await;
        assert_eq!(order["items"][0]["unit_price_minor"], 1250);
    }
    assert_eq!(
        catalog.received().await,
        2,
        "one lookup per replica's cache"
    );

    catalog.stock("SKU-1", "Widget", 1400, "EUR", true);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let event = json!({
        "event_id": Uuid::new_v4(), "event_type": "product.updated", "schema_version": 1,
        "occurred_at": chrono::Utc::now(), "sku": "SKU-1",
    })
    .to_string();
    producer
        .send(
            FutureRecord::to(&topic).key("SKU-1").payload(&event),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("publish product.updated");

    for app in replicas {
        wait_until(
            Duration::from_secs(1),
            "the event dropping SKU-1 within a second",
            || async move {
                metric(app, "order_service_catalog_cache_invalidations_total").await >= 1.0
            },
        )
        .await;
        let order = app.create_order(&order_of(&[("SKU-1", None)])).await;
        assert_eq!(order["items"][0]["unit_price_minor"], 1400);
    }
}
