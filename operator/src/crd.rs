//! The `OrderPlatform` custom resource (`platform.orders.dev/v1alpha1`).
//!
//! Every field carries a doc comment: it becomes the schema description that
//! `kubectl explain orderplatform.spec…` shows. Validation that the apiserver can do (ranges,
//! CEL rules, immutability) lives here, so a bad spec is refused before the operator sees it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The longest `metadata.name`: child names add up to 20 characters (`-migrate-<hash>`), and
/// Kubernetes names stop at 63.
pub const MAX_NAME_LENGTH: usize = 40;

/// An order platform: the order service with its PostgreSQL schema, DynamoDB tables and Kafka
/// topics.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "platform.orders.dev",
    version = "v1alpha1",
    kind = "OrderPlatform",
    plural = "orderplatforms",
    shortname = "op",
    namespaced,
    status = "OrderPlatformStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"DataFlowing","type":"string","jsonPath":".status.conditions[?(@.type==\"DataFlowing\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("size(self.metadata.name) <= 40").message("metadata.name must be at most 40 characters: the operator derives child names from it")
)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlatformSpec {
    /// Container image of the order service, e.g. `ghcr.io/example/order-service:1.4.0`. A new
    /// image first runs its migrations in a Job; the Deployment moves to it only after they
    /// succeeded.
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    #[schemars(length(max = 512))]
    pub image: String,
    /// Pods of the order service when autoscaling is off (default 2).
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0").message("replicas must be 0 or more"))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the service container. Default: requests 100m CPU
    /// and 64Mi memory, a 256Mi memory limit (measured on a real node: about 6 MiB idle, 48 MiB
    /// and 360m CPU at 700 creates/s; `make bench-node`, docs/performance.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The Service in front of the pods.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Extra environment variables of the service container. Names the operator sets (the
    /// database URL and everything the spec configures) are refused: set those through their
    /// spec fields. Variables from `dynamodb.credentialsSecretRef` and
    /// `kafka.securitySecretRef` are overridden by an entry here of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(RESERVED_ENV_RULE).message("env may not set a variable the operator sets (DATABASE_URL, DATABASE_READ_URL, ORDER_SERVICE_*, KAFKA_BOOTSTRAP_SERVERS, AWS_REGION, DYNAMODB_ENDPOINT from the spec): use the spec field instead"))]
    pub env: Vec<EnvVar>,
    /// The service account of the service pods (and of the migration Job), e.g. one annotated
    /// for IRSA so the service reaches DynamoDB without a credentials Secret. Default: the
    /// namespace's `default`. Its token is mounted only through projected volumes a webhook
    /// adds (IRSA); the operator never automounts one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("serviceAccountName must be a DNS subdomain name"))]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
    /// Secrets for pulling `image` from a private registry, for the service pods and the
    /// migration Job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(s, size(s.name) > 0)").message("imagePullSecrets entries need a name"))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Node labels the service pods and the migration Job must run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the service pods and the migration Job tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the service pods (not the migration Job), e.g. anti-affinity across zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the service pods spread across zones or nodes. A constraint without a
    /// `labelSelector` gets one that selects this platform's service pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// The Deployment's rolling update: how many pods above and below the replica count a
    /// rollout may use. Default: Kubernetes' 25% and 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateSpec>,
    /// Horizontal autoscaling; when set, the HPA owns the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// A PodDisruptionBudget for the service pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetSpec>,
    /// How long a rollout may go without progress (new pods not becoming ready, say a
    /// crash-looping image) before the platform reports `Ready=False` with reason
    /// `RolloutStuck` and a Warning Event; the old pods keep serving meanwhile. The
    /// Deployment's `progressDeadlineSeconds`; default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 86400").message("progressDeadlineSeconds must be 10 to 86400"))]
    pub progress_deadline_seconds: Option<i32>,
    /// PostgreSQL: where the orders live, and how migrations run.
    pub database: DatabaseSpec,
    /// DynamoDB: status history and hourly counters.
    pub dynamodb: DynamoDbSpec,
    /// Kafka: where order events are published.
    pub kafka: KafkaSpec,
    /// The fulfilment saga's participants. Without them the saga is off and orders are
    /// confirmed through the status API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<ParticipantsSpec>,
    /// The product catalog creates are priced from. Without it the service takes names and
    /// prices from the client (development mode only: anyone could buy anything for a cent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogSpec>,
    /// Who may call the API: bearer tokens from an OIDC issuer. Required: a platform without
    /// authentication says so with `disabled: true` (development only).
    pub auth: AuthSpec,
    /// Requests per principal (per client address without a token) the API accepts; without
    /// it, no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// What happens to DynamoDB tables and Kafka topics when this resource is deleted:
    /// `Retain` (default) keeps them, `Delete` removes them. Kubernetes children are always
    /// removed.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// When true the operator changes nothing and reports `Paused`.
    #[serde(default)]
    pub paused: bool,
    /// How the operator judges whether the service moves its data (the `DataFlowing`
    /// condition, from the service's `/flowz` on each resync).
    #[serde(default)]
    pub data_flow: DataFlowSpec,
}

/// Thresholds of the `DataFlowing` condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowSpec {
    /// `DataFlowing` turns False (reason `BacklogAging`) when the oldest event pending for a
    /// sink is older than this many seconds. Default 300.
    #[serde(default = "default_max_pending_age")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 604800").message("dataFlow.maxPendingAgeSeconds must be 10 to 604800"))]
    pub max_pending_age_seconds: i64,
}

