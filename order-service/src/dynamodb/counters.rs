//! `StatusCounterStore`: hourly counts and totals per status and currency, each event counted
//! exactly once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::history::{get_n, get_s, n, s};
use super::{classify, describe};
use crate::domain::OrderStatus;
use crate::outbox::DeliveryError;
use platform_resources::STATUS_COUNTERS as TABLE;

const COUNT: &str = "order_count";

/// Attribute names of the per-currency count and total: `order_count_EUR`, `total_minor_EUR`.
fn currency_attributes(currency: &str) -> (String, String) {
    (
        format!("{COUNT}_{currency}"),
        format!("total_minor_{currency}"),
    )
}

/// Dedup markers live in the counters table under a partition key no status can have.
fn marker_key(event_id: Uuid) -> String {
    format!("#event#{event_id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Counted,
    /// The event's marker was already there: an earlier delivery counted it.
    AlreadyCounted,
}

/// Orders that entered a status, per currency, over a range of hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct CounterTotal {
    pub count: i64,
    pub total_minor: i64,
}

#[derive(Clone)]
pub struct StatusCounterStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    marker_ttl: Duration,
}

impl StatusCounterStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, marker_ttl: Duration) -> Self {
        Self {
            client,
            table,
            marker_ttl,
        }
    }

    /// Counts an order entering `status` in `hour`. One transaction puts the event's marker
    /// (only if absent) and adds to the counter, so a retried event is never counted twice.
    pub async fn record(
        &self,
        event_id: Uuid,
        status: OrderStatus,
        hour: &str,
        currency: &str,
        amount_minor: i64,
    ) -> Result<Recorded, DeliveryError> {
        // A redelivery usually finds its marker: one consistent read is cheaper than a
        // transaction that fails its condition (and, on moto, a cancelled transaction restores
        // a whole-table snapshot, erasing concurrent writes; see docs/local-stack.md). The
        // condition below still settles the rare race of two deliveries at once.
        if self.marker_exists(event_id).await? {
            return Ok(Recorded::AlreadyCounted);
        }
        let expires_at = Utc::now().timestamp() + self.marker_ttl.as_secs() as i64;
        let marker = Put::builder()
            .table_name(&self.table)
            .item(TABLE.partition_key.name, s(marker_key(event_id)))
            .item(TABLE.sort_key.name, s("#"))
            .item(TABLE.ttl_attribute, n(expires_at))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", TABLE.partition_key.name)
            .build()
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let (count_attr, total_attr) = currency_attributes(currency);
        let counter = Update::builder()
            .table_name(&self.table)
            .key(TABLE.partition_key.name, s(status))
            .key(TABLE.sort_key.name, s(hour))
            .update_expression("ADD #count :one, #ccount :one, #ctotal :amount")
            .expression_attribute_names("#count", COUNT)
            .expression_attribute_names("#ccount", count_attr)
            .expression_attribute_names("#ctotal", total_attr)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":amount", n(amount_minor))
            .build()
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .transact_items(TransactWriteItem::builder().update(counter).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Recorded::Counted),
            Err(error) if marker_existed(&error) => Ok(Recorded::AlreadyCounted),
            Err(error) => Err(classify(&error)),
        }
    }

    async fn marker_exists(&self, event_id: Uuid) -> Result<bool, DeliveryError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(TABLE.partition_key.name, s(marker_key(event_id)))
            .key(TABLE.sort_key.name, s("#"))
            .consistent_read(true)
            .projection_expression("#pk")
            .expression_attribute_names("#pk", TABLE.partition_key.name)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(output.item().is_some())
    }

    /// Sums the counters of every status over the hour buckets `first..=last`
    /// (`YYYY-MM-DDTHH`), per status and currency.
    pub async fn sum(
        &self,
        first: &str,
        last: &str,
    ) -> Result<BTreeMap<OrderStatus, BTreeMap<String, CounterTotal>>, String> {
        let mut sums = BTreeMap::new();
        for status in OrderStatus::ALL {
            let mut per_currency: BTreeMap<String, CounterTotal> = BTreeMap::new();
            for totals in self.hours(status, first, last).await?.into_values() {
                for (currency, total) in totals {
                    let entry = per_currency.entry(currency).or_default();
                    entry.count += total.count;
                    entry.total_minor += total.total_minor;
                }
            }
            if !per_currency.is_empty() {
                sums.insert(status, per_currency);
            }
        }
        Ok(sums)
    }

    /// The counters of one status over the hour buckets `first..=last`, per hour and currency.
    pub async fn hours(
        &self,
        status: OrderStatus,
        first: &str,
        last: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, CounterTotal>>, String> {
        let mut hours = BTreeMap::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :status AND #sk BETWEEN :first AND :last")
                .expression_attribute_names("#pk", TABLE.partition_key.name)
                .expression_attribute_names("#sk", TABLE.sort_key.name)
                .expression_attribute_values(":status", s(status))
                .expression_attribute_values(":first", s(first))
                .expression_attribute_values(":last", s(last))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| describe(&e))?;
            for item in output.items() {
                hours.insert(
                    get_s(item, TABLE.sort_key.name)?.to_owned(),
                    per_currency(item),
                );
            }
            match output.last_evaluated_key() {
                Some(key) => start_key = Some(key.clone()),
                None => return Ok(hours),
            }
        }
    }
}

/// The per-currency counts and totals of one counter item.
fn per_currency(item: &HashMap<String, AttributeValue>) -> BTreeMap<String, CounterTotal> {
    let prefix = format!("{COUNT}_");
    item.iter()
        .filter_map(|(name, value)| {
            let currency = name.strip_prefix(&prefix)?;
            let count = value.as_n().ok()?.parse().ok()?;
            let total_minor = get_n(item, &currency_attributes(currency).1).unwrap_or(0);
            Some((currency.to_owned(), CounterTotal { count, total_minor }))
        })
        .collect()
}

/// The transaction was cancelled because the marker's condition failed.
fn marker_existed<R>(error: &SdkError<TransactWriteItemsError, R>) -> bool {
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        error.as_service_error()
    else {
        return false;
    };
    cancelled
        .cancellation_reasons()
        .first()
        .and_then(|reason| reason.code())
        .is_some_and(|code| code == "ConditionalCheckFailed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_cannot_collide_with_statuses() {
        let key = marker_key(Uuid::nil());
        assert!(OrderStatus::parse(&key).is_none());
        assert!(key.starts_with('#'));
    }
}
