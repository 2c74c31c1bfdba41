//! Building, printing and executing the plan of one OrderPlatform file.

use std::fmt::Write as _;
use std::time::Instant;

use kube::ResourceExt;
use serde::Serialize;

use super::{ApplyArgs, Outcome, Output, PlanArgs, TargetArgs};
use crate::crd::OrderPlatform;
use crate::provision::desired::recorded_origins;
use crate::provision::dynamodb::{DynamoDbTarget, TablePlan, TableProvisioner};
use crate::provision::kafka::{parse_properties, KafkaTarget, TopicPlan, TopicProvisioner};
use crate::provision::migrations::{MigrationPlan, SchemaProvisioner};
use crate::provision::{Desired, Intent, ProvisionError, Refusal};

/// Everything `apply` would do, as `plan --output json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformPlan {
    /// `namespace/name` of the OrderPlatform.
    pub platform: String,
    pub dynamodb: String,
    pub tables: Vec<TablePlan>,
    pub kafka: String,
    pub topics: Vec<TopicPlan>,
    /// `None` without a database URL.
    pub postgres: Option<MigrationPlan>,
    pub notes: Vec<String>,
    /// Changes pending (actions plus pending migrations).
    pub changes: usize,
    pub refusals: Vec<Refusal>,
}

impl PlatformPlan {
    fn new(
        platform: String,
        dynamodb: String,
        tables: Vec<TablePlan>,
        kafka: String,
        topics: Vec<TopicPlan>,
        postgres: Option<MigrationPlan>,
        notes: Vec<String>,
    ) -> Self {
        let changes = tables.iter().map(|t| t.actions.len()).sum::<usize>()
            + topics.iter().map(|t| t.actions.len()).sum::<usize>()
            + postgres.as_ref().map_or(0, |p| p.pending.len());
        let refusals = tables
            .iter()
            .filter_map(|t| t.refusal.clone())
            .chain(topics.iter().flat_map(|t| t.refusals.clone()))
            .chain(postgres.iter().filter_map(|p| p.refusal.clone()))
            .collect();
        Self {
            platform,
            dynamodb,
            tables,
            kafka,
            topics,
            postgres,
            notes,
            changes,
            refusals,
        }
    }

