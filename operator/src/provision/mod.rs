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

pub mod desired;
pub mod dynamodb;
mod error;
pub mod kafka;
pub mod migrations;

use serde::Serialize;

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

/// Whether the resources should exist (`Present`) or be removed (`Absent`, on deletion with
/// `deletionPolicy: Delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Present,
    Absent,
}
