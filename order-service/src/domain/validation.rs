//! Per-field validation errors, collected so a client sees every problem at once.

use serde::Serialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::ToSchema;

/// One invalid field: a JSON path such as `items[0].quantity` and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Collects field errors while a request is parsed into domain types.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records the error of a parse result under `field` and returns the value if it was valid.
    pub fn check<T>(&mut self, field: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// A required text field: trimmed, non-empty and at most `max` characters, without NUL
/// (PostgreSQL's `text` cannot store it).
pub fn text(value: &str, max: usize) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(value.to_owned())
}

/// An optional text field: blank counts as absent.
pub fn optional_text(value: Option<&str>, max: usize) -> Result<Option<String>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => text(value, max).map(Some),
    }
}

/// The characters `str::trim` removes (Unicode `White_Space`), as a regex class body in the
/// ECMA-262 dialect of OpenAPI (also Python's and the `regex` crate's). Named characters, not
/// `\s`, whose meaning differs between regex engines.
const WHITESPACE: &str = r"\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// The OpenAPI `pattern` of exactly the strings [`text`] accepts: after trimming, 1 to `max`
/// characters, none of them NUL.
pub fn text_pattern(max: usize) -> String {
    let (space, solid, inner) = pattern_parts(max);
    format!("^{space}{solid}({inner}{solid})?{space}$")
}

/// The OpenAPI `pattern` of exactly the strings [`optional_text`] accepts (blank included).
pub fn optional_text_pattern(max: usize) -> String {
    let (space, solid, inner) = pattern_parts(max);
    format!("^{space}({solid}({inner}{solid})?{space})?$")
}

/// The OpenAPI schema of a [`text`] field.
pub fn text_schema(max: usize, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(text_pattern(max)))
        .description(Some(format!(
            "Trimmed; 1 to {max} characters after trimming, no NUL."
        )))
        .examples([example])
        .build()
}

/// The OpenAPI schema of an [`optional_text`] field (absent, `null` or blank mean none).
pub fn optional_text_schema(max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(optional_text_pattern(max)))
        .description(Some(format!(
            "Trimmed; blank means none; at most {max} characters after trimming, no NUL."
        )))
        .build()
}

/// Leading or trailing whitespace; a first or last non-whitespace character; what may stand
/// between those two (anything but NUL, `max - 2` at most).
fn pattern_parts(max: usize) -> (String, String, String) {
    (
        format!("[{WHITESPACE}]*"),
        format!(r"[^{WHITESPACE}\x00]"),
        format!(r"[^\x00]{{0,{}}}", max.saturating_sub(2)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused() {
        assert!(text("a\0b", 10).is_err());
        assert!(optional_text(Some("a\0"), 10).is_err());
    }

    #[test]
    fn whitespace_class_is_what_trim_removes() {
        let class = regex::Regex::new(&format!("^[{WHITESPACE}]$")).unwrap();
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(
                class.is_match(c.encode_utf8(&mut [0; 4])),
                c.is_whitespace(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn patterns_accept_exactly_what_the_validators_accept() {
        let required = regex::Regex::new(&text_pattern(4)).unwrap();
        let optional = regex::Regex::new(&optional_text_pattern(4)).unwrap();
        let samples = [
            "",
            " ",
            "\u{3000}\t",
            "a",
            " a ",
            "abcd",
            " abcd\n",
            "abcde",
            "a  b",
            "a   b",
            "\u{a0}ab\u{2009}",
            "a\0",
            "\0",
            "ä\u{85}äää",
            "\u{1c}",
            "a\u{1c}\u{1c}\u{1c}\u{1c}",
        ];
        for sample in samples {
            assert_eq!(
                required.is_match(sample),
                text(sample, 4).is_ok(),
                "{sample:?}"
            );
            assert_eq!(
                optional.is_match(sample),
                optional_text(Some(sample), 4).is_ok(),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(text("  Ada ", 10), Ok("Ada".to_owned()));
        assert!(text("   ", 10).is_err());
        assert!(text("abcdef", 5).is_err());
        assert_eq!(
            text("ääääa", 5),
            Ok("ääääa".to_owned()),
            "counts characters, not bytes"
        );
    }

    #[test]
    fn blank_optional_text_is_absent() {
        assert_eq!(optional_text(Some("  "), 5), Ok(None));
        assert_eq!(optional_text(None, 5), Ok(None));
        assert_eq!(optional_text(Some(" x "), 5), Ok(Some("x".to_owned())));
    }

    #[test]
    fn check_collects_errors_in_order() {
        let mut errors = FieldErrors::default();
        assert_eq!(errors.check("a", Ok::<_, String>(1)), Some(1));
        assert_eq!(errors.check::<i32>("b", Err("bad".into())), None);
        assert_eq!(errors.check::<i32>("c", Err("worse".into())), None);
        let fields: Vec<_> = errors.into_vec().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["b", "c"]);
    }
}
