//! `Catalog`: product lookups through an in-process cache shared by every request of this
//! replica. Bounded (`--catalog-cache-capacity`), fresh for `--catalog-cache-ttl`, usable up to
//! `--catalog-max-staleness` while the catalog is unreachable, dropped by product events.
//!
//! Misses are single-flight per SKU: moka runs one compute at a time per key, and a compute
//! that finds the entry refreshed by the one before it calls nothing. The SKUs one request
//! misses are fetched in one batch call, shared by their computes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, FutureExt};
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;

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
        let batch = async move { contract::lookup(&self.service, &asked, traceparent).await }
            .boxed()
            .shared();
        let refreshed = join_all(missed.iter().map(|sku| {
            let batch = batch.clone();
            self.entries
                .entry_by_ref(*sku)
                .and_try_compute_with(move |current| self.refresh(sku, current, batch))
        }))
        .await;
        for (sku, result) in missed.into_iter().zip(refreshed) {
            let entry = result?.into_entry().ok_or_else(|| Unavailable {
                error: format!("catalog: the entry of {sku} vanished"),
                retry_after: None,
            })?;
            found.insert(sku.to_owned(), entry.into_value().product);
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
    ) -> Result<Op<Entry>, Unavailable> {
        if current
            .as_ref()
            .is_some_and(|c| c.value().fresh(self.policy.ttl))
        {
            return Ok(Op::Nop);
        }
        match batch.await {
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
    pub async fn forget(&self, sku: &str) {
        self.entries.invalidate(sku).await;
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
