//! The rollout gate, decided from what was observed. Pure: no client.
//!
//! The Deployment moves to the spec's [`Revision`] (image, configuration, database) only once
//! that revision's migrations succeeded and its tables and topics are in shape; until then it
//! keeps the whole revision it runs. Migration Jobs for revisions no longer wanted are deleted,
//! not left running against the live database.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::build::{Revision, RETRY_MIGRATIONS_ANNOTATION};
use super::status::{Truth, Verdict, MIGRATIONS_SUCCEEDED};

/// Finished migration Jobs kept per platform (the newest), for `kubectl logs` after the fact;
/// the same number of unused configuration ConfigMaps is kept for `kubectl rollout undo`.
pub const KEEP: usize = 3;

/// How a migration Job ended, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Succeeded,
    Failed { reason: String, message: String },
}

/// Reads a Job's terminal conditions.
pub fn job_outcome(job: &Job) -> JobOutcome {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let holds = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if holds("Complete").is_some() {
        return JobOutcome::Succeeded;
    }
    match holds("Failed") {
        Some(failed) => JobOutcome::Failed {
            reason: failed.reason.clone().unwrap_or_else(|| "Failed".into()),
            message: failed.message.clone().unwrap_or_default(),
        },
        None => JobOutcome::Running,
    }
}

/// What the migration step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationDecision {
    /// Create the Job for the spec's revision (it does not exist yet).
    pub start_job: bool,
    /// The revision the Deployment should run; `None`: no Deployment yet.
    pub deploy: Option<Revision>,
    /// The migration key known to have succeeded, after this step.
    pub migrated: Option<String>,
    pub verdict: Verdict,
}

/// The gate's first half: the spec's revision (`desired`, whose migration key is `key`) is
/// deployed once its migrations succeeded; until then the Deployment keeps `running`.
pub fn decide_migration(
    desired: &Revision,
    key: &str,
    enabled: bool,
    migrated: Option<&str>,
    running: Option<&Revision>,
    job: Option<&JobOutcome>,
) -> MigrationDecision {
    let image = &desired.image;
    let done = |reason: &'static str, message: String| MigrationDecision {
        start_job: false,
        deploy: Some(desired.clone()),
        migrated: Some(key.to_owned()),
        verdict: Verdict::new(MIGRATIONS_SUCCEEDED, Truth::True, reason, message),
    };
    if !enabled {
        return MigrationDecision {
            migrated: migrated.map(str::to_owned),
            ..done("Disabled", "migrations are disabled in the spec".into())
        };
    }
    let succeeded = || {
        format!(
            "migrations for {image} against Secret {} succeeded",
            desired.database.name
        )
    };
    if migrated == Some(key) {
        return done("Succeeded", succeeded());
    }
    let hold = |start_job: bool, verdict: Verdict| MigrationDecision {
        start_job,
        deploy: running.cloned(),
        migrated: migrated.map(str::to_owned),
        verdict,
    };
    let unknown =
        |reason, message| Verdict::new(MIGRATIONS_SUCCEEDED, Truth::Unknown, reason, message);
    let keeps = running.map_or("no image".to_owned(), |r| r.image.clone());
    match job {
        None => hold(
            true,
            unknown(
                "Starting",
                format!(
                    "starting the migration Job for {image} against Secret {}",
                    desired.database.name
                ),
            ),
        ),
        Some(JobOutcome::Running) => hold(
            false,
            unknown("Running", format!("migrations for {image} are running")),
        ),
        Some(JobOutcome::Succeeded) => done("Succeeded", succeeded()),
        Some(JobOutcome::Failed { reason, message }) => hold(
            false,
            Verdict::new(
                MIGRATIONS_SUCCEEDED,
                Truth::False,
                job_reason(reason),
                format!(
                    "the migration Job for {image} failed ({reason}: {message}); the Deployment keeps {keeps}. Fix the cause, then retry with a new value of the annotation {RETRY_MIGRATIONS_ANNOTATION} (or change the image)"
                ),
            ),
        ),
    }
}

/// Job failure reasons we pass through as stable condition reasons.
fn job_reason(reason: &str) -> &'static str {
    match reason {
        "BackoffLimitExceeded" => "BackoffLimitExceeded",
        "DeadlineExceeded" => "DeadlineExceeded",
        _ => "JobFailed",
    }
}

/// The gate's second half: a new revision moves only when the tables and topics it needs
/// are in shape; otherwise the Deployment keeps the revision it runs.
pub fn gate_on_external(
    mut decision: MigrationDecision,
    external_ready: bool,
    running: Option<&Revision>,
) -> MigrationDecision {
    if !external_ready {
        decision.deploy = running.cloned();
    }
    decision
}

/// Migration Jobs to delete: any unfinished one that is not `current` (superseded or rolled
/// back: it must not go on migrating the live database), and finished ones beyond the
/// [`KEEP`] newest. `current` is never deleted.
pub fn stale_jobs(jobs: &[Job], current: &str) -> Vec<String> {
    let mut live: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by_key(|j| std::cmp::Reverse(created(j)));
    live.iter()
        .enumerate()
        .filter(|(_, j)| j.name_any() != current)
        .filter(|(rank, j)| job_outcome(j) == JobOutcome::Running || *rank >= KEEP)
        .map(|(_, j)| j.name_any())
        .collect()
}

