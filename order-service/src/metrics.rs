//! Prometheus metrics of the service: HTTP, the database pool and the outbox.
//!
//! One `Registry` per application instance (no globals), so tests in one process each see
//! their own counts. Gauges that describe stored state (pool, backlog) are set at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::db::outbox::Backlog;
use crate::outbox::Sink;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route template (`/v1/orders/{id}`), never the raw path, to bound cardinality.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub sink: &'static str,
    /// `transient` (retried) or `permanent` (parked).
    pub kind: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) latency: HistogramFamily,
    pool_connections: Family<PoolLabels, Gauge>,
    published: Family<SinkLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    backlog: Family<SinkLabels, Gauge>,
    parked: Family<SinkLabels, Gauge>,
    lag_seconds: Family<SinkLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Metrics {
    pub fn new(pool_max_connections: u32) -> Self {
        let mut registry = Registry::with_prefix("order_service");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(|| {
            // 1 ms to ~16 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "PostgreSQL pool connections by state",
            pool_connections.clone(),
        );
        let pool_max = Gauge::<i64>::default();
        pool_max.set(i64::from(pool_max_connections));
        registry.register(
            "db_pool_max_connections",
            "PostgreSQL pool size limit",
            pool_max,
        );

        let published = Family::<SinkLabels, Counter>::default();
        registry.register(
            "outbox_published",
            "Events delivered, per sink",
            published.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "outbox_failures",
            "Failed deliveries, per sink and kind",
            failures.clone(),
        );
        let backlog = Family::<SinkLabels, Gauge>::default();
        registry.register(
            "outbox_backlog",
            "Deliveries pending, per sink",
            backlog.clone(),
        );
        let parked = Family::<SinkLabels, Gauge>::default();
        registry.register(
            "outbox_parked",
            "Deliveries parked after a permanent rejection, per sink",
            parked.clone(),
        );
        let lag_seconds = Family::<SinkLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "outbox_lag_seconds",
            "Age of the oldest pending event, per sink",
            lag_seconds.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            pool_connections,
            published,
            failures,
            backlog,
            parked,
            lag_seconds,
        }
    }

    pub fn outbox_published(&self, sink: Sink, count: u64) {
        self.published
            .get_or_create(&SinkLabels {
                sink: sink.as_str(),
            })
            .inc_by(count);
    }

    pub fn outbox_failure(&self, sink: Sink, kind: &'static str) {
        self.failures
            .get_or_create(&FailureLabels {
                sink: sink.as_str(),
                kind,
            })
            .inc();
    }

    /// Sets the backlog gauges of every sink from a fresh read (sinks absent there are at 0).
    pub fn observe_backlog(&self, sinks: &[Sink], backlog: &[Backlog]) {
        for sink in sinks {
            let row = backlog.iter().find(|b| b.sink == sink.as_str());
            let labels = SinkLabels {
                sink: sink.as_str(),
            };
            self.backlog
                .get_or_create(&labels)
                .set(row.map_or(0, |b| b.pending));
            self.parked
                .get_or_create(&labels)
                .set(row.map_or(0, |b| b.parked));
            self.lag_seconds
                .get_or_create(&labels)
                .set(row.and_then(|b| b.oldest_pending_seconds).unwrap_or(0.0));
        }
    }

    fn observe_pool(&self, pool: &PgPool) {
        let size = i64::from(pool.size());
        let idle = pool.num_idle() as i64;
        self.pool_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(idle);
        self.pool_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(size - idle);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self, pool: &PgPool) -> Result<String, std::fmt::Error> {
        self.observe_pool(pool);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
