//! Customer, inventory and payment services faked with wiremock, on one mock server. The fakes
//! keep state as the real services would: a reservation or authorization per idempotency key
//! (a repeat returns the first answer), so tests can assert nothing was done twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Knobs and records of one fake endpoint.
#[derive(Default)]
pub struct Endpoint {
    /// Every call's Idempotency-Key, in order.
    pub keys: Mutex<Vec<String>>,
    /// Every call's traceparent header (empty when absent).
    pub traceparents: Mutex<Vec<String>>,
    /// Answer 503 while set.
    pub down: AtomicBool,
    /// Answer the next this-many calls with 500.
    pub fail_next: AtomicUsize,
    /// Answer the next this-many calls only after `slow_by` (longer than the client timeout).
    pub slow_next: AtomicUsize,
    pub slow_by: Mutex<Duration>,
    /// Delay of every answer (a participant "answering in 5 ms").
    pub latency: Mutex<Duration>,
    /// While set, every call gets this status and raw body instead (a misrouted base path, an
    /// expired credential, a proxy's HTML page).
    pub answer_with: Mutex<Option<(u16, String)>>,
}

impl Endpoint {
    pub fn calls(&self) -> usize {
        self.keys.lock().expect("lock").len()
    }

    pub fn distinct_keys(&self) -> BTreeSet<String> {
        self.keys.lock().expect("lock").iter().cloned().collect()
    }

    pub fn keys_of(&self, order_id: &str) -> Vec<String> {
        self.keys
            .lock()
            .expect("lock")
            .iter()
            .filter(|k| k.starts_with(order_id))
            .cloned()
            .collect()
    }

    /// Records the call; `Err(answer)` is what the knobs force instead of the normal answer,
    /// `Ok(delay)` how long the normal answer waits.
    fn record(&self, request: &Request) -> Result<Duration, Box<ResponseTemplate>> {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        self.keys
            .lock()
            .expect("lock")
            .push(header("idempotency-key"));
        self.traceparents
            .lock()
            .expect("lock")
            .push(header("traceparent"));
        let latency = *self.latency.lock().expect("lock");
        if let Some((status, body)) = self.answer_with.lock().expect("lock").clone() {
            return Err(Box::new(
                ResponseTemplate::new(status).set_body_string(body),
            ));
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(Box::new(ResponseTemplate::new(503)));
        }
        if take(&self.fail_next) {
            return Err(Box::new(ResponseTemplate::new(500).set_delay(latency)));
        }
        if take(&self.slow_next) {
            return Ok(*self.slow_by.lock().expect("lock"));
        }
        Ok(latency)
    }
}

fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// What the fakes know and did.
#[derive(Default)]
pub struct World {
    pub unknown_customers: Mutex<BTreeSet<String>>,
    pub out_of_stock: Mutex<BTreeSet<String>>,
    pub declined_customers: Mutex<BTreeSet<String>>,
    /// Reservation id per idempotency key: one reservation however often a key is sent.
    pub reservations: Mutex<BTreeMap<String, String>>,
    pub authorizations: Mutex<BTreeMap<String, String>>,
    pub customer: Endpoint,
    pub reserve: Endpoint,
    pub release: Endpoint,
    pub authorize: Endpoint,
    pub void: Endpoint,
}

pub struct Participants {
    pub server: MockServer,
    pub world: Arc<World>,
}

impl Participants {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let world = Arc::new(World::default());
        for (verb, pattern, kind) in [
            ("GET", r"^/v1/customers/[^/]+$", Kind::Customer),
            ("POST", r"^/v1/reservations$", Kind::Reserve),
            ("POST", r"^/v1/reservations/[^/]+/release$", Kind::Release),
            ("POST", r"^/v1/authorizations$", Kind::Authorize),
            ("POST", r"^/v1/authorizations/[^/]+/void$", Kind::Void),
        ] {
            Mock::given(method(verb))
                .and(path_regex(pattern))
                .respond_with(Fake {
                    world: world.clone(),
                    kind,
                })
                .mount(&server)
                .await;
        }
        Self { server, world }
    }

    /// The `serve` flags that point the saga at the fakes, with short timeouts and backoffs.
    pub fn args(&self) -> Vec<String> {
        let base = self.server.uri();
        [
            "--customer-url",
            &base,
            "--inventory-url",
            &base,
            "--payment-url",
            &base,
            "--participant-timeout",
            "300ms",
            "--participant-retries",
            "1",
            "--participant-backoff",
            "10ms",
            "--breaker-failures",
            "3",
            "--breaker-open-for",
            "500ms",
            "--saga-poll",
            "50ms",
            "--saga-min-backoff",
            "50ms",
            "--saga-max-backoff",
            "300ms",
            "--saga-lease",
            "5s",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Customer,
    Reserve,
    Release,
    Authorize,
    Void,
}

struct Fake {
    world: Arc<World>,
    kind: Kind,
}

impl Respond for Fake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let w = &self.world;
        let endpoint = match self.kind {
            Kind::Customer => &w.customer,
            Kind::Reserve => &w.reserve,
            Kind::Release => &w.release,
            Kind::Authorize => &w.authorize,
            Kind::Void => &w.void,
        };
        let delay = match endpoint.record(request) {
            Ok(delay) => delay,
            Err(answer) => return *answer,
        };
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let answer = match self.kind {
            Kind::Customer => {
                let id = request
                    .url
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if w.unknown_customers.lock().expect("lock").contains(&id) {
                    ResponseTemplate::new(404).set_body_json(json!({"error": "customer_not_found"}))
                } else {
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"customer_id": id, "status": "ACTIVE"}))
                }
            }
            Kind::Reserve => {
                let missing = body["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|item| {
                        let sku = item["sku"].as_str().unwrap_or_default();
                        w.out_of_stock
                            .lock()
                            .expect("lock")
                            .contains(sku)
                            .then(|| sku.to_owned())
                    });
                match missing {
                    Some(sku) => ResponseTemplate::new(409)
                        .set_body_json(json!({"error": "out_of_stock", "sku": sku})),
                    None => {
                        let mut made = w.reservations.lock().expect("lock");
                        let next = format!("res-{}", made.len() + 1);
                        let id = made.entry(key).or_insert(next).clone();
                        ResponseTemplate::new(201).set_body_json(json!({"reservation_id": id}))
                    }
                }
            }
            Kind::Authorize => {
                let customer = body["customer_id"].as_str().unwrap_or_default();
                if w.declined_customers
                    .lock()
                    .expect("lock")
                    .contains(customer)
                {
                    ResponseTemplate::new(402).set_body_json(json!({"error": "payment_declined"}))
                } else {
                    let mut made = w.authorizations.lock().expect("lock");
                    let next = format!("auth-{}", made.len() + 1);
                    let id = made.entry(key).or_insert(next).clone();
                    ResponseTemplate::new(201).set_body_json(json!({"authorization_id": id}))
                }
            }
            Kind::Release | Kind::Void => {
                ResponseTemplate::new(200).set_body_json(json!({"status": "done"}))
            }
        };
        answer.set_delay(delay)
    }
}
