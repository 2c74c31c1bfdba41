//! `order-service bench`: load against a running service, compared with the same create
//! transaction run directly through sqlx, so the HTTP layer's cost shows as a ratio.
//!
//! Figures are printed, never asserted: targets live in `docs/performance.md`.

mod catalog;
mod participants;
mod reports;
mod saga;
mod soak;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use uuid::Uuid;

use crate::db;
use crate::db::DatabaseConfig;
use crate::domain::{IdempotencyKey, Order, OrderStatus, RequestFingerprint};
use crate::http::extract::from_json_value;
use crate::http::orders::CreateOrderRequest;
use crate::outbox::envelope::{EventEnvelope, ACTOR_API};
use crate::outbox::sink::Sink;

#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// Base URL of the running service.
    #[arg(
        long,
        env = "ORDER_SERVICE_BENCH_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Concurrent clients in each phase.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long each phase runs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The sinks the service runs with (the direct-SQL phase writes the same outbox rows).
    #[arg(long, env = "ORDER_SERVICE_SINKS", default_value = "dynamodb,kafka", value_parser = crate::sinks::parse_sinks)]
    pub sinks: crate::sinks::SinkSet,
    /// How long to wait for the relay to deliver everything after the load.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// The service's database, for the relay figures and the direct-SQL phase.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Run the saga benchmark instead: create this many orders per second (open loop) for
    /// `--duration` against a service with participants, and report confirmations per second
    /// and the time from create to CONFIRMED.
    #[arg(long)]
    pub saga_rate: Option<f64>,
    /// Serve fake participants on this address during the saga benchmark (point the service's
    /// ORDER_SERVICE_*_URL here).
    #[arg(long)]
    pub participants_addr: Option<SocketAddr>,
    /// How long each fake participant takes to answer.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    pub participant_latency: Duration,
    /// Make this fake participant slow for a share of its calls (`customer`, `inventory` or
    /// `payment`), to see what one slow participant does to the saga's p99.
    #[arg(long, value_parser = ["customer", "inventory", "payment"])]
    pub slow_participant: Option<String>,
    /// Share of the slow participant's calls that are slow.
    #[arg(long, default_value_t = 0.1)]
    pub slow_fraction: f64,
    /// How long a slow call takes.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub slow_latency: Duration,
    /// Run the soak benchmark instead: creates for `--duration` (10m or more), reporting every
    /// `--report-every` the rate, p99 and the rows and size of the tables the retention bounds.
    /// With `--saga-rate`, at that rate with the saga on; else `--clients` in a closed loop.
    #[arg(long)]
    pub soak: bool,
    /// A bearer token sent with every API request (the service's authentication on); fetched
    /// once and shared by the clients. `make bench ARGS="--auth"` gets one from a local Dex.
    #[arg(long, env = "ORDER_SERVICE_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Run the reporting benchmark instead: creates at `--clients` alone, then while
    /// `--report-clients` request the reports from the service at this URL (reading them from
    /// the primary), then from the one at `--reports-replica-url` (reading the replica).
    #[arg(long, requires = "reports_replica_url")]
    pub reports_primary_url: Option<String>,
    /// The service that reads the reports from the read replica (see `--reports-primary-url`).
    #[arg(long, requires = "reports_primary_url")]
    pub reports_replica_url: Option<String>,
    /// Clients requesting reports in the reporting benchmark, in a closed loop.
    #[arg(long, default_value_t = 4)]
    pub report_clients: usize,
    /// Time between soak reports.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub report_every: Duration,
    /// Run the catalog benchmark instead: serve a catalog on this address (point the service's
    /// ORDER_SERVICE_CATALOG_URL here), then creates priced from it with the cache cold
    /// (`--cold-duration`) and warm (`--duration`), against the same statement run directly.
    #[arg(long)]
    pub catalog_addr: Option<SocketAddr>,
    /// Products of the served catalog.
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub catalog_skus: usize,
    /// Popularity of the product of rank r is proportional to 1/r^s (Zipf-like).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_exponent: f64,
    /// How long the served catalog takes to answer a lookup.
    #[arg(long, default_value = "2ms", value_parser = humantime::parse_duration)]
    pub catalog_latency: Duration,
    /// How long the cold-cache phase runs (from a service that has not priced anything yet).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub cold_duration: Duration,
}

