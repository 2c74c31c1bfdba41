//! Postal addresses for shipping and billing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::validation::{optional_text, text, FieldErrors};

/// A postal address. `country` is an ISO 3166-1 alpha-2 code such as `DE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[schema(example = "Ada L.")]
    pub name: String,
    #[schema(example = "1 Main St")]
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    #[schema(example = "Berlin")]
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[schema(example = "10115")]
    pub postal_code: String,
    #[schema(example = "DE")]
    pub country: String,
}

impl Address {
    /// Validates and normalises (trims) an address, recording errors under `path`.
    pub fn parse(self, path: &str, errors: &mut FieldErrors) -> Option<Address> {
        let name = errors.check(format!("{path}.name"), text(&self.name, 200));
        let line1 = errors.check(format!("{path}.line1"), text(&self.line1, 200));
        let line2 = errors.check(
            format!("{path}.line2"),
            optional_text(self.line2.as_deref(), 200),
        );
        let city = errors.check(format!("{path}.city"), text(&self.city, 100));
        let region = errors.check(
            format!("{path}.region"),
            optional_text(self.region.as_deref(), 100),
        );
        let postal_code = errors.check(format!("{path}.postal_code"), text(&self.postal_code, 20));
        let country = errors.check(format!("{path}.country"), country_code(&self.country));
        Some(Address {
            name: name?,
            line1: line1?,
            line2: line2?,
            city: city?,
            region: region?,
            postal_code: postal_code?,
            country: country?,
        })
    }
}

/// Checks the shape of an ISO 3166-1 alpha-2 code (two upper-case letters). The list of
/// assigned codes changes over time and carriers validate it anyway, so only the shape is ours.
fn country_code(value: &str) -> Result<String, String> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "`{value}` is not an ISO 3166-1 alpha-2 country code (e.g. DE)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> Address {
        Address {
            name: " Ada L. ".into(),
            line1: "1 Main St".into(),
            line2: Some(" ".into()),
            city: "Berlin".into(),
            region: None,
            postal_code: "10115".into(),
            country: "DE".into(),
        }
    }

    #[test]
    fn valid_address_is_trimmed() {
        let mut errors = FieldErrors::default();
        let parsed = address().parse("shipping_address", &mut errors).unwrap();
        assert!(errors.is_empty());
        assert_eq!(parsed.name, "Ada L.");
        assert_eq!(parsed.line2, None);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let mut errors = FieldErrors::default();
        let bad = Address {
            name: "".into(),
            country: "de".into(),
            ..address()
        };
        assert_eq!(bad.parse("billing_address", &mut errors), None);
        let fields: Vec<_> = errors.into_vec().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["billing_address.name", "billing_address.country"]);
    }
}
