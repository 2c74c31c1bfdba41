//! The operator against the local control plane: the CRD installed for real, the controller
//! running in-process and watching only the test's namespace, waits with timeouts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::stack;
use crate::support::{self, connect, poll_until, wait_for, TestNamespace, CONTROL_PLANE_TIMEOUT};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, ResourceQuota, ResourceQuotaSpec, Secret, Service,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::conditions;
use kube::runtime::events::Reporter;
use kube::runtime::wait::Condition;
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use order_operator::controller::{self, build, Context, FINALIZER};
use order_operator::crd::OrderPlatform;
use order_operator::metrics::Metrics;
use serde_json::json;
use tokio::task::JoinHandle;

pub(crate) const IMAGE_1: &str = "registry.example/order-service:1.0.0";
const IMAGE_2: &str = "registry.example/order-service:2.0.0";
const IMAGE_3: &str = "registry.example/order-service:3.0.0";

/// Installs the CRD (idempotent: server-side apply) and waits until it is established.
pub(crate) async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = OrderPlatform::crd();
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply("order-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("install the OrderPlatform CRD");
    wait_for(
        &crds,
        &crd.name_any(),
        conditions::is_crd_established(),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
}

/// A namespace with the CRD installed, a database Secret, and the operator watching it.
pub(crate) struct Harness {
    pub(crate) namespace: TestNamespace,
    operator: JoinHandle<()>,
    metrics: Arc<Metrics>,
}

/// How often the test operator re-checks a platform, where a test waits for a resync.
pub(crate) const SHORT_RESYNC: Duration = Duration::from_secs(2);

impl Harness {
    pub(crate) async fn start() -> Self {
        Self::start_with(None, Duration::from_secs(300)).await
    }

    /// With `Some(service_account)`, the operator runs as that ServiceAccount of the test
    /// namespace, bound to the operator's ClusterRole there and nothing else.
    pub(crate) async fn start_with(service_account: Option<&str>, resync: Duration) -> Self {
        Self::start_with_cleanup_timeout(service_account, resync, Duration::from_secs(600)).await
    }

    /// With a bound on how long a failing `deletionPolicy: Delete` cleanup is retried.
    pub(crate) async fn start_with_cleanup_timeout(
        service_account: Option<&str>,
        resync: Duration,
        cleanup_timeout: Duration,
    ) -> Self {
        let admin = connect().await;
        install_crd(&admin).await;
        let namespace = TestNamespace::create(&admin).await;
        let client = match service_account {
            None => admin.clone(),
            Some(account) => bind_operator_role(&admin, &namespace, account).await,
        };
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "shop-database"},
            "stringData": {"DATABASE_URL": "postgres://orders@postgres/orders"}
        }))
        .expect("secret");
        namespace
            .api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
        let metrics = Arc::new(Metrics::default());
        let ctx = Arc::new(
            Context::new(
                client.clone(),
                Reporter {
                    controller: "order-operator".into(),
                    instance: Some("tests".into()),
                },
                metrics.clone(),
                resync,
            )
            .with_provision_timeout(Duration::from_secs(10))
            .with_cleanup_timeout(cleanup_timeout),
        );
        let watched = Some(namespace.name().to_owned());
        let operator = tokio::spawn(controller::run(ctx, watched, std::future::pending()));
        Self {
            namespace,
            operator,
            metrics,
        }
    }

    /// Waits until the operator has finished `n` more reconciles (resyncs, for a test that
    /// checks something stays as it is).
    pub(crate) async fn wait_reconciles(&self, n: u64) {
        let start = self.metrics.reconcile_summary().0;
        poll_until(
            CONTROL_PLANE_TIMEOUT,
            &format!("{n} more reconciles"),
            || async { (self.metrics.reconcile_summary().0 >= start + n).then_some(()) },
        )
        .await;
    }

    pub(crate) fn platforms(&self) -> Api<OrderPlatform> {
        self.namespace.api()
    }

    /// A spec whose tables and topic are this test's own, on the local stack.
    pub(crate) fn spec(&self, image: &str) -> serde_json::Value {
        let mut spec = spec(image);
        merge(
            &mut spec,
            json!({
                "dynamodb": {"tablePrefix": self.table_prefix(), "endpoint": stack::dynamodb_endpoint()},
                "kafka": {"bootstrapServers": stack::kafka_servers(), "eventsTopic": self.topic(),
                          "topics": [{"name": self.topic()}]},
            }),
        );
        spec
    }

    pub(crate) fn table_prefix(&self) -> String {
        self.namespace.name().to_owned()
    }

    pub(crate) fn history_table(&self) -> String {
        format!("{}-status-history", self.table_prefix())
    }

    pub(crate) fn counters_table(&self) -> String {
        format!("{}-status-counters", self.table_prefix())
    }

    pub(crate) fn topic(&self) -> String {
        format!("{}.events", self.namespace.name())
    }

    pub(crate) async fn create(&self, spec: serde_json::Value) -> OrderPlatform {
        self.create_named("shop", spec).await
    }

    pub(crate) async fn create_named(&self, name: &str, spec: serde_json::Value) -> OrderPlatform {
        let platform: OrderPlatform = serde_json::from_value(json!({
            "apiVersion": "platform.orders.dev/v1alpha1",
            "kind": "OrderPlatform",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("platform");
        self.platforms()
            .create(&PostParams::default(), &platform)
            .await
            .expect("create platform")
    }

    pub(crate) async fn patch_spec(&self, spec: serde_json::Value) {
        self.platforms()
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch spec");
    }

    pub(crate) async fn wait_condition(
        &self,
        type_: &'static str,
        status: &'static str,
        reason: Option<&'static str>,
    ) -> OrderPlatform {
        self.wait_named("shop", type_, status, reason).await
    }

    pub(crate) async fn wait_named(
        &self,
        name: &str,
        type_: &'static str,
        status: &'static str,
        reason: Option<&'static str>,
    ) -> OrderPlatform {
        wait_for(
            &self.platforms(),
            name,
            has_condition(type_, status, reason),
            CONTROL_PLANE_TIMEOUT,
        )
        .await
        .expect("platform exists")
    }

    pub(crate) async fn deployment_image(&self) -> Option<String> {
        let deployment = self
            .namespace
            .api::<Deployment>()
            .get_opt("shop")
            .await
            .expect("read deployment")?;
        deployment
            .spec?
            .template
            .spec?
            .containers
            .first()?
            .image
            .clone()
    }

    /// The operator's Events with `reason` about the platform, once at least one is there.
    pub(crate) async fn events(&self, reason: &str) -> Vec<Event> {
        poll_until(
            CONTROL_PLANE_TIMEOUT,
            &format!("an Event {reason}"),
            || async {
                let events: Vec<Event> = self
                    .namespace
                    .api::<Event>()
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|e| {
                        e.reason.as_deref() == Some(reason)
                            && e.involved_object.kind.as_deref() == Some("OrderPlatform")
                    })
                    .collect();
                (!events.is_empty()).then_some(events)
            },
        )
        .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.operator.abort();
    }
}

/// Applies the operator's ClusterRole (from `order_operator::rbac`) and binds it to
/// `account` in the test namespace; returns a client impersonating that account once the
/// apiserver's RBAC cache lets it list OrderPlatforms.
async fn bind_operator_role(admin: &Client, namespace: &TestNamespace, account: &str) -> Client {
    use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
    let role = order_operator::rbac::cluster_role();
    Api::<ClusterRole>::all(admin.clone())
        .patch(
            order_operator::rbac::NAME,
            &PatchParams::apply("order-operator-tests").force(),
            &Patch::Apply(&role),
        )
        .await
        .expect("apply the operator ClusterRole");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "order-operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": order_operator::rbac::NAME},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace.name()}]
    }))
    .expect("binding");
    namespace
        .api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind");
    let client = support::connect_as_service_account(namespace.name(), account).await;
    let platforms: Api<OrderPlatform> = Api::namespaced(client.clone(), namespace.name());
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the binding to take effect",
        || async {
            platforms
                .list(&ListParams::default())
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    client
}

