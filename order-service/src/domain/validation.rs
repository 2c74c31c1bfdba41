//! Per-field validation errors, collected so a client sees every problem at once.

use serde::Serialize;
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

/// A required text field: trimmed, non-empty and at most `max` characters.
pub fn text(value: &str, max: usize) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("must not be empty".into());
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

#[cfg(test)]
mod tests {
    use super::*;

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
