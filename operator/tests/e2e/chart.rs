//! The Helm chart `charts/order-platform` with the real `helm` (built from its Go module by
//! scripts/k8s-tools.sh) and `kubectl`, against the local control plane: lint and render,
//! server-side dry runs of every object, install / upgrade / uninstall, and its RBAC proven by
//! running the operator binary with the chart's ServiceAccount token.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::config::{AuthInfo, Kubeconfig};
use kube::runtime::conditions;
use kube::Api;
use order_operator::crd::OrderPlatform;
use serde_json::json;
use tokio::process::Command;

use crate::harness::install_crd;
use crate::stack;
use crate::support::{connect, poll_until, wait_for, TestNamespace, CONTROL_PLANE_TIMEOUT};
use crate::tools::{chart, helm, ok, run, tool};

/// Every document of a YAML stream that is not empty.
fn documents(text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objects: &[serde_yaml::Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn release_name() -> String {
    format!("op{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test]
async fn the_chart_lints_renders_and_every_object_passes_a_server_dry_run() {
    let client = connect().await;
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let chart = chart();
    let chart = chart.to_str().expect("UTF-8 path");
    for (label, extra) in [
        ("default", &[][..]),
        ("dev", &["--set", "dev.enabled=true"][..]),
    ] {
        let mut lint = vec!["lint", "--strict", chart];
        lint.extend(extra);
        helm(&lint).await;

        let mut template = vec!["template", "orders", chart, "--namespace", namespace.name()];
        template.extend(extra);
        let rendered = helm(&template).await;
        let objects = documents(&rendered);
        for object in &objects {
            assert!(
                object["apiVersion"].is_string() && object["metadata"]["name"].is_string(),
                "{label}: {object:?}"
            );
        }
        let kinds = kinds(&objects);
        let deployments = kinds.iter().filter(|k| *k == "Deployment").count();
        match label {
            "default" => {
                assert_eq!(deployments, 1, "{kinds:?}");
                assert!(!kinds.iter().any(|k| k == "OrderPlatform" || k == "Secret"));
            }
            _ => {
                // The operator, PostgreSQL, DynamoDB Local and Kafka; the example platform.
                assert_eq!(deployments, 4, "{kinds:?}");
                assert!(kinds.iter().any(|k| k == "OrderPlatform"), "{kinds:?}");
            }
        }
        let applied = ok(
            &tool("ORDER_PLATFORM_KUBECTL"),
            &[
                "apply",
                "--dry-run=server",
                "-n",
                namespace.name(),
                "-f",
                "-",
            ],
            Some(&rendered),
        )
        .await;
        assert_eq!(
            applied
                .lines()
                .filter(|l| l.contains("(server dry run)"))
                .count(),
            objects.len(),
            "{label}: {applied}"
        );
    }

    // The optional ServiceMonitor renders when asked for (its CRD is not on this cluster).
    let monitor = helm(&[
        "template",
        "orders",
        chart,
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ])
    .await;
    assert!(kinds(&documents(&monitor))
        .iter()
        .any(|k| k == "ServiceMonitor"));

    // The alerting rules, the service's PodMonitor and the dashboards render when asked for:
    // the PrometheusRule's spec is the rules file promtool tests (tests/rules.rs), unchanged,
    // and each dashboard is its file, under the label Grafana's sidecar watches.
    let observability = helm(&[
        "template",
        "orders",
        chart,
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.podMonitor.enabled=true",
        "--set",
        "metrics.dashboards.enabled=true",
        "--set",
        "metrics.dashboards.folder=Orders",
    ])
    .await;
    let objects = documents(&observability);
    let rule = objects
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("charts/order-platform/files/prometheus-rules.yaml"))
            .expect("the rules file"),
    )
    .expect("YAML");
    assert_eq!(rule["spec"], shipped);
    assert!(kinds(&objects).iter().any(|k| k == "PodMonitor"));
    let dashboards: Vec<&serde_yaml::Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(dashboards.len(), 2, "{observability}");
    for dashboard in dashboards {
        assert_eq!(
            dashboard["metadata"]["annotations"]["grafana_folder"],
            "Orders"
        );
        let data = dashboard["data"].as_mapping().expect("data");
        let (file, json) = data.iter().next().expect("one dashboard");
        let file = file.as_str().expect("a file name");
        let expected = std::fs::read_to_string(
            root.join("charts/order-platform/files/dashboards")
                .join(file),
        )
        .expect("the dashboard file");
        assert_eq!(
            json.as_str().map(str::trim_end),
            Some(expected.trim_end()),
            "{file}"
        );
    }
    // Off by default.
    let defaults = helm(&["template", "orders", chart]).await;
    let default_kinds = kinds(&documents(&defaults));
    assert!(
        !default_kinds
            .iter()
            .any(|k| k == "PrometheusRule" || k == "PodMonitor" || k == "ConfigMap"),
        "{default_kinds:?}"
    );

    // values.schema.json refuses bad values with the path of the value.
    let bad = run(
        &tool("ORDER_PLATFORM_HELM"),
        &["template", "orders", chart, "--set", "operator.replicas=-1"],
        None,
    )
    .await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("/operator/replicas"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn every_yaml_file_parses_and_the_chart_carries_the_generated_crd_and_rbac() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("kind-config.yaml")];
    for dir in [
        "crds",
        "examples",
        "rbac",
        "charts/order-platform",
        "charts/order-platform/crds",
        "charts/order-platform/files",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).expect(dir) {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        assert!(!documents(&text).is_empty(), "{}", file.display());
    }
    let schema = std::fs::read_to_string(chart().join("values.schema.json")).expect("schema");
    serde_json::from_str::<serde_json::Value>(&schema).expect("values.schema.json is JSON");
    for (chart_copy, source) in [
        ("crds/orderplatform.yaml", "crds/orderplatform.yaml"),
        ("files/rbac.yaml", "rbac/operator.yaml"),
    ] {
        assert_eq!(
            std::fs::read_to_string(chart().join(chart_copy)).expect(chart_copy),
            std::fs::read_to_string(root.join(source)).expect(source),
            "charts/order-platform/{chart_copy} differs from {source}: run `make generate`"
        );
    }
}

#[tokio::test]
async fn helm_install_upgrade_and_uninstall_keep_the_crd_and_the_platforms() {
    let client = connect().await;
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let release = release_name();
    let chart = chart();
    let chart = chart.to_str().expect("UTF-8 path");
    let ns = namespace.name();
    helm(&[
        "install",
        &release,
        chart,
        "-n",
        ns,
        "--wait",
        "--timeout",
        "120s",
    ])
    .await;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for(
        &crds,
        "orderplatforms.platform.orders.dev",
        conditions::is_crd_established(),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    let deployments: Api<Deployment> = namespace.api();
    let name = format!("{release}-order-operator");
    let available = |generation: i64| {
        move |d: Option<&Deployment>| {
            d.is_some_and(|d| {
                let status = d.status.clone().unwrap_or_default();
                status.observed_generation >= Some(generation)
                    && status.updated_replicas == Some(2)
                    && status.available_replicas == Some(2)
            })
        }
    };
    wait_for(&deployments, &name, available(1), CONTROL_PLANE_TIMEOUT).await;
    let before = deployments.get(&name).await.expect("deployment");

    helm(&[
        "upgrade",
        &release,
        chart,
        "-n",
        ns,
        "--set",
        "operator.logLevel=debug",
        "--wait",
        "--timeout",
        "120s",
    ])
    .await;
    let after = deployments.get(&name).await.expect("deployment");
    let generation = after.metadata.generation.expect("generation");
    assert!(generation > before.metadata.generation.expect("generation"));
    let env = after
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(env
        .iter()
        .any(|e| e.name == "ORDER_OPERATOR_LOG" && e.value.as_deref() == Some("debug")));
    wait_for(
        &deployments,
        &name,
        available(generation),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;

    // A user's platform, then uninstall: Helm keeps CRDs, so the platform stays too.
    let platform: OrderPlatform = serde_json::from_value(json!({
        "apiVersion": "platform.orders.dev/v1alpha1", "kind": "OrderPlatform", "metadata": {"name": "kept"},
        "spec": {"image": "i:1", "database": {"secretRef": {"name": "db"}}, "dynamodb": {"tablePrefix": "kept"},
                 "kafka": {"bootstrapServers": "k:9092", "topics": [{"name": "orders.events"}]},
                 "auth": {"disabled": true}}
    }))
    .expect("platform");
    let platforms: Api<OrderPlatform> = namespace.api();
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .expect("create platform");
    helm(&[
        "uninstall",
        &release,
        "-n",
        ns,
        "--wait",
        "--timeout",
        "120s",
    ])
    .await;
    wait_for(
        &deployments,
        &name,
        conditions::is_deleted(""),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    assert!(
        roles.get_opt(&name).await.expect("read").is_none(),
        "the release's ClusterRole is gone"
    );
    assert!(crds
        .get_opt("orderplatforms.platform.orders.dev")
        .await
        .expect("read")
        .is_some());
    assert!(platforms.get_opt("kept").await.expect("read").is_some());
}

/// `kubectl auth can-i …` as the ServiceAccount: true for yes.
async fn can_i(account: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    all.extend(["--as", account]);
    let out = run(&tool("ORDER_PLATFORM_KUBECTL"), &all, None).await;
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!(
            "kubectl auth can-i {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test]
async fn the_charts_rbac_lets_the_operator_reach_ready_and_grants_no_more() {
    let client = connect().await;
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let ns = namespace.name().to_owned();
    let release = release_name();
    let chart = chart();
    let chart = chart.to_str().expect("UTF-8 path");
    // No in-cluster replicas (kwok runs no containers): the binary runs here, as the chart's
    // ServiceAccount, with a token the apiserver issued for it.
    let credentials = format!("rbac.credentialsNamespaces={{{ns}}}");
    let watch = format!("operator.watchNamespace={ns}");
    helm(&[
        "install",
        &release,
        chart,
        "-n",
        &ns,
        "--set",
        "operator.replicas=0",
        "--set",
        &watch,
        "--set",
        &credentials,
    ])
    .await;
    let account = format!("{release}-order-operator");
    let token = ok(
        &tool("ORDER_PLATFORM_KUBECTL"),
        &["create", "token", &account, "-n", &ns, "--duration", "1h"],
        None,
    )
    .await;

    let admin_path = PathBuf::from(std::env::var_os("KUBECONFIG").expect("KUBECONFIG"));
    let mut kubeconfig = Kubeconfig::read_from(&admin_path).expect("kubeconfig");
    // The admin's users become the ServiceAccount: its token and nothing else.
    for named in &mut kubeconfig.auth_infos {
        named.auth_info = Some(AuthInfo {
            token: Some(token.trim().to_owned().into()),
            ..AuthInfo::default()
        });
    }
    let token_config = std::env::temp_dir().join(format!("{release}.kubeconfig"));
    std::fs::write(
        &token_config,
        serde_yaml::to_string(&kubeconfig).expect("yaml"),
    )
    .expect("write kubeconfig");

    for (name, data) in [
        (
            "db",
            json!({"DATABASE_URL": "postgres://orders@postgres/orders"}),
        ),
        (
            "aws",
            json!({"AWS_ACCESS_KEY_ID": "chart", "AWS_SECRET_ACCESS_KEY": "chart"}),
        ),
    ] {
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                .expect("secret");
        namespace
            .api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret");
    }
    let platform: OrderPlatform = serde_json::from_value(json!({
        "apiVersion": "platform.orders.dev/v1alpha1", "kind": "OrderPlatform", "metadata": {"name": "shop"},
        "spec": {"image": "registry.example/order-service:1.0.0", "replicas": 1, "database": {"secretRef": {"name": "db"}},
                 "dynamodb": {"tablePrefix": ns, "endpoint": stack::dynamodb_endpoint(), "credentialsSecretRef": "aws"},
                 "kafka": {"bootstrapServers": stack::kafka_servers(), "eventsTopic": ns, "topics": [{"name": ns}]},
                 "auth": {"disabled": true}}
    }))
    .expect("platform");
    let platforms: Api<OrderPlatform> = namespace.api();
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .expect("create platform");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let lease = format!("{account}-leader");
    let mut operator = Command::new(env!("CARGO_BIN_EXE_order-operator"))
        .args([
            "run",
            "--watch-namespace",
            &ns,
            "--lease-namespace",
            &ns,
            "--lease-name",
            &lease,
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", &token_config)
        .env("ORDER_OPERATOR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-operator");
    wait_for(
        &platforms,
        "shop",
        crate::support::condition_is_true("Ready"),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    let _ = operator.start_kill();
    let _ = std::fs::remove_file(&token_config);

    let sa = format!("system:serviceaccount:{ns}:{account}");
    for (args, allowed) in [
        (
            vec!["patch", "orderplatforms.platform.orders.dev", "-n", &ns],
            true,
        ),
        (vec!["create", "deployments.apps", "-n", &ns], true),
        (
            vec!["update", "leases.coordination.k8s.io", "-n", &ns],
            true,
        ),
        (vec!["get", "secrets", "-n", &ns], true),
        // Secrets: one at a time by name, in the credentials namespaces only.
        (vec!["list", "secrets", "-n", &ns], false),
        (vec!["watch", "secrets", "-n", &ns], false),
        (vec!["get", "secrets", "-n", "default"], false),
        (vec!["get", "secrets", "--all-namespaces"], false),
        // Watching one namespace: nothing elsewhere.
        (vec!["create", "deployments.apps", "-n", "default"], false),
        // No RBAC, no escalation, no namespaces.
        (
            vec!["create", "clusterroles.rbac.authorization.k8s.io"],
            false,
        ),
        (
            vec![
                "create",
                "rolebindings.rbac.authorization.k8s.io",
                "-n",
                &ns,
            ],
            false,
        ),
        (
            vec!["escalate", "clusterroles.rbac.authorization.k8s.io"],
            false,
        ),
        (
            vec!["bind", "clusterroles.rbac.authorization.k8s.io"],
            false,
        ),
        (vec!["delete", "namespaces"], false),
        (vec!["create", "pods/exec", "-n", &ns], false),
    ] {
        assert_eq!(can_i(&sa, &args).await, allowed, "can-i {}", args.join(" "));
    }
    helm(&["uninstall", &release, "-n", &ns]).await;
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the release's ClusterRoles to go",
        || async {
            let roles: Api<ClusterRole> = Api::all(client.clone());
            roles.get_opt(&account).await.ok()?.is_none().then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn uninstalling_the_dev_release_removes_its_example_platform_without_the_operator() {
    use order_operator::controller::{self, Context};
    let client = connect().await;
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let release = release_name();
    let chart = chart();
    let ns = namespace.name();
    helm(&[
        "install",
        &release,
        chart.to_str().expect("UTF-8 path"),
        "-n",
        ns,
        "--set",
        "dev.enabled=true",
        "--timeout",
        "120s",
    ])
    .await;

    // The operator's pod does not run here (kwok): an operator in this process stands in for
    // it until Helm removes it, and reconciles the example platform at least once.
    let platforms: Api<OrderPlatform> = namespace.api();
    let ctx = std::sync::Arc::new(Context::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "order-operator".into(),
            instance: Some("tests".into()),
        },
        std::sync::Arc::new(order_operator::metrics::Metrics::default()),
        std::time::Duration::from_secs(300),
    ));
    let operator = tokio::spawn(controller::run(
        ctx,
        Some(ns.to_owned()),
        std::future::pending(),
    ));
    wait_for(
        &platforms,
        "shop",
        |p: Option<&OrderPlatform>| p.is_some_and(|p| p.status.is_some()),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
    operator.abort();

    helm(&[
        "uninstall",
        &release,
        "-n",
        ns,
        "--wait",
        "--timeout",
        "120s",
    ])
    .await;
    wait_for(
        &platforms,
        "shop",
        conditions::is_deleted(""),
        CONTROL_PLANE_TIMEOUT,
    )
    .await;
}

#[tokio::test]
async fn the_charts_default_images_are_the_ones_make_images_builds() {
    // The chart's appVersion is the crates' version, which scripts/images.sh tags with.
    let chart_yaml: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("YAML");
    let app_version = chart_yaml["appVersion"].as_str().expect("appVersion");
    assert_eq!(
        app_version,
        env!("CARGO_PKG_VERSION"),
        "chart appVersion = crate version"
    );
    let service_toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../order-service/Cargo.toml"),
    )
    .expect("order-service/Cargo.toml");
    assert!(
        service_toml.contains(&format!("version = \"{app_version}\"")),
        "order-service has the same version"
    );

    let chart = chart();
    let rendered = helm(&[
        "template",
        "op",
        chart.to_str().expect("UTF-8 path"),
        "--set",
        "dev.enabled=true",
    ])
    .await;
    let images: Vec<String> = documents(&rendered)
        .iter()
        .flat_map(|o| {
            let mut found = Vec::new();
            if let Some(c) = o["spec"]["template"]["spec"]["containers"].as_sequence() {
                found.extend(
                    c.iter()
                        .filter_map(|c| c["image"].as_str().map(str::to_owned)),
                );
            }
            if o["kind"] == "OrderPlatform" {
                found.extend(o["spec"]["image"].as_str().map(str::to_owned));
            }
            found
        })
        .collect();
    // Every image the chart names (the development stack's too) is one scripts/images.sh
    // builds: nothing is pulled from a registry.
    let built = [
        "order-operator",
        "order-service",
        "order-dev-postgres",
        "order-dev-kafka",
        "order-dev-moto",
    ]
    .map(|name| format!("localhost/{name}:{app_version}"));
    for want in &built {
        assert!(images.contains(want), "{want} in {images:?}");
    }
    for image in &images {
        assert!(
            built.contains(image),
            "{image} is not built by scripts/images.sh"
        );
    }
}