pub(crate) fn spec(image: &str) -> serde_json::Value {
    json!({
        "image": image,
        "replicas": 2,
        "podDisruptionBudget": {"maxUnavailable": 1},
        "database": {"secretRef": {"name": "shop-database"}, "migrations": {"backoffLimit": 0}},
        "dynamodb": {"tablePrefix": "shop", "endpoint": "http://moto:5000"},
        "kafka": {"bootstrapServers": "kafka:9092", "topics": [{"name": "orders.events"}]}
    })
}

/// Holds once the platform has condition `type_` with `status` (and `reason`, when given)
/// for its current generation.
pub(crate) fn has_condition(
    type_: &'static str,
    status: &'static str,
    reason: Option<&'static str>,
) -> impl Condition<OrderPlatform> {
    move |platform: Option<&OrderPlatform>| {
        let Some(platform) = platform else {
            return false;
        };
        let generation = platform.metadata.generation;
        platform.status.as_ref().is_some_and(|s| {
            s.observed_generation == generation
                && s.conditions.iter().any(|c| {
                    c.type_ == type_ && c.status == status && reason.is_none_or(|r| c.reason == r)
                })
        })
    }
}

#[tokio::test]
async fn a_new_platform_migrates_first_then_serves_and_becomes_ready() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    let platform = h.wait_condition("Ready", "True", None).await;

    assert!(platform.finalizers().iter().any(|f| f == FINALIZER));
    let status = platform.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Ready"));
    assert_eq!(status.current_image.as_deref(), Some(IMAGE_1));
    assert_eq!(status.migrated_image.as_deref(), Some(IMAGE_1));
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .clone()
    };
    assert_eq!(condition("MigrationsSucceeded").status, "True");
    assert_eq!(condition("ServiceAvailable").status, "True");
    assert_eq!(condition("TablesReady").status, "True");
    assert_eq!(condition("TopicsReady").status, "True");

    // The Deployment was created only after its image's migration Job completed.
    let job_name = build::migration_job_name(&platform_of(&h).await, IMAGE_1);
    let job = h
        .namespace
        .api::<Job>()
        .get(&job_name)
        .await
        .expect("migration job");
    let completed = job
        .status
        .and_then(|s| s.completion_time)
        .expect("job completed")
        .0;
    let deployment = h
        .namespace
        .api::<Deployment>()
        .get("shop")
        .await
        .expect("deployment");
    assert!(
        deployment.creation_timestamp().unwrap().0 >= completed,
        "deployment after migration"
    );
    for kind_exists in [
        h.namespace
            .api::<Service>()
            .get_opt("shop")
            .await
            .unwrap()
            .is_some(),
        h.namespace
            .api::<ConfigMap>()
            .get_opt("shop-config")
            .await
            .unwrap()
            .is_some(),
        h.namespace
            .api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>()
            .get_opt("shop")
            .await
            .unwrap()
            .is_some(),
    ] {
        assert!(kind_exists);
    }
    assert!(
        !h.events("MigrationStarted").await.is_empty(),
        "an Event for the migration"
    );
}

