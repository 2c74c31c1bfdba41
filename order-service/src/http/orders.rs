//! `/v1/orders`: create, read, list, change status, cancel.
//!
//! Handlers follow one shape: extract → parse → one transaction → respond.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{
    etag, from_json_value, ApiJson, ApiPath, ApiQuery, IdempotencyKeyHeader, IfMatch, RequestId,
};
use super::responses::{
    BadRequest, Conflict, InternalError, NotFound, PayloadTooLarge, PreconditionFailed,
    PreconditionRequired, PriceChanged, ServiceUnavailable, UnprocessableContent,
    UnsupportedMediaType,
};
use super::sagas::SagaView;
use super::AppState;
use crate::auth::{Principal, Visibility};
use crate::catalog::Catalogued;
use crate::db::{self, orders::OrderFilter};
use crate::domain::{
    self, Address, Currency, Cursor, FieldErrors, NewItem, NewOrder, NewOrderParts, Order,
    OrderStatus, OrderSummary, PaymentMethod, Product, RequestFingerprint, CUSTOMER_ID_MAX,
    ITEM_NAME_MAX, MAX_ITEMS, SKU_MAX,
};
use crate::outbox::envelope::EventEnvelope;
use crate::replica::ReadKind;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(create_order).get(list_orders))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/status", post(change_status))
        .route("/v1/orders/{id}/cancel", post(cancel_order))
}

/// Most lists are short; clients page with the cursor.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;
const MAX_REASON_CHARS: usize = 500;

/// The body of `POST /v1/orders`. Totals are not accepted: the server computes them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateOrderRequest {
    #[schema(schema_with = customer_id_schema)]
    customer_id: String,
    #[schema(schema_with = currency_schema)]
    currency: String,
    /// 1 to 100 lines. The order total (lines, shipping and tax) must fit in 64-bit minor
    /// units, or the create is refused (422, field `items`).
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<CreateItem>,
    shipping_address: Address,
    /// Defaults to the shipping address.
    #[serde(default)]
    billing_address: Option<Address>,
    /// Minor units, ≥ 0.
    #[serde(default)]
    #[schema(minimum = 0, default = 0)]
    shipping_minor: i64,
    /// Minor units, ≥ 0.
    #[serde(default)]
    #[schema(minimum = 0, default = 0)]
    tax_minor: i64,
    payment: CreatePayment,
}

// The schemas state what `parse` accepts (the OpenAPI document is checked against the server).
fn customer_id_schema() -> Object {
    domain::text_schema(CUSTOMER_ID_MAX, "c-42")
}
fn sku_schema() -> Object {
    domain::text_schema(SKU_MAX, "SKU-1")
}
fn item_name_schema() -> Object {
    domain::text_schema(ITEM_NAME_MAX, "Widget")
}
fn currency_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("An ISO 4217 code, upper case."))
        .enum_values(Some(Currency::codes()))
        .examples(["EUR"])
        .build()
}
fn status_reason_schema() -> Object {
    domain::optional_text_schema(MAX_REASON_CHARS)
}
fn cancel_reason_schema() -> Object {
    domain::text_schema(MAX_REASON_CHARS, "customer asked")
}

/// One line. With the product catalog configured, the name and unit price are the catalog's:
/// `name` is ignored, and `unit_price_minor`, when sent, must be the catalog's current price
/// (else 409 `price-changed`). Without a catalog (development mode) both are required and taken
/// as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateItem {
    #[schema(schema_with = sku_schema)]
    sku: String,
    #[serde(default)]
    #[schema(schema_with = item_name_schema)]
    name: Option<String>,
    /// 1 to 1,000,000.
    #[schema(example = 2, minimum = 1, maximum = 1_000_000)]
    quantity: i64,
    /// Minor units of the order currency, ≥ 0: the price the client showed.
    #[serde(default)]
    #[schema(example = 1250, minimum = 0, nullable = false)]
    unit_price_minor: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePayment {
    method: PaymentMethod,
}

impl CreateOrderRequest {
    /// The SKUs to look up in the catalog: those well formed, as `parse` trims them.
    pub(crate) fn skus(&self) -> Vec<&str> {
        self.items
            .iter()
            .take(MAX_ITEMS)
            .map(|item| item.sku.trim())
            .filter(|sku| !sku.is_empty() && sku.chars().count() <= SKU_MAX)
            .collect()
    }

