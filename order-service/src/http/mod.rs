//! The HTTP API: the router, shared state and the middleware stack.

pub mod error;
pub mod extract;
pub mod flow;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod projections;
pub mod reports;
pub mod responses;
pub mod sagas;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use self::error::{ApiError, ErrorReport};
use self::extract::BodyLimit;
use crate::metrics::Metrics;
use crate::outbox::sink::Sink;
use crate::sinks::Projections;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The primary: writes, reads by id, everything transactional.
    pub pool: PgPool,
    /// Where reads that may be stale go (lists, reports): the read replica when configured.
    pub reads: crate::replica::Reads,
    pub metrics: Arc<Metrics>,
    /// Sinks every change gets a delivery row for.
    pub sinks: Arc<[Sink]>,
    /// Readers of the projections (history, counters) and sink health.
    pub projections: Projections,
    /// Whether `/readyz` fails (503) when a sink is down, rather than reporting `degraded`.
    pub readiness_requires_sinks: bool,
    /// How long an Idempotency-Key replays its order; an older key creates a new one.
    pub idempotency_key_ttl: Duration,
    /// With participants configured: wakes the saga workers when an order is created.
    pub saga: Option<Arc<tokio::sync::Notify>>,
    /// With a catalog configured: prices, names and sellability of the SKUs of a create.
    pub catalog: Option<Arc<crate::catalog::Catalog>>,
    /// Authentication and rate limits of `/v1`.
    pub access: Arc<crate::auth::Access>,
    /// How long at one step makes an unfinished saga stuck (`/flowz`, `/metrics`).
    pub saga_stuck_after: Duration,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

/// The whole application: API, probes, metrics and docs, with the middleware stack.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    // Authentication and rate limits guard the API; probes, /flowz, metrics and docs stay open.
    let api = Router::new()
        .merge(orders::router())
        .merge(projections::router())
        .merge(reports::router())
        .route_layer(middleware::from_fn_with_state(
            state.access.clone(),
            crate::auth::guard,
        ));
    Router::new()
        .merge(api)
        .merge(health::router())
        .merge(openapi::router(
            state.access.is_enabled(),
            state.catalog.is_some(),
        ))
        .route("/metrics", get(metrics::scrape))
        .route("/flowz", get(flow::flowz))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(Extension(BodyLimit(limits.body_limit_bytes)))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            enforce_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let id = request
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            let span = tracing::info_span!(
                                "request",
                                method = %request.method(),
                                path = %request.uri().path(),
                                request_id = %id,
                            );
                            // A caller's trace continues here (when traces are exported).
                            crate::telemetry::continue_trace(
                                &span,
                                crate::telemetry::incoming_traceparent(request.headers())
                                    .as_deref(),
                            );
                            span
                        })
                        .on_request(())
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(finish_errors))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
                })),
        )
        .with_state(state)
}

/// Logs the cause of every 5xx inside the request's span (so with its request id), and puts
/// the request id into every problem body, so a client's report names the log lines. The error
/// type attaches the cause; conversions never log.
async fn finish_errors(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    if let Some(ErrorReport(cause)) = response.extensions().get::<ErrorReport>() {
        tracing::error!(status = response.status().as_u16(), error = %cause, "request failed");
    }
    match request_id {
        Some(id) if error::is_problem(&response) => error::with_request_id(response, id).await,
        _ => response,
    }
}

/// Bounds every request. Hand-written rather than `tower_http::timeout` so that the answer
/// is a problem+json body like every other error.
async fn enforce_timeout(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(timeout).into_response(),
    }
}
