//! A small steady load of API calls through the platform's Service while a case runs: each
//! client creates an order, reads it back, and again, every failure counted.
//!
//! Every call opens a new connection (no keep-alive pool), as many short-lived clients behind
//! a load balancer would: a pooled connection to a pod that is going away is the client's
//! problem to retry, not the rollout's. A call that fails in transport (refused, reset) is
//! retried with backoff (100 ms doubling, 5 times: about 3 s), which every request here allows
//! (GETs, and POSTs with an Idempotency-Key), and counted as retried: a process killed with
//! SIGKILL leaves its pod's address refusing connections until kubelet, the endpointslice
//! controller and kube-proxy have noticed (a second or two), and no server can answer for a dead
//! process. Anything else is a failure: transport errors past the retries, a timeout, a 5xx or
//! any unexpected status.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinSet;

/// Calls per second per client, about (each pause is `PACE` after a create and a read).
const PACE: Duration = Duration::from_millis(100);
/// Longer than the service's own request bound would be a hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    pub failed: u64,
    /// Calls that failed in transport and succeeded when retried.
    pub retried: u64,
    /// Responses per status code other than the expected one, and transport errors.
    pub failures: Vec<String>,
    /// 503 problem+json responses and their `type` (the slow-dependency case expects these).
    pub unavailable: u64,
    pub elapsed: Duration,
}

impl Tally {
    pub fn print(&self, case: &str) {
        eprintln!(
            "[{case}] {} calls in {:.1?}: {} failed, {} retried after a transport error, {} \
             answered 503; first failures: {:?}",
            self.sent,
            self.elapsed,
            self.failed,
            self.retried,
            self.unavailable,
            self.failures.iter().take(5).collect::<Vec<_>>()
        );
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    clients: JoinSet<()>,
    started: Instant,
}

/// What one call came to.
enum Outcome {
    Ok(Value),
    /// A status other than the expected one: (status, body).
    Status(StatusCode, String),
    Transport(String),
}

impl Load {
    /// Starts `clients` loops against `base_url`.
    pub fn start(base_url: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(CALL_TIMEOUT)
            .build()
            .expect("http client");
        let order: Value =
            serde_json::from_str(include_str!("../../../examples/order.json")).expect("order");
        let mut set = JoinSet::new();
        for _ in 0..clients {
            let (stop, tally, http, order) =
                (stop.clone(), tally.clone(), http.clone(), order.clone());
            let base = base_url.to_owned();
            set.spawn(async move {
                let mut pace = tokio::time::interval(PACE);
                while !stop.load(Ordering::Relaxed) {
                    pace.tick().await;
                    let key = uuid::Uuid::new_v4().to_string();
                    let created = call(&tally, StatusCode::CREATED, || {
                        http.post(format!("{base}/v1/orders"))
                            .header("idempotency-key", &key)
                            .json(&order)
                    })
                    .await;
                    let Some(id) = created.and_then(|o| o["id"].as_str().map(str::to_owned)) else {
                        continue;
                    };
                    call(&tally, StatusCode::OK, || {
                        http.get(format!("{base}/v1/orders/{id}"))
                    })
                    .await;
                }
            });
        }
        Self {
            stop,
            tally,
            clients: set,
            started: Instant::now(),
        }
    }

    /// The figures so far, without stopping.
    pub fn tally(&self) -> Tally {
        let mut tally = self.tally.lock().expect("tally").clone();
        tally.elapsed = self.started.elapsed();
        tally
    }

    /// Stops the clients (each finishes its call) and returns the figures.
    pub async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        while self.clients.join_next().await.is_some() {}
        self.tally()
    }
}

/// Retries of a call that failed in transport, and the first backoff (doubling).
const TRANSPORT_RETRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// One call, retried after transport errors; counted in `tally`. Returns the body when the
/// status is `expect`.
async fn call(
    tally: &Mutex<Tally>,
    expect: StatusCode,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Option<Value> {
    let mut outcome = once(request(), expect).await;
    let mut retried = false;
    let mut backoff = FIRST_BACKOFF;
    for _ in 0..TRANSPORT_RETRIES {
        if !matches!(outcome, Outcome::Transport(_)) {
            break;
        }
        retried = true;
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        outcome = once(request(), expect).await;
    }
    let mut t = tally.lock().expect("tally");
    t.sent += 1;
    match outcome {
        Outcome::Ok(body) => {
            t.retried += u64::from(retried);
            Some(body)
        }
        Outcome::Status(status, body) => {
            t.failed += 1;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                t.unavailable += 1;
            }
            t.failures.push(format!("{status}: {body}"));
            None
        }
        Outcome::Transport(error) => {
            t.failed += 1;
            t.failures.push(error);
            None
        }
    }
}

async fn once(request: reqwest::RequestBuilder, expect: StatusCode) -> Outcome {
    match request.send().await {
        Ok(response) if response.status() == expect => match response.json().await {
            Ok(body) => Outcome::Ok(body),
            Err(e) => Outcome::Transport(format!("reading the body: {e}")),
        },
        Ok(response) => {
            let status = response.status();
            let kind = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = response.text().await.unwrap_or_default();
            Outcome::Status(status, format!("{kind} {body}"))
        }
        Err(e) => Outcome::Transport(format!("{e:?}")),
    }
}
