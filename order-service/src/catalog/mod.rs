//! The product catalog: prices, names and sellability of the SKUs an order names, looked up
//! when the order is created (docs/participants.md, "Catalog"). `contract.rs` is the batch
//! lookup; `cache.rs` the shared cache with single-flight misses; `events.rs` the product
//! events that invalidate it. Calls go through the saga's resilient client (timeout, retries,
//! breaker, bulkhead, `traceparent`).
//!
//! Without `--catalog-url` the service takes names and prices from the client (development
//! mode).

pub mod cache;
pub mod contract;
pub mod events;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use reqwest::Url;

pub use cache::{CachePolicy, Catalog, Catalogued};
pub use contract::Unavailable;
pub use events::ProductEvents;

use crate::kafka::KafkaConfig;
use crate::metrics::Metrics;
use crate::saga::client::{CallPolicy, Participant};
use crate::saga::tls;

#[derive(Debug, Clone, Args)]
pub struct CatalogConfig {
    /// Product catalog base URL, e.g. `http://catalog:8080/`. When set, creates are priced from
    /// the catalog (names, unit prices, currency, whether a product is for sale); without it,
    /// names and prices come from the client (development mode).
    #[arg(long, env = "ORDER_SERVICE_CATALOG_URL", value_parser = crate::saga::parse_base_url)]
    pub catalog_url: Option<Url>,
    /// PEM file of the CAs that sign the catalog's https certificate; when set, only these are
    /// trusted (else the system's roots).
    #[arg(
        long,
        env = "ORDER_SERVICE_CATALOG_CA_FILE",
        conflicts_with = "catalog_ca_pem"
    )]
    pub catalog_ca_file: Option<PathBuf>,
    /// The same bundle as PEM text (the OrderPlatform's `catalog.caConfigMapRef` sets it).
    #[arg(long, env = "ORDER_SERVICE_CATALOG_CA_PEM", hide_env_values = true)]
    pub catalog_ca_pem: Option<String>,
    /// Most products held in this replica's cache.
    #[arg(long, env = "ORDER_SERVICE_CATALOG_CACHE_CAPACITY", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub catalog_cache_capacity: u64,
    /// How long a cached product is used without asking the catalog again (product events
    /// drop changed products sooner).
    #[arg(long, env = "ORDER_SERVICE_CATALOG_CACHE_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub catalog_cache_ttl: Duration,
    /// While the catalog cannot be reached, cached products up to this age are still used;
    /// past it, creates answer 503 `catalog-unavailable`. At least the TTL.
    #[arg(long, env = "ORDER_SERVICE_CATALOG_MAX_STALENESS", default_value = "15m", value_parser = humantime::parse_duration)]
    pub catalog_max_staleness: Duration,
    /// Kafka topic of the catalog's `product.updated`/`product.deleted` events (keyed by SKU),
    /// read by every replica from its end to drop changed products from its cache; the
    /// brokers are `--kafka-bootstrap-servers` (with `--kafka-property`). Without it, cached
    /// products expire by the TTL only.
    #[arg(long, env = "ORDER_SERVICE_PRODUCT_EVENTS_TOPIC")]
    pub product_events_topic: Option<String>,
}

impl CatalogConfig {
    /// The catalog, when configured; calls behave as the participants' do (`policy`).
    pub fn catalog(
        &self,
        policy: CallPolicy,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Option<Arc<Catalog>>> {
        let Some(url) = &self.catalog_url else {
            anyhow::ensure!(
                self.product_events_topic.is_none(),
                "ORDER_SERVICE_PRODUCT_EVENTS_TOPIC needs ORDER_SERVICE_CATALOG_URL: without a catalog nothing is cached"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            self.catalog_max_staleness >= self.catalog_cache_ttl,
            "ORDER_SERVICE_CATALOG_MAX_STALENESS ({:?}) must be at least ORDER_SERVICE_CATALOG_CACHE_TTL ({:?})",
            self.catalog_max_staleness,
            self.catalog_cache_ttl
        );
        let trust = tls::trust(
            self.catalog_ca_file.as_deref(),
            self.catalog_ca_pem.as_deref(),
            "catalog",
        )?;
        let service = Participant::new(
            "catalog",
            url.clone(),
            policy,
            tls::client_config(&trust)?,
            metrics.clone(),
        )?;
        let cache = CachePolicy {
            capacity: self.catalog_cache_capacity,
            ttl: self.catalog_cache_ttl,
            max_staleness: self.catalog_max_staleness,
        };
        Ok(Some(Arc::new(Catalog::new(
            service,
            cache,
            metrics.clone(),
        ))))
    }

    /// The product events reader, when a topic is configured.
    pub fn product_events(
        &self,
        kafka: &KafkaConfig,
        catalog: Option<&Arc<Catalog>>,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Option<Arc<ProductEvents>>> {
        match (&self.product_events_topic, catalog) {
            (Some(topic), Some(catalog)) => Ok(Some(Arc::new(ProductEvents::new(
                kafka,
                topic,
                catalog.clone(),
                metrics.clone(),
            )?))),
            _ => Ok(None),
        }
    }
}
