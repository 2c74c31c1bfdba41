//! The catalog benchmark: creates priced from a catalog served in this process (`--catalog-skus`
//! products, popularity Zipf-like), first with the service's cache cold, then warm, against the
//! same create statement run directly (the raw-SQL floor of `make bench`). Prints the rates,
//! the cache's hit ratio per phase (from the service's metrics) and the lookups the catalog
//! served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{phase, ready_client, relay_figures, write_order, BenchConfig, PhaseResult};
use crate::db;
use crate::domain::RequestFingerprint;
use crate::http::extract::from_json_value;
use crate::http::orders::CreateOrderRequest;
use crate::outbox::sink::Sink;

/// The catalog's products: SKU `P-<rank>`, rank 1 the most popular.
struct Shelf {
    /// Cumulative popularity of ranks 1..=n (weight 1/rank^exponent), normalised to 1.
    cumulative: Vec<f64>,
    lookups: AtomicU64,
    latency: Duration,
}

impl Shelf {
    fn new(skus: usize, exponent: f64, latency: Duration) -> Self {
        let weights: Vec<f64> = (1..=skus.max(1))
            .map(|rank| 1.0 / (rank as f64).powf(exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                sum += w / total;
                sum
            })
            .collect();
        Self {
            cumulative,
            lookups: AtomicU64::new(0),
            latency,
        }
    }

    /// A rank drawn by popularity.
    fn draw(&self) -> usize {
        let u: f64 = rand::rng().random();
        self.cumulative
            .partition_point(|c| *c < u)
            .min(self.cumulative.len() - 1)
            + 1
    }

    fn price(rank: usize) -> i64 {
        100 + (rank as i64 * 37) % 10_000
    }

    fn product(rank: usize) -> Value {
        json!({"sku": format!("P-{rank}"), "name": format!("Product {rank}"),
               "unit_price_minor": Self::price(rank), "currency": "EUR", "active": true})
    }

    /// The batch lookup (docs/participants.md): every `P-<rank>` of the range is known.
    async fn lookup(&self, body: Value) -> Json<Value> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
        let products: Vec<Value> = body["skus"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|sku| sku.as_str()?.strip_prefix("P-")?.parse::<usize>().ok())
            .filter(|rank| (1..=self.cumulative.len()).contains(rank))
            .map(Self::product)
            .collect();
        Json(json!({ "products": products }))
    }
}

/// Two lines drawn by popularity; with `priced`, names and prices as the catalog has them
/// (for the direct phase, which has no catalog).
fn order_body(shelf: &Shelf, client: usize, priced: bool) -> Value {
    let line = |rank: usize, quantity: i64| {
        let mut line = json!({"sku": format!("P-{rank}"), "quantity": quantity});
        if priced {
            line["name"] = json!(format!("Product {rank}"));
            line["unit_price_minor"] = json!(Shelf::price(rank));
        }
        line
    };
    json!({
        "customer_id": format!("bench-{client}"),
        "currency": "EUR",
        "items": [line(shelf.draw(), 2), line(shelf.draw(), 1)],
        "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "shipping_minor": 490,
        "payment": {"method": "card"}
    })
}

/// Cache hits and misses so far, from the service's metrics.
async fn lookups(http: &reqwest::Client, base: &str) -> anyhow::Result<(f64, f64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let count = |result: &str| {
        let prefix = format!("order_service_catalog_cache_lookups_total{{result=\"{result}\"}}");
        text.lines()
            .find(|line| line.starts_with(&prefix))
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((count("hit"), count("miss")))
}

async fn http_creates(
    name: &'static str,
    http: &reqwest::Client,
    base: &str,
    shelf: &Arc<Shelf>,
    clients: usize,
    duration: Duration,
) -> PhaseResult {
    let http = http.clone();
    let url = format!("{base}/v1/orders");
    let shelf = shelf.clone();
    let (result, _) = phase::<_, _, ()>(name, clients, duration, move |client, _| {
        let request = http
            .post(&url)
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&order_body(&shelf, client, false));
        async move {
            request.send().await?.error_for_status()?;
            Ok(None)
        }
    })
    .await;
    result
}

