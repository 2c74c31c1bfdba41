//! `order-operator`: wiring only.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kube::CustomResourceExt;
use order_operator::config::{Cli, Command};
use order_operator::crd::OrderPlatform;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log_level)?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        logs.init();
    } else {
        logs.json().flatten_event(true).init();
    }
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
