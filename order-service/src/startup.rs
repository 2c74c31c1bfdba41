//! Building and running the application: bind (port 0 works), serve, relay the outbox, shut
//! down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use clap::Args;

use crate::auth::{Access, AuthConfig, RateLimitConfig};
use crate::catalog::ProductEvents;
use crate::db::{self, DatabaseConfig};
use crate::http::{self, AppState, HttpLimits};
use crate::metrics::Metrics;
use crate::outbox::sink::Sink;
use crate::outbox::{Relay, RelayConfig};
use crate::replica::{Reads, ReplicaConfig, ReplicaMonitor};
use crate::retention::{Retention, RetentionConfig};
use crate::saga::worker::SagaRunner;
use crate::sinks::{Projections, SinksConfig};

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub replica: ReplicaConfig,
    #[command(flatten)]
    pub sinks: SinksConfig,
    #[command(flatten)]
    pub relay: RelayConfig,
    #[command(flatten)]
    pub saga: crate::saga::SagaConfig,
    #[command(flatten)]
    pub catalog: crate::catalog::CatalogConfig,
    #[command(flatten)]
    pub retention: RetentionConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub rate_limit: RateLimitConfig,
    /// Fail readiness (503) while DynamoDB or Kafka is unreachable, instead of reporting
    /// `degraded` and serving on (changes queue in the outbox meanwhile).
    #[arg(long, env = "ORDER_SERVICE_READINESS_REQUIRES_SINKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub readiness_requires_sinks: bool,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "ORDER_SERVICE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Largest accepted request body, in bytes; larger bodies get 413.
    #[arg(long, env = "ORDER_SERVICE_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    /// Longest a request may take before it is answered with 503.
    #[arg(long, env = "ORDER_SERVICE_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, the bound on stopping: in-flight requests drain, saga steps and relay
    /// batches finish and record their outcome, all at once, within this; then the process
    /// exits whatever is left (sagas resume after their lease, batches are sent again). Keep
    /// it below the pod's terminationGracePeriodSeconds minus the preStop delay.
    #[arg(long, env = "ORDER_SERVICE_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    relay: Option<Arc<Relay>>,
    run_relay: bool,
    saga: Option<Arc<SagaRunner>>,
    run_saga: bool,
    retention: Option<Arc<Retention>>,
    replica: Option<Arc<ReplicaMonitor>>,
    reads: Reads,
    product_events: Option<Arc<ProductEvents>>,
    access: Arc<Access>,
    shutdown_timeout: Duration,
}

impl Application {
    /// Binds the listener and builds the router; nothing is served until [`Self::run_until`].
    pub async fn build(config: &ServeConfig) -> anyhow::Result<Self> {
        let database = &config.database;
        let pool = db::pool(
            api_connect_options(&database.database_url, config.request_timeout),
            database.db_max_connections,
            database.db_acquire_timeout,
        );
        Self::with_pool(config, pool).await
    }

