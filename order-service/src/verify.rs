//! `order-service verify-projections`: does DynamoDB agree with PostgreSQL?
//!
//! For every order changed within the window: its newest history item must carry the order's
//! status and version. For every hour bucket that starts inside the window: the counters must
//! equal what the history items of those orders add up to (every event in such an hour belongs
//! to an order changed inside the window, so the sum is complete). Orders with deliveries not
//! yet made are skipped and counted, not reported as drift.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::Context;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use clap::Args;
use uuid::Uuid;

use crate::db::{self, DatabaseConfig};
use crate::domain::OrderStatus;
use crate::dynamodb::{
    CounterTotal, DynamoDbConfig, HistoryEntry, StatusCounterStore, StatusHistoryStore,
};
use crate::outbox::envelope::hour_bucket;
use crate::outbox::sink::Sink;

#[derive(Debug, Clone, Args)]
pub struct VerifyConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub dynamodb: DynamoDbConfig,
    /// Check orders changed within this long (e.g. `1h`, `30m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: std::time::Duration,
}

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    Order {
        id: Uuid,
        postgres: (OrderStatus, i64),
        dynamodb: Option<(OrderStatus, i64)>,
    },
    Counter {
        status: OrderStatus,
        hour: String,
        currency: String,
        expected: CounterTotal,
        found: CounterTotal,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Order { id, postgres, dynamodb } => {
                write!(f, "order {id}: PostgreSQL {} v{}, DynamoDB history ", postgres.0, postgres.1)?;
                match dynamodb {
                    Some((status, version)) => write!(f, "{status} v{version}"),
                    None => f.write_str("has no item"),
                }
            }
            Self::Counter { status, hour, currency, expected, found } => write!(
                f,
                "counter {status} {hour} {currency}: history adds up to {} orders / {} minor units, counter holds {} / {}",
                expected.count, expected.total_minor, found.count, found.total_minor
            ),
        }
    }
}

/// Compares an order with its newest history item.
pub fn compare_order(
    id: Uuid,
    postgres: (OrderStatus, i64),
    newest: Option<&HistoryEntry>,
) -> Option<Drift> {
    let dynamodb = newest.map(|e| (e.status, e.order_version));
    (dynamodb != Some(postgres)).then_some(Drift::Order {
        id,
        postgres,
        dynamodb,
    })
}

type CounterKey = (OrderStatus, String, String);

/// What the counters should hold for the hours from `first_hour` on, from history items.
pub fn expected_counters<'a>(
    entries: impl IntoIterator<Item = &'a HistoryEntry>,
    first_hour: &str,
) -> BTreeMap<CounterKey, CounterTotal> {
    let mut expected: BTreeMap<CounterKey, CounterTotal> = BTreeMap::new();
    for entry in entries {
        let hour = hour_bucket(entry.occurred_at);
        if hour.as_str() < first_hour {
            continue;
        }
        let total = expected
            .entry((entry.status, hour, entry.currency.clone()))
            .or_default();
        total.count += 1;
        total.total_minor += entry.total_minor;
    }
    expected
}

/// Every key where expected and found differ (a key missing on one side counts as zero).
pub fn compare_counters(
    expected: &BTreeMap<CounterKey, CounterTotal>,
    found: &BTreeMap<CounterKey, CounterTotal>,
) -> Vec<Drift> {
    let keys: BTreeSet<&CounterKey> = expected.keys().chain(found.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let expected = expected.get(key).cloned().unwrap_or_default();
            let found = found.get(key).cloned().unwrap_or_default();
            (expected != found).then(|| Drift::Counter {
                status: key.0,
                hour: key.1.clone(),
                currency: key.2.clone(),
                expected,
                found,
            })
        })
        .collect()
}

/// The first hour bucket that starts at or after `start`.
pub fn first_full_hour(start: DateTime<Utc>) -> DateTime<Utc> {
    let floor = start.duration_trunc(TimeDelta::hours(1)).unwrap_or(start);
    if floor == start {
        floor
    } else {
        floor + TimeDelta::hours(1)
    }
}

pub struct Report {
    pub orders_checked: usize,
    pub orders_undelivered: usize,
    /// The hour buckets compared, when counters were compared.
    pub hours: Option<(String, String)>,
    pub drifts: Vec<Drift>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} orders ({} with deliveries not yet made, skipped)",
            self.orders_checked, self.orders_undelivered
        )?;
        match &self.hours {
            Some((first, last)) => writeln!(f, "compared counters for hours {first} to {last}")?,
            None => writeln!(
                f,
                "counters not compared (no whole hour in the window, or deliveries not yet made)"
            )?,
        }
        for drift in &self.drifts {
            writeln!(f, "drift: {drift}")?;
        }
        if self.drifts.is_empty() {
            writeln!(f, "no drift")?;
        } else {
            writeln!(f, "{} drifts", self.drifts.len())?;
        }
        Ok(())
    }
}