    /// Validates every field, prices the lines (from `catalog` when configured, else as sent)
    /// and computes totals; reports all invalid fields at once. With the catalog, a client
    /// price that is not the catalog's is refused (`price-changed`) once every field is valid.
    pub(crate) fn parse(self, catalog: Option<&Catalogued>) -> Result<NewOrder, ApiError> {
        let mut errors = FieldErrors::default();
        let customer_id = errors.check("customer_id", domain::customer_id(&self.customer_id));
        let currency = errors.check("currency", Currency::parse(&self.currency));
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            errors.push("items", format!("must hold 1 to {MAX_ITEMS} items"));
        }
        let mut current_prices = Vec::new();
        let mut price_changed = false;
        let items: Vec<Option<NewItem>> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("items[{i}]");
                let Some(catalog) = catalog else {
                    return item.parse_as_sent(&path, &mut errors);
                };
                let product = catalog.get(item.sku.trim()).cloned().flatten();
                let priced =
                    item.parse_from_catalog(product.as_deref(), currency, &path, &mut errors)?;
                if let Some(product) = product {
                    current_prices.push(product.current_price());
                    price_changed |= item
                        .unit_price_minor
                        .is_some_and(|p| p != product.unit_price_minor);
                }
                Some(priced)
            })
            .collect();
        let shipping_address = self.shipping_address.parse("shipping_address", &mut errors);
        let billing_address = match self.billing_address {
            Some(address) => address.parse("billing_address", &mut errors).map(Some),
            None => Some(None),
        };
        let shipping_minor =
            errors.check("shipping_minor", domain::non_negative(self.shipping_minor));
        let tax_minor = errors.check("tax_minor", domain::non_negative(self.tax_minor));

        let parts = (|| {
            Some(NewOrderParts {
                customer_id: customer_id?,
                currency: currency?,
                items: items.into_iter().collect::<Option<Vec<_>>>()?,
                shipping_address: shipping_address?,
                billing_address: billing_address?,
                payment_method: self.payment.method,
                shipping_minor: shipping_minor?,
                tax_minor: tax_minor?,
            })
        })();
        let order = match parts {
            Some(parts) if errors.is_empty() => NewOrder::assemble(parts, &mut errors),
            _ => None,
        };
        match order {
            Some(_) if errors.is_empty() && price_changed => {
                Err(ApiError::PriceChanged(current_prices))
            }
            Some(order) if errors.is_empty() => Ok(order),
            _ => Err(ApiError::Validation(errors.into_vec())),
        }
    }
}

impl CreateItem {
    /// Development mode: the name and price are the client's, and required.
    fn parse_as_sent(&self, path: &str, errors: &mut FieldErrors) -> Option<NewItem> {
        let required = "is required (no product catalog is configured)";
        if self.name.is_none() {
            errors.push(format!("{path}.name"), required);
        }
        if self.unit_price_minor.is_none() {
            errors.push(format!("{path}.unit_price_minor"), required);
        }
        let item = NewItem::parse(
            &self.sku,
            self.name.as_deref().unwrap_or("-"),
            self.quantity,
            self.unit_price_minor.unwrap_or(0),
            path,
            errors,
        );
        item.filter(|_| self.name.is_some() && self.unit_price_minor.is_some())
    }

    /// With the catalog: the product must be known, for sale, and sold in the order currency
    /// (when that is valid); its name and price make the line.
    fn parse_from_catalog(
        &self,
        product: Option<&Product>,
        currency: Option<Currency>,
        path: &str,
        errors: &mut FieldErrors,
    ) -> Option<NewItem> {
        if let Some(price) = self.unit_price_minor {
            errors.check(
                format!("{path}.unit_price_minor"),
                domain::non_negative(price),
            );
        }
        let sellable = match (product, currency) {
            (None, _) => Err("is not in the product catalog".to_owned()),
            (Some(product), Some(currency)) => product.sellable_in(currency),
            (Some(_), None) => Ok(()),
        };
        let sellable = errors.check(format!("{path}.sku"), sellable);
        // The SKU is still checked as sent, so a malformed one reads as such.
        let (name, price) = product.map_or(("-", 0), |p| (p.name.as_str(), p.unit_price_minor));
        let item = NewItem::parse(&self.sku, name, self.quantity, price, path, errors);
        sellable.and(item)
    }
}

