//! Fake participants for the saga benchmark: every call answers success after a fixed delay
//! (the "participants answering in 5 ms"), one of them optionally slow for a share of
//! its calls. Tests use wiremock fakes with state; this
//! one only needs to be fast and predictable under load.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// How long the fakes answer: `base` always, and one participant `slow` for a share of calls.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    base: Duration,
    slow: Option<(&'static str, f64, Duration)>,
}

impl Latency {
    pub fn of(config: &super::BenchConfig) -> Self {
        let slow = config.slow_participant.as_deref().map(|which| {
            let which = match which {
                "customer" => "customer",
                "inventory" => "inventory",
                _ => "payment",
            };
            (which, config.slow_fraction, config.slow_latency)
        });
        Self {
            base: config.participant_latency,
            slow,
        }
    }

    /// Waits as `participant` would.
    async fn wait(self, participant: &str) {
        let delay = match self.slow {
            Some((which, share, slow)) if which == participant && rand::random::<f64>() < share => {
                slow
            }
            _ => self.base,
        };
        tokio::time::sleep(delay).await;
    }
}

/// Serves the participants' routes on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, latency: Latency) -> anyhow::Result<()> {
    let key = |headers: &HeaderMap| {
        headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let router = Router::new()
        .route(
            "/v1/customers/{id}",
            get(move |Path(id): Path<String>| async move {
                latency.wait("customer").await;
                Json(json!({"customer_id": id, "status": "ACTIVE"}))
            }),
        )
        .route(
            "/v1/reservations",
            post(move |headers: HeaderMap| async move {
                latency.wait("inventory").await;
                Json(json!({"reservation_id": format!("r-{}", key(&headers))}))
            }),
        )
        .route(
            "/v1/authorizations",
            post(move |headers: HeaderMap| async move {
                latency.wait("payment").await;
                Json(json!({"authorization_id": format!("a-{}", key(&headers))}))
            }),
        )
        .route(
            "/v1/reservations/{id}/release",
            post(move || done(latency, "inventory")),
        )
        .route(
            "/v1/authorizations/{id}/void",
            post(move || done(latency, "payment")),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

async fn done(latency: Latency, participant: &'static str) -> Json<Value> {
    latency.wait(participant).await;
    Json(json!({"status": "done"}))
}
