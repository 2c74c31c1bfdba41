//! One participant service behind a resilient client: a timeout per call, retries with
//! exponential backoff and jitter for retryable failures only, a circuit breaker, and a
//! bulkhead (a bound on concurrent calls, so a slow participant cannot hold every worker).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::breaker::{Breaker, BreakerState, Permit};
use crate::metrics::Metrics;
use crate::telemetry::error_chain;

/// How calls to one participant behave.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    pub timeout: Duration,
    /// Attempts after the first, for retryable failures.
    pub retries: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub breaker_failures: u32,
    pub breaker_open_for: Duration,
    pub max_concurrency: usize,
    /// How long a call waits for a bulkhead slot before giving up (the step retries later).
    pub bulkhead_wait: Duration,
}

/// Why a call did not produce an answer the saga can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Timeout, connection failure, 5xx, 429, an open breaker, a full bulkhead, or an answer
    /// outside the contract (401, 403, a 404 without the documented error body, a 2xx that is
    /// not JSON): try later, not before `retry_after` when the participant or the breaker said.
    Unavailable {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The participant refused, as its contract documents: a listed status with a listed
    /// `error` code in a JSON body.
    Refused {
        status: u16,
        error: String,
        body: Value,
    },
}

/// A business refusal a call's contract documents: this status with a JSON body whose `error`
/// is one of `errors` (any non-empty code when `errors` is empty). Anything else outside 2xx means the participant (or the route to it) is
/// not working, never that the order should be cancelled.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub status: u16,
    pub errors: &'static [&'static str],
}

/// One request: the idempotency key makes a repeat (a retry, or a resumed saga) harmless.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    /// Sent as `Idempotency-Key` by calls that change something (reads need none).
    pub idempotency_key: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub body: Option<&'a Value>,
    /// The documented refusals of this call.
    pub refusals: &'a [Refusal],
}

pub struct Participant {
    name: &'static str,
    base: Url,
    http: reqwest::Client,
    policy: CallPolicy,
    breaker: Mutex<Breaker>,
    bulkhead: Semaphore,
    metrics: Arc<Metrics>,
}

