//! The controller's side of provisioning DynamoDB tables and Kafka topics: credentials from the
//! spec's Secrets, connections cached per endpoint, and plan → apply per resource. What the
//! outcomes mean for conditions is decided in `status.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};

use super::status::ResourceOutcome;
use super::Context;
use crate::crd::OrderPlatform;
use crate::provision::dynamodb::{
    DesiredTable, DynamoDbTarget, StaticCredentials, TableAction, TableProvisioner,
};
use crate::provision::kafka::{parse_properties, KafkaTarget, TopicProvisioner};
use crate::provision::{Desired, Intent};

/// The key of the spec's Kafka security Secret.
pub const KAFKA_PROPERTIES_KEY: &str = "ORDER_SERVICE_KAFKA_PROPERTIES";

/// Provisioners by connection settings: an SDK client resolves credentials once and an
/// AdminClient keeps its broker connections, so they are reused across reconciles. Keyed by a
/// hash of the settings (secrets included), so a rotated Secret gets a new client. Creation
/// happens under the lock: a burst of first reconciles makes one client, not one each.
#[derive(Default)]
pub struct Connections {
    tables: tokio::sync::Mutex<HashMap<String, Arc<TableProvisioner>>>,
    topics: Mutex<HashMap<String, Arc<TopicProvisioner>>>,
}

impl Connections {
    async fn tables(&self, target: &DynamoDbTarget) -> Arc<TableProvisioner> {
        let key = fingerprint(&[
            &target.region,
            target.endpoint.as_deref().unwrap_or(""),
            &format!("{:?}", target.timeout),
            &target
                .credentials
                .as_ref()
                .map(|c| {
                    format!(
                        "{}:{}:{:?}",
                        c.access_key_id, c.secret_access_key, c.session_token
                    )
                })
                .unwrap_or_default(),
        ]);
        let mut cache = self.tables.lock().await;
        if let Some(found) = cache.get(&key) {
            return found.clone();
        }
        let created = Arc::new(TableProvisioner::connect(target).await);
        cache.insert(key, created.clone());
        created
    }

    fn topics(
        &self,
        target: &KafkaTarget,
    ) -> Result<Arc<TopicProvisioner>, (&'static str, String)> {
        let properties: Vec<String> = target
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let key = fingerprint(&[
            &target.bootstrap_servers,
            &format!("{:?}", target.timeout),
            &properties.join(","),
        ]);
        let mut cache = self
            .topics
            .lock()
            .map_err(|_| ("KafkaCallFailed", "the client cache is poisoned".to_owned()))?;
        if let Some(found) = cache.get(&key) {
            return Ok(found.clone());
        }
        let created =
            Arc::new(TopicProvisioner::connect(target).map_err(|e| (e.reason(), e.to_string()))?);
        cache.insert(key, created.clone());
        Ok(created)
    }
}

fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    format!("{:x}", hash.finalize())
}

/// Brings the platform's tables and topics to `intent`; one outcome per table and per topic.
pub async fn provision(
    platform: &OrderPlatform,
    ctx: &Context,
    intent: Intent,
) -> (Vec<ResourceOutcome>, Vec<ResourceOutcome>) {
    let desired = Desired::from_platform(platform);
    let tables = tables(platform, ctx, &desired.tables, intent).await;
    let topics = topics(platform, ctx, &desired, intent).await;
    (tables, topics)
}

async fn tables(
    platform: &OrderPlatform,
    ctx: &Context,
    desired: &[DesiredTable],
    intent: Intent,
) -> Vec<ResourceOutcome> {
    let names = || desired.iter().map(|t| t.name.clone());
    let target = match dynamodb_target(platform, ctx).await {
        Ok(target) => target,
        Err(problem) => return all_failed(names(), problem),
    };
    let provisioner = ctx.connections.tables(&target).await;
    let plans = match provisioner.plan(desired, intent).await {
        Ok(plans) => plans,
        Err(e) => return all_failed(names(), (e.reason(), e.to_string())),
    };
    let mut outcomes = Vec::with_capacity(plans.len());
    for (table, plan) in desired.iter().zip(plans) {
        let mut outcome = ResourceOutcome {
            name: plan.name.clone(),
            notes: plan.notes.clone(),
            refusal: plan.refusal.map(|r| (r.reason, r.message)),
            ..ResourceOutcome::default()
        };
        if outcome.refusal.is_none() {
            for action in &plan.actions {
                match provisioner.apply(table, action).await {
                    Ok(notes) => {
                        outcome.notes.extend(notes);
                        if !matches!(action, TableAction::WaitActive { .. }) {
                            outcome
                                .applied
                                .push(format!("table {}: {action}", table.name));
                        }
                    }
                    Err(e) => {
                        outcome.error = Some((e.reason(), e.to_string()));
                        break;
                    }
                }
            }
        }
        outcomes.push(outcome);
    }
    outcomes
}

