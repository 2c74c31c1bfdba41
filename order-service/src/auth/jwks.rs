//! The issuer's signing keys: found through its discovery document at start-up, cached by key
//! id, fetched again on a timer and once when a token names an unknown key id (one fetch at a
//! time, at most every `min_interval`). A failed fetch keeps the last good keys.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Fetching the discovery document or the keys failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("requesting {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("reading {url}")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the discovery document at {url} names issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        url: String,
        found: String,
        expected: String,
    },
    #[error("{url} holds no usable signing key")]
    NoKeys { url: String },
}

/// The part of the discovery document (OpenID Connect Discovery 1.0 §3) the service reads.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Keys by key id (`kid`).
type Keys = HashMap<String, Arc<DecodingKey>>;

pub struct JwksCache {
    http: reqwest::Client,
    jwks_uri: String,
    keys: RwLock<Arc<Keys>>,
    /// When an unknown key id last caused a fetch; held during that fetch (single flight).
    unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl JwksCache {
    /// Reads `{issuer}/.well-known/openid-configuration`, checks that it names `issuer`, and
    /// fetches the keys from its `jwks_uri`.
    pub async fn discover(
        http: reqwest::Client,
        issuer: &str,
        min_interval: Duration,
    ) -> Result<Self, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Discovery = get_json(&http, &url).await?;
        if discovery.issuer != issuer {
            return Err(FetchError::IssuerMismatch {
                url,
                found: discovery.issuer,
                expected: issuer.to_owned(),
            });
        }
        let keys = fetch_keys(&http, &discovery.jwks_uri).await?;
        Ok(Self {
            http,
            jwks_uri: discovery.jwks_uri,
            keys: RwLock::new(Arc::new(keys)),
            unknown_kid_fetch: tokio::sync::Mutex::new(None),
            min_interval,
        })
    }

    /// The key a token names; an unknown `kid` fetches the keys first (see the module docs).
    /// A token without `kid` is accepted only while the issuer publishes a single key.
    pub async fn key(&self, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        if let Some(key) = self.lookup(kid) {
            return Some(key);
        }
        self.refresh_for_unknown(kid).await;
        self.lookup(kid)
    }

    /// Whether `key` is still one of the published keys (the same fetch: a refresh makes new
    /// ones, so a token verified before it is verified once more).
    pub fn publishes(&self, key: &Arc<DecodingKey>) -> bool {
        self.current().values().any(|k| Arc::ptr_eq(k, key))
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        let keys = self.current();
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    fn current(&self) -> Arc<Keys> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn refresh_for_unknown(&self, kid: Option<&str>) {
        let mut last = self.unknown_kid_fetch.lock().await;
        // Whoever held the lock before may have fetched the key this token needs.
        if self.lookup(kid).is_some() {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < self.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        match self.refresh().await {
            Ok(count) => tracing::info!(
                kid,
                keys = count,
                "fetched the issuer's keys for an unknown key id"
            ),
            Err(error) => {
                tracing::warn!(kid, error = %crate::telemetry::error_chain(&error), "fetching the issuer's keys failed; keeping the last good ones")
            }
        }
    }

    /// Fetches the keys and replaces the cached ones; on failure they stay as they were.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let keys = fetch_keys(&self.http, &self.jwks_uri).await?;
        let count = keys.len();
        match self.keys.write() {
            Ok(mut current) => *current = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        Ok(count)
    }

    /// Fetches the keys every `every` until `stopping`.
    pub async fn run(self: Arc<Self>, every: Duration, stopping: CancellationToken) {
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(error) = self.refresh().await {
                tracing::warn!(error = %crate::telemetry::error_chain(&error), "refreshing the issuer's keys failed; keeping the last good ones");
            }
        }
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, FetchError> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|source| FetchError::Request {
            url: url.to_owned(),
            source,
        })?;
    if !response.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: response.status(),
        });
    }
    response.json().await.map_err(|source| FetchError::Body {
        url: url.to_owned(),
        source,
    })
}

/// The signing keys of a JWKS; keys for encryption, or of kinds this build cannot use, are
/// skipped.
async fn fetch_keys(http: &reqwest::Client, url: &str) -> Result<Keys, FetchError> {
    let set: JwkSet = get_json(http, url).await?;
    let keys = usable_keys(&set);
    if keys.is_empty() {
        return Err(FetchError::NoKeys {
            url: url.to_owned(),
        });
    }
    Ok(keys)
}

fn usable_keys(set: &JwkSet) -> Keys {
    set.keys
        .iter()
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((jwk.common.key_id.clone().unwrap_or_default(), Arc::new(key)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::fixtures::{FakeIssuer, TestKey};

    async fn cache(issuer: &FakeIssuer, min_interval: Duration) -> JwksCache {
        JwksCache::discover(reqwest::Client::new(), &issuer.issuer, min_interval)
            .await
            .expect("discovered")
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_the_keys_once_per_interval() {
        let (first, second) = (TestKey::new("first"), TestKey::new("second"));
        let issuer = FakeIssuer::start(&[&first]).await;
        let keys = cache(&issuer, Duration::from_secs(3600)).await;
        assert_eq!(issuer.fetches(), 1, "at start-up");
        assert!(keys.key(Some("first")).await.is_some());
        assert_eq!(issuer.fetches(), 1, "known keys come from the cache");

        issuer.publish(&[&first, &second]);
        assert!(keys.key(Some("second")).await.is_some(), "fetched for it");
        assert_eq!(issuer.fetches(), 2);
        // Made-up key ids cannot make the service hammer the issuer.
        for _ in 0..5 {
            assert!(keys.key(Some("made-up")).await.is_none());
        }
        assert_eq!(
            issuer.fetches(),
            2,
            "no fetch within the interval of the last one"
        );
    }

    #[tokio::test]
    async fn concurrent_requests_for_a_new_kid_share_one_fetch() {
        let (first, second) = (TestKey::new("first"), TestKey::new("second"));
        let issuer = FakeIssuer::start(&[&first]).await;
        let keys = Arc::new(cache(&issuer, Duration::ZERO).await);
        issuer.publish(&[&first, &second]);
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let keys = keys.clone();
                tokio::spawn(async move { keys.key(Some("second")).await.is_some() })
            })
            .collect();
        for lookup in lookups {
            assert!(lookup.await.expect("lookup"));
        }
        assert_eq!(issuer.fetches(), 2, "start-up and one fetch for all eight");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_good_keys() {
        let first = TestKey::new("first");
        let issuer = FakeIssuer::start(&[&first]).await;
        let keys = cache(&issuer, Duration::ZERO).await;
        issuer.fail(true);
        assert!(matches!(
            keys.refresh().await,
            Err(FetchError::Status { .. })
        ));
        assert!(keys.key(Some("first")).await.is_some());
        // An empty set is a failure too, not a reason to forget every key.
        issuer.fail(false);
        issuer.publish(&[]);
        assert!(matches!(
            keys.refresh().await,
            Err(FetchError::NoKeys { .. })
        ));
        assert!(keys.key(Some("first")).await.is_some());
    }

    #[tokio::test]
    async fn a_discovery_document_naming_another_issuer_is_refused() {
        let first = TestKey::new("first");
        let issuer = FakeIssuer::start(&[&first]).await;
        let other = format!("{}/", issuer.issuer);
        let refused = JwksCache::discover(reqwest::Client::new(), &other, Duration::ZERO).await;
        assert!(matches!(refused, Err(FetchError::IssuerMismatch { .. })));
    }
}
