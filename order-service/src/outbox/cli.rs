//! `order-service outbox parked|retry|drop`: what a sink refused for good, sending it again,
//! or giving up on it.

use clap::Subcommand;

use crate::db::{self, DatabaseConfig};

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List parked deliveries with their errors.
    Parked(DatabaseConfig),
    /// Make parked deliveries pending again (after fixing their cause).
    Retry {
        #[command(flatten)]
        database: DatabaseConfig,
        /// Only this event's deliveries; without it, every parked delivery.
        #[arg(long)]
        event_id: Option<uuid::Uuid>,
    },
    /// Give up on parked deliveries that will never succeed (after recording what they were,
    /// e.g. with `outbox parked`): their events are then deleted with the delivered ones after
    /// the outbox retention. Needs `--event-id` or `--all`.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["event_id", "all"])))]
    Drop {
        #[command(flatten)]
        database: DatabaseConfig,
        /// Only this event's parked deliveries.
        #[arg(long)]
        event_id: Option<uuid::Uuid>,
        /// Every parked delivery.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(command: OutboxCommand) -> anyhow::Result<()> {
    match command {
        OutboxCommand::Parked(database) => {
            let mut conn = connect(&database).await?;
            let parked = db::outbox::list_parked(&mut conn).await?;
            if parked.is_empty() {
                println!("no parked deliveries");
            }
            for p in parked {
                println!(
                    "{}  {:<8}  {:<22}  order {} v{}  attempts {}  {}\n    {}",
                    p.event_id,
                    p.sink,
                    p.event_type,
                    p.order_id,
                    p.order_version,
                    p.attempts,
                    p.created_at.to_rfc3339(),
                    p.last_error.unwrap_or_default()
                );
            }
        }
        OutboxCommand::Retry { database, event_id } => {
            let mut conn = connect(&database).await?;
            let count = db::outbox::retry_parked(&mut conn, event_id).await?;
            println!("{count} parked deliveries are pending again");
        }
        OutboxCommand::Drop {
            database, event_id, ..
        } => {
            let mut conn = connect(&database).await?;
            let count = db::outbox::drop_parked(&mut conn, event_id).await?;
            println!(
                "{count} parked deliveries dropped; their events go with the outbox retention"
            );
        }
    }
    Ok(())
}

async fn connect(
    database: &DatabaseConfig,
) -> anyhow::Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let pool = db::pool(
        database.database_url.clone(),
        1,
        database.db_acquire_timeout,
    );
    Ok(pool.acquire().await?)
}
