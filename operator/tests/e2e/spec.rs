//! What the apiserver refuses (CEL), what the operator refuses (a condition), what it shows.

use std::time::Duration;

use crate::support::{self, connect, TestNamespace};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use order_operator::crd::OrderPlatform;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn paused_changes_nothing_and_says_so() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;
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
            "participant URLs must start with http:// or https://",
        ),
        (
            "env-database",
            json!({"env": [{"name": "LOG", "value": "x"}, {"name": "DATABASE_URL", "value": "postgres://elsewhere"}]}),
            "env may not set a variable the operator sets",
        ),
        (
            "env-topic",
            json!({"env": [{"name": "ORDER_SERVICE_EVENTS_TOPIC", "value": "other"}]}),
            "use the spec field instead",
        ),
        (
            "rolling-zero",
            json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
            "cannot both be 0",
        ),
        (
            "rolling-value",
            json!({"rollingUpdate": {"maxSurge": "lots"}}),
            "rollingUpdate.maxSurge must be a number of pods",
        ),
        (
            "service-account",
            json!({"serviceAccountName": "Not_A_Name"}),
            "serviceAccountName must be a DNS subdomain name",
        ),
    ];
    for (name, overrides, message) in refusals {
        let mut spec = spec(IMAGE_1);
        merge(&mut spec, overrides);
        let error = create(name, spec).await.expect_err(name).to_string();
        assert!(error.contains(message), "{name}: {error}");
    }
    // Authentication is not optional: an `auth` without issuer and audience that does not say
    // `disabled: true` is refused (that `auth` itself is required, the CRD's unit test checks).
    for (name, auth, message) in [
        (
            "auth-empty",
            json!({}),
            "auth needs issuer and audience, or disabled: true",
        ),
        (
            "auth-issuer",
            json!({"issuer": "ftp://id", "audience": "a"}),
            "auth.issuer must be an http(s) URL",
        ),
    ] {
        let mut spec = spec(IMAGE_1);
        spec["auth"] = auth;
        let error = create(name, spec).await.expect_err(name).to_string();
        assert!(error.contains(message), "{name}: {error}");
    }
    let long_name = "x".repeat(41);
    let error = create(&long_name, spec(IMAGE_1))
        .await
        .expect_err("long name")
        .to_string();
    assert!(error.contains("at most 40 characters"), "{error}");

    // What a platform team sets for real pods is accepted.
    let mut placed = spec(IMAGE_1);
    merge(
        &mut placed,
        json!({
            "env": [{"name": "RUST_LOG", "value": "info"}],
            "serviceAccountName": "orders",
            "imagePullSecrets": [{"name": "registry"}],
            "nodeSelector": {"pool": "apps"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}],
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            "database": {"migrations": {"resources": {"requests": {"cpu": "50m"}}}}
        }),
    );
    create("placed", placed)
        .await
        .expect("placement, pull secrets and a rolling update are accepted");

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

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let h = Harness::start().await;
    h.create_ready(h.spec(IMAGE_1)).await;
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
        [
            "NAME",
            "READY",
            "DATAFLOWING",
            "PHASE",
            "REPLICAS",
            "IMAGE",
            "AGE"
        ],
        "{text}"
    );
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // No service answers behind kwok's pods: the data flow is Unknown, not False.
    assert_eq!(
        &row[..6],
        ["shop", "True", "Unknown", "Ready", "2", IMAGE_1],
        "{text}"
    );
}

#[tokio::test]
async fn the_operators_own_rbac_is_enough_to_reach_ready_and_grants_no_secrets() {
    let h = Harness::start_with(Some("order-operator"), Duration::from_secs(300)).await;
    h.create_ready(h.spec(IMAGE_1)).await;
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