pub async fn run(config: &BenchConfig, addr: SocketAddr) -> anyhow::Result<()> {
    let shelf = Arc::new(Shelf::new(
        config.catalog_skus,
        config.zipf_exponent,
        config.catalog_latency,
    ));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("serving the catalog on {addr}"))?;
    let served = shelf.clone();
    let router = Router::new().route(
        "/v1/products/lookup",
        post(move |Json(body): Json<Value>| {
            let shelf = served.clone();
            async move { shelf.lookup(body).await }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });

    let base = config.url.trim_end_matches('/').to_owned();
    let http = ready_client(&base, config.clients, config.token.as_deref()).await?;
    println!(
        "bench catalog: {} clients, {} SKUs (Zipf exponent {}), catalog answering in {:?}, cold phase {:?}, warm phase {:?}, service {base}",
        config.clients,
        config.catalog_skus,
        config.zipf_exponent,
        config.catalog_latency,
        config.cold_duration,
        config.duration
    );
    println!(
        "{:<16} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "phase", "ok", "errors", "per_sec", "p50_ms", "p95_ms", "p99_ms", "hit_ratio", "lookups"
    );
    let report = |result: &PhaseResult, before: (f64, f64), after: (f64, f64), calls: u64| {
        let (hits, misses) = (after.0 - before.0, after.1 - before.1);
        let ratio = if hits + misses > 0.0 {
            hits / (hits + misses)
        } else {
            0.0
        };
        result.print_without_newline();
        println!(" {ratio:>9.3} {calls:>8}");
    };

    let started = chrono::Utc::now();
    let start = lookups(&http, &base).await?;
    let calls = shelf.lookups.load(Ordering::Relaxed);
    let cold = http_creates(
        "http cold cache",
        &http,
        &base,
        &shelf,
        config.clients,
        config.cold_duration,
    )
    .await;
    let after_cold = lookups(&http, &base).await?;
    let cold_calls = shelf.lookups.load(Ordering::Relaxed) - calls;
    report(&cold, start, after_cold, cold_calls);

    let warm = http_creates(
        "http warm cache",
        &http,
        &base,
        &shelf,
        config.clients,
        config.duration,
    )
    .await;
    let after_warm = lookups(&http, &base).await?;
    let warm_calls = shelf.lookups.load(Ordering::Relaxed) - calls - cold_calls;
    report(&warm, after_cold, after_warm, warm_calls);

    // The same statement, priced from the body: what the service adds is HTTP, JSON,
    // validation and the catalog lookup.
    let pool = db::pool(
        config.database.database_url.clone(),
        config.clients as u32,
        Duration::from_secs(10),
    );
    // The relay's backlog drained first, so the direct phase does not share the machine with it.
    if !config.sinks.0.is_empty() {
        relay_figures(&pool, started, config.drain_timeout).await?;
    }
    let sinks: Arc<[Sink]> = config.sinks.0.clone().into();
    let (raw, _) = {
        let pool = pool.clone();
        let shelf = shelf.clone();
        phase::<_, _, ()>(
            "sql create",
            config.clients,
            config.duration,
            move |client, _| {
                let pool = pool.clone();
                let sinks = sinks.clone();
                let body = order_body(&shelf, client, true);
                async move {
                    let fingerprint = RequestFingerprint::of_json(&body);
                    let new = from_json_value::<CreateOrderRequest>(body)
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .parse(None)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let order =
                        new.into_pending(Uuid::now_v7(), Uuid::now_v7(), chrono::Utc::now());
                    write_order(&pool, &order, &fingerprint, &sinks).await?;
                    Ok(None)
                }
            },
        )
        .await
    };
    raw.print();
    let overall =
        (after_warm.0 - start.0) / ((after_warm.0 - start.0) + (after_warm.1 - start.1)).max(1.0);
    println!(
        "ratio warm-cache http/sql create {:.2}, cold-cache http/sql create {:.2}; hit ratio of the whole run {:.3}",
        warm.rate() / raw.rate(),
        cold.rate() / raw.rate(),
        overall
    );
    pool.close().await;
    Ok(())
}