impl Default for DataFlowSpec {
    fn default() -> Self {
        Self {
            max_pending_age_seconds: default_max_pending_age(),
        }
    }
}

fn default_max_pending_age() -> i64 {
    300
}

fn default_replicas() -> i32 {
    2
}

/// Names the operator sets in the service container: `env` may not repeat them (a duplicate
/// would make every apply fail, and an override would leave the spec saying one thing and the
/// pods doing another). A unit test checks this covers every name the builders write.
pub const RESERVED_ENV: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_READ_URL",
    "ORDER_SERVICE_ADDR",
    "ORDER_SERVICE_LOG_FORMAT",
    "ORDER_SERVICE_SINKS",
    "ORDER_SERVICE_TABLE_PREFIX",
    "ORDER_SERVICE_HISTORY_RETENTION_DAYS",
    "ORDER_SERVICE_EVENTS_TOPIC",
    "ORDER_SERVICE_CUSTOMER_URL",
    "ORDER_SERVICE_INVENTORY_URL",
    "ORDER_SERVICE_PAYMENT_URL",
    "ORDER_SERVICE_PARTICIPANT_TIMEOUT",
    "ORDER_SERVICE_PARTICIPANT_RETRIES",
    "ORDER_SERVICE_BREAKER_FAILURES",
    "ORDER_SERVICE_PARTICIPANT_CONCURRENCY",
    "ORDER_SERVICE_PARTICIPANT_CA_PEM",
    "ORDER_SERVICE_CATALOG_URL",
    "ORDER_SERVICE_CATALOG_CACHE_TTL",
    "ORDER_SERVICE_CATALOG_MAX_STALENESS",
    "ORDER_SERVICE_CATALOG_CACHE_CAPACITY",
    "ORDER_SERVICE_PRODUCT_EVENTS_TOPIC",
    "ORDER_SERVICE_CATALOG_CA_PEM",
    "ORDER_SERVICE_AUTH_DISABLED",
    "ORDER_SERVICE_AUTH_ISSUER",
    "ORDER_SERVICE_AUTH_AUDIENCE",
    "ORDER_SERVICE_AUTH_ALGORITHMS",
    "ORDER_SERVICE_AUTH_ROLES_CLAIM",
    "ORDER_SERVICE_AUTH_STAFF_ROLE",
    "ORDER_SERVICE_AUTH_CUSTOMER_CLAIM",
    "ORDER_SERVICE_AUTH_SCOPES_CLAIM",
    "ORDER_SERVICE_RATE_LIMIT_PER_SECOND",
    "ORDER_SERVICE_RATE_LIMIT_BURST",
    "ORDER_SERVICE_SHUTDOWN_TIMEOUT",
    "KAFKA_BOOTSTRAP_SERVERS",
    "AWS_REGION",
    "DYNAMODB_ENDPOINT",
];

