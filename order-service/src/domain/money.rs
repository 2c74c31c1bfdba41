//! Money: integer minor units with an ISO 4217 currency, and order totals.
//!
//! Amounts are `i64` minor units (cents); floats never appear. Every sum is checked, so a
//! total that would overflow is refused instead of wrapping.

use std::fmt;

/// An ISO 4217 currency code known to the `iso_currency` tables, e.g. `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Accepts an upper-case, three-letter ISO 4217 code.
    pub fn parse(code: &str) -> Result<Self, String> {
        let valid_shape = code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase());
        match iso_currency::Currency::from_code(code) {
            Some(currency) if valid_shape => Ok(Self(currency)),
            _ => Err(format!(
                "`{code}` is not an ISO 4217 currency code (three upper-case letters, e.g. EUR)"
            )),
        }
    }

    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Every code [`Currency::parse`] accepts, found by asking it about every candidate shape
    /// (for the OpenAPI document's `enum`, so that it cannot drift from the parser).
    pub fn codes() -> Vec<&'static str> {
        let letters = b'A'..=b'Z';
        letters
            .clone()
            .flat_map(|a| letters.clone().map(move |b| [a, b]))
            .flat_map(|[a, b]| (b'A'..=b'Z').map(move |c| [a, b, c]))
            .filter_map(|code| Self::parse(std::str::from_utf8(&code).ok()?).ok())
            .map(|currency| currency.code())
            .collect()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A line of an order as far as money is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineAmount {
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// Server-computed totals of an order, all in minor units of the order's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal_minor: i64,
    pub shipping_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the order total does not fit in 64-bit minor units")]
pub struct TotalsOverflow;

/// Sums the lines and adds shipping and tax. Inputs are expected non-negative (validated
/// before); any overflow is an error.
pub fn compute_totals(
    lines: impl IntoIterator<Item = LineAmount>,
    shipping_minor: i64,
    tax_minor: i64,
) -> Result<Totals, TotalsOverflow> {
    let subtotal_minor = lines.into_iter().try_fold(0i64, |sum, line| {
        line.quantity
            .checked_mul(line.unit_price_minor)
            .and_then(|amount| sum.checked_add(amount))
            .ok_or(TotalsOverflow)
    })?;
    let total_minor = subtotal_minor
        .checked_add(shipping_minor)
        .and_then(|t| t.checked_add(tax_minor))
        .ok_or(TotalsOverflow)?;
    Ok(Totals {
        subtotal_minor,
        shipping_minor,
        tax_minor,
        total_minor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(quantity: i64, unit_price_minor: i64) -> LineAmount {
        LineAmount {
            quantity,
            unit_price_minor,
        }
    }

    #[test]
    fn totals_add_lines_shipping_and_tax() {
        let totals = compute_totals([line(2, 1250), line(1, 99)], 490, 120).unwrap();
        assert_eq!(totals.subtotal_minor, 2599);
        assert_eq!(totals.total_minor, 2599 + 490 + 120);
    }

    #[test]
    fn overflow_in_a_line_or_the_sum_is_refused() {
        assert_eq!(
            compute_totals([line(i64::MAX, 2)], 0, 0),
            Err(TotalsOverflow)
        );
        assert_eq!(
            compute_totals([line(1, i64::MAX), line(1, 1)], 0, 0),
            Err(TotalsOverflow)
        );
        assert_eq!(
            compute_totals([line(1, i64::MAX)], 1, 0),
            Err(TotalsOverflow)
        );
        assert_eq!(
            compute_totals([line(1, i64::MAX - 1)], 1, 0).map(|t| t.total_minor),
            Ok(i64::MAX)
        );
    }

    #[test]
    fn currency_codes_must_be_known_and_upper_case() {
        assert_eq!(Currency::parse("EUR").unwrap().code(), "EUR");
        assert_eq!(Currency::parse("JPY").unwrap().to_string(), "JPY");
        for bad in ["eur", "EURO", "XYZ", "", "E1R"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        let codes = Currency::codes();
        assert!(codes.contains(&"EUR") && codes.contains(&"JPY") && !codes.contains(&"XYZ"));
    }
}
