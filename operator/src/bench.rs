//! `order-operator bench`: N OrderPlatforms created at once against a real apiserver; how long
//! until all are Ready, reconciles per second, reconcile latency and peak memory. The
//! controller runs in this process (watching only the bench namespace), so the memory figure
//! is the operator plus one small client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;

use crate::controller::{self, Context};
use crate::crd::OrderPlatform;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// OrderPlatforms to create at once.
    #[arg(long, default_value_t = 200)]
    pub platforms: usize,
    /// Give up after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(config: BenchConfig) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (KUBECONFIG)")?;
    install_crd(&client).await?;
    let namespace = format!("bench-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await
        .with_context(|| format!("creating namespace {namespace}"))?;
    let result = measure(&client, &namespace, &config).await;
    namespaces
        .delete(&namespace, &DeleteParams::background())
        .await
        .ok();
    result
}

async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = OrderPlatform::crd();
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply("order-operator-bench").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let name = crd.name_any();
    let established = kube::runtime::wait::await_condition(
        crds,
        &name,
        kube::runtime::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(60), established)
        .await
        .context("the CRD is not established")??;
    Ok(())
}

async fn measure(client: &Client, namespace: &str, config: &BenchConfig) -> anyhow::Result<()> {
    // Each platform gets its own tables and topic on the local stack, as in production.
    let stack = |name: &str| {
        std::env::var(name).with_context(|| {
            format!("{name} is not set: run the bench with the local stack's environment (eval \"$(scripts/stack.sh env)\")")
        })
    };
    let (endpoint, brokers) = (
        stack("DYNAMODB_ENDPOINT")?,
        stack("KAFKA_BOOTSTRAP_SERVERS")?,
    );
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context::new(
        client.clone(),
        Reporter {
            controller: "order-operator".into(),
            instance: Some("bench".into()),
        },
        metrics.clone(),
        Duration::from_secs(300),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(ctx, Some(namespace.to_owned()), async {
        let _ = stopped.await;
    }));

    let platforms: Api<OrderPlatform> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    futures::stream::iter(0..config.platforms)
        .map(|i| {
            let platforms = platforms.clone();
            let (endpoint, brokers) = (endpoint.clone(), brokers.clone());
            let name = format!("{namespace}-{i}");
            async move {
                let platform: OrderPlatform = serde_json::from_value(json!({
                    "apiVersion": "platform.orders.dev/v1alpha1", "kind": "OrderPlatform",
                    "metadata": {"name": format!("shop-{i}")},
                    "spec": {"image": "registry.example/order-service:1.0.0", "replicas": 1,
                             "database": {"secretRef": {"name": "db"}},
                             "dynamodb": {"tablePrefix": name, "endpoint": endpoint},
                             "kafka": {"bootstrapServers": brokers, "eventsTopic": name, "topics": [{"name": name, "partitions": 1}]},
                             "auth": {"disabled": true}}
                }))?;
                platforms.create(&PostParams::default(), &platform).await.map(|_| ()).map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    let created = started.elapsed();
    println!(
        "bench: {} OrderPlatforms created in {:.2} s",
        config.platforms,
        created.as_secs_f64()
    );

    let deadline = started + config.timeout;
    let ready = loop {
        let list = platforms.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        if ready == config.platforms || Instant::now() > deadline {
            break ready;
        }
        // Listing 200 objects is itself apiserver load: once a second is precise enough.
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let converged = started.elapsed();
    let _ = stop.send(());
    let _ = controller.await;

    let (reconciles, p50, p99) = metrics.reconcile_summary();
    println!(
        "ready: {ready}/{} after {:.2} s",
        config.platforms,
        converged.as_secs_f64()
    );
    println!(
        "reconciles: {reconciles} ({:.1}/s)",
        reconciles as f64 / converged.as_secs_f64()
    );
    println!(
        "reconcile duration: p50 {:.1} ms, p99 {:.1} ms",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
    println!(
        "peak RSS: {:.1} MiB",
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    anyhow::ensure!(
        ready == config.platforms,
        "only {ready} of {} platforms became Ready within {:?}",
        config.platforms,
        config.timeout
    );
    Ok(())
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
