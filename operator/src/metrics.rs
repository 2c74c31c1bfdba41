//! Operator metrics: reconciliations, failures by reason, reconcile duration, leadership,
//! each platform's readiness and conditions, and the calls to DynamoDB and Kafka.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::provision::CallMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// One platform; a series per live platform, removed when it is deleted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub namespace: String,
    pub name: String,
}

/// One condition of one platform, with its current status and reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub name: String,
    pub condition: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    /// One series per platform and condition type (value 1), replaced when its status or
    /// reason changes, so the set stays bounded by platforms × condition types.
    conditions: Family<ConditionLabels, Gauge>,
    /// The series each (namespace, name, condition) has now, to remove it on change.
    condition_series: Mutex<HashMap<(String, String, String), ConditionLabels>>,
    /// Calls the provisioners make, shared with every provisioner the controller creates.
    pub external: CallMetrics,
    ready: Family<PlatformLabels, Gauge>,
    reconciliations: Counter,
    failures: Family<ReasonLabels, Counter>,
    duration: Histogram,
    leader: Gauge,
    retry_queue: Gauge,
    /// Exact quantiles for `order-operator bench` (the exported histogram has buckets only).
    durations_us: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("order_operator");
        let reconciliations = Counter::default();
        registry.register(
            "reconciliations",
            "Reconciliations run",
            reconciliations.clone(),
        );
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Failed reconciliations, by reason",
            failures.clone(),
        );
        // 1 ms to ~33 s.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process holds the leader Lease",
            leader.clone(),
        );
        let retry_queue = Gauge::default();
        registry.register(
            "retry_queue",
            "Platforms whose last reconcile failed, waiting for their backoff to retry",
            retry_queue.clone(),
        );
        let ready = Family::<PlatformLabels, Gauge>::default();
        registry.register(
            "platform_ready",
            "1 while the OrderPlatform's Ready condition is True, 0 otherwise",
            ready.clone(),
        );
        let conditions = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "platform_condition",
            "Each OrderPlatform condition: 1 on the series of its current status and reason",
            conditions.clone(),
        );
        let external = CallMetrics::default();
        external.register(&mut registry);
        let durations_us =
            Mutex::new(hdrhistogram::Histogram::new(3).expect("3 significant figures is valid"));
        Self {
            registry,
            conditions,
            condition_series: Mutex::new(HashMap::new()),
            external,
            ready,
            reconciliations,
            failures,
            duration,
            leader,
            retry_queue,
            durations_us,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, took: Duration) {
        self.reconciliations.inc();
        self.duration.observe(took.as_secs_f64());
        if let Ok(mut durations) = self.durations_us.lock() {
            let _ = durations.record(took.as_micros() as u64);
        }
    }

    /// Reconciliations so far, and their p50 and p99 durations.
    pub fn reconcile_summary(&self) -> (u64, Duration, Duration) {
        let count = self.reconciliations.get();
        match self.durations_us.lock() {
            Ok(d) => (
                count,
                Duration::from_micros(d.value_at_quantile(0.5)),
                Duration::from_micros(d.value_at_quantile(0.99)),
            ),
            Err(_) => (count, Duration::ZERO, Duration::ZERO),
        }
    }

    pub fn reconcile_failed(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn set_ready(&self, namespace: &str, name: &str, ready: bool) {
        self.ready
            .get_or_create(&PlatformLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// Sets the platform's condition series from its status's conditions.
    pub fn set_conditions(
        &self,
        namespace: &str,
        name: &str,
        conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    ) {
        let Ok(mut series) = self.condition_series.lock() else {
            return;
        };
        for condition in conditions {
            let labels = ConditionLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                condition: condition.type_.clone(),
                status: condition.status.clone(),
                reason: condition.reason.clone(),
            };
            let key = (
                namespace.to_owned(),
                name.to_owned(),
                condition.type_.clone(),
            );
            if let Some(previous) = series.insert(key, labels.clone()) {
                if previous != labels {
                    self.conditions.remove(&previous);
                }
            }
            self.conditions.get_or_create(&labels).set(1);
        }
        // A condition the status no longer has (Paused, say) loses its series.
        let gone: Vec<_> = series
            .keys()
            .filter(|(ns, n, type_)| {
                ns == namespace && n == name && !conditions.iter().any(|c| &c.type_ == type_)
            })
            .cloned()
            .collect();
        for key in gone {
            if let Some(previous) = series.remove(&key) {
                self.conditions.remove(&previous);
            }
        }
    }

    /// Drops a deleted platform's series.
    pub fn forget_platform(&self, namespace: &str, name: &str) {
        self.ready.remove(&PlatformLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
        self.set_conditions(namespace, name, &[]);
    }

    pub fn set_retry_queue(&self, waiting: usize) {
        self.retry_queue
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platforms_ready_series_follows_it_and_goes_with_it() {
        let metrics = Metrics::default();
        metrics.set_ready("shop", "orders", false);
        metrics.set_ready("shop", "orders", true);
        let line = r#"order_operator_platform_ready{namespace="shop",name="orders"} 1"#;
        assert!(metrics.render().contains(line), "{}", metrics.render());
        metrics.forget_platform("shop", "orders");
        assert!(!metrics.render().contains(r#"name="orders""#));
        metrics
            .external
            .record("Kafka", "CreateTopics", "ok", Duration::from_millis(2));
        assert!(metrics
            .render()
            .contains("order_operator_external_calls_total"));
    }

    #[test]
    fn a_condition_has_one_series_that_follows_its_status_and_goes_with_the_platform() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
        let condition = |status: &str, reason: &str| Condition {
            type_: "DataFlowing".into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        };
        let metrics = Metrics::default();
        metrics.set_conditions("shop", "orders", &[condition("True", "Flowing")]);
        metrics.set_conditions("shop", "orders", &[condition("False", "BacklogAging")]);
        let text = metrics.render();
        assert!(text.contains(r#"order_operator_platform_condition{namespace="shop",name="orders",condition="DataFlowing",status="False",reason="BacklogAging"} 1"#), "{text}");
        assert!(!text.contains("reason=\"Flowing\""), "{text}");
        assert_eq!(
            text.matches("condition=\"DataFlowing\"").count(),
            1,
            "{text}"
        );
        metrics.set_conditions("shop", "other", &[condition("True", "Flowing")]);
        metrics.forget_platform("shop", "orders");
        let text = metrics.render();
        assert!(!text.contains(r#"name="orders""#), "{text}");
        assert!(text.contains(r#"name="other""#), "{text}");
    }
}
