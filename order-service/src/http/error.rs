//! `ApiError`: every way a request can fail, rendered as RFC 9457 `application/problem+json`.
//!
//! Each variant has a stable `type` URI clients can match on. Server-side failures never
//! put internals in the body; the full error goes to the log through [`ErrorReport`].

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{CurrentPrice, FieldError, InvalidTransition, OrderStatus};
use crate::telemetry::error_chain;

/// Prefix of every problem `type`.
pub const PROBLEM_BASE: &str = "https://orders.dev/problems/";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the query string is not valid: {0}")]
    InvalidQuery(String),
    #[error("the path is not valid: {0}")]
    InvalidPath(String),
    #[error("the {header} header is not valid: {message}")]
    InvalidHeader {
        header: &'static str,
        message: String,
    },
    #[error("this request needs an Idempotency-Key header so that it can be retried safely")]
    IdempotencyKeyRequired,
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error("order {0} does not exist")]
    OrderNotFound(Uuid),
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    #[error(
        "the order has changed: it is at version {current}, the If-Match header names another"
    )]
    VersionMismatch { current: i64 },
    #[error("this request needs an If-Match header with the order's ETag (its version)")]
    IfMatchRequired,
    #[error("order {0} is being confirmed by its fulfilment saga; it can be cancelled, not confirmed by hand")]
    SagaInProgress(Uuid),
    #[error("{0}")]
    Unauthenticated(Unauthenticated),
    #[error("the caller may not do this: {0}")]
    Forbidden(&'static str),
    #[error("too many requests from this caller; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The request outlived `--request-timeout` (the bound), or its statement was cancelled by
    /// PostgreSQL's `statement_timeout`, which the service sets just below it (`ZERO`).
    #[error("the request took longer than {}", bound(.0))]
    Timeout(std::time::Duration),
    #[error("the price of a product changed: the order is priced at the catalog's current prices, listed in `current_prices`; confirm them and send the request again")]
    PriceChanged(Vec<CurrentPrice>),
    #[error("the product catalog is not reachable and the cached prices are too old to use; try again shortly")]
    CatalogUnavailable(#[source] crate::catalog::Unavailable),
    #[error("the status history and statistics are not reachable right now; try again shortly")]
    ProjectionUnavailable(#[source] anyhow::Error),
    #[error("the read replica is {}s behind the primary, more than this service allows; try again shortly", .0.as_secs())]
    ReplicaLagging(std::time::Duration),
    #[error("the read replica is not reachable; try again shortly")]
    ReplicaUnavailable,
    #[error("the database is not reachable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Why a request is not authenticated. The body says no more than this: the reason a token
/// was refused goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("this request needs a bearer token (Authorization: Bearer <token>)")]
    TokenMissing,
    #[error("the bearer token is not valid: expired, not yet valid, for another audience or issuer, or not signed by the issuer's keys")]
    TokenInvalid,
}

/// How a timeout's bound reads in its problem.
fn bound(limit: &std::time::Duration) -> String {
    if limit.is_zero() {
        "its time bound".into()
    } else {
        format!("{limit:?}")
    }
}

/// PostgreSQL's `query_canceled`: the statement ran into `statement_timeout`.
const QUERY_CANCELED: &str = "57014";

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code == QUERY_CANCELED)
        {
            return Self::Timeout(std::time::Duration::ZERO);
        }
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::DatabaseUnavailable(error)
            }
            other => Self::Database(other),
        }
    }
}

impl From<crate::replica::Behind> for ApiError {
    fn from(behind: crate::replica::Behind) -> Self {
        match behind {
            crate::replica::Behind::Lagging { lag } => Self::ReplicaLagging(lag),
            crate::replica::Behind::Unavailable => Self::ReplicaUnavailable,
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::InvalidPath(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidQuery(rejection.body_text())
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem, e.g. `https://orders.dev/problems/validation-failed`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Per-field errors of a `validation-failed` problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// The order's status, for `invalid-status-transition`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<OrderStatus>,
    /// The statuses the order may move to, for `invalid-status-transition`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_next: Option<Vec<OrderStatus>>,
    /// The order's version, for `version-mismatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
    /// The catalog's prices of every line, for `price-changed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_prices: Option<Vec<CurrentPrice>>,
    /// The request's `x-request-id`, which the service's log lines about it carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The full error chain of a server-side failure, attached to the response for the request
/// log (see `http::middleware`); never part of the body.
#[derive(Debug, Clone)]
pub struct ErrorReport(pub String);

impl ApiError {
    /// `(status, type slug, title)`: the stable identity of each problem.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Validation(_) => (
                S::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "Invalid request body",
            ),
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::PayloadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Self::InvalidQuery(_) => (S::BAD_REQUEST, "invalid-query", "Invalid query parameters"),
            Self::InvalidPath(_) => (S::BAD_REQUEST, "invalid-path", "Invalid path parameter"),
            Self::InvalidHeader { .. } => (S::BAD_REQUEST, "invalid-header", "Invalid header"),
            Self::IdempotencyKeyRequired => (
                S::BAD_REQUEST,
                "idempotency-key-required",
                "Idempotency-Key required",
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            ),
            Self::OrderNotFound(_) => (S::NOT_FOUND, "order-not-found", "Order not found"),
            Self::RouteNotFound => (S::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::InvalidTransition(_) => (
                S::CONFLICT,
                "invalid-status-transition",
                "Status change not allowed",
            ),
            Self::VersionMismatch { .. } => (
                S::PRECONDITION_FAILED,
                "version-mismatch",
                "Order was changed",
            ),
            Self::IfMatchRequired => (
                S::PRECONDITION_REQUIRED,
                "if-match-required",
                "If-Match required",
            ),
            Self::SagaInProgress(_) => (S::CONFLICT, "saga-in-progress", "Fulfilment in progress"),
            Self::Unauthenticated(_) => (
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Not allowed"),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Self::Timeout(_) => (S::SERVICE_UNAVAILABLE, "timeout", "Request timed out"),
            Self::PriceChanged(_) => (S::CONFLICT, "price-changed", "The price changed"),
            Self::CatalogUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "catalog-unavailable",
                "Product catalog unavailable",
            ),
            Self::ProjectionUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "projection-unavailable",
                "Projection unavailable",
            ),
            Self::ReplicaLagging(_) => (
                S::SERVICE_UNAVAILABLE,
                "replica-lagging",
                "Read replica behind",
            ),
            Self::ReplicaUnavailable => (
                S::SERVICE_UNAVAILABLE,
                "replica-unavailable",
                "Read replica unavailable",
            ),
            Self::DatabaseUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "Service unavailable",
            ),
            Self::Database(_) | Self::Internal(_) => {
                (S::INTERNAL_SERVER_ERROR, "internal", "Internal error")
            }
        }
    }

