//! Leader election on a Lease, through kube-lease-manager (kube-rs has none built in): only the
//! holder reconciles; a standby takes over once the holder stops renewing.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// Watches leadership; the receiver holds `true` while this process leads.
pub async fn elect(
    client: Client,
    namespace: &str,
    lease_name: &str,
    identity: &str,
    duration: Duration,
) -> anyhow::Result<(watch::Receiver<bool>, tokio::task::JoinHandle<()>)> {
    let seconds = duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, lease_name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(seconds)
        .with_grace((seconds / 3).max(1))
        .build()
        .await?;
    let (channel, task) = manager.watch().await;
    let task = tokio::spawn(async move {
        if let Ok(Err(error)) = task.await {
            tracing::error!(error = %error, "leader election stopped");
        }
    });
    Ok((channel, task))
}
