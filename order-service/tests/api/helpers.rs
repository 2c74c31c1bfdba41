//! The test harness: every test gets its own database and its own running app on a free port.

use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use order_service::config::{Cli, Command};
use order_service::outbox::Relay;
use order_service::startup::ServeConfig;
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
    pub config: ServeConfig,
    /// The outbox relay, present when sinks are on; its loop runs only with `relay_loop`.
    pub relay: Option<std::sync::Arc<Relay>>,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for [`spawn_app_with`].
pub struct Options {
    pub migrate: bool,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Deliver events to DynamoDB and Kafka (this test's own tables and topic).
    pub sinks: Option<Sinks>,
    /// Run the relay loop in the background (else tests drive `relay.step()` themselves).
    pub relay_loop: bool,
    /// Extra `serve` flags.
    pub extra_args: Vec<String>,
    /// Create the sinks' tables and topic with the test's own settings before serving (off
    /// for settings meant to fail, with the tables and topic made another way).
    pub provision: bool,
    /// The `--auth-*` flags that turn authentication on (see `auth.rs`); `None` serves with
    /// `--auth-disabled true`, as every test that is not about authentication does.
    pub auth: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            migrate: true,
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            sinks: None,
            relay_loop: false,
            extra_args: Vec::new(),
            provision: true,
            auth: None,
        }
    }
}

/// A test's own DynamoDB tables (by prefix) and Kafka topic, on the given endpoints.
#[derive(Clone, Debug)]
pub struct Sinks {
    pub table_prefix: String,
    pub topic: String,
    pub dynamodb_endpoint: String,
    pub kafka_bootstrap: String,
}

impl Sinks {
    /// New names on the stack's moto and Kafka.
    pub fn fresh() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        Self {
            table_prefix: format!("t{}", &id[..12]),
            topic: format!("test.{}", &id[..12]),
            dynamodb_endpoint: std::env::var("DYNAMODB_ENDPOINT")
                .expect("DYNAMODB_ENDPOINT (run `make test`)"),
            kafka_bootstrap: std::env::var("KAFKA_BOOTSTRAP_SERVERS")
                .expect("KAFKA_BOOTSTRAP_SERVERS (run `make test`)"),
        }
    }

    fn args(&self) -> Vec<String> {
        [
            "--sinks",
            "dynamodb,kafka",
            "--dynamodb-endpoint",
            &self.dynamodb_endpoint,
            "--dynamodb-table-prefix",
            &self.table_prefix,
            "--kafka-bootstrap-servers",
            &self.kafka_bootstrap,
            "--kafka-topic",
            &self.topic,
            "--kafka-timeout",
            "5s",
            "--dynamodb-timeout",
            "2s",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }
}

/// A URL for connect options of the test server (trust auth: no password involved).
pub fn url(db: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        db.get_username(),
        db.get_host(),
        db.get_port(),
        db.get_database().unwrap_or("postgres")
    )
}