/// Latencies and counts of one phase.
struct PhaseResult {
    name: &'static str,
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl PhaseResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self) {
        self.print_as(self.name, 16);
    }

    /// One row of the figures table, `name` padded to `width`.
    fn print_as(&self, name: &str, width: usize) {
        self.print_without_newline_as(name, width);
        println!();
    }

    /// The row without its line end, for phases that add columns.
    fn print_without_newline(&self) {
        self.print_without_newline_as(self.name, 16);
    }

    fn print_without_newline_as(&self, name: &str, width: usize) {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        print!(
            "{:<width$} {:>9} {:>7} {:>10.1} {:>8.2} {:>8.2} {:>8.2}",
            name,
            self.ok,
            self.errors,
            self.rate(),
            ms(0.50),
            ms(0.95),
            ms(0.99)
        );
    }
}

/// The order every client creates: two lines, as in the API example.
fn order_body(client: usize, n: u64) -> serde_json::Value {
    json!({
        "customer_id": format!("bench-{client}"),
        "currency": "EUR",
        "items": [
            {"sku": "SKU-1", "name": "Widget", "quantity": 2, "unit_price_minor": 1250},
            {"sku": "SKU-2", "name": "Gadget", "quantity": 1, "unit_price_minor": 990 + n % 7}
        ],
        "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "shipping_minor": 490,
        "payment": {"method": "card"}
    })
}

pub async fn run(config: BenchConfig) -> anyhow::Result<()> {
    if let Some(addr) = config.participants_addr {
        let latency = participants::Latency::of(&config);
        tokio::spawn(async move {
            if let Err(error) = participants::serve(addr, latency).await {
                eprintln!("fake participants on {addr}: {error:#}");
            }
        });
    }
    if config.soak {
        let base = config.url.trim_end_matches('/').to_owned();
        let http = ready_client(&base, config.clients.max(64), config.token.as_deref()).await?;
        return soak::run(&config, http, &base).await;
    }
    if let Some(rate) = config.saga_rate {
        return saga::run(&config, rate).await;
    }
    if let (Some(primary), Some(replica)) =
        (&config.reports_primary_url, &config.reports_replica_url)
    {
        return reports::run(&config, primary, replica).await;
    }
    if let Some(addr) = config.catalog_addr {
        return catalog::run(&config, addr).await;
    }
    let base = config.url.trim_end_matches('/').to_owned();
    let http = ready_client(&base, config.clients, config.token.as_deref()).await?;
    let pool = db::pool(
        config.database.database_url.clone(),
        config.clients as u32,
        Duration::from_secs(10),
    );

    println!(
        "bench: {} clients, {:?} per phase, service {base}",
        config.clients, config.duration
    );
    println!(
        "{:<16} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8}",
        "phase", "ok", "errors", "per_sec", "p50_ms", "p95_ms", "p99_ms"
    );

    let started = chrono::Utc::now();
    let (create, created) = http_creates(&http, &base, &config).await;
    create.print();
    let status = http_status_changes(&http, &base, &config, created).await;
    status.print();
    if !config.sinks.0.is_empty() {
        relay_figures(&pool, started, config.drain_timeout).await?;
    }
    let (raw, raw_created) = sql_creates(&pool, &config).await?;
    raw.print();
    let raw_status = sql_status_changes(&pool, &config, raw_created).await;
    raw_status.print();
    let floor = sql_floor(&pool, &config).await?;
    floor.print();
    println!(
        "ratio http/sql create {:.2}, http create/floor {:.2}, http/sql status {:.2}",
        create.rate() / raw.rate(),
        create.rate() / floor.rate(),
        status.rate() / raw_status.rate()
    );
    pool.close().await;
    Ok(())
}

/// An HTTP client for the service at `base`, once it reports ready; with `token`, every
/// request carries it as a bearer token.
async fn ready_client(
    base: &str,
    idle_connections: usize,
    token: Option<&str>,
) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the bench token is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(idle_connections)
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()?;
    http.get(format!("{base}/readyz"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("the service at {base} is not ready"))?;
    Ok(http)
}

/// Runs `clients` copies of `step` until the phase ends; each step returns its outcome.
async fn phase<S, F, T>(
    name: &'static str,
    clients: usize,
    duration: Duration,
    step: S,
) -> (PhaseResult, Vec<T>)
where
    S: Fn(usize, u64) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Option<T>, anyhow::Error>> + Send,
    T: Send + 'static,
{
    let step = Arc::new(step);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let step = step.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut ok, mut errors, mut outputs, mut n) = (0u64, 0u64, Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match step(client, n).await {
                    Ok(output) => {
                        ok += 1;
                        outputs.extend(output);
                        let _ = latency.record(t.elapsed().as_micros() as u64);
                    }
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (ok, errors, latency, outputs)
        }));
    }
    let mut result = PhaseResult {
        name,
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    };
    let mut outputs = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let Ok((ok, errors, latency, out)) = task else {
            continue;
        };
        result.ok += ok;
        result.errors += errors;
        let _ = result.latency_us.add(latency);
        outputs.extend(out);
    }
    result.elapsed = started.elapsed();
    (result, outputs)
}

