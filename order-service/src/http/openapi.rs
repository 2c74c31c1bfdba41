//! The OpenAPI document, generated from the handlers, and a browsable docs page.
//!
//! The document is held to the server: `tests/api/openapi.rs` fuzzes the running service from
//! it with schemathesis, checking every status, header, content type and body it answers
//! against what is declared here, and that requests the schemas refuse are refused.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_redoc::{Redoc, Servable};

use super::error::Problem;
use super::responses::{
    BadRequest, Conflict, InternalError, NotFound, PayloadTooLarge, PreconditionFailed,
    PreconditionRequired, ServiceUnavailable, UnprocessableContent, UnsupportedMediaType,
};
use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Order service", description = "Orders with items, addresses and payment, stored in PostgreSQL."),
    paths(
        super::orders::create_order,
        super::orders::get_order,
        super::orders::list_orders,
        super::orders::change_status,
        super::orders::cancel_order,
        super::projections::order_history,
        super::projections::status_stats,
        super::health::livez,
        super::health::readyz,
        super::metrics::scrape,
    ),
    components(schemas(Problem), responses(
        BadRequest,
        NotFound,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        UnsupportedMediaType,
        UnprocessableContent,
        PreconditionRequired,
        InternalError,
        ServiceUnavailable,
    )),
    tags(
        (name = "orders", description = "Create, read, list and move orders through their lifecycle"),
        (name = "stats", description = "Counters summed from the DynamoDB projection"),
        (name = "health", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

/// Built once: the currency `enum` alone asks the parser about every three-letter code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serializes")
});

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    DOCUMENT.as_str(),
                )
                    .into_response()
            }),
        )
        .merge(Redoc::with_url("/docs", ApiDoc::openapi()))
}
