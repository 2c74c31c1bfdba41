//! The test harness: every test gets its own database and its own running app on a free port.

use std::str::FromStr;
use std::time::Duration;

use order_service::config::{DatabaseConfig, ServeConfig};
use order_service::startup::{self, Application};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for [`spawn_app_with`].
pub struct Options {
    pub migrate: bool,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            migrate: true,
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// The stack's PostgreSQL, from `DATABASE_URL` (`make test` exports it).
pub fn base_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with `make test`, or `eval \"$(scripts/stack.sh env)\"` after `scripts/stack.sh up`",
    );
    PgConnectOptions::from_str(&url).expect("DATABASE_URL is a PostgreSQL URL")
}

/// A new, empty database on the stack's server.
pub async fn fresh_database() -> PgConnectOptions {
    let base = base_options();
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect_with(&base.clone().database("postgres"))
        .await
        .expect("connect to PostgreSQL (is the stack up?)");
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create test database");
    admin.close().await.ok();
    base.database(&name)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let db = fresh_database().await;
    let pool = order_service::db::pool(db.clone(), 8, Duration::from_secs(5));
    if options.migrate {
        startup::migrate(&pool)
            .await
            .expect("migrate test database");
    }
    spawn_on(db, pool, options).await
}

/// Serves on an existing pool (e.g. one pointing at an unreachable server).
pub async fn spawn_on(db: PgConnectOptions, pool: PgPool, options: Options) -> TestApp {
    let config = ServeConfig {
        database: DatabaseConfig {
            database_url: db,
            db_max_connections: 8,
            db_acquire_timeout: Duration::from_secs(5),
        },
        addr: "127.0.0.1:0".parse().expect("address"),
        body_limit_bytes: options.body_limit_bytes,
        request_timeout: options.request_timeout,
        shutdown_timeout: options.shutdown_timeout,
    };
    let app = Application::with_pool(&config, pool.clone())
        .await
        .expect("build app");
    let address = format!("http://{}", app.local_addr().expect("bound"));
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        pool,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// The example order of the API documentation.
pub fn sample_order() -> Value {
    json!({
        "customer_id": "c-42",
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "name": "Widget", "quantity": 2, "unit_price_minor": 1250}],
        "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "billing_address": null,
        "shipping_minor": 490,
        "tax_minor": 0,
        "payment": {"method": "card"}
    })
}

pub fn new_key() -> String {
    Uuid::new_v4().to_string()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_order(&self, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/orders"))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates an order and returns its JSON.
    pub async fn create_order(&self, body: &Value) -> Value {
        let response = self.post_order(&new_key(), body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("order json")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn change_status(&self, id: &str, if_match: Option<&str>, body: &Value) -> Response {
        let mut request = self
            .client
            .post(self.url(&format!("/v1/orders/{id}/status")))
            .json(body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().await.expect("request")
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Signals shutdown and waits for the server task to finish.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Reads a problem+json response, checking the media type and `status` member.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// The `type` slug of a problem body.
pub fn problem_type(body: &Value) -> &str {
    body["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("https://orders.dev/problems/"))
        .unwrap_or_default()
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
