//! The external resources of the order platform, as plain data: DynamoDB table key schemas and
//! TTL attributes, table name suffixes, the events topic and its defaults.
//!
//! The service (which writes these resources) and the operator (which provisions them) both
//! compile this crate, so a key schema or a name cannot drift between them. No SDKs here.
//! `sampling` is shared the same way: how both read the trace sampling variables.

pub mod sampling;

/// A DynamoDB scalar attribute type, as used in key schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    /// `S`
    String,
    /// `N`
    Number,
}

impl AttributeType {
    /// The DynamoDB type code (`S`, `N`).
    pub fn code(self) -> &'static str {
        match self {
            Self::String => "S",
            Self::Number => "N",
        }
    }
}

/// One key attribute of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttribute {
    pub name: &'static str,
    pub attribute_type: AttributeType,
}

/// A table the platform needs: its name is `<prefix>-<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDefinition {
    pub suffix: &'static str,
    pub partition_key: KeyAttribute,
    pub sort_key: KeyAttribute,
    /// Epoch-seconds attribute that DynamoDB's TTL expires items by.
    pub ttl_attribute: &'static str,
}

impl TableDefinition {
    pub fn table_name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.suffix)
    }
}

/// Status history: one item per order version, so a re-delivered event overwrites its item.
pub const STATUS_HISTORY: TableDefinition = TableDefinition {
    suffix: "status-history",
    partition_key: KeyAttribute {
        name: "order_id",
        attribute_type: AttributeType::String,
    },
    sort_key: KeyAttribute {
        name: "order_version",
        attribute_type: AttributeType::Number,
    },
    ttl_attribute: "expires_at",
};

/// Hourly status counters, and the dedup markers that make each event count once (markers
/// expire by TTL; counter items carry no TTL attribute and never expire).
pub const STATUS_COUNTERS: TableDefinition = TableDefinition {
    suffix: "status-counters",
    partition_key: KeyAttribute {
        name: "status",
        attribute_type: AttributeType::String,
    },
    sort_key: KeyAttribute {
        name: "hour",
        attribute_type: AttributeType::String,
    },
    ttl_attribute: "expires_at",
};

/// Every table, in creation order.
pub const TABLES: [TableDefinition; 2] = [STATUS_HISTORY, STATUS_COUNTERS];

/// Table prefix when none is configured.
pub const DEFAULT_TABLE_PREFIX: &str = "orders";

/// The topic order events go to when none is configured. Keyed by order id.
pub const DEFAULT_EVENTS_TOPIC: &str = "orders.events";

/// Partitions of a new events topic when the spec does not say.
pub const DEFAULT_TOPIC_PARTITIONS: i32 = 3;

/// Checks a table prefix: DynamoDB allows `[A-Za-z0-9_.-]` and 3 to 255 characters per table
/// name; the prefix must leave room for the longest suffix.
pub fn validate_table_prefix(prefix: &str) -> Result<(), String> {
    let longest_suffix = TABLES.iter().map(|t| t.suffix.len() + 1).max().unwrap_or(0);
    if prefix.is_empty() || prefix.len() + longest_suffix > 255 {
        return Err(format!(
            "table prefix must be 1 to {} characters",
            255 - longest_suffix
        ));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "table prefix `{prefix}` may only hold letters, digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

/// Checks a Kafka topic name: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err(format!(
            "topic name `{name}` must be 1 to 249 characters and not `.` or `..`"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "topic name `{name}` may only hold letters, digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_come_from_the_prefix() {
        assert_eq!(STATUS_HISTORY.table_name("shop"), "shop-status-history");
        assert_eq!(STATUS_COUNTERS.table_name("shop"), "shop-status-counters");
    }

    #[test]
    fn prefixes_and_topics_are_validated() {
        assert!(validate_table_prefix("orders-prod_1.eu").is_ok());
        assert!(validate_table_prefix("").is_err());
        assert!(validate_table_prefix("bad/prefix").is_err());
        assert!(validate_table_prefix(&"p".repeat(240)).is_err());
        assert!(validate_topic_name("orders.events").is_ok());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("with space").is_err());
    }

    #[test]
    fn history_keys_make_redelivery_an_overwrite() {
        // One item per (order, version): the relay's at-least-once delivery stays idempotent.
        assert_eq!(STATUS_HISTORY.partition_key.name, "order_id");
        assert_eq!(
            STATUS_HISTORY.sort_key.attribute_type,
            AttributeType::Number
        );
    }
}
