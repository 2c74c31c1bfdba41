//! DynamoDB tables: observe with DescribeTable / DescribeTimeToLive / ListTagsOfResource, plan
//! (`plan.rs`, pure), apply. Any endpoint works: AWS, DynamoDB Local, moto.

mod plan;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ProvisionedThroughput,
    ScalarAttributeType, Tag, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

pub use plan::{
    plan_table, Billing, DesiredTable, KeyElement, ObservedTable, TableAction, TablePlan, Ttl,
    ORIGIN_TAG, OWNER_TAG,
};

use super::error::bounded;
use super::{CallMetrics, Intent, Origin, ProvisionError};

/// Where the tables live and how to reach them.
#[derive(Clone)]
pub struct DynamoDbTarget {
    pub region: String,
    /// DynamoDB Local or moto; `None` is AWS.
    pub endpoint: Option<String>,
    /// Keys from the spec's Secret; `None` uses the AWS default chain (env, web identity).
    pub credentials: Option<StaticCredentials>,
    /// Bound on each call, retries included.
    pub timeout: Duration,
}

/// An access key pair. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for DynamoDbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.endpoint {
            Some(endpoint) => write!(f, "{endpoint} ({})", self.region),
            None => write!(f, "AWS {}", self.region),
        }
    }
}

impl DynamoDbTarget {
    pub async fn client(&self) -> Client {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(self.timeout)
                    .connect_timeout(Duration::from_secs(3).min(self.timeout))
                    .build(),
            );
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(c) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
                None,
                "OrderPlatform credentials Secret",
            ));
        }
        Client::new(&loader.load().await)
    }
}

/// The platform's tables on one endpoint.
pub struct TableProvisioner {
    client: Client,
    timeout: Duration,
    metrics: CallMetrics,
}

impl TableProvisioner {
    pub async fn connect(target: &DynamoDbTarget) -> Self {
        Self {
            client: target.client().await,
            timeout: target.timeout,
            metrics: CallMetrics::default(),
        }
    }

