//! Reconcile as a script of phases: observe → validate → tables and topics → decide (pure,
//! `decide.rs`) → execute (`execute.rs`) → status. Deletion is in `cleanup.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, ResourceExt};

use super::build::{Revision, COMPONENT_LABEL, INSTANCE_LABEL};
use super::cleanup::cleanup;
use super::context::Context;
use super::decide::{decide, Observed};
use super::error::Error;
use super::execute::{execute, patch_status, publish};
use super::external;
use super::flow::{self, FlowReading};
use super::status::{self, ResourceOutcome, Truth, Verdict};
use crate::crd::{DeletionPolicy, OrderPlatform};
use crate::provision::Intent;

pub use super::build::FIELD_MANAGER;
pub use super::cleanup::ABANDON_ANNOTATION;
pub const FINALIZER: &str = "platform.orders.dev/cleanup";

/// One span per reconcile, exported with the operator's traces (`telemetry.rs`).
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(namespace = %platform.namespace().unwrap_or_default(), name = %platform.name_any())
)]
pub async fn reconcile(platform: Arc<OrderPlatform>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = platform.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<OrderPlatform> = Api::namespaced(ctx.client.clone(), &namespace);
    let has_finalizer = platform.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = platform.metadata.deletion_timestamp.is_some();
    let result = if needs_finalizer(&platform) || (has_finalizer && deleting) {
        finalizer(&api, FINALIZER, platform, |event| async {
            match event {
                Finalizer::Apply(platform) => apply(&platform, &ctx).await,
                Finalizer::Cleanup(platform) => cleanup(&platform, &ctx).await,
            }
        })
        .await
        .map_err(Error::from_finalizer)
    } else if deleting {
        // Retain without our finalizer: garbage collection removes the children.
        Ok(Action::await_change())
    } else {
        if has_finalizer {
            release_finalizer(&api, &platform).await?;
        }
        apply(&platform, &ctx).await
    };
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// Only `deletionPolicy: Delete` has work to do at deletion (the tables and topics). A
/// `Retain` platform carries no finalizer, so deleting it, its namespace or the operator's
/// Helm release never waits for the operator.
fn needs_finalizer(platform: &OrderPlatform) -> bool {
    platform.spec.deletion_policy == DeletionPolicy::Delete
}

/// Removes our finalizer from a platform switched to `Retain`. The merge patch names the
/// resourceVersion it read, so a concurrent change to the list is a conflict, not lost.
async fn release_finalizer(
    api: &Api<OrderPlatform>,
    platform: &OrderPlatform,
) -> Result<(), Error> {
    let kept: Vec<&String> = platform
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": platform.resource_version(),
        "finalizers": kept,
    }});
    api.patch(
        &platform.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Apply {
        kind: "OrderPlatform",
        name: platform.name_any(),
        source,
    })
}

/// Reads what exists now: the Deployment and the platform's migration Jobs.
async fn observe(
    platform: &OrderPlatform,
    ctx: &Context,
    namespace: &str,
) -> Result<Observed, Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let name = platform.name_any();
    let selector = format!("{INSTANCE_LABEL}={name},{COMPONENT_LABEL}=migration");
    Ok(Observed {
        deployment: deployments
            .get_opt(&name)
            .await
            .map_err(|source| Error::Observe {
                what: format!("Deployment {name}"),
                source,
            })?,
        jobs: jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| Error::Observe {
                what: "migration Jobs".into(),
                source,
            })?
            .items,
    })
}

/// Spec combinations the schema cannot refuse: a user error waits for a spec change.
pub fn validate(platform: &OrderPlatform) -> Result<(), String> {
    let spec = &platform.spec;
    if let (Some(budget), None) = (&spec.pod_disruption_budget, &spec.autoscaling) {
        if spec.replicas > 0 && budget.max_unavailable == 0 && spec.replicas == 1 {
            return Err("a PodDisruptionBudget with maxUnavailable 0 on a single replica blocks every node drain; raise replicas or maxUnavailable".into());
        }
    }
    if let Some(autoscaling) = &spec.autoscaling {
        if spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_none_or(|r| !r.contains_key("cpu"))
        {
            return Err(format!(
                "autoscaling on CPU needs resources.requests.cpu (target {}% of what?)",
                autoscaling.target_cpu_utilization
            ));
        }
    }
    Ok(())
}