/// The CEL form of [`RESERVED_ENV`] (a test keeps the two equal).
const RESERVED_ENV_RULE: &str = "self.all(e, !(e.name in ['DATABASE_URL', 'DATABASE_READ_URL', 'ORDER_SERVICE_ADDR', 'ORDER_SERVICE_LOG_FORMAT', 'ORDER_SERVICE_SINKS', 'ORDER_SERVICE_TABLE_PREFIX', 'ORDER_SERVICE_HISTORY_RETENTION_DAYS', 'ORDER_SERVICE_EVENTS_TOPIC', 'ORDER_SERVICE_CUSTOMER_URL', 'ORDER_SERVICE_INVENTORY_URL', 'ORDER_SERVICE_PAYMENT_URL', 'ORDER_SERVICE_PARTICIPANT_TIMEOUT', 'ORDER_SERVICE_PARTICIPANT_RETRIES', 'ORDER_SERVICE_BREAKER_FAILURES', 'ORDER_SERVICE_PARTICIPANT_CONCURRENCY', 'ORDER_SERVICE_PARTICIPANT_CA_PEM', 'ORDER_SERVICE_CATALOG_URL', 'ORDER_SERVICE_CATALOG_CACHE_TTL', 'ORDER_SERVICE_CATALOG_MAX_STALENESS', 'ORDER_SERVICE_CATALOG_CACHE_CAPACITY', 'ORDER_SERVICE_PRODUCT_EVENTS_TOPIC', 'ORDER_SERVICE_CATALOG_CA_PEM', 'ORDER_SERVICE_AUTH_DISABLED', 'ORDER_SERVICE_AUTH_ISSUER', 'ORDER_SERVICE_AUTH_AUDIENCE', 'ORDER_SERVICE_AUTH_ALGORITHMS', 'ORDER_SERVICE_AUTH_ROLES_CLAIM', 'ORDER_SERVICE_AUTH_STAFF_ROLE', 'ORDER_SERVICE_AUTH_CUSTOMER_CLAIM', 'ORDER_SERVICE_AUTH_SCOPES_CLAIM', 'ORDER_SERVICE_RATE_LIMIT_PER_SECOND', 'ORDER_SERVICE_RATE_LIMIT_BURST', 'ORDER_SERVICE_SHUTDOWN_TIMEOUT', 'KAFKA_BOOTSTRAP_SERVERS', 'AWS_REGION', 'DYNAMODB_ENDPOINT']))";

/// How a rollout replaces pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.maxSurge) && has(self.maxUnavailable) && (type(self.maxSurge) == int ? self.maxSurge == 0 : self.maxSurge == '0%') && (type(self.maxUnavailable) == int ? self.maxUnavailable == 0 : self.maxUnavailable == '0%'))").message("rollingUpdate.maxSurge and rollingUpdate.maxUnavailable cannot both be 0: the rollout could never replace a pod"))]
pub struct RollingUpdateSpec {
    /// Pods above the replica count during a rollout: a number or a percentage (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')").message("rollingUpdate.maxSurge must be a number of pods (0 or more) or a percentage such as 25%"))]
    pub max_surge: Option<IntOrString>,
    /// Pods below the replica count during a rollout: a number or a percentage (default 25%).
    /// 0 keeps full capacity while new pods start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')").message("rollingUpdate.maxUnavailable must be a number of pods (0 or more) or a percentage such as 25%"))]
    pub max_unavailable: Option<IntOrString>,
}

