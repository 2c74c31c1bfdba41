//! The execute phase: makes the changes `decide` chose, through the apiserver, with their
//! Events. Every call here is idempotent (server-side apply, deletes that accept 404).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::build::{self, COMPONENT_LABEL, FIELD_MANAGER, INSTANCE_LABEL};
use super::context::Context;
use super::decide::Changes;
use super::error::Error;
use super::rollout;
use super::status::{self, Truth};
use crate::crd::{OrderPlatform, OrderPlatformStatus};

/// The field manager that holds `replicas` while autoscaling takes it over.
const HANDOVER_FIELD_MANAGER: &str = "order-operator-autoscaling-handover";

/// Makes the decided changes, with their Events, in order: configuration, migration Job,
/// Deployment, Service, PDB, HPA. Returns the applied Deployment (with its status).
pub(crate) async fn execute(
    platform: &OrderPlatform,
    ctx: &Context,
    namespace: &str,
    changes: &Changes,
) -> Result<Option<Deployment>, Error> {
    let desired = &changes.desired;
    server_side_apply(ctx, namespace, &changes.config_map).await?;
    if let Some(job) = &changes.migration_job {
        server_side_apply(ctx, namespace, job).await?;
        let note = format!(
            "running migrations for {} against Secret {}",
            desired.image, desired.database.name
        );
        publish(ctx, platform, EventType::Normal, "MigrationStarted", note).await;
    }
    delete_jobs(ctx, namespace, &changes.stale_jobs).await?;
    let verdict = &changes.migration.verdict;
    if verdict.status != Truth::False {
        ctx.clear_warning(platform, status::MIGRATIONS_SUCCEEDED);
    } else if ctx.first_warning(platform, status::MIGRATIONS_SUCCEEDED, verdict.reason) {
        let note = verdict.message.clone();
        publish(ctx, platform, EventType::Warning, verdict.reason, note).await;
    }

    let mut deployment = None;
    if let Some(wanted) = &changes.deployment {
        if let Some(revision) = &changes.moves_to {
            let note = format!(
                "the Deployment moves to {} with ConfigMap {} and Secret {}",
                revision.image, revision.config_map, revision.database.name
            );
            publish(ctx, platform, EventType::Normal, "RollingOut", note).await;
        }
        if changes.hand_over_replicas {
            hand_replicas_to_autoscaler(ctx, namespace, &platform.name_any()).await?;
        }
        // The applied object comes back with its status: no second read.
        deployment = Some(server_side_apply(ctx, namespace, wanted).await?);
        if changes.moves_to.is_some() {
            prune_config_maps(platform, ctx, namespace, &changes.config_maps_in_use).await?;
        }
    }
    server_side_apply(ctx, namespace, &changes.service).await?;
    let name = platform.name_any();
    match &changes.pdb {
        Some(pdb) => drop(server_side_apply(ctx, namespace, pdb).await?),
        None if changes.remove_dropped => {
            delete_if_present::<PodDisruptionBudget>(ctx, namespace, &name).await?;
        }
        None => {}
    }
    match &changes.hpa {
        Some(hpa) => drop(server_side_apply(ctx, namespace, hpa).await?),
        None if changes.remove_dropped => {
            delete_if_present::<HorizontalPodAutoscaler>(ctx, namespace, &name).await?;
        }
        None => {}
    }
    Ok(deployment)
}

/// Server-side apply with the operator's field manager; `force` takes fields over from
/// whoever edited them by hand, so drift is corrected.
pub(crate) async fn server_side_apply<K>(
    ctx: &Context,
    namespace: &str,
    object: &K,
) -> Result<K, Error>
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

/// Deletes an object with its dependents; `false` when it was already gone.
pub(crate) async fn delete_if_present<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<bool, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    // Background: dependents go too (a Job's pods; the API's default for Jobs orphans them).
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(source) => Err(Error::Delete {
            what: format!("{} {name}", <K as k8s_openapi::Resource>::KIND),
            source,
        }),
    }
}

/// Deletes migration Jobs with their pods (a running one stops migrating).
async fn delete_jobs(ctx: &Context, namespace: &str, names: &[String]) -> Result<(), Error> {
    for name in names {
        if delete_if_present::<Job>(ctx, namespace, name).await? {
            tracing::info!(job = %name, "deleted a migration Job no longer wanted");
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
    in_use: &[String],
) -> Result<(), Error> {
    let in_use: Vec<&str> = in_use.iter().map(String::as_str).collect();
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
        &in_use,
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
    name: &str,
) -> Result<(), Error> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let current = api.get(name).await.map_err(|source| Error::Observe {
        what: format!("Deployment {name}"),
        source,
    })?;
    let replicas = current.spec.and_then(|s| s.replicas).unwrap_or(1);
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(
        name,
        &PatchParams::apply(HANDOVER_FIELD_MANAGER),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "Deployment",
        name: name.to_owned(),
        source,
    })?;
    tracing::info!(deployment = %name, replicas, "handed the replica count over to the autoscaler");
    Ok(())
}

pub(crate) async fn patch_status(
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
pub(crate) async fn publish(
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
    // A Recorder folds Events with the same reason about one object into a series for a few
    // minutes and keeps the first note: "topics created" would become a second count of
    // "tables created", a second rollout a count of the first. The operator publishes only on
    // a change or a first refusal, so each Event stands on its own, from a fresh Recorder.
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(error) = recorder.publish(&event, &platform.object_ref(&())).await {
        tracing::warn!(error = %crate::provision::error_chain(&error), reason, "publishing an Event failed");
    }
}
