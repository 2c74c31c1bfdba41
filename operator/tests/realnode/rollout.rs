//! Rollouts on real pods, each under a steady load through the Service with every failed call
//! counted (`load.rs`): a deleted pod and a killed process, an upgrade, a crash-looping image,
//! a failing migration, and PostgreSQL hanging for 30 s. Each case prints its calls, failures
//! and durations.
//!
//! The images are `scripts/images.sh variants`: order-service with one config change each
//! (`-next` works, `-crashloop` exits at once in `serve`, `-badmigrate` exits in `migrate`).

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use order_operator::crd::OrderPlatform;
use serde_json::json;
use tokio::process::Command;
use tokio::sync::MutexGuard;

use crate::load::{Load, Tally};
use crate::node::{is_ready, job_pods, terminated, REAL_NODE_TIMEOUT};
use crate::release::{Release, ONE_AT_A_TIME, PLATFORM};
use crate::support::{connect, poll_until, TestNamespace};

const CLIENTS: usize = 2;
const REPLICAS: i32 = 2;

fn image(variant: &str) -> String {
    let base = format!("localhost/order-service:{}", env!("CARGO_PKG_VERSION"));
    if variant.is_empty() {
        base
    } else {
        format!("{base}-{variant}")
    }
}

/// A release with the example platform at two replicas, Ready, and the APIs a case uses.
struct Case {
    _turn: MutexGuard<'static, ()>,
    namespace: TestNamespace,
    release: Release,
    platforms: Api<OrderPlatform>,
    deployments: Api<Deployment>,
    pods: Api<Pod>,
}

