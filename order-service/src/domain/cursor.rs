//! The opaque keyset-pagination cursor: the position of the last order of a page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Orders are listed newest first by `(created_at, id)`; a cursor names the last one seen.
/// Clients treat it as opaque; it is versioned so the format can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this service issued")]
pub struct InvalidCursor;

impl Cursor {
    pub fn encode(&self) -> String {
        let raw = format!("v1:{}:{}", self.created_at.timestamp_micros(), self.id);
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(value: &str) -> Result<Self, InvalidCursor> {
        let raw = URL_SAFE_NO_PAD.decode(value).map_err(|_| InvalidCursor)?;
        let raw = std::str::from_utf8(&raw).map_err(|_| InvalidCursor)?;
        let mut parts = raw.splitn(3, ':');
        let (Some("v1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidCursor);
        };
        let micros: i64 = micros.parse().map_err(|_| InvalidCursor)?;
        Ok(Cursor {
            created_at: DateTime::from_timestamp_micros(micros).ok_or(InvalidCursor)?,
            id: id.parse().map_err(|_| InvalidCursor)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_at_microsecond_precision() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "!!",
            "djE6MTox",
            &URL_SAFE_NO_PAD.encode("v2:1:00000000-0000-0000-0000-000000000000"),
        ] {
            assert_eq!(Cursor::decode(bad), Err(InvalidCursor), "{bad}");
        }
    }
}
