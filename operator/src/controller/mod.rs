//! The OrderPlatform controller: `Context`, the controller loop, and the error policy.
//! The reconcile script itself is in `reconcile.rs`; objects are built in `build/`.

pub mod build;
mod claims;
mod cleanup;
mod decide;
mod error;
mod execute;
mod external;
mod reconcile;
mod rollout;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::{predicates, reflector, watcher, Controller, Predicate, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

pub use crate::provision::error_chain;
pub use error::Error;
pub use reconcile::{reconcile, ABANDON_ANNOTATION, FIELD_MANAGER, FINALIZER};

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
    connections: external::Connections,
    /// Every OrderPlatform the controller watches (its reflector's store), to find two that
    /// name the same table or topic. Set by [`run`].
    platforms: OnceLock<reflector::Store<OrderPlatform>>,
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
            connections: external::Connections::default(),
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

    fn key(platform: &OrderPlatform) -> String {
        format!(
            "{}/{}",
            platform.namespace().unwrap_or_default(),
            platform.name_any()
        )
    }

    pub(crate) fn succeeded(&self, platform: &OrderPlatform) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&Self::key(platform));
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
                *count
            }
            Err(_) => 1,
        };
        backoff(attempt)
    }
}

/// Transient errors back off exponentially per object (user errors never get here: they set a
/// condition and wait for a spec change).
pub fn error_policy(platform: Arc<OrderPlatform>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.failed(&platform);
    ctx.metrics.reconcile_failed(error.reason());
    tracing::warn!(
        platform = %Context::key(&platform),
        reason = error.reason(),
        error = %error_chain(error),
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves. Watches OrderPlatforms (in `namespace`, or
/// everywhere) and the children it owns, so deleting or changing a child triggers a reconcile.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=order-operator");
    // Our own status writes would otherwise trigger a reconcile each: only spec (generation)
    // and finalizer changes of an OrderPlatform start one; children's changes still do.
    let (reader, writer) = reflector::store();
    // One controller per Context; a second `run` would keep the first store.
    let _ = ctx.platforms.set(reader.clone());
    let platforms = watcher(
        api::<OrderPlatform>(&client, &namespace),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    // A `Retain` platform has no finalizer, so no cleanup runs when it goes: forget it here.
    .inspect_ok({
        let ctx = ctx.clone();
        move |event| {
            if let watcher::Event::Delete(platform) = event {
                ctx.forget(platform);
            }
        }
    })
    .applied_objects()
    .predicate_filter(
        // Annotations too: a person releasing a stuck deletion (`abandon-external`) is heard
        // at once rather than at the next retry.
        predicates::generation
            .combine(predicates::finalizers)
            .combine(predicates::annotations),
        Default::default(),
    );
    Controller::for_stream(platforms, reader)
        .owns(api::<Deployment>(&client, &namespace), children.clone())
        .owns(api::<Job>(&client, &namespace), children.clone())
        .owns(api::<ConfigMap>(&client, &namespace), children.clone())
        .owns(api::<Service>(&client, &namespace), children.clone())
        .owns(
            api::<PodDisruptionBudget>(&client, &namespace),
            children.clone(),
        )
        .owns(
            api::<HorizontalPodAutoscaler>(&client, &namespace),
            children,
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
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
