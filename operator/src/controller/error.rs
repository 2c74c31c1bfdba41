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
    #[error("deleting tables and topics (deletionPolicy Delete): {0}")]
    Cleanup(String),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "ApplyFailed",
            Self::Observe { .. } => "ObserveFailed",
            Self::Delete { .. } => "DeleteFailed",
            Self::Status(_) => "StatusUpdateFailed",
            Self::Finalizer(_) => "FinalizerFailed",
            Self::MissingNamespace => "MissingNamespace",
            Self::Cleanup(_) => "CleanupFailed",
        }
    }
}
