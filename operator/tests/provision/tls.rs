//! Topics on the stack broker's SASL_SSL listener (SCRAM-SHA-512, a local CA), as production
//! brokers run: the right credentials and CA work; a wrong password, a CA that did not sign the
//! broker's certificate and a plaintext client each fail with their own reason, and nothing is
//! created.

use std::time::Duration;

use order_operator::provision::kafka::{DesiredTopic, KafkaTarget, TopicProvisioner};
use order_operator::provision::{Intent, ProvisionError};

use crate::support::{self, partitions, unique};

/// Short: the failures below take the whole bound (librdkafka retries until it runs out).
const BOUND: Duration = Duration::from_secs(6);

fn provisioner(servers: String, properties: Vec<(String, String)>) -> TopicProvisioner {
    TopicProvisioner::connect(&KafkaTarget {
        bootstrap_servers: servers,
        properties,
        timeout: BOUND,
    })
    .expect("admin client")
}

/// Plans one new topic and returns the error, checking on the plaintext listener that the
/// topic was not created.
async fn refused(p: TopicProvisioner) -> ProvisionError {
    let topic = DesiredTopic::new(&format!("tls.{}", unique()));
    let error = match p
        .plan(std::slice::from_ref(&topic), |_| None, Intent::Present)
        .await
    {
        Ok(plans) => panic!("planned without reaching the broker: {plans:?}"),
        Err(error) => error,
    };
    assert_eq!(partitions(&topic.name), None, "nothing created");
    error
}

#[tokio::test]
async fn topics_are_provisioned_over_sasl_ssl_with_the_right_password_and_ca() {
    let (servers, properties) = support::secure_kafka(None);
    let p = provisioner(servers, properties);
    let topic = DesiredTopic {
        partitions: 2,
        ..DesiredTopic::new(&format!("tls.{}", unique()))
    };
    p.converge(std::slice::from_ref(&topic))
        .await
        .expect("converge over SASL_SSL");
    assert_eq!(
        partitions(&topic.name),
        Some(2),
        "seen on the plaintext listener"
    );
    let plans = p
        .plan(std::slice::from_ref(&topic), |_| None, Intent::Present)
        .await
        .expect("plan over SASL_SSL");
    assert!(
        plans[0].actions.is_empty(),
        "in shape: {:?}",
        plans[0].actions
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_failure() {
    let (servers, properties) = support::secure_kafka(Some("not-the-password"));
    let error = refused(provisioner(servers, properties)).await;
    assert_eq!(error.reason(), "KafkaAuthenticationFailed", "{error}");
    assert!(error.to_string().contains("uthentication"), "{error}");
    assert!(
        !error.to_string().contains("not-the-password"),
        "no secret in the message"
    );
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_broker_is_a_tls_failure() {
    let (servers, mut properties) = support::secure_kafka(None);
    // The system's public roots: a real CA list, but not the one that signed this broker.
    properties.retain(|(k, _)| k != "ssl.ca.location");
    properties.push((
        "ssl.ca.location".into(),
        "/etc/ssl/certs/ca-certificates.crt".into(),
    ));
    let error = refused(provisioner(servers, properties)).await;
    assert_eq!(error.reason(), "KafkaTlsFailed", "{error}");
    assert!(
        error.to_string().contains("certificate verify failed"),
        "{error}"
    );
}

#[tokio::test]
async fn a_plaintext_client_on_the_tls_listener_cannot_reach_the_brokers() {
    let (servers, _) = support::secure_kafka(None);
    let error = refused(provisioner(servers, Vec::new())).await;
    assert_eq!(error.reason(), "KafkaUnreachable", "{error}");
    assert!(
        error.to_string().contains("security.protocol"),
        "names the likely cause: {error}"
    );
}
