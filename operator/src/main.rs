//! `order-operator`: wiring only.

use std::process::ExitCode;

use clap::Parser;
use kube::CustomResourceExt;
use order_operator::config::{Cli, Command};
use order_operator::crd::OrderPlatform;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Kept to the end of main: dropping it flushes exported spans.
    let _telemetry = order_operator::telemetry::init(&cli.log_level)?;
    match cli.command {
        Command::Crd => print!("{}", serde_yaml::to_string(&OrderPlatform::crd())?),
        Command::Rbac => print!("{}", order_operator::rbac::render()?),
        Command::Bench(config) => order_operator::bench::run(config).await?,
        Command::Run(config) => order_operator::run::run(config).await?,
        Command::Plan(args) => return Ok(order_operator::cli::plan(args).await.into()),
        Command::Apply(args) => return Ok(order_operator::cli::apply(args).await.into()),
    }
    Ok(ExitCode::SUCCESS)
}