pub async fn run(config: &VerifyConfig) -> anyhow::Result<Report> {
    let pool = db::pool(
        config.database.database_url.clone(),
        2,
        config.database.db_acquire_timeout,
    );
    let client = config.dynamodb.client().await;
    let history = StatusHistoryStore::new(
        client.clone(),
        config.dynamodb.history_table(),
        std::time::Duration::ZERO,
    );
    let counters = StatusCounterStore::new(
        client,
        config.dynamodb.counters_table(),
        std::time::Duration::ZERO,
    );
    let now = Utc::now();
    let since = TimeDelta::from_std(config.since).context("--since is too long")?;
    let window_start = now - since;

    let mut conn = pool.acquire().await.context("connecting to PostgreSQL")?;
    let orders = db::orders::changed_since(&mut conn, window_start).await?;
    let mut report = Report {
        orders_checked: 0,
        orders_undelivered: 0,
        hours: None,
        drifts: Vec::new(),
    };
    let mut entries = Vec::new();
    for (id, status, version) in orders {
        if db::outbox::has_pending(&mut conn, Sink::DynamoDb, id).await? {
            report.orders_undelivered += 1;
            continue;
        }
        report.orders_checked += 1;
        let order_entries = history.all(id).await.map_err(anyhow::Error::msg)?;
        report
            .drifts
            .extend(compare_order(id, (status, version), order_entries.first()));
        entries.extend(order_entries);
    }

    let first = first_full_hour(window_start);
    if report.orders_undelivered == 0 && first <= now {
        let (first_hour, last_hour) = (hour_bucket(first), hour_bucket(now));
        let expected = expected_counters(&entries, &first_hour);
        let mut found = BTreeMap::new();
        for status in OrderStatus::ALL {
            for (hour, per_currency) in counters
                .hours(status, &first_hour, &last_hour)
                .await
                .map_err(anyhow::Error::msg)?
            {
                for (currency, total) in per_currency {
                    found.insert((status, hour.clone(), currency), total);
                }
            }
        }
        report.drifts.extend(compare_counters(&expected, &found));
        report.hours = Some((first_hour, last_hour));
    }
    // `close` waits for every checked-out connection.
    drop(conn);
    pool.close().await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: OrderStatus, version: i64, at: &str, total_minor: i64) -> HistoryEntry {
        HistoryEntry {
            order_id: Uuid::nil(),
            order_version: version,
            status,
            previous_status: None,
            reason: None,
            actor: "api".into(),
            occurred_at: at.parse().unwrap(),
            event_id: Uuid::now_v7(),
            currency: "EUR".into(),
            total_minor,
        }
    }

    #[test]
    fn an_order_matches_only_its_newest_status_and_version() {
        let newest = entry(OrderStatus::Confirmed, 2, "2026-11-22T04:10:00Z", 100);
        assert_eq!(
            compare_order(Uuid::nil(), (OrderStatus::Confirmed, 2), Some(&newest)),
            None
        );
        assert!(compare_order(Uuid::nil(), (OrderStatus::Shipped, 3), Some(&newest)).is_some());
        assert!(compare_order(Uuid::nil(), (OrderStatus::Pending, 1), None).is_some());
    }

    #[test]
    fn counters_are_summed_from_history_from_the_first_whole_hour() {
        let entries = [
            entry(OrderStatus::Pending, 1, "2026-11-22T02:59:00Z", 100),
            entry(OrderStatus::Pending, 1, "2026-11-22T03:01:00Z", 100),
            entry(OrderStatus::Pending, 1, "2026-11-22T03:20:00Z", 50),
            entry(OrderStatus::Confirmed, 2, "2026-11-22T04:00:00Z", 50),
        ];
        let expected = expected_counters(&entries, "2026-11-22T03");
        assert_eq!(expected.len(), 2, "the 02 hour is outside");
        let pending = &expected[&(OrderStatus::Pending, "2026-11-22T03".into(), "EUR".into())];
        assert_eq!((pending.count, pending.total_minor), (2, 150));

        let mut found = expected.clone();
        assert!(compare_counters(&expected, &found).is_empty());
        found.insert(
            (OrderStatus::Shipped, "2026-11-22T04".into(), "EUR".into()),
            CounterTotal {
                count: 1,
                total_minor: 9,
            },
        );
        if let Some(total) =
            found.get_mut(&(OrderStatus::Pending, "2026-11-22T03".into(), "EUR".into()))
        {
            total.count = 3;
        }
        assert_eq!(compare_counters(&expected, &found).len(), 2);
    }

    #[test]
    fn the_first_whole_hour_starts_at_or_after_the_window() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            first_full_hour(at("2026-11-22T02:40:00Z")),
            at("2026-11-22T03:00:00Z")
        );
        assert_eq!(
            first_full_hour(at("2026-11-22T03:00:00Z")),
            at("2026-11-22T03:00:00Z")
        );
    }
}
