//! The catalog's batch lookup (docs/participants.md): what is sent, and how an answer becomes
//! products. Pure apart from [`lookup`], which sends the call through the resilient client.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::domain::{Currency, Product, ITEM_NAME_MAX, SKU_MAX};
use crate::saga::client::{Call, CallError, Participant};

/// The lookup's path, relative to `--catalog-url`.
pub const LOOKUP_PATH: &str = "v1/products/lookup";

/// Products found, by SKU; SKUs the catalog does not know are absent.
pub type Found = HashMap<String, Arc<Product>>;

/// Why no answer could be used: the catalog is down, slow, refusing calls (breaker, bulkhead)
/// or answering outside its contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the product catalog is unavailable: {error}")]
pub struct Unavailable {
    pub error: String,
    pub retry_after: Option<std::time::Duration>,
}

/// Looks up `skus` in one call. The lookup has no documented refusal: any answer but a 2xx
/// with the documented body means the catalog is not working.
pub async fn lookup(
    catalog: &Participant,
    skus: &[String],
    traceparent: Option<&str>,
) -> Result<Found, Unavailable> {
    let body = json!({ "skus": skus });
    let call = Call {
        method: Method::POST,
        path: LOOKUP_PATH,
        idempotency_key: None,
        traceparent,
        body: Some(&body),
        refusals: &[],
    };
    match catalog.send(&call).await {
        Ok(answer) => parse_answer(&answer).map_err(|error| {
            tracing::warn!(%error, "the catalog answered outside its contract");
            Unavailable {
                error: format!("catalog: {error}"),
                retry_after: None,
            }
        }),
        Err(CallError::Unavailable { error, retry_after }) => {
            Err(Unavailable { error, retry_after })
        }
        Err(CallError::Refused { status, error, .. }) => Err(Unavailable {
            error: format!("catalog: HTTP {status} {error}"),
            retry_after: None,
        }),
    }
}

/// `{"products": [{"sku", "name", "unit_price_minor", "currency", "active"}, …]}`. One entry
/// that breaks the contract makes the whole answer unusable: pricing from a half-read answer
/// would be guessing.
pub fn parse_answer(answer: &Value) -> Result<Found, String> {
    let products = answer
        .get("products")
        .and_then(Value::as_array)
        .ok_or("the answer has no `products` array")?;
    products
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            parse_product(entry)
                .map(|product| (product.sku.clone(), Arc::new(product)))
                .map_err(|e| format!("products[{i}]: {e}"))
        })
        .collect()
}

fn parse_product(entry: &Value) -> Result<Product, String> {
    let text = |name: &str, max: usize| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.chars().count() <= max)
            .map(str::to_owned)
            .ok_or_else(|| format!("`{name}` must be a string of 1 to {max} characters"))
    };
    let sku = text("sku", SKU_MAX)?;
    let name = text("name", ITEM_NAME_MAX)?;
    let unit_price_minor = entry
        .get("unit_price_minor")
        .and_then(Value::as_i64)
        .filter(|price| *price >= 0)
        .ok_or("`unit_price_minor` must be an integer ≥ 0")?;
    let currency = entry
        .get("currency")
        .and_then(Value::as_str)
        .ok_or_else(|| "`currency` must be a string".to_owned())
        .and_then(Currency::parse)?;
    let active = entry
        .get("active")
        .and_then(Value::as_bool)
        .ok_or("`active` must be a boolean")?;
    Ok(Product {
        sku,
        name,
        unit_price_minor,
        currency,
        active,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        json!({"sku": "SKU-1", "name": "Widget", "unit_price_minor": 1250,
               "currency": "EUR", "active": true})
    }

    #[test]
    fn an_answer_lists_the_products_found_by_sku() {
        let found = parse_answer(&json!({"products": [entry()]})).unwrap();
        let product = &found["SKU-1"];
        assert_eq!(product.name, "Widget");
        assert_eq!(product.unit_price_minor, 1250);
        assert_eq!(product.currency.code(), "EUR");
        assert!(product.active);
        assert!(parse_answer(&json!({"products": []})).unwrap().is_empty());
    }

    #[test]
    fn an_entry_outside_the_contract_makes_the_answer_unusable() {
        assert!(parse_answer(&json!({})).is_err());
        assert!(parse_answer(&Value::Null).is_err());
        for (field, value) in [
            ("sku", json!("")),
            ("name", json!(null)),
            ("name", json!("x".repeat(ITEM_NAME_MAX + 1))),
            ("unit_price_minor", json!(-1)),
            ("unit_price_minor", json!(12.5)),
            ("unit_price_minor", json!("1250")),
            ("currency", json!("eur")),
            ("active", json!("yes")),
        ] {
            let mut bad = entry();
            bad[field] = value.clone();
            let error = parse_answer(&json!({"products": [entry(), bad]})).unwrap_err();
            assert!(error.starts_with("products[1]"), "{field}={value}: {error}");
        }
    }
}
