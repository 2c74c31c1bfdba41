//! Extractors that own the HTTP concerns of a request (JSON body, If-Match,
//! Idempotency-Key, path and query) and turn every rejection into an [`ApiError`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::{FieldError, IdempotencyKey};

/// `axum::extract::Path` with problem+json rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with problem+json rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A JSON body: `application/json` (or `+json`) content type, within the body limit,
/// syntactically valid, and deserialized with the path of every bad field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        from_json_value(value).map(ApiJson)
    }
}

/// Deserializes a JSON value into `T`, reporting the offending field's path.
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        ApiError::Validation(vec![FieldError {
            field: field_name(&path, &message),
            message,
        }])
    })
}

/// serde reports a missing field at the path of its parent object; name the field itself so
/// clients can highlight it. (Unknown fields already come with their own path.)
fn field_name(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(field) if parent.is_empty() => field.to_owned(),
        Some(field) => format!("{parent}.{field}"),
        None => parent.to_owned(),
    }
}

fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(mime) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Buffers the body within the router's `DefaultBodyLimit`.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = body_limit(&req);
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    })
}

/// The body limit the router was built with, for the 413 message.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn body_limit(req: &Request) -> usize {
    req.extensions().get::<BodyLimit>().map_or(0, |l| l.0)
}

/// The required `Idempotency-Key` header of a create.
pub struct IdempotencyKeyHeader(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get("idempotency-key")
            .ok_or(ApiError::IdempotencyKeyRequired)?;
        let value = value
            .to_str()
            .map_err(|_| invalid("Idempotency-Key", "must be ASCII"))?;
        IdempotencyKey::parse(value)
            .map(Self)
            .map_err(|message| invalid("Idempotency-Key", &message))
    }
}

/// The `If-Match` precondition of a change: absent, `*`, or a list of versions as ETags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Absent,
    Any,
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Parses the header value: `"3"`, `"3", "4"`, `*` (bare numbers are accepted too).
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.trim() == "*" {
            return Ok(Self::Any);
        }
        value
            .split(',')
            .map(|tag| {
                let tag = tag.trim();
                let unquoted = tag
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .unwrap_or(tag);
                unquoted.parse::<i64>().map_err(|_| {
                    format!("`{tag}` is not an ETag of this service (a quoted version, e.g. \"3\")")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Versions)
    }

    /// Checks the precondition against the current version: `Absent` passes here (callers
    /// that need it use [`IfMatch::require`] first).
    pub fn check(&self, current: i64) -> Result<(), ApiError> {
        match self {
            Self::Versions(versions) if !versions.contains(&current) => {
                Err(ApiError::VersionMismatch { current })
            }
            _ => Ok(()),
        }
    }

    /// The versions it names; `None` when any version passes (`*`, or absent where optional).
    pub fn versions(&self) -> Option<&[i64]> {
        match self {
            Self::Versions(versions) => Some(versions),
            _ => None,
        }
    }

    pub fn require(&self) -> Result<(), ApiError> {
        match self {
            Self::Absent => Err(ApiError::IfMatchRequired),
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(Self::Absent);
        };
        let value = value
            .to_str()
            .map_err(|_| invalid("If-Match", "must be ASCII"))?;
        Self::parse(value).map_err(|message| invalid("If-Match", &message))
    }
}

fn invalid(header: &'static str, message: &str) -> ApiError {
    ApiError::InvalidHeader {
        header,
        message: message.to_owned(),
    }
}

/// The request id the middleware set (the client's `x-request-id`, or a new UUID); it becomes
/// the trace id of the events the request produces.
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ))
    }
}

/// The strong ETag of an order version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn field_names_point_at_the_field() {
        assert_eq!(field_name(".", "missing field `currency`"), "currency");
        assert_eq!(
            field_name("shipping_address", "missing field `city`"),
            "shipping_address.city"
        );
        assert_eq!(
            field_name(
                "shipping_address.zip",
                "unknown field `zip`, expected one of `name`"
            ),
            "shipping_address.zip"
        );
        assert_eq!(
            field_name("items[0].quantity", "invalid type: string"),
            "items[0].quantity"
        );
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(IfMatch::parse("\"3\""), Ok(IfMatch::Versions(vec![3])));
        assert_eq!(
            IfMatch::parse("\"3\", \"5\""),
            Ok(IfMatch::Versions(vec![3, 5]))
        );
        assert_eq!(IfMatch::parse("7"), Ok(IfMatch::Versions(vec![7])));
        assert_eq!(IfMatch::parse(" * "), Ok(IfMatch::Any));
        assert!(IfMatch::parse("W/\"3\"").is_err());
        assert!(IfMatch::parse("\"abc\"").is_err());
    }

    #[test]
    fn if_match_check() {
        assert!(IfMatch::Versions(vec![2, 3]).check(3).is_ok());
        assert!(matches!(
            IfMatch::Versions(vec![2]).check(3),
            Err(ApiError::VersionMismatch { current: 3 })
        ));
        assert!(IfMatch::Any.check(9).is_ok());
        assert!(matches!(
            IfMatch::Absent.require(),
            Err(ApiError::IfMatchRequired)
        ));
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
        ] {
            assert!(!is_json(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!is_json(None));
    }
}
