//! HTTP API tests against a real PostgreSQL: one database and one app per test.

mod helpers;

mod cli;
mod create;
mod errors;
mod health;
mod lifecycle;
mod list;
mod status;
