//! Events over the stack broker's SASL_SSL listener (SCRAM-SHA-512, a local CA), as production
//! brokers take them; read back on its plaintext listener.

use std::time::Duration;

use order_service::outbox::sink::Sink;
use reqwest::StatusCode;

use crate::helpers::{sample_order, spawn_app_with, Options, Sinks};
use crate::sinks::{consume_until, pending};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make test`"))
}

/// `--kafka-property` flags for the SASL_SSL listener with `password`.
fn sasl_ssl_flags(password: &str) -> Vec<String> {
    [
        "security.protocol=SASL_SSL".to_owned(),
        "sasl.mechanisms=SCRAM-SHA-512".to_owned(),
        format!("sasl.username={}", env("KAFKA_SECURE_USER")),
        format!("sasl.password={password}"),
        format!("ssl.ca.location={}", env("KAFKA_SECURE_CA")),
    ]
    .into_iter()
    .flat_map(|p| ["--kafka-property".to_owned(), p])
    .collect()
}

#[tokio::test]
async fn events_are_published_over_sasl_ssl() {
    let plaintext = Sinks::fresh();
    let secure = Sinks {
        kafka_bootstrap: env("KAFKA_SECURE_BOOTSTRAP_SERVERS"),
        ..plaintext.clone()
    };
    let app = spawn_app_with(Options {
        sinks: Some(secure),
        extra_args: sasl_ssl_flags(&env("KAFKA_SECURE_PASSWORD")),
        ..Options::default()
    })
    .await;
    let order = app.create_order(&sample_order()).await;
    app.relay
        .as_ref()
        .expect("relay")
        .drain()
        .await
        .expect("drain");
    assert_eq!(pending(&app, "kafka").await, 0, "delivered");
    let records = consume_until(&plaintext, Duration::from_secs(30), |r| !r.is_empty()).await;
    assert_eq!(records[0].order_id(), order["id"].as_str().unwrap());
}

#[tokio::test]
async fn a_wrong_password_keeps_events_in_the_outbox_and_shows_in_readiness() {
    let plaintext = Sinks::fresh();
    // The topic exists (made on the plaintext listener); only this app's password is wrong.
    let made = spawn_app_with(Options {
        sinks: Some(plaintext.clone()),
        ..Options::default()
    })
    .await;
    drop(made);
    let secure = Sinks {
        kafka_bootstrap: env("KAFKA_SECURE_BOOTSTRAP_SERVERS"),
        ..plaintext
    };
    let app = spawn_app_with(Options {
        sinks: Some(secure),
        extra_args: sasl_ssl_flags("not-the-password"),
        provision: false,
        ..Options::default()
    })
    .await;
    app.create_order(&sample_order()).await;
    let relay = app.relay.as_ref().expect("relay");
    // One pass: the delivery fails (the producer's timeout) and stays queued for a retry.
    relay.step(Sink::Kafka).await.expect("a relay step");
    assert_eq!(pending(&app, "kafka").await, 1, "nothing lost");
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::OK, "degraded, still serving");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["checks"]["kafka"]["status"], "failed", "{body}");
}
