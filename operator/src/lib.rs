//! The order platform operator as a library: `main.rs` wires it; tests drive it.

pub mod bench;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod provision;
pub mod rbac;
pub mod run;
pub mod telemetry;
