//! The test harness: the CRD installed for real, the controller running in-process and
//! watching only the test's namespace, and waits with timeouts.

use std::sync::Arc;
use std::time::Duration;

use crate::stack;
use crate::support::{self, connect, poll_until, wait_for, TestNamespace, CONTROL_PLANE_TIMEOUT};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::conditions;
use kube::runtime::events::Reporter;
use kube::runtime::wait::Condition;
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use order_operator::controller::{self, Context};
use order_operator::crd::OrderPlatform;
use order_operator::metrics::Metrics;
use serde_json::json;
use tokio::task::JoinHandle;

pub(crate) const IMAGE_1: &str = "registry.example/order-service:1.0.0";
pub(crate) const IMAGE_2: &str = "registry.example/order-service:2.0.0";
pub(crate) const IMAGE_3: &str = "registry.example/order-service:3.0.0";

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

    /// Stops the in-process operator, as uninstalling it would.
    pub(crate) fn stop_operator(&self) {
        self.operator.abort();
    }

    /// The operator's metrics as `/metrics` serves them.
    pub(crate) fn metrics_text(&self) -> String {
        self.metrics.render()
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

    /// Creates a Secret in the test namespace with `data` as its `stringData`.
    pub(crate) async fn secret(&self, name: &str, data: serde_json::Value) {
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                .expect("secret");
        self.namespace
            .api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }

    /// Creates the platform `shop` with `spec` and waits until it is Ready.
    pub(crate) async fn create_ready(&self, spec: serde_json::Value) -> OrderPlatform {
        self.create(spec).await;
        self.wait_condition("Ready", "True", None).await
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
        "kafka": {"bootstrapServers": "kafka:9092", "topics": [{"name": "orders.events"}]},
        "auth": {"issuer": "https://id.example/", "audience": "orders-api"}
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

pub(crate) async fn platform_of(h: &Harness) -> OrderPlatform {
    h.platforms().get("shop").await.expect("platform")
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
