//! The `serve` flags of authentication and rate limiting, and the checks between them. Pure:
//! no network.

use std::time::Duration;

use clap::Args;
use jsonwebtoken::Algorithm;

/// Who may call the API: tokens of one OpenID Connect issuer, and where in them the service
/// finds roles, customer ids and scopes.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// The OpenID Connect issuer whose bearer tokens the API accepts, e.g.
    /// `https://id.example.com/realms/shop`. Its discovery document
    /// (`{issuer}/.well-known/openid-configuration`) is read at start-up and must name this
    /// exact issuer. Required unless `--auth-disabled true`.
    #[arg(long, env = "ORDER_SERVICE_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// The audience tokens must carry in `aud` (at most IdPs the client id of this API).
    /// Required with `--auth-issuer`.
    #[arg(long, env = "ORDER_SERVICE_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// Signature algorithms accepted, comma-separated; asymmetric ones only (RS*, PS*, ES*,
    /// EdDSA). A token's header only chooses among these.
    #[arg(long, env = "ORDER_SERVICE_AUTH_ALGORITHMS", value_delimiter = ',', default_value = "RS256", value_parser = parse_algorithm)]
    pub auth_algorithms: Vec<Algorithm>,
    /// The claim holding the caller's roles or groups (a list of strings, or one string).
    #[arg(long, env = "ORDER_SERVICE_AUTH_ROLES_CLAIM", default_value = "groups")]
    pub auth_roles_claim: String,
    /// The role (in the roles claim) that makes a caller staff: read every order, change
    /// statuses, read the statistics.
    #[arg(long, env = "ORDER_SERVICE_AUTH_STAFF_ROLE", default_value = "staff")]
    pub auth_staff_role: String,
    /// The claim whose value is the caller's customer id: such a caller sees and changes only
    /// that customer's orders. Dex cannot add custom claims; `email` works there.
    #[arg(
        long,
        env = "ORDER_SERVICE_AUTH_CUSTOMER_CLAIM",
        default_value = "customer_id"
    )]
    pub auth_customer_claim: String,
    /// The claim holding a service caller's scopes (space-separated, or a list):
    /// `orders:read`, `orders:write` (create), `orders:status` (change and cancel).
    #[arg(long, env = "ORDER_SERVICE_AUTH_SCOPES_CLAIM", default_value = "scope")]
    pub auth_scopes_claim: String,
    /// How often the issuer's signing keys (JWKS) are fetched again. A token with an unknown
    /// key id fetches them at once too (see `--auth-jwks-min-interval`).
    #[arg(long, env = "ORDER_SERVICE_AUTH_JWKS_REFRESH", default_value = "10m", value_parser = humantime::parse_duration)]
    pub auth_jwks_refresh: Duration,
    /// The least time between two fetches of the keys caused by unknown key ids, so that
    /// tokens with made-up key ids cannot make the service hammer the issuer.
    #[arg(long, env = "ORDER_SERVICE_AUTH_JWKS_MIN_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub auth_jwks_min_interval: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[arg(long, env = "ORDER_SERVICE_AUTH_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub auth_leeway: Duration,
    /// Bound on each request to the issuer (discovery, keys).
    #[arg(long, env = "ORDER_SERVICE_AUTH_HTTP_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub auth_http_timeout: Duration,
    /// Serve without authentication: every caller may do everything, as `api`. Logged as a
    /// warning at start-up and shown by `/readyz` (check `auth`: `disabled`). For local
    /// development and tests only.
    #[arg(long, env = "ORDER_SERVICE_AUTH_DISABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub auth_disabled: bool,
}

