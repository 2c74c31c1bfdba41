//! The `order-service` binary itself: subcommands, `--help`, JSON logs and signals.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, Command};

use crate::helpers::{fresh_database, new_key, sample_order, url};

const BIN: &str = env!("CARGO_BIN_EXE_order-service");

pub fn command(args: &[&str], db: &PgConnectOptions) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("DATABASE_URL", url(db))
        .env("ORDER_SERVICE_LOG_FORMAT", "json")
        .env("ORDER_SERVICE_SINKS", "none")
        .env("ORDER_SERVICE_AUTH_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads JSON log lines until one satisfies `wanted`, with a timeout; returns all lines read.
async fn read_until(
    lines: &mut Lines<BufReader<ChildStderr>>,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("log line is not JSON: {line}"));
            let done = wanted(&value);
            seen.push(value);
            if done {
                return;
            }
        }
        panic!("the process closed stderr first");
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("log line in time");
    seen
}

#[tokio::test]
async fn migrate_then_serve_logs_json_with_request_ids_and_stops_on_sigterm() {
    let db = fresh_database().await;
    let migrate = command(&["migrate"], &db)
        .output()
        .await
        .expect("run migrate");
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("schema at migration"));

    let mut child = command(&["serve", "--addr", "127.0.0.1:0"], &db)
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let startup = read_until(&mut lines, |l| l["message"] == "serving").await;
    let addr = startup
        .last()
        .and_then(|l| l["addr"].as_str())
        .expect("addr logged")
        .to_owned();

    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/orders"))
        .header("idempotency-key", new_key())
        .header("x-request-id", "cli-test-42")
        .json(&sample_order())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "cli-test-42");

    let request_logs = read_until(&mut lines, |l| {
        l["span"]["request_id"] == "cli-test-42" && l["message"] == "finished processing request"
    })
    .await;
    let created = request_logs
        .iter()
        .find(|l| l["message"] == "order created")
        .expect("handler log line");
    assert_eq!(
        created["span"]["request_id"], "cli-test-42",
        "handler logs carry the request id"
    );

    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    read_until(&mut lines, |l| l["message"] == "stopped").await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn bad_configuration_fails_with_a_message_and_non_zero_exit() {
    let db = fresh_database().await;
    let output = command(&["serve", "--addr", "not-an-address"], &db)
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--addr"));

    let output = command(&["migrate"], &db)
        .env(
            "DATABASE_URL",
            "postgres://u:hunter2@127.0.0.1:1/x?sslmode=bogus",
        )
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a PostgreSQL URL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "no secret in the error: {stderr}"
    );
}

#[tokio::test]
async fn serve_without_an_issuer_refuses_to_start_unless_auth_is_disabled_explicitly() {
    let db = fresh_database().await;
    let output = command(&["serve", "--addr", "127.0.0.1:0"], &db)
        .env_remove("ORDER_SERVICE_AUTH_DISABLED")
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--auth-issuer"), "{stderr}");
    assert!(stderr.contains("--auth-disabled true"), "{stderr}");
}

#[tokio::test]
async fn a_trace_sampler_or_ratio_that_does_not_exist_stops_the_service_at_start() {
    let db = fresh_database().await;
    for (sampler, arg, expected) in [
        ("sometimes", "", "OTEL_TRACES_SAMPLER=\"sometimes\""),
        (
            "parentbased_traceidratio",
            "1.5",
            "OTEL_TRACES_SAMPLER_ARG=\"1.5\"",
        ),
    ] {
        let output = command(&["serve", "--addr", "127.0.0.1:0"], &db)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
            .env("OTEL_TRACES_SAMPLER", sampler)
            .env("OTEL_TRACES_SAMPLER_ARG", arg)
            .output()
            .await
            .expect("run");
        assert!(!output.status.success(), "{sampler} {arg}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test]
async fn help_documents_every_flag_with_its_environment_variable() {
    let db = fresh_database().await;
    let output = command(&["serve", "--help"], &db)
        .output()
        .await
        .expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for env in [
        "DATABASE_URL",
        "ORDER_SERVICE_ADDR",
        "ORDER_SERVICE_DB_MAX_CONNECTIONS",
        "ORDER_SERVICE_DB_ACQUIRE_TIMEOUT",
        "ORDER_SERVICE_BODY_LIMIT",
        "ORDER_SERVICE_REQUEST_TIMEOUT",
        "ORDER_SERVICE_SHUTDOWN_TIMEOUT",
        "ORDER_SERVICE_LOG",
        "ORDER_SERVICE_LOG_FORMAT",
        "ORDER_SERVICE_AUTH_ISSUER",
        "ORDER_SERVICE_AUTH_AUDIENCE",
        "ORDER_SERVICE_AUTH_DISABLED",
        "ORDER_SERVICE_RATE_LIMIT_PER_SECOND",
    ] {
        assert!(help.contains(env), "--help mentions {env}");
    }
}
