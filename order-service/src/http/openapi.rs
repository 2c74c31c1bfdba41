//! The OpenAPI document, generated from the handlers, and a browsable docs page.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_redoc::{Redoc, Servable};

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
        super::health::livez,
        super::health::readyz,
    ),
    tags(
        (name = "orders", description = "Create, read, list and move orders through their lifecycle"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .merge(Redoc::with_url("/docs", ApiDoc::openapi()))
}
