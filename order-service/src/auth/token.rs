//! Bearer tokens: from the `Authorization` header to a [`Principal`], or the reason why not.
//! Algorithms come from the configuration, never from the token; `iss`, `aud`, `exp` and `sub`
//! are required.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwks::JwksCache;
use super::principal::{ClaimNames, Principal};

/// Why a token was refused: a stable reason for the log, never for the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("no bearer token")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not an accepted one")]
    Algorithm,
    #[error("the token names a key the issuer does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token is from another issuer")]
    Issuer,
    #[error("the token lacks a required claim (iss, aud, exp, sub)")]
    MissingClaim,
}

impl TokenRefusal {
    /// CamelCase and stable, for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "TokenMissing",
            Self::NotBearer => "NotBearer",
            Self::Malformed => "Malformed",
            Self::Algorithm => "AlgorithmNotAccepted",
            Self::UnknownKey => "UnknownKey",
            Self::Signature => "BadSignature",
            Self::Expired => "Expired",
            Self::NotYetValid => "NotYetValid",
            Self::Audience => "WrongAudience",
            Self::Issuer => "WrongIssuer",
            Self::MissingClaim => "MissingClaim",
        }
    }
}

/// Checks bearer tokens of one issuer for one audience.
pub struct Authenticator {
    keys: Arc<JwksCache>,
    validation: Validation,
    claims: ClaimNames,
    /// Tokens already verified, by their SHA-256: a client sends the same token for many
    /// requests, and its signature need be checked once (a tenth of the API's create throughput
    /// otherwise, docs/performance.md). Bounded, each entry kept at most a minute and never past
    /// the token's `exp`, and dropped as soon as the key that verified it is no longer published.
    verified: moka::future::Cache<[u8; 32], Verified>,
}

/// A token that passed every check.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    /// `exp` plus the leeway, in seconds since the epoch.
    valid_until: u64,
    key: Arc<jsonwebtoken::DecodingKey>,
}

/// Tokens remembered at most; past it the least used go first.
const VERIFIED_CAPACITY: u64 = 10_000;
/// How long a verified token is remembered at most.
const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl Authenticator {
    pub fn new(
        keys: Arc<JwksCache>,
        issuer: &str,
        audience: &str,
        algorithms: &[Algorithm],
        leeway: std::time::Duration,
        claims: ClaimNames,
    ) -> Self {
        Self {
            keys,
            validation: validation(issuer, audience, algorithms, leeway),
            claims,
            verified: moka::future::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_FOR)
                .build(),
        }
    }

    pub fn keys(&self) -> &Arc<JwksCache> {
        &self.keys
    }

    /// The principal of the request's bearer token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, TokenRefusal> {
        let token = bearer_token(headers)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(known) = self.verified.get(&digest).await {
            if now() <= known.valid_until && self.keys.publishes(&known.key) {
                return Ok(known.principal);
            }
            self.verified.invalidate(&digest).await;
        }
        let (principal, verified) = self.verify(token).await?;
        self.verified.insert(digest, verified).await;
        Ok(principal)
    }

    /// Every check, the signature included.
    async fn verify(&self, token: &str) -> Result<(Principal, Verified), TokenRefusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRefusal::Malformed)?;
        // Checked before any key is looked up, so that a token cannot pick the algorithm
        // (`none`, HS256 with the public key as secret) nor make the service fetch keys.
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(TokenRefusal::Algorithm);
        }
        let key = self
            .keys
            .key(header.kid.as_deref())
            .await
            .ok_or(TokenRefusal::UnknownKey)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation)
            .map_err(|e| refusal(e.kind()))?;
        let principal =
            Principal::from_claims(&data.claims, &self.claims).ok_or(TokenRefusal::MissingClaim)?;
        let exp = data
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenRefusal::MissingClaim)?;
        let verified = Verified {
            principal: principal.clone(),
            valid_until: exp.saturating_add(self.validation.leeway),
            key,
        };
        Ok((principal, verified))
    }
}

