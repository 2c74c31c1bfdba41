//! `order-operator run`: probes, leader election, then the controller until a signal (or a
//! lost Lease, which exits non-zero so the pod restarts as a standby).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use kube::runtime::events::Reporter;
use kube::Client;
use tokio::sync::oneshot;

use crate::config::RunConfig;
use crate::controller::{self, Context};
use crate::http::{self, Probes};
use crate::leader;
use crate::metrics::Metrics;

pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config, or KUBECONFIG)")?;
    let version = client
        .apiserver_version()
        .await
        .context("asking the apiserver for its version")?;
    tracing::info!(server = %version.git_version, "connected to the apiserver");

    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("binding {}", config.metrics_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /livez, /readyz and /metrics");
    let probes = http::router(Probes {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, probes).await });

    let identity = config.identity.clone().unwrap_or_else(default_identity);
    let lease_namespace = config
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let (mut leading, _election) = leader::elect(
        client.clone(),
        &lease_namespace,
        &config.lease_name,
        &identity,
        config.lease_duration,
    )
    .await?;
    ready.store(true, Ordering::SeqCst);
    tracing::info!(%identity, lease = %config.lease_name, namespace = %lease_namespace, "waiting for leadership");

    let mut shutdown = Box::pin(shutdown_signal());
    while !*leading.borrow_and_update() {
        tokio::select! {
            changed = leading.changed() => changed.context("leader election stopped")?,
            () = &mut shutdown => return Ok(()),
        }
    }
    metrics.set_leader(true);
    tracing::info!(%identity, "leading: starting the controller");

    // The controller wants a Send + Sync trigger; a oneshot fired by either cause gives one.
    let (stop_tx, stop_rx) = oneshot::channel::<bool>();
    let watcher = tokio::spawn(async move {
        let lost = async {
            while leading.changed().await.is_ok() {
                if !*leading.borrow() {
                    return;
                }
            }
        };
        let lost_lease = tokio::select! {
            () = lost => true,
            () = shutdown => false,
        };
        let _ = stop_tx.send(lost_lease);
    });
    let (lost_tx, lost_rx) = oneshot::channel::<bool>();
    let trigger = async move {
        let lost = stop_rx.await.unwrap_or(false);
        let _ = lost_tx.send(lost);
    };
    let ctx = Arc::new(
        Context::new(
            client,
            Reporter {
                controller: "order-operator".into(),
                instance: Some(identity),
            },
            metrics.clone(),
            config.resync,
        )
        .with_provision_timeout(config.provision_timeout)
        .with_cleanup_timeout(config.cleanup_timeout)
        .with_service_url(config.service_url.clone()),
    );
    controller::run(ctx, config.watch_namespace.clone(), trigger).await;
    watcher.abort();
    metrics.set_leader(false);
    if lost_rx.await.unwrap_or(false) {
        anyhow::bail!("lost the leader Lease: exiting so that this replica restarts as a standby");
    }
    tracing::info!("stopped");
    Ok(())
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "order-operator".into());
    format!("{host}-{}", std::process::id())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
