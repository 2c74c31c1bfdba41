//! The saga benchmark: orders created at a fixed rate (open loop) against a service whose
//! participants are fakes answering after a fixed delay; figures from the database's own
//! timestamps (order created → saga finished), so polling does not distort them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

use super::{order_body, BenchConfig};
use crate::db;

pub async fn run(config: &BenchConfig, rate: f64) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "--saga-rate must be positive");
    let base = config.url.trim_end_matches('/').to_owned();
    let http = super::ready_client(&base, 256, config.token.as_deref()).await?;
    let pool = db::pool(
        config.database.database_url.clone(),
        4,
        Duration::from_secs(10),
    );
    let slow = match &config.slow_participant {
        Some(which) => format!(
            "; {which} slow ({:?}) for {:.0} % of its calls",
            config.slow_latency,
            config.slow_fraction * 100.0
        ),
        None => String::new(),
    };
    println!(
        "saga bench: {rate} orders/s for {:?}, participants answering in {:?}{slow}, service {base}",
        config.duration, config.participant_latency
    );

    let started_at: DateTime<Utc> = Utc::now();
    let started = Instant::now();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut requests = tokio::task::JoinSet::new();
    while started.elapsed() < config.duration {
        ticks.tick().await;
        sent += 1;
        let (http, base, errors) = (http.clone(), base.clone(), errors.clone());
        requests.spawn(async move {
            let ok = http
                .post(format!("{base}/v1/orders"))
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&order_body(0, sent))
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED);
            if !ok {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while requests.join_next().await.is_some() {}
    let window = started.elapsed();
    let window_end = started_at + chrono::Duration::from_std(window)?;

    let unfinished_at_end: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sagas s JOIN orders o ON o.id = s.order_id
         WHERE o.created_at >= $1 AND (s.state IN ('RUNNING', 'COMPENSATING') OR s.updated_at > $2)",
    )
    .bind(started_at)
    .bind(window_end)
    .fetch_one(&pool)
    .await?;
    // Let the rest finish, for complete latency figures.
    let deadline = Instant::now() + config.drain_timeout;
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sagas s JOIN orders o ON o.id = s.order_id
             WHERE o.created_at >= $1 AND s.state IN ('RUNNING', 'COMPENSATING')",
        )
        .bind(started_at)
        .fetch_one(&pool)
        .await?;
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, f64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT s.state, extract(epoch FROM s.updated_at - o.created_at)::float8, s.updated_at
         FROM sagas s JOIN orders o ON o.id = s.order_id WHERE o.created_at >= $1",
    )
    .bind(started_at)
    .fetch_all(&pool)
    .await?;
    let mut latency_ms = Histogram::<u64>::new(3)?;
    let mut confirmed_in_window = 0u64;
    let mut cancelled = 0u64;
    for (state, seconds, finished_at) in &rows {
        match state.as_str() {
            "CONFIRMED" => {
                latency_ms.record((seconds * 1000.0).round().max(0.0) as u64)?;
                if *finished_at <= window_end {
                    confirmed_in_window += 1;
                }
            }
            "CANCELLED" => cancelled += 1,
            _ => {}
        }
    }
    let errors = errors.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "created: {} of {sent} sent ({errors} errors), {:.1}/s",
        rows.len(),
        rows.len() as f64 / window.as_secs_f64()
    );
    println!(
        "confirmed within the window: {confirmed_in_window} ({:.1}/s); cancelled: {cancelled}; not finished when the load stopped: {unfinished_at_end}",
        confirmed_in_window as f64 / window.as_secs_f64()
    );
    println!(
        "create -> CONFIRMED: p50 {} ms, p99 {} ms, max {} ms ({} sagas)",
        latency_ms.value_at_quantile(0.5),
        latency_ms.value_at_quantile(0.99),
        latency_ms.max(),
        latency_ms.len()
    );
    pool.close().await;
    Ok(())
}