/// Seconds since the epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is
/// case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Result<&str, TokenRefusal> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(TokenRefusal::Missing)?
        .to_str()
        .map_err(|_| TokenRefusal::NotBearer)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenRefusal::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(TokenRefusal::NotBearer);
    }
    Ok(token)
}

/// The checks every token goes through.
pub fn validation(
    issuer: &str,
    audience: &str,
    algorithms: &[Algorithm],
    leeway: std::time::Duration,
) -> Validation {
    let mut validation = Validation::new(algorithms.first().copied().unwrap_or(Algorithm::RS256));
    validation.algorithms = algorithms.to_vec();
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    // The default is `exp` only, and `iss`/`aud` are otherwise checked only when present.
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = leeway.as_secs();
    validation
}

fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> TokenRefusal {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => TokenRefusal::Signature,
        K::ExpiredSignature => TokenRefusal::Expired,
        K::ImmatureSignature => TokenRefusal::NotYetValid,
        K::InvalidAudience => TokenRefusal::Audience,
        K::InvalidIssuer => TokenRefusal::Issuer,
        K::MissingRequiredClaim(_) | K::InvalidSubject => TokenRefusal::MissingClaim,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenRefusal::Algorithm,
        _ => TokenRefusal::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::fixtures::{FakeIssuer, TestKey, AUDIENCE};
    use crate::auth::principal::Role;
    use axum::http::HeaderValue;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;
    use std::time::Duration;

    async fn authenticator(issuer: &FakeIssuer) -> Authenticator {
        let keys = JwksCache::discover(reqwest::Client::new(), &issuer.issuer, Duration::ZERO)
            .await
            .expect("discovered");
        Authenticator::new(
            Arc::new(keys),
            &issuer.issuer,
            AUDIENCE,
            &[Algorithm::RS256],
            Duration::from_secs(5),
            ClaimNames {
                roles: "groups".into(),
                staff_role: "staff".into(),
                customer: "customer_id".into(),
                scopes: "scope".into(),
            },
        )
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        headers
    }

    fn unsigned(header: Value, claims: &Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", part(&header), part(claims))
    }

    #[tokio::test]
    async fn a_valid_token_becomes_its_principal() {
        let key = TestKey::new("k1");
        let issuer = FakeIssuer::start(&[&key]).await;
        let auth = authenticator(&issuer).await;
        let token = key.sign(&issuer.claims(json!({"customer_id": "c-42"})));
        let principal = auth.authenticate(&bearer(&token)).await.expect("accepted");
        assert_eq!(principal.subject, "user-1");
        assert_eq!(
            principal.role,
            Role::Customer {
                customer_id: "c-42".into()
            }
        );
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_until_its_key_is_withdrawn() {
        let key = TestKey::new("k1");
        let issuer = FakeIssuer::start(&[&key]).await;
        let auth = authenticator(&issuer).await;
        let token = key.sign(&issuer.claims(json!({"customer_id": "c-42"})));
        auth.authenticate(&bearer(&token)).await.expect("accepted");
        assert_eq!(auth.verified.entry_count(), 0, "moka counts lazily");
        auth.verified.run_pending_tasks().await;
        assert_eq!(auth.verified.entry_count(), 1, "remembered");
        // Another token is not taken for it.
        let other = key.sign(&issuer.claims(json!({"customer_id": "c-7"})));
        let principal = auth.authenticate(&bearer(&other)).await.expect("accepted");
        assert_eq!(
            principal.role,
            Role::Customer {
                customer_id: "c-7".into()
            }
        );
        // The issuer withdraws the key: once the service has the new set, the remembered
        // token is checked again, and refused.
        let successor = TestKey::new("k2");
        issuer.publish(&[&successor]);
        auth.keys().refresh().await.expect("refreshed");
        assert_eq!(
            auth.authenticate(&bearer(&token)).await.unwrap_err(),
            TokenRefusal::UnknownKey
        );
    }

    #[tokio::test]
    async fn tokens_are_refused_for_each_reason() {
        let key = TestKey::new("k1");
        let stranger = TestKey::new("k1");
        let issuer = FakeIssuer::start(&[&key]).await;
        let auth = authenticator(&issuer).await;
        let now = jsonwebtoken::get_current_timestamp();
        let cases = [
            (
                key.sign(&issuer.claims(json!({"exp": now - 60}))),
                TokenRefusal::Expired,
            ),
            (
                key.sign(&issuer.claims(json!({"nbf": now + 600}))),
                TokenRefusal::NotYetValid,
            ),
            (
                key.sign(&issuer.claims(json!({"aud": "other"}))),
                TokenRefusal::Audience,
            ),
            (
                key.sign(&issuer.claims(json!({"iss": "https://evil.example"}))),
                TokenRefusal::Issuer,
            ),
            (
                key.sign(&issuer.claims(json!({"sub": null}))),
                TokenRefusal::MissingClaim,
            ),
            (
                key.sign(&issuer.claims(json!({"aud": null}))),
                TokenRefusal::MissingClaim,
            ),
            (
                key.sign(&issuer.claims(json!({"exp": null}))),
                TokenRefusal::MissingClaim,
            ),
            (
                stranger.sign(&issuer.claims(json!({}))),
                TokenRefusal::Signature,
            ),
            (
                TestKey::new("k9").sign(&issuer.claims(json!({}))),
                TokenRefusal::UnknownKey,
            ),
            (
                unsigned(
                    json!({"alg": "none", "kid": "k1"}),
                    &issuer.claims(json!({})),
                ),
                TokenRefusal::Malformed,
            ),
            ("not.a.jwt".to_owned(), TokenRefusal::Malformed),
        ];
        for (token, expected) in cases {
            assert_eq!(
                auth.authenticate(&bearer(&token)).await,
                Err(expected),
                "{token}"
            );
        }
    }

    #[tokio::test]
    async fn the_token_cannot_choose_the_algorithm() {
        let key = TestKey::new("k1");
        let issuer = FakeIssuer::start(&[&key]).await;
        let auth = authenticator(&issuer).await;
        let claims = issuer.claims(json!({}));
        // HS256 keyed with the public modulus the issuer publishes.
        let jwk = serde_json::to_value(key.jwk()).expect("jwk");
        let secret = jwk["n"].as_str().expect("n").as_bytes().to_vec();
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let hs256 = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .expect("sign");
        assert_eq!(
            auth.authenticate(&bearer(&hs256)).await,
            Err(TokenRefusal::Algorithm)
        );
        // RS512 with the right key: a fine signature, but not an accepted algorithm.
        let mut header = jsonwebtoken::Header::new(Algorithm::RS512);
        header.kid = Some("k1".into());
        let rs512 = jsonwebtoken::encode(&header, &claims, &key.key).expect("sign");
        assert_eq!(
            auth.authenticate(&bearer(&rs512)).await,
            Err(TokenRefusal::Algorithm)
        );
    }

    #[tokio::test]
    async fn only_bearer_credentials_are_read() {
        let key = TestKey::new("k1");
        let issuer = FakeIssuer::start(&[&key]).await;
        let auth = authenticator(&issuer).await;
        assert_eq!(
            auth.authenticate(&HeaderMap::new()).await,
            Err(TokenRefusal::Missing)
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpi"),
        );
        assert_eq!(
            auth.authenticate(&basic).await,
            Err(TokenRefusal::NotBearer)
        );
        let token = key.sign(&issuer.claims(json!({})));
        let mut lower = HeaderMap::new();
        lower.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {token}")).expect("header"),
        );
        assert!(
            auth.authenticate(&lower).await.is_ok(),
            "the scheme is case-insensitive"
        );
    }
}
