//! Fake participants for the saga benchmark: every call answers success after a fixed delay
//! (the "participants answering in 5 ms"). Tests use wiremock fakes with state; this
//! one only needs to be fast and predictable under load.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Serves the participants' routes on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, latency: Duration) -> anyhow::Result<()> {
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
                tokio::time::sleep(latency).await;
                Json(json!({"customer_id": id, "status": "ACTIVE"}))
            }),
        )
        .route(
            "/v1/reservations",
            post(move |headers: HeaderMap| async move {
                tokio::time::sleep(latency).await;
                Json(json!({"reservation_id": format!("r-{}", key(&headers))}))
            }),
        )
        .route(
            "/v1/authorizations",
            post(move |headers: HeaderMap| async move {
                tokio::time::sleep(latency).await;
                Json(json!({"authorization_id": format!("a-{}", key(&headers))}))
            }),
        )
        .route("/v1/reservations/{id}/release", post(move || done(latency)))
        .route("/v1/authorizations/{id}/void", post(move || done(latency)));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

async fn done(latency: Duration) -> Json<Value> {
    tokio::time::sleep(latency).await;
    Json(json!({"status": "done"}))
}
