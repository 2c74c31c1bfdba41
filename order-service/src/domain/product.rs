//! Products as the catalog describes them, and whether one can be sold in an order.
//!
//! Pure: the catalog's answers arrive here already parsed (`catalog::contract`).

use serde::Serialize;
use utoipa::ToSchema;

use super::money::Currency;

/// One catalog entry: what the order service needs to price a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    /// Minor units of `currency`, ≥ 0.
    pub unit_price_minor: i64,
    pub currency: Currency,
    /// Whether the product may be sold now.
    pub active: bool,
}

impl Product {
    /// Whether this product can be a line of an order in `currency`; the reason when not, as a
    /// field error's message.
    pub fn sellable_in(&self, currency: Currency) -> Result<(), String> {
        if !self.active {
            return Err("is not for sale (inactive in the catalog)".into());
        }
        if self.currency != currency {
            return Err(format!(
                "is sold in {}, not in the order currency {currency}",
                self.currency
            ));
        }
        Ok(())
    }

    pub fn current_price(&self) -> CurrentPrice {
        CurrentPrice {
            sku: self.sku.clone(),
            unit_price_minor: self.unit_price_minor,
            currency: self.currency.code().to_owned(),
        }
    }
}

/// A line's price as the catalog has it now (listed by a `price-changed` problem).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CurrentPrice {
    #[schema(example = "SKU-1")]
    pub sku: String,
    /// Minor units of `currency`.
    #[schema(example = 1250)]
    pub unit_price_minor: i64,
    #[schema(example = "EUR")]
    pub currency: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(active: bool, currency: &str) -> Product {
        Product {
            sku: "SKU-1".into(),
            name: "Widget".into(),
            unit_price_minor: 1250,
            currency: Currency::parse(currency).unwrap(),
            active,
        }
    }

    #[test]
    fn only_an_active_product_in_the_order_currency_is_sellable() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(product(true, "EUR").sellable_in(eur), Ok(()));
        let inactive = product(false, "EUR").sellable_in(eur).unwrap_err();
        assert!(inactive.contains("not for sale"), "{inactive}");
        let usd = product(true, "USD").sellable_in(eur).unwrap_err();
        assert!(usd.contains("sold in USD"), "{usd}");
        assert_eq!(
            product(true, "EUR").current_price(),
            CurrentPrice {
                sku: "SKU-1".into(),
                unit_price_minor: 1250,
                currency: "EUR".into()
            }
        );
    }
}
