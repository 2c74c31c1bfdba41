//! The platform's external resources: DynamoDB tables, Kafka topics and (from the CLI) the
//! PostgreSQL schema. Each provisioner observes the actual state, plans with a pure function
//! (desired vs actual → actions and refusals), then applies the plan.
//!
//! A refusal is an outcome, not an error: a change that would lose data or break ordering is
//! reported with a stable reason and nothing is touched. Errors are calls that failed (an
//! unreachable endpoint, a timeout); they are worth retrying.
//!
//! The controller (`controller/external.rs`) and the `plan`/`apply` commands (`cli/`) share
//! this module; it knows nothing about Kubernetes.

mod calls;
pub mod desired;
pub mod dynamodb;
mod error;
pub mod kafka;
pub mod migrations;

use serde::Serialize;

pub use calls::CallMetrics;
pub use desired::Desired;
pub use error::{error_chain, ProvisionError};

/// A change the provisioner will not make, with a stable CamelCase reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The table, topic or database concerned.
    pub resource: String,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(resource: &str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            resource: resource.to_owned(),
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.resource, self.message, self.reason)
    }
}

/// How a platform came to hold a table or topic. Only what a platform created or explicitly
/// adopted is ever deleted with it (`deletionPolicy: Delete`). Tables carry it as a tag
/// ([`dynamodb::ORIGIN_TAG`]); topics have no tags, so the platform's status records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Origin {
    /// The platform created it.
    Created,
    /// It existed, belonged to no platform, and the spec allowed adopting it (`adoptExisting`).
    Adopted,
}

impl Origin {
    /// The spelling in status and tags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Adopted => "Adopted",
        }
    }

    /// Reads the spelling back; anything else is not a record.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "Created" => Some(Self::Created),
            "Adopted" => Some(Self::Adopted),
            _ => None,
        }
    }
}

/// Whether the resources should exist (`Present`) or be removed (`Absent`, on deletion with
/// `deletionPolicy: Delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Present,
    Absent,
}