    /// Records every call in `metrics` (the operator's registry).
    pub fn with_metrics(mut self, metrics: CallMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reads each table and plans it; `recorded` gives the origin the platform's status holds
    /// for a table name (it decides ownership where the endpoint has no tags).
    pub async fn plan(
        &self,
        tables: &[DesiredTable],
        recorded: impl Fn(&str) -> Option<Origin>,
        intent: Intent,
    ) -> Result<Vec<TablePlan>, ProvisionError> {
        let mut plans = Vec::with_capacity(tables.len());
        for table in tables {
            let observed = self.observe(&table.name).await?;
            plans.push(plan_table(
                table,
                observed.as_ref(),
                recorded(&table.name),
                intent,
            ));
        }
        Ok(plans)
    }

    /// Plans and applies in one go, failing on the first refusal: for callers that only need
    /// the tables to exist (tests, tools). Tables nobody owns are adopted; another platform's
    /// are still refused. Returns the notes.
    pub async fn converge(&self, tables: &[DesiredTable]) -> Result<Vec<String>, ProvisionError> {
        let tables: Vec<DesiredTable> = tables
            .iter()
            .map(|t| DesiredTable {
                adopt: true,
                ..t.clone()
            })
            .collect();
        let tables = tables.as_slice();
        let mut notes = Vec::new();
        for (table, plan) in tables
            .iter()
            .zip(self.plan(tables, |_| None, Intent::Present).await?)
        {
            if let Some(refusal) = plan.refusal {
                return Err(ProvisionError::Refused(refusal));
            }
            notes.extend(plan.notes);
            for action in &plan.actions {
                notes.extend(self.apply(table, action).await?);
            }
        }
        Ok(notes)
    }

    /// What exists under `name`, or `None`.
    pub async fn observe(&self, name: &str) -> Result<Option<ObservedTable>, ProvisionError> {
        let described = bounded(
            &self.metrics,
            "DynamoDB",
            "DescribeTable",
            self.timeout,
            self.describe_table(name),
        )
        .await?;
        let Some(table) = described else {
            return Ok(None);
        };
        let types: BTreeMap<&str, &str> = table
            .attribute_definitions()
            .iter()
            .map(|a| (a.attribute_name(), a.attribute_type().as_str()))
            .collect();
        let keys = table
            .key_schema()
            .iter()
            .map(|k| {
                KeyElement::new(
                    k.attribute_name(),
                    k.key_type().as_str(),
                    types.get(k.attribute_name()).copied().unwrap_or("?"),
                )
            })
            .collect();
        // Tables created before on-demand existed have no billing summary: they are PROVISIONED.
        let billing = match table.billing_mode_summary().and_then(|s| s.billing_mode()) {
            Some(BillingMode::PayPerRequest) => Billing::PayPerRequest,
            _ => {
                let throughput = table.provisioned_throughput();
                Billing::Provisioned {
                    read: throughput
                        .and_then(|t| t.read_capacity_units())
                        .unwrap_or(0),
                    write: throughput
                        .and_then(|t| t.write_capacity_units())
                        .unwrap_or(0),
                }
            }
        };
        let ttl = bounded(
            &self.metrics,
            "DynamoDB",
            "DescribeTimeToLive",
            self.timeout,
            async {
                let out = self
                    .client
                    .describe_time_to_live()
                    .table_name(name)
                    .send()
                    .await
                    .map_err(|e| failed("DescribeTimeToLive", name, &e))?;
                let description = out.time_to_live_description();
                Ok(match description.and_then(|d| d.time_to_live_status()) {
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => Ttl::On(
                        description
                            .and_then(|d| d.attribute_name())
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    _ => Ttl::Off,
                })
            },
        )
        .await?;
        let tags = match table.table_arn() {
            Some(arn) => self.tags(arn).await?,
            None => Err("the table has no ARN".into()),
        };
        Ok(Some(ObservedTable {
            keys,
            status: table
                .table_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "UNKNOWN".into()),
            billing,
            ttl,
            tags,
        }))
    }

    /// The table's tags; `Ok(Err(_))` when the endpoint refuses the call (DynamoDB Local).
    async fn tags(
        &self,
        arn: &str,
    ) -> Result<Result<BTreeMap<String, String>, String>, ProvisionError> {
        bounded(
            &self.metrics,
            "DynamoDB",
            "ListTagsOfResource",
            self.timeout,
            async {
                let mut tags = BTreeMap::new();
                let mut token = None;
                loop {
                    let out = match self
                        .client
                        .list_tags_of_resource()
                        .resource_arn(arn)
                        .set_next_token(token)
                        .send()
                        .await
                    {
                        Ok(out) => out,
                        Err(e @ SdkError::ServiceError(_)) => return Ok(Err(describe(&e))),
                        Err(e) => return Err(failed("ListTagsOfResource", arn, &e)),
                    };
                    tags.extend(
                        out.tags()
                            .iter()
                            .map(|t| (t.key().to_owned(), t.value().to_owned())),
                    );
                    token = out.next_token;
                    if token.is_none() {
                        return Ok(Ok(tags));
                    }
                }
            },
        )
        .await
    }

    /// Runs one table's actions in order; returns notes about optional calls the endpoint
    /// refused.
    pub async fn apply(
        &self,
        table: &DesiredTable,
        action: &TableAction,
    ) -> Result<Vec<String>, ProvisionError> {
        let name = table.name.as_str();
        match action {
            TableAction::Create { billing, tags } => {
                self.create(table, *billing, tags).await?;
                self.wait_active(name).await?;
            }
            TableAction::WaitActive { .. } => self.wait_active(name).await?,
            TableAction::SetBilling { to, .. } => {
                bounded(
                    &self.metrics,
                    "DynamoDB",
                    "UpdateTable",
                    self.timeout,
                    async {
                        let (mode, throughput) = billing_parts(*to);
                        self.client
                            .update_table()
                            .table_name(name)
                            .billing_mode(mode)
                            .set_provisioned_throughput(throughput)
                            .send()
                            .await
                            .map_err(|e| failed("UpdateTable", name, &e))
                    },
                )
                .await?;
                self.wait_active(name).await?;
            }
            TableAction::EnableTtl { attribute } => {
                bounded(
                    &self.metrics,
                    "DynamoDB",
                    "UpdateTimeToLive",
                    self.timeout,
                    async {
                        let spec = TimeToLiveSpecification::builder()
                            .enabled(true)
                            .attribute_name(attribute)
                            .build()
                            .map_err(|e| invalid("UpdateTimeToLive", name, e))?;
                        match self
                            .client
                            .update_time_to_live()
                            .table_name(name)
                            .time_to_live_specification(spec)
                            .send()
                            .await
                        {
                            Ok(_) => Ok(()),
                            // A concurrent writer (another replica, a retry) got there first.
                            Err(e) if describe(&e).contains("already enabled") => Ok(()),
                            Err(e) => Err(failed("UpdateTimeToLive", name, &e)),
                        }
                    },
                )
                .await?;
            }
            TableAction::Tag { tags } => {
                let arn = bounded(
                    &self.metrics,
                    "DynamoDB",
                    "DescribeTable",
                    self.timeout,
                    self.describe_table(name),
                )
                .await?
                .and_then(|t| t.table_arn)
                .unwrap_or_default();
                let tags = tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("TagResource", name, e))?;
                let refused = bounded(
                    &self.metrics,
                    "DynamoDB",
                    "TagResource",
                    self.timeout,
                    async {
                        match self
                            .client
                            .tag_resource()
                            .resource_arn(&arn)
                            .set_tags(Some(tags))
                            .send()
                            .await
                        {
                            Ok(_) => Ok(None),
                            Err(e @ SdkError::ServiceError(_)) => Ok(Some(describe(&e))),
                            Err(e) => Err(failed("TagResource", name, &e)),
                        }
                    },
                )
                .await?;
                if let Some(why) = refused {
                    return Ok(vec![format!(
                        "table {name} not tagged: this endpoint does not support it ({why})"
                    )]);
                }
            }
            TableAction::Delete => {
                bounded(
                    &self.metrics,
                    "DynamoDB",
                    "DeleteTable",
                    self.timeout,
                    async {
                        match self.client.delete_table().table_name(name).send().await {
                            Ok(_) => Ok(()),
                            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
                            Err(e) => Err(failed("DeleteTable", name, &e)),
                        }
                    },
                )
                .await?;
            }
        }
        Ok(Vec::new())
    }

