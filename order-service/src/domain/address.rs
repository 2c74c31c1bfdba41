//! Postal addresses for shipping and billing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::validation::{optional_text, optional_text_schema, text, text_schema, FieldErrors};

const NAME_MAX: usize = 200;
const LINE_MAX: usize = 200;
const CITY_MAX: usize = 100;
const REGION_MAX: usize = 100;
const POSTAL_CODE_MAX: usize = 20;

/// A postal address. `country` is an ISO 3166-1 alpha-2 code such as `DE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[schema(schema_with = line1_schema)]
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = line2_schema)]
    pub line2: Option<String>,
    #[schema(schema_with = city_schema)]
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = region_schema)]
    pub region: Option<String>,
    #[schema(schema_with = postal_code_schema)]
    pub postal_code: String,
    #[schema(schema_with = country_schema)]
    pub country: String,
}

// The schemas state what `parse` accepts (the OpenAPI document is checked against the server).
fn name_schema() -> Object {
    text_schema(NAME_MAX, "Ada L.")
}
fn line1_schema() -> Object {
    text_schema(LINE_MAX, "1 Main St")
}
fn line2_schema() -> Object {
    optional_text_schema(LINE_MAX)
}
fn city_schema() -> Object {
    text_schema(CITY_MAX, "Berlin")
}
fn region_schema() -> Object {
    optional_text_schema(REGION_MAX)
}
fn postal_code_schema() -> Object {
    text_schema(POSTAL_CODE_MAX, "10115")
}
fn country_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Z]{2}$"))
        .examples(["DE"])
        .build()
}

impl Address {
    /// Validates and normalises (trims) an address, recording errors under `path`.
    pub fn parse(self, path: &str, errors: &mut FieldErrors) -> Option<Address> {
        let name = errors.check(format!("{path}.name"), text(&self.name, NAME_MAX));
        let line1 = errors.check(format!("{path}.line1"), text(&self.line1, LINE_MAX));
        let line2 = errors.check(
            format!("{path}.line2"),
            optional_text(self.line2.as_deref(), LINE_MAX),
        );
        let city = errors.check(format!("{path}.city"), text(&self.city, CITY_MAX));
        let region = errors.check(
            format!("{path}.region"),
            optional_text(self.region.as_deref(), REGION_MAX),
        );
        let postal_code = errors.check(
            format!("{path}.postal_code"),
            text(&self.postal_code, POSTAL_CODE_MAX),
        );
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