/// Configuration ConfigMaps to delete: all but the ones named in `in_use` and the [`KEEP`]
/// newest others.
pub fn stale_config_maps<'a>(
    maps: impl IntoIterator<Item = (&'a str, Option<&'a Time>)>,
    in_use: &[&str],
) -> Vec<String> {
    let mut unused: Vec<_> = maps
        .into_iter()
        .filter(|(name, _)| !in_use.contains(name))
        .collect();
    unused.sort_by_key(|(_, created)| std::cmp::Reverse(created.map(|t| t.0)));
    unused
        .into_iter()
        .skip(KEEP)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Whether `manager`'s last apply set the Deployment's `replicas` (its managed fields say so).
pub fn replicas_owned_by(deployment: &Deployment, manager: &str) -> bool {
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.manager.as_deref() == Some(manager) && m.operation.as_deref() == Some("Apply")
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .any(|fields| fields.0.pointer("/f:spec/f:replicas").is_some())
}

fn created(job: &Job) -> Option<k8s_openapi::jiff::Timestamp> {
    job.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::JobStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::crd::SecretKeyRef;
    use k8s_openapi::api::batch::v1::JobCondition;

    fn revision(image: &str, config: &str, database: &str) -> Revision {
        Revision {
            image: image.into(),
            config_map: config.into(),
            database: SecretKeyRef {
                name: database.into(),
                key: "DATABASE_URL".into(),
            },
        }
    }

    #[test]
    fn a_new_revision_waits_for_its_migration_job_and_the_old_one_is_kept_whole() {
        let old = revision("img:1", "cfg-a", "db");
        let new = revision("img:2", "cfg-b", "db");
        let d = decide_migration(&new, "k2", true, Some("k1"), Some(&old), None);
        assert!(d.start_job);
        assert_eq!(
            d.deploy.as_ref(),
            Some(&old),
            "old image with its old config"
        );
        assert_eq!(d.verdict.status, Truth::Unknown);
        assert_eq!(d.migrated.as_deref(), Some("k1"));

        let d = decide_migration(
            &new,
            "k2",
            true,
            Some("k1"),
            Some(&old),
            Some(&JobOutcome::Running),
        );
        assert!(!d.start_job);
        assert_eq!(d.deploy.as_ref(), Some(&old));
        assert_eq!(d.verdict.reason, "Running");

        let d = decide_migration(
            &new,
            "k2",
            true,
            Some("k1"),
            Some(&old),
            Some(&JobOutcome::Succeeded),
        );
        assert_eq!(d.deploy.as_ref(), Some(&new), "moves once migrated");
        assert_eq!(d.migrated.as_deref(), Some("k2"));
        assert_eq!(d.verdict.status, Truth::True);
    }

    #[test]
    fn a_failed_migration_keeps_the_old_revision_and_says_how_to_retry() {
        let old = revision("img:1", "cfg-a", "db");
        let new = revision("img:2", "cfg-b", "db-2");
        let failed = JobOutcome::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        };
        let d = decide_migration(&new, "k2", true, Some("k1"), Some(&old), Some(&failed));
        assert_eq!(d.deploy.as_ref(), Some(&old));
        assert!(!d.start_job);
        assert_eq!(d.verdict.status, Truth::False);
        assert_eq!(d.verdict.reason, "BackoffLimitExceeded");
        assert!(d.verdict.message.contains("keeps img:1"));
        assert!(d.verdict.message.contains(RETRY_MIGRATIONS_ANNOTATION));
        let other = JobOutcome::Failed {
            reason: "PodFailurePolicy".into(),
            message: String::new(),
        };
        let d = decide_migration(&new, "k2", true, None, None, Some(&other));
        assert_eq!(
            (d.verdict.reason, d.deploy),
            ("JobFailed", None),
            "first install: nothing"
        );
        let deadline = JobOutcome::Failed {
            reason: "DeadlineExceeded".into(),
            message: String::new(),
        };
        let d = decide_migration(&new, "k2", true, None, None, Some(&deadline));
        assert_eq!(d.verdict.reason, "DeadlineExceeded");
    }

    #[test]
    fn a_migrated_key_or_disabled_migrations_deploy_the_spec_at_once() {
        let old = revision("img:1", "cfg-a", "db");
        let config_only = revision("img:1", "cfg-b", "db");
        let d = decide_migration(&config_only, "k1", true, Some("k1"), Some(&old), None);
        assert!(!d.start_job);
        assert_eq!(
            d.deploy.as_ref(),
            Some(&config_only),
            "a new config alone rolls at once"
        );
        assert_eq!(d.verdict.reason, "Succeeded");

        let d = decide_migration(&config_only, "k9", false, Some("k1"), Some(&old), None);
        assert!(!d.start_job);
        assert_eq!(d.deploy.as_ref(), Some(&config_only));
        assert_eq!(d.verdict.reason, "Disabled");
        assert_eq!(d.migrated.as_deref(), Some("k1"), "nothing was migrated");
    }

    #[test]
    fn a_new_revision_waits_for_tables_and_topics() {
        let old = revision("img:1", "cfg-a", "db");
        let new = revision("img:2", "cfg-b", "db");
        let decision = decide_migration(&new, "k2", true, Some("k2"), Some(&old), None);
        let held = gate_on_external(decision.clone(), false, Some(&old));
        assert_eq!(held.deploy.as_ref(), Some(&old));
        assert_eq!(gate_on_external(decision.clone(), false, None).deploy, None);
        assert_eq!(
            gate_on_external(decision, true, Some(&old)).deploy.as_ref(),
            Some(&new)
        );
    }

    fn job(name: &str, minute: i64, outcome: Option<&str>, deleting: bool) -> Job {
        let at = |m: i64| Time(k8s_openapi::jiff::Timestamp::from_second(m * 60).unwrap());
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(at(minute)),
                deletion_timestamp: deleting.then(|| at(minute + 1)),
                ..Default::default()
            },
            status: Some(JobStatus {
                conditions: outcome.map(|type_| {
                    vec![JobCondition {
                        type_: type_.into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_reads_as_running_until_a_terminal_condition_holds() {
        assert_eq!(job_outcome(&job("m", 1, None, false)), JobOutcome::Running);
        assert_eq!(
            job_outcome(&job("m", 1, Some("Complete"), false)),
            JobOutcome::Succeeded
        );
        let failed = job_outcome(&job("m", 1, Some("Failed"), false));
        assert!(matches!(failed, JobOutcome::Failed { .. }), "{failed:?}");
        let mut pending = job("m", 1, Some("Complete"), false);
        pending
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        assert_eq!(job_outcome(&pending), JobOutcome::Running, "not yet True");
    }

    #[test]
    fn superseded_jobs_are_deleted_while_running_and_finished_ones_kept_to_three() {
        let jobs = [
            job("m1", 1, Some("Complete"), false),
            job("m2", 2, Some("Failed"), false),
            job("m3", 3, Some("Complete"), false),
            job("m4", 4, None, false),
            job("m5", 5, Some("Complete"), false),
            job("m6", 6, None, true),
        ];
        let mut stale = stale_jobs(&jobs, "m5");
        stale.sort();
        // m4 runs but is superseded; m1 and m2 are beyond the newest three (m5, m4, m3);
        // m6 is already going.
        assert_eq!(stale, ["m1", "m2", "m4"]);
        assert_eq!(
            stale_jobs(&jobs[3..4], "m4"),
            Vec::<String>::new(),
            "current runs on"
        );
        assert_eq!(
            stale_jobs(&jobs[..1], "m9"),
            Vec::<String>::new(),
            "finished and newest"
        );
    }

    #[test]
    fn unused_config_maps_beyond_three_are_deleted_and_used_ones_never() {
        let at = |m: i64| Time(k8s_openapi::jiff::Timestamp::from_second(m * 60).unwrap());
        let times: Vec<Time> = (0..6).map(at).collect();
        let maps = [
            ("c0", Some(&times[0])),
            ("c1", Some(&times[1])),
            ("c2", Some(&times[2])),
            ("c3", Some(&times[3])),
            ("c4", Some(&times[4])),
            ("c5", Some(&times[5])),
        ];
        let mut stale = stale_config_maps(maps, &["c0", "c5"]);
        stale.sort();
        assert_eq!(stale, ["c1"], "keeps c0 and c5 in use, and c4, c3, c2");
        assert!(stale_config_maps(maps[..4].iter().copied(), &[]).len() == 1);
    }

    #[test]
    fn replicas_are_ours_only_when_our_last_apply_set_them() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let entry =
            |manager: &str, operation: &str, fields: serde_json::Value| ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some(operation.into()),
                fields_v1: Some(FieldsV1(fields)),
                ..Default::default()
            };
        let with = |entries: Vec<ManagedFieldsEntry>| Deployment {
            metadata: ObjectMeta {
                managed_fields: Some(entries),
                ..Default::default()
            },
            ..Default::default()
        };
        let replicas = serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {}}});
        let template = serde_json::json!({"f:spec": {"f:template": {}}});
        assert!(replicas_owned_by(
            &with(vec![entry("op", "Apply", replicas.clone())]),
            "op"
        ));
        assert!(!replicas_owned_by(
            &with(vec![entry("op", "Apply", template)]),
            "op"
        ));
        assert!(!replicas_owned_by(
            &with(vec![entry(
                "kube-controller-manager",
                "Update",
                replicas.clone()
            )]),
            "op"
        ));
        assert!(!replicas_owned_by(
            &with(vec![entry("op", "Update", replicas)]),
            "op"
        ));
        assert!(!replicas_owned_by(&Deployment::default(), "op"));
    }
}
