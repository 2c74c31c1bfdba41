//! The bounds of a report: its time range and period length. Reports read a bounded slice of
//! the orders so that no request can ask the database for an unbounded scan.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Rows one report may return; more is refused with a hint to narrow it.
pub const MAX_REPORT_ROWS: usize = 10_000;

/// The length of a report's periods (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    #[default]
    Day,
}

impl Granularity {
    /// The `date_trunc` field.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The longest range a report of this granularity covers: 744 hours or 366 days.
    pub fn max_span(self) -> Duration {
        match self {
            Self::Hour => Duration::days(31),
            Self::Day => Duration::days(366),
        }
    }
}

/// `[from, to)`, non-empty and at most a given span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRange {
    #[error("`to` must be after `from`")]
    Empty,
    #[error("the range may span at most {max_days} days{hint}")]
    TooLong { max_days: i64, hint: &'static str },
}

impl ReportRange {
    pub fn new(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_span: Duration,
    ) -> Result<Self, InvalidRange> {
        if to <= from {
            return Err(InvalidRange::Empty);
        }
        if to - from > max_span {
            return Err(InvalidRange::TooLong {
                max_days: max_span.num_days(),
                hint: "",
            });
        }
        Ok(Self { from, to })
    }

    /// A range for periods of `granularity`.
    pub fn for_periods(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
    ) -> Result<Self, InvalidRange> {
        Self::new(from, to, granularity.max_span()).map_err(|e| match (e, granularity) {
            (InvalidRange::TooLong { max_days, .. }, Granularity::Hour) => InvalidRange::TooLong {
                max_days,
                hint: " with hourly periods; use granularity=day for longer ranges",
            },
            (e, _) => e,
        })
    }
}

/// Orders created in one period, in one status and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct SalesRow {
    /// Start of the period (UTC).
    pub period_start: DateTime<Utc>,
    /// The orders' current status.
    #[sqlx(try_from = "String")]
    pub status: crate::domain::OrderStatus,
    /// ISO 4217 code.
    pub currency: String,
    pub orders: i64,
    /// Sum of the orders' totals, in minor units of `currency`.
    pub revenue_minor: i64,
}

/// One SKU's sales in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct ProductSales {
    pub sku: String,
    /// The item name on the most recent order line (names may change over time).
    pub name: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Units sold.
    pub quantity: i64,
    /// Sum of the lines' totals, in minor units of `currency`.
    pub revenue_minor: i64,
    /// Orders with this SKU.
    pub orders: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn a_range_must_be_non_empty() {
        assert_eq!(
            ReportRange::new(t(2, 0), t(2, 0), Duration::days(1)),
            Err(InvalidRange::Empty)
        );
        assert_eq!(
            ReportRange::new(t(2, 0), t(1, 0), Duration::days(1)),
            Err(InvalidRange::Empty)
        );
        assert!(ReportRange::new(t(1, 0), t(1, 1), Duration::days(1)).is_ok());
    }

    #[test]
    fn a_range_may_span_exactly_the_maximum_and_no_more() {
        assert!(ReportRange::new(t(1, 0), t(2, 0), Duration::days(1)).is_ok());
        assert_eq!(
            ReportRange::new(t(1, 0), t(2, 1), Duration::days(1)),
            Err(InvalidRange::TooLong {
                max_days: 1,
                hint: ""
            })
        );
    }

    #[test]
    fn hourly_reports_cover_31_days_and_daily_ones_a_year() {
        assert_eq!(Granularity::Hour.max_span(), Duration::days(31));
        assert_eq!(Granularity::Day.max_span(), Duration::days(366));
        assert!(
            ReportRange::for_periods(t(1, 0), t(1, 0) + Duration::days(31), Granularity::Hour)
                .is_ok()
        );
        let long =
            ReportRange::for_periods(t(1, 0), t(1, 0) + Duration::days(32), Granularity::Hour)
                .unwrap_err();
        assert!(long.to_string().contains("granularity=day"), "{long}");
        assert!(
            ReportRange::for_periods(t(1, 0), t(1, 0) + Duration::days(32), Granularity::Day)
                .is_ok()
        );
        let year =
            ReportRange::for_periods(t(1, 0), t(1, 0) + Duration::days(367), Granularity::Day)
                .unwrap_err();
        assert_eq!(year.to_string(), "the range may span at most 366 days");
    }

    #[test]
    fn granularities_truncate_to_their_unit() {
        assert_eq!(Granularity::Hour.unit(), "hour");
        assert_eq!(Granularity::Day.unit(), "day");
        assert_eq!(Granularity::default(), Granularity::Day);
    }
}