    async fn create(
        &self,
        table: &DesiredTable,
        billing: Billing,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ProvisionError> {
        let name = table.name.as_str();
        let (mode, throughput) = billing_parts(billing);
        let tags = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("CreateTable", name, e))?;
        let mut request = self
            .client
            .create_table()
            .table_name(name)
            .billing_mode(mode)
            .set_provisioned_throughput(throughput)
            .set_tags((!tags.is_empty()).then_some(tags));
        let d = &table.definition;
        for (key, key_type) in [
            (d.partition_key, KeyType::Hash),
            (d.sort_key, KeyType::Range),
        ] {
            let attribute_type = match key.attribute_type {
                platform_resources::AttributeType::String => ScalarAttributeType::S,
                platform_resources::AttributeType::Number => ScalarAttributeType::N,
            };
            request = request
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(key.name)
                        .attribute_type(attribute_type)
                        .build()
                        .map_err(|e| invalid("CreateTable", name, e))?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(key.name)
                        .key_type(key_type)
                        .build()
                        .map_err(|e| invalid("CreateTable", name, e))?,
                );
        }
        bounded(&self.metrics, "DynamoDB", "CreateTable", self.timeout, async {
            match request.send().await {
                Ok(_) => Ok(()),
                // Created by someone else since we looked: not ours to tag or change. The retry's
                // plan reads its owner tag and keys.
                Err(e) if e.code() == Some("ResourceInUseException") => Err(ProvisionError::DynamoDb {
                    operation: "CreateTable",
                    resource: name.to_owned(),
                    message: "the table was created by someone else since it was observed; it will be planned again".into(),
                }),
                Err(e) => Err(failed("CreateTable", name, &e)),
            }
        })
        .await
    }

    /// DescribeTable; `None` when there is no such table. Callers bound it.
    async fn describe_table(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>, ProvisionError> {
        match self.client.describe_table().table_name(name).send().await {
            Ok(out) => Ok(out.table),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(failed("DescribeTable", name, &e)),
        }
    }

    /// Polls until the table is ACTIVE, for at most the call timeout.
    async fn wait_active(&self, name: &str) -> Result<(), ProvisionError> {
        bounded(
            &self.metrics,
            "DynamoDB",
            "wait for ACTIVE",
            self.timeout,
            async {
                let mut delay = Duration::from_millis(100);
                loop {
                    let table = self.describe_table(name).await?;
                    if table
                        .as_ref()
                        .and_then(|t| t.table_status())
                        .map(|s| s.as_str())
                        == Some("ACTIVE")
                    {
                        return Ok(());
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            },
        )
        .await
    }
}

fn billing_parts(billing: Billing) -> (BillingMode, Option<ProvisionedThroughput>) {
    match billing {
        Billing::PayPerRequest => (BillingMode::PayPerRequest, None),
        Billing::Provisioned { read, write } => (
            BillingMode::Provisioned,
            ProvisionedThroughput::builder()
                .read_capacity_units(read)
                .write_capacity_units(write)
                .build()
                .ok(),
        ),
    }
}

fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        // Transport errors: the chain of causes reads well; the SDK's Debug form does not.
        _ => crate::provision::error_chain(error),
    }
}

fn failed<E, R>(operation: &'static str, resource: &str, error: &SdkError<E, R>) -> ProvisionError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    ProvisionError::DynamoDb {
        operation,
        resource: resource.to_owned(),
        message: describe(error),
    }
}

fn invalid(
    operation: &'static str,
    resource: &str,
    error: impl std::fmt::Display,
) -> ProvisionError {
    ProvisionError::DynamoDb {
        operation,
        resource: resource.to_owned(),
        message: error.to_string(),
    }
}
