//! `order-operator plan` and `apply` as a user runs them: exit codes, output, PostgreSQL
//! migrations, refusals that change nothing, and bounded failures.

use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::support::{self, operator, table_keys, text, unique, Platform};

/// A new empty database on the stack's PostgreSQL; its URL.
async fn fresh_database() -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (make test sets it)");
    let name = format!("test_{}", unique());
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let (server, _) = base.rsplit_once('/').expect("URL with a database");
    format!("{server}/{name}")
}

async fn applied_migrations(url: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
}

fn path(file: &support::ManifestFile) -> &str {
    file.0.to_str().expect("UTF-8 path")
}

#[tokio::test]
async fn plan_apply_plan_goes_from_changes_pending_to_no_changes() {
    let platform = Platform::fresh();
    let file = platform.file();
    let db = fresh_database().await;
    let args = |command: &'static str| vec![command, "-f", path(&file), "--database-url", &db];

    let before = operator(&args("plan")).await;
    assert_eq!(before.status.code(), Some(2), "{}", text(&before));
    let out = text(&before);
    assert!(
        out.contains(&format!("+ table {}: create", platform.history_table())),
        "{out}"
    );
    assert!(
        out.contains(&format!("+ topic {}: create", platform.topic)),
        "{out}"
    );
    assert!(out.contains("+ migration 1"), "{out}");

    let apply = operator(&args("apply")).await;
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let progress = text(&apply);
    assert!(progress.contains("done in"), "{progress}");
    assert!(progress.contains("Apply complete"), "{progress}");
    assert!(applied_migrations(&db).await >= 2);
    let raw = support::dynamodb().await;
    assert!(table_keys(&raw, &platform.counters_table()).await.is_some());

    let again = operator(&args("plan")).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("No changes"), "{}", text(&again));

    let json = operator(&[
        "plan",
        "-f",
        path(&file),
        "--database-url",
        &db,
        "--output",
        "json",
    ])
    .await;
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON plan");
    assert_eq!(plan["changes"], 0);
    assert_eq!(plan["postgres"]["pending"], serde_json::json!([]));
    assert_eq!(plan["tables"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_refusal_stops_apply_before_anything_is_changed() {
    let platform = Platform::fresh();
    let file = platform.file();
    let db = fresh_database().await;
    let raw = support::dynamodb().await;
    support::create_foreign_table(&raw, &platform.history_table(), "id").await;

    let plan = operator(&["plan", "-f", path(&file), "--database-url", &db]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(text(&plan).contains("KeySchemaConflict"), "{}", text(&plan));

    let apply = operator(&["apply", "-f", path(&file), "--database-url", &db]).await;
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    let out = text(&apply);
    assert!(out.contains("refused (KeySchemaConflict)"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    // Nothing touched: the other table, the topic and the schema are still missing.
    assert_eq!(table_keys(&raw, &platform.counters_table()).await, None);
    assert_eq!(support::partitions(&platform.topic), None);
    assert_eq!(applied_migrations(&db).await, 0);
    assert_eq!(
        table_keys(&raw, &platform.history_table()).await,
        Some(vec!["id".to_owned()])
    );
}

#[tokio::test]
async fn an_unreachable_kafka_fails_within_the_timeout_with_a_clear_error() {
    let platform = Platform::fresh();
    let file = platform.file();
    let started = Instant::now();
    let out = operator(&[
        "plan",
        "-f",
        path(&file),
        "--kafka-bootstrap-servers",
        "127.0.0.1:1",
        "--timeout",
        "2s",
    ])
    .await;
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // The brokers' own reason, not just "transport failure".
    let said = text(&out);
    assert!(
        said.contains("error: Kafka brokers 127.0.0.1:1") && said.contains("Connection refused"),
        "{said}"
    );
    assert_eq!(
        said.lines().count(),
        1,
        "one line, no librdkafka chatter: {said}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test]
async fn a_dynamodb_endpoint_that_never_answers_fails_within_the_timeout() {
    // Accepts connections and never says a word: only a timeout ends the call.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let platform = Platform::fresh();
    let file = platform.file();
    let started = Instant::now();
    let out = operator(&[
        "apply",
        "-f",
        path(&file),
        "--dynamodb-endpoint",
        &endpoint,
        "--timeout",
        "2s",
    ])
    .await;
    let elapsed = started.elapsed();
    hold.abort();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("error: DynamoDB"), "{}", text(&out));
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test]
async fn a_file_without_an_order_platform_is_an_error() {
    let path = std::env::temp_dir().join(format!("not-a-platform-{}.yaml", unique()));
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .expect("write");
    let out = operator(&["plan", "-f", path.to_str().expect("UTF-8")]).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no OrderPlatform in the file"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn plan_shows_a_table_owned_by_another_platform_and_apply_changes_nothing() {
    let platform = Platform::fresh();
    let file = platform.file();
    let apply = operator(&["apply", "-f", path(&file)]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));

    // Another platform (another name, same prefix and topic) planned from its own file.
    let other =
        support::ManifestFile(std::env::temp_dir().join(format!("{}-other.yaml", platform.prefix)));
    std::fs::write(
        &other.0,
        platform.yaml().replace("name: shop", "name: other"),
    )
    .expect("write manifest");
    let plan = operator(&["plan", "-f", path(&other)]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains(&format!(
            "! table {}: refused (OwnerConflict)",
            platform.history_table()
        )),
        "{out}"
    );
    assert!(out.contains("tests/shop"), "the owner is named: {out}");
    let apply = operator(&["apply", "-f", path(&other)]).await;
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    assert!(
        text(&apply).contains("nothing was changed"),
        "{}",
        text(&apply)
    );
}
