//! `order-service sagas --stuck --older-than 10m`: sagas that are not moving, and why.

use std::time::Duration;

use clap::Args;

use crate::db;
use crate::db::DatabaseConfig;

#[derive(Debug, Clone, Args)]
pub struct SagasArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// List unfinished sagas that have not changed for `--older-than`.
    #[arg(long)]
    pub stuck: bool,
    /// How long without a change counts as stuck.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub older_than: Duration,
    /// Most sagas listed.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

/// Prints the stuck sagas; true when there are any (the command then exits 1).
pub async fn stuck(args: &SagasArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.stuck, "say what to list: --stuck");
    let pool = db::pool(
        args.database.database_url.clone(),
        1,
        args.database.db_acquire_timeout,
    );
    let mut conn = pool.acquire().await?;
    let sagas = db::sagas::stuck(&mut conn, args.older_than, args.limit).await?;
    if sagas.is_empty() {
        println!(
            "no saga has been stuck for more than {}",
            humantime::format_duration(args.older_than)
        );
        return Ok(false);
    }
    println!(
        "{:<36}  {:<12}  {:<17}  {:<19}  {:>8}  {:<19}  why",
        "order", "state", "step", "at this step since", "attempts", "next attempt (UTC)"
    );
    for saga in &sagas {
        let why = saga
            .last_error
            .as_deref()
            .or(saga.cancel_reason.as_deref())
            .unwrap_or("no error recorded: no worker has claimed it (are saga workers running?)");
        println!(
            "{:<36}  {:<12}  {:<17}  {:<19}  {:>8}  {:<19}  {why}",
            saga.order_id,
            saga.state.as_str(),
            saga.step.as_str(),
            saga.step_since.format("%Y-%m-%d %H:%M:%S"),
            saga.attempts,
            saga.next_attempt_at.format("%Y-%m-%d %H:%M:%S"),
        );
    }
    Ok(true)
}