/// How the order API is exposed inside the cluster.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.nodePort) || self.type != 'ClusterIP'").message("service.nodePort needs type NodePort or LoadBalancer"))]
pub struct ServiceSpec {
    /// Port of the Service (the container always listens on 8080).
    #[serde(default = "default_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("service.port must be 1 to 65535"))]
    pub port: i32,
    /// `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// A fixed node port (e.g. `30080`, which kind-config.yaml maps to localhost); unset lets
    /// Kubernetes pick one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("service.nodePort must be 1 to 65535"))]
    pub node_port: Option<i32>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            port: default_port(),
            type_: ServiceType::default(),
            node_port: None,
        }
    }
}

fn default_port() -> i32 {
    8080
}

#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Horizontal pod autoscaling on CPU.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest pods.
    #[x_kube(validation = Rule::new("self >= 1").message("autoscaling.minReplicas must be at least 1"))]
    pub min_replicas: i32,
    /// Most pods.
    pub max_replicas: i32,
    /// Average CPU utilization to aim for, in percent of the request (default 70).
    #[serde(default = "default_cpu_target")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("autoscaling.targetCpuUtilization must be 1 to 100"))]
    pub target_cpu_utilization: i32,
}

fn default_cpu_target() -> i32 {
    70
}

/// A PodDisruptionBudget: how many service pods voluntary disruptions may take down at once.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Pods that may be unavailable at once (default 1).
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("self >= 0").message("podDisruptionBudget.maxUnavailable must be 0 or more"))]
    pub max_unavailable: i32,
}

fn default_max_unavailable() -> i32 {
    1
}

/// PostgreSQL access and migrations.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The Secret (in this namespace) whose key holds the PostgreSQL URL.
    pub secret_ref: SecretKeyRef,
    /// The Secret (in this namespace) whose key (default `DATABASE_URL`) holds the URL of a
    /// streaming read replica of that database. Order lists and the reports read from it while
    /// it is close enough behind (the service's `DATABASE_READ_URL`); tune with
    /// `ORDER_SERVICE_REPLICA_*` and `ORDER_SERVICE_*_WHEN_REPLICA_BEHIND` in `env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_replica_secret_ref: Option<SecretKeyRef>,
    /// The migration Job that runs before a new image rolls out.
    #[serde(default)]
    pub migrations: MigrationsSpec,
}

/// A key of a Secret in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be a DNS subdomain name"))]
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key in the Secret (default `DATABASE_URL`).
    #[serde(default = "default_database_key")]
    #[schemars(length(max = 253))]
    pub key: String,
}

fn default_database_key() -> String {
    "DATABASE_URL".into()
}

/// How migrations run.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationsSpec {
    /// Run `order-service migrate` in a Job before each new image (default true). When false,
    /// images roll out at once and the schema is someone else's job.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Retries of a failed migration pod (default 2).
    #[serde(default = "default_backoff_limit")]
    #[x_kube(validation = Rule::new("self >= 0").message("migrations.backoffLimit must be 0 or more"))]
    pub backoff_limit: i32,
    /// Extra labels on migration pods (policies, meshes; tests use them to simulate failure).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Longest a migration Job may run, in seconds (default 600).
    #[serde(default = "default_deadline")]
    #[x_kube(validation = Rule::new("self >= 1").message("migrations.activeDeadlineSeconds must be at least 1"))]
    pub active_deadline_seconds: i64,
    /// CPU and memory requests and limits of the migration container (namespaces with a
    /// ResourceQuota need them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for MigrationsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            backoff_limit: default_backoff_limit(),
            pod_labels: BTreeMap::new(),
            active_deadline_seconds: default_deadline(),
            resources: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_backoff_limit() -> i32 {
    2
}

fn default_deadline() -> i64 {
    600
}