/// An order with its `ETag` (and `Location` when created).
struct OrderResponse {
    status: StatusCode,
    order: Order,
    replayed: bool,
    saga: Option<SagaView>,
}

/// An order with the progress of its fulfilment saga.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderDetail {
    #[serde(flatten)]
    order: Order,
    /// Present when the order has a fulfilment saga (participants are configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    saga: Option<SagaView>,
}

impl IntoResponse for OrderResponse {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        if let Ok(tag) = HeaderValue::from_str(&etag(self.order.version)) {
            headers.insert(header::ETAG, tag);
        }
        if self.status == StatusCode::CREATED {
            if let Ok(location) = HeaderValue::from_str(&format!("/v1/orders/{}", self.order.id)) {
                headers.insert(header::LOCATION, location);
            }
        }
        if self.replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        let body = OrderDetail {
            order: self.order,
            saga: self.saga,
        };
        (self.status, headers, Json(body)).into_response()
    }
}

/// Create an order.
///
/// Requires `Idempotency-Key`: a retry with the same key and body returns the original order
/// (with `Idempotent-Replayed: true`) and creates nothing; the same key with another body is
/// refused. A key expires 24 hours after its first use (the service's
/// `--idempotency-key-ttl`); used again after that, it creates a new order, as a first use would.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders",
    request_body = CreateOrderRequest,
    params(("Idempotency-Key" = String, Header, pattern = r"^[!-~]{1,255}$",
            description = "Client-chosen key, 1 to 255 visible ASCII characters; it replays its order for 24 hours (the service's --idempotency-key-ttl)")),
    responses(
        (status = 201, description = "Created (or replayed)", body = OrderDetail, headers(
            ("Location" = String, description = "The order's URL"),
            ("ETag" = String, description = "The order's version, quoted"),
            ("Idempotent-Replayed" = String, description = "`true` when this is the replay of an earlier create"))),
        (status = 400, response = BadRequest),
        (status = 409, response = PriceChanged),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn create_order(
    State(state): State<AppState>,
    principal: Principal,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let fingerprint = RequestFingerprint::of_json(&body);
    let traceparent = crate::telemetry::traceparent_of(
        &tracing::Span::current(),
        crate::telemetry::incoming_traceparent(&headers).as_deref(),
    );
    let request = from_json_value::<CreateOrderRequest>(body)?;
    // Priced before the one statement that writes the order, never inside it.
    let catalogued = match &state.catalog {
        Some(catalog) => Some(
            catalog
                .products(&request.skus(), traceparent.as_deref())
                .await
                .map_err(ApiError::CatalogUnavailable)?,
        ),
        None => None,
    };
    let new_order = request.parse(catalogued.as_ref())?;
    principal.may_create_for(&new_order.customer_id)?;

    // A key deleted by the retention between a taken key and the read below is claimed again;
    // twice in a row would take a clean-up pass per attempt, so three tries suffice.
    for _ in 0..3 {
        let order = new_order
            .clone()
            .into_pending(Uuid::now_v7(), Uuid::now_v7(), now_micros());
        let event = EventEnvelope::order_created(&order, &principal.subject, request_id.clone())
            .with_traceparent(traceparent.clone());
        let record = db::create::NewOrderRecord {
            key: &key,
            fingerprint: &fingerprint,
            key_ttl: state.idempotency_key_ttl,
            order: &order,
            event: &event,
            sinks: &state.sinks,
            saga: state.saga.is_some(),
        };
        let mut conn = state.pool.acquire().await?;
        if let Some(saga) = db::create::create(&mut conn, &record).await? {
            tracing::info!(order_id = %order.id, customer_id = %order.customer_id, "order created");
            state.metrics.order_entered(&order);
            if let Some(wake) = &state.saga {
                wake.notify_one();
            }
            let saga =
                saga.map(|s| SagaView::started(s.next_attempt_at, s.step_since, s.updated_at));
            return Ok(OrderResponse {
                status: StatusCode::CREATED,
                order,
                replayed: false,
                saga,
            }
            .into_response());
        }

        // The key was used before: replay the order it created, if this is the same request.
        let Some(stored) = db::idempotency::find(&mut conn, &key).await? else {
            continue;
        };
        if stored.fingerprint != fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        let order = db::orders::get(&mut conn, stored.order_id)
            .await?
            .ok_or(ApiError::OrderNotFound(stored.order_id))?;
        let saga = db::sagas::get(&mut conn, order.id)
            .await?
            .map(SagaView::from);
        return Ok(OrderResponse {
            status: StatusCode::CREATED,
            order,
            replayed: true,
            saga,
        }
        .into_response());
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "idempotency key kept vanishing between claim and read"
    )))
}