/// `serve` configuration as the CLI would parse it.
pub fn serve_config(db: &PgConnectOptions, options: &Options) -> ServeConfig {
    let mut args: Vec<String> = [
        "order-service",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        &url(db),
        "--db-max-connections",
        "8",
        "--body-limit-bytes",
        &options.body_limit_bytes.to_string(),
        "--request-timeout",
        &format!("{}ms", options.request_timeout.as_millis()),
        "--shutdown-timeout",
        &format!("{}ms", options.shutdown_timeout.as_millis()),
        "--relay",
        if options.relay_loop { "true" } else { "false" },
        "--relay-poll-interval",
        "100ms",
        "--relay-min-backoff",
        "50ms",
        "--relay-max-backoff",
        "500ms",
        "--relay-db-connections",
        "3",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    match &options.sinks {
        Some(sinks) => args.extend(sinks.args()),
        None => args.extend(["--sinks".to_owned(), "none".to_owned()]),
    }
    match &options.auth {
        Some(flags) => args.extend(flags.iter().cloned()),
        None => args.extend(["--auth-disabled".to_owned(), "true".to_owned()]),
    }
    args.extend(options.extra_args.iter().cloned());
    match Cli::try_parse_from(args)
        .expect("valid serve flags")
        .command
    {
        Command::Serve(config) => *config,
        _ => unreachable!("parsed a serve command"),
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
    // As `serve` makes it: statements bounded just below the request timeout.
    let connect = startup::api_connect_options(&db, options.request_timeout);
    let pool = order_service::db::pool(connect, 8, Duration::from_secs(5));
    if options.migrate {
        startup::migrate(&pool)
            .await
            .expect("migrate test database");
    }
    spawn_on(db, pool, options).await
}

/// Serves on an existing pool (e.g. one pointing at an unreachable server).
pub async fn spawn_on(db: PgConnectOptions, pool: PgPool, options: Options) -> TestApp {
    let config = serve_config(&db, &options);
    if options.sinks.is_some() && options.provision {
        provision(&config.sinks).await;
    }
    let app = Application::with_pool(&config, pool.clone())
        .await
        .expect("build app");
    let relay = app.relay();
    let address = format!("http://{}", app.local_addr().expect("bound"));
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        pool,
        client: reqwest::Client::new(),
        config,
        relay,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// Creates the enabled sinks' tables and topic with the operator's provisioners, as
/// `order-operator apply` does for the local stack.
pub async fn provision(sinks: &order_service::sinks::SinksConfig) {
    use order_operator::provision::dynamodb::{
        Billing, DesiredTable, DynamoDbTarget, TableProvisioner,
    };
    use order_operator::provision::kafka::{DesiredTopic, KafkaTarget, TopicProvisioner};
    use order_service::outbox::sink::Sink;
    let timeout = Duration::from_secs(20);
    if sinks.sinks.contains(Sink::DynamoDb) {
        let target = DynamoDbTarget {
            region: sinks.dynamodb.dynamodb_region.clone(),
            endpoint: sinks.dynamodb.dynamodb_endpoint.clone(),
            credentials: None,
            timeout,
        };
        let tables = DesiredTable::all(
            &sinks.dynamodb.dynamodb_table_prefix,
            Billing::PayPerRequest,
            "tests/order-service",
            false,
        );
        TableProvisioner::connect(&target)
            .await
            .converge(&tables)
            .await
            .expect("create this test's tables");
    }
    if sinks.sinks.contains(Sink::Kafka) {
        let target = KafkaTarget {
            bootstrap_servers: sinks.kafka.kafka_bootstrap_servers.clone(),
            properties: sinks.kafka.kafka_properties.clone(),
            timeout,
        };
        TopicProvisioner::connect(&target)
            .expect("Kafka admin client")
            .converge(&[DesiredTopic::new(&sinks.kafka.kafka_topic)])
            .await
            .expect("create this test's topic");
    }
}

/// The example order of the API documentation.
/// The README's and `make kind-up`'s example order (examples/order.json): every test that
/// creates one keeps the example valid.
pub fn sample_order() -> Value {
    serde_json::from_str(include_str!("../../../examples/order.json")).expect("examples/order.json")
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

    /// The stored order, as `GET /v1/orders/{id}` returns it.
    pub async fn order_json(&self, id: &str) -> Value {
        self.get(&format!("/v1/orders/{id}"))
            .await
            .json()
            .await
            .expect("order json")
    }

    /// Creates an order from `body` and moves it through `statuses` (each step with If-Match);
    /// returns its id.
    pub async fn advance(&self, body: &Value, statuses: &[&str]) -> String {
        let order = self.create_order(body).await;
        let id = order["id"].as_str().expect("id").to_owned();
        for (i, status) in statuses.iter().enumerate() {
            let tag = format!("\"{}\"", i + 1);
            let change = json!({"status": status, "reason": format!("to {status}")});
            let response = self.change_status(&id, Some(&tag), &change).await;
            assert_eq!(response.status(), StatusCode::OK, "{id} to {status}");
        }
        id
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