/// DynamoDB tables of the status history and counters.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynamoDbSpec {
    /// AWS region (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint override for DynamoDB Local or moto, e.g. `http://dynamodb-local:8000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A Secret holding `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; without it the AWS
    /// default chain applies (e.g. IRSA web identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<String>,
    /// Table name prefix: tables are `<prefix>-status-history` and `<prefix>-status-counters`.
    /// Immutable: a new prefix would leave the old tables' data behind.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_.-]{1,200}$')").message("tablePrefix may only hold letters, digits, '_', '.' and '-' (1 to 200)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tablePrefix is immutable: changing it would orphan the existing tables"))]
    #[schemars(length(max = 200))]
    pub table_prefix: String,
    /// `PAY_PER_REQUEST` (default) or `PROVISIONED`. The operator changes a table's billing
    /// mode when this changes (AWS allows one switch per table per 24 hours).
    #[serde(default)]
    pub billing_mode: BillingMode,
    /// Capacity of each table when `billingMode` is `PROVISIONED` (default 5 and 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_throughput: Option<ProvisionedThroughputSpec>,
    /// Days status history items are kept (DynamoDB TTL; default 365).
    #[serde(default = "default_retention")]
    #[x_kube(validation = Rule::new("self >= 1").message("historyRetentionDays must be at least 1"))]
    pub history_retention_days: i32,
    /// Adopt existing tables that no OrderPlatform owns (no `orders.dev/owner` tag) and that
    /// have the service's key schema: they are tagged as this platform's, shown as `Adopted` in
    /// the status, and deleted with it under `deletionPolicy: Delete`. Off by default: such a
    /// table is refused with `AdoptionRequired`. Another platform's table is never adopted.
    #[serde(default)]
    pub adopt_existing: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_retention() -> i32 {
    365
}

/// Read and write capacity units of a `PROVISIONED` table.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedThroughputSpec {
    /// Read capacity units (default 5).
    #[serde(default = "default_capacity")]
    #[x_kube(validation = Rule::new("self >= 1").message("readCapacityUnits must be at least 1"))]
    pub read_capacity_units: i64,
    /// Write capacity units (default 5).
    #[serde(default = "default_capacity")]
    #[x_kube(validation = Rule::new("self >= 1").message("writeCapacityUnits must be at least 1"))]
    pub write_capacity_units: i64,
}

impl Default for ProvisionedThroughputSpec {
    fn default() -> Self {
        Self {
            read_capacity_units: default_capacity(),
            write_capacity_units: default_capacity(),
        }
    }
}

fn default_capacity() -> i64 {
    5
}

#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[allow(non_camel_case_types)] // the DynamoDB API's own spelling
pub enum BillingMode {
    #[default]
    PAY_PER_REQUEST,
    PROVISIONED,
}

/// Kafka connection and topics.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.topics.exists(t, t.name == self.eventsTopic)").message("kafka.eventsTopic must name one of kafka.topics"))]
#[x_kube(validation = Rule::new("oldSelf.topics.all(o, self.topics.exists(t, t.name == o.name))").message("topic names are immutable: a topic cannot be renamed or removed (its data would be orphaned)"))]
pub struct KafkaSpec {
    /// Bootstrap servers, comma-separated `host:port`.
    #[x_kube(validation = Rule::new("self.size() > 0").message("kafka.bootstrapServers must not be empty"))]
    #[schemars(length(max = 1024))]
    pub bootstrap_servers: String,
    /// The topic order events are published to (one of `topics`).
    #[serde(default = "default_events_topic")]
    #[schemars(length(max = 249))]
    pub events_topic: String,
    /// Topics the operator keeps in shape.
    #[x_kube(validation = Rule::new("self.size() >= 1").message("kafka.topics must list at least one topic"))]
    #[schemars(length(max = 16))]
    pub topics: Vec<TopicSpec>,
    /// A Secret with the key `ORDER_SERVICE_KAFKA_PROPERTIES`: librdkafka security settings as
    /// comma-separated `key=value` (e.g. `security.protocol=SASL_SSL,sasl.mechanism=PLAIN,…`),
    /// given to the service as environment and used by the operator's admin client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_secret_ref: Option<String>,
    /// Adopt listed topics that exist but that this platform did not create: their partitions
    /// and config are then kept in shape, they are shown as `Adopted` in the status, and
    /// deleted with the platform under `deletionPolicy: Delete`. Off by default: such a topic is
    /// refused with `AdoptionRequired`. A topic another OrderPlatform (older) names is refused
    /// with `ResourceConflict` either way.
    #[serde(default)]
    pub adopt_existing: bool,
}

