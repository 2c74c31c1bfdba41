//! Tables and topics provisioned against moto and the real Kafka from the control plane.

use crate::stack;
use crate::support::{poll_until, CONTROL_PLANE_TIMEOUT};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::harness::*;

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
    h.secret(
        "kafka",
        json!({"ORDER_SERVICE_KAFKA_PROPERTIES": "sasl.password"}),
    )
    .await;
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
    h.create_ready(h.spec(IMAGE_1)).await;

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
    h.create_ready(h.spec(IMAGE_1)).await;
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

#[tokio::test]
async fn metrics_count_each_external_call_and_the_platforms_readiness_and_resyncs_announce_nothing()
{
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    h.create_ready(h.spec(IMAGE_1)).await;
    let ready = format!(
        r#"order_operator_platform_ready{{namespace="{}",name="shop"}} 1"#,
        h.namespace.name()
    );
    // The gauge is set just after the status write the wait saw.
    let text = poll_until(CONTROL_PLANE_TIMEOUT, "the Ready gauge", || async {
        let text = h.metrics_text();
        text.contains(&ready).then_some(text)
    })
    .await;
    for series in [
        r#"order_operator_external_calls_total{provider="DynamoDB",operation="CreateTable",outcome="ok"} 2"#,
        r#"order_operator_external_calls_total{provider="Kafka",operation="CreateTopics",outcome="ok"} 1"#,
        r#"order_operator_external_call_duration_seconds_count{provider="DynamoDB",operation="DescribeTable"}"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }

    // Resyncs find everything in shape: no more "Provisioned" Events.
    let provisioned = occurrences(&h.events("Provisioned").await);
    // One Event each for the tables and the topic: neither note folded into the other's.
    let notes: Vec<String> = h
        .events("Provisioned")
        .await
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("table")) && notes.iter().any(|n| n.contains("topic")),
        "{notes:?}"
    );
    h.wait_reconciles(3).await;
    assert_eq!(occurrences(&h.events("Provisioned").await), provisioned);
    assert!(
        h.metrics_text().contains(
            r#"order_operator_external_calls_total{provider="DynamoDB",operation="CreateTable",outcome="ok"} 2"#
        ),
        "nothing created again"
    );

    h.platforms()
        .delete("shop", &DeleteParams::default())
        .await
        .expect("delete");
    poll_until(
        CONTROL_PLANE_TIMEOUT,
        "the platform's series to go",
        || async { (!h.metrics_text().contains(&ready[..ready.len() - 2])).then_some(()) },
    )
    .await;
}

/// `ORDER_SERVICE_KAFKA_PROPERTIES` for the stack's SASL_SSL listener, with the CA inline
/// (`ssl.ca.pem`), as a Secret in a cluster holds it: a pod has no CA file to point at.
fn sasl_ssl_properties(password: &str) -> String {
    let (_, properties) = stack::secure_kafka(Some(password));
    let ca = std::fs::read_to_string(std::env::var("KAFKA_SECURE_CA").expect("KAFKA_SECURE_CA"))
        .expect("read the stack's CA");
    properties
        .into_iter()
        .filter(|(k, _)| k != "ssl.ca.location")
        .map(|(k, v)| format!("{k}={v}"))
        .chain([format!("ssl.ca.pem={}", ca.trim())])
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn topics_over_sasl_ssl_a_wrong_password_is_a_condition_and_the_right_one_recovers() {
    let h = Harness::start_with(None, SHORT_RESYNC).await;
    let secrets = h.namespace.api::<Secret>();
    let secret = |password: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "kafka-security"},
            "stringData": {"ORDER_SERVICE_KAFKA_PROPERTIES": sasl_ssl_properties(password)}
        }))
        .expect("secret")
    };
    secrets
        .create(&PostParams::default(), &secret("wrong-password"))
        .await
        .expect("create secret");
    // Puts `password` in the Secret the platform names.
    let set_password = |password: String| {
        let (secrets, secret) = (&secrets, &secret);
        async move {
            secrets
                .replace("kafka-security", &PostParams::default(), &secret(&password))
                .await
                .expect("replace secret");
        }
    };
    let (servers, _) = stack::secure_kafka(None);
    let mut spec = h.spec(IMAGE_1);
    merge(
        &mut spec,
        json!({"kafka": {"bootstrapServers": servers, "securitySecretRef": "kafka-security"}}),
    );
    h.create(spec).await;
    let platform = h
        .wait_condition("TopicsReady", "False", Some("KafkaAuthenticationFailed"))
        .await;
    let message = platform
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "TopicsReady")
        .unwrap()
        .message;
    assert!(message.contains("uthentication"), "{message}");
    assert!(
        !message.contains("wrong-password"),
        "no secret in the status: {message}"
    );
    assert_eq!(
        stack::partitions(&h.topic()),
        None,
        "nothing created with the wrong password"
    );
    assert_eq!(h.deployment_image().await, None, "nothing rolled out");

    // The right password: the retry picks it up (a new client for the new settings).
    set_password(stack::secure_kafka(None).1[3].1.clone()).await;
    h.wait_condition("Ready", "True", None).await;
    assert_eq!(
        stack::partitions(&h.topic()),
        Some(3),
        "created over SASL_SSL"
    );

    // A failure after the topic exists (the password rotated badly, Kafka down) keeps the
    // record that this platform created it, the only one a topic has: once the failure is over
    // the topic is still ours, not refused as someone else's (it was: AdoptionRequired).
    set_password("wrong-again".to_owned()).await;
    let failed = h
        .wait_condition("TopicsReady", "False", Some("KafkaAuthenticationFailed"))
        .await;
    let record = failed.status.unwrap().topics;
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].origin.as_deref(), Some("Created"), "{record:?}");
    set_password(stack::secure_kafka(None).1[3].1.clone()).await;
    h.wait_condition("Ready", "True", None).await;
}
