//! `StatusCounterStore`: hourly counts and totals per status and currency, each event counted
//! exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::history::{get_n, get_s, n, s};
use super::{classify, describe};
use crate::domain::OrderStatus;
use crate::outbox::sink::DeliveryError;
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

    /// Counts one event: an order entering a status in an hour. One transaction puts the
    /// event's marker (only if absent) and adds to the counter, so a retried event is never
    /// counted twice.
    pub async fn record(&self, event: &CountedEvent) -> Result<Recorded, DeliveryError> {
        // A redelivery usually finds its marker: a consistent read is cheaper than a
        // transaction that fails its condition (and, on moto, a cancelled transaction restores
        // a whole-table snapshot, erasing concurrent writes; see docs/local-stack.md). The
        // condition still settles the rare race of two deliveries at once.
        if self
            .markers_present(std::iter::once(event.event_id))
            .await?
            .contains(&event.event_id)
        {
            return Ok(Recorded::AlreadyCounted);
        }
        match self.transact(&[event]).await {
            Ok(()) => Ok(Recorded::Counted),
            Err(Cancelled::Marker) => Ok(Recorded::AlreadyCounted),
            Err(Cancelled::Other(error)) => Err(error),
        }
    }

    /// Counts many events, exactly once each: one consistent `BatchGetItem` finds those
    /// already counted, and the rest go in transactions of up to 100 items, each holding the
    /// events' markers and one summed `ADD` per counter item. A chunk cancelled by a marker
    /// (two deliveries of one event racing) falls back to [`Self::record`] per event.
    /// Returns one result per input, in order.
    pub async fn record_many(
        &self,
        events: &[CountedEvent],
    ) -> Vec<Result<Recorded, DeliveryError>> {
        let counted = match self
            .markers_present(events.iter().map(|e| e.event_id))
            .await
        {
            Ok(counted) => counted,
            Err(error) => return events.iter().map(|_| Err(error.clone())).collect(),
        };
        let mut results: Vec<Option<Result<Recorded, DeliveryError>>> = events
            .iter()
            .map(|e| {
                counted
                    .contains(&e.event_id)
                    .then_some(Ok(Recorded::AlreadyCounted))
            })
            .collect();
        let pending: Vec<usize> = (0..events.len())
            .filter(|i| results[*i].is_none())
            .collect();
        for chunk in chunk_by_items(&pending, events) {
            let chunk_events: Vec<&CountedEvent> = chunk.iter().map(|i| &events[*i]).collect();
            let outcome = match self.transact(&chunk_events).await {
                Ok(()) => chunk_events.iter().map(|_| Ok(Recorded::Counted)).collect(),
                Err(Cancelled::Marker) => {
                    let mut each = Vec::new();
                    for e in &chunk_events {
                        each.push(self.record(e).await);
                    }
                    each
                }
                Err(Cancelled::Other(error)) => chunk_events
                    .iter()
                    .map(|_| Err(error.clone()))
                    .collect::<Vec<_>>(),
            };
            for (i, result) in chunk.iter().zip(outcome) {
                results[*i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(DeliveryError::Transient("not attempted".into()))))
            .collect()
    }

    /// The events (of these) whose markers exist, by consistent reads of up to 100 keys.
    async fn markers_present(
        &self,
        ids: impl Iterator<Item = Uuid>,
    ) -> Result<HashSet<Uuid>, DeliveryError> {
        let ids: Vec<Uuid> = ids.collect();
        let mut present = HashSet::new();
        for chunk in ids.chunks(100) {
            let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|id| {
                    HashMap::from([
                        (TABLE.partition_key.name.to_owned(), s(marker_key(*id))),
                        (TABLE.sort_key.name.to_owned(), s("#")),
                    ])
                })
                .collect();
            // Unprocessed keys (throttling) are asked for again.
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                for item in output
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let key =
                        get_s(item, TABLE.partition_key.name).map_err(DeliveryError::Transient)?;
                    if let Some(id) = key.strip_prefix("#event#").and_then(|id| id.parse().ok()) {
                        present.insert(id);
                    }
                }
                keys = output
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
            }
        }
        Ok(present)
    }

    /// One transaction: every event's marker, and one summed `ADD` per counter item.
    async fn transact(&self, events: &[&CountedEvent]) -> Result<(), Cancelled> {
        let expires_at = Utc::now().timestamp() + self.marker_ttl.as_secs() as i64;
        let mut items = Vec::new();
        for e in events {
            items.push(
                TransactWriteItem::builder()
                    .put(
                        self.marker(e.event_id, expires_at)
                            .map_err(Cancelled::Other)?,
                    )
                    .build(),
            );
        }
        let mut sums: BTreeMap<(OrderStatus, &str), CurrencySums> = BTreeMap::new();
        for e in events {
            let per_currency = sums.entry((e.status, e.hour.as_str())).or_default();
            let total = per_currency.entry(e.currency.as_str()).or_default();
            total.0 += 1;
            total.1 += e.amount_minor;
        }
        for ((status, hour), per_currency) in sums {
            let update = counter_update(&self.table, status, hour, &per_currency)
                .map_err(Cancelled::Other)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if marker_existed(&error) => Err(Cancelled::Marker),
            Err(error) => Err(Cancelled::Other(classify(&error))),
        }
    }

    fn marker(&self, event_id: Uuid, expires_at: i64) -> Result<Put, DeliveryError> {
        Put::builder()
            .table_name(&self.table)
            .item(TABLE.partition_key.name, s(marker_key(event_id)))
            .item(TABLE.sort_key.name, s("#"))
            .item(TABLE.ttl_attribute, n(expires_at))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", TABLE.partition_key.name)
            .build()
            .map_err(|e| DeliveryError::Permanent(e.to_string()))
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

/// One event as the counters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedEvent {
    pub event_id: Uuid,
    pub status: OrderStatus,
    pub hour: String,
    pub currency: String,
    pub amount_minor: i64,
}

