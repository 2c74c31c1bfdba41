//! The order service as a library: `main.rs` wires it, tests and the benchmark drive it.

pub mod auth;
pub mod bench;
pub mod catalog;
pub mod config;
pub mod db;
pub mod domain;
pub mod dynamodb;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod outbox;
pub mod replica;
pub mod retention;
pub mod saga;
pub mod sinks;
pub mod startup;
pub mod telemetry;
pub mod verify;
