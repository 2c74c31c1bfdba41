//! Idempotency keys and the fingerprint of the request they were first used with.

use sha2::{Digest, Sha256};

/// A client-chosen key that makes a create safe to retry: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() || value.len() > 255 {
            return Err("Idempotency-Key must be 1 to 255 characters".into());
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("Idempotency-Key must be visible ASCII characters".into());
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 of the request body in canonical JSON (object keys sorted, no whitespace), so a
/// retry that only reorders keys or spacing counts as the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFingerprint(Vec<u8>);

impl RequestFingerprint {
    pub fn of_json(body: &serde_json::Value) -> Self {
        // serde_json's default map is a BTreeMap, so `to_string` is already canonical.
        Self(Sha256::digest(body.to_string().as_bytes()).to_vec())
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_bounds_and_characters() {
        assert!(IdempotencyKey::parse("order-7f3a").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("ümlaut").is_err());
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_values() {
        let a = RequestFingerprint::of_json(&json!({"a": 1, "b": [1, 2]}));
        let b: serde_json::Value = serde_json::from_str(r#"{ "b": [1,2], "a": 1 }"#).unwrap();
        assert_eq!(a, RequestFingerprint::of_json(&b));
        assert_ne!(
            a,
            RequestFingerprint::of_json(&json!({"a": 2, "b": [1, 2]}))
        );
        assert_ne!(
            a,
            RequestFingerprint::of_json(&json!({"a": 1, "b": [2, 1]}))
        );
    }
}
