//! The development stack's images (`scripts/images.sh dev`, the chart's `dev.enabled=true`) run
//! as containers in the test's own containerd, each in a network namespace of its own with a
//! veth pair to this host, like a pod: a client here reaches the container's address, so each
//! server must listen on every address of the pod (as behind a Service), not on loopback. Each
//! test waits, with a deadline, for its server to serve a real client (sqlx, rdkafka, the AWS
//! SDK), failing early with the container's log if it exits.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{arg, images_dir, task_status, Containerd};

/// How long a server may take to serve (a JVM on 2 busy cores is the slow one).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `ip` with the words of `command` (none has spaces).
fn ip(command: &str) {
    let out = Command::new("ip")
        .args(command.split_whitespace())
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to this host by a veth pair on a /30 of its own in 10.251.0.0/16;
/// deleted (with the pair) on drop.
struct PodNetwork {
    name: String,
    /// The container's side: the address its server must answer on.
    address: String,
}

impl PodNetwork {
    fn create() -> Self {
        let id = uuid::Uuid::new_v4();
        let name = format!("opdev{}", &id.simple().to_string()[..8]);
        let bytes = id.as_bytes();
        // A /30 no interface of this host has (other suites and nodes use other ranges).
        let taken = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-o", "-4", "addr", "show"])
                .output()
                .expect("ip addr")
                .stdout,
        )
        .into_owned();
        let (mut third, mut fourth) = (bytes[0], bytes[1] & 0xfc);
        while taken.contains(&format!("10.251.{third}.{}/", fourth + 1)) {
            (third, fourth) = (third.wrapping_add(1), fourth.wrapping_add(4) & 0xfc);
        }
        let host = format!("10.251.{third}.{}", fourth + 1);
        let address = format!("10.251.{third}.{}", fourth + 2);
        let veth = format!("{name}h");
        ip(&format!("netns add {name}"));
        let network = Self { name, address };
        let name = &network.name;
        ip(&format!(
            "link add {veth} type veth peer name eth0 netns {name}"
        ));
        ip(&format!("addr add {host}/30 dev {veth}"));
        ip(&format!("link set {veth} up"));
        ip(&format!(
            "-n {name} addr add {}/30 dev eth0",
            network.address
        ));
        ip(&format!("-n {name} link set eth0 up"));
        ip(&format!("-n {name} link set lo up"));
        network
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A container of one of the dev images, started detached in a pod network with its output in
/// a log file; its task killed and deleted on drop (the shim would outlive containerd).
struct DevContainer<'a> {
    containerd: &'a Containerd,
    id: String,
    log: PathBuf,
}

impl<'a> DevContainer<'a> {
    fn start(
        containerd: &'a Containerd,
        network: &PodNetwork,
        image: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let archive = images_dir().join(format!("{image}.oci.tar"));
        assert!(
            archive.exists(),
            "{} missing: scripts/images.sh dev",
            archive.display()
        );
        containerd.ctr(&["images", "import", arg(&archive)]);
        let reference = format!("localhost/{image}:{}", env!("CARGO_PKG_VERSION"));
        let id = image.to_owned();
        let log = containerd.dir.0.join(format!("{id}.log"));
        let with_ns = format!("network:{}", network.path());
        let log_uri = format!("file://{}", log.display());
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec![
            "run",
            "-d",
            "--runc-binary",
            "/usr/sbin/runc",
            "--with-ns",
            &with_ns,
            "--log-uri",
            &log_uri,
        ];
        for pair in &env {
            args.extend(["--env", pair.as_str()]);
        }
        args.extend([reference.as_str(), id.as_str()]);
        containerd.ctr(&args);
        let container = Self {
            containerd,
            id,
            log,
        };
        let info: Value =
            serde_json::from_str(&containerd.ctr(&["containers", "info", &container.id]))
                .expect("container info");
        assert_eq!(
            info["Spec"]["process"]["user"]["uid"], 65532,
            "{image}: the image's user is nonroot"
        );
        container
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `check` until it returns `Some`, for up to READY_TIMEOUT; panics with the log when
    /// time runs out or the container stops first.
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            let status = task_status(self.containerd, &self.id);
            assert_eq!(
                status.as_deref(),
                Some("RUNNING"),
                "{}: stopped before {what}; its log:\n{}",
                self.id,
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "{}: no {what} in {READY_TIMEOUT:?}; its log:\n{}",
                self.id,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs `command` in the container (as its user, like a Kubernetes exec probe); whether it
    /// exited 0.
    fn exec_ok(&self, command: &[&str]) -> bool {
        let exec_id = format!("exec-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut args = vec!["tasks", "exec", "--exec-id", &exec_id, &self.id];
        args.extend(command);
        self.containerd
            .ctr_command(&args)
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for DevContainer<'_> {
    fn drop(&mut self) {
        let _ = self
            .containerd
            .ctr_command(&["tasks", "delete", "--force", &self.id])
            .output();
        let _ = self
            .containerd
            .ctr_command(&["containers", "rm", &self.id])
            .output();
    }
}

#[tokio::test]
async fn the_dev_postgres_image_initialises_its_database_and_takes_password_logins() {
    use sqlx::postgres::PgConnectOptions;
    use sqlx::{ConnectOptions, PgConnection};

    let containerd = Containerd::start();
    let network = PodNetwork::create();
    let postgres = DevContainer::start(
        &containerd,
        &network,
        "order-dev-postgres",
        &[
            ("POSTGRES_USER", "orders"),
            ("POSTGRES_PASSWORD", "dev-secret"),
            ("POSTGRES_DB", "orders"),
        ],
    );
    // The chart's readiness probe, run the way the kubelet runs it.
    postgres
        .wait_for("pg_isready (the chart's readiness probe)", || async {
            postgres
                .exec_ok(&["pg_isready", "-U", "orders", "-d", "orders"])
                .then_some(())
        })
        .await;

    let address = network.address.as_str();
    let connect = |password: &str| {
        let options = PgConnectOptions::new()
            .host(address)
            .port(5432)
            .username("orders")
            .password(password)
            .database("orders");
        async move {
            tokio::time::timeout(Duration::from_secs(5), options.connect())
                .await
                .unwrap_or_else(|_| panic!("connecting to {address}:5432 hung"))
        }
    };
    let mut connection: PgConnection = postgres
        .wait_for("a password login over TCP", || async {
            connect("dev-secret").await.ok()
        })
        .await;
    let (database, user): (String, String) =
        sqlx::query_as("SELECT current_database(), current_user")
            .fetch_one(&mut connection)
            .await
            .expect("a query");
    assert_eq!((database.as_str(), user.as_str()), ("orders", "orders"));

    // scram-sha-256, not trust: a wrong password is refused.
    match connect("not-the-password").await {
        Err(sqlx::Error::Database(e)) => {
            assert_eq!(e.code().as_deref(), Some("28P01"), "{e}")
        }
        other => panic!("a wrong password: {:?}", other.map(|_| "logged in")),
    }
}

#[tokio::test]
async fn the_dev_kafka_image_answers_metadata_at_its_advertised_address() {
    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::types::RDKafkaRespErr;

    let containerd = Containerd::start();
    let network = PodNetwork::create();
    let advertised = format!("{}:9092", network.address);
    let kafka = DevContainer::start(
        &containerd,
        &network,
        "order-dev-kafka",
        &[("KAFKA_ADVERTISED_ADDRESS", &advertised)],
    );
    // A client that would have the broker create topics it asks about, if the broker let it.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &advertised)
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("an admin client");
    let metadata = |topic: Option<&str>| {
        admin
            .inner()
            .fetch_metadata(topic, Duration::from_secs(3))
            .ok()
    };
    let brokers: Vec<(i32, String, i32)> = kafka
        .wait_for("a metadata answer listing a broker", || async {
            let brokers: Vec<_> = metadata(None)?
                .brokers()
                .iter()
                .map(|b| (b.id(), b.host().to_owned(), b.port()))
                .collect();
            (!brokers.is_empty()).then_some(brokers)
        })
        .await;
    assert_eq!(
        brokers,
        [(1, network.address.clone(), 9092)],
        "one broker, at KAFKA_ADVERTISED_ADDRESS"
    );

    // auto.create.topics.enable=false: asking twice about a topic does not make it.
    for _ in 0..2 {
        let answer = metadata(Some("orders.events")).expect("metadata for one topic");
        let topic = &answer.topics()[0];
        assert_eq!(
            topic.error(),
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
            "orders.events is not created by a metadata request"
        );
    }
}

#[tokio::test]
async fn the_dev_moto_image_answers_dynamodb_list_tables_on_port_8000() {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_dynamodb::config::Credentials;

    let containerd = Containerd::start();
    let network = PodNetwork::create();
    let moto = DevContainer::start(&containerd, &network, "order-dev-moto", &[]);
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{}:8000", network.address))
        .credentials_provider(Credentials::new("dev", "dev", None, None, "the chart's"))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let tables = moto
        .wait_for("a ListTables answer", || async {
            client.list_tables().send().await.ok()
        })
        .await;
    assert!(tables.table_names().is_empty(), "{tables:?}");
}
