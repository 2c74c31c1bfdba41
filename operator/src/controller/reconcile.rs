//! Reconcile as a script of phases: observe → validate → build → apply → status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::build::{self, Revision, COMPONENT_LABEL, INSTANCE_LABEL};
use super::status::{self, ResourceOutcome, Truth, Verdict};
use super::{external, rollout, Context, Error};
use crate::crd::{DeletionPolicy, OrderPlatform, OrderPlatformStatus};
use crate::provision::Intent;

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "order-operator";
pub const FINALIZER: &str = "platform.orders.dev/cleanup";
/// The field manager that holds `replicas` while autoscaling takes it over.
const HANDOVER_FIELD_MANAGER: &str = "order-operator-autoscaling-handover";

pub async fn reconcile(platform: Arc<OrderPlatform>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = platform.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<OrderPlatform> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, platform, |event| async {
        match event {
            Finalizer::Apply(platform) => apply(&platform, &ctx).await,
            Finalizer::Cleanup(platform) => cleanup(&platform, &ctx).await,
        }
    })
    .await
    .map_err(Error::from_finalizer);
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// What exists now.
struct Observed {
    deployment: Option<Deployment>,
    /// This platform's migration Jobs.
    jobs: Vec<Job>,
}

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
        ctx.succeeded(platform);
        return Ok(Action::await_change());
    }
    status::remove_condition(&mut status.conditions, status::PAUSED);

    if let Err(problem) = validate(platform) {
        let verdict = Verdict::new(status::READY, Truth::False, "InvalidSpec", problem.clone());
        status::set_condition(&mut status.conditions, &verdict, generation, &now);
        status.phase = Some("Degraded".into());
        patch_status(platform, ctx, &status).await?;
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

    // The spec's revision, its configuration first (a new one is a new, immutable ConfigMap;
    // the old one stays for the pods that read it).
    let config_map = build::build_config_map(platform);
    let desired = Revision::desired(platform, config_map.name_any());
    server_side_apply(ctx, &namespace, &config_map).await?;

    // The rollout gate.
    let running = observed.deployment.as_ref().and_then(Revision::running);
    let key = desired.migration_key(platform);
    let job_name = build::migration_job_name(platform, &key);
    let job_outcome = observed
        .jobs
        .iter()
        .find(|j| j.name_any() == job_name)
        .map(rollout::job_outcome);
    let migration = rollout::gate_on_external(
        rollout::decide_migration(
            &desired,
            &key,
            platform.spec.database.migrations.enabled,
            status.migrated_revision.as_deref(),
            running.as_ref(),
            job_outcome.as_ref(),
        ),
        external_ready,
        running.as_ref(),
    );
    if migration.start_job {
        server_side_apply(
            ctx,
            &namespace,
            &build::build_migration_job(platform, &desired, &key),
        )
        .await?;
        publish(
            ctx,
            platform,
            EventType::Normal,
            "MigrationStarted",
            format!(
                "running migrations for {} against Secret {}",
                desired.image, desired.database.name
            ),
        )
        .await;
    }
    delete_jobs(
        ctx,
        &namespace,
        &rollout::stale_jobs(&observed.jobs, &job_name),
    )
    .await?;
    if migration.verdict.status != Truth::False {
        ctx.clear_warning(platform, status::MIGRATIONS_SUCCEEDED);
    } else if ctx.first_warning(
        platform,
        status::MIGRATIONS_SUCCEEDED,
        migration.verdict.reason,
    ) {
        publish(
            ctx,
            platform,
            EventType::Warning,
            migration.verdict.reason,
            migration.verdict.message.clone(),
        )
        .await;
    }
    if migration.migrated.as_deref() == Some(key.as_str()) {
        status.migrated_image = Some(desired.image.clone());
    }
    status.migrated_revision = migration.migrated.clone();

    // The service objects.
    let mut deployment = None;
    if let Some(revision) = &migration.deploy {
        let moves = running.as_ref() != Some(revision);
        if moves {
            publish(
                ctx,
                platform,
                EventType::Normal,
                "RollingOut",
                format!(
                    "the Deployment moves to {} with ConfigMap {} and Secret {}",
                    revision.image, revision.config_map, revision.database.name
                ),
            )
            .await;
        }
        if let Some(observed) = &observed.deployment {
            if platform.spec.autoscaling.is_some()
                && rollout::replicas_owned_by(observed, FIELD_MANAGER)
            {
                hand_replicas_to_autoscaler(ctx, &namespace, observed).await?;
            }
        }
        // The applied object comes back with its status: no second read.
        deployment = Some(
            server_side_apply(
                ctx,
                &namespace,
                &build::build_deployment(platform, revision),
            )
            .await?,
        );
        if moves {
            let in_use = [
                desired.config_map.as_str(),
                revision.config_map.as_str(),
                running.as_ref().map_or("", |r| r.config_map.as_str()),
            ];
            prune_config_maps(platform, ctx, &namespace, &in_use).await?;
        }
    }
    server_side_apply(ctx, &namespace, &build::build_service(platform)).await?;
    // Optional children are removed only when the spec changed: a DELETE that finds nothing
    // on every reconcile would be load on the apiserver for nothing.
    let spec_changed = platform.status.as_ref().and_then(|s| s.observed_generation) != generation;
    match build::build_pdb(platform) {
        Some(pdb) => {
            server_side_apply(ctx, &namespace, &pdb).await?;
        }
        None if spec_changed => {
            delete_if_present::<PodDisruptionBudget>(ctx, &namespace, &platform.name_any()).await?
        }
        None => {}
    }
    match build::build_hpa(platform) {
        Some(hpa) => {
            server_side_apply(ctx, &namespace, &hpa).await?;
        }
        None if spec_changed => {
            delete_if_present::<HorizontalPodAutoscaler>(ctx, &namespace, &platform.name_any())
                .await?
        }
        None => {}
    }
    let spec_image = desired.image.as_str();
    let (service, rolled_out) = status::service_verdict(deployment.as_ref(), &desired);
    let ready = status::ready_verdict(
        &migration.verdict,
        &[&tables, &topics],
        &service,
        rolled_out,
        spec_image,
    );
    for verdict in [&migration.verdict, &tables, &topics, &service, &ready] {
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

/// Annotation that releases a platform whose `deletionPolicy: Delete` cleanup keeps failing,
/// leaving its tables and topics behind.
pub const ABANDON_ANNOTATION: &str = "platform.orders.dev/abandon-external";

/// Deletion: children go with their owner (garbage collection); external data follows the
/// deletion policy. With `Delete`, a failed call keeps the finalizer and is retried with
/// backoff, with a Warning; after `cleanup_timeout` since the deletion (or at once with
/// [`ABANDON_ANNOTATION`]) the platform is released anyway, and a Warning names what was left
/// behind: a namespace being deleted (which takes the credentials Secret with it) never hangs.
async fn cleanup(platform: &OrderPlatform, ctx: &Context) -> Result<Action, Error> {
    let note = match platform.spec.deletion_policy {
        DeletionPolicy::Retain => {
            "deletionPolicy Retain: DynamoDB tables and Kafka topics are kept".to_owned()
        }
        DeletionPolicy::Delete => {
            let (tables, topics) = external::provision(platform, ctx, Intent::Absent).await;
            let outcomes: Vec<_> = tables.into_iter().chain(topics).collect();
            let deleted: Vec<_> = outcomes.iter().flat_map(|o| o.applied.clone()).collect();
            let kept: Vec<_> = outcomes.iter().flat_map(|o| o.notes.clone()).collect();
            if let Some((reason, message)) = outcomes.iter().find_map(|o| o.error.clone()) {
                let failed: Vec<&str> = outcomes
                    .iter()
                    .filter(|o| o.error.is_some())
                    .map(|o| o.name.as_str())
                    .collect();
                match release(platform, ctx) {
                    None => {
                        if ctx.first_warning(platform, "Cleanup", reason) {
                            let note = format!(
                                "deleting {} failed ({reason}: {message}); retrying with backoff. After {} since the deletion, or at once with the annotation {ABANDON_ANNOTATION}=true, the platform is released and they are left behind",
                                failed.join(", "),
                                humantime::format_duration(ctx.cleanup_timeout),
                            );
                            publish(ctx, platform, EventType::Warning, "CleanupFailed", note).await;
                        }
                        return Err(Error::Cleanup { reason, message });
                    }
                    Some(why) => {
                        let note = format!(
                            "released {why}: left behind {} ({reason}: {message}); delete them by hand",
                            failed.join(", ")
                        );
                        publish(ctx, platform, EventType::Warning, "CleanupAbandoned", note).await;
                        ctx.forget(platform);
                        return Ok(Action::await_change());
                    }
                }
            }
            let mut note = if deleted.is_empty() {
                "deletionPolicy Delete: no tables or topics were deleted".to_owned()
            } else {
                format!("deletionPolicy Delete: {}", deleted.join("; "))
            };
            if !kept.is_empty() {
                note.push_str("; ");
                note.push_str(&kept.join("; "));
            }
            note
        }
    };
    publish(ctx, platform, EventType::Normal, "Deleted", note).await;
    ctx.forget(platform);
    Ok(Action::await_change())
}

/// Why a failing cleanup may stop retrying, if it may: the annotation, or the time bound.
fn release(platform: &OrderPlatform, ctx: &Context) -> Option<String> {
    if platform
        .annotations()
        .get(ABANDON_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        return Some(format!("by the annotation {ABANDON_ANNOTATION}"));
    }
    let since = platform.metadata.deletion_timestamp.as_ref()?.0;
    let deleting_for = k8s_openapi::jiff::Timestamp::now().duration_since(since);
    let bound = k8s_openapi::jiff::SignedDuration::try_from(ctx.cleanup_timeout).ok()?;
    (deleting_for >= bound).then(|| {
        format!(
            "after {} of failed cleanup",
            humantime::format_duration(ctx.cleanup_timeout)
        )
    })
}

/// Server-side apply with the operator's field manager; `force` takes fields over from
/// whoever edited them by hand, so drift is corrected.
async fn server_side_apply<K>(ctx: &Context, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: <K as k8s_openapi::Resource>::KIND,
        name,
        source,
    })
}

