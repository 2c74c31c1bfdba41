//! Request metrics middleware and the `/metrics` endpoint.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::metrics::{RequestLabels, RouteLabels};

/// Counts and times every request under its route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RouteLabels { method, route };
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: labels.method,
            route: labels.route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Prometheus metrics (OpenMetrics text): requests, latency, outbox backlog, pool, sagas.
///
/// The outbox backlog and the stuck sagas are read from PostgreSQL at scrape time, with bounded
/// index reads (`flow::read`); when that read fails the other metrics are still served.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "The metrics", body = String,
     content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    (status = 500, description = "Rendering the metrics failed (no body)")))]
pub async fn scrape(State(state): State<AppState>) -> Response {
    if let Err(error) = super::flow::read(&state).await {
        tracing::warn!(error = %crate::telemetry::error_chain(&error), "reading the outbox backlog and stuck sagas failed")
    }
    match state.metrics.render(&state.pool) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
