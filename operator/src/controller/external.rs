//! The controller's side of provisioning DynamoDB tables and Kafka topics: credentials from the
//! spec's Secrets, connections cached per endpoint, and plan → apply per resource. What the
//! outcomes mean for conditions is decided in `status.rs`.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::claims;
use super::context::Context;
use super::status::ResourceOutcome;
use crate::crd::OrderPlatform;
use crate::provision::desired::recorded_origins;
use crate::provision::dynamodb::{
    plan_table, DesiredTable, DynamoDbTarget, StaticCredentials, TableAction, TablePlan,
};
use crate::provision::error_chain;
use crate::provision::kafka::{parse_properties, plan_topic, DesiredTopic, KafkaTarget, TopicPlan};
use crate::provision::{Desired, Intent, Origin, Refusal};

/// The key of the spec's Kafka security Secret.
pub const KAFKA_PROPERTIES_KEY: &str = "ORDER_SERVICE_KAFKA_PROPERTIES";

/// Brings the platform's tables and topics to `intent`; one outcome per table and per topic.
/// A table or topic an older platform also names is refused (`ResourceConflict`) on the way
/// up and kept on the way down, without a call.
pub async fn provision(
    platform: &OrderPlatform,
    ctx: &Context,
    intent: Intent,
) -> (Vec<ResourceOutcome>, Vec<ResourceOutcome>) {
    let mut desired = Desired::from_platform(platform);
    let claimed = claims::conflicts(platform, ctx.platforms().iter().map(AsRef::as_ref));
    let mut records = Records::cached(platform);
    let (mut table_outcomes, mut topic_outcomes) = (Vec::new(), Vec::new());
    for refusal in &claimed {
        let outcome = match intent {
            Intent::Present => ResourceOutcome {
                name: refusal.resource.clone(),
                refusal: Some((refusal.reason, refusal.message.clone())),
                ..ResourceOutcome::default()
            },
            Intent::Absent => ResourceOutcome {
                name: refusal.resource.clone(),
                notes: vec![format!("{} is kept: {}", refusal.resource, refusal.message)],
                ..ResourceOutcome::default()
            },
        };
        if desired.tables.iter().any(|t| t.name == refusal.resource) {
            table_outcomes.push(outcome);
        } else {
            topic_outcomes.push(outcome);
        }
    }
    let is_claimed = |name: &str| claimed.iter().any(|r| r.resource == name);
    desired.tables.retain(|t| !is_claimed(&t.name));
    desired.topics.retain(|t| !is_claimed(&t.name));
    table_outcomes.extend(tables(platform, ctx, &desired.tables, &mut records, intent).await);
    topic_outcomes.extend(topics(platform, ctx, &desired.topics, &mut records, intent).await);
    (table_outcomes, topic_outcomes)
}

/// The origins the platform's status records per table and topic name.
struct Records {
    origins: HashMap<String, Origin>,
    /// Read from the apiserver rather than the watch cache.
    fresh: bool,
}

impl Records {
    fn cached(platform: &OrderPlatform) -> Self {
        Self {
            origins: recorded_origins(platform.status.as_ref()),
            fresh: false,
        }
    }

    fn get(&self, name: &str) -> Option<Origin> {
        self.origins.get(name).copied()
    }

    /// Plans with these records, and again after [`Self::refresh`] when some plan `lacks` a
    /// record (refused for adoption, or kept on removal).
    async fn plan<P>(
        &mut self,
        platform: &OrderPlatform,
        ctx: &Context,
        plan_all: impl Fn(&Self) -> Vec<P>,
        lacks: impl Fn(&P) -> bool,
    ) -> Vec<P> {
        let plans = plan_all(self);
        if plans.iter().any(lacks) && self.refresh(platform, ctx).await {
            return plan_all(self);
        }
        plans
    }

    /// The watch cache can hand a reconcile a status older than the one the previous reconcile
    /// wrote: before refusing a resource as not ours, read the record from the apiserver once.
    async fn refresh(&mut self, platform: &OrderPlatform, ctx: &Context) -> bool {
        if self.fresh {
            return false;
        }
        self.fresh = true;
        let api: Api<OrderPlatform> = Api::namespaced(
            ctx.client.clone(),
            &platform.namespace().unwrap_or_default(),
        );
        match api.get_status(&platform.name_any()).await {
            Ok(current) => {
                self.origins
                    .extend(recorded_origins(current.status.as_ref()));
                true
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "re-reading the platform's status failed");
                false
            }
        }
    }
}