fn default_events_topic() -> String {
    platform_resources::DEFAULT_EVENTS_TOPIC.into()
}

/// One Kafka topic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Topic name.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9._-]{1,249}$') && self != '.' && self != '..'").message("topic name may only hold letters, digits, '.', '_' and '-' (1 to 249)"))]
    #[schemars(length(max = 249))]
    pub name: String,
    /// Partitions (default 3). Never decreased; increased only with `allowPartitionIncrease`.
    #[serde(default = "default_partitions")]
    #[x_kube(validation = Rule::new("self >= 1").message("partitions must be at least 1"))]
    pub partitions: i32,
    /// Replication factor (default 1); cannot change after creation.
    #[serde(default = "default_replication")]
    #[x_kube(validation = Rule::new("self >= 1").message("replicationFactor must be at least 1"))]
    pub replication_factor: i32,
    /// Topic configs (e.g. `retention.ms`). Keys dropped from here are reset to the broker default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Allow growing the partition count. Off by default: the topic is keyed by order id, and
    /// more partitions move keys, breaking per-order ordering for orders in flight.
    #[serde(default)]
    pub allow_partition_increase: bool,
}

fn default_partitions() -> i32 {
    platform_resources::DEFAULT_TOPIC_PARTITIONS
}

fn default_replication() -> i32 {
    1
}

/// The services the order fulfilment saga calls (contracts: docs/participants.md).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantsSpec {
    /// Customer service base URL, e.g. `http://customers.shop.svc:8080/` or
    /// `https://customers.shop.svc:8443/` (trusted through `caConfigMapRef`, else the image's
    /// system roots).
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("participant URLs must start with http:// or https://"))]
    #[schemars(length(max = 2048))]
    pub customer_url: String,
    /// Inventory service base URL.
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("participant URLs must start with http:// or https://"))]
    #[schemars(length(max = 2048))]
    pub inventory_url: String,
    /// Payment service base URL.
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("participant URLs must start with http:// or https://"))]
    #[schemars(length(max = 2048))]
    pub payment_url: String,
    /// Bound on one call, e.g. `2s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(ms|s|m)$')").message("timeout must look like 500ms, 2s or 1m"))]
    #[schemars(length(max = 16))]
    pub timeout: Option<String>,
    /// Retries of a call for timeouts, 5xx and 429 (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("retries must be 0 to 10"))]
    pub retries: Option<i32>,
    /// Consecutive failures that open a participant's circuit breaker (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("breakerFailures must be at least 1"))]
    pub breaker_failures: Option<i32>,
    /// Most concurrent calls to one participant per pod (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("maxConcurrentCalls must be at least 1"))]
    pub max_concurrent_calls: Option<i32>,
    /// A ConfigMap key (in this namespace) holding the PEM bundle of the CAs that sign the
    /// https participants' certificates (e.g. trust-manager's bundle); when set, only these
    /// are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<ConfigMapKeyRef>,
}

