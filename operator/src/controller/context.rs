//! `Context`: what every reconcile can reach (client, Event reporter, metrics, bounds), and
//! what the controller remembers per platform (backoff, warnings), kept bounded by `forget`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use kube::{Client, ResourceExt};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::connections::Connections;
use super::flow::ServiceAddress;
use crate::crd::OrderPlatform;
use crate::metrics::Metrics;

/// What every reconcile can reach.
pub struct Context {
    pub client: Client,
    /// Who publishes the Events (see `execute::publish`).
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for per-object exponential backoff.
    failures: Mutex<HashMap<String, usize>>,
    /// The last Warning per object, as (reason, generation): the watch cache can hand the next
    /// reconcile a status older than the one just written, so a flip seen twice warns once.
    warned: Mutex<HashMap<String, (String, Option<i64>)>>,
    /// How often a healthy platform is re-checked for drift.
    pub resync: Duration,
    /// Bound on each DynamoDB or Kafka call.
    pub provision_timeout: Duration,
    /// How long after deletion a failing `deletionPolicy: Delete` cleanup is retried before the
    /// platform is released anyway.
    pub cleanup_timeout: Duration,
    pub(super) connections: Connections,
    /// Where each platform's service answers `/flowz`, and the client that asks.
    pub(super) service_address: ServiceAddress,
    pub(super) http: reqwest::Client,
    /// Every OrderPlatform the controller watches (its reflector's store), to find two that
    /// name the same table or topic. Set by [`run`].
    pub(super) platforms: OnceLock<reflector::Store<OrderPlatform>>,
}

impl Context {
    pub fn new(
        client: Client,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        resync: Duration,
    ) -> Self {
        Self {
            reporter,
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashMap::new()),
            resync,
            provision_timeout: Duration::from_secs(30),
            cleanup_timeout: Duration::from_secs(600),
            connections: Connections::default(),
            service_address: ServiceAddress::default(),
            // No proxy: the services are in the cluster (or at --service-url).
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            platforms: OnceLock::new(),
        }
    }

    /// The platforms in the controller's cache (none before [`run`] started).
    pub(crate) fn platforms(&self) -> Vec<Arc<OrderPlatform>> {
        self.platforms
            .get()
            .map(reflector::Store::state)
            .unwrap_or_default()
    }

    pub fn with_provision_timeout(mut self, timeout: Duration) -> Self {
        self.provision_timeout = timeout;
        self
    }

    /// Reach every platform's service at `url` (an operator outside the cluster) rather than
    /// at its Service's in-cluster name.
    pub fn with_service_url(mut self, url: Option<String>) -> Self {
        self.service_address.override_url = url;
        self
    }

    pub fn with_cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.cleanup_timeout = timeout;
        self
    }

    /// Drops what the controller remembers of a platform that is gone, so its maps hold live
    /// platforms only.
    pub(crate) fn forget(&self, platform: &OrderPlatform) {
        let key = Self::key(platform);
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&key);
            self.metrics.set_retry_queue(failures.len());
        }
        if let Ok(mut warned) = self.warned.lock() {
            let prefix = format!("{key}#");
            warned.retain(|k, _| !k.starts_with(&prefix));
        }
        self.metrics.forget_platform(
            &platform.namespace().unwrap_or_default(),
            &platform.name_any(),
        );
    }

    pub(super) fn key(platform: &OrderPlatform) -> String {
        format!(
            "{}/{}",
            platform.namespace().unwrap_or_default(),
            platform.name_any()
        )
    }

    pub(crate) fn succeeded(&self, platform: &OrderPlatform) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&Self::key(platform));
            self.metrics.set_retry_queue(failures.len());
        }
    }

    /// True the first time `reason` is seen for this object's condition `type_` at this
    /// generation.
    pub(crate) fn first_warning(
        &self,
        platform: &OrderPlatform,
        type_: &str,
        reason: &str,
    ) -> bool {
        let Ok(mut warned) = self.warned.lock() else {
            return true;
        };
        let value = (reason.to_owned(), platform.metadata.generation);
        let key = format!("{}#{type_}", Self::key(platform));
        warned.insert(key, value.clone()).as_ref() != Some(&value)
    }

    /// The condition `type_` is fine again: its next problem warns anew.
    pub(crate) fn clear_warning(&self, platform: &OrderPlatform, type_: &str) {
        if let Ok(mut warned) = self.warned.lock() {
            warned.remove(&format!("{}#{type_}", Self::key(platform)));
        }
    }

    /// Counts a failure and returns the backoff before the next attempt.
    pub(crate) fn failed(&self, platform: &OrderPlatform) -> Duration {
        let attempt = match self.failures.lock() {
            Ok(mut failures) => {
                let count = failures.entry(Self::key(platform)).or_insert(0);
                *count += 1;
                let count = *count;
                self.metrics.set_retry_queue(failures.len());
                count
            }
            Err(_) => 1,
        };
        backoff(attempt)
    }
}

/// The delay before retry number `attempt` (1-based): exponential from 1 s to 5 min, jittered.
fn backoff(attempt: usize) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(300))
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1))
        .unwrap_or(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_grows_per_attempt_and_stays_bounded() {
        // Jitter adds up to one more delay; the floor doubles each attempt.
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) <= Duration::from_secs(2));
        assert!(backoff(4) >= Duration::from_secs(8));
        for attempt in [20, 200] {
            assert!(
                backoff(attempt) <= Duration::from_secs(600),
                "attempt {attempt}"
            );
            assert!(backoff(attempt) >= Duration::from_secs(300));
        }
    }
}