async fn apply(platform: &OrderPlatform, ctx: &Context) -> Result<Action, Error> {
    let namespace = platform.namespace().ok_or(Error::MissingNamespace)?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = platform.metadata.generation;
    let mut status = platform.status.clone().unwrap_or_default();
    status.observed_generation = generation;

    if platform.spec.paused {
        let verdict = Verdict::new(
            status::PAUSED,
            Truth::True,
            "Paused",
            "spec.paused is true: the operator changes nothing",
        );
        status::set_condition(&mut status.conditions, &verdict, generation, &now);
        status.phase = Some("Paused".into());
        patch_status(platform, ctx, &status).await?;
        ctx.metrics
            .set_conditions(&namespace, &platform.name_any(), &status.conditions);
        ctx.succeeded(platform);
        return Ok(Action::await_change());
    }
    status::remove_condition(&mut status.conditions, status::PAUSED);

    if let Err(problem) = validate(platform) {
        let verdict = Verdict::new(status::READY, Truth::False, "InvalidSpec", problem.clone());
        status::set_condition(&mut status.conditions, &verdict, generation, &now);
        status.phase = Some("Degraded".into());
        patch_status(platform, ctx, &status).await?;
        ctx.metrics
            .set_ready(&namespace, &platform.name_any(), false);
        ctx.metrics
            .set_conditions(&namespace, &platform.name_any(), &status.conditions);
        if ctx.first_warning(platform, status::READY, "InvalidSpec") {
            publish(ctx, platform, EventType::Warning, "InvalidSpec", problem).await;
        }
        ctx.succeeded(platform);
        return Ok(Action::await_change());
    }

    let observed = observe(platform, ctx, &namespace).await?;

    // Tables and topics first: a new image needs them in shape before it rolls out.
    let (table_outcomes, topic_outcomes) =
        external::provision(platform, ctx, Intent::Present).await;
    let (tables, table_entries) =
        status::external_verdict(status::TABLES_READY, "tables", &table_outcomes);
    let (topics, topic_entries) =
        status::external_verdict(status::TOPICS_READY, "topics", &topic_outcomes);
    for (verdict, outcomes) in [(&tables, &table_outcomes), (&topics, &topic_outcomes)] {
        report_external(platform, ctx, verdict, outcomes).await;
    }
    let external_ready = tables.status == Truth::True && topics.status == Truth::True;
    let external_failure = table_outcomes
        .iter()
        .chain(&topic_outcomes)
        .find_map(|o| o.error.as_ref().map(|(reason, _)| *reason));
    status.tables = table_entries;
    status.topics = topic_entries;

    let changes = decide(
        platform,
        &observed,
        external_ready,
        status.migrated_revision.as_deref(),
    );
    let deployment = execute(platform, ctx, &namespace, &changes).await?;
    let (desired, migration) = (&changes.desired, &changes.migration);
    if migration.migrated.as_deref() == Some(changes.key.as_str()) {
        status.migrated_image = Some(desired.image.clone());
    }
    status.migrated_revision = migration.migrated.clone();

    let spec_image = desired.image.as_str();
    let (service, rollout) = status::service_verdict(deployment.as_ref(), desired);
    let ready = status::ready_verdict(
        &migration.verdict,
        &[&tables, &topics],
        &service,
        &rollout,
        spec_image,
    );
    // One Warning per stuck rollout (a new spec, or the rollout recovering, warns anew).
    if ready.reason != status::ROLLOUT_STUCK {
        ctx.clear_warning(platform, status::ROLLOUT_STUCK);
    } else if ctx.first_warning(platform, status::ROLLOUT_STUCK, ready.reason) {
        let note = ready.message.clone();
        publish(
            ctx,
            platform,
            EventType::Warning,
            status::ROLLOUT_STUCK,
            note,
        )
        .await;
    }
    // Whether the application moves its data: asked of the service itself, only once a pod
    // is available to answer. Not part of Ready: a sink's outage does not stop orders.
    let reading = if service.status == Truth::True {
        flow::read(&ctx.http, &ctx.service_address, platform).await
    } else {
        FlowReading::NotServing
    };
    let (flowing, data_flow) = status::flow_verdict(
        &reading,
        platform.spec.data_flow.max_pending_age_seconds,
        &now,
    );
    if data_flow.is_some() {
        status.data_flow = data_flow;
    }
    for verdict in [
        &migration.verdict,
        &tables,
        &topics,
        &service,
        &ready,
        &flowing,
    ] {
        status::set_condition(&mut status.conditions, verdict, generation, &now);
    }
    status.phase = Some(status::phase(&migration.verdict, &[&tables, &topics], &ready).into());
    status.current_image = deployment
        .as_ref()
        .and_then(Revision::running)
        .map(|r| r.image);
    status.ready_replicas = deployment
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas);
    patch_status(platform, ctx, &status).await?;
    ctx.metrics.set_ready(
        &namespace,
        &platform.name_any(),
        ready.status == Truth::True,
    );
    ctx.metrics
        .set_conditions(&namespace, &platform.name_any(), &status.conditions);

    if let Some(reason) = external_failure {
        // A call failed (endpoint down, timeout): back off like any transient error, and count
        // it under its own reason (the reconcile itself succeeded in saying so).
        ctx.metrics.reconcile_failed(reason);
        return Ok(Action::requeue(ctx.failed(platform)));
    }
    ctx.succeeded(platform);
    Ok(match (ready.status, migration.verdict.status) {
        (Truth::True, _) => Action::requeue(ctx.resync),
        // A failed migration or a refused change waits for a spec change; the periodic
        // resync still re-checks (a conflicting table removed by hand, say).
        (_, Truth::False) => Action::requeue(ctx.resync),
        _ if tables.status == Truth::False || topics.status == Truth::False => {
            Action::requeue(ctx.resync)
        }
        _ => Action::requeue(Duration::from_secs(10)),
    })
}

