//! Manifests with fresh names, and running the `order-operator` binary.

use std::process::Output;

pub use crate::stack::*;

/// An OrderPlatform manifest with its own table prefix and events topic.
pub struct Platform {
    pub prefix: String,
    pub topic: String,
    /// Extra YAML under the events topic entry (indented by 8).
    pub topic_extra: String,
    pub deletion_policy: &'static str,
}

impl Platform {
    pub fn fresh() -> Self {
        let id = unique();
        Self {
            prefix: format!("p{id}"),
            topic: format!("prov.{id}"),
            topic_extra: String::new(),
            deletion_policy: "Retain",
        }
    }

    pub fn history_table(&self) -> String {
        format!("{}-status-history", self.prefix)
    }

    pub fn counters_table(&self) -> String {
        format!("{}-status-counters", self.prefix)
    }

    pub fn yaml(&self) -> String {
        format!(
            "apiVersion: platform.orders.dev/v1alpha1
kind: OrderPlatform
metadata:
  name: shop
  namespace: tests
spec:
  image: order-service:test
  database:
    secretRef:
      name: db
  dynamodb:
    endpoint: {endpoint}
    tablePrefix: {prefix}
  auth:
    disabled: true
  kafka:
    bootstrapServers: {servers}
    # Applied more than once without a cluster: nothing records that this file created the topic.
    adoptExisting: true
    eventsTopic: {topic}
    topics:
      - name: {topic}
{extra}
  deletionPolicy: {policy}
",
            endpoint = dynamodb_endpoint(),
            prefix = self.prefix,
            servers = kafka_servers(),
            topic = self.topic,
            extra = self.topic_extra,
            policy = self.deletion_policy,
        )
    }

    /// Writes the manifest under the system temp dir; the file is removed on drop.
    pub fn file(&self) -> ManifestFile {
        let path = std::env::temp_dir().join(format!("{}.yaml", self.prefix));
        std::fs::write(&path, self.yaml()).expect("write manifest");
        ManifestFile(path)
    }
}

pub struct ManifestFile(pub std::path::PathBuf);

impl Drop for ManifestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `order-operator ARGS…` (the binary cargo built for this test).
pub async fn operator(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_order-operator"))
        .args(args)
        .env("ORDER_OPERATOR_LOG", "warn")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .expect("run order-operator")
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
