//! Metrics of the calls the provisioners make to DynamoDB and Kafka: how many, how they ended
//! and how long they took, by provider and operation. Labels are static strings (a fixed set
//! of providers and operations), so the series stay bounded.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: &'static str,
    operation: &'static str,
    /// `ok`, `error` or `timeout`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    provider: &'static str,
    operation: &'static str,
}

type Durations = Family<OperationLabels, Histogram, fn() -> Histogram>;

/// Counters and latencies of external calls; cheap to clone (shared series). The default is
/// registered nowhere (the CLI); the operator registers its own with [`CallMetrics::register`].
#[derive(Clone)]
pub struct CallMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Durations,
}

impl Default for CallMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            // 1 ms to ~33 s: a local moto answers in milliseconds, a timeout takes seconds.
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        }
        Self {
            calls: Family::default(),
            durations: Family::new_with_constructor(histogram),
        }
    }
}

impl CallMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "external_calls",
            "Calls to DynamoDB and Kafka, by provider, operation and outcome (ok, error, timeout)",
            self.calls.clone(),
        );
        registry.register(
            "external_call_duration_seconds",
            "Duration of calls to DynamoDB and Kafka, by provider and operation",
            self.durations.clone(),
        );
    }

    pub fn record(
        &self,
        provider: &'static str,
        operation: &'static str,
        outcome: &'static str,
        took: Duration,
    ) {
        self.calls
            .get_or_create(&CallLabels {
                provider,
                operation,
                outcome,
            })
            .inc();
        self.durations
            .get_or_create(&OperationLabels {
                provider,
                operation,
            })
            .observe(took.as_secs_f64());
    }

    /// Calls recorded so far with these labels (for tests and the CLI's summary).
    pub fn count(
        &self,
        provider: &'static str,
        operation: &'static str,
        outcome: &'static str,
    ) -> u64 {
        self.calls
            .get_or_create(&CallLabels {
                provider,
                operation,
                outcome,
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_outcome_and_timed_by_operation() {
        let metrics = CallMetrics::default();
        let mut registry = Registry::with_prefix("order_operator");
        metrics.register(&mut registry);
        metrics.record("DynamoDB", "DescribeTable", "ok", Duration::from_millis(3));
        metrics.record("DynamoDB", "DescribeTable", "ok", Duration::from_millis(5));
        metrics.record("Kafka", "Metadata", "timeout", Duration::from_secs(10));
        assert_eq!(metrics.count("DynamoDB", "DescribeTable", "ok"), 2);
        assert_eq!(metrics.count("DynamoDB", "DescribeTable", "error"), 0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(
            r#"order_operator_external_calls_total{provider="Kafka",operation="Metadata",outcome="timeout"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"order_operator_external_call_duration_seconds_count{provider="DynamoDB",operation="DescribeTable"} 2"#
        ), "{text}");
    }
}