/// Events for one provisioner's outcome: a Warning once per refusal, a Normal Event for
/// what was changed (`DriftCorrected` when it had been in shape).
async fn report_external(
    platform: &OrderPlatform,
    ctx: &Context,
    verdict: &Verdict,
    outcomes: &[ResourceOutcome],
) {
    let refused = outcomes.iter().any(|o| o.refusal.is_some());
    if !refused {
        ctx.clear_warning(platform, verdict.type_);
    } else if ctx.first_warning(platform, verdict.type_, verdict.reason) {
        publish(
            ctx,
            platform,
            EventType::Warning,
            verdict.reason,
            verdict.message.clone(),
        )
        .await;
    }
    let applied: Vec<&str> = outcomes
        .iter()
        .flat_map(|o| o.applied.iter().map(String::as_str))
        .collect();
    if applied.is_empty() {
        return;
    }
    let was_ready = platform.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == verdict.type_ && c.status == "True")
    });
    let reason = if was_ready {
        "DriftCorrected"
    } else {
        "Provisioned"
    };
    publish(ctx, platform, EventType::Normal, reason, applied.join("; ")).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscaling_without_a_cpu_request_is_a_user_error() {
        let platform = OrderPlatform::test().with_autoscaling(2, 4);
        assert!(validate(&platform)
            .unwrap_err()
            .contains("resources.requests.cpu"));
        assert!(validate(&OrderPlatform::test()).is_ok());
    }
}