async fn platform_of(h: &Harness) -> OrderPlatform {
    h.platforms().get("shop").await.expect("platform")
}

#[tokio::test]
async fn an_image_change_waits_for_its_migration_job_before_the_deployment_moves() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;

    // A quota at today's pod count keeps the next migration Job from starting its pod.
    let quota = ResourceQuota {
        metadata: kube::api::ObjectMeta {
            name: Some("hold".into()),
            ..Default::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([(
                "count/pods".into(),
                Quantity("2".into()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    h.namespace
        .api::<ResourceQuota>()
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota");
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the quota to count the running pods",
        || async {
            let q = h.namespace.api::<ResourceQuota>().get("hold").await.ok()?;
            let used: i32 = q.status?.used?.get("count/pods")?.0.parse().ok()?;
            (used >= 2).then_some(())
        },
    )
    .await;

    h.patch_spec(json!({"image": IMAGE_2})).await;
    h.wait_condition("MigrationsSucceeded", "Unknown", Some("Running"))
        .await;
    assert_eq!(
        h.deployment_image().await.as_deref(),
        Some(IMAGE_1),
        "untouched while migrating"
    );
    let platform = platform_of(&h).await;
    assert_eq!(platform.status.unwrap().phase.as_deref(), Some("Migrating"));

    h.namespace
        .api::<ResourceQuota>()
        .delete("hold", &DeleteParams::default())
        .await
        .expect("lift quota");
    h.wait_condition("Ready", "True", None).await;
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_2));
}

#[tokio::test]
async fn a_failed_migration_keeps_the_old_deployment_and_a_fixed_image_recovers() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;

    h.patch_spec(json!({"image": IMAGE_2, "database": {"migrations": {"podLabels": {"orders.dev/simulate": "fail"}}}})).await;
    let platform = h
        .wait_condition("MigrationsSucceeded", "False", Some("BackoffLimitExceeded"))
        .await;
    assert_eq!(
        h.deployment_image().await.as_deref(),
        Some(IMAGE_1),
        "the old image keeps serving"
    );
    let status = platform.status.unwrap();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BackoffLimitExceeded")
    );
    let warnings = h.events("BackoffLimitExceeded").await;
    assert_eq!(warnings.len(), 1, "one Warning Event");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));

    h.patch_spec(json!({"image": IMAGE_3, "database": {"migrations": {"podLabels": null}}}))
        .await;
    let platform = h.wait_condition("Ready", "True", None).await;
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_3));
    let migrations = platform
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "MigrationsSucceeded")
        .unwrap();
    assert_eq!(
        migrations.status, "True",
        "the condition does not stay stuck on the old error"
    );
}