/// Per currency: orders counted and their total in minor units.
type CurrencySums<'a> = BTreeMap<&'a str, (i64, i64)>;

enum Cancelled {
    /// A marker's condition failed: some event of the chunk was counted meanwhile.
    Marker,
    Other(DeliveryError),
}

/// DynamoDB allows 100 items per transaction; a chunk needs one per event plus one per
/// distinct counter item, so chunks are cut at 100 items counted that way.
fn chunk_by_items(indexes: &[usize], events: &[CountedEvent]) -> Vec<Vec<usize>> {
    const MAX_ITEMS: usize = 100;
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut counters: HashSet<(OrderStatus, &str)> = HashSet::new();
    for &i in indexes {
        let key = (events[i].status, events[i].hour.as_str());
        let extra = usize::from(!counters.contains(&key));
        if current.len() + counters.len() + 1 + extra > MAX_ITEMS {
            chunks.push(std::mem::take(&mut current));
            counters.clear();
        }
        counters.insert(key);
        current.push(i);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// `ADD` of counts and totals, per currency, to one counter item.
fn counter_update(
    table: &str,
    status: OrderStatus,
    hour: &str,
    per_currency: &BTreeMap<&str, (i64, i64)>,
) -> Result<Update, DeliveryError> {
    let mut expression = vec!["#count :count".to_owned()];
    let mut update = Update::builder()
        .table_name(table)
        .key(TABLE.partition_key.name, s(status))
        .key(TABLE.sort_key.name, s(hour))
        .expression_attribute_names("#count", COUNT)
        .expression_attribute_values(":count", n(per_currency.values().map(|(c, _)| c).sum()));
    for (i, (currency, (count, total))) in per_currency.iter().enumerate() {
        let (count_attr, total_attr) = currency_attributes(currency);
        expression.push(format!("#c{i} :c{i}, #t{i} :t{i}"));
        update = update
            .expression_attribute_names(format!("#c{i}"), count_attr)
            .expression_attribute_names(format!("#t{i}"), total_attr)
            .expression_attribute_values(format!(":c{i}"), n(*count))
            .expression_attribute_values(format!(":t{i}"), n(*total));
    }
    update
        .update_expression(format!("ADD {}", expression.join(", ")))
        .build()
        .map_err(|e| DeliveryError::Permanent(e.to_string()))
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

    fn event(status: OrderStatus, hour: &str) -> CountedEvent {
        CountedEvent {
            event_id: Uuid::now_v7(),
            status,
            hour: hour.into(),
            currency: "EUR".into(),
            amount_minor: 1,
        }
    }

    #[test]
    fn chunks_stay_within_100_transaction_items() {
        let mut events: Vec<CountedEvent> = (0..150)
            .map(|_| event(OrderStatus::Pending, "2026-11-22T04"))
            .collect();
        events.extend((0..10).map(|i| event(OrderStatus::Confirmed, &format!("2026-11-22T0{i}"))));
        let indexes: Vec<usize> = (0..events.len()).collect();
        let chunks = chunk_by_items(&indexes, &events);
        let mut seen = Vec::new();
        for chunk in &chunks {
            let counters: HashSet<_> = chunk
                .iter()
                .map(|i| (events[*i].status, events[*i].hour.clone()))
                .collect();
            assert!(
                chunk.len() + counters.len() <= 100,
                "{} events + {} counters",
                chunk.len(),
                counters.len()
            );
            seen.extend(chunk.iter().copied());
        }
        assert_eq!(seen, indexes, "every event once, in order");
        assert_eq!(
            chunks[0].len(),
            99,
            "a full chunk: 99 markers and one counter"
        );
    }

    #[test]
    fn markers_cannot_collide_with_statuses() {
        let key = marker_key(Uuid::nil());
        assert!(OrderStatus::parse(&key).is_none());
        assert!(key.starts_with('#'));
    }
}
