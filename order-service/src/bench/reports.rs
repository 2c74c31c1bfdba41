//! The reporting benchmark: order creation at `--clients` alone, then with `--report-clients`
//! hammering the reports of a service that reads them from the primary, then of one that reads
//! them from the read replica. What the replica buys is the create p99 staying near the
//! baseline while reports run.

use std::time::Duration;

use anyhow::Context;

use super::{http_creates, phase, ready_client, BenchConfig, PhaseResult};

/// Sales per day and the top products over the last 30 days, alternately.
async fn report_load(
    http: &reqwest::Client,
    base: &str,
    clients: usize,
    duration: Duration,
) -> PhaseResult {
    let http = http.clone();
    let base = base.to_owned();
    let (result, _) = phase::<_, _, ()>("reports", clients, duration, move |_, n| {
        let to = chrono::Utc::now() + chrono::Duration::minutes(1);
        let from = to - chrono::Duration::days(30);
        let (from, to) = (from.to_rfc3339(), to.to_rfc3339());
        let path = if n % 2 == 0 { "sales" } else { "top-products" };
        let request = http
            .get(format!("{base}/v1/reports/{path}"))
            .query(&[("from", from.as_str()), ("to", to.as_str())]);
        async move {
            request.send().await?.error_for_status()?;
            Ok(None)
        }
    })
    .await;
    result
}

pub async fn run(config: &BenchConfig, on_primary: &str, on_replica: &str) -> anyhow::Result<()> {
    let base = config.url.trim_end_matches('/').to_owned();
    let http = ready_client(&base, config.clients, config.token.as_deref()).await?;
    for url in [on_primary, on_replica] {
        ready_client(url, 1, config.token.as_deref())
            .await
            .with_context(|| format!("the reporting service at {url}"))?;
    }
    println!(
        "bench reports: {} creating clients, {} report clients, {:?} per phase; creates on {base}, \
         reports from the primary via {on_primary}, from the replica via {on_replica}",
        config.clients, config.report_clients, config.duration
    );
    println!(
        "{:<28} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8}",
        "phase", "ok", "errors", "per_sec", "p50_ms", "p95_ms", "p99_ms"
    );
    let (baseline, _) = http_creates(&http, &base, config).await;
    baseline.print_as("creates, no reports", 28);
    let mut p99s = Vec::new();
    for (label, url) in [("primary", on_primary), ("replica", on_replica)] {
        let ((creates, _), reports) = tokio::join!(
            http_creates(&http, &base, config),
            report_load(&http, url, config.report_clients, config.duration),
        );
        creates.print_as(&format!("creates, reports on {label}"), 28);
        reports.print_as(&format!("reports on {label}"), 28);
        p99s.push((label, p99_ms(&creates)));
    }
    let base_p99 = p99_ms(&baseline);
    for (label, p99) in p99s {
        println!(
            "create p99 with reports on the {label}: {p99:.2} ms, {:+.1} % against {base_p99:.2} ms without reports",
            (p99 / base_p99 - 1.0) * 100.0
        );
    }
    Ok(())
}

fn p99_ms(result: &PhaseResult) -> f64 {
    result.latency_us.value_at_quantile(0.99) as f64 / 1000.0
}