/// Now, at PostgreSQL's precision (microseconds), so the order returned is the order stored.
fn now_micros() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Get an order.
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderDetail, headers(("ETag" = String, description = "The order's version, quoted"))),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn get_order(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    principal.visibility()?;
    let mut conn = state.pool.acquire().await?;
    // Another customer's order is answered as missing: ids cannot be probed.
    let order = db::orders::get(&mut conn, id)
        .await?
        .filter(|order| principal.can_see(&order.customer_id))
        .ok_or(ApiError::OrderNotFound(id))?;
    let saga = db::sagas::get(&mut conn, id).await?.map(SagaView::from);
    Ok(OrderResponse {
        status: StatusCode::OK,
        order,
        replayed: false,
        saga,
    }
    .into_response())
}

/// Query parameters of the order list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Exact customer id (no NUL).
    #[param(pattern = r"^[^\x00]*$")]
    customer_id: Option<String>,
    status: Option<OrderStatus>,
    /// Inclusive lower bound on creation time (RFC 3339).
    created_after: Option<DateTime<Utc>>,
    /// Exclusive upper bound on creation time (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderPage {
    items: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List orders, newest first, with keyset pagination.
#[utoipa::path(
    get, path = "/v1/orders", tag = "orders",
    params(ListQuery),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn list_orders(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<OrderPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    if query
        .customer_id
        .as_deref()
        .is_some_and(|id| id.contains('\0'))
    {
        // PostgreSQL cannot compare text with NUL in it; no stored id has one.
        return Err(ApiError::InvalidQuery(
            "customer_id must not contain NUL characters".into(),
        ));
    }
    let after = query
        .cursor
        .as_deref()
        .map(Cursor::decode)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let filter = OrderFilter {
        // A customer's list is theirs; naming another customer is refused.
        customer_id: principal.list_filter(query.customer_id)?,
        status: query.status,
        created_after: query.created_after,
        created_before: query.created_before,
    };
    // Lists may be a moment stale: the read replica serves them while it is close enough.
    let mut conn = state.reads.pool_for(ReadKind::List)?.acquire().await?;
    // One extra row tells whether there is a next page without a count query.
    let mut items = db::orders::list(&mut conn, &filter, after, i64::from(limit) + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| {
            Cursor {
                created_at: last.created_at,
                id: last.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(OrderPage { items, next_cursor }))
}

/// The body of a status change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusChangeRequest {
    status: OrderStatus,
    /// Why, for people reading the order later; up to 500 characters.
    #[serde(default)]
    #[schema(schema_with = status_reason_schema)]
    reason: Option<String>,
}

/// The body of a cancellation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelRequest {
    /// Why the order is cancelled; required, up to 500 characters.
    #[schema(schema_with = cancel_reason_schema)]
    reason: String,
}