/// The product catalog (contract, cache and events: docs/participants.md). Calls to it use the
/// participants' timeout, retries, breaker and bulkhead settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogSpec {
    /// Catalog base URL, e.g. `http://catalog.shop.svc:8080/` or `https://catalog.shop.svc:8443/`
    /// (trusted through `caConfigMapRef`, else the image's system roots).
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("catalog.url must start with http:// or https://"))]
    #[schemars(length(max = 2048))]
    pub url: String,
    /// How long a cached product is used without asking the catalog, e.g. `5m` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(ms|s|m|h)$')").message("cacheTtl must look like 30s, 5m or 1h"))]
    #[schemars(length(max = 16))]
    pub cache_ttl: Option<String>,
    /// While the catalog is unreachable, cached products up to this age are still used, e.g.
    /// `15m` (default); past it, creates answer 503. At least `cacheTtl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(ms|s|m|h)$')").message("maxStaleness must look like 30s, 15m or 1h"))]
    #[schemars(length(max = 16))]
    pub max_staleness: Option<String>,
    /// Most products cached per pod (default 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("cacheCapacity must be at least 1"))]
    pub cache_capacity: Option<i64>,
    /// The catalog's `product.updated`/`product.deleted` topic on `kafka.bootstrapServers`
    /// (keyed by SKU; docs/events.md). Every pod reads every partition and drops changed
    /// products from its cache at once; without it, cached products age out by `cacheTtl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9._-]{1,249}$')").message("productEventsTopic must be a Kafka topic name"))]
    #[schemars(length(max = 249))]
    pub product_events_topic: Option<String>,
    /// A ConfigMap key (in this namespace) holding the PEM bundle of the CAs that sign an
    /// https catalog's certificate; when set, only these are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<ConfigMapKeyRef>,
}

/// A key of a ConfigMap in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// ConfigMap name.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be a DNS subdomain name"))]
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key in the ConfigMap (default `ca.crt`).
    #[serde(default = "default_ca_key")]
    #[schemars(length(max = 253))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// Authentication and authorization of API calls (README: Authentication).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.disabled || (has(self.issuer) && has(self.audience))").message("auth needs issuer and audience, or disabled: true (development only: anyone who reaches the API may do anything)"))]
pub struct AuthSpec {
    /// Serve without authentication (development only): the service logs a warning at start
    /// and `/readyz` shows it.
    #[serde(default)]
    pub disabled: bool,
    /// The OIDC issuer URL; its discovery document names the signing keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("auth.issuer must be an http(s) URL"))]
    #[schemars(length(max = 2048))]
    pub issuer: Option<String>,
    /// The `aud` tokens must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub audience: Option<String>,
    /// Signature algorithms accepted (default RS256); never taken from the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub algorithms: Vec<String>,
    /// The claim listing the caller's roles or groups (default `groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub roles_claim: Option<String>,
    /// The role that makes a caller staff (default `staff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub staff_role: Option<String>,
    /// The claim holding a customer's id (default `customer_id`; with Dex, which cannot add
    /// claims, `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub customer_claim: Option<String>,
    /// The claim holding a service caller's scopes (default `scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub scopes_claim: Option<String>,
}

/// A token bucket per principal.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Sustained requests per second.
    #[x_kube(validation = Rule::new("self >= 1").message("rateLimit.perSecond must be at least 1"))]
    pub per_second: i32,
    /// Requests allowed at once above the sustained rate (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("rateLimit.burst must be at least 1"))]
    pub burst: Option<i32>,
}

/// What deleting the resource does to external data.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// Where the platform stands.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlatformStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Migrating`, `Progressing`, `Ready`, `Degraded`, `Paused` or `Deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `MigrationsSucceeded`, `TablesReady`, `TopicsReady`, `ServiceAvailable`, `Ready`,
    /// `DataFlowing` (not part of `Ready`), and `Paused` while paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The newest image whose migrations succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_image: Option<String>,
    /// What those migrations were validated for: a hash of the image, the database Secret
    /// and key, and the `platform.orders.dev/retry-migrations` annotation. A new value of any
    /// of them runs migrations again before the pods use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_revision: Option<String>,
    /// The image the Deployment runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_image: Option<String>,
    /// Ready service pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The DynamoDB tables, as last provisioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<ExternalResourceStatus>,
    /// The Kafka topics, as last provisioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<ExternalResourceStatus>,
    /// What the service's `/flowz` said on the last resync that reached it: its outbox per sink
    /// and its stuck sagas. Kept from that resync while the service cannot be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_flow: Option<DataFlowStatus>,
}