#[tokio::test]
async fn a_config_change_rolls_the_pods_and_a_deleted_child_comes_back() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;
    let checksum = |d: Deployment| {
        d.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[build::CONFIG_CHECKSUM]
            .clone()
    };
    let before = checksum(h.namespace.api::<Deployment>().get("shop").await.unwrap());

    h.patch_spec(json!({"dynamodb": {"historyRetentionDays": 30}}))
        .await;
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the pod template to carry a new checksum",
        || async {
            let d = h.namespace.api::<Deployment>().get("shop").await.ok()?;
            (checksum(d) != before).then_some(())
        },
    )
    .await;
    let config = h
        .namespace
        .api::<ConfigMap>()
        .get("shop-config")
        .await
        .unwrap();
    assert_eq!(
        config.data.unwrap()["ORDER_SERVICE_HISTORY_RETENTION_DAYS"],
        "30"
    );

    h.namespace
        .api::<Service>()
        .delete("shop", &DeleteParams::default())
        .await
        .expect("delete service");
    wait_for(
        &h.namespace.api::<Service>(),
        "shop",
        conditions::is_created(),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
}

#[tokio::test]
async fn paused_changes_nothing_and_says_so() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;
    h.patch_spec(json!({"paused": true, "image": IMAGE_2}))
        .await;
    h.wait_condition("Paused", "True", None).await;
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_1));
    let jobs = h
        .namespace
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(jobs.len(), 1, "no migration Job for the paused image");

    h.patch_spec(json!({"paused": false})).await;
    h.wait_condition("Ready", "True", None).await;
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_2));
    let platform = platform_of(&h).await;
    assert!(!platform
        .status
        .unwrap()
        .conditions
        .iter()
        .any(|c| c.type_ == "Paused"));
}

