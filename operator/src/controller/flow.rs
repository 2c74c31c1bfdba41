//! Reads the service's `/flowz` (its outbox per sink, its stuck sagas) through the platform's
//! Service, for the `DataFlowing` condition. Only this reads; judging the reading is pure
//! (`status::flow_verdict`).

use std::time::Duration;

use kube::ResourceExt;
use serde::Deserialize;

use crate::crd::OrderPlatform;

/// The body of the service's `/flowz`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FlowReport {
    #[serde(default)]
    pub sinks: Vec<SinkReport>,
    #[serde(default)]
    pub sagas_stuck: i64,
}

/// One sink's outbox, as `/flowz` reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SinkReport {
    pub sink: String,
    pub pending: i64,
    pub parked: i64,
    pub oldest_pending_seconds: Option<f64>,
}

/// What asking the service gave.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowReading {
    Read(FlowReport),
    /// The call failed (refused, timed out, a non-2xx answer, a body that is not the
    /// report): what happened, without the error chain of the HTTP client.
    Unreachable(String),
    /// No pod is available to ask.
    NotServing,
}

/// Where the operator reaches each platform's service.
#[derive(Debug, Clone)]
pub struct ServiceAddress {
    /// Every platform's service at this base URL (an operator run outside the cluster);
    /// `None`: the platform's Service by its in-cluster name.
    pub override_url: Option<String>,
    pub timeout: Duration,
}

impl Default for ServiceAddress {
    fn default() -> Self {
        Self {
            override_url: None,
            timeout: Duration::from_secs(3),
        }
    }
}

impl ServiceAddress {
    /// The `/flowz` URL of `platform`'s service.
    pub fn flowz_url(&self, platform: &OrderPlatform) -> String {
        let base = match &self.override_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!(
                "http://{}.{}.svc:{}",
                platform.name_any(),
                platform.namespace().unwrap_or_default(),
                platform.spec.service.port
            ),
        };
        format!("{base}/flowz")
    }
}

/// Asks the platform's service for its data flow, bounded by the address's timeout.
pub async fn read(
    http: &reqwest::Client,
    address: &ServiceAddress,
    platform: &OrderPlatform,
) -> FlowReading {
    let url = address.flowz_url(platform);
    let call = async {
        let response = http
            .get(&url)
            .timeout(address.timeout)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        response
            .json::<FlowReport>()
            .await
            .map_err(|_| format!("GET {url} did not answer a data flow report"))
    };
    match call.await {
        Ok(report) => FlowReading::Read(report),
        Err(problem) => {
            tracing::debug!(platform = %platform.name_any(), %problem, "reading the data flow failed");
            FlowReading::Unreachable(problem)
        }
    }
}

fn describe(error: &reqwest::Error) -> String {
    let url = error
        .url()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_default();
    if error.is_timeout() {
        format!("GET {url} timed out")
    } else if error.is_connect() {
        format!("GET {url}: could not connect")
    } else {
        format!("GET {url} failed")
    }
}
