//! Conditions and phase, computed from what was observed. Pure: no client.
//!
//! Conventions: CamelCase reasons, a readable message, `lastTransitionTime` kept unless the
//! status flips, `observedGeneration` on every condition.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::build::Revision;
use super::flow::FlowReading;
use crate::crd::{DataFlowStatus, ExternalResourceStatus, SinkFlowStatus};
use crate::provision::Origin;

pub const MIGRATIONS_SUCCEEDED: &str = "MigrationsSucceeded";
pub const TABLES_READY: &str = "TablesReady";
pub const TOPICS_READY: &str = "TopicsReady";
pub const SERVICE_AVAILABLE: &str = "ServiceAvailable";
pub const READY: &str = "Ready";
pub const PAUSED: &str = "Paused";
pub const DATA_FLOWING: &str = "DataFlowing";

/// `True`, `False` or `Unknown`, as conditions spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// One condition to set: type, truth, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub status: Truth,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    pub fn new(
        type_: &'static str,
        status: Truth,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Sets a condition, keeping `lastTransitionTime` when the status does not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    verdict: &Verdict,
    generation: Option<i64>,
    now: &Time,
) {
    let status = verdict.status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == verdict.type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status.to_owned();
            existing.reason = verdict.reason.to_owned();
            existing.message = verdict.message.clone();
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: verdict.type_.to_owned(),
            status: status.to_owned(),
            reason: verdict.reason.to_owned(),
            message: verdict.message.clone(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The `Ready` reason of a rollout the Deployment gave up on.
pub const ROLLOUT_STUCK: &str = "RolloutStuck";

/// Where the Deployment's rollout to the desired revision stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica runs the desired revision, ready, and the Deployment is available.
    Done,
    /// New pods are on their way.
    InProgress,
    /// The Deployment reports `Progressing=False` with `ProgressDeadlineExceeded` (new pods
    /// that never became ready): its message. The old pods keep serving.
    Stuck(String),
}

/// Is the Deployment available, and how far is its rollout to the `desired` revision?
pub fn service_verdict(deployment: Option<&Deployment>, desired: &Revision) -> (Verdict, Rollout) {
    let Some(deployment) = deployment else {
        return (
            Verdict::new(
                SERVICE_AVAILABLE,
                Truth::False,
                "NotCreated",
                "the Deployment does not exist yet",
            ),
            Rollout::InProgress,
        );
    };
    let status = deployment.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let available = conditions
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True");
    let gave_up = conditions.iter().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let runs = Revision::running(deployment);
    let generation_seen = status.observed_generation >= deployment.metadata.generation;
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let rolled_out = runs.as_ref() == Some(desired)
        && generation_seen
        && status.updated_replicas.unwrap_or(0) >= replicas
        && status.ready_replicas.unwrap_or(0) >= replicas;
    let verdict = if available {
        Verdict::new(
            SERVICE_AVAILABLE,
            Truth::True,
            "Available",
            format!(
                "{} of {replicas} pods ready",
                status.ready_replicas.unwrap_or(0)
            ),
        )
    } else {
        Verdict::new(
            SERVICE_AVAILABLE,
            Truth::False,
            "Unavailable",
            "the Deployment has no minimum availability yet",
        )
    };
    let rollout = match (rolled_out && available, gave_up) {
        (true, _) => Rollout::Done,
        (false, Some(c)) => Rollout::Stuck(c.message.clone().unwrap_or_default()),
        (false, None) => Rollout::InProgress,
    };
    (verdict, rollout)
}

/// How provisioning one table or topic went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceOutcome {
    pub name: String,
    /// The actions applied this time (drift corrected, or first creation).
    pub applied: Vec<String>,
    /// A change refused: (reason, message). Nothing was touched.
    pub refusal: Option<(&'static str, String)>,
    /// A call that failed: (reason, message). Retried with backoff.
    pub error: Option<(&'static str, String)>,
    /// Optional calls the endpoint does not support.
    pub notes: Vec<String>,
    /// How the platform holds it, for the status record (`None`: it does not).
    pub origin: Option<Origin>,
}

/// `TablesReady` or `TopicsReady`, and the per-resource status entries. A refusal wins over a
/// failure: it needs a person, a failure only time.
pub fn external_verdict(
    type_: &'static str,
    kind: &str,
    outcomes: &[ResourceOutcome],
) -> (Verdict, Vec<ExternalResourceStatus>) {
    let entries = outcomes
        .iter()
        .map(|o| {
            let (state, last_error) = match (&o.refusal, &o.error) {
                (Some((reason, message)), _) => ("Refused", Some(format!("{reason}: {message}"))),
                (None, Some((reason, message))) => ("Failed", Some(format!("{reason}: {message}"))),
                (None, None) => ("Ready", None),
            };
            ExternalResourceStatus {
                name: o.name.clone(),
                state: state.into(),
                last_error,
                origin: o.origin.map(|origin| origin.as_str().to_owned()),
            }
        })
        .collect();
    let first = |pick: fn(&ResourceOutcome) -> &Option<(&'static str, String)>| {
        outcomes.iter().find_map(|o| pick(o).clone())
    };
    let verdict = if let Some((reason, _)) = first(|o| &o.refusal) {
        let messages: Vec<_> = outcomes
            .iter()
            .filter_map(|o| o.refusal.as_ref().map(|(_, m)| m.as_str()))
            .collect();
        Verdict::new(type_, Truth::False, reason, messages.join("; "))
    } else if let Some((reason, message)) = first(|o| &o.error) {
        Verdict::new(type_, Truth::False, reason, message)
    } else {
        let names: Vec<_> = outcomes.iter().map(|o| o.name.as_str()).collect();
        let mut message = format!("{kind} {} in shape", names.join(", "));
        for note in outcomes.iter().flat_map(|o| &o.notes) {
            message.push_str("; ");
            message.push_str(note);
        }
        Verdict::new(type_, Truth::True, "Provisioned", message)
    };
    (verdict, entries)
}

/// `Ready` from the other conditions: migrations, then tables and topics, then the service.
pub fn ready_verdict(
    migrations: &Verdict,
    external: &[&Verdict],
    service: &Verdict,
    rollout: &Rollout,
    spec_image: &str,
) -> Verdict {
    if let Some(blocking) = std::iter::once(migrations)
        .chain(external.iter().copied())
        .find(|v| v.status == Truth::False)
    {
        return Verdict::new(
            READY,
            Truth::False,
            blocking.reason,
            blocking.message.clone(),
        );
    }
    if migrations.status != Truth::True {
        return Verdict::new(READY, Truth::False, "Migrating", migrations.message.clone());
    }
    if let Some(pending) = external.iter().find(|v| v.status != Truth::True) {
        return Verdict::new(READY, Truth::False, "Provisioning", pending.message.clone());
    }
    if service.status != Truth::True {
        return Verdict::new(READY, Truth::False, service.reason, service.message.clone());
    }
    match rollout {
        Rollout::Done => {}
        Rollout::InProgress => {
            return Verdict::new(
                READY,
                Truth::False,
                "RollingOut",
                format!("rolling out {spec_image}"),
            )
        }
        Rollout::Stuck(why) => {
            return Verdict::new(
                READY,
                Truth::False,
                ROLLOUT_STUCK,
                format!(
                    "the new pods of {spec_image} did not become ready within the progress \
                     deadline ({why}); the previous pods keep serving. Look at the new pods \
                     (kubectl describe pod, kubectl logs), then fix the image or roll the spec \
                     back"
                ),
            )
        }
    }
    Verdict::new(
        READY,
        Truth::True,
        "Ready",
        format!("{spec_image} is serving"),
    )
}

/// The one-word phase shown by `kubectl get`.
pub fn phase(migrations: &Verdict, external: &[&Verdict], ready: &Verdict) -> &'static str {
    if ready.status == Truth::True {
        return "Ready";
    }
    if migrations.status == Truth::False
        || external.iter().any(|v| v.status == Truth::False)
        || ready.reason == ROLLOUT_STUCK
    {
        return "Degraded";
    }
    if migrations.status == Truth::Unknown {
        return "Migrating";
    }
    "Progressing"
}

/// `DataFlowing` from what the service's `/flowz` said: False (`BacklogAging`) when a sink's
/// oldest pending event is older than `max_pending_age` seconds, True (`Flowing`) otherwise;
/// Unknown when the service could not be asked (`ServiceUnreachable`, `ServiceNotAvailable`).
/// The status to show is the new reading, or `None` to keep the last one.
pub fn flow_verdict(
    reading: &FlowReading,
    max_pending_age: i64,
    now: &Time,
) -> (Verdict, Option<DataFlowStatus>) {
    let report = match reading {
        FlowReading::NotServing => {
            let verdict = Verdict::new(
                DATA_FLOWING,
                Truth::Unknown,
                "ServiceNotAvailable",
                "no service pod is available to report its data flow",
            );
            return (verdict, None);
        }
        FlowReading::Unreachable(problem) => {
            let verdict = Verdict::new(
                DATA_FLOWING,
                Truth::Unknown,
                "ServiceUnreachable",
                format!("could not read the service's data flow: {problem}"),
            );
            return (verdict, None);
        }
        FlowReading::Read(report) => report,
    };
    let sinks: Vec<SinkFlowStatus> = report
        .sinks
        .iter()
        .map(|s| SinkFlowStatus {
            sink: s.sink.clone(),
            pending: s.pending,
            // Whole seconds: a status that changed every read by a fraction would be noise.
            oldest_pending_seconds: s.oldest_pending_seconds.map(|age| age.max(0.0) as i64),
            parked: s.parked,
        })
        .collect();
    let aging: Vec<String> = sinks
        .iter()
        .filter_map(|s| {
            let age = s.oldest_pending_seconds?;
            (age > max_pending_age).then(|| {
                format!(
                    "the oldest event pending for {} is {age} s old ({} pending)",
                    s.sink, s.pending
                )
            })
        })
        .collect();
    let parked: Vec<String> = sinks
        .iter()
        .filter(|s| s.parked > 0)
        .map(|s| format!("{} parked for {}", s.parked, s.sink))
        .collect();
    let mut notes = Vec::new();
    if !parked.is_empty() {
        notes.push(format!(
            "{} (order-service outbox parked)",
            parked.join(", ")
        ));
    }
    if report.sagas_stuck > 0 {
        notes.push(format!(
            "{} sagas stuck (order-service sagas --stuck)",
            report.sagas_stuck
        ));
    }
    let verdict = if aging.is_empty() {
        let mut message = format!("every sink's oldest pending event is under {max_pending_age} s");
        for note in &notes {
            message.push_str("; ");
            message.push_str(note);
        }
        Verdict::new(DATA_FLOWING, Truth::True, "Flowing", message)
    } else {
        let mut message = format!("{} (limit {max_pending_age} s)", aging.join("; "));
        for note in &notes {
            message.push_str("; ");
            message.push_str(note);
        }
        Verdict::new(DATA_FLOWING, Truth::False, "BacklogAging", message)
    };
    let status = DataFlowStatus {
        sinks,
        sagas_stuck: report.sagas_stuck,
        observed_at: now.0.to_string(),
    };
    (verdict, Some(status))
}

#[cfg(test)]
mod tests {
    use super::*;
    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    /// The Deployment of `OrderPlatform::test()` at its desired revision, with `status`.
    fn deployment_with(status: serde_json::Value) -> (Deployment, Revision) {
        use crate::controller::build::{build_config_map, build_deployment};
        let platform = crate::crd::OrderPlatform::test();
        let config = build_config_map(&platform).metadata.name.unwrap();
        let desired = Revision::desired(&platform, config);
        let mut deployment = build_deployment(&platform, &desired);
        deployment.metadata.generation = Some(2);
        deployment.status = Some(serde_json::from_value(status).unwrap());
        (deployment, desired)
    }

    #[test]
    fn a_deployment_past_its_progress_deadline_is_a_stuck_rollout_not_a_rolling_one() {
        let stuck = serde_json::json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"shop-1\" has timed out progressing."}
            ]
        });
        let (deployment, desired) = deployment_with(stuck);
        let (service, rollout) = service_verdict(Some(&deployment), &desired);
        assert_eq!(service.status, Truth::True, "the old pods still serve");
        let Rollout::Stuck(why) = &rollout else {
            panic!("{rollout:?}")
        };
        assert!(why.contains("timed out progressing"), "{why}");

        let migrated = Verdict::new(MIGRATIONS_SUCCEEDED, Truth::True, "Succeeded", "");
        let tables = Verdict::new(TABLES_READY, Truth::True, "Provisioned", "");
        let ok = [&tables, &tables];
        let ready = ready_verdict(&migrated, &ok, &service, &rollout, "img:2");
        assert_eq!((ready.status, ready.reason), (Truth::False, ROLLOUT_STUCK));
        assert!(ready.message.contains("img:2") && ready.message.contains("timed out"));
        assert_eq!(phase(&migrated, &ok, &ready), "Degraded");

        // Still progressing: rolling out, not stuck.
        let progressing = serde_json::json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
            ]
        });
        let (deployment, desired) = deployment_with(progressing);
        assert_eq!(
            service_verdict(Some(&deployment), &desired).1,
            Rollout::InProgress
        );
        // Done: every replica updated and ready, whatever an old condition says.
        let done = serde_json::json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ]
        });
        let (deployment, desired) = deployment_with(done);
        assert_eq!(
            service_verdict(Some(&deployment), &desired).1,
            Rollout::Done
        );
    }

    #[test]
    fn last_transition_time_changes_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        let ok = Verdict::new(READY, Truth::True, "Ready", "fine");
        set_condition(&mut conditions, &ok, Some(1), &at(100));
        set_condition(
            &mut conditions,
            &Verdict::new(READY, Truth::True, "Ready", "still fine"),
            Some(2),
            &at(200),
        );
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].message, "still fine");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(
            &mut conditions,
            &Verdict::new(READY, Truth::False, "Broken", "no"),
            Some(2),
            &at(300),
        );
        assert_eq!(conditions[0].last_transition_time, at(300));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn ready_needs_migrations_tables_topics_availability_and_the_rollout() {
        let migrated = Verdict::new(MIGRATIONS_SUCCEEDED, Truth::True, "Succeeded", "");
        let available = Verdict::new(SERVICE_AVAILABLE, Truth::True, "Available", "");
        let tables = Verdict::new(TABLES_READY, Truth::True, "Provisioned", "");
        let topics = Verdict::new(TOPICS_READY, Truth::True, "Provisioned", "");
        let ok = [&tables, &topics];
        assert_eq!(
            ready_verdict(&migrated, &ok, &available, &Rollout::Done, "img").status,
            Truth::True
        );
        assert_eq!(
            ready_verdict(&migrated, &ok, &available, &Rollout::InProgress, "img").reason,
            "RollingOut"
        );
        let failed = Verdict::new(
            MIGRATIONS_SUCCEEDED,
            Truth::False,
            "BackoffLimitExceeded",
            "x",
        );
        let ready = ready_verdict(&failed, &ok, &available, &Rollout::Done, "img");
        assert_eq!(
            (ready.status, ready.reason),
            (Truth::False, "BackoffLimitExceeded")
        );
        assert_eq!(phase(&failed, &ok, &ready), "Degraded");

        let conflict = Verdict::new(TABLES_READY, Truth::False, "KeySchemaConflict", "keys");
        let ready = ready_verdict(
            &migrated,
            &[&conflict, &topics],
            &available,
            &Rollout::Done,
            "img",
        );
        assert_eq!(
            (ready.status, ready.reason),
            (Truth::False, "KeySchemaConflict")
        );
        assert_eq!(phase(&migrated, &[&conflict, &topics], &ready), "Degraded");
        let unknown = Verdict::new(TOPICS_READY, Truth::Unknown, "Pending", "");
        let ready = ready_verdict(
            &migrated,
            &[&tables, &unknown],
            &available,
            &Rollout::Done,
            "img",
        );
        assert_eq!(ready.reason, "Provisioning");
    }

    #[test]
    fn external_verdicts_put_refusals_before_failures() {
        let ok = ResourceOutcome {
            name: "t-a".into(),
            notes: vec!["tags not managed".into()],
            ..ResourceOutcome::default()
        };
        let (verdict, entries) =
            external_verdict(TABLES_READY, "tables", std::slice::from_ref(&ok));
        assert_eq!(
            (verdict.status, verdict.reason),
            (Truth::True, "Provisioned")
        );
        assert!(verdict.message.contains("tags not managed"));
        assert_eq!(entries[0].state, "Ready");

        let failed = ResourceOutcome {
            name: "t-b".into(),
            error: Some(("Timeout", "no answer".into())),
            ..ResourceOutcome::default()
        };
        let refused = ResourceOutcome {
            name: "t-c".into(),
            refusal: Some(("KeySchemaConflict", "keys differ".into())),
            ..ResourceOutcome::default()
        };
        let (verdict, entries) = external_verdict(TABLES_READY, "tables", &[ok, failed, refused]);
        assert_eq!(
            (verdict.status, verdict.reason),
            (Truth::False, "KeySchemaConflict")
        );
        let states: Vec<_> = entries.iter().map(|e| e.state.as_str()).collect();
        assert_eq!(states, ["Ready", "Failed", "Refused"]);
        assert_eq!(entries[1].last_error.as_deref(), Some("Timeout: no answer"));
    }

    fn report(sinks: &[(&str, i64, i64, Option<f64>)], stuck: i64) -> FlowReading {
        FlowReading::Read(super::super::flow::FlowReport {
            sinks: sinks
                .iter()
                .map(
                    |(sink, pending, parked, age)| super::super::flow::SinkReport {
                        sink: (*sink).into(),
                        pending: *pending,
                        parked: *parked,
                        oldest_pending_seconds: *age,
                    },
                )
                .collect(),
            sagas_stuck: stuck,
        })
    }

    #[test]
    fn a_sink_whose_oldest_pending_event_is_past_the_limit_stops_the_flow() {
        let reading = report(
            &[("dynamodb", 0, 0, None), ("kafka", 37, 0, Some(412.7))],
            0,
        );
        let (verdict, status) = flow_verdict(&reading, 300, &at(1000));
        assert_eq!(
            (verdict.status, verdict.reason),
            (Truth::False, "BacklogAging")
        );
        assert!(
            verdict.message.contains("kafka is 412 s old (37 pending)"),
            "{}",
            verdict.message
        );
        assert!(!verdict.message.contains("dynamodb"), "{}", verdict.message);
        let status = status.expect("a reading is shown");
        assert_eq!(status.sinks.len(), 2);
        assert_eq!(status.sinks[1].oldest_pending_seconds, Some(412));
        assert_eq!(status.sinks[0].oldest_pending_seconds, None);
    }

    #[test]
    fn a_backlog_younger_than_the_limit_flows_and_parked_events_and_stuck_sagas_are_told() {
        let reading = report(&[("kafka", 5, 2, Some(300.0))], 3);
        let (verdict, status) = flow_verdict(&reading, 300, &at(1000));
        assert_eq!((verdict.status, verdict.reason), (Truth::True, "Flowing"));
        assert!(
            verdict.message.contains("2 parked for kafka"),
            "{}",
            verdict.message
        );
        assert!(
            verdict.message.contains("3 sagas stuck"),
            "{}",
            verdict.message
        );
        let status = status.expect("shown");
        assert_eq!((status.sinks[0].parked, status.sagas_stuck), (2, 3));
        // Exactly at the limit still flows; one second past it does not.
        let (verdict, _) = flow_verdict(&report(&[("kafka", 5, 0, Some(301.0))], 0), 300, &at(1));
        assert_eq!(verdict.status, Truth::False);
    }

    #[test]
    fn a_service_that_cannot_be_asked_is_unknown_and_keeps_the_last_reading() {
        let (verdict, status) = flow_verdict(
            &FlowReading::Unreachable("GET http://shop.ns.svc:8080/flowz timed out".into()),
            300,
            &at(1),
        );
        assert_eq!(
            (verdict.status, verdict.reason),
            (Truth::Unknown, "ServiceUnreachable")
        );
        assert!(verdict.message.contains("timed out"));
        assert_eq!(status, None);
        let (verdict, status) = flow_verdict(&FlowReading::NotServing, 300, &at(1));
        assert_eq!(
            (verdict.status, verdict.reason),
            (Truth::Unknown, "ServiceNotAvailable")
        );
        assert_eq!(status, None);
    }

    #[test]
    fn a_service_without_sinks_flows() {
        let (verdict, status) = flow_verdict(&report(&[], 0), 300, &at(1));
        assert_eq!(verdict.status, Truth::True);
        assert!(status.expect("shown").sinks.is_empty());
    }
}
