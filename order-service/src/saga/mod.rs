//! The order fulfilment saga: after an order is created, validate the customer, reserve
//! inventory, authorize the payment and confirm the order; when a step fails for good, undo
//! what was done in reverse order and cancel the order with a readable reason.
//!
//! State lives in PostgreSQL (`sagas`), so any replica continues any saga and a crash resumes
//! where it stopped. Every participant call carries an idempotency key per order and step.
//! `machine.rs` is the pure state machine; `participants.rs` the contracts
//! (docs/participants.md); `client.rs` timeouts, retries, breaker and bulkhead; `worker.rs` the
//! claim-and-run loop.

pub mod breaker;
pub mod cli;
pub mod client;
pub mod machine;
pub mod participants;
pub mod tls;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use reqwest::Url;

use client::{CallPolicy, Participant};
use participants::Participants;

use crate::metrics::Metrics;

/// The participants and how the saga runs. Without the three URLs the saga is off and the
/// status API drives the lifecycle alone.
#[derive(Debug, Clone, Args)]
pub struct SagaConfig {
    /// Customer service base URL, e.g. `http://customers:8080/` or `https://customers:8443/`.
    /// With the inventory and payment URLs it turns the saga on.
    #[arg(long, env = "ORDER_SERVICE_CUSTOMER_URL", value_parser = parse_base_url)]
    pub customer_url: Option<Url>,
    /// Inventory service base URL.
    #[arg(long, env = "ORDER_SERVICE_INVENTORY_URL", value_parser = parse_base_url)]
    pub inventory_url: Option<Url>,
    /// Payment service base URL.
    #[arg(long, env = "ORDER_SERVICE_PAYMENT_URL", value_parser = parse_base_url)]
    pub payment_url: Option<Url>,
    /// PEM file of the CAs that sign the participants' https certificates; when set, only these
    /// are trusted (else the system's roots).
    #[arg(
        long,
        env = "ORDER_SERVICE_PARTICIPANT_CA_FILE",
        conflicts_with = "participant_ca_pem"
    )]
    pub participant_ca_file: Option<std::path::PathBuf>,
    /// The same bundle as PEM text (the OrderPlatform's `participants.caConfigMapRef` sets it).
    #[arg(long, env = "ORDER_SERVICE_PARTICIPANT_CA_PEM", hide_env_values = true)]
    pub participant_ca_pem: Option<String>,
    /// Bound on one call to a participant.
    #[arg(long, env = "ORDER_SERVICE_PARTICIPANT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub participant_timeout: Duration,
    /// Retries of a call (after the first) for timeouts, 5xx and 429, with exponential backoff
    /// and jitter; refusals (other 4xx) are never retried.
    #[arg(long, env = "ORDER_SERVICE_PARTICIPANT_RETRIES", default_value_t = 2)]
    pub participant_retries: u32,
    /// First retry delay within a call (doubling, with jitter, up to 1 s).
    #[arg(long, env = "ORDER_SERVICE_PARTICIPANT_BACKOFF", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub participant_backoff: Duration,
    /// Consecutive failed calls that open a participant's circuit breaker.
    #[arg(long, env = "ORDER_SERVICE_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before letting one probe through.
    #[arg(long, env = "ORDER_SERVICE_BREAKER_OPEN_FOR", default_value = "10s", value_parser = humantime::parse_duration)]
    pub breaker_open_for: Duration,
    /// Most calls in flight to one participant (bulkhead).
    #[arg(
        long,
        env = "ORDER_SERVICE_PARTICIPANT_CONCURRENCY",
        default_value_t = 32
    )]
    pub participant_concurrency: usize,
    /// How long a call waits for a bulkhead slot before its step is retried later.
    #[arg(long, env = "ORDER_SERVICE_BULKHEAD_WAIT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub bulkhead_wait: Duration,
    /// Run saga workers in this process (replicas share the work).
    #[arg(long = "saga-workers", env = "ORDER_SERVICE_SAGA_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub saga_workers: bool,
    /// Sagas driven at once by this instance.
    #[arg(long, env = "ORDER_SERVICE_SAGA_CONCURRENCY", default_value_t = 64)]
    pub saga_concurrency: usize,
    /// Sagas claimed per claim query.
    #[arg(long, env = "ORDER_SERVICE_SAGA_CLAIM_BATCH", default_value_t = 32)]
    pub saga_claim_batch: usize,
    /// How often idle workers look for due sagas (new orders of this instance wake them at once).
    #[arg(long = "saga-poll", env = "ORDER_SERVICE_SAGA_POLL", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub saga_poll_interval: Duration,
    /// A claimed saga's lease: if its worker dies, another resumes it after this.
    #[arg(long, env = "ORDER_SERVICE_SAGA_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub saga_lease: Duration,
    /// First delay before a step is tried again (doubling, with jitter).
    #[arg(long, env = "ORDER_SERVICE_SAGA_MIN_BACKOFF", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub saga_min_backoff: Duration,
    /// Longest delay between attempts of a step.
    #[arg(long, env = "ORDER_SERVICE_SAGA_MAX_BACKOFF", default_value = "1m", value_parser = humantime::parse_duration)]
    pub saga_max_backoff: Duration,
    /// A forward step still failing this long after the order was created gives up: the order
    /// is cancelled (`<participant>_unavailable`) and what was done is undone.
    #[arg(long, env = "ORDER_SERVICE_SAGA_DEADLINE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub saga_deadline: Duration,
    /// An unfinished saga at the same step for longer than this counts as stuck: in
    /// `order_service_sagas_stuck` (the `OrderSagaStuck` alert) and in `/flowz`.
    #[arg(long, env = "ORDER_SERVICE_SAGA_STUCK_AFTER", default_value = "10m", value_parser = humantime::parse_duration)]
    pub saga_stuck_after: Duration,
}

