//! `Catalog`: product lookups through an in-process cache shared by every request of this
//! replica. Bounded (`--catalog-cache-capacity`), fresh for `--catalog-cache-ttl`, usable up to
//! `--catalog-max-staleness` while the catalog is unreachable, dropped by product events.
//!
//! Misses are single-flight per SKU: moka runs one compute at a time per key, and a compute
//! that finds the entry refreshed by the one before it calls nothing. The SKUs one request
//! misses are fetched in one batch call, shared by their computes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, FutureExt};
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};

use super::contract::{self, Unavailable};
use crate::domain::Product;
use crate::metrics::Metrics;
use crate::saga::client::Participant;

/// What the catalog said of each SKU asked about: `None` for one it does not know.
pub type Catalogued = HashMap<String, Option<Arc<Product>>>;

/// How long entries are trusted.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub capacity: u64,
    /// An entry younger than this is used without asking the catalog.
    pub ttl: Duration,
    /// An older entry is still used while the catalog cannot be reached, up to this age.
    pub max_staleness: Duration,
}

/// One SKU's answer and when it was fetched. Unknown SKUs are cached too (`None`), so a client
/// repeating one does not reach the catalog on every request.
#[derive(Debug, Clone)]
struct Entry {
    product: Option<Arc<Product>>,
    fetched_at: Instant,
}

impl Entry {
    fn fresh(&self, ttl: Duration) -> bool {
        self.fetched_at.elapsed() < ttl
    }
}

pub struct Catalog {
    service: Participant,
    entries: Cache<String, Entry>,
    /// Product events applied so far: a lookup that overlapped one does not keep its answer,
    /// which may predate the change.
    invalidations: AtomicU64,
    policy: CachePolicy,
    metrics: Arc<Metrics>,
}

impl Catalog {
    pub fn new(service: Participant, policy: CachePolicy, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.clone();
        let entries = Cache::builder()
            .max_capacity(policy.capacity)
            // Kept until too stale to use even when the catalog is down.
            .time_to_live(policy.max_staleness.max(policy.ttl))
            .eviction_listener(move |_sku, _entry, cause| {
                let cause = match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    // Invalidations and replacements are counted where they happen.
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                evictions.catalog_eviction(cause);
            })
            .build();
        Self {
            service,
            entries,
            invalidations: AtomicU64::new(0),
            policy,
            metrics,
        }
    }

    /// The catalog's entries for `skus`: from the cache when fresh, else from one batch call
    /// (concurrent misses of a SKU share one call). A stale entry stands in while the catalog
    /// is unreachable, up to the maximum staleness; past it, the lookup fails.
    pub async fn products(
        &self,
        skus: &[&str],
        traceparent: Option<&str>,
    ) -> Result<Catalogued, Unavailable> {
        let mut skus = skus.to_vec();
        skus.sort_unstable();
        skus.dedup();
        let mut found = Catalogued::with_capacity(skus.len());
        let mut missed = Vec::new();
        for sku in skus {
            match self.entries.get(sku).await {
                Some(entry) if entry.fresh(self.policy.ttl) => {
                    self.metrics.catalog_lookup("hit");
                    found.insert(sku.to_owned(), entry.product);
                }
                _ => {
                    self.metrics.catalog_lookup("miss");
                    missed.push(sku);
                }
            }
        }
        if missed.is_empty() {
            return Ok(found);
        }
        // Polled only by the computes that still need it: when every missed SKU was refreshed
        // by a concurrent request meanwhile, nothing is called.
        let asked: Vec<String> = missed.iter().map(|sku| (*sku).to_owned()).collect();
        let generation = self.invalidations.load(Ordering::SeqCst);
        let batch = async move { contract::lookup(&self.service, &asked, traceparent).await }
            .boxed()
            .shared();
        let refreshed = join_all(missed.iter().map(|sku| {
            let batch = batch.clone();
            self.entries
                .entry_by_ref(*sku)
                .and_try_compute_with(move |current| self.refresh(sku, current, batch, generation))
        }))
        .await;
        for (sku, result) in missed.into_iter().zip(refreshed) {
            let product = match result? {
                CompResult::Inserted(entry)
                | CompResult::ReplacedWith(entry)
                | CompResult::Unchanged(entry) => entry.into_value().product,
                // Answered, but not kept (a product event overlapped the lookup): this
                // request still uses the answer, as it would had it been a little earlier.
                CompResult::StillNone(_) | CompResult::Removed(_) => {
                    batch.clone().await?.get(sku).cloned()
                }
            };
            found.insert(sku.to_owned(), product);
        }
        self.metrics.catalog_entries(self.entries.entry_count());
        Ok(found)
    }

