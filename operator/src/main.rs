//! `order-operator`: the Kubernetes controller for `OrderPlatform` resources.
//!
//! The CRD, the reconciler and `plan`/`apply` arrive with their issues; until then the binary
//! only documents itself so the workspace layout is in place.

use clap::Parser;

/// Kubernetes operator for the order platform (`platform.orders.dev/v1alpha1`).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    println!(
        "order-operator {}: no subcommands yet",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}
