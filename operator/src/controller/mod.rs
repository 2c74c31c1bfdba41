//! The OrderPlatform controller: the controller loop and the error policy. What a reconcile can
//! reach is `context.rs`; the reconcile script is `reconcile.rs`; objects are built in `build/`.

pub mod build;
mod claims;
mod cleanup;
mod connections;
mod context;
mod decide;
mod error;
mod execute;
mod external;
mod flow;
mod reconcile;
mod rollout;
pub mod status;

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Action;
use kube::runtime::{predicates, reflector, watcher, Controller, Predicate, WatchStreamExt};
use kube::{Api, Client};

pub use crate::provision::error_chain;
pub use context::Context;
pub use error::Error;
pub use reconcile::{reconcile, ABANDON_ANNOTATION, FIELD_MANAGER, FINALIZER};

use crate::crd::OrderPlatform;

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
