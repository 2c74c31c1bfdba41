//! The controller's errors: transient failures that go through backoff. Each has one stable
//! CamelCase reason, used as the metric label and the Event reason.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {name}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {what}")]
    Observe {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {what}")]
    Delete {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status")]
    Status(#[source] kube::Error),
    #[error("finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the OrderPlatform has no namespace")]
    MissingNamespace,
    #[error("deleting tables and topics (deletionPolicy Delete): {message}")]
    Cleanup {
        /// The failed call's own reason (`CredentialsUnavailable`, `DynamoDbCallFailed`, ...).
        reason: &'static str,
        message: String,
    },
}

impl Error {
    /// The finalizer helper wraps what `apply` and `cleanup` returned: unwrap it, so each
    /// failure keeps its own reason (metric label, log) rather than all being `FinalizerFailed`.
    pub fn from_finalizer(error: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as Finalizer;
        match error {
            Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner,
            other => Self::Finalizer(Box::new(other)),
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "ApplyFailed",
            Self::Observe { .. } => "ObserveFailed",
            Self::Delete { .. } => "DeleteFailed",
            Self::Status(_) => "StatusUpdateFailed",
            Self::Finalizer(_) => "FinalizerFailed",
            Self::MissingNamespace => "MissingNamespace",
            Self::Cleanup { reason, .. } => reason,
        }
    }
}