async fn http_creates(
    http: &reqwest::Client,
    base: &str,
    config: &BenchConfig,
) -> (PhaseResult, Vec<(usize, Uuid)>) {
    let http = http.clone();
    let url = format!("{base}/v1/orders");
    phase(
        "http create",
        config.clients,
        config.duration,
        move |client, n| {
            let request = http
                .post(&url)
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&order_body(client, n));
            async move {
                let response = request.send().await?.error_for_status()?;
                let order: serde_json::Value = response.json().await?;
                let id = order["id"].as_str().context("no id")?.parse()?;
                Ok(Some((client, id)))
            }
        },
    )
    .await
}

const LIFECYCLE: [&str; 4] = ["CONFIRMED", "PROCESSING", "SHIPPED", "DELIVERED"];
const LIFECYCLE_STATUSES: [OrderStatus; 4] = [
    OrderStatus::Confirmed,
    OrderStatus::Processing,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
];

/// The created orders of each client.
fn by_client(created: Vec<(usize, Uuid)>, clients: usize) -> Vec<Vec<Uuid>> {
    let mut per_client = vec![Vec::new(); clients];
    for (client, id) in created {
        per_client[client].push(id);
    }
    per_client
}

/// Each client walks its own orders through the lifecycle, one transition per request.
async fn http_status_changes(
    http: &reqwest::Client,
    base: &str,
    config: &BenchConfig,
    created: Vec<(usize, Uuid)>,
) -> PhaseResult {
    let per_client = Arc::new(by_client(created, config.clients));
    let http = http.clone();
    let base = base.to_owned();
    let (result, _) = phase::<_, _, ()>(
        "http status",
        config.clients,
        config.duration,
        move |client, n| {
            let orders = &per_client[client];
            let steps = orders.len() as u64 * LIFECYCLE.len() as u64;
            let request = (steps > 0 && n < steps).then(|| {
                let id = orders[(n / LIFECYCLE.len() as u64) as usize];
                let step = (n % LIFECYCLE.len() as u64) as usize;
                http.post(format!("{base}/v1/orders/{id}/status"))
                    .header("if-match", format!("\"{}\"", step + 1))
                    .json(&json!({"status": LIFECYCLE[step], "reason": "bench"}))
            });
            async move {
                let request = request.context("no orders left to move")?;
                request.send().await?.error_for_status()?;
                Ok(None)
            }
        },
    )
    .await;
    result
}

