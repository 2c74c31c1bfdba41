//! Prometheus metrics of the service: HTTP (and its rate limits), the database pool, the
//! outbox, the sagas, and the business: orders and their value by status and currency.
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
use crate::domain::Order;
use crate::outbox::sink::Sink;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ParticipantLabels {
    pub participant: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnexpectedLabels {
    pub participant: &'static str,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub participant: &'static str,
    /// `ok`, `refused`, `unavailable`, `timeout`, `unreachable`, `circuit_open`, `bulkhead_full`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: &'static str,
    /// `done`, `rejected` or `retry`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SagaLabels {
    /// `CONFIRMED` or `CANCELLED`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    /// `list` or `report`.
    pub kind: &'static str,
    /// `replica`, `primary` or `refused`.
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    /// `subject` (a token's) or `address` (no valid token).
    pub caller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `hit` (fresh entry), `miss` (absent or older than the TTL) or `stale` (an old entry
    /// used because the catalog could not be reached).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    /// `size` (the capacity bound) or `expired` (older than the maximum staleness).
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProductEventLabels {
    /// `invalidated` (a SKU dropped) or `skipped` (not a product change).
    pub effect: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderLabels {
    /// The status the order entered (`PENDING` when created).
    pub status: &'static str,
    /// ISO 4217 code; a fixed set (`Currency::parse`), so the series stay bounded.
    pub currency: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;
type CallHistograms = Family<CallLabels, Histogram, fn() -> Histogram>;
type SagaHistograms = Family<SagaLabels, Histogram, fn() -> Histogram>;

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
    calls: CallHistograms,
    retries: Family<ParticipantLabels, Counter>,
    retention: Family<TableLabels, Counter>,
    unexpected: Family<UnexpectedLabels, Counter>,
    breaker: Family<ParticipantLabels, Gauge>,
    steps: Family<StepLabels, Counter>,
    sagas: SagaHistograms,
    throttled: Family<ThrottleLabels, Counter>,
    replica_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    replica_up: Gauge,
    reads: Family<ReadLabels, Counter>,
    catalog_lookups: Family<LookupLabels, Counter>,
    catalog_hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    catalog_evictions: Family<EvictionLabels, Counter>,
    catalog_invalidations: Counter,
    catalog_entries: Gauge,
    product_events: Family<ProductEventLabels, Counter>,
    product_events_partitions: Gauge,
    product_events_lag: Family<PartitionLabels, Gauge>,
    sagas_stuck: Gauge,
    orders: Family<OrderLabels, Counter>,
    order_value: Family<OrderLabels, Counter>,
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
        let calls: CallHistograms = Family::new_with_constructor(|| {
            // 1 ms to ~16 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        registry.register(
            "participant_call_duration_seconds",
            "Calls to saga participants, by participant and outcome",
            calls.clone(),
        );
        let retries = Family::<ParticipantLabels, Counter>::default();
        registry.register(
            "participant_retries",
            "Calls to a participant retried after a retryable failure",
            retries.clone(),
        );
        let retention = Family::<TableLabels, Counter>::default();
        registry.register(
            "retention_deleted_rows",
            "Rows the retention deleted, by table",
            retention.clone(),
        );
        let unexpected = Family::<UnexpectedLabels, Counter>::default();
        registry.register(
            "participant_unexpected_answers",
            "Answers outside a participant's contract (a 401, a 404 without the documented \
             error body, a 2xx that is not the documented JSON), by participant and status: \
             the participant is treated as unavailable, so a misconfiguration never cancels orders",
            unexpected.clone(),
        );
        let breaker = Family::<ParticipantLabels, Gauge>::default();
        registry.register(
            "participant_breaker_state",
            "Circuit breaker per participant: 0 closed, 1 open, 2 half-open",
            breaker.clone(),
        );
        let steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "saga_steps",
            "Saga steps run, by step and outcome",
            steps.clone(),
        );
        let sagas: SagaHistograms = Family::new_with_constructor(|| {
            // 10 ms to ~3 h.
            Histogram::new(exponential_buckets(0.01, 2.0, 20))
        });
        registry.register(
            "saga_duration_seconds",
            "Time from order creation to the saga's end, by outcome",
            sagas.clone(),
        );
        let throttled = Family::<ThrottleLabels, Counter>::default();
        registry.register(
            "http_throttled_requests",
            "Requests refused with 429 by the rate limits, by kind of caller key",
            throttled.clone(),
        );
        // Registered by `with_replica` only: without a replica there is nothing to alert on.
        let replica_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let replica_up = Gauge::<i64>::default();
        let reads = Family::<ReadLabels, Counter>::default();
        registry.register(
            "reads",
            "Reads that may be stale (lists, reports), by where they were served",
            reads.clone(),
        );
        let catalog_lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "catalog_cache_lookups",
            "Product lookups by cache result (hit, miss, stale); one per SKU of a create",
            catalog_lookups.clone(),
        );
        let catalog_hit_ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "catalog_cache_hit_ratio",
            "Hits over hits and misses since start",
            catalog_hit_ratio.clone(),
        );
        let catalog_evictions = Family::<EvictionLabels, Counter>::default();
        registry.register(
            "catalog_cache_evictions",
            "Products evicted from the cache, by cause",
            catalog_evictions.clone(),
        );
        let catalog_invalidations = Counter::default();
        registry.register(
            "catalog_cache_invalidations",
            "Products dropped from the cache by product events",
            catalog_invalidations.clone(),
        );
        let catalog_entries = Gauge::<i64>::default();
        registry.register(
            "catalog_cache_entries",
            "Products in the cache (approximate)",
            catalog_entries.clone(),
        );
        let product_events = Family::<ProductEventLabels, Counter>::default();
        registry.register(
            "product_events",
            "Product events read, by effect",
            product_events.clone(),
        );
        let product_events_partitions = Gauge::<i64>::default();
        registry.register(
            "product_events_partitions",
            "Partitions of the product events topic this replica reads (0 until assigned)",
            product_events_partitions.clone(),
        );
        let product_events_lag = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "product_events_lag",
            "Product events not yet read, per partition",
            product_events_lag.clone(),
        );
        let sagas_stuck = Gauge::default();
        registry.register(
            "sagas_stuck",
            "Unfinished sagas at the same step for longer than --saga-stuck-after",
            sagas_stuck.clone(),
        );
        let orders = Family::<OrderLabels, Counter>::default();
        registry.register(
            "orders",
            "Orders entering a status (created: PENDING), by status and currency",
            orders.clone(),
        );
        let order_value = Family::<OrderLabels, Counter>::default();
        registry.register(
            "order_value_minor",
            "Total value of the orders entering a status, in minor units of their currency \
             (cents for EUR), by status and currency",
            order_value.clone(),
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
            calls,
            retries,
            retention,
            unexpected,
            breaker,
            steps,
            sagas,
            throttled,
            replica_lag,
            replica_up,
            reads,
            catalog_lookups,
            catalog_hit_ratio,
            catalog_evictions,
            catalog_invalidations,
            catalog_entries,
            product_events,
            product_events_partitions,
            product_events_lag,
            sagas_stuck,
            orders,
            order_value,
        }
    }

    pub fn catalog_lookup(&self, result: &'static str) {
        self.catalog_lookups
            .get_or_create(&LookupLabels { result })
            .inc();
    }

    pub fn catalog_eviction(&self, cause: &'static str) {
        self.catalog_evictions
            .get_or_create(&EvictionLabels { cause })
            .inc();
    }

    pub fn catalog_invalidated(&self) {
        self.catalog_invalidations.inc();
    }

    pub fn catalog_entries(&self, entries: u64) {
        self.catalog_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    pub fn catalog_event(&self, invalidated: bool) {
        let effect = if invalidated {
            "invalidated"
        } else {
            "skipped"
        };
        self.product_events
            .get_or_create(&ProductEventLabels { effect })
            .inc();
    }

    pub fn catalog_partitions(&self, partitions: usize) {
        self.product_events_partitions
            .set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }

    pub fn catalog_lag(&self, partition: i32, lag: i64) {
        self.product_events_lag
            .get_or_create(&PartitionLabels { partition })
            .set(lag);
    }

    /// Hits over hits and misses, set at scrape time from the counters.
    fn observe_hit_ratio(&self) {
        let count = |result| {
            self.catalog_lookups
                .get_or_create(&LookupLabels { result })
                .get() as f64
        };
        let (hits, misses) = (count("hit"), count("miss"));
        if hits + misses > 0.0 {
            self.catalog_hit_ratio.set(hits / (hits + misses));
        }
    }

    /// Adds the read replica's gauges (a service configured with one).
    pub fn with_replica(mut self) -> Self {
        self.registry.register(
            "replica_lag_seconds",
            "How far the read replica is behind the primary (the age of the oldest WAL it has \
             not replayed); 0 while it is down: see replica_up",
            self.replica_lag.clone(),
        );
        self.registry.register(
            "replica_up",
            "1 while the read replica answers, 0 while it does not",
            self.replica_up.clone(),
        );
        self
    }

    /// The replica's lag, or `None` while it does not answer.
    pub fn replica_lag(&self, lag: Option<std::time::Duration>) {
        self.replica_up.set(i64::from(lag.is_some()));
        self.replica_lag
            .set(lag.map_or(0.0, |lag| lag.as_secs_f64()));
    }

    pub fn read_routed(&self, kind: &'static str, source: &'static str) {
        self.reads.get_or_create(&ReadLabels { kind, source }).inc();
    }

    /// Counts an order that entered its current status (after the change was committed).
    pub fn order_entered(&self, order: &Order) {
        let labels = OrderLabels {
            status: order.status.as_str(),
            currency: order.currency.clone(),
        };
        self.orders.get_or_create(&labels).inc();
        // A total is never negative (validated at creation); a corrupt row counts as 0.
        self.order_value
            .get_or_create(&labels)
            .inc_by(u64::try_from(order.total_minor).unwrap_or(0));
    }

    pub fn observe_sagas_stuck(&self, stuck: i64) {
        self.sagas_stuck.set(stuck);
    }

    pub fn throttled(&self, caller: &'static str) {
        self.throttled
            .get_or_create(&ThrottleLabels { caller })
            .inc();
    }

    pub fn participant_call(
        &self,
        participant: &'static str,
        outcome: &'static str,
        took: std::time::Duration,
    ) {
        self.calls
            .get_or_create(&CallLabels {
                participant,
                outcome,
            })
            .observe(took.as_secs_f64());
    }

    pub fn retention_deleted(&self, table: &'static str, rows: u64) {
        self.retention
            .get_or_create(&TableLabels { table })
            .inc_by(rows);
    }

    /// `status` is the HTTP status, or `invalid_body` for a 2xx whose body breaks the contract.
    pub fn participant_unexpected(&self, participant: &'static str, status: String) {
        self.unexpected
            .get_or_create(&UnexpectedLabels {
                participant,
                status,
            })
            .inc();
    }

    pub fn participant_retry(&self, participant: &'static str) {
        self.retries
            .get_or_create(&ParticipantLabels { participant })
            .inc();
    }

    pub fn participant_breaker(&self, participant: &'static str, state: i64) {
        self.breaker
            .get_or_create(&ParticipantLabels { participant })
            .set(state);
    }

    pub fn saga_step(&self, step: &'static str, outcome: &'static str) {
        self.steps
            .get_or_create(&StepLabels { step, outcome })
            .inc();
    }

    pub fn saga_finished(&self, state: &'static str, created_at: chrono::DateTime<chrono::Utc>) {
        let took = (chrono::Utc::now() - created_at)
            .to_std()
            .unwrap_or_default();
        self.sagas
            .get_or_create(&SagaLabels { state })
            .observe(took.as_secs_f64());
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
        self.observe_hit_ratio();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
