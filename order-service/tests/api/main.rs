//! HTTP API tests against a real PostgreSQL: one database and one app per test.

mod dex;
mod helpers;

mod auth;
mod catalog;
mod catalog_fake;
mod cli;
mod crash;
mod create;
mod dataflow;
mod errors;
mod health;
mod kafka_tls;
mod lifecycle;
mod list;
mod metric_names;
mod openapi;
mod outage;
mod participants;
mod participants_tls;
mod projections;
mod replica;
mod reports;
mod retention;
mod saga;
mod servers;
mod sinks;
mod status;
mod verify;
