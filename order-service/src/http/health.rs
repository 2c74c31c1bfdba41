//! Probes: `/livez` (the process answers) and `/readyz` (it can serve orders).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::db;

/// How long a readiness probe waits for the database before calling it unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
}

/// The result of one readiness check: its state only. Why it failed (an error chain, versions)
/// goes to the log, never to the public port.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `ok` or `failed`; `disabled` for `auth` when the service runs without authentication;
    /// `lagging` for `replica` when it is further behind than allowed.
    pub status: &'static str,
    /// For `replica`: how far it is behind the primary, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    #[serde(skip)]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`; `degraded` (PostgreSQL fine, a sink down: changes queue in the outbox);
    /// `not_ready`.
    pub status: &'static str,
    pub checks: BTreeMap<&'static str, Check>,
}

/// The read replica's check, from the monitor's last reading (no query here): lagging or
/// down makes the service `degraded`, never not ready: reads fall back or are refused, as
/// configured, and orders are taken as ever.
fn replica_check(state: &AppState) -> Option<Check> {
    use crate::replica::ReplicaState;
    let (replica, max_lag) = state.reads.replica()?;
    Some(match replica {
        ReplicaState::Up { lag } => Check {
            status: if lag <= max_lag { "ok" } else { "lagging" },
            lag_seconds: Some(lag.as_secs_f64()),
            detail: None,
        },
        ReplicaState::Down => failed("not answering (see the replica monitor's log)".into()),
        ReplicaState::Unknown => failed("not measured yet".into()),
    })
}

/// The liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process is up and its runtime answers.
#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, description = "Alive", body = Liveness)))]
pub(crate) async fn livez() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// Readiness: PostgreSQL answers and its schema is at (or, during a rolling upgrade, past) the
/// newest migration in this binary. DynamoDB and Kafka are reported too; their outage makes
/// the service `degraded` (still 200: writes go on and queue in the outbox) unless
/// `--readiness-requires-sinks` is set. With a read replica configured, `replica` shows its
/// lag; lagging or down makes the service `degraded`, never not ready. `auth` shows whether bearer tokens are required
/// (`ok`) or authentication is `disabled`.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "`ready` or `degraded`", body = Readiness),
    (status = 503, description = "`not_ready`", body = Readiness)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (database, dynamodb, kafka) = tokio::join!(
        check_database(&state),
        optional_check(
            state
                .projections
                .dynamodb
                .as_ref()
                .map(|d| d.history.check())
        ),
        optional_check(state.projections.kafka.as_ref().map(|k| k.check())),
    );
    let (postgres, schema) = database;
    let core_ok = postgres.status == "ok" && schema.status == "ok";
    let sinks: Vec<(&'static str, Check)> = [("dynamodb", dynamodb), ("kafka", kafka)]
        .into_iter()
        .filter_map(|(name, check)| check.map(|c| (name, c)))
        .collect();
    let replica = replica_check(&state);
    let sinks_ok = sinks.iter().all(|(_, c)| c.status == "ok");
    let replica_ok = replica.as_ref().is_none_or(|c| c.status == "ok");

    let mut checks = BTreeMap::from([("postgres", postgres), ("schema", schema)]);
    checks.extend(sinks);
    checks.extend(replica.map(|c| ("replica", c)));
    for (name, check) in &checks {
        if check.status != "ok" {
            tracing::warn!(
                check = name,
                detail = check.detail.as_deref().unwrap_or(""),
                "readiness check failed"
            );
        }
    }
    // Shown, not judged: running without authentication is a choice made at start-up.
    checks.insert(
        "auth",
        Check {
            status: if state.access.is_enabled() {
                "ok"
            } else {
                "disabled"
            },
            lag_seconds: None,
            detail: None,
        },
    );
    let (status, label) = match (core_ok, sinks_ok, replica_ok) {
        (true, true, true) => (StatusCode::OK, "ready"),
        (true, false, _) if state.readiness_requires_sinks => {
            (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
        }
        (true, _, _) => (StatusCode::OK, "degraded"),
        (false, _, _) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    (
        status,
        Json(Readiness {
            status: label,
            checks,
        }),
    )
}

async fn check_database(state: &AppState) -> (Check, Check) {
    let expected = db::schema::expected_version();
    let observed = tokio::time::timeout(CHECK_TIMEOUT, async {
        let mut conn = state.pool.acquire().await?;
        db::schema::applied_version(&mut conn).await
    })
    .await;
    match observed {
        Err(_) => (
            failed(format!("no answer within {CHECK_TIMEOUT:?}")),
            skipped(),
        ),
        Ok(Err(error)) => (failed(crate::telemetry::error_chain(&error)), skipped()),
        Ok(Ok(applied)) => (ok(None), schema_check(applied, expected)),
    }
}

/// Runs a sink's check with the probe timeout; `None` when the sink is not configured.
async fn optional_check(
    check: Option<impl std::future::Future<Output = Result<(), String>>>,
) -> Option<Check> {
    let check = check?;
    Some(match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => ok(None),
        Ok(Err(reason)) => failed(reason),
        Err(_) => failed(format!("no answer within {CHECK_TIMEOUT:?}")),
    })
}

/// Migrations are written to be backward compatible (expand, then contract in a later
/// release), so a schema newer than this binary is fine: old pods keep serving during a
/// rollout. An older one is not: this binary's queries would fail.
fn schema_check(applied: Option<i64>, expected: i64) -> Check {
    match applied {
        None => failed(format!("no migrations applied; run `order-service migrate` (expected version {expected})")),
        Some(applied) if applied < expected => failed(format!(
            "schema at migration {applied}, this build needs {expected}; run `order-service migrate`"
        )),
        Some(applied) => ok(Some(format!("migration {applied} (build expects {expected})"))),
    }
}

fn ok(detail: Option<String>) -> Check {
    Check {
        status: "ok",
        lag_seconds: None,
        detail,
    }
}

fn failed(reason: String) -> Check {
    Check {
        status: "failed",
        lag_seconds: None,
        detail: Some(reason),
    }
}

fn skipped() -> Check {
    failed("not checked: PostgreSQL is unreachable".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_behind_the_build_is_not_ready() {
        assert_eq!(schema_check(None, 3).status, "failed");
        assert_eq!(schema_check(Some(2), 3).status, "failed");
        assert_eq!(schema_check(Some(3), 3).status, "ok");
        assert_eq!(
            schema_check(Some(4), 3).status,
            "ok",
            "newer schema during a rollout"
        );
    }
}
