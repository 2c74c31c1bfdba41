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
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi};
use utoipa_redoc::{Redoc, Servable};

use super::error::Problem;
use super::responses::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, PreconditionFailed,
    PreconditionRequired, PriceChanged, ServiceUnavailable, TooManyRequests, Unauthorized,
    UnprocessableContent, UnsupportedMediaType,
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
        super::reports::sales_report,
        super::reports::top_products_report,
        super::health::livez,
        super::health::readyz,
        super::metrics::scrape,
        super::flow::flowz,
    ),
    components(schemas(Problem), responses(
        BadRequest,
        NotFound,
        Conflict,
        PriceChanged,
        PreconditionFailed,
        PayloadTooLarge,
        UnsupportedMediaType,
        UnprocessableContent,
        PreconditionRequired,
        InternalError,
        ServiceUnavailable,
        Unauthorized,
        Forbidden,
        TooManyRequests,
    )),
    modifiers(&GuardedApi),
    tags(
        (name = "orders", description = "Create, read, list and move orders through their lifecycle"),
        (name = "stats", description = "Counters summed from the DynamoDB projection"),
        (name = "reports", description = "Sales and best-selling products from PostgreSQL, served by the read replica when one is configured (staff only)"),
        (name = "health", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

/// The name of the bearer token scheme in `components/securitySchemes`.
const BEARER: &str = "bearer";

/// Every `/v1` operation goes through `auth::guard`: it may answer 401, 403 and 429.
struct GuardedApi;

impl Modify for GuardedApi {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "An access token of the configured OpenID Connect issuer, for the \
                             configured audience. Customers (the customer claim) see their own \
                             orders; staff (the staff role) everything; services what their \
                             scopes say (`orders:read`, `orders:write`, `orders:status`).",
                        ))
                        .build(),
                ),
            );
        for operation in api_operations(openapi) {
            for (status, name) in [
                ("401", "Unauthorized"),
                ("403", "Forbidden"),
                ("429", "TooManyRequests"),
            ] {
                operation.responses.responses.insert(
                    status.to_owned(),
                    RefOr::Ref(utoipa::openapi::Ref::from_response_name(name)),
                );
            }
        }
    }
}

/// The operations under `/v1`.
fn api_operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    openapi
        .paths
        .paths
        .iter_mut()
        .filter(|(path, _)| path.starts_with("/v1/"))
        .flat_map(|(_, item)| {
            [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
        })
        .filter_map(Option::as_mut)
}

/// The document of this server: the `/v1` operations require the bearer token when
/// authentication is on, and nothing when it is disabled; without the product catalog, a
/// create's lines need their name and price (the document tells the truth).
pub fn document(auth: bool, catalog: bool) -> utoipa::openapi::OpenApi {
    let mut openapi = ApiDoc::openapi();
    if auth {
        for operation in api_operations(&mut openapi) {
            operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        }
    }
    if !catalog {
        require_line_prices(&mut openapi);
    }
    openapi
}

/// Development mode: `name` and `unit_price_minor` of a create's lines are required.
fn require_line_prices(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    let item = openapi
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("CreateItem"));
    if let Some(RefOr::T(Schema::Object(item))) = item {
        for field in ["name", "unit_price_minor"] {
            if !item.required.iter().any(|r| r == field) {
                item.required.push(field.to_owned());
            }
        }
    }
}

/// Built once per variant (auth, catalog): the currency `enum` alone asks the parser about
/// every three-letter code.
static DOCUMENTS: [LazyLock<String>; 4] = [
    LazyLock::new(|| serialize(document(false, false))),
    LazyLock::new(|| serialize(document(false, true))),
    LazyLock::new(|| serialize(document(true, false))),
    LazyLock::new(|| serialize(document(true, true))),
];

fn serialize(openapi: utoipa::openapi::OpenApi) -> String {
    openapi.to_json().expect("the OpenAPI document serializes")
}

pub fn router(auth: bool, catalog: bool) -> Router<AppState> {
    let text: &'static str = DOCUMENTS[usize::from(auth) * 2 + usize::from(catalog)].as_str();
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move {
                ([(header::CONTENT_TYPE, "application/json")], text).into_response()
            }),
        )
        .merge(Redoc::with_url("/docs", document(auth, catalog)))
}
