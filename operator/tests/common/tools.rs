//! The command-line tools the cluster suites drive: the pinned `helm` and `kubectl` that
//! `scripts/cluster.sh env` names (`ORDER_PLATFORM_HELM`, `ORDER_PLATFORM_KUBECTL`), never
//! whatever is on `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A tool from `scripts/cluster.sh env`.
pub fn tool(variable: &str) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("{variable} is not set: run `make test`, or eval \"$(scripts/cluster.sh env)\"")
        })
}

/// Runs `program` with `args` (and `stdin` when given); killed if the test is dropped first.
pub async fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
    }
    child.wait_with_output().await.expect("wait")
}

/// Runs and insists on success; returns stdout.
pub async fn ok(program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(program, args, stdin).await;
    assert!(
        out.status.success(),
        "{} {}: {}{}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm ARGS`, which must succeed; returns stdout.
pub async fn helm(args: &[&str]) -> String {
    ok(&tool("ORDER_PLATFORM_HELM"), args, None).await
}

/// The chart in this repository.
pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/order-platform")
}