async fn delete_if_present<K>(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Delete {
            what: format!("{} {name}", <K as k8s_openapi::Resource>::KIND),
            source,
        }),
    }
}

/// Deletes migration Jobs with their pods (a running one stops migrating).
async fn delete_jobs(ctx: &Context, namespace: &str, names: &[String]) -> Result<(), Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for name in names {
        match api.delete(name, &params).await {
            Ok(_) => tracing::info!(job = %name, "deleted a migration Job no longer wanted"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete {
                    what: format!("Job {name}"),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Deletes configuration ConfigMaps no revision uses, beyond the newest few; and the single
/// mutable `<name>-config` of operators before content-named ConfigMaps.
async fn prune_config_maps(
    platform: &OrderPlatform,
    ctx: &Context,
    namespace: &str,
    in_use: &[&str],
) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!(
        "{INSTANCE_LABEL}={},{COMPONENT_LABEL}={}",
        platform.name_any(),
        build::CONFIG_COMPONENT
    );
    let maps = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Observe {
            what: "configuration ConfigMaps".into(),
            source,
        })?
        .items;
    let mut stale = rollout::stale_config_maps(
        maps.iter().map(|m| {
            (
                m.metadata.name.as_deref().unwrap_or_default(),
                m.metadata.creation_timestamp.as_ref(),
            )
        }),
        in_use,
    );
    let legacy = format!("{}-config", platform.name_any());
    if !in_use.contains(&legacy.as_str()) {
        stale.push(legacy);
    }
    for name in stale {
        delete_if_present::<ConfigMap>(ctx, namespace, &name).await?;
    }
    Ok(())
}

/// Turning autoscaling on: the applied Deployment stops naming `replicas`, and a field no
/// manager owns any more is removed, which resets the Deployment to 1 pod until the HPA acts.
/// So another field manager first takes the current count over (the handover the
/// server-side apply documentation describes), and the HPA's own updates take it from there.
async fn hand_replicas_to_autoscaler(
    ctx: &Context,
    namespace: &str,
    deployment: &Deployment,
) -> Result<(), Error> {
    let name = deployment.name_any();
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(
        &name,
        &PatchParams::apply(HANDOVER_FIELD_MANAGER),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "Deployment",
        name: name.clone(),
        source,
    })?;
    tracing::info!(deployment = %name, replicas, "handed the replica count over to the autoscaler");
    Ok(())
}

async fn patch_status(
    platform: &OrderPlatform,
    ctx: &Context,
    status: &OrderPlatformStatus,
) -> Result<(), Error> {
    let api: Api<OrderPlatform> = Api::namespaced(
        ctx.client.clone(),
        &platform.namespace().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "apiVersion": OrderPlatform::api_version(&()),
        "kind": OrderPlatform::kind(&()),
        "status": status,
    });
    api.patch_status(
        &platform.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(Error::Status)
}

/// Publishes an Event; a failure to record one is logged, never fails the reconcile.
async fn publish(
    ctx: &Context,
    platform: &OrderPlatform,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx
        .recorder
        .publish(&event, &platform.object_ref(&()))
        .await
    {
        tracing::warn!(error = %super::error_chain(&error), reason, "publishing an Event failed");
    }
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
