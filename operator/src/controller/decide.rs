//! The decide phase: from the spec and what was observed, every object this reconcile applies
//! or deletes. Pure: no client, so the whole plan is unit-tested without a cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;

use super::build::{self, Revision, FIELD_MANAGER};
use super::rollout::{self, MigrationDecision};
use crate::crd::OrderPlatform;

/// What exists now.
pub struct Observed {
    pub deployment: Option<Deployment>,
    /// This platform's migration Jobs.
    pub jobs: Vec<Job>,
}

/// One reconcile's changes, in the order they are made.
pub struct Changes {
    /// The spec's configuration (content-named, immutable: applying it again changes nothing).
    pub config_map: ConfigMap,
    /// The revision the spec asks for, and its migration key.
    pub desired: Revision,
    pub key: String,
    pub migration: MigrationDecision,
    /// The migration Job to create, when the desired revision needs one and it does not exist.
    pub migration_job: Option<Job>,
    /// Migration Jobs to delete: superseded while running, or old.
    pub stale_jobs: Vec<String>,
    /// Before the Deployment is applied without `replicas`, hand them to the autoscaler.
    pub hand_over_replicas: bool,
    pub deployment: Option<Deployment>,
    /// The revision the Deployment moves to, when it changes in this reconcile.
    pub moves_to: Option<Revision>,
    /// ConfigMaps a revision still uses (the desired, the deployed and the one it leaves).
    pub config_maps_in_use: Vec<String>,
    pub service: Service,
    pub pdb: Option<PodDisruptionBudget>,
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Delete a PDB or HPA the spec no longer asks for (only when the spec changed: a DELETE
    /// that finds nothing on every reconcile would be load on the apiserver for nothing).
    pub remove_dropped: bool,
}

/// Decides one reconcile. `external_ready`: the tables and topics are in shape;
/// `migrated`: the migration key the status records as succeeded.
pub fn decide(
    platform: &OrderPlatform,
    observed: &Observed,
    external_ready: bool,
    migrated: Option<&str>,
) -> Changes {
    let config_map = build::build_config_map(platform);
    let desired = Revision::desired(platform, config_map.name_any());
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
            migrated,
            running.as_ref(),
            job_outcome.as_ref(),
        ),
        external_ready,
        running.as_ref(),
    );
    let migration_job = migration
        .start_job
        .then(|| build::build_migration_job(platform, &desired, &key));
    let hand_over_replicas = migration.deploy.is_some()
        && platform.spec.autoscaling.is_some()
        && observed
            .deployment
            .as_ref()
            .is_some_and(|d| rollout::replicas_owned_by(d, FIELD_MANAGER));
    let moves_to = migration
        .deploy
        .clone()
        .filter(|revision| running.as_ref() != Some(revision));
    let config_maps_in_use = [Some(&desired), migration.deploy.as_ref(), running.as_ref()]
        .into_iter()
        .flatten()
        .map(|r| r.config_map.clone())
        .collect();
    let generation = platform.metadata.generation;
    Changes {
        stale_jobs: rollout::stale_jobs(&observed.jobs, &job_name),
        deployment: migration
            .deploy
            .as_ref()
            .map(|revision| build::build_deployment(platform, revision)),
        service: build::build_service(platform),
        pdb: build::build_pdb(platform),
        hpa: build::build_hpa(platform),
        remove_dropped: platform.status.as_ref().and_then(|s| s.observed_generation) != generation,
        config_map,
        desired,
        key,
        migration,
        migration_job,
        hand_over_replicas,
        moves_to,
        config_maps_in_use,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    use super::*;

    fn nothing() -> Observed {
        Observed {
            deployment: None,
            jobs: Vec::new(),
        }
    }

    fn completed(job: Job) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..job
        }
    }

    #[test]
    fn a_first_install_starts_the_migration_and_creates_no_deployment() {
        let changes = decide(&OrderPlatform::test(), &nothing(), true, None);
        let job = changes.migration_job.expect("a migration Job");
        assert_eq!(
            job.metadata.name,
            Some(build::spec_migration_job_name(&OrderPlatform::test()))
        );
        assert!(changes.deployment.is_none() && changes.moves_to.is_none());
        assert!(!changes.hand_over_replicas);
        assert!(changes.pdb.is_none() && changes.hpa.is_none());
    }

    #[test]
    fn a_migrated_new_image_moves_the_deployment_and_keeps_the_configmaps_in_use() {
        let old = OrderPlatform::test();
        let first = decide(&old, &nothing(), true, None);
        let running = build::build_deployment(&old, &first.desired);
        let new = OrderPlatform::test().with_image("img:2");
        let job = completed(decide(&new, &nothing(), true, None).migration_job.unwrap());
        let observed = Observed {
            deployment: Some(running),
            jobs: vec![job],
        };
        let changes = decide(&new, &observed, true, None);
        assert!(changes.migration_job.is_none(), "it ran");
        assert_eq!(
            changes.moves_to.as_ref().map(|r| r.image.as_str()),
            Some("img:2")
        );
        assert!(changes
            .config_maps_in_use
            .contains(&first.desired.config_map));

        // Tables or topics not in shape: the old revision stays, whole.
        let held = decide(&new, &observed, false, None);
        assert!(held.moves_to.is_none());
        assert_eq!(
            held.deployment.as_ref().and_then(Revision::running),
            Some(first.desired)
        );
    }

    #[test]
    fn turning_autoscaling_on_hands_our_replicas_over_first() {
        let platform = OrderPlatform::test();
        let migrated = decide(&platform, &nothing(), true, None)
            .desired
            .migration_key(&platform);
        let mut running = build::build_deployment(
            &platform,
            &decide(&platform, &nothing(), true, None).desired,
        );
        running.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}}))),
            ..Default::default()
        }]);
        let observed = Observed {
            deployment: Some(running),
            jobs: Vec::new(),
        };
        let fixed = decide(&platform, &observed, true, Some(&migrated));
        assert!(
            !fixed.hand_over_replicas,
            "autoscaling off: the replicas stay ours"
        );
        let scaled = OrderPlatform::test().with_autoscaling(2, 4);
        let changes = decide(&scaled, &observed, true, Some(&migrated));
        assert!(changes.hand_over_replicas);
        assert!(changes.hpa.is_some());
        assert_eq!(changes.deployment.unwrap().spec.unwrap().replicas, None);
    }

    #[test]
    fn dropped_optional_children_are_removed_only_after_a_spec_change() {
        let mut platform = OrderPlatform::test();
        assert!(decide(&platform, &nothing(), true, None).remove_dropped);
        platform.status = Some(crate::crd::OrderPlatformStatus {
            observed_generation: platform.metadata.generation,
            ..Default::default()
        });
        assert!(!decide(&platform, &nothing(), true, None).remove_dropped);
    }
}