#[tokio::test]
async fn a_spec_the_schema_allows_but_the_operator_cannot_run_waits_with_a_reason() {
    let h = Harness::start().await;
    let mut invalid = h.spec(IMAGE_1);
    invalid["autoscaling"] = json!({"minReplicas": 2, "maxReplicas": 4});
    h.create(invalid).await;
    let platform = h
        .wait_condition("Ready", "False", Some("InvalidSpec"))
        .await;
    let ready = platform
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        ready.message.contains("resources.requests.cpu"),
        "{}",
        ready.message
    );
    assert_eq!(h.events("InvalidSpec").await.len(), 1);

    h.patch_spec(json!({"resources": {"requests": {"cpu": "100m"}}}))
        .await;
    h.wait_condition("Ready", "True", None).await;
    let hpa = h
        .namespace
        .api::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>()
        .get("shop")
        .await;
    assert!(hpa.is_ok(), "the HPA exists once autoscaling is valid");
}

#[tokio::test]
async fn deleting_a_platform_removes_its_children_and_never_blocks() {
    for policy in ["Retain", "Delete"] {
        let h = Harness::start().await;
        let mut with_policy = h.spec(IMAGE_1);
        with_policy["deletionPolicy"] = json!(policy);
        h.create(with_policy).await;
        h.wait_condition("Ready", "True", None).await;
        h.platforms()
            .delete("shop", &DeleteParams::default())
            .await
            .expect("delete");
        wait_for(
            &h.platforms(),
            "shop",
            conditions::is_deleted(""),
            CONTROL_PLANE_TIMEOUT,
        )
        .await;
        wait_for(
            &h.namespace.api::<Deployment>(),
            "shop",
            conditions::is_deleted(""),
            CONTROL_PLANE_TIMEOUT,
        )
        .await;
        let deleted = h.events("Deleted").await;
        assert_eq!(deleted.len(), 1, "{policy}");
        assert!(
            deleted[0]
                .message
                .as_deref()
                .unwrap_or_default()
                .contains(policy),
            "{policy}"
        );
        // Retain keeps the tables and the topic; Delete removes them before the finalizer goes.
        let dynamodb = stack::dynamodb().await;
        let kept = policy == "Retain";
        for table in [h.history_table(), h.counters_table()] {
            assert_eq!(
                stack::table_keys(&dynamodb, &table).await.is_some(),
                kept,
                "{policy}: {table}"
            );
        }
        let topic = h.topic();
        stack::eventually(&format!("{policy}: topic kept={kept}"), || async {
            stack::partitions(&topic).is_some() == kept
        })
        .await;
    }
}