    /// The human-readable form.
    pub fn render(&self) -> String {
        let mut out = format!("OrderPlatform {}\n", self.platform);
        let _ = writeln!(out, "DynamoDB {}", self.dynamodb);
        for table in &self.tables {
            line(
                &mut out,
                "table",
                &table.name,
                table.actions.iter().map(|a| (a.symbol(), a.to_string())),
                table.refusal.iter(),
            );
            for note in &table.notes {
                let _ = writeln!(out, "  * table {}: {note}", table.name);
            }
        }
        let _ = writeln!(out, "Kafka {}", self.kafka);
        for topic in &self.topics {
            line(
                &mut out,
                "topic",
                &topic.name,
                topic.actions.iter().map(|a| (a.symbol(), a.to_string())),
                topic.refusals.iter(),
            );
            for note in &topic.notes {
                let _ = writeln!(out, "  * topic {}: {note}", topic.name);
            }
        }
        match &self.postgres {
            None => out.push_str("PostgreSQL: not checked (no --database-url / DATABASE_URL)\n"),
            Some(plan) => {
                out.push_str("PostgreSQL\n");
                for pending in &plan.pending {
                    let _ = writeln!(
                        out,
                        "  + migration {} ({})",
                        pending.version, pending.description
                    );
                }
                if let Some(refusal) = &plan.refusal {
                    let _ = writeln!(out, "  ! refused ({}): {}", refusal.reason, refusal.message);
                } else if plan.pending.is_empty() {
                    let _ = writeln!(out, "  = {} migrations applied, none pending", plan.applied);
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = match (self.changes, self.refusals.len()) {
            (0, 0) => writeln!(out, "No changes: everything is in shape."),
            (n, 0) => writeln!(out, "Plan: {n} change(s) to apply."),
            (n, r) => writeln!(out, "Plan: {n} change(s), {r} refused: apply would stop."),
        };
        out
    }
}

fn line<'a>(
    out: &mut String,
    kind: &str,
    name: &str,
    actions: impl Iterator<Item = (char, String)>,
    refusals: impl Iterator<Item = &'a Refusal>,
) {
    let mut any = false;
    for refusal in refusals {
        any = true;
        let _ = writeln!(
            out,
            "  ! {kind} {name}: refused ({}): {}",
            refusal.reason, refusal.message
        );
    }
    for (symbol, action) in actions {
        any = true;
        let _ = writeln!(out, "  {symbol} {kind} {name}: {action}");
    }
    if !any {
        let _ = writeln!(out, "  = {kind} {name}: in shape");
    }
}

/// The provisioners for a file, with the command line's overrides.
struct Targets {
    platform: OrderPlatform,
    desired: Desired,
    tables: TableProvisioner,
    dynamodb: String,
    topics: TopicProvisioner,
    kafka: String,
    schema: Option<SchemaProvisioner>,
    notes: Vec<String>,
}

async fn targets(args: &TargetArgs) -> anyhow::Result<Targets> {
    let platform = super::load(&args.file)?;
    let spec = &platform.spec;
    let mut notes = Vec::new();
    if let Some(secret) = &spec.dynamodb.credentials_secret_ref {
        notes.push(format!("dynamodb.credentialsSecretRef ({secret}) is read in a cluster only; AWS credentials come from the default chain"));
    }
    if let Some(secret) = &spec.kafka.security_secret_ref {
        if args.kafka_properties.is_empty() {
            notes.push(format!("kafka.securitySecretRef ({secret}) is read in a cluster only; pass --kafka-property for the admin client"));
        }
    }
    let dynamodb = DynamoDbTarget {
        region: spec.dynamodb.region.clone(),
        endpoint: args
            .dynamodb_endpoint
            .clone()
            .or_else(|| spec.dynamodb.endpoint.clone()),
        credentials: None,
        timeout: args.timeout,
    };
    let kafka = KafkaTarget {
        bootstrap_servers: args
            .kafka_bootstrap_servers
            .clone()
            .unwrap_or_else(|| spec.kafka.bootstrap_servers.clone()),
        properties: parse_properties(&args.kafka_properties.join(","))
            .map_err(|e| anyhow::anyhow!("--kafka-property: {e}"))?,
        timeout: args.timeout,
    };
    let schema = args
        .database_url
        .as_deref()
        .map(|url| SchemaProvisioner::connect(url, args.timeout))
        .transpose()?;
    Ok(Targets {
        desired: Desired::from_platform(&platform),
        platform,
        tables: TableProvisioner::connect(&dynamodb).await,
        dynamodb: dynamodb.to_string(),
        topics: TopicProvisioner::connect(&kafka)?,
        kafka: kafka.to_string(),
        schema,
        notes,
    })
}

async fn compute(t: &Targets) -> Result<PlatformPlan, ProvisionError> {
    // Without a cluster, the only ownership records are a status in the file (as `kubectl get
    // -o yaml` prints it) and the tables' tags.
    let recorded = recorded_origins(t.platform.status.as_ref());
    let origin = |name: &str| recorded.get(name).copied();
    let tables = t
        .tables
        .plan(&t.desired.tables, origin, Intent::Present)
        .await?;
    let topics = t
        .topics
        .plan(&t.desired.topics, origin, Intent::Present)
        .await?;
    let mut notes = t.notes.clone();
    let unrecorded_topic = topics
        .iter()
        .flat_map(|p| &p.refusals)
        .any(|r| r.reason == "AdoptionRequired");
    if unrecorded_topic && t.platform.status.is_none() {
        notes.push("a topic carries no owner tag, and without a cluster nothing records that this file created it: a file applied more than once needs kafka.adoptExisting: true".into());
    }
    let postgres = match &t.schema {
        Some(schema) => Some(schema.plan().await?),
        None => None,
    };
    Ok(PlatformPlan::new(
        format!(
            "{}/{}",
            t.platform.namespace().unwrap_or_else(|| "default".into()),
            t.platform.name_any()
        ),
        t.dynamodb.clone(),
        tables,
        t.kafka.clone(),
        topics,
        postgres,
        notes,
    ))
}

/// `order-operator plan`.
pub async fn plan(args: PlanArgs) -> Outcome {
    let result = async {
        let targets = targets(&args.target).await?;
        Ok::<_, anyhow::Error>(compute(&targets).await?)
    }
    .await;
    let plan = match result {
        Ok(plan) => plan,
        Err(e) => return fail(&e),
    };
    match args.output {
        Output::Text => print!("{}", plan.render()),
        Output::Json => match serde_json::to_string_pretty(&plan) {
            Ok(json) => println!("{json}"),
            Err(e) => return fail(&e.into()),
        },
    }
    match (plan.refusals.is_empty(), plan.changes) {
        (false, _) => Outcome::Failed,
        (true, 0) => Outcome::Done,
        (true, _) => Outcome::ChangesPending,
    }
}

/// `order-operator apply`: plan, stop on refusals, then each step with its progress.
pub async fn apply(args: ApplyArgs) -> Outcome {
    match run_apply(&args.target).await {
        Ok(outcome) => outcome,
        Err(e) => fail(&e),
    }
}

async fn run_apply(args: &TargetArgs) -> anyhow::Result<Outcome> {
    let t = targets(args).await?;
    eprintln!("planning {} …", args.file.display());
    let plan = compute(&t).await?;
    print!("{}", plan.render());
    if !plan.refusals.is_empty() {
        for refusal in &plan.refusals {
            eprintln!("error: refused ({}): {}", refusal.reason, refusal.message);
        }
        eprintln!("error: nothing was changed");
        return Ok(Outcome::Failed);
    }
    let mut done = 0;
    for (table, table_plan) in t.desired.tables.iter().zip(&plan.tables) {
        for action in &table_plan.actions {
            let started = step(&format!("table {}: {action}", table.name));
            for note in t.tables.apply(table, action).await? {
                eprintln!("  note: {note}");
            }
            finish(started);
            done += 1;
        }
    }
    for topic_plan in &plan.topics {
        for action in &topic_plan.actions {
            let started = step(&format!("topic {}: {action}", topic_plan.name));
            t.topics.apply(&topic_plan.name, action).await?;
            finish(started);
            done += 1;
        }
    }
    if let (Some(schema), Some(migrations)) = (&t.schema, &plan.postgres) {
        if !migrations.pending.is_empty() {
            let started = step(&format!(
                "PostgreSQL: {} migration(s)",
                migrations.pending.len()
            ));
            schema.apply().await?;
            finish(started);
            done += migrations.pending.len();
        }
    }
    println!("Apply complete: {done} change(s) made.");
    Ok(Outcome::Done)
}

fn step(what: &str) -> Instant {
    eprintln!("→ {what} …");
    Instant::now()
}

fn finish(started: Instant) {
    eprintln!("  done in {:.2} s", started.elapsed().as_secs_f64());
}

fn fail(error: &anyhow::Error) -> Outcome {
    eprintln!("error: {error:#}");
    Outcome::Failed
}