/// The service's data flow, as read from its `/flowz`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowStatus {
    /// One entry per sink the service delivers to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkFlowStatus>,
    /// Unfinished sagas at the same step for longer than the service's `--saga-stuck-after`
    /// (`order-service sagas --stuck` lists them).
    #[serde(default)]
    pub sagas_stuck: i64,
    /// When it was read (RFC 3339, UTC).
    pub observed_at: String,
}

/// One sink's outbox.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkFlowStatus {
    /// `dynamodb` or `kafka`.
    pub sink: String,
    /// Deliveries waiting.
    pub pending: i64,
    /// Age in whole seconds of the oldest pending event; unset when nothing is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_seconds: Option<i64>,
    /// Deliveries the sink refused for good (`order-service outbox parked`).
    pub parked: i64,
}

/// One table or topic.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalResourceStatus {
    pub name: String,
    /// `Ready`, `Refused` (a change the operator will not make; see `lastError`) or `Failed`
    /// (a call failed; retried with backoff).
    pub state: String,
    /// Why it is not `Ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `Created` (this platform created it) or `Adopted` (it existed and the spec adopted
    /// it): only such a resource is deleted under `deletionPolicy: Delete`. Unset when the
    /// platform does not hold it (refused). For topics this is the only record of ownership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    #[test]
    fn auth_is_required_in_the_schema() {
        let crd = serde_json::to_value(OrderPlatform::crd()).expect("crd");
        let required = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["spec"]["required"];
        assert!(
            required
                .as_array()
                .is_some_and(|r| r.iter().any(|f| f == "auth")),
            "{required}"
        );
    }

    #[test]
    fn the_committed_crd_is_the_generated_one() {
        let generated = serde_yaml::to_string(&OrderPlatform::crd()).expect("CRD as YAML");
        let committed = include_str!("../../crds/orderplatform.yaml");
        assert!(
            generated == committed,
            "crds/orderplatform.yaml is stale: run `cargo run -p order-operator -- crd > crds/orderplatform.yaml`"
        );
    }

    #[test]
    fn the_examples_parse_with_the_rust_types() {
        for (name, text) in [
            ("minimal", include_str!("../../examples/minimal.yaml")),
            ("full", include_str!("../../examples/full.yaml")),
        ] {
            let platform: OrderPlatform =
                serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                platform
                    .spec
                    .kafka
                    .topics
                    .iter()
                    .any(|t| t.name == platform.spec.kafka.events_topic),
                "{name}"
            );
        }
        let full: OrderPlatform =
            serde_yaml::from_str(include_str!("../../examples/full.yaml")).unwrap();
        assert_eq!(full.spec.kafka.topics[0].partitions, 12);
        assert_eq!(
            full.spec.participants.as_ref().map(|p| p.retries),
            Some(Some(2))
        );
        assert_eq!(full.spec.autoscaling.unwrap().max_replicas, 10);
        let catalog = full
            .spec
            .catalog
            .expect("the full example prices from a catalog");
        assert_eq!(
            catalog.product_events_topic.as_deref(),
            Some("catalog.products")
        );
    }

    #[test]
    fn the_cel_rule_refuses_exactly_the_reserved_names() {
        let quoted: Vec<String> = RESERVED_ENV.iter().map(|n| format!("'{n}'")).collect();
        assert_eq!(
            RESERVED_ENV_RULE,
            format!("self.all(e, !(e.name in [{}]))", quoted.join(", "))
        );
    }

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let minimal: OrderPlatform =
            serde_yaml::from_str(include_str!("../../examples/minimal.yaml")).unwrap();
        let spec = minimal.spec;
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.service.port, 8080);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert!(spec.database.migrations.enabled);
        assert_eq!(spec.database.secret_ref.key, "DATABASE_URL");
        assert_eq!(spec.kafka.events_topic, "orders.events");
        assert_eq!(spec.kafka.topics[0].partitions, 3);
        assert!(!spec.paused);
    }
}