#[tokio::test]
async fn the_apiserver_refuses_specs_that_break_a_rule_with_the_rules_message() {
    let client = connect().await;
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let platforms: Api<OrderPlatform> = namespace.api();
    let create = |name: &str, spec: serde_json::Value| {
        let platforms = platforms.clone();
        let object = json!({"apiVersion": "platform.orders.dev/v1alpha1", "kind": "OrderPlatform",
                            "metadata": {"name": name}, "spec": spec});
        async move {
            let object: OrderPlatform = serde_json::from_value(object).expect("object");
            platforms.create(&PostParams::default(), &object).await
        }
    };
    let refusals = [
        (
            "replicas",
            json!({"replicas": -1}),
            "replicas must be 0 or more",
        ),
        (
            "autoscaling",
            json!({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}),
            "must not exceed",
        ),
        (
            "partitions",
            json!({"kafka": {"bootstrapServers": "k:9092", "topics": [{"name": "orders.events", "partitions": 0}]}}),
            "partitions must be at least 1",
        ),
        (
            "topic-name",
            json!({"kafka": {"bootstrapServers": "k:9092", "eventsTopic": "bad name", "topics": [{"name": "bad name"}]}}),
            "topic name may only hold",
        ),
        (
            "events-topic",
            json!({"kafka": {"bootstrapServers": "k:9092", "eventsTopic": "other", "topics": [{"name": "orders.events"}]}}),
            "must name one of kafka.topics",
        ),
        (
            "table-prefix",
            json!({"dynamodb": {"tablePrefix": "no/slash"}}),
            "tablePrefix may only hold",
        ),
        (
            "participants",
            json!({"participants": {"customerUrl": "ftp://customers", "inventoryUrl": "http://i/", "paymentUrl": "http://p/"}}),
            "participant URLs must start with http://",
        ),
    ];
    for (name, overrides, message) in refusals {
        let mut spec = spec(IMAGE_1);
        merge(&mut spec, overrides);
        let error = create(name, spec).await.expect_err(name).to_string();
        assert!(error.contains(message), "{name}: {error}");
    }
    let long_name = "x".repeat(41);
    let error = create(&long_name, spec(IMAGE_1))
        .await
        .expect_err("long name")
        .to_string();
    assert!(error.contains("at most 40 characters"), "{error}");

    // Immutable fields: the table prefix, and the names of existing topics.
    create("shop", spec(IMAGE_1))
        .await
        .expect("a valid platform");
    for (change, message) in [
        (
            json!({"dynamodb": {"tablePrefix": "other"}}),
            "tablePrefix is immutable",
        ),
        (
            json!({"kafka": {"eventsTopic": "renamed", "topics": [{"name": "renamed"}]}}),
            "topic names are immutable",
        ),
    ] {
        let error = platforms
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": change})),
            )
            .await
            .expect_err("immutable")
            .to_string();
        assert!(error.contains(message), "{error}");
    }
}

pub(crate) fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;
    let output = std::process::Command::new("kubectl")
        .args([
            "get",
            "orderplatforms",
            "-n",
            h.namespace.name(),
            "-o",
            "wide",
        ])
        .output()
        .expect("run kubectl");
    let text = String::from_utf8_lossy(&output.stdout);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "PHASE", "REPLICAS", "IMAGE", "AGE"],
        "{text}"
    );
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..5], ["shop", "True", "Ready", "2", IMAGE_1], "{text}");
}

#[tokio::test]
async fn the_operators_own_rbac_is_enough_to_reach_ready_and_grants_no_secrets() {
    let h = Harness::start_with(Some("order-operator"), Duration::from_secs(300)).await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;
    assert!(
        !h.events("MigrationStarted").await.is_empty(),
        "Events are allowed"
    );

    let operator = support::connect_as_service_account(h.namespace.name(), "order-operator").await;
    let secrets: Api<Secret> = Api::namespaced(operator.clone(), h.namespace.name());
    let refused = secrets
        .get("shop-database")
        .await
        .expect_err("no Secret access");
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 403),
        "{refused}"
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(operator);
    assert!(
        namespaces
            .delete(h.namespace.name(), &DeleteParams::default())
            .await
            .is_err(),
        "no namespace deletion"
    );
}

#[tokio::test]
async fn deleting_the_namespace_is_not_blocked_by_the_finalizer() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(connect().await);
    namespaces
        .delete(h.namespace.name(), &DeleteParams::default())
        .await
        .expect("delete namespace");
    // The namespace controller deletes the platform; the operator's cleanup removes the
    // finalizer; then the namespace goes.
    wait_for(
        &namespaces,
        h.namespace.name(),
        conditions::is_deleted(""),
        Duration::from_secs(120),
    )
    .await;
}

