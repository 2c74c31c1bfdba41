//! The soak benchmark (`order-service bench --soak`): creates for `--duration` (10 minutes and
//! more) at the highest rate the service sustains (`--clients` in a closed loop), or at
//! `--saga-rate` per second with the saga on, printing every `--report-every` that interval's
//! throughput and p99 and the rows and on-disk size of every table the retention bounds. What
//! it shows: the counts level off (rate × retention plus a clean-up interval) and p99 does not
//! drift upward. Figures are printed, never asserted (docs/performance.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use uuid::Uuid;

use super::{order_body, BenchConfig};
use crate::db;
use crate::db::retention::TableSize;

/// What the clients measured since the last report.
struct Interval {
    latency_us: Histogram<u64>,
    errors: u64,
}

impl Interval {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            errors: 0,
        }
    }
}

pub async fn run(config: &BenchConfig, http: reqwest::Client, base: &str) -> anyhow::Result<()> {
    let pool = db::pool(
        config.database.database_url.clone(),
        2,
        Duration::from_secs(10),
    );
    let load = match config.saga_rate {
        Some(rate) => format!("{rate} creates/s (open loop, saga on)"),
        None => format!("{} clients (closed loop)", config.clients),
    };
    println!(
        "soak: {load} for {:?}, a report every {:?}, service {base}",
        config.duration, config.report_every
    );
    println!(
        "{:>6} {:>9} {:>6} {:>8} {:>8}  rows (MiB): outbox_events outbox_deliveries idempotency_keys sagas",
        "minute", "creates/s", "errors", "p50_ms", "p99_ms"
    );
    let interval = Arc::new(Mutex::new(Interval::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + config.duration;
    let url = format!("{base}/v1/orders");
    let create = {
        let (http, interval, sent) = (http.clone(), interval.clone(), sent.clone());
        move |client: usize| {
            let (http, interval, sent, url) =
                (http.clone(), interval.clone(), sent.clone(), url.clone());
            async move {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let ok = http
                    .post(&url)
                    .header("idempotency-key", Uuid::new_v4().to_string())
                    .json(&order_body(client, n))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED);
                let mut interval = interval.lock().expect("lock");
                if ok {
                    let _ = interval.latency_us.record(t.elapsed().as_micros() as u64);
                } else {
                    interval.errors += 1;
                }
            }
        }
    };
    let mut load = tokio::task::JoinSet::new();
    match config.saga_rate {
        Some(rate) => {
            let create = create.clone();
            load.spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut requests = tokio::task::JoinSet::new();
                while Instant::now() < deadline {
                    ticks.tick().await;
                    requests.spawn(create(0));
                    while requests.try_join_next().is_some() {}
                }
                while requests.join_next().await.is_some() {}
            });
        }
        None => {
            for client in 0..config.clients {
                let create = create.clone();
                load.spawn(async move {
                    while Instant::now() < deadline {
                        create(client).await;
                    }
                });
            }
        }
    }

    let mut reports: Vec<(f64, Vec<TableSize>)> = Vec::new();
    let mut p99s = Vec::new();
    let mut minute = 0u32;
    let mut last = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(config.report_every.min(deadline - Instant::now())).await;
        minute += 1;
        let elapsed = last.elapsed();
        last = Instant::now();
        let done = std::mem::replace(&mut *interval.lock().expect("lock"), Interval::new());
        let mut conn = pool.acquire().await?;
        let sizes = db::retention::table_sizes(&mut conn)
            .await
            .context("reading table sizes")?;
        drop(conn);
        let ms = |q: f64| done.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let rate = done.latency_us.len() as f64 / elapsed.as_secs_f64();
        let tables: Vec<String> = sizes
            .iter()
            .map(|t| format!("{} ({:.1})", t.rows, t.bytes as f64 / 1048576.0))
            .collect();
        println!(
            "{minute:>6} {rate:>9.0} {:>6} {:>8.2} {:>8.2}  {}",
            done.errors,
            ms(0.5),
            ms(0.99),
            tables.join("  ")
        );
        p99s.push(ms(0.99));
        reports.push((rate, sizes));
    }
    while load.join_next().await.is_some() {}
    summary(&reports, &p99s);
    pool.close().await;
    Ok(())
}

/// Per table, the highest count of the first and of the second half of the run (level when
/// the second is not above the first by more than the noise of one clean-up interval), and
/// the p99 of the first and last report.
fn summary(reports: &[(f64, Vec<TableSize>)], p99s: &[f64]) {
    if reports.len() < 2 {
        println!("summary: too few reports to compare halves (run longer than two intervals)");
        return;
    }
    let half = reports.len() / 2;
    println!("summary (max rows, first half -> second half):");
    for (i, table) in reports[0].1.iter().enumerate() {
        let max = |part: &[(f64, Vec<TableSize>)]| {
            part.iter()
                .filter_map(|(_, sizes)| sizes.get(i))
                .map(|t| t.rows)
                .max()
                .unwrap_or(0)
        };
        let (first, second) = (max(&reports[..half]), max(&reports[half..]));
        let growth = if first > 0 {
            (second as f64 / first as f64 - 1.0) * 100.0
        } else {
            0.0
        };
        println!(
            "  {:<18} {first:>9} -> {second:>9} ({growth:+.1} %)",
            table.table
        );
    }
    println!(
        "  p99 first report {:.2} ms, last {:.2} ms, highest {:.2} ms",
        p99s[0],
        p99s[p99s.len() - 1],
        p99s.iter().cloned().fold(0.0, f64::max)
    );
}