impl Case {
    async fn start() -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let client = connect().await;
        let namespace = TestNamespace::create(&client).await;
        let release = Release::install(&namespace).await;
        let case = Self {
            _turn: turn,
            platforms: namespace.api(),
            deployments: namespace.api(),
            pods: namespace.api(),
            namespace,
            release,
        };
        case.release
            .patch_platform(&case.platforms, json!({"replicas": REPLICAS}))
            .await;
        case.ready().await;
        case
    }

    async fn ready(&self) -> OrderPlatform {
        self.release
            .ready(&self.platforms, &self.deployments, REPLICAS)
            .await
    }

    fn load(&self) -> Load {
        Load::start(&self.release.base_url, CLIENTS)
    }

    async fn set_image(&self, image: &str) {
        self.release
            .patch_platform(&self.platforms, json!({ "image": image }))
            .await;
    }

    async fn condition(&self, type_: &str) -> Option<(String, String, String)> {
        let platform = self.platforms.get(PLATFORM).await.ok()?;
        let status = platform.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status, c.reason, c.message))
    }

    /// Waits until condition `type_` has `reason`; returns its message.
    async fn reason(&self, type_: &str, reason: &str) -> String {
        poll_until(
            REAL_NODE_TIMEOUT,
            &format!("{type_} has reason {reason}"),
            || async {
                let (_, r, message) = self.condition(type_).await?;
                (r == reason).then_some(message)
            },
        )
        .await
    }

    async fn warnings(&self, reason: &str) -> Vec<Event> {
        let events: Api<Event> = self.namespace.api();
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| {
                e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason)
            })
            .collect()
    }

    /// The image the platform's pods run, per its status.
    async fn current_image(&self) -> Option<String> {
        self.platforms
            .get(PLATFORM)
            .await
            .ok()?
            .status?
            .current_image
    }

    /// The migration Job that runs `image`.
    async fn migration_job(&self, image: &str) -> Job {
        let jobs: Api<Job> = self.namespace.api();
        jobs.list(&ListParams::default())
            .await
            .expect("jobs")
            .items
            .into_iter()
            .find(|j| {
                j.spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .is_some_and(|p| p.containers[0].image.as_deref() == Some(image))
            })
            .unwrap_or_else(|| panic!("no migration Job runs {image}"))
    }

    /// `scripts/node.sh ARGS` (the node's containers, seen from the host).
    async fn node(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/node.sh");
        let out = Command::new(script)
            .args(args)
            .output()
            .await
            .expect("scripts/node.sh");
        assert!(
            out.status.success(),
            "scripts/node.sh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

/// A graceful change costs no call, and (almost) no retried connection: on the real node,
/// starved by a test run on two cores, kube-proxy has been seen to stop routing to a pod only
/// after its preStop pause, so a rare new connection met the closing listener and was retried.
/// One in a hundred is the allowance; the usual count is 0.
fn assert_few_retries(case: &str, tally: &Tally) {
    assert!(
        tally.retried * 100 <= tally.sent,
        "[{case}] more than 1 % of the calls needed a retried connection: {tally:?}"
    );
}

fn assert_no_failure(case: &str, tally: &Tally) {
    tally.print(case);
    assert!(
        tally.sent > 20,
        "[{case}] too little load to judge: {tally:?}"
    );
    assert_eq!(
        tally.failed, 0,
        "[{case}] failed calls: {:?}",
        tally.failures
    );
}

#[tokio::test]
async fn a_deleted_pod_and_a_killed_process_are_replaced_without_a_failed_request() {
    let case = Case::start().await;
    let load = case.load();

    // A pod deleted: preStop, drain, a replacement; the other pod serves throughout.
    let started = Instant::now();
    let victim = case.release.service_pods(&case.pods).await[0].name_any();
    case.pods
        .delete(&victim, &DeleteParams::default())
        .await
        .expect("delete a service pod");
    poll_until(
        REAL_NODE_TIMEOUT,
        "the deleted pod is gone and replaced",
        || async {
            let pods = case.release.service_pods(&case.pods).await;
            let ready = pods.iter().filter(|p| is_ready(p)).count();
            (!pods.iter().any(|p| p.name_any() == victim) && ready == REPLICAS as usize)
                .then_some(())
        },
    )
    .await;
    eprintln!("[deleted pod] replaced in {:.1?}", started.elapsed());
    // A graceful deletion (preStop, drain) costs no call even a retry.
    let deletion = load.tally();
    deletion.print("deleted pod");
    assert_eq!(deletion.failed, 0, "{deletion:?}");
    assert_few_retries("deleted pod", &deletion);

    // The process killed inside its container: kubelet restarts it in the same pod.
    let started = Instant::now();
    let pod = case.release.service_pods(&case.pods).await[0].clone();
    let (name, before) = (pod.name_any(), restarts(&pod));
    let pid = case.node(&["pid", &case.release.namespace, &name]).await;
    let killed = Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success(), "kill -KILL {pid}");
    poll_until(
        REAL_NODE_TIMEOUT,
        "the killed container is restarted and ready",
        || async {
            let pod = case.pods.get(&name).await.ok()?;
            (restarts(&pod) > before && is_ready(&pod)).then_some(())
        },
    )
    .await;
    eprintln!(
        "[killed process] restarted and ready in {:.1?}",
        started.elapsed()
    );

    let tally = load.stop().await;
    assert_no_failure("a deleted pod and a killed process", &tally);
}

#[tokio::test]
async fn an_upgrade_migrates_first_then_rolls_with_zero_failed_requests() {
    let case = Case::start().await;
    let next = image("next");
    let load = case.load();
    let started = Instant::now();
    case.set_image(&next).await;
    poll_until(
        REAL_NODE_TIMEOUT,
        "the platform runs the new image",
        || async { (case.current_image().await.as_deref() == Some(next.as_str())).then_some(()) },
    )
    .await;
    case.ready().await;
    let rollout = started.elapsed();
    let tally = load.stop().await;
    eprintln!("[upgrade] {} rolled out in {rollout:.1?}", next);
    assert_no_failure("upgrade", &tally);
    assert_few_retries("upgrade", &tally);

    // The migration of the new image had finished before its first pod was created: its
    // container's exit (the Job's own completionTime can be written later than the success the
    // operator acts on).
    let migration = case.migration_job(&next).await;
    let migrated = job_pods(&case.pods, &migration.name_any())
        .await
        .iter()
        .filter_map(|p| {
            terminated(p)
                .filter(|t| t.exit_code == 0)?
                .finished_at
                .clone()
        })
        .next()
        .expect("the migration container finished");
    let replica_sets: Api<ReplicaSet> = case.namespace.api();
    let new_pods_from = replica_sets
        .list(&ListParams::default())
        .await
        .expect("replica sets")
        .items
        .into_iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .is_some_and(|p| p.containers[0].image.as_deref() == Some(next.as_str()))
        })
        .and_then(|rs| rs.metadata.creation_timestamp)
        .expect("the new ReplicaSet");
    assert!(
        migrated.0 <= new_pods_from.0,
        "the new pods ({:?}) came before the migration finished ({:?})",
        new_pods_from.0,
        migrated.0
    );
}

#[tokio::test]
async fn a_crash_looping_image_keeps_the_old_pods_serving_and_reports_a_stuck_rollout() {
    let case = Case::start().await;
    let good = image("");
    let broken = image("crashloop");
    case.release
        .patch_platform(&case.platforms, json!({"progressDeadlineSeconds": 20}))
        .await;
    case.ready().await;
    let load = case.load();
    let started = Instant::now();
    case.set_image(&broken).await;
    // Its migration succeeds (`migrate` is fine); its pods never get ready.
    let message = case.reason("Ready", "RolloutStuck").await;
    eprintln!(
        "[crash loop] RolloutStuck after {:.1?}: {message}",
        started.elapsed()
    );
    assert!(message.contains(&broken), "{message}");
    // The Deployment names the new image; the pods that serve are all still the old one's.
    let serving: Vec<String> = case
        .release
        .service_pods(&case.pods)
        .await
        .iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
        .collect();
    assert_eq!(serving, vec![good.clone(); REPLICAS as usize]);
    let warned = poll_until(
        REAL_NODE_TIMEOUT,
        "a RolloutStuck Warning Event",
        || async {
            let w = case.warnings("RolloutStuck").await;
            (!w.is_empty()).then_some(w)
        },
    )
    .await;
    assert_eq!(warned.len(), 1, "one Warning per stuck rollout");
    let (available, _, _) = case.condition("ServiceAvailable").await.expect("condition");
    assert_eq!(available, "True", "the old pods keep the service available");

    // Rolling the spec back recovers.
    let back = Instant::now();
    case.set_image(&good).await;
    case.ready().await;
    eprintln!(
        "[crash loop] rolled back to Ready in {:.1?}",
        back.elapsed()
    );
    let tally = load.stop().await;
    assert_no_failure("crash-looping image", &tally);
}

