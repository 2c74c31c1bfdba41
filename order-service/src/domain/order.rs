//! Orders: the validated input of a create and the stored resource.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::money::{compute_totals, Currency, LineAmount, Totals};
use super::status::OrderStatus;
use super::validation::{text, FieldErrors};
use super::Address;

/// At most this many lines per order: larger baskets are a different product (bulk import).
pub const MAX_ITEMS: usize = 100;
/// At most this many units per line.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Lengths of the text fields, after trimming.
pub const CUSTOMER_ID_MAX: usize = 64;
pub const SKU_MAX: usize = 64;
pub const ITEM_NAME_MAX: usize = 200;

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Card,
    BankTransfer,
    Paypal,
    Invoice,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 4] =
        [Self::Card, Self::BankTransfer, Self::Paypal, Self::Invoice];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::BankTransfer => "bank_transfer",
            Self::Paypal => "paypal",
            Self::Invoice => "invoice",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == value)
    }
}

/// Where the payment stands. A new order's payment is `PENDING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Pending,
    Authorized,
    Captured,
    Voided,
    Failed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        Self::Pending,
        Self::Authorized,
        Self::Captured,
        Self::Voided,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Authorized => "AUTHORIZED",
            Self::Captured => "CAPTURED",
            Self::Voided => "VOIDED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// A validated order line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

impl NewItem {
    /// Validates one line, recording errors under `path` (e.g. `items[2]`).
    pub fn parse(
        sku: &str,
        name: &str,
        quantity: i64,
        unit_price_minor: i64,
        path: &str,
        errors: &mut FieldErrors,
    ) -> Option<NewItem> {
        let sku = errors.check(format!("{path}.sku"), text(sku, SKU_MAX));
        let name = errors.check(format!("{path}.name"), text(name, ITEM_NAME_MAX));
        let quantity = errors.check(
            format!("{path}.quantity"),
            if (1..=MAX_QUANTITY).contains(&quantity) {
                Ok(quantity as i32)
            } else {
                Err(format!("must be between 1 and {MAX_QUANTITY}"))
            },
        );
        let unit_price_minor = errors.check(
            format!("{path}.unit_price_minor"),
            non_negative(unit_price_minor),
        );
        Some(NewItem {
            sku: sku?,
            name: name?,
            quantity: quantity?,
            unit_price_minor: unit_price_minor?,
        })
    }

    fn amount(&self) -> LineAmount {
        LineAmount {
            quantity: i64::from(self.quantity),
            unit_price_minor: self.unit_price_minor,
        }
    }
}

/// A validated order, totals computed, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: String,
    pub currency: Currency,
    pub items: Vec<NewItem>,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub payment_method: PaymentMethod,
    pub totals: Totals,
}

/// The parts of a create request, each already validated on its own.
pub struct NewOrderParts {
    pub customer_id: String,
    pub currency: Currency,
    pub items: Vec<NewItem>,
    pub shipping_address: Address,
    pub billing_address: Option<Address>,
    pub payment_method: PaymentMethod,
    pub shipping_minor: i64,
    pub tax_minor: i64,
}

impl NewOrder {
    /// Computes the totals; the billing address defaults to the shipping address.
    pub fn assemble(parts: NewOrderParts, errors: &mut FieldErrors) -> Option<NewOrder> {
        let totals = compute_totals(
            parts.items.iter().map(NewItem::amount),
            parts.shipping_minor,
            parts.tax_minor,
        );
        let totals = errors.check("items", totals.map_err(|e| e.to_string()))?;
        Some(NewOrder {
            customer_id: parts.customer_id,
            currency: parts.currency,
            items: parts.items,
            billing_address: parts
                .billing_address
                .unwrap_or_else(|| parts.shipping_address.clone()),
            shipping_address: parts.shipping_address,
            payment_method: parts.payment_method,
            totals,
        })
    }
}

