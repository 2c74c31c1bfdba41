//! The error responses the operations declare in the OpenAPI document (reusable
//! `components/responses`): a problem+json body, with the problem types each may carry. Apart
//! from `openapi.rs`, which lists the operations, so handlers and the document do not import
//! each other.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, RefOr};
use utoipa::ToResponse;

/// An error response: a problem+json body, with the problem types it may carry.
fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
            "Problem",
        )))),
    )
}

/// Declares a reusable error response (`components/responses/<name>`).
macro_rules! problem_response {
    ($name:ident, $description:expr) => {
        problem_response!($name, $description, |response| response);
    };
    ($name:ident, $description:expr, $extend:expr) => {
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                let extend: fn(ResponseBuilder) -> ResponseBuilder = $extend;
                (
                    stringify!($name),
                    extend(problem($description)).build().into(),
                )
            }
        }
    };
}

problem_response!(
    BadRequest,
    "The request is malformed: `invalid-path`, `invalid-query`, `invalid-header`, \
     `malformed-json`, `idempotency-key-required`."
);
problem_response!(NotFound, "`order-not-found`: no order has this id.");
problem_response!(
    Conflict,
    "`invalid-status-transition` (with `current_status` and `allowed_next`), or \
     `saga-in-progress`: the order's fulfilment saga confirms it, not a hand-made change."
);
problem_response!(
    PriceChanged,
    "`price-changed`: an item's `unit_price_minor` is not the catalog's current price;      `current_prices` lists the catalog's price of every line. Send the request again with      those prices (or none) and a new Idempotency-Key."
);
problem_response!(
    PreconditionFailed,
    "`version-mismatch`: If-Match names none of the order's current version (`current_version`)."
);
problem_response!(
    PayloadTooLarge,
    "`payload-too-large`: the body is over the service's limit."
);
problem_response!(
    UnsupportedMediaType,
    "`unsupported-media-type`: the body is not `application/json` (or `application/*+json`)."
);
problem_response!(
    UnprocessableContent,
    "`validation-failed` (with per-field `errors`; on a create with the catalog configured, \
     also an unknown SKU, one not for sale, or one sold in another currency), or \
     `idempotency-key-reused`."
);
problem_response!(
    PreconditionRequired,
    "`if-match-required`: this change needs If-Match with the order's ETag."
);
problem_response!(
    Unauthorized,
    "`unauthenticated`: no bearer token, or one that is expired, not yet valid, for another \
     audience or issuer, or not signed by the issuer's keys. `WWW-Authenticate` says which \
     (RFC 6750: `Bearer`, or `Bearer error=\"invalid_token\"`).",
    |response| response.header(
        "WWW-Authenticate",
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("The bearer challenge"))
            .build(),
    )
);
problem_response!(
    Forbidden,
    "`forbidden`: the token is valid but does not allow this (a customer naming another \
     customer, a customer changing a status other than by cancelling, a service without the \
     scope). `WWW-Authenticate: Bearer error=\"insufficient_scope\"`.",
    |response| response.header(
        "WWW-Authenticate",
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("The bearer challenge"))
            .build(),
    )
);
problem_response!(
    TooManyRequests,
    "`rate-limited`: this caller (the token's subject, or the client address without one) is \
     over its rate limit. Retry after `Retry-After` seconds.",
    |response| response
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0))
                )
                .description(Some("Seconds to wait before retrying"))
                .build(),
        )
        .header(
            "RateLimit-Policy",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(
                    "draft-ietf-httpapi-ratelimit-headers: `\"default\";q=<burst>;w=<seconds>`"
                ))
                .build(),
        )
        .header(
            "RateLimit",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(
                    "draft-ietf-httpapi-ratelimit-headers: `\"default\";r=<remaining>;t=<seconds>`"
                ))
                .build(),
        )
);
problem_response!(
    InternalError,
    "`internal`: an unexpected failure; the body says nothing more, the log has the cause."
);
problem_response!(
    ServiceUnavailable,
    "`database-unavailable`, `timeout` (the request outlived the service's limit), \
     `projection-unavailable` (history and stats: DynamoDB not configured or not answering), \
     `catalog-unavailable` (a create: the product catalog is not answering and no cached \
     price is recent enough to use), or `replica-lagging` / `replica-unavailable` (reports, \
     and lists when so configured: the read replica is further behind than allowed, or down). \
     Retry after `Retry-After` seconds.",
    |response| response.header(
        "Retry-After",
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
            )
            .description(Some("Seconds to wait before retrying"))
            .build(),
    )
);