    fn problem(&self) -> Problem {
        let (status, slug, title) = self.kind();
        let mut problem = Problem {
            type_: format!("{PROBLEM_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            errors: None,
            current_status: None,
            allowed_next: None,
            current_version: None,
            current_prices: None,
            request_id: None,
        };
        match self {
            Self::Validation(errors) => problem.errors = Some(errors.clone()),
            Self::InvalidTransition(refusal) => {
                problem.current_status = Some(refusal.from);
                problem.allowed_next = Some(refusal.allowed.to_vec());
            }
            Self::VersionMismatch { current } => problem.current_version = Some(*current),
            Self::PriceChanged(prices) => problem.current_prices = Some(prices.clone()),
            _ => {}
        }
        problem
    }
}

/// Whether a response carries a problem body.
pub fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json")
}

/// The problem body with the request id added. Problem bodies are a few hundred bytes, made
/// by [`ApiError`]; one that cannot be read back is passed on unchanged.
pub async fn with_request_id(response: Response, request_id: String) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut problem)) => {
            problem.insert("request_id".into(), serde_json::Value::String(request_id));
            serde_json::to_vec(&problem).map_or(bytes, axum::body::Bytes::from)
        }
        _ => bytes,
    };
    let mut response = Response::from_parts(parts, axum::body::Body::from(body));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let headers = response.headers_mut();
        match &self {
            // When the catalog's breaker or its answer says how long, so does the problem.
            Self::CatalogUnavailable(unavailable) => {
                let seconds = unavailable
                    .retry_after
                    .map_or(1, |after| after.as_secs().clamp(1, 60));
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 6750 §3: no error code when the request carried no token at all.
            Self::Unauthenticated(Unauthenticated::TokenMissing) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unauthenticated(Unauthenticated::TokenInvalid) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Self::Forbidden(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
                );
            }
            Self::RateLimited { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        if status.is_server_error() {
            response
                .extensions_mut()
                .insert(ErrorReport(error_chain(&self)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_behind_is_a_503_naming_the_lag_only() {
        let lagging = ApiError::from(crate::replica::Behind::Lagging {
            lag: std::time::Duration::from_millis(31_500),
        });
        let response = lagging.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let problem = ApiError::ReplicaLagging(std::time::Duration::from_millis(31_500)).problem();
        assert_eq!(problem.type_, format!("{PROBLEM_BASE}replica-lagging"));
        assert!(problem.detail.contains("31s behind"), "{}", problem.detail);
        let down = ApiError::from(crate::replica::Behind::Unavailable).problem();
        assert_eq!(down.type_, format!("{PROBLEM_BASE}replica-unavailable"));
    }

    #[test]
    fn problem_types_are_distinct_per_variant() {
        let errors = [
            ApiError::Validation(vec![]),
            ApiError::MalformedJson(String::new()),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge(1),
            ApiError::InvalidQuery(String::new()),
            ApiError::InvalidPath(String::new()),
            ApiError::InvalidHeader {
                header: "x",
                message: String::new(),
            },
            ApiError::IdempotencyKeyRequired,
            ApiError::IdempotencyKeyReused,
            ApiError::OrderNotFound(Uuid::nil()),
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::VersionMismatch { current: 1 },
            ApiError::IfMatchRequired,
            ApiError::SagaInProgress(Uuid::nil()),
            ApiError::Timeout(std::time::Duration::from_secs(1)),
            ApiError::Unauthenticated(Unauthenticated::TokenInvalid),
            ApiError::Forbidden("x"),
            ApiError::RateLimited { retry_after: 1 },
            ApiError::ProjectionUnavailable(anyhow::anyhow!("x")),
            ApiError::ReplicaLagging(std::time::Duration::from_secs(30)),
            ApiError::ReplicaUnavailable,
            ApiError::PriceChanged(vec![]),
            ApiError::CatalogUnavailable(crate::catalog::Unavailable {
                error: "x".into(),
                retry_after: None,
            }),
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        let mut types: Vec<_> = errors.iter().map(|e| e.problem().type_).collect();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), errors.len());
    }

    #[test]
    fn internal_errors_do_not_leak_into_the_body() {
        let error = ApiError::Internal(anyhow::anyhow!("password=hunter2 in connection string"));
        let problem = error.problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("hunter2"));
        let response = error.into_response();
        let report = response.extensions().get::<ErrorReport>().unwrap();
        assert!(report.0.contains("hunter2"), "the log still gets the cause");
    }
}