/// Lag from commit to delivery of one sink, in seconds.
#[derive(sqlx::FromRow)]
struct SinkLag {
    sink: String,
    delivered: i64,
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

/// Waits for the relay to deliver every event of the run, then prints per sink the lag from
/// commit to delivery (p50, p99, max) and how long the backlog took to drain after the load.
async fn relay_figures(
    pool: &sqlx::PgPool,
    since: chrono::DateTime<chrono::Utc>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let load_ended = Instant::now();
    let deadline = load_ended + timeout;
    let mut peak_backlog = 0i64;
    loop {
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_deliveries WHERE state = 'pending'")
                .fetch_one(pool)
                .await?;
        peak_backlog = peak_backlog.max(backlog);
        if backlog == 0 {
            break;
        }
        if Instant::now() > deadline {
            println!("relay: {backlog} deliveries still pending {timeout:?} after the load; figures below are partial");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "relay: backlog when the load ended {peak_backlog}, drained {:.2} s later",
        load_ended.elapsed().as_secs_f64()
    );
    let rows: Vec<SinkLag> = sqlx::query_as(
        "SELECT d.sink, count(*) AS delivered,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.delivered_at - e.created_at)) AS p50,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.delivered_at - e.created_at)) AS p99,
                max(extract(epoch FROM d.delivered_at - e.created_at))::float8 AS max
         FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_id
         WHERE d.state = 'delivered' AND e.created_at >= $1
         GROUP BY d.sink ORDER BY d.sink",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    for SinkLag {
        sink,
        delivered,
        p50,
        p99,
        max,
    } in rows
    {
        println!(
            "relay lag {sink:<8} delivered {delivered:>7}  p50 {:.3} s  p99 {:.3} s  max {:.3} s",
            p50.unwrap_or(0.0),
            p99.unwrap_or(0.0),
            max.unwrap_or(0.0)
        );
    }
    Ok(())
}

/// The handler's create without HTTP: parse the body into the domain's order, build the
/// stored order and its event, and write them with the one statement (`db::create`).
async fn sql_creates(
    pool: &sqlx::PgPool,
    config: &BenchConfig,
) -> anyhow::Result<(PhaseResult, Vec<(usize, Uuid)>)> {
    let sinks: Arc<[Sink]> = config.sinks.0.clone().into();
    let pool = pool.clone();
    Ok(phase(
        "sql create",
        config.clients,
        config.duration,
        move |client, n| {
            let pool = pool.clone();
            let sinks = sinks.clone();
            async move {
                let body = order_body(client, n);
                let fingerprint = RequestFingerprint::of_json(&body);
                let new = from_json_value::<CreateOrderRequest>(body)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .parse(None)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let order = new.into_pending(Uuid::now_v7(), Uuid::now_v7(), chrono::Utc::now());
                let id = order.id;
                write_order(&pool, &order, &fingerprint, &sinks).await?;
                Ok(Some((client, id)))
            }
        },
    )
    .await)
}

/// The floor: the same rows through the same prepared statement, with everything but the ids
/// built before the phase, so what is left is PostgreSQL's work and one round trip.
async fn sql_floor(pool: &sqlx::PgPool, config: &BenchConfig) -> anyhow::Result<PhaseResult> {
    let orders: Vec<Order> = (0..config.clients)
        .map(|client| {
            let new = from_json_value::<CreateOrderRequest>(order_body(client, 0))?.parse(None)?;
            Ok(new.into_pending(Uuid::nil(), Uuid::nil(), chrono::Utc::now()))
        })
        .collect::<Result<_, crate::http::error::ApiError>>()
        .map_err(|e| anyhow::anyhow!("bench order is invalid: {e}"))?;
    let fingerprint = RequestFingerprint::of_json(&order_body(0, 0));
    let (orders, fingerprint) = (Arc::new(orders), Arc::new(fingerprint));
    let sinks: Arc<[Sink]> = config.sinks.0.clone().into();
    let pool = pool.clone();
    let (result, _) = phase::<_, _, ()>(
        "sql floor",
        config.clients,
        config.duration,
        move |client, _| {
            let (pool, orders, fingerprint, sinks) = (
                pool.clone(),
                orders.clone(),
                fingerprint.clone(),
                sinks.clone(),
            );
            async move {
                let mut order = orders[client].clone();
                order.id = Uuid::now_v7();
                order.payment.id = Uuid::now_v7();
                write_order(&pool, &order, &fingerprint, &sinks).await?;
                Ok(None)
            }
        },
    )
    .await;
    Ok(result)
}

/// One create statement for `order` under a new key.
async fn write_order(
    pool: &sqlx::PgPool,
    order: &Order,
    fingerprint: &RequestFingerprint,
    sinks: &[Sink],
) -> anyhow::Result<()> {
    let key = IdempotencyKey::parse(&Uuid::new_v4().to_string()).map_err(anyhow::Error::msg)?;
    let event = EventEnvelope::order_created(order, ACTOR_API, None);
    let record = db::create::NewOrderRecord {
        key: &key,
        fingerprint,
        key_ttl: Duration::from_secs(86_400),
        order,
        event: &event,
        sinks,
        saga: false,
    };
    let mut conn = pool.acquire().await?;
    anyhow::ensure!(db::create::create(&mut conn, &record).await?.is_some());
    Ok(())
}

/// The status statement without HTTP: each client walks its orders of the `sql create` phase
/// through the lifecycle, one `db::status_change` per step.
async fn sql_status_changes(
    pool: &sqlx::PgPool,
    config: &BenchConfig,
    created: Vec<(usize, Uuid)>,
) -> PhaseResult {
    let per_client = Arc::new(by_client(created, config.clients));
    let sinks: Arc<[Sink]> = config.sinks.0.clone().into();
    let pool = pool.clone();
    let (result, _) = phase::<_, _, ()>(
        "sql status",
        config.clients,
        config.duration,
        move |client, n| {
            let orders = per_client.clone();
            let (pool, sinks) = (pool.clone(), sinks.clone());
            async move {
                let orders = &orders[client];
                let at = (n / LIFECYCLE.len() as u64) as usize;
                let id = *orders.get(at).context("no orders left to move")?;
                let step = (n % LIFECYCLE.len() as u64) as usize;
                let to = LIFECYCLE_STATUSES[step];
                let change = db::status_change::StatusChange {
                    reason: Some("bench"),
                    versions: Some(vec![step as i64 + 1]),
                    ..db::status_change::StatusChange::new(id, to, ACTOR_API, &sinks)
                };
                let mut conn = pool.acquire().await?;
                match db::status_change::change(&mut conn, &change).await? {
                    db::status_change::Outcome::Changed { .. } => Ok(None),
                    _ => anyhow::bail!("order {id} did not move to {to}"),
                }
            }
        },
    )
    .await;
    result
}
