//! The order domain: validated value types, totals and the status machine.
//!
//! Pure: no database, no HTTP. Everything here is plain values in and values out, so it is
//! tested without any server.

mod address;
mod cursor;
mod idempotency;
mod money;
mod order;
mod product;
mod report;
mod status;
mod validation;

pub use address::Address;
pub use cursor::{Cursor, InvalidCursor};
pub use idempotency::{IdempotencyKey, RequestFingerprint};
pub use money::{compute_totals, Currency, LineAmount, Totals, TotalsOverflow};
pub use order::{
    customer_id, non_negative, NewItem, NewOrder, NewOrderParts, Order, OrderItem, OrderSummary,
    Payment, PaymentMethod, PaymentStatus, CUSTOMER_ID_MAX, ITEM_NAME_MAX, MAX_ITEMS, SKU_MAX,
};
pub use product::{CurrentPrice, Product};
pub use report::{Granularity, InvalidRange, ProductSales, ReportRange, SalesRow, MAX_REPORT_ROWS};
pub use status::{InvalidTransition, OrderStatus};
pub use validation::{
    optional_text, optional_text_pattern, optional_text_schema, text_pattern, text_schema,
    FieldError, FieldErrors,
};