impl Participant {
    pub fn new(
        name: &'static str,
        base: Url,
        policy: CallPolicy,
        tls: rustls::ClientConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("the HTTP client for the {name} service: {e}"))?;
        Ok(Self {
            name,
            base,
            breaker: Mutex::new(Breaker::new(
                policy.breaker_failures,
                policy.breaker_open_for,
            )),
            bulkhead: Semaphore::new(policy.max_concurrency.max(1)),
            http,
            policy,
            metrics,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker
            .lock()
            .map(|b| b.state(Instant::now()))
            .unwrap_or(BreakerState::Closed)
    }

    /// Sends the call: within the bulkhead, through the breaker, retrying retryable failures.
    /// `Ok` is a 2xx answer's JSON body (`null` when empty).
    pub async fn send(&self, call: &Call<'_>) -> Result<Value, CallError> {
        let _slot = tokio::time::timeout(self.policy.bulkhead_wait, self.bulkhead.acquire())
            .await
            .map_err(|_| {
                self.metrics
                    .participant_call(self.name, "bulkhead_full", Duration::ZERO);
                CallError::Unavailable {
                    error: format!(
                        "{}: {} calls in flight already (bulkhead)",
                        self.name, self.policy.max_concurrency
                    ),
                    retry_after: None,
                }
            })?
            .map_err(|_| CallError::Unavailable {
                error: "shutting down".into(),
                retry_after: None,
            })?;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.min_backoff)
            .with_max_delay(self.policy.max_backoff)
            .with_jitter()
            .with_max_times(self.policy.retries as usize)
            .build();
        loop {
            let permit = self
                .breaker
                .lock()
                .map(|mut b| b.permit(Instant::now()))
                .unwrap_or(Permit::Allowed);
            if let Permit::Refused(open_for) = permit {
                self.metrics
                    .participant_call(self.name, "circuit_open", Duration::ZERO);
                return Err(CallError::Unavailable {
                    error: format!("{}: circuit breaker open", self.name),
                    retry_after: Some(open_for),
                });
            }
            let result = self.once(call).await;
            let now = Instant::now();
            if let Ok(mut breaker) = self.breaker.lock() {
                match &result {
                    Err(CallError::Unavailable { .. }) => breaker.failed(now),
                    _ => breaker.succeeded(),
                }
                self.metrics
                    .participant_breaker(self.name, breaker.state(now).gauge());
            }
            match result {
                Err(CallError::Unavailable { error, retry_after }) => match backoff.next() {
                    Some(delay) => {
                        let delay = retry_after
                            .map_or(delay, |after| after.min(self.policy.max_backoff).max(delay));
                        self.metrics.participant_retry(self.name);
                        tracing::debug!(participant = self.name, %error, ?delay, "retrying call");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(CallError::Unavailable { error, retry_after }),
                },
                other => return other,
            }
        }
    }

    async fn once(&self, call: &Call<'_>) -> Result<Value, CallError> {
        let span = tracing::info_span!(
            "participant call",
            participant = self.name,
            path = call.path
        );
        crate::telemetry::continue_trace(&span, call.traceparent);
        let traceparent = crate::telemetry::traceparent_of(&span, call.traceparent);
        self.once_in(call, traceparent.as_deref())
            .instrument(span)
            .await
    }

    async fn once_in(
        &self,
        call: &Call<'_>,
        traceparent: Option<&str>,
    ) -> Result<Value, CallError> {
        let url = self
            .base
            .join(call.path)
            .map_err(|e| CallError::Unavailable {
                error: format!("{}: bad path {}: {e}", self.name, call.path),
                retry_after: None,
            })?;
        let mut request = self.http.request(call.method.clone(), url);
        if let Some(key) = call.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                };
                self.metrics
                    .participant_call(self.name, kind, started.elapsed());
                return Err(CallError::Unavailable {
                    // With its causes: reqwest's own message rarely says what went wrong.
                    error: format!("{}: {kind}: {}", self.name, error_chain(&e)),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.metrics
                    .participant_call(self.name, "timeout", started.elapsed());
                return Err(CallError::Unavailable {
                    error: format!("{}: reading the answer: {e}", self.name),
                    retry_after: None,
                });
            }
        };
        let elapsed = started.elapsed();
        // An empty body is JSON `null` (a 204); anything else must parse.
        let body: Option<Value> = if bytes.is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if status.is_success() {
            return match body {
                Some(body) => {
                    self.metrics.participant_call(self.name, "ok", elapsed);
                    Ok(body)
                }
                None => Err(self.unexpected(status, "invalid_body".into(), elapsed)),
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            self.metrics
                .participant_call(self.name, "unavailable", elapsed);
            return Err(CallError::Unavailable {
                error: format!("{}: HTTP {status}", self.name),
                retry_after,
            });
        }
        let body = body.unwrap_or(Value::Null);
        match refusal(call.refusals, status.as_u16(), &body) {
            Some(error) => {
                self.metrics.participant_call(self.name, "refused", elapsed);
                Err(CallError::Refused {
                    status: status.as_u16(),
                    error,
                    body,
                })
            }
            None => Err(self.unexpected(status, status.as_u16().to_string(), elapsed)),
        }
    }

    /// An answer outside the contract: counted, logged with the participant and status, and
    /// treated as the participant being unavailable (retried; the breaker counts it; the saga
    /// deadline is the backstop).
    fn unexpected(&self, status: StatusCode, label: String, elapsed: Duration) -> CallError {
        self.metrics
            .participant_call(self.name, "unexpected", elapsed);
        tracing::warn!(
            participant = self.name,
            status = status.as_u16(),
            what = %label,
            "participant answered outside its contract (misrouted, misconfigured or not ready); will retry"
        );
        let error = if label == "invalid_body" {
            format!("{}: HTTP {status} with a body that is not JSON", self.name)
        } else {
            format!(
                "{}: HTTP {status} without a documented error body (misrouted or misconfigured?)",
                self.name
            )
        };
        self.metrics.participant_unexpected(self.name, label);
        CallError::Unavailable {
            error,
            retry_after: None,
        }
    }
}

/// The documented refusal `status` and `body` make, if any: its `error` code.
fn refusal(refusals: &[Refusal], status: u16, body: &Value) -> Option<String> {
    let error = body.get("error").and_then(Value::as_str)?;
    refusals
        .iter()
        .any(|r| r.status == status && (r.errors.is_empty() || r.errors.contains(&error)))
        .then(|| error.to_owned())
}

/// `Retry-After` in seconds (the HTTP-date form is rare from services and ignored).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOCUMENTED: &[Refusal] = &[
        Refusal {
            status: 404,
            errors: &["customer_not_found"],
        },
        Refusal {
            status: 402,
            errors: &[],
        },
    ];

    #[test]
    fn only_a_listed_status_with_a_listed_error_code_is_a_refusal() {
        let code = |status, body| refusal(DOCUMENTED, status, &body);
        assert_eq!(
            code(404, json!({"error": "customer_not_found"})),
            Some("customer_not_found".into())
        );
        // A wrong base path: 404 without the documented body, or with another code.
        assert_eq!(code(404, Value::Null), None);
        assert_eq!(code(404, json!({"error": "not_found"})), None);
        assert_eq!(code(404, json!({"message": "customer_not_found"})), None);
        // Any code where the contract lists none, but a code it must be.
        assert_eq!(
            code(402, json!({"error": "card_expired"})),
            Some("card_expired".into())
        );
        assert_eq!(code(402, json!({"error": 7})), None);
        // Statuses the contract does not list never refuse.
        assert_eq!(code(401, json!({"error": "customer_not_found"})), None);
        assert_eq!(code(409, json!({"error": "out_of_stock"})), None);
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
