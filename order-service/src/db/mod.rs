//! PostgreSQL access: one function per query, each taking a connection or transaction.
//!
//! Handlers own the transaction; these functions only run SQL and map rows to domain types.

pub mod idempotency;
pub mod orders;
pub mod outbox;
pub mod sagas;
pub mod schema;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The migrations under `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pool that connects lazily, so the service starts (and reports not ready) while the
/// database is still coming up.
pub fn pool(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options)
}