#[tokio::test]
async fn old_migration_jobs_are_pruned_to_the_newest_three() {
    let h = Harness::start().await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;
    let images: Vec<String> = (2..=5)
        .map(|v| format!("registry.example/order-service:{v}.0.0"))
        .collect();
    for image in &images {
        h.patch_spec(json!({"image": image})).await;
        h.wait_condition("Ready", "True", None).await;
        assert_eq!(h.deployment_image().await.as_deref(), Some(image.as_str()));
    }
    let platform = platform_of(&h).await;
    let expected: Vec<String> = images[1..]
        .iter()
        .map(|i| build::migration_job_name(&platform, i))
        .collect();
    poll_until(CONTROL_PLANE_TIMEOUT, "old Jobs to be deleted", || async {
        let mut names: Vec<String> = h
            .namespace
            .api::<Job>()
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| j.name_any())
            .collect();
        names.sort();
        let mut want = expected.clone();
        want.sort();
        (names == want).then_some(())
    })
    .await;
}

/// How many times the Events were recorded (a repeated Event is one object with a count).
pub(crate) fn occurrences(events: &[Event]) -> i32 {
    events
        .iter()
        .map(|e| {
            e.series
                .as_ref()
                .map_or(e.count.unwrap_or(1), |s| s.count.unwrap_or(1))
        })
        .sum()
}

#[tokio::test]
async fn tables_and_topics_are_provisioned_with_the_credentials_secret_before_the_rollout() {
    let h = Harness::start().await;
    // moto takes any key pair: what matters is that the operator reads them from the Secret.
    // Kafka settings from the spec's Secret reach the admin client (a harmless one here).
    for (name, data) in [
        (
            "aws",
            json!({"AWS_ACCESS_KEY_ID": "from-secret", "AWS_SECRET_ACCESS_KEY": "from-secret"}),
        ),
        (
            "kafka",
            json!({"ORDER_SERVICE_KAFKA_PROPERTIES": "client.id=order-operator-test"}),
        ),
    ] {
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                .expect("secret");
        h.namespace
            .api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
    let mut spec = h.spec(IMAGE_1);
    merge(
        &mut spec,
        json!({"dynamodb": {"credentialsSecretRef": "aws"}, "kafka": {"securitySecretRef": "kafka"}}),
    );
    h.create(spec).await;
    let platform = h.wait_condition("Ready", "True", None).await;

    let status = platform.status.expect("status");
    let states: Vec<_> = status
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.state.clone()))
        .collect();
    assert_eq!(
        states,
        [
            (h.history_table(), "Ready".to_owned()),
            (h.counters_table(), "Ready".to_owned())
        ]
    );
    assert_eq!(status.topics[0].name, h.topic());
    let dynamodb = stack::dynamodb().await;
    assert_eq!(
        stack::table_keys(&dynamodb, &h.history_table()).await,
        Some(vec!["order_id".to_owned(), "order_version".to_owned()])
    );
    assert_eq!(stack::partitions(&h.topic()), Some(3));
    let provisioned = h.events("Provisioned").await;
    let notes: Vec<_> = provisioned
        .iter()
        .filter_map(|e| e.message.clone())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("create")),
        "the Events say what was created: {notes:?}"
    );
}

#[tokio::test]
async fn a_missing_credentials_secret_is_a_condition_with_a_reason() {
    let h = Harness::start().await;
    let mut spec = h.spec(IMAGE_1);
    merge(
        &mut spec,
        json!({"dynamodb": {"credentialsSecretRef": "nowhere"}}),
    );
    h.create(spec).await;
    let platform = h
        .wait_condition("TablesReady", "False", Some("CredentialsUnavailable"))
        .await;
    let status = platform.status.expect("status");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("nowhere"), "{}", ready.message);
    // The image never rolled out: no Deployment without its tables.
    assert_eq!(h.deployment_image().await, None);
}

