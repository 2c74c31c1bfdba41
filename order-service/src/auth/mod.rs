//! Who may call the API, and how often: bearer JWTs of an OpenID Connect issuer mapped to a
//! [`Principal`], authorization questions asked of it, and rate limits per caller.
//!
//! `config` (flags), `jwks` (the issuer's keys), `token` (a bearer token to a principal),
//! `principal` (claims to roles, and what each role may do), `rate_limit` (keyed GCRA),
//! `guard` (the middleware in front of `/v1`).

pub mod config;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod guard;
pub mod jwks;
pub mod principal;
pub mod rate_limit;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use self::config::{AuthConfig, AuthMode, RateLimitConfig};
pub use self::guard::guard;
use self::jwks::JwksCache;
use self::principal::ClaimNames;
pub use self::principal::{Principal, Role, Visibility};
use self::rate_limit::RateLimits;
use self::token::Authenticator;
use crate::metrics::Metrics;

/// What the guard needs: the authenticator (none with auth disabled) and the rate limits
/// (none when off).
pub struct Access {
    authenticator: Option<Authenticator>,
    rate_limits: Option<Arc<RateLimits>>,
    metrics: Arc<Metrics>,
    jwks_refresh: Duration,
}

impl Access {
    /// Reads the issuer's discovery document and keys (so a wrong issuer stops the start-up),
    /// or warns that authentication is disabled.
    pub async fn build(
        auth: &AuthConfig,
        limits: &RateLimitConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let authenticator = match auth.mode()? {
            AuthMode::Disabled => {
                tracing::warn!("authentication is DISABLED (--auth-disabled): every caller may read and change every order");
                None
            }
            AuthMode::Oidc { issuer, audience } => {
                let http = reqwest::Client::builder()
                    .timeout(auth.auth_http_timeout)
                    .build()
                    .context("building the HTTP client for the OpenID Connect issuer")?;
                let keys = JwksCache::discover(http, &issuer, auth.auth_jwks_min_interval)
                    .await
                    .with_context(|| {
                        format!("reading the keys of the OpenID Connect issuer {issuer}")
                    })?;
                tracing::info!(%issuer, %audience, algorithms = ?auth.auth_algorithms, "bearer tokens required");
                Some(Authenticator::new(
                    Arc::new(keys),
                    &issuer,
                    &audience,
                    &auth.auth_algorithms,
                    auth.auth_leeway,
                    ClaimNames {
                        roles: auth.auth_roles_claim.clone(),
                        staff_role: auth.auth_staff_role.clone(),
                        customer: auth.auth_customer_claim.clone(),
                        scopes: auth.auth_scopes_claim.clone(),
                    },
                ))
            }
        };
        Ok(Self {
            authenticator,
            rate_limits: RateLimits::new(limits).map(Arc::new),
            metrics,
            jwks_refresh: auth.auth_jwks_refresh,
        })
    }

    /// Whether requests need a token.
    pub fn is_enabled(&self) -> bool {
        self.authenticator.is_some()
    }

    /// The loops to run beside the server: key refresh, forgetting idle callers.
    pub fn background(
        &self,
        stopping: &tokio_util::sync::CancellationToken,
    ) -> Vec<futures::future::BoxFuture<'static, ()>> {
        use futures::FutureExt;
        let mut loops = Vec::new();
        if let Some(authenticator) = &self.authenticator {
            loops.push(
                authenticator
                    .keys()
                    .clone()
                    .run(self.jwks_refresh, stopping.clone())
                    .boxed(),
            );
        }
        if let Some(limits) = &self.rate_limits {
            loops.push(limits.clone().run(stopping.clone()).boxed());
        }
        loops
    }
}
