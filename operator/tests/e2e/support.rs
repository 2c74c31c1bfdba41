//! What every suite that talks to the local control plane (`scripts/cluster.sh`) shares:
//! connecting (as the admin, or impersonating a narrower identity), a namespace per test, and
//! waiting for a condition with a timeout.
//!
//! The cluster is a hard requirement: nothing here skips a test when it is missing; `connect`
//! panics with the command that starts it. Only `KUBECONFIG` is read (never `~/.kube/config` or
//! an in-cluster account), so a suite cannot wander into someone's real cluster by accident.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions, Condition};
use kube::{Api, Client, Config, Resource, ResourceExt};
use order_operator::crd::OrderPlatform;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How long a test waits for something the control plane does on its own (a Deployment to become
/// Available, a Job to finish, the garbage collector). Each takes about a second on the local
/// cluster; the margin is for a loaded machine.
pub const CONTROL_PLANE_TIMEOUT: Duration = Duration::from_secs(60);

/// Label on every namespace a test creates, so leftovers of a killed run can be found:
/// `kubectl delete namespace -l orders.dev/test`.
pub const TEST_NAMESPACE_LABEL: &str = "orders.dev/test";

const START_THE_CLUSTER: &str =
    "the control-plane suites need the local cluster: run `make test`, or `make cluster-up` and \
     `eval \"$(scripts/cluster.sh env)\"` before `cargo test`";

/// A client for the cluster `KUBECONFIG` points at, as its admin. Panics (failing the test) when
/// `KUBECONFIG` is unset or the apiserver does not answer.
pub async fn connect() -> Client {
    client_for(load_config().await).await
}

/// A client that impersonates `user` in `groups` (the admin has the `impersonate` verb), so RBAC
/// decides what it may do exactly as it would for that identity. A ServiceAccount is the user
/// `system:serviceaccount:<namespace>:<name>`; see [`connect_as_service_account`].
pub async fn connect_as(user: &str, groups: &[&str]) -> Client {
    let mut config = load_config().await;
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
    client_for(config).await
}

/// A client that acts as ServiceAccount `name` of `namespace` (impersonated: the user and groups
/// the apiserver gives that account's tokens), whether or not the account exists.
pub async fn connect_as_service_account(namespace: &str, name: &str) -> Client {
    let user = format!("system:serviceaccount:{namespace}:{name}");
    let namespace_group = format!("system:serviceaccounts:{namespace}");
    connect_as(
        &user,
        &[
            "system:serviceaccounts",
            &namespace_group,
            "system:authenticated",
        ],
    )
    .await
}

async fn load_config() -> Config {
    let path = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("KUBECONFIG is not set; {START_THE_CLUSTER}"));
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read KUBECONFIG {}: {e}; {START_THE_CLUSTER}",
            path.display()
        )
    });
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid KUBECONFIG {}: {e}", path.display()));
    // Fail fast when nothing listens (the default is 30 s per attempt).
    config.connect_timeout = Some(Duration::from_secs(5));
    config
}

async fn client_for(config: Config) -> Client {
    let url = config.cluster_url.clone();
    let client = Client::try_from(config).expect("a kube client from KUBECONFIG");
    if let Err(e) = client.apiserver_version().await {
        panic!("the apiserver at {url} does not answer: {e}; {START_THE_CLUSTER}");
    }
    client
}

