//! The PostgreSQL schema: the migrations embedded in this build (the same `migrations/` the
//! service embeds) compared with the database's `_sqlx_migrations`. Used by `plan`/`apply`;
//! in a cluster the migration Job runs `order-service migrate` instead.

use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use super::error::bounded;
use super::{CallMetrics, ProvisionError, Refusal};

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A migration of this build, or a row of `_sqlx_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    pub version: i64,
    pub description: String,
    pub checksum: Vec<u8>,
    /// For applied rows: false when it failed half-way (sqlx calls the database dirty).
    pub success: bool,
}

/// A migration still to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingMigration {
    pub version: i64,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationPlan {
    pub applied: usize,
    pub pending: Vec<PendingMigration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

/// Compares the build's migrations with the database's. Pure.
pub fn plan_migrations(embedded: &[MigrationRecord], applied: &[MigrationRecord]) -> MigrationPlan {
    let refuse = |reason, message: String| MigrationPlan {
        applied: applied.len(),
        pending: Vec::new(),
        refusal: Some(Refusal::new("PostgreSQL", reason, message)),
    };
    for row in applied {
        if !row.success {
            return refuse(
                "MigrationDirty",
                format!("migration {} ({}) failed part-way; repair the database by hand, then delete its row from _sqlx_migrations", row.version, row.description),
            );
        }
        match embedded.iter().find(|m| m.version == row.version) {
            None => {
                return refuse(
                    "DatabaseNewerThanBuild",
                    format!("the database has migration {} ({}) that this build does not know; use a newer build", row.version, row.description),
                )
            }
            Some(known) if known.checksum != row.checksum => {
                return refuse(
                    "MigrationChanged",
                    format!("migration {} ({}) was edited after it was applied", row.version, row.description),
                )
            }
            Some(_) => {}
        }
    }
    MigrationPlan {
        applied: applied.len(),
        pending: embedded
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .map(|m| PendingMigration {
                version: m.version,
                description: m.description.clone(),
            })
            .collect(),
        refusal: None,
    }
}

/// The migrations of this build.
pub fn embedded() -> Vec<MigrationRecord> {
    MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationRecord {
            version: m.version,
            description: m.description.to_string(),
            checksum: m.checksum.to_vec(),
            success: true,
        })
        .collect()
}

/// One PostgreSQL database.
pub struct SchemaProvisioner {
    pool: PgPool,
    timeout: std::time::Duration,
}

impl SchemaProvisioner {
    /// Connects lazily: the first call reports an unreachable database, within `timeout`.
    pub fn connect(url: &str, timeout: std::time::Duration) -> Result<Self, ProvisionError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect_lazy(url)
            .map_err(|e| db_error("connect", &e))?;
        Ok(Self { pool, timeout })
    }

    pub async fn plan(&self) -> Result<MigrationPlan, ProvisionError> {
        // The CLI alone reads migrations: nothing registers these calls.
        let applied = bounded(&CallMetrics::default(), "PostgreSQL", "reading _sqlx_migrations", self.timeout, async {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| db_error("reading _sqlx_migrations", &e))?;
            if exists.is_none() {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(
                "SELECT version, description, checksum, success FROM _sqlx_migrations ORDER BY version",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("reading _sqlx_migrations", &e))?;
            Ok(rows
                .iter()
                .map(|r| MigrationRecord {
                    version: r.get("version"),
                    description: r.get("description"),
                    checksum: r.get("checksum"),
                    success: r.get("success"),
                })
                .collect::<Vec<_>>())
        })
        .await?;
        Ok(plan_migrations(&embedded(), &applied))
    }

    /// Runs the pending migrations (each in its own transaction, as sqlx does). Not bounded by
    /// the call timeout: a long migration is legitimate.
    pub async fn apply(&self) -> Result<(), ProvisionError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| ProvisionError::Database {
                operation: "migrate",
                message: e.to_string(),
            })
    }
}

fn db_error(operation: &'static str, error: &sqlx::Error) -> ProvisionError {
    ProvisionError::Database {
        operation,
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: i64, checksum: u8, success: bool) -> MigrationRecord {
        MigrationRecord {
            version,
            description: format!("m{version}"),
            checksum: vec![checksum],
            success,
        }
    }

    #[test]
    fn migration_plans() {
        let build = [record(1, 1, true), record(2, 2, true)];
        let fresh = plan_migrations(&build, &[]);
        assert_eq!(
            fresh.pending.iter().map(|p| p.version).collect::<Vec<_>>(),
            [1, 2]
        );
        let half = plan_migrations(&build, &[record(1, 1, true)]);
        assert_eq!(half.pending.len(), 1);
        assert_eq!(half.applied, 1);
        let done = plan_migrations(&build, &build);
        assert!(done.pending.is_empty() && done.refusal.is_none());
        for (applied, reason) in [
            (vec![record(1, 9, true)], "MigrationChanged"),
            (vec![record(1, 1, false)], "MigrationDirty"),
            (
                vec![record(1, 1, true), record(3, 3, true)],
                "DatabaseNewerThanBuild",
            ),
        ] {
            let plan = plan_migrations(&build, &applied);
            assert_eq!(plan.refusal.map(|r| r.reason), Some(reason));
            assert!(plan.pending.is_empty());
        }
    }

    #[test]
    fn the_build_embeds_the_repositorys_migrations() {
        let count = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
            .expect("migrations dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
            })
            .count();
        assert_eq!(embedded().len(), count);
    }
}
