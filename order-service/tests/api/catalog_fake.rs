//! The product catalog faked with wiremock: a batch lookup answering from products the test
//! sets, with knobs for down and slow, recording every call's SKUs and `traceparent`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Default)]
pub struct Shelf {
    /// The catalog's products by SKU, as the lookup answers them.
    pub products: Mutex<BTreeMap<String, Value>>,
    /// Answer 503 while set.
    pub down: AtomicBool,
    /// Delay of every answer.
    pub latency: Mutex<Duration>,
    /// Every call's SKUs.
    pub calls: Mutex<Vec<Vec<String>>>,
    /// Every call's traceparent header (empty when absent).
    pub traceparents: Mutex<Vec<String>>,
}

pub struct FakeCatalog {
    pub server: MockServer,
    pub shelf: Arc<Shelf>,
}

impl FakeCatalog {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let shelf = Arc::new(Shelf::default());
        Mock::given(method("POST"))
            .and(path("/v1/products/lookup"))
            .respond_with(Lookup {
                shelf: shelf.clone(),
            })
            .mount(&server)
            .await;
        Self { server, shelf }
    }

    /// Puts (or replaces) a product.
    pub fn stock(&self, sku: &str, name: &str, price: i64, currency: &str, active: bool) {
        self.shelf.products.lock().expect("lock").insert(
            sku.to_owned(),
            json!({"sku": sku, "name": name, "unit_price_minor": price,
                   "currency": currency, "active": active}),
        );
    }

    pub fn set_down(&self, down: bool) {
        self.shelf.down.store(down, Ordering::SeqCst);
    }

    pub fn set_latency(&self, latency: Duration) {
        *self.shelf.latency.lock().expect("lock") = latency;
    }

    /// Calls that reached the catalog, as wiremock received them.
    pub async fn received(&self) -> usize {
        self.server
            .received_requests()
            .await
            .map_or(0, |requests| requests.len())
    }

    /// The `serve` flags for this catalog, with short call timeouts and the given cache times.
    pub fn args(&self, ttl: &str, max_staleness: &str) -> Vec<String> {
        [
            "--catalog-url",
            &self.server.uri(),
            "--catalog-cache-ttl",
            ttl,
            "--catalog-max-staleness",
            max_staleness,
            "--participant-timeout",
            "300ms",
            "--participant-retries",
            "1",
            "--participant-backoff",
            "10ms",
            "--breaker-failures",
            "3",
            "--breaker-open-for",
            "200ms",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }
}

struct Lookup {
    shelf: Arc<Shelf>,
}

impl Respond for Lookup {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let skus: Vec<String> = body["skus"]
            .as_array()
            .map(|skus| {
                skus.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let traceparent = request
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.shelf
            .traceparents
            .lock()
            .expect("lock")
            .push(traceparent);
        self.shelf.calls.lock().expect("lock").push(skus.clone());
        let latency = *self.shelf.latency.lock().expect("lock");
        if self.shelf.down.load(Ordering::SeqCst) {
            return ResponseTemplate::new(503).set_delay(latency);
        }
        let products = self.shelf.products.lock().expect("lock");
        let found: Vec<Value> = skus
            .iter()
            .filter_map(|sku| products.get(sku).cloned())
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({ "products": found }))
            .set_delay(latency)
    }
}