    /// One SKU's compute, run under moka's per-key lock.
    async fn refresh(
        &self,
        sku: &str,
        current: Option<moka::Entry<String, Entry>>,
        batch: impl std::future::Future<Output = Result<contract::Found, Unavailable>>,
        generation: u64,
    ) -> Result<Op<Entry>, Unavailable> {
        if current
            .as_ref()
            .is_some_and(|c| c.value().fresh(self.policy.ttl))
        {
            return Ok(Op::Nop);
        }
        match batch.await {
            Ok(_) if self.invalidations.load(Ordering::SeqCst) != generation => Ok(Op::Remove),
            Ok(found) => Ok(Op::Put(Entry {
                product: found.get(sku).cloned(),
                fetched_at: Instant::now(),
            })),
            Err(unavailable) => match current {
                Some(stale) if stale.value().fetched_at.elapsed() < self.policy.max_staleness => {
                    self.metrics.catalog_lookup("stale");
                    Ok(Op::Nop)
                }
                _ => Err(unavailable),
            },
        }
    }

    /// Drops a SKU's entry (a product event said it changed); the next lookup asks the catalog.
    /// Counted first, so a lookup in flight does not keep an answer from before the change;
    /// removed under the key's lock, so after any compute of the SKU in progress.
    pub async fn forget(&self, sku: &str) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.entries
            .entry_by_ref(sku)
            .and_compute_with(|_| async { Op::Remove })
            .await;
        self.metrics.catalog_invalidated();
        self.metrics.catalog_entries(self.entries.entry_count());
    }

    /// Entries held now (approximate, as moka counts them).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::client::CallPolicy;
    use crate::saga::tls;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{json, Value};

    /// A catalog served in the test: SKU-1 at the price in `price`, answering after `delay`,
    /// counting its lookups.
    async fn catalog(price: Arc<AtomicU64>, calls: Arc<AtomicU64>, delay: Duration) -> Catalog {
        let router = Router::new().route(
            "/v1/products/lookup",
            post(move |Json(_): Json<Value>| {
                let (price, calls) = (price.clone(), calls.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let price = price.load(Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    Json(json!({"products": [{"sku": "SKU-1", "name": "Widget",
                        "unit_price_minor": price, "currency": "EUR", "active": true}]}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let policy = CallPolicy {
            timeout: Duration::from_secs(2),
            retries: 0,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(1),
            max_concurrency: 8,
            bulkhead_wait: Duration::from_secs(1),
        };
        let metrics = Arc::new(Metrics::new(1));
        let tls = tls::client_config(&tls::Trust::System).unwrap();
        let service = Participant::new(
            "catalog",
            url.parse().unwrap(),
            policy,
            tls,
            metrics.clone(),
        )
        .unwrap();
        let cache = CachePolicy {
            capacity: 10,
            ttl: Duration::from_secs(600),
            max_staleness: Duration::from_secs(600),
        };
        Catalog::new(service, cache, metrics)
    }

    fn price_of(found: &Catalogued) -> i64 {
        found["SKU-1"].as_ref().expect("known").unit_price_minor
    }

    #[tokio::test]
    async fn a_lookup_that_overlapped_a_product_event_answers_but_is_not_kept() {
        let (price, calls) = (Arc::new(AtomicU64::new(100)), Arc::new(AtomicU64::new(0)));
        let catalog = catalog(price.clone(), calls.clone(), Duration::from_millis(300)).await;
        // The lookup reads the old price, then the product changes and its event arrives
        // while the answer is still on its way.
        let in_flight = catalog.products(&["SKU-1"], None);
        let event = async {
            while calls.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            price.store(200, Ordering::SeqCst);
            catalog.forget("SKU-1").await;
        };
        let (answered, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(in_flight, event)
        })
        .await
        .expect("the lookup and the event within 10 s");
        assert_eq!(price_of(&answered.unwrap()), 100, "answered as read");
        // Not kept: the next lookup asks again and gets the new price; then it is cached.
        assert_eq!(
            price_of(&catalog.products(&["SKU-1"], None).await.unwrap()),
            200
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            price_of(&catalog.products(&["SKU-1"], None).await.unwrap()),
            200
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
