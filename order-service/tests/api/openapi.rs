//! The OpenAPI document tells the truth: schemathesis fuzzes the running service from its own
//! `/openapi.json` and checks every answer against it (statuses, headers, content types,
//! bodies), that requests the schemas allow are accepted and that those they refuse are refused.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{spawn_app_with, Options, Sinks};

/// Examples per operation and phase: enough for every status and constraint to come up, small
/// enough for the whole run to take well under a minute on two cores.
const MAX_EXAMPLES: &str = "25";
/// The bound on the whole run, should schemathesis hang; it normally takes seconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test]
async fn fuzzing_from_the_openapi_document_finds_no_difference_with_the_server() {
    let schemathesis = std::env::var("ORDER_PLATFORM_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!(
            "ORDER_PLATFORM_SCHEMATHESIS is not set: run `make test` (scripts/test.sh installs \
             schemathesis and exports it), or `export ORDER_PLATFORM_SCHEMATHESIS=$(scripts/schemathesis.sh path)`"
        )
    });
    // With the DynamoDB and Kafka sinks, so history and stats answer from real projections.
    let app = spawn_app_with(Options {
        sinks: Some(Sinks::fresh()),
        ..Options::default()
    })
    .await;
    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let report = scratch_dir();

    let run = tokio::process::Command::new(&schemathesis)
        .arg("--no-color")
        .arg("--config-file")
        .arg(settings.join("schemathesis.toml"))
        .args(["run", &app.url("/openapi.json")])
        // Every check; the few statuses a check must also accept, and why, are in
        // tests/schemathesis/schemathesis.toml, and hooks.py keeps schema-valid cases clear of
        // the rules between values that JSON Schema cannot state.
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        // One worker: with two threads, Python 3.11's `ast` module can fail inside
        // schemathesis ("AST constructor recursion depth mismatch", a CPython bug).
        .args(["--workers", "1", "--seed", "1"])
        .arg("--request-timeout=10")
        .env("SCHEMATHESIS_HOOKS", settings.join("hooks.py"))
        // Its hypothesis database and reports stay out of the clone.
        .current_dir(&report)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("running {schemathesis}: {e}"));
    let _ = std::fs::remove_dir_all(&report);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found the document and the server disagree ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // A run that tested nothing would pass too; the summary names the operations tested.
    assert!(
        stdout.contains("Tested: 11"),
        "schemathesis did not test all 11 operations:\n{stdout}"
    );
}

/// A fresh working directory for schemathesis.
fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create schemathesis's working directory");
    dir
}
