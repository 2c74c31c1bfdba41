//! Building and running the application: bind (port 0 works), serve, shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::db;
use crate::http::{self, metrics::Metrics, AppState, HttpLimits};

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    shutdown_timeout: Duration,
}

impl Application {
    /// Binds the listener and builds the router; nothing is served until [`Self::run_until`].
    pub async fn build(config: &ServeConfig) -> anyhow::Result<Self> {
        let database = &config.database;
        let pool = db::pool(
            database.database_url.clone(),
            database.db_max_connections,
            database.db_acquire_timeout,
        );
        Self::with_pool(config, pool).await
    }

    /// As [`Self::build`], with a pool the caller made (tests share one per database).
    pub async fn with_pool(config: &ServeConfig, pool: PgPool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let state = AppState {
            pool: pool.clone(),
            metrics: Arc::new(Metrics::new(config.database.db_max_connections)),
        };
        let limits = HttpLimits {
            body_limit_bytes: config.body_limit_bytes,
            request_timeout: config.request_timeout,
        };
        Ok(Self {
            listener,
            router: http::router(state, limits),
            pool,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// for at most the shutdown timeout, and closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining in-flight requests");
            let _ = stopping_tx.send(());
        });
        let drain_bound = async move {
            // Only once shutdown has begun does the drain bound start counting.
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(self.shutdown_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = serve => result.context("serving HTTP")?,
            () = drain_bound => tracing::warn!(timeout = ?self.shutdown_timeout, "in-flight requests did not finish in time; stopping anyway"),
        }
        self.pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// Applies the embedded migrations; returns the version the schema is at.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<i64> {
    db::MIGRATOR
        .run(pool)
        .await
        .context("applying migrations")?;
    let mut conn = pool.acquire().await.context("connecting to PostgreSQL")?;
    Ok(db::schema::applied_version(&mut conn).await?.unwrap_or(0))
}
