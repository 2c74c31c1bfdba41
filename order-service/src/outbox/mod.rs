//! The transactional outbox: events written with each change, delivered to every sink by the
//! relay, each sink tracked on its own. The sinks implement [`sink::EventSink`].

pub mod cli;
pub mod envelope;
mod relay;
pub mod sink;

pub use relay::{Relay, RelayConfig};