#[tokio::test]
async fn a_failing_migration_keeps_the_old_version_serving_and_says_how_to_retry() {
    let case = Case::start().await;
    let good = image("");
    let broken = image("badmigrate");
    let load = case.load();
    let started = Instant::now();
    case.set_image(&broken).await;
    let (status, reason, message) = poll_until(
        REAL_NODE_TIMEOUT,
        "MigrationsSucceeded is False",
        || async {
            let c = case.condition("MigrationsSucceeded").await?;
            (c.0 == "False").then_some(c)
        },
    )
    .await;
    eprintln!(
        "[failing migration] {status}/{reason} after {:.1?}: {message}",
        started.elapsed()
    );
    assert!(
        message.contains("platform.orders.dev/retry-migrations"),
        "says how to retry: {message}"
    );
    // The Job's real container exited non-zero on the node.
    let job = case.migration_job(&broken).await;
    let exit = job_pods(&case.pods, &job.name_any())
        .await
        .iter()
        .filter_map(terminated)
        .map(|t| t.exit_code)
        .next()
        .expect("a terminated migration container");
    assert_ne!(exit, 0, "the migration container's exit code");
    // Some calls more while it stays failed, then the old version is still the one serving.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(case.current_image().await.as_deref(), Some(good.as_str()));
    let tally = load.stop().await;
    assert_no_failure("failing migration", &tally);
}

#[tokio::test]
async fn postgres_hanging_for_30_s_makes_pods_unready_not_restarted_and_it_recovers_alone() {
    let case = Case::start().await;
    let before: Vec<(String, i32)> = case
        .release
        .service_pods(&case.pods)
        .await
        .iter()
        .map(|p| (p.name_any(), restarts(p)))
        .collect();
    let postgres = crate::node::pods(&case.pods, &format!("{}-postgres-", case.release.name))
        .await
        .first()
        .expect("the dev stack's PostgreSQL pod")
        .name_any();
    let load = case.load();
    let frozen = Instant::now();
    case.node(&["freeze", &case.release.namespace, &postgres])
        .await;
    poll_until(
        REAL_NODE_TIMEOUT,
        "the service pods are unready",
        || async {
            let pods = case.release.service_pods(&case.pods).await;
            pods.iter().all(|p| !is_ready(p)).then_some(())
        },
    )
    .await;
    let unready_after = frozen.elapsed();
    let during = load.tally();
    // Hold the outage for 30 s in all, then let PostgreSQL go on.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(frozen.elapsed())).await;
    case.node(&["thaw", &case.release.namespace, &postgres])
        .await;
    let thawed = Instant::now();
    case.ready().await;
    let recovered = thawed.elapsed();
    // Calls after the recovery all succeed.
    let after_recovery = load.tally();
    poll_until(
        REAL_NODE_TIMEOUT,
        "more calls after the recovery",
        || async { (load.tally().sent > after_recovery.sent + 20).then_some(()) },
    )
    .await;
    let tally = load.stop().await;
    tally.print("PostgreSQL hung 30 s");
    eprintln!(
        "[PostgreSQL hung] pods unready after {unready_after:.1?}, Ready again {recovered:.1?} \
         after the thaw"
    );
    assert_eq!(
        tally.failed,
        after_recovery.failed,
        "calls failed after the recovery: {:?}",
        &tally.failures[after_recovery.failures.len()..]
    );
    // While it hung: each failure a 503 problem+json (database-unavailable), or a refused
    // connection once no pod was ready; none hung until the client gave up.
    assert!(during.failed > 0, "the outage was not seen: {during:?}");
    for failure in &tally.failures {
        let fast_503 = failure.starts_with("503 Service Unavailable: application/problem+json")
            && failure.contains("database-unavailable");
        let refused =
            failure.contains("ConnectionRefused") || failure.contains("Connection refused");
        assert!(fast_503 || refused, "unexpected failure: {failure}");
    }
    // Not restarted: liveness does not depend on the database.
    for (name, restarts_before) in before {
        let pod = case.pods.get(&name).await.expect("the same pod");
        assert_eq!(restarts(&pod), restarts_before, "pod {name} was restarted");
    }
}