pub(crate) fn parse_base_url(value: &str) -> Result<Url, String> {
    let mut url = Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    // Paths are joined onto it: without the trailing slash the last segment would be replaced.
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

impl SagaConfig {
    /// Which CAs https participants must be signed by.
    fn trust(&self) -> anyhow::Result<tls::Trust> {
        tls::trust(
            self.participant_ca_file.as_deref(),
            self.participant_ca_pem.as_deref(),
            "participant",
        )
    }

    /// How every call to a participant (and to the catalog) behaves.
    pub fn call_policy(&self) -> CallPolicy {
        CallPolicy {
            timeout: self.participant_timeout,
            retries: self.participant_retries,
            min_backoff: self.participant_backoff,
            max_backoff: Duration::from_secs(1).max(self.participant_backoff),
            breaker_failures: self.breaker_failures,
            breaker_open_for: self.breaker_open_for,
            max_concurrency: self.participant_concurrency,
            bulkhead_wait: self.bulkhead_wait,
        }
    }

    /// The participants, when all three are configured; an error when only some are.
    pub fn participants(&self, metrics: &Arc<Metrics>) -> anyhow::Result<Option<Participants>> {
        let policy = self.call_policy();
        match (&self.customer_url, &self.inventory_url, &self.payment_url) {
            (None, None, None) => Ok(None),
            (Some(customer), Some(inventory), Some(payment)) => {
                let tls = tls::client_config(&self.trust()?)?;
                let make = |name, url: &Url| {
                    Participant::new(
                        name,
                        url.clone(),
                        policy.clone(),
                        tls.clone(),
                        metrics.clone(),
                    )
                };
                Ok(Some(Participants {
                    customer: make("customer", customer)?,
                    inventory: make("inventory", inventory)?,
                    payment: make("payment", payment)?,
                }))
            }
            _ => anyhow::bail!(
                "the saga needs all three participants: set ORDER_SERVICE_CUSTOMER_URL, \
                 ORDER_SERVICE_INVENTORY_URL and ORDER_SERVICE_PAYMENT_URL (or none of them)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_a_trailing_slash_and_must_be_http_or_https() {
        assert_eq!(
            parse_base_url("http://inventory:8080/api")
                .unwrap()
                .as_str(),
            "http://inventory:8080/api/"
        );
        assert!(parse_base_url("ftp://x").is_err());
        assert_eq!(
            parse_base_url("https://payments").unwrap().as_str(),
            "https://payments/"
        );
        assert!(parse_base_url("not a url").is_err());
    }
}