#[tokio::test]
async fn kafka_settings_that_do_not_parse_are_a_condition_not_a_crash() {
    let h = Harness::start().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "kafka"},
        "stringData": {"ORDER_SERVICE_KAFKA_PROPERTIES": "sasl.password"}
    }))
    .expect("secret");
    h.namespace
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let mut spec = h.spec(IMAGE_1);
    merge(&mut spec, json!({"kafka": {"securitySecretRef": "kafka"}}));
    h.create(spec).await;
    let platform = h
        .wait_condition("TopicsReady", "False", Some("InvalidKafkaProperties"))
        .await;
    let message = platform
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "TopicsReady")
        .expect("TopicsReady")
        .message;
    assert!(message.contains("not KEY=VALUE"), "{message}");
    assert!(
        !message.contains("sasl.password"),
        "the value is never echoed: {message}"
    );
}

#[tokio::test]
async fn a_conflicting_table_holds_the_new_image_until_the_conflict_is_removed() {
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;

    // Someone replaces the history table with one of their own, keyed differently.
    let dynamodb = stack::dynamodb().await;
    dynamodb
        .delete_table()
        .table_name(h.history_table())
        .send()
        .await
        .expect("delete by hand");
    stack::create_foreign_table(&dynamodb, &h.history_table(), "id").await;
    h.patch_spec(json!({"image": IMAGE_2})).await;

    let platform = h
        .wait_condition("TablesReady", "False", Some("KeySchemaConflict"))
        .await;
    let status = platform.status.expect("status");
    assert_eq!(
        status
            .tables
            .iter()
            .find(|t| t.name == h.history_table())
            .map(|t| t.state.as_str()),
        Some("Refused")
    );
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "KeySchemaConflict"));
    // Several resyncs later: still the old image, the foreign table untouched, and no new
    // Warning (one per generation: the resync may have seen the conflict before the image
    // change, which warns again for the new spec).
    let warned = occurrences(&h.events("KeySchemaConflict").await);
    assert!((1..=2).contains(&warned), "{warned}");
    for _ in 0..3 {
        h.wait_reconciles(1).await;
        assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_1));
    }
    assert_eq!(
        stack::table_keys(&dynamodb, &h.history_table()).await,
        Some(vec!["id".to_owned()])
    );
    assert_eq!(occurrences(&h.events("KeySchemaConflict").await), warned);

    // The conflict goes away: the next resync creates the table and the image rolls out.
    dynamodb
        .delete_table()
        .table_name(h.history_table())
        .send()
        .await
        .expect("remove the conflict");
    let platform = h.wait_condition("Ready", "True", None).await;
    assert_eq!(
        platform.status.and_then(|s| s.current_image).as_deref(),
        Some(IMAGE_2)
    );
    assert_eq!(h.deployment_image().await.as_deref(), Some(IMAGE_2));
}

#[tokio::test]
async fn a_table_and_topic_deleted_by_hand_come_back_on_the_next_resync() {
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    h.create(h.spec(IMAGE_1)).await;
    h.wait_condition("Ready", "True", None).await;
    let dynamodb = stack::dynamodb().await;
    dynamodb
        .delete_table()
        .table_name(h.counters_table())
        .send()
        .await
        .expect("delete by hand");
    stack::delete_topic_by_hand(&h.topic()).await;

    let counters = h.counters_table();
    stack::eventually("the counters table to come back", || async {
        stack::table_keys(&dynamodb, &counters).await.is_some()
    })
    .await;
    let topic = h.topic();
    stack::eventually("the topic to come back", || async {
        stack::partitions(&topic) == Some(3)
    })
    .await;
    // One Event per correction; the recorder folds repeats of a reason into one Event object
    // (its note the first correction's, its series counting the rest).
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "both corrections in Events",
        || async {
            let events = h.events("DriftCorrected").await;
            let notes: String = events
                .iter()
                .filter_map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join(" | ");
            let both = notes.contains(&counters) && notes.contains(&topic);
            let either = notes.contains(&counters) || notes.contains(&topic);
            (both || (either && occurrences(&events) >= 2)).then_some(())
        },
    )
    .await;
}