async fn topics(
    platform: &OrderPlatform,
    ctx: &Context,
    desired: &Desired,
    intent: Intent,
) -> Vec<ResourceOutcome> {
    let names = || desired.topics.iter().map(|t| t.name.clone());
    let target = match kafka_target(platform, ctx).await {
        Ok(target) => target,
        Err(problem) => return all_failed(names(), problem),
    };
    let provisioner = match ctx.connections.topics(&target) {
        Ok(provisioner) => provisioner,
        Err(problem) => return all_failed(names(), problem),
    };
    let plans = match provisioner.plan(&desired.topics, intent).await {
        Ok(plans) => plans,
        Err(e) => return all_failed(names(), (e.reason(), e.to_string())),
    };
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in plans {
        let mut outcome = ResourceOutcome {
            name: plan.name.clone(),
            refusal: plan.refusals.first().map(|r| {
                let messages: Vec<_> = plan.refusals.iter().map(|r| r.message.as_str()).collect();
                (r.reason, messages.join("; "))
            }),
            ..ResourceOutcome::default()
        };
        if outcome.refusal.is_none() {
            for action in &plan.actions {
                match provisioner.apply(&plan.name, action).await {
                    Ok(()) => outcome
                        .applied
                        .push(format!("topic {}: {action}", plan.name)),
                    Err(e) => {
                        outcome.error = Some((e.reason(), e.to_string()));
                        break;
                    }
                }
            }
        }
        outcomes.push(outcome);
    }
    outcomes
}

fn all_failed(
    names: impl Iterator<Item = String>,
    (reason, message): (&'static str, String),
) -> Vec<ResourceOutcome> {
    names
        .map(|name| ResourceOutcome {
            name,
            error: Some((reason, message.clone())),
            ..ResourceOutcome::default()
        })
        .collect()
}

async fn dynamodb_target(
    platform: &OrderPlatform,
    ctx: &Context,
) -> Result<DynamoDbTarget, (&'static str, String)> {
    let spec = &platform.spec.dynamodb;
    let credentials = match &spec.credentials_secret_ref {
        None => None,
        Some(secret) => {
            let mut data = secret_data(platform, ctx, secret).await?;
            match (
                data.remove("AWS_ACCESS_KEY_ID"),
                data.remove("AWS_SECRET_ACCESS_KEY"),
            ) {
                (Some(access_key_id), Some(secret_access_key)) => Some(StaticCredentials {
                    access_key_id,
                    secret_access_key,
                    session_token: data.remove("AWS_SESSION_TOKEN"),
                }),
                _ => {
                    return Err((
                        "CredentialsUnavailable",
                        format!("Secret {secret} needs the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
                    ))
                }
            }
        }
    };
    Ok(DynamoDbTarget {
        region: spec.region.clone(),
        endpoint: spec.endpoint.clone(),
        credentials,
        timeout: ctx.provision_timeout,
    })
}

async fn kafka_target(
    platform: &OrderPlatform,
    ctx: &Context,
) -> Result<KafkaTarget, (&'static str, String)> {
    let spec = &platform.spec.kafka;
    let properties = match &spec.security_secret_ref {
        None => Vec::new(),
        Some(secret) => {
            let text = secret_data(platform, ctx, secret)
                .await?
                .remove(KAFKA_PROPERTIES_KEY)
                .ok_or_else(|| {
                    (
                        "CredentialsUnavailable",
                        format!("Secret {secret} has no key {KAFKA_PROPERTIES_KEY}"),
                    )
                })?;
            parse_properties(&text).map_err(|e| {
                (
                    "InvalidKafkaProperties",
                    format!("Secret {secret}, key {KAFKA_PROPERTIES_KEY}: {e}"),
                )
            })?
        }
    };
    Ok(KafkaTarget {
        bootstrap_servers: spec.bootstrap_servers.clone(),
        properties,
        timeout: ctx.provision_timeout,
    })
}

/// The (UTF-8) keys of a Secret in the platform's namespace.
async fn secret_data(
    platform: &OrderPlatform,
    ctx: &Context,
    name: &str,
) -> Result<BTreeMap<String, String>, (&'static str, String)> {
    let namespace = platform.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = match api.get(name).await {
        Ok(secret) => secret,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(("CredentialsUnavailable", format!("Secret {name} not found in namespace {namespace}")))
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Err((
                "CredentialsUnavailable",
                format!("the operator may not read Secret {name}: bind the ClusterRole {} in namespace {namespace} (see `order-operator rbac`)", crate::rbac::CREDENTIALS_NAME),
            ))
        }
        Err(e) => return Err(("CredentialsUnavailable", format!("reading Secret {name}: {e}"))),
    };
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((k, String::from_utf8(v.0).ok()?)))
        .collect())
}
