//! The provisioners and `order-operator plan`/`apply` against the local stack's real Kafka
//! broker, moto and PostgreSQL (`scripts/stack.sh`; `make test` starts it). Each test uses
//! its own table prefix, topic names and database.

mod cli;
#[path = "../common/stack.rs"]
mod stack;
mod support;
mod tables;
mod tls;
mod topics;