impl NewOrder {
    /// The order as it is stored on creation: PENDING at version 1, its lines with their totals,
    /// a pending payment of the total. Built before it is written, so the order, its event and
    /// the answer are the same value, and the create can be one statement.
    pub fn into_pending(self, id: Uuid, payment_id: Uuid, at: DateTime<Utc>) -> Order {
        let totals = self.totals;
        let currency = self.currency.code().to_owned();
        Order {
            id,
            customer_id: self.customer_id,
            status: OrderStatus::Pending,
            status_reason: None,
            version: 1,
            subtotal_minor: totals.subtotal_minor,
            shipping_minor: totals.shipping_minor,
            tax_minor: totals.tax_minor,
            total_minor: totals.total_minor,
            items: self
                .items
                .into_iter()
                .map(|item| OrderItem {
                    // Cannot overflow: the totals were computed with checked arithmetic.
                    line_total_minor: i64::from(item.quantity) * item.unit_price_minor,
                    sku: item.sku,
                    name: item.name,
                    quantity: item.quantity,
                    unit_price_minor: item.unit_price_minor,
                })
                .collect(),
            shipping_address: self.shipping_address,
            billing_address: self.billing_address,
            payment: Payment {
                id: payment_id,
                method: self.payment_method,
                status: PaymentStatus::Pending,
                amount_minor: totals.total_minor,
                currency: currency.clone(),
            },
            currency,
            created_at: at,
            updated_at: at,
        }
    }
}

/// A non-negative amount in minor units.
pub fn non_negative(amount: i64) -> Result<i64, String> {
    if amount >= 0 {
        Ok(amount)
    } else {
        Err("must not be negative".into())
    }
}

/// A customer id as the customer service knows it: opaque, 1 to 64 characters.
pub fn customer_id(value: &str) -> Result<String, String> {
    text(value, CUSTOMER_ID_MAX)
}

/// One line of a stored order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    /// `quantity × unit_price_minor`.
    pub line_total_minor: i64,
}

/// The payment record of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: Uuid,
    pub method: PaymentMethod,
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub currency: String,
}

/// An order as stored and served: totals are computed by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: String,
    pub status: OrderStatus,
    /// Why the order last changed status, when the caller said.
    pub status_reason: Option<String>,
    /// Optimistic-concurrency version; also the `ETag`.
    pub version: i64,
    #[schema(example = "EUR")]
    pub currency: String,
    pub subtotal_minor: i64,
    pub shipping_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub items: Vec<OrderItem>,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub payment: Payment,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An order without its lines, addresses and payment, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct OrderSummary {
    pub id: Uuid,
    pub customer_id: String,
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub version: i64,
    pub currency: String,
    pub subtotal_minor: i64,
    pub shipping_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> Address {
        Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Berlin".into(),
            region: None,
            postal_code: "10115".into(),
            country: "DE".into(),
        }
    }

    fn parts(items: Vec<NewItem>) -> NewOrderParts {
        NewOrderParts {
            customer_id: "c-42".into(),
            currency: Currency::parse("EUR").unwrap(),
            items,
            shipping_address: address(),
            billing_address: None,
            payment_method: PaymentMethod::Card,
            shipping_minor: 490,
            tax_minor: 0,
        }
    }

    fn item(quantity: i32, unit_price_minor: i64) -> NewItem {
        NewItem {
            sku: "SKU-1".into(),
            name: "Widget".into(),
            quantity,
            unit_price_minor,
        }
    }

    #[test]
    fn totals_come_from_items_and_billing_defaults_to_shipping() {
        let mut errors = FieldErrors::default();
        let order = NewOrder::assemble(parts(vec![item(2, 1250)]), &mut errors).unwrap();
        assert_eq!(order.totals.subtotal_minor, 2500);
        assert_eq!(order.totals.total_minor, 2990);
        assert_eq!(order.billing_address, order.shipping_address);
    }

    #[test]
    fn overflowing_totals_are_a_field_error() {
        let mut errors = FieldErrors::default();
        assert!(NewOrder::assemble(parts(vec![item(2, i64::MAX)]), &mut errors).is_none());
        assert_eq!(errors.into_vec()[0].field, "items");
    }

    #[test]
    fn item_rules() {
        let mut errors = FieldErrors::default();
        assert!(NewItem::parse("SKU", "W", 1, 0, "items[0]", &mut errors).is_some());
        assert!(NewItem::parse("SKU", "W", 0, 1, "items[0]", &mut errors).is_none());
        assert!(NewItem::parse("SKU", "W", -3, 1, "items[1]", &mut errors).is_none());
        assert!(NewItem::parse("", "W", 1, -1, "items[2]", &mut errors).is_none());
        let fields: Vec<_> = errors.into_vec().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "items[0].quantity",
                "items[1].quantity",
                "items[2].sku",
                "items[2].unit_price_minor"
            ]
        );
    }

    #[test]
    fn enums_round_trip_through_their_stored_names() {
        for m in PaymentMethod::ALL {
            assert_eq!(PaymentMethod::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