/// Change an order's status.
///
/// Requires `If-Match` with the order's ETag. Transitions: PENDING → CONFIRMED → PROCESSING →
/// SHIPPED → DELIVERED, and PENDING/CONFIRMED/PROCESSING → CANCELLED.
#[utoipa::path(
    post, path = "/v1/orders/{id}/status", tag = "orders",
    request_body = StatusChangeRequest,
    params(
        ("id" = Uuid, Path, description = "Order id"),
        ("If-Match" = String, Header, pattern = r#"^[ \t]*(\*|("[+-]?[0-9]{1,18}"|[+-]?[0-9]{1,18})([ \t]*,[ \t]*("[+-]?[0-9]{1,18}"|[+-]?[0-9]{1,18}))*)[ \t]*$"#,
         description = "The order's ETag (`\"3\"`), a list of them, or `*`"),
    ),
    responses(
        (status = 200, body = OrderDetail, headers(("ETag" = String, description = "The order's new version, quoted"))),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
        (status = 428, response = PreconditionRequired),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn change_status(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<StatusChangeRequest>,
) -> Result<Response, ApiError> {
    principal.may_change_status_to(body.status)?;
    if_match.require()?;
    let reason = parse_reason(body.reason.as_deref(), false)?;
    let change = Change {
        id,
        to: body.status,
        reason: reason.as_deref(),
        request_id,
    };
    transition(&state, &principal, &if_match, change).await
}

/// Cancel an order (PENDING, CONFIRMED or PROCESSING). `If-Match` is optional here.
#[utoipa::path(
    post, path = "/v1/orders/{id}/cancel", tag = "orders",
    request_body = CancelRequest,
    params(
        ("id" = Uuid, Path, description = "Order id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^[ \t]*(\*|("[+-]?[0-9]{1,18}"|[+-]?[0-9]{1,18})([ \t]*,[ \t]*("[+-]?[0-9]{1,18}"|[+-]?[0-9]{1,18}))*)[ \t]*$"#,
         description = "The order's ETag (`\"3\"`), a list of them, or `*`; optional here"),
    ),
    responses(
        (status = 200, body = OrderDetail, headers(("ETag" = String, description = "The order's new version, quoted"))),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(crate) async fn cancel_order(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<CancelRequest>,
) -> Result<Response, ApiError> {
    principal.may_change_status_to(OrderStatus::Cancelled)?;
    let reason = parse_reason(Some(&body.reason), true)?;
    let change = Change {
        id,
        to: OrderStatus::Cancelled,
        reason: reason.as_deref(),
        request_id,
    };
    transition(&state, &principal, &if_match, change).await
}

fn parse_reason(reason: Option<&str>, required: bool) -> Result<Option<String>, ApiError> {
    let mut errors = FieldErrors::default();
    let reason = errors
        .check("reason", domain::optional_text(reason, MAX_REASON_CHARS))
        .flatten();
    if required && reason.is_none() && errors.is_empty() {
        errors.push("reason", "must not be empty");
    }
    if errors.is_empty() {
        Ok(reason)
    } else {
        Err(ApiError::Validation(errors.into_vec()))
    }
}

/// A requested status change.
struct Change<'a> {
    id: Uuid,
    to: OrderStatus,
    reason: Option<&'a str>,
    request_id: Option<String>,
}

/// Checks the caller's ownership, the precondition, the status machine and the saga under the
/// row lock, and writes the change with its event (the caller's subject as the actor): one
/// statement (`db::status_change`). When nothing changed, the
/// checks run again on what the statement found, in the order clients know (404, 412, 409).
async fn transition(
    state: &AppState,
    principal: &Principal,
    if_match: &IfMatch,
    change: Change<'_>,
) -> Result<Response, ApiError> {
    let Change {
        id,
        to,
        reason,
        request_id,
    } = change;
    // A customer's change reaches only their own orders; another's is not found (404).
    let owner = match principal.visibility()? {
        Visibility::Customer(customer_id) => Some(customer_id),
        Visibility::All => None,
    };
    let statement = db::status_change::StatusChange {
        reason,
        versions: if_match.versions().map(<[i64]>::to_vec),
        request_id: request_id.as_deref(),
        customer_id: owner.as_deref(),
        ..db::status_change::StatusChange::new(id, to, &principal.subject, &state.sinks)
    };
    let mut conn = state.pool.acquire().await?;
    match db::status_change::change(&mut conn, &statement).await? {
        db::status_change::Outcome::NotFound => Err(ApiError::OrderNotFound(id)),
        db::status_change::Outcome::Unchanged {
            status,
            version,
            saga_active,
        } => {
            if_match.check(version)?;
            status.transition(to)?;
            if statement.not_during_saga && saga_active {
                return Err(ApiError::SagaInProgress(id));
            }
            Err(ApiError::Internal(anyhow::anyhow!(
                "status change of {id} to {to} refused by the database although every check passed"
            )))
        }
        db::status_change::Outcome::Changed {
            order,
            previous,
            saga,
        } => {
            tracing::info!(order_id = %id, from = %previous, to = %to, "order status changed");
            state.metrics.order_entered(&order);
            Ok(OrderResponse {
                status: StatusCode::OK,
                order: *order,
                replayed: false,
                saga: saga.map(SagaView::from),
            }
            .into_response())
        }
    }
}