/// A namespace `test-<random>` that belongs to one test, labelled [`TEST_NAMESPACE_LABEL`].
/// Dropping it deletes it (also when the test panics); the namespace controller then removes
/// everything in it.
pub struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    /// Creates the namespace and waits for its `default` ServiceAccount, without which the
    /// apiserver refuses pods (so a Deployment's first pods would otherwise be retried later).
    pub async fn create(client: &Client) -> Self {
        let name = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let namespace = Self {
            client: client.clone(),
            name,
        };
        wait_for(
            &namespace.api::<ServiceAccount>(),
            "default",
            conditions::is_created(),
            CONTROL_PLANE_TIMEOUT,
        )
        .await;
        namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API of kind `K` in this namespace, as the admin.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    /// Drop cannot await, and the test's runtime may be the single thread running this code, so
    /// the delete runs on a thread of its own with its own runtime and client, joined before
    /// returning. A failure is reported, not raised: panicking in drop would abort the test run.
    fn drop(&mut self) {
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to delete the test namespace");
            runtime.block_on(async {
                let client = connect().await;
                release_platforms(&client, &name).await;
                let namespaces = Api::<Namespace>::all(client);
                namespaces.delete(&name, &DeleteParams::background()).await
            })
        })
        .join();
        match deleted {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("leaving namespace {} behind: {e}", self.name),
            Err(_) => eprintln!("leaving namespace {} behind: delete panicked", self.name),
        }
    }
}

/// Drops the cleanup finalizer of every OrderPlatform left in `namespace`: a test's operator
/// stops with the test, and a `Delete` platform's finalizer would otherwise hold the namespace in
/// `Terminating` for good. (Nothing to do when the CRD is not installed.)
async fn release_platforms(client: &Client, namespace: &str) {
    let platforms = Api::<OrderPlatform>::namespaced(client.clone(), namespace);
    let Ok(list) = platforms.list(&ListParams::default()).await else {
        return;
    };
    let release = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
    for platform in list.items.iter().filter(|p| !p.finalizers().is_empty()) {
        let name = platform.name_any();
        if let Err(e) = platforms
            .patch(&name, &PatchParams::default(), &release)
            .await
        {
            eprintln!("releasing OrderPlatform {namespace}/{name}: {e}");
        }
    }
}

/// Waits until `condition` holds for the object `name` (watching it, no polling interval), and
/// returns the object that satisfied it (`None` when the condition accepts an absent object, as
/// `conditions::is_deleted` does). Panics after `timeout`, showing the object's last `status`.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    condition: impl Condition<K>,
    timeout: Duration,
) -> Option<K>
where
    K: Resource + Clone + Debug + Send + DeserializeOwned + Serialize + 'static,
    <K as Resource>::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(object)) => object,
        Ok(Err(e)) => panic!("watching {kind} {name}: {e}"),
        Err(_) => {
            let last = match api.get_opt(name).await {
                Ok(Some(object)) => serde_json::to_value(&object)
                    .ok()
                    .and_then(|v| v.get("status").cloned())
                    .map_or_else(|| "no status".to_owned(), |s| s.to_string()),
                Ok(None) => "not found".to_owned(),
                Err(e) => format!("unreadable: {e}"),
            };
            panic!("{kind} {name}: condition not met within {timeout:?}; last status: {last}")
        }
    }
}

/// Calls `attempt` every 100 ms until it returns `Some`, and returns that value: for what cannot
/// be watched (whether the apiserver's RBAC cache has seen a new binding yet, say). Panics after
/// `timeout`, naming `what`. Like order-service's `helpers::wait_until`, but yielding a value.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let polling = async {
        loop {
            if let Some(value) = attempt().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(timeout, polling)
        .await
        .unwrap_or_else(|_| panic!("timed out after {timeout:?} waiting until {what}"))
}

/// Holds once the object's `status.conditions` has an entry of type `type_` with status `"True"`:
/// the shape Deployments, Jobs, Nodes and well-behaved custom resources share.
pub fn condition_is_true<K: Serialize>(type_: &'static str) -> impl Condition<K> {
    move |object: Option<&K>| {
        let Some(status) = object.and_then(|o| serde_json::to_value(o).ok()) else {
            return false;
        };
        status["status"]["conditions"]
            .as_array()
            .is_some_and(|all| {
                all.iter()
                    .any(|c| c["type"] == type_ && c["status"] == "True")
            })
    }
}
