//! `StatusHistoryStore`: one item per order version, newest first on read.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{classify, describe};
use crate::domain::OrderStatus;
use crate::outbox::envelope::EventEnvelope;
use crate::outbox::sink::DeliveryError;
use platform_resources::STATUS_HISTORY as TABLE;

/// One status change of an order, as stored in DynamoDB and served by the history endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub order_id: Uuid,
    pub order_version: i64,
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<OrderStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub actor: String,
    pub occurred_at: DateTime<Utc>,
    pub event_id: Uuid,
    pub currency: String,
    pub total_minor: i64,
}

impl HistoryEntry {
    pub fn from_event(event: &EventEnvelope) -> Self {
        Self {
            order_id: event.order_id,
            order_version: event.order_version,
            status: event.payload.status,
            previous_status: event.payload.previous_status,
            reason: event.payload.reason.clone(),
            actor: event.payload.actor.clone(),
            occurred_at: event.occurred_at,
            event_id: event.event_id,
            currency: event.payload.currency.clone(),
            total_minor: event.payload.total_minor,
        }
    }
}

/// A page of history, newest first; `next_before` continues below that version.
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    pub next_before: Option<i64>,
}

#[derive(Clone)]
pub struct StatusHistoryStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

impl StatusHistoryStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, retention: Duration) -> Self {
        Self {
            client,
            table,
            retention,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes the entry; a re-delivery overwrites the same item (same order and version).
    pub async fn put(&self, entry: &HistoryEntry) -> Result<(), DeliveryError> {
        let expires_at = entry.occurred_at.timestamp() + self.retention.as_secs() as i64;
        let mut item = HashMap::from([
            (TABLE.partition_key.name.to_owned(), s(entry.order_id)),
            (TABLE.sort_key.name.to_owned(), n(entry.order_version)),
            ("status".to_owned(), s(entry.status)),
            ("actor".to_owned(), s(&entry.actor)),
            (
                "occurred_at".to_owned(),
                s(entry
                    .occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            ),
            ("event_id".to_owned(), s(entry.event_id)),
            ("currency".to_owned(), s(&entry.currency)),
            ("total_minor".to_owned(), n(entry.total_minor)),
            (TABLE.ttl_attribute.to_owned(), n(expires_at)),
        ]);
        if let Some(previous) = entry.previous_status {
            item.insert("previous_status".to_owned(), s(previous));
        }
        if let Some(reason) = &entry.reason {
            item.insert("reason".to_owned(), s(reason));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// Writes the history item of an event.
    pub async fn put_event(&self, event: &EventEnvelope) -> Result<(), DeliveryError> {
        self.put(&HistoryEntry::from_event(event)).await
    }

    /// Up to `limit` entries of the order, newest first, below version `before` when given.
    pub async fn page(
        &self,
        order_id: Uuid,
        limit: i32,
        before: Option<i64>,
    ) -> Result<HistoryPage, String> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#pk", TABLE.partition_key.name)
            .expression_attribute_values(":id", s(order_id))
            .scan_index_forward(false)
            .limit(limit);
        query = match before {
            Some(version) => query
                .key_condition_expression("#pk = :id AND #sk < :before")
                .expression_attribute_names("#sk", TABLE.sort_key.name)
                .expression_attribute_values(":before", n(version)),
            None => query.key_condition_expression("#pk = :id"),
        };
        let output = query.send().await.map_err(|e| describe(&e))?;
        let entries = output
            .items()
            .iter()
            .map(parse)
            .collect::<Result<Vec<_>, _>>()?;
        let next_before = match output.last_evaluated_key() {
            Some(_) => entries.last().map(|e| e.order_version),
            None => None,
        };
        Ok(HistoryPage {
            entries,
            next_before,
        })
    }

    /// Every entry of the order, newest first.
    pub async fn all(&self, order_id: Uuid) -> Result<Vec<HistoryEntry>, String> {
        let mut entries = Vec::new();
        let mut before = None;
        loop {
            let page = self.page(order_id, 100, before).await?;
            entries.extend(page.entries);
            match page.next_before {
                Some(version) => before = Some(version),
                None => return Ok(entries),
            }
        }
    }

    /// Readiness: the table exists and answers.
    pub async fn check(&self) -> Result<(), String> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| describe(&e))
    }
}

pub(super) fn s(value: impl ToString) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn get_s<'a>(
    item: &'a HashMap<String, AttributeValue>,
    name: &str,
) -> Result<&'a str, String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| format!("item has no string attribute `{name}`"))
}

pub(super) fn get_n(item: &HashMap<String, AttributeValue>, name: &str) -> Result<i64, String> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("item has no integer attribute `{name}`"))
}

fn status(value: &str) -> Result<OrderStatus, String> {
    OrderStatus::parse(value).ok_or_else(|| format!("unknown status `{value}` in history item"))
}

fn parse(item: &HashMap<String, AttributeValue>) -> Result<HistoryEntry, String> {
    let uuid = |name| {
        get_s(item, name).and_then(|v| v.parse::<Uuid>().map_err(|e| format!("{name}: {e}")))
    };
    Ok(HistoryEntry {
        order_id: uuid(TABLE.partition_key.name)?,
        order_version: get_n(item, TABLE.sort_key.name)?,
        status: status(get_s(item, "status")?)?,
        previous_status: item
            .get("previous_status")
            .and_then(|v| v.as_s().ok())
            .map(|v| status(v))
            .transpose()?,
        reason: item.get("reason").and_then(|v| v.as_s().ok()).cloned(),
        actor: get_s(item, "actor")?.to_owned(),
        occurred_at: get_s(item, "occurred_at")?
            .parse()
            .map_err(|e| format!("occurred_at: {e}"))?,
        event_id: uuid("event_id")?,
        currency: get_s(item, "currency")?.to_owned(),
        total_minor: get_n(item, "total_minor")?,
    })
}