    /// As [`Self::build`], with a pool the caller made (tests share one per database).
    pub async fn with_pool(config: &ServeConfig, pool: PgPool) -> anyhow::Result<Self> {
        let mut metrics = Metrics::new(config.database.db_max_connections);
        if config.replica.database_read_url.is_some() {
            metrics = metrics.with_replica();
        }
        let metrics = Arc::new(metrics);
        // Before binding: without a usable issuer (or an explicit --auth-disabled), no serving.
        let access =
            Arc::new(Access::build(&config.auth, &config.rate_limit, metrics.clone()).await?);
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let projections = Projections::connect(&config.sinks).await?;
        let sinks: Arc<[Sink]> = projections.sinks().into();
        let relay = (!sinks.is_empty()).then(|| {
            // Its own small pool, so relaying never waits for (or takes) the API's connections.
            let relay_pool = db::pool(
                config.database.database_url.clone(),
                config.relay.relay_db_connections,
                config.database.db_acquire_timeout,
            );
            Arc::new(Relay::new(
                relay_pool,
                projections.adapters(),
                config.relay.clone(),
                metrics.clone(),
            ))
        });
        let saga = config.saga.participants(&metrics)?.map(|participants| {
            Arc::new(SagaRunner::new(
                pool.clone(),
                participants,
                config.saga.clone(),
                sinks.clone(),
                metrics.clone(),
            ))
        });
        let catalog = config
            .catalog
            .catalog(config.saga.call_policy(), &metrics)?;
        let product_events =
            config
                .catalog
                .product_events(&config.sinks.kafka, catalog.as_ref(), &metrics)?;
        let retention = config.retention.retention.then(|| {
            // Two connections of its own: clean-up never waits for (or takes) the API's.
            let retention_pool = db::pool(
                config.database.database_url.clone(),
                2,
                config.database.db_acquire_timeout,
            );
            Arc::new(Retention::new(
                retention_pool,
                config.retention.clone(),
                metrics.clone(),
            ))
        });
        let (reads, replica) = match &config.replica.database_read_url {
            None => (Reads::primary_only(pool.clone(), metrics.clone()), None),
            Some(url) => {
                // Its own pool: reports and lists never wait for (or take) the primary's
                // connections, and the same statement bound as the API's.
                let replica_pool = db::pool(
                    api_connect_options(url, config.request_timeout),
                    config.replica.db_read_max_connections,
                    config.database.db_acquire_timeout,
                );
                let monitor = Arc::new(ReplicaMonitor::new(
                    pool.clone(),
                    replica_pool.clone(),
                    &config.replica,
                    metrics.clone(),
                ));
                let reads = Reads::with_replica(
                    pool.clone(),
                    replica_pool,
                    monitor.subscribe(),
                    config.replica.clone(),
                    metrics.clone(),
                );
                (reads, Some(monitor))
            }
        };
        let state = AppState {
            pool: pool.clone(),
            reads: reads.clone(),
            metrics,
            sinks,
            projections,
            readiness_requires_sinks: config.readiness_requires_sinks,
            idempotency_key_ttl: config.retention.idempotency_key_ttl,
            saga: saga.as_ref().map(|runner| runner.wake()),
            catalog,
            access: access.clone(),
            saga_stuck_after: config.saga.saga_stuck_after,
        };
        let limits = HttpLimits {
            body_limit_bytes: config.body_limit_bytes,
            request_timeout: config.request_timeout,
        };
        Ok(Self {
            listener,
            router: http::router(state, limits),
            pool,
            relay,
            run_relay: config.relay.relay,
            saga,
            run_saga: config.saga.saga_workers,
            retention,
            replica,
            reads,
            product_events,
            access,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The outbox relay of this instance (present when a sink is enabled), for driving it
    /// step by step when its loop is off.
    pub fn relay(&self) -> Option<Arc<Relay>> {
        self.relay.clone()
    }

    /// The saga runner (present when participants are configured), for driving sagas step by
    /// step when the workers are off.
    pub fn saga(&self) -> Option<Arc<SagaRunner>> {
        self.saga.clone()
    }

    /// Serves (and relays, runs sagas and the retention, unless disabled) until `shutdown`
    /// resolves; then stops accepting and lets in-flight requests, saga steps and relay
    /// batches finish, all at the same time and together within the shutdown timeout, and
    /// closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stopping = CancellationToken::new();
        let mut background = tokio::task::JoinSet::new();
        if let (Some(relay), true) = (&self.relay, self.run_relay) {
            background.spawn(relay.clone().run(stopping.clone()));
        }
        if let (Some(runner), true) = (&self.saga, self.run_saga) {
            background.spawn(runner.clone().run(stopping.clone()));
        }
        if let Some(retention) = &self.retention {
            background.spawn(retention.clone().run(stopping.clone()));
        }
        if let Some(replica) = &self.replica {
            background.spawn(replica.clone().run(stopping.clone()));
        }
        if let Some(events) = &self.product_events {
            background.spawn(events.clone().run(stopping.clone()));
        }
        for task in self.access.background(&stopping) {
            background.spawn(task);
        }
        // The peer address keys the rate limits of callers without a valid token.
        let router = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(self.listener, router).with_graceful_shutdown({
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                tracing::info!(
                    "shutdown requested: draining requests, saga steps and relay batches"
                );
                stopping.cancel();
            }
        });
        let mut serving = tokio::spawn(async move { serve.await });
        // The bound starts when shutdown begins (or serving failed); the drain and the
        // background loops stop concurrently inside it, so stopping never takes longer.
        let early = tokio::select! {
            () = stopping.cancelled() => None,
            result = &mut serving => {
                stopping.cancel();
                Some(result)
            }
        };
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let served = match early {
            Some(result) => Ok(result),
            None => tokio::time::timeout_at(deadline, serving).await,
        };
        let stopped = tokio::time::timeout_at(deadline, async {
            while background.join_next().await.is_some() {}
        })
        .await;
        match served {
            Ok(Ok(result)) => result.context("serving HTTP")?,
            Ok(Err(panic)) => anyhow::bail!("the HTTP server task failed: {panic}"),
            Err(_) => {
                tracing::warn!(timeout = ?self.shutdown_timeout, "in-flight requests did not finish in time; stopping anyway")
            }
        }
        if stopped.is_err() {
            tracing::warn!(timeout = ?self.shutdown_timeout, "saga steps or relay batches did not finish in time; sagas resume after their lease and batches are sent again");
            background.abort_all();
        }
        self.pool.close().await;
        self.reads.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The API pool's connection settings: PostgreSQL cancels any statement running longer than
/// nine tenths of the request timeout. A create or status change is one statement in its own
/// implicit transaction, so a request that times out has its statement cancelled (nothing
/// applied, `timeout` problem) rather than committed after the client was told it failed.
pub fn api_connect_options(
    options: &sqlx::postgres::PgConnectOptions,
    request_timeout: Duration,
) -> sqlx::postgres::PgConnectOptions {
    let bound = (request_timeout * 9 / 10).max(Duration::from_millis(1));
    options
        .clone()
        .options([("statement_timeout", format!("{}ms", bound.as_millis()))])
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