fn adoption_refused(refusal: Option<&Refusal>) -> bool {
    refusal.is_some_and(|r| r.reason == "AdoptionRequired")
}

async fn tables(
    platform: &OrderPlatform,
    ctx: &Context,
    desired: &[DesiredTable],
    records: &mut Records,
    intent: Intent,
) -> Vec<ResourceOutcome> {
    if desired.is_empty() {
        return Vec::new();
    }
    let names = || desired.iter().map(|t| t.name.clone());
    let target = match dynamodb_target(platform, ctx).await {
        Ok(target) => target,
        Err(problem) => return all_failed(names(), records, problem),
    };
    let provisioner = ctx.connections.tables(&target, &ctx.metrics.external).await;
    let mut observed = Vec::with_capacity(desired.len());
    for table in desired {
        match provisioner.observe(&table.name).await {
            Ok(found) => observed.push(found),
            Err(e) => return all_failed(names(), records, (e.reason(), e.to_string())),
        }
    }
    let plan_all = |records: &Records| -> Vec<TablePlan> {
        desired
            .iter()
            .zip(&observed)
            .map(|(t, o)| plan_table(t, o.as_ref(), records.get(&t.name), intent))
            .collect()
    };
    let plans = records
        .plan(platform, ctx, plan_all, |p: &TablePlan| {
            adoption_refused(p.refusal.as_ref())
                || (intent == Intent::Absent && p.actions.is_empty())
        })
        .await;
    let mut outcomes = Vec::with_capacity(plans.len());
    for (table, plan) in desired.iter().zip(plans) {
        let mut outcome = ResourceOutcome {
            name: plan.name.clone(),
            notes: plan.notes.clone(),
            refusal: plan.refusal.map(|r| (r.reason, r.message)),
            origin: plan.origin,
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
    desired: &[DesiredTopic],
    records: &mut Records,
    intent: Intent,
) -> Vec<ResourceOutcome> {
    if desired.is_empty() {
        return Vec::new();
    }
    let names = || desired.iter().map(|t| t.name.clone());
    let target = match kafka_target(platform, ctx).await {
        Ok(target) => target,
        Err(problem) => return all_failed(names(), records, problem),
    };
    let provisioner = match ctx.connections.topics(&target, &ctx.metrics.external).await {
        Ok(provisioner) => provisioner,
        Err(problem) => return all_failed(names(), records, problem),
    };
    let observed = match provisioner
        .observe(desired.iter().map(|t| t.name.as_str()))
        .await
    {
        Ok(observed) => observed,
        Err(e) => return all_failed(names(), records, (e.reason(), e.to_string())),
    };
    let plan_all = |records: &Records| -> Vec<TopicPlan> {
        desired
            .iter()
            .map(|t| {
                let found = observed.get(&t.name).and_then(Option::as_ref);
                plan_topic(t, found, records.get(&t.name), intent)
            })
            .collect()
    };
    let plans = records
        .plan(platform, ctx, plan_all, |p: &TopicPlan| {
            adoption_refused(p.refusals.first())
                || (intent == Intent::Absent && p.actions.is_empty())
        })
        .await;
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in plans {
        let mut outcome = ResourceOutcome {
            name: plan.name.clone(),
            refusal: plan.refusals.first().map(|r| {
                let messages: Vec<_> = plan.refusals.iter().map(|r| r.message.as_str()).collect();
                (r.reason, messages.join("; "))
            }),
            origin: plan.origin,
            notes: plan.notes.clone(),
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

/// Every resource failed before it could be looked at. Each keeps the origin the status
/// records: for a topic that record is the only proof this platform created it, and a failure
/// (Kafka down, a bad password) must not turn it into someone else's topic.
fn all_failed(
    names: impl Iterator<Item = String>,
    records: &Records,
    (reason, message): (&'static str, String),
) -> Vec<ResourceOutcome> {
    names
        .map(|name| ResourceOutcome {
            origin: records.get(&name),
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
