//! Private moto and Kafka servers for outage tests: started, paused or stopped, and restarted by
//! one test without touching the stack's shared servers. Recipes: docs/testing.md.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tokio::process::{Child, Command};

use crate::helpers::wait_until;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `make test`"))
}

fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("process is running").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A KRaft cluster id: 16 random bytes, base64url without padding, not starting with `-`
/// (StorageTool would read that as an option).
fn cluster_id() -> String {
    use base64::Engine;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// A moto server of this test's own.
pub struct PrivateMoto {
    pub endpoint: String,
    child: Child,
}

impl PrivateMoto {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new(env("ORDER_PLATFORM_MOTO_SERVER"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(30), "moto to answer", || {
            let request = http.get(&endpoint).send();
            async move { request.await.is_ok() }
        })
        .await;
        Self { endpoint, child }
    }

    /// SIGSTOP: the server keeps its sockets and its (in-memory) tables but answers nothing,
    /// like a hung or partitioned DynamoDB.
    pub fn pause(&self) {
        signal(&self.child, "-STOP");
    }

    pub fn resume(&self) {
        signal(&self.child, "-CONT");
    }
}

/// An Apache Kafka broker (KRaft, combined broker and controller) of this test's own.
pub struct PrivateKafka {
    pub bootstrap: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateKafka {
    pub async fn start() -> Self {
        let (port, controller) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!(
            "order-platform-kafka-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let properties = format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{controller}\n\
             controller.listener.names=CONTROLLER\nlisteners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\nlog.dirs={}\n\
             offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\nshare.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n\
             auto.create.topics.enable=false\nnum.network.threads=2\nnum.io.threads=2\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), properties).expect("server.properties");
        let format = Self::java(&["-Xmx256m"])
            .args([
                "kafka.tools.StorageTool",
                "format",
                "-t",
                &cluster_id(),
                "-c",
            ])
            .arg(dir.join("server.properties"))
            .output()
            .await
            .expect("run StorageTool");
        assert!(
            format.status.success(),
            "format: {}",
            String::from_utf8_lossy(&format.stderr)
        );
        let mut broker = Self {
            bootstrap: format!("127.0.0.1:{port}"),
            dir,
            child: None,
        };
        broker.restart().await;
        broker
    }

    fn java(heap: &[&str]) -> Command {
        let mut command = Command::new("java");
        command
            .args(heap)
            .args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                env("ORDER_PLATFORM_KAFKA_LOG4J")
            ))
            .arg("-cp")
            .arg(format!("{}/*", env("ORDER_PLATFORM_KAFKA_LIB")))
            .stdin(Stdio::null());
        command
    }

    /// Starts the broker on its storage and waits until it serves metadata.
    pub async fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("broker.log")).expect("broker log");
        let child = Self::java(&["-Xms128m", "-Xmx512m"])
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start kafka.Kafka");
        self.child = Some(child);
        let bootstrap = self.bootstrap.clone();
        wait_until(
            Duration::from_secs(60),
            "the broker to serve metadata",
            || {
                let bootstrap = bootstrap.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        let consumer: BaseConsumer = match ClientConfig::new()
                            .set("bootstrap.servers", &bootstrap)
                            .create()
                        {
                            Ok(consumer) => consumer,
                            Err(_) => return false,
                        };
                        consumer
                            .fetch_metadata(None, Duration::from_millis(500))
                            .is_ok_and(|m| !m.brokers().is_empty())
                    })
                    .await
                    .unwrap_or(false)
                }
            },
        )
        .await;
    }

    /// Stops the broker cleanly (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "-TERM");
            tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .expect("broker stops within 60 s")
                .expect("wait for broker");
        }
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
