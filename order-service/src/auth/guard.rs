//! The middleware in front of `/v1`: authenticate, then rate-limit (by subject, or by client
//! address without a valid token), then refuse an unauthenticated request; all before any
//! database work. Handlers take the [`Principal`] it leaves in the request.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::principal::Principal;
use super::rate_limit::{CallerKey, Decision};
use super::Access;
use crate::auth::token::TokenRefusal;
use crate::http::error::{ApiError, Unauthenticated};

pub async fn guard(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match &access.authenticator {
        None => Ok(Principal::unchecked()),
        Some(authenticator) => authenticator.authenticate(request.headers()).await,
    };
    let limit = access.rate_limits.as_ref().map(|limits| {
        let (key, caller) = match &principal {
            Ok(p) if p.is_authenticated() => (CallerKey::Subject(p.subject.clone()), "subject"),
            _ => (CallerKey::Address(client_address(&request)), "address"),
        };
        let decision = limits.check(key);
        (limits.headers(&decision), decision, caller)
    });
    let response = match (principal, &limit) {
        (_, Some((_, Decision::Throttled { retry_after_secs }, caller))) => {
            access.metrics.throttled(caller);
            ApiError::RateLimited {
                retry_after: *retry_after_secs,
            }
            .into_response()
        }
        (Err(refusal), _) => {
            tracing::info!(reason = refusal.reason(), "bearer token refused");
            let problem = if refusal == TokenRefusal::Missing {
                Unauthenticated::TokenMissing
            } else {
                Unauthenticated::TokenInvalid
            };
            ApiError::Unauthenticated(problem).into_response()
        }
        (Ok(principal), _) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
    };
    match limit {
        Some((headers, _, _)) => (headers, response).into_response(),
        None => response,
    }
}

/// The peer address (a proxy's, behind one: put the limits where the client address is
/// known, or rely on the per-subject limits).
fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |info| info.0.ip())
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "no principal: the route is not behind auth::guard"
            ))
        })
    }
}