/// Rate limits per caller: the token's subject, or the client address without a valid token.
#[derive(Debug, Clone, Args)]
pub struct RateLimitConfig {
    /// Requests per second each caller may make on average under `/v1`; 0 turns limits off.
    #[arg(long, env = "ORDER_SERVICE_RATE_LIMIT_PER_SECOND", default_value_t = 0)]
    pub rate_limit_per_second: u32,
    /// Requests a caller may make at once after being idle (the bucket size); 0 means the
    /// per-second rate.
    #[arg(long, env = "ORDER_SERVICE_RATE_LIMIT_BURST", default_value_t = 0)]
    pub rate_limit_burst: u32,
    /// Callers tracked at most; past it, callers not seen recently share one limit until the
    /// idle ones are forgotten.
    #[arg(
        long,
        env = "ORDER_SERVICE_RATE_LIMIT_MAX_CALLERS",
        default_value_t = 100_000
    )]
    pub rate_limit_max_callers: usize,
}

/// What the flags ask for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// `--auth-disabled true`.
    Disabled,
    /// Tokens of this issuer, for this audience.
    Oidc { issuer: String, audience: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error("authentication is on by default: set --auth-issuer and --auth-audience (ORDER_SERVICE_AUTH_ISSUER, ORDER_SERVICE_AUTH_AUDIENCE), or run without it with --auth-disabled true")]
    NoIssuer,
    #[error("--auth-issuer is set but --auth-audience is not: tokens are only accepted for a named audience")]
    NoAudience,
    #[error("--auth-issuer must be an http:// or https:// URL, not {0:?}")]
    IssuerNotUrl(String),
    #[error("--auth-algorithms is empty")]
    NoAlgorithms,
}

impl AuthConfig {
    /// Disabled, or the issuer and audience; refuses a configuration that would serve
    /// without authentication by accident.
    pub fn mode(&self) -> Result<AuthMode, AuthConfigError> {
        if self.auth_disabled {
            return Ok(AuthMode::Disabled);
        }
        let issuer = self
            .auth_issuer
            .as_deref()
            .filter(|i| !i.is_empty())
            .ok_or(AuthConfigError::NoIssuer)?;
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(AuthConfigError::IssuerNotUrl(issuer.to_owned()));
        }
        let audience = self
            .auth_audience
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or(AuthConfigError::NoAudience)?;
        if self.auth_algorithms.is_empty() {
            return Err(AuthConfigError::NoAlgorithms);
        }
        Ok(AuthMode::Oidc {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }
}

/// An asymmetric JWS algorithm. HMAC ones are refused: an issuer's published keys are public,
/// and accepting HS* with them is the classic key-confusion hole.
fn parse_algorithm(value: &str) -> Result<Algorithm, String> {
    let algorithm: Algorithm = value
        .trim()
        .parse()
        .map_err(|_| format!("unknown JWS algorithm {value:?}"))?;
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Err(format!(
            "{value} is symmetric: only asymmetric algorithms can be checked with the issuer's public keys"
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        auth: AuthConfig,
    }

    fn parse(args: &[&str]) -> Result<AuthConfig, clap::Error> {
        Flags::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|f| f.auth)
    }

    #[test]
    fn without_an_issuer_auth_must_be_disabled_explicitly() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.mode(), Err(AuthConfigError::NoIssuer));
        let config = parse(&["--auth-disabled", "true"]).unwrap();
        assert_eq!(config.mode(), Ok(AuthMode::Disabled));
    }

    #[test]
    fn an_issuer_needs_an_audience() {
        let config = parse(&["--auth-issuer", "https://id.example"]).unwrap();
        assert_eq!(config.mode(), Err(AuthConfigError::NoAudience));
        let config = parse(&[
            "--auth-issuer",
            "https://id.example",
            "--auth-audience",
            "orders",
        ])
        .unwrap();
        assert_eq!(
            config.mode(),
            Ok(AuthMode::Oidc {
                issuer: "https://id.example".into(),
                audience: "orders".into()
            })
        );
        assert_eq!(config.auth_algorithms, vec![Algorithm::RS256]);
    }

    #[test]
    fn symmetric_algorithms_are_refused() {
        assert!(parse(&["--auth-algorithms", "RS256,HS256"]).is_err());
        let config = parse(&["--auth-algorithms", "RS256,ES256"]).unwrap();
        assert_eq!(
            config.auth_algorithms,
            vec![Algorithm::RS256, Algorithm::ES256]
        );
    }
}
